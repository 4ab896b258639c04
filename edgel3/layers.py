"""Keras 3 layers of the edgel3 networks.

Registered for ``.keras`` loading: :class:`MaskedConv2D` (pruned convs whose
mask survives training, see :mod:`edgel3.compress.pruning`) and
:class:`MelSpectrogram`, which reproduces kapre 0.1.4's ``Melspectrogram`` (as saved in
the official weight files) with an FFT instead of kapre's 1024/2048-tap
convolution, so a model maps a 1-s audio window straight to an embedding.
This module imports Keras; the rest of the package only imports it lazily.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from .frontend import hann_window, mel_filterbank
from .specs import FrontendConfig

__all__ = ["MelSpectrogram", "MaskedConv2D"]

_AMIN = 1e-10  # kapre's floor, applied to the mel amplitude
_DYNAMIC_RANGE = 80.0  # dB kept below each window's maximum


@keras.saving.register_keras_serializable(package="edgel3")
class MelSpectrogram(keras.layers.Layer):
    """Log-mel spectrogram of 1-s windows, exactly as kapre 0.1.4 computed it.

    Input ``(batch, 1, frame_length)`` or ``(batch, frame_length)`` float32
    audio; output ``(batch, n_mels, n_frames, 1)`` float32, mel bands low to
    high, in decibels relative to each window's maximum and floored at -80.
    The steps (docs/frontend.rst §4): TF-'SAME' padding, periodic Hann, power
    spectrum, mel filterbank (HTK scale, area norm), square root,
    ``10 * log10(max(A, 1e-10))``, minus the per-window maximum, floor at -80.

    Parameters
    ----------
    sample_rate : int
        Rate of the audio (Hz); a window holds ``sample_rate`` samples.
    n_dft : int
        FFT size and Hann window length.
    n_hop : int
        Hop between STFT frames (samples).
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Filterbank frequency range (Hz); ``fmax=None`` means ``sample_rate / 2``.
    **kwargs
        Passed to :class:`keras.layers.Layer` (``name``, ``dtype``...).

    Notes
    -----
    The filterbank is a non-trainable weight, so a legacy weight file's stored
    matrix is loaded into it (after being checked against the computed one).
    """

    def __init__(self, sample_rate, n_dft, n_hop, n_mels, fmin=0.0, fmax=None, **kwargs):
        super().__init__(**kwargs)
        self.config = FrontendConfig(
            sample_rate=int(sample_rate),
            n_dft=int(n_dft),
            n_hop=int(n_hop),
            n_mels=int(n_mels),
            fmin=float(fmin),
            fmax=None if fmax is None else float(fmax),
        )
        cfg = self.config
        starts = np.arange(cfg.n_frames) * cfg.n_hop
        # Indices into the padded window: frame j covers [j*hop, j*hop + n_dft).
        self._frame_index = (starts[:, None] + np.arange(cfg.n_dft)[None, :]).astype("int32")
        self._padding = cfg.same_padding
        self._window = hann_window(cfg.n_dft)

    @classmethod
    def from_frontend(cls, config: FrontendConfig, **kwargs) -> MelSpectrogram:
        """Build the layer from a :class:`~edgel3.specs.FrontendConfig`."""
        return cls(
            sample_rate=config.sample_rate,
            n_dft=config.n_dft,
            n_hop=config.n_hop,
            n_mels=config.n_mels,
            fmin=config.fmin,
            fmax=config.fmax,
            **kwargs,
        )

    def build(self, input_shape):
        cfg = self.config
        self.filterbank = self.add_weight(
            name="filterbank",
            shape=(cfg.n_bins, cfg.n_mels),
            initializer=keras.initializers.Constant(mel_filterbank(cfg)),
            trainable=False,
        )

    def call(self, inputs):
        cfg = self.config
        audio = ops.reshape(ops.cast(inputs, "float32"), (-1, cfg.frame_length))
        audio = ops.pad(audio, [(0, 0), self._padding])
        frames = ops.take(audio, self._frame_index, axis=1) * self._window
        real, imag = ops.rfft(frames)
        power = real * real + imag * imag
        amplitude = ops.sqrt(ops.matmul(power, self.filterbank))
        level = 10.0 * ops.log(ops.maximum(amplitude, _AMIN)) / math.log(10.0)
        level = level - ops.max(level, axis=(1, 2), keepdims=True)
        level = ops.maximum(level, -_DYNAMIC_RANGE)
        # (batch, frames, mels) -> (batch, mels, frames, 1): H = mel, W = time.
        return ops.expand_dims(ops.transpose(level, (0, 2, 1)), -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.config.n_mels, self.config.n_frames, 1)

    def get_config(self):
        cfg = self.config
        return {
            **super().get_config(),
            "sample_rate": cfg.sample_rate,
            "n_dft": cfg.n_dft,
            "n_hop": cfg.n_hop,
            "n_mels": cfg.n_mels,
            "fmin": cfg.fmin,
            "fmax": cfg.fmax,
        }


@keras.saving.register_keras_serializable(package="edgel3")
class MaskedConv2D(keras.layers.Conv2D):
    """``Conv2D`` whose kernel is multiplied by a fixed, non-trainable 0/1 mask.

    The mask (weight ``mask``, same shape as the kernel, initialised to ones)
    is applied in the forward pass and, through the kernel's constraint, after
    every optimiser step. It is saved with the model. Build one with
    :func:`prune_model` rather than by hand.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.mask = self.add_weight(
            name="mask",
            shape=tuple(self._kernel.shape),
            initializer="ones",
            trainable=False,
            dtype=self.dtype,
        )
        user_constraint = self._kernel.constraint

        def constrain(kernel):
            if user_constraint is not None:
                kernel = user_constraint(kernel)
            return kernel * ops.cast(self.mask, kernel.dtype)

        # Optimisers apply variable constraints right after each update step.
        self._kernel.constraint = constrain

    def _own_variables(self):
        return [self._kernel, *([self.bias] if self.use_bias else []), self.mask]

    def save_own_variables(self, store):
        if self.built:
            for index, variable in enumerate(self._own_variables()):
                store[str(index)] = variable

    def load_own_variables(self, store):
        targets = self._own_variables()
        if len(store.keys()) != len(targets):
            raise ValueError(
                f"Layer {self.name!r} expects {len(targets)} saved arrays (kernel, "
                f"{'bias, ' if self.use_bias else ''}mask); got {len(store.keys())}."
            )
        for index, variable in enumerate(targets):
            variable.assign(store[str(index)])

    def call(self, inputs):
        kernel = self.kernel * ops.cast(self.mask, self.kernel.dtype)
        outputs = self.convolution_op(inputs, kernel)
        if self.use_bias:
            outputs = ops.add(outputs, ops.reshape(self.bias, (1, 1, 1, self.filters)))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
