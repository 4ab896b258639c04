"""Compare an exported model with its Keras original: embedding agreement and speed."""

from __future__ import annotations

import time

import numpy as np

from ..checks import check_positive_int
from ..exceptions import ParameterError

__all__ = ["compare_embeddings", "cosine_similarity"]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity; 1 where both rows are zero, 0 where only one is.

    Parameters
    ----------
    a, b : np.ndarray [shape=(n, d)]

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float64]
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, cos)


def _embed_timed(model, windows: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
    """Embeddings of all windows and windows per second (after a one-window warm-up)."""
    model.predict_on_batch(windows[:1])
    start = time.perf_counter()
    parts = [
        np.asarray(model.predict_on_batch(windows[i : i + batch_size]), dtype=np.float32)
        for i in range(0, len(windows), batch_size)
    ]
    elapsed = time.perf_counter() - start
    return np.concatenate(parts), len(windows) / max(elapsed, 1e-9)


def compare_embeddings(reference, candidate, windows, *, batch_size: int = 64) -> dict:
    """Embed the same 1-s windows with two models and measure how they differ.

    Parameters
    ----------
    reference, candidate : model
        Anything with ``predict_on_batch((b, 1, sr)) -> (b, d)``: a Keras
        model, a :class:`~edgel3.litert.LiteRTModel`...
    windows : np.ndarray [shape=(n, sr) or (n, 1, sr)]
        Audio windows at the models' rate.
    batch_size : int
        Windows per call.

    Returns
    -------
    dict
        ``windows``; ``scale`` (largest |reference value|); ``max_abs_diff`` and
        ``max_abs_diff_relative`` (over the scale); ``rmse``; ``cosine_mean``,
        ``cosine_min``; ``windows_per_s_reference`` and
        ``windows_per_s_candidate`` (wall clock, after a one-window warm-up).

    Raises
    ------
    ParameterError
        If ``windows`` has the wrong shape or the embeddings differ in size.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim == 2:
        windows = windows[:, None, :]
    if windows.ndim != 3 or windows.shape[1] != 1 or len(windows) == 0:
        raise ParameterError(
            f"windows must have shape (n, sr) or (n, 1, sr) with n > 0; got {windows.shape}."
        )
    ref, ref_rate = _embed_timed(reference, windows, batch_size)
    cand, cand_rate = _embed_timed(candidate, windows, batch_size)
    if ref.shape != cand.shape:
        raise ParameterError(f"Embeddings differ in shape: {ref.shape} vs {cand.shape}.")
    diff = np.abs(ref.astype(np.float64) - cand)
    scale = float(np.max(np.abs(ref)))
    cos = cosine_similarity(ref, cand)
    return {
        "windows": int(len(windows)),
        "scale": scale,
        "max_abs_diff": float(diff.max()),
        "max_abs_diff_relative": float(diff.max() / scale) if scale else float(diff.max()),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "windows_per_s_reference": float(ref_rate),
        "windows_per_s_candidate": float(cand_rate),
    }
