"""Run an exported ``.tflite`` embedding model with the LiteRT interpreter.

:class:`LiteRTModel` is a runner (:mod:`edgel3.runners`): ``predict_on_batch``
maps 1-s audio windows ``(b, 1, sr)`` to embeddings ``(b, d)`` and ``sample_rate`` tells the caller
what rate to resample to. A *backbone* export (log-mel input) gets its front
end computed in NumPy by :func:`edgel3.frontend.melspectrogram` with the
constants of the export's sidecar JSON. int8 inputs and outputs are
(de)quantized with the scale and zero point stored in the file.

The interpreter is ``ai_edge_litert.interpreter.Interpreter`` when the LiteRT
runtime is installed (then TensorFlow is never imported), else
``tf.lite.Interpreter``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from .exceptions import ParameterError, WeightsError
from .runners import as_windows
from .specs import SEA_FRONTEND, SPARSE_FRONTEND, FrontendConfig

__all__ = [
    "LiteRTModel",
    "make_interpreter",
    "read_sidecar",
    "sidecar_path",
    "frontend_to_dict",
    "frontend_from_dict",
]

_FRONTEND_FIELDS = ("sample_rate", "n_dft", "n_hop", "n_mels", "fmin", "fmax")


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON file written next to an export: ``model.tflite`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """Read an export's sidecar JSON; ``None`` if there is none.

    Raises
    ------
    WeightsError
        If the sidecar exists but is not valid JSON.
    """
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f'Could not read the export description "{side}": {exc}') from exc


def frontend_to_dict(config: FrontendConfig) -> dict:
    """The constants of a front end as JSON-ready values (see docs/export.rst)."""
    return {name: getattr(config, name) for name in _FRONTEND_FIELDS}


def frontend_from_dict(values: dict) -> FrontendConfig:
    """Inverse of :func:`frontend_to_dict` (extra keys are ignored).

    Raises
    ------
    WeightsError
        If a constant is missing.
    """
    try:
        return FrontendConfig(**{name: values[name] for name in _FRONTEND_FIELDS})
    except KeyError as exc:
        raise WeightsError(f"Front-end description lacks {exc.args[0]!r}: {values}") from None


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            import tensorflow as tf
        except ImportError as exc:
            raise ImportError(
                "Running .tflite models needs the LiteRT runtime: pip install ai-edge-litert "
                "(or 'edgel3[export]')."
            ) from exc
        return tf.lite.Interpreter
    return Interpreter


def make_interpreter(content: bytes, num_threads: int | None):
    cls = _interpreter_class()
    with warnings.catch_warnings():
        # tf.lite.Interpreter announces its move to ai-edge-litert; that is our fallback.
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        return cls(model_content=content, num_threads=num_threads)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return x.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(x / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind not in "iu":
        return y.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


class LiteRTModel:
    """An exported ``.tflite`` embedding model, usable wherever edgel3 takes a model.

    Parameters
    ----------
    path : path-like
        The ``.tflite`` file. Its sidecar JSON (same name, ``.json``), written
        by :func:`edgel3.export.export_model`, gives the variant and the front
        end; without it the variant is inferred from the input shape (a
        backbone must then have one of the official front ends).
    num_threads : int, optional
        Interpreter threads (the runtime's default if None).

    Attributes
    ----------
    sample_rate : int
        Audio rate (Hz) = samples per window.
    emb_dim : int
        Embedding size.
    variant : {'full', 'backbone'}
        Whether the file takes audio windows or log-mel patches.
    frontend : FrontendConfig or None
        The front end computed in NumPy for a backbone.
    info : dict
        The sidecar JSON (empty if absent).

    Raises
    ------
    WeightsError
        If the file is missing or not a usable embedding model.

    Examples
    --------
    >>> model = LiteRTModel('sea64_int8.tflite')                    # doctest: +SKIP
    >>> emb, ts = edgel3.get_embedding(audio, sr, model=model)       # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsError(f'Model file "{self.path}" could not be found.')
        self.info = read_sidecar(self.path) or {}
        try:
            self._interpreter = make_interpreter(self.path.read_bytes(), num_threads)
        except ValueError as exc:
            raise WeightsError(f'Could not load LiteRT model "{self.path}": {exc}') from exc
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        shape = tuple(int(d) for d in self._input["shape"])
        signature = self._input.get("shape_signature", self._input["shape"])
        self._dynamic_batch = len(signature) > 0 and int(signature[0]) == -1
        self._batch = None if self._dynamic_batch else shape[0]
        self.emb_dim = int(self._output["shape"][-1])
        self.variant, self.frontend, self.sample_rate = self._describe(shape)
        self._allocated_batch = None

    def _describe(self, shape: tuple) -> tuple[str, FrontendConfig | None, int]:
        variant = self.info.get("variant") or ("full" if len(shape) == 3 else "backbone")
        if variant == "full":
            if len(shape) != 3:
                raise WeightsError(
                    f'"{self.path}": a full model takes (batch, 1, samples); input shape {shape}.'
                )
            return "full", None, int(shape[-1])
        if "frontend" in self.info:
            config = frontend_from_dict(self.info["frontend"])
        else:
            known = [
                c for c in (SEA_FRONTEND, SPARSE_FRONTEND) if shape[1:3] == (c.n_mels, c.n_frames)
            ]
            if len(shape) != 4 or not known:
                raise WeightsError(
                    f'"{self.path}" takes input {shape} and has no sidecar '
                    f'"{sidecar_path(self.path).name}" describing its front end; export it '
                    "with edgel3.export.export_model or write the JSON next to it."
                )
            config = known[0]
        if shape[1:3] != (config.n_mels, config.n_frames):
            raise WeightsError(
                f'"{self.path}": input {shape} does not match its front end '
                f"({config.n_mels} mels x {config.n_frames} frames)."
            )
        return "backbone", config, int(config.sample_rate)

    @property
    def embedding_size(self) -> int:
        """Embedding size (the runner interface's name for :attr:`emb_dim`)."""
        return self.emb_dim

    def __repr__(self) -> str:
        return (
            f"LiteRTModel({str(self.path)!r}, variant={self.variant!r}, "
            f"sample_rate={self.sample_rate}, emb_dim={self.emb_dim}, "
            f"input={np.dtype(self._input['dtype']).name})"
        )

    @property
    def input_details(self) -> dict:
        """The interpreter's description of the input tensor (dtype, quantization...)."""
        return dict(self._input)

    @property
    def output_details(self) -> dict:
        """The interpreter's description of the output tensor."""
        return dict(self._output)

    def features(self, windows: np.ndarray) -> np.ndarray:
        """What the network takes: the windows themselves, or their log-mel patches.

        Parameters
        ----------
        windows : np.ndarray [shape=(b, 1, sr) or (b, sr)]

        Returns
        -------
        np.ndarray [shape=(b, 1, sr) or (b, n_mels, n_frames, 1), dtype=float32]
        """
        windows = as_windows(windows, self.sample_rate)
        if self.variant == "full":
            return windows[:, None, :]
        from .frontend import melspectrogram

        return melspectrogram(windows, self.frontend)

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        """Embed a batch of 1-s windows.

        Parameters
        ----------
        batch : np.ndarray [shape=(b, 1, sample_rate), dtype=float32]

        Returns
        -------
        np.ndarray [shape=(b, emb_dim), dtype=float32]
        """
        return self.predict_features(self.features(batch))

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Run the network on its own input (see :meth:`features`); float32 in and out.

        Parameters
        ----------
        features : np.ndarray [shape=(b, ...) matching the file's input]

        Returns
        -------
        np.ndarray [shape=(b, emb_dim), dtype=float32]
        """
        features = np.asarray(features, dtype=np.float32)
        expected = tuple(int(d) for d in self._input["shape"][1:])
        if features.shape[1:] != expected:
            raise ParameterError(
                f"{self.path.name} takes inputs of shape (b, {', '.join(map(str, expected))}); "
                f"got shape {features.shape}."
            )
        n = len(features)
        out = np.empty((n, self.emb_dim), dtype=np.float32)
        step = n if self._dynamic_batch else self._batch
        for start in range(0, n, max(step, 1)):
            chunk = features[start : start + step]
            if not self._dynamic_batch and len(chunk) < step:
                chunk = np.concatenate(
                    [chunk, np.zeros((step - len(chunk), *expected), np.float32)]
                )
            result = self._invoke(chunk)
            out[start : start + step] = result[: min(step, n - start)]
        return out

    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        interpreter = self._interpreter
        if self._dynamic_batch and self._allocated_batch != len(chunk):
            interpreter.resize_tensor_input(self._input["index"], list(chunk.shape))
            interpreter.allocate_tensors()
            self._allocated_batch = len(chunk)
        elif self._allocated_batch is None:
            interpreter.allocate_tensors()
            self._allocated_batch = len(chunk)
        interpreter.set_tensor(self._input["index"], _quantize(chunk, self._input))
        interpreter.invoke()
        result = interpreter.get_tensor(self._output["index"])
        return _dequantize(result, self._output).reshape(len(chunk), -1)
