"""Convert an edgel3 Keras model into a LiteRT (TFLite) flatbuffer.

Two variants:

``full``
    The model as it is: a 1-s audio window ``(1, sr)`` in, the embedding out,
    with the mel spectrogram (an RFFT) inside the graph.
``backbone``
    The network after the front end: a log-mel patch ``(n_mels, n_frames, 1)``
    in. A device (or :class:`~edgel3.export.runtime.LiteRTModel`) computes the
    front end from the constants written to the sidecar JSON.

Four quantizations (docs/export.rst): ``'none'`` (float32), ``'float16'``
(fp16 weights, fp32 compute), ``'dynamic'`` (int8 weights, activations
quantized on the fly) and ``'int8'`` (full integer, int8 input and output,
activations calibrated on real audio). The quantized modes export the backbone
by default, because the front end does not survive them: ``'int8'`` has no
int8 RFFT (a "full" int8 model would keep the STFT in float and quantize the
raw audio samples and the log to 8 bits; it is refused), ``'float16'`` turns
the 1e-10 amplitude floor into 0 (digital silence gives NaN) and
``'dynamic'`` rounds the power spectrum to 8 bits in the mel product (both
allowed with a warning).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import check_choice, check_hop_size, check_output_path, check_positive_int
from ..exceptions import EdgeL3Warning, ParameterError
from ..files import atomic_write
from ..litert import frontend_to_dict, sidecar_path
from ..runners import model_sample_rate
from ..specs import FrontendConfig
from ..version import __version__
from .calibration import DEFAULT_CALIBRATION_HOP, DEFAULT_CALIBRATION_WINDOWS, calibration_inputs

__all__ = [
    "QUANTIZATIONS",
    "VARIANTS",
    "ExportResult",
    "backbone_model",
    "check_export_paths",
    "export_model",
    "frontend_description",
    "load_keras_model",
]

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
_FULL_CAVEATS = {
    "float16": (
        "quantization='float16' with variant='full' also stores the front end's constants in "
        "float16: the 1e-10 amplitude floor becomes 0, so windows of digital silence give "
        "non-finite embeddings (and 1/ln 10 loses precision). Prefer variant='backbone'."
    ),
    "dynamic": (
        "quantization='dynamic' with variant='full' also quantizes the mel filterbank "
        "product: its hybrid kernel rounds the power spectrum to 8 bits on the fly, which "
        "loses quiet content. Prefer variant='backbone'."
    ),
}
VARIANTS = ("full", "backbone")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes
    ----------
    path : pathlib.Path
        The ``.tflite`` file.
    sidecar : pathlib.Path
        Its JSON description (variant, quantization, I/O, front end).
    variant : {'full', 'backbone'}
    quantization : {'none', 'float16', 'dynamic', 'int8'}
    size : int
        Bytes of the flatbuffer.
    calibration_windows : int
        Windows used to calibrate int8 activations (0 otherwise).
    """

    path: Path
    sidecar: Path
    variant: str
    quantization: str
    size: int
    calibration_windows: int = 0


def _mel_layer(model):
    from ..layers import MelSpectrogram

    found = [layer for layer in model.layers if isinstance(layer, MelSpectrogram)]
    return found[0] if found else None


def backbone_model(model):
    """Split a model into its front-end constants and the network after it.

    Parameters
    ----------
    model : keras.Model
        A model whose first layer after the input is a
        :class:`~edgel3.layers.MelSpectrogram` (every edgel3 model).

    Returns
    -------
    backbone : keras.Model
        Log-mel patch ``(batch, n_mels, n_frames, 1)`` -> embedding; it shares
        the layers (and weights) of ``model``.
    frontend : FrontendConfig

    Raises
    ------
    ParameterError
        If the model has no mel-spectrogram layer.
    """
    import keras

    mel = _mel_layer(model)
    if mel is None:
        raise ParameterError(
            f"Model {model.name!r} has no MelSpectrogram layer, so it has no backbone to "
            "export separately; export it with variant='full'."
        )
    # A short name: it prefixes every tensor name stored in the flatbuffer.
    backbone = keras.Model(mel.output, model.output, name="edgel3")
    return backbone, mel.config


def frontend_description(config: FrontendConfig) -> dict:
    """Everything a device needs to compute the log-mel input of a backbone export.

    The mel filterbank is stored sparsely: for each band the first FFT bin
    and the weights of its consecutive non-zero bins.
    """
    from .micro_frontend import sparse_mel_for

    mel = sparse_mel_for(config)
    bands = [
        {"start_bin": int(first), "weights": [float(w) for w in mel.weights[at : at + count]]}
        for first, count, at in zip(mel.first_bin, mel.counts, mel.offsets)
    ]
    return {
        **frontend_to_dict(config),
        "n_frames": config.n_frames,
        "n_bins": config.n_bins,
        "same_padding": list(config.same_padding),
        "recipe": (
            "per 1-s window of sample_rate samples (float32): zero-pad same_padding, frames of "
            "n_dft every n_hop samples, periodic Hann window 0.5 - 0.5*cos(2*pi*n/n_dft), "
            "power |rfft|^2, mel = power @ filterbank, amplitude = sqrt(mel), "
            "dB = 10*log10(max(amplitude, 1e-10)), dB -= max(dB over the window), "
            "dB = max(dB, -80); layout (n_mels, n_frames, 1), mel band low to high"
        ),
        "amin": 1e-10,
        "dynamic_range_db": 80.0,
        "window": "hann_periodic",
        "mel_scale": "htk",
        "mel_norm": "area",
        "filterbank": bands,
    }


# --------------------------------------------------------------------------- conversion


def _convert(network, quantization: str, batch_size, representative, bands: int = 1) -> bytes:
    import keras
    import tensorflow as tf

    shape = (batch_size, *network.input_shape[1:])
    if bands > 1:
        from .banded import BandedBackbone

        serve = BandedBackbone(network, bands)
    else:

        def serve(x):
            return network(x, training=False)

    with tempfile.TemporaryDirectory(prefix="edgel3_export_") as tmp:
        # Ops are traced in call order, which the converter keeps (bands stay sequential).
        archive = keras.export.ExportArchive()
        archive.track(network)
        archive.add_endpoint(
            "serve", serve, input_signature=[keras.InputSpec(shape=shape, dtype="float32")]
        )
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
        if quantization != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":

            def dataset():
                for sample in representative:
                    yield [sample[None].astype(np.float32)]

            converter.representative_dataset = dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        try:
            return bytes(converter.convert())
        except Exception as exc:  # the converter raises ConverterError and friends
            from ..exceptions import EdgeL3Error

            raise EdgeL3Error(f"LiteRT conversion failed ({quantization}): {exc}") from exc


def load_keras_model(model):
    """The Keras model behind any model value edgel3 accepts, for export and reports.

    Parameters
    ----------
    model : str, path-like, keras.Model or ModelReference
        Anything :func:`edgel3.reference.resolve_model` accepts that is a Keras
        model: an official name (``'sea-64'``, a file stem), ``'tiny'``, a
        ``.h5``/``.h5.gz``/``.keras`` file (pruned ``.keras`` files included) or
        a loaded model.

    Returns
    -------
    keras.Model

    Raises
    ------
    ParameterError
        For a LiteRT file or model (already exported), another runner, or an
        unknown name.
    WeightsError
        For a model file that does not exist or cannot be loaded.
    """
    from ..litert import LiteRTModel
    from ..reference import resolve_model
    from ..runners import is_keras_model

    if isinstance(model, (str, os.PathLike)) and Path(model).suffix == ".tflite":
        raise ParameterError(f"{model} is already a LiteRT file; export the Keras model instead.")
    reference = resolve_model(model)
    loaded = reference.load()
    if not is_keras_model(loaded):
        what = "already a LiteRT model" if isinstance(loaded, LiteRTModel) else "not a Keras model"
        raise ParameterError(
            f"{reference.name} is {what} ({type(loaded).__name__}); export and memory reports "
            "of Keras layers need the Keras model."
        )
    return loaded


def check_export_paths(path) -> tuple[Path, Path]:
    """Check the files an export writes, before any work: ``NAME.tflite`` and ``NAME.json``.

    Parameters
    ----------
    path : path-like
        The ``.tflite`` file (the name a model file is recognised by).

    Returns
    -------
    path, sidecar : pathlib.Path

    Raises
    ------
    ParameterError
        If ``path`` does not end in ``.tflite``.
    OutputError
        If either file cannot be written (a directory, a folder that is a file...).
    """
    path = check_output_path(path, "the export", suffixes=(".tflite",))
    return path, check_output_path(sidecar_path(path), "the export's description")


def export_model(
    model,
    path: str | os.PathLike,
    *,
    quantization: str = "none",
    variant: str | None = None,
    calibration=None,
    calibration_windows: int = DEFAULT_CALIBRATION_WINDOWS,
    calibration_hop: float = DEFAULT_CALIBRATION_HOP,
    batch_size: int | None = 1,
    bands: int = 1,
    fast_resample: bool = False,
) -> ExportResult:
    """Export an embedding model to a LiteRT flatbuffer plus a sidecar JSON.

    Parameters
    ----------
    model : keras.Model, str or path-like
        A loaded model, an official model name (``'sea-64'``), ``'tiny'`` or a
        ``.h5``/``.h5.gz``/``.keras`` file (see :func:`load_keras_model`).
    path : path-like
        Output ``.tflite`` file; the JSON description is written next to it
        (``model.tflite`` -> ``model.json``). Both names are checked before any
        work (:func:`check_export_paths`), and both files appear together or not
        at all.
    quantization : {'none', 'float16', 'dynamic', 'int8'}
    variant : {'full', 'backbone'} or None
        None: ``'full'`` for float32, ``'backbone'`` for the quantized modes
        (see the module notes for why).
    calibration : path-like, sequence of path-like or np.ndarray, optional
        Audio files/folders (or windows ``(n, sr)``, or log-mel patches) that
        calibrate the int8 activation ranges; required for int8.
    calibration_windows : int
        Most windows used for calibration.
    calibration_hop : float
        Seconds between calibration windows within a file.
    batch_size : int or None
        Fixed batch of the exported input (1: static shapes, as a
        microcontroller wants); None for a resizable batch.
    bands : int
        Backbone only: run the first stage (the convs before the first
        pooling, at full resolution) in this many horizontal bands, one after
        the other (:mod:`edgel3.export.banded`): same embeddings, a smaller
        LiteRT-Micro arena (SEA-64 int8: 200 -> 100 KiB with 3 bands), a
        slightly larger file. 1: no banding.
    fast_resample : bool
        Resample calibration audio with the fast resampler instead of the
        exact legacy one.

    Returns
    -------
    ExportResult

    Raises
    ------
    ParameterError
        For invalid options (int8 with the full variant, no calibration, a
        path not ending in ``.tflite``...).
    OutputError
        If the files cannot be written (checked before the model loads).
    AudioError
        If calibration audio cannot be read.
    EdgeL3Error
        If the converter fails.

    Examples
    --------
    >>> export_model('sea-64', 'sea64_int8.tflite', quantization='int8',
    ...              calibration='recordings/')                  # doctest: +SKIP
    """
    path, side = check_export_paths(path)
    check_choice(quantization, QUANTIZATIONS, "quantization")
    if variant is None:
        variant = "full" if quantization == "none" else "backbone"
    check_choice(variant, VARIANTS, "variant")
    if quantization == "int8" and variant == "full":
        raise ParameterError(
            "quantization='int8' needs variant='backbone': the STFT (RFFT) has no int8 kernel, "
            "so a full-integer model cannot contain the front end. Export the backbone and "
            "compute the log-mel input on the device (constants in the sidecar JSON)."
        )
    if quantization in _FULL_CAVEATS and variant == "full":
        warnings.warn(_FULL_CAVEATS[quantization], EdgeL3Warning, stacklevel=2)
    bands = check_positive_int(bands, "bands")
    if bands > 1 and variant != "backbone":
        raise ParameterError(
            f"bands={bands} splits the backbone's first stage: use variant='backbone'."
        )
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    calibration_windows = check_positive_int(calibration_windows, "calibration_windows")
    calibration_hop = check_hop_size(calibration_hop)
    keras_model = load_keras_model(model)
    mel = _mel_layer(keras_model)
    frontend = mel.config if mel is not None else None
    sample_rate = model_sample_rate(keras_model)
    if variant == "backbone":
        network, frontend = backbone_model(keras_model)
    else:
        network = keras_model
    representative = None
    if quantization == "int8":
        representative = calibration_inputs(
            calibration,
            variant,
            frontend,
            sample_rate,
            calibration_windows,
            calibration_hop,
            fast_resample=fast_resample,
        )
    if bands > 1:
        from .banded import BandedBackbone

        BandedBackbone(network, bands)  # check the structure before converting
    flatbuffer = _convert(network, quantization, batch_size, representative, bands)
    description = _describe(
        keras_model,
        flatbuffer,
        variant,
        quantization,
        frontend,
        sample_rate,
        calibration,
        0 if representative is None else len(representative),
        bands,
    )
    # Both files or neither: the .tflite is renamed into place just after its sidecar.
    described = False
    try:
        with atomic_write(path) as model_file:
            model_file.write(flatbuffer)
            with atomic_write(side) as handle:
                handle.write((json.dumps(description, indent=1) + "\n").encode("utf-8"))
            described = True
    except BaseException:
        if described:  # the .tflite failed after its new sidecar appeared
            side.unlink(missing_ok=True)
        raise
    logger.info("wrote %s (%d bytes) and %s", path, len(flatbuffer), side)
    return ExportResult(
        path,
        side,
        variant,
        quantization,
        len(flatbuffer),
        0 if representative is None else len(representative),
    )


def _io_description(detail: dict) -> dict:
    scale, zero_point = detail["quantization"]
    return {
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def _describe(
    model, flatbuffer, variant, quantization, frontend, sample_rate, calibration, n_cal, bands
):
    from ..litert import make_interpreter

    interpreter = make_interpreter(flatbuffer, None)
    sources = None
    if calibration is not None and not isinstance(calibration, np.ndarray):
        items = [calibration] if isinstance(calibration, (str, os.PathLike)) else calibration
        sources = [str(item) for item in items]
    description = {
        "format": "edgel3-litert",
        "format_version": 1,
        "edgel3_version": __version__,
        "source_model": model.name,
        "variant": variant,
        "quantization": quantization,
        "bands": bands,
        "sample_rate": int(sample_rate),
        "emb_dim": int(model.output_shape[-1]),
        "input": _io_description(interpreter.get_input_details()[0]),
        "output": _io_description(interpreter.get_output_details()[0]),
        "calibration": {"windows": n_cal, "sources": sources} if quantization == "int8" else None,
    }
    if variant == "backbone":
        description["frontend"] = frontend_description(frontend)
    elif frontend is not None:
        description["frontend_in_graph"] = frontend_to_dict(frontend)
    return description
