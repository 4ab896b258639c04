"""An int8 backbone export fed by the microcontroller front end, as a runner.

:class:`MicroFrontendModel` computes each window's input the way a device does
(:mod:`edgel3.export.micro_frontend`) and runs the int8 network with LiteRT, so that
anything edgel3 does with a model (``get_embedding``, ``evaluate``) can be measured
with the device's arithmetic (benchmarks/micro_frontend.py, docs/deploy_mcu.rst).
"""

from __future__ import annotations

import os

import numpy as np

from ..exceptions import ParameterError
from .micro_frontend import (
    dequantize_patches,
    micro_melspectrogram,
    quantize_patches,
    sparse_mel_for,
    to_int16,
)

__all__ = ["MicroFrontendModel"]


class MicroFrontendModel:
    """An int8 backbone export fed by the microcontroller front end (a runner).

    ``predict_on_batch`` does what a device does with each 1-s window: float
    samples to int16 (:func:`to_int16`), :func:`micro_melspectrogram`,
    :func:`quantize_patches` with the file's input scale and zero point, then
    the int8 network. Usable wherever edgel3 takes a model (``model=``), e.g.
    :func:`edgel3.evaluate.evaluate`.

    Parameters
    ----------
    model : path-like or LiteRTModel
        An int8 backbone export (:func:`edgel3.export.export_model`).
    filterbank : np.ndarray [shape=(n_bins, n_mels)] or SparseMel, optional
        Default: the recipe's matrix for the export's front end.

    Attributes
    ----------
    model : LiteRTModel
    sample_rate, embedding_size : int
    frontend : FrontendConfig
    mel : SparseMel
    scale, zero_point : float, int
        The export's input quantization.
    model_id : str
        ``micro-float32:`` and the file's identity (embedding caches).

    Raises
    ------
    ParameterError
        If the export does not take int8 log-mel patches.
    """

    def __init__(self, model, *, filterbank=None):
        from ..litert import LiteRTModel
        from ..model_identity import file_identity

        if isinstance(model, (str, os.PathLike)):
            model = LiteRTModel(model)
        if not isinstance(model, LiteRTModel):
            raise ParameterError(
                f"model must be a .tflite path or a LiteRTModel; got {type(model).__name__}."
            )
        detail = model.input_details
        if model.variant != "backbone" or np.dtype(detail["dtype"]) != np.int8:
            raise ParameterError(
                f"{model.path.name} takes {np.dtype(detail['dtype']).name} "
                f"{'log-mel patches' if model.variant == 'backbone' else 'audio'}; the "
                "microcontroller front end feeds int8 backbone exports (quantization='int8')."
            )
        self.model = model
        self.frontend = model.frontend
        self.sample_rate = model.sample_rate
        self.embedding_size = model.embedding_size
        self.mel = sparse_mel_for(self.frontend, filterbank)
        scale, zero_point = detail["quantization"]
        self.scale, self.zero_point = float(scale), int(zero_point)
        self.model_id = f"micro-float32:{file_identity(model.path)}"

    def __repr__(self) -> str:
        return f"MicroFrontendModel({str(self.model.path)!r})"

    def features(self, windows: np.ndarray) -> np.ndarray:
        """int8 patches of float windows, computed as the device computes them.

        Parameters
        ----------
        windows : np.ndarray [shape=(b, 1, sample_rate) or (b, sample_rate)]

        Returns
        -------
        np.ndarray [shape=(b, n_mels, n_frames, 1), dtype=int8]
        """
        from ..runners import as_windows

        samples = to_int16(as_windows(windows, self.sample_rate))
        patches = micro_melspectrogram(samples, self.frontend, filterbank=self.mel)
        return quantize_patches(patches, self.scale, self.zero_point)

    def predict_on_batch(self, windows: np.ndarray) -> np.ndarray:
        """Embed a batch of 1-s windows through the device front end and the int8 file.

        Parameters
        ----------
        windows : np.ndarray [shape=(b, 1, sample_rate), dtype=float32]

        Returns
        -------
        np.ndarray [shape=(b, embedding_size), dtype=float32]
        """
        codes = self.features(windows)
        # LiteRTModel quantizes float inputs with the same scale: these values give the
        # codes back exactly (dequantize_patches), so the network sees the device's bytes.
        return self.model.predict_features(dequantize_patches(codes, self.scale, self.zero_point))
