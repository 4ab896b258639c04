"""Data of the task-student pipeline: the teacher's front end, windows, and who saw what.

- :func:`teacher_frontend`: the log-mel front end of a teacher (the students' input);
- :func:`load_task_data`: every clip's windows embedded by the teacher
  (through the evaluation cache) and turned into the matching log-mel patches;
- :func:`check_unseen`: the guard that no model tested on a fold used its audio.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import EdgeL3Error, EdgeL3Warning, ParameterError

__all__ = ["check_unseen", "teacher_frontend", "TaskData", "load_task_data", "teacher_overlap"]


def check_unseen(test_clips, **seen) -> None:
    """Raise if any model tested on ``test_clips`` saw one of them while it was made.

    Parameters
    ----------
    test_clips : iterable of int
        Clip indices of the held-out fold.
    **seen : iterable of int
        For each use (``classifier``, ``student_fit``, ``calibration``...), the
        clip indices whose audio it used.

    Raises
    ------
    EdgeL3Error
        Naming the use and the clips; it means a bug in the fold bookkeeping.
    """
    test = set(int(i) for i in test_clips)
    for use, clips in seen.items():
        overlap = sorted(test.intersection(int(i) for i in clips))
        if overlap:
            raise EdgeL3Error(
                f"Internal error: {use} used {len(overlap)} clip(s) of the held-out fold "
                f"(indices {overlap[:5]}); no result was written. Please report it."
            )


def teacher_frontend(reference):
    """The log-mel front end of a teacher model (what its students take as input).

    Parameters
    ----------
    reference : ModelReference

    Returns
    -------
    FrontendConfig

    Raises
    ------
    ParameterError
        For a model without a log-mel front end (a full LiteRT export, a runner).
    """
    if reference.spec is not None:
        return reference.spec.frontend
    from ..layers import MelSpectrogram

    model = reference.load()
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, MelSpectrogram):
            return layer.config
    if getattr(model, "frontend", None) is not None:  # a LiteRT backbone export
        return model.frontend
    raise ParameterError(
        f"Teacher {reference.name} has no log-mel front end that a student could share; "
        "use an edgel3 model (official, 'tiny', .h5/.keras or a backbone .tflite)."
    )


@dataclass
class TaskData:
    """Windows of a dataset: the teacher's embeddings and the students' log-mel input.

    Attributes
    ----------
    embeddings : np.ndarray [shape=(n_windows, emb_dim), dtype=float32]
    patches : np.ndarray [shape=(n_windows, n_mels, n_frames, 1), dtype=float32]
        Log-mel input of each window (dB in [-80, 0]).
    clip : np.ndarray [shape=(n_windows,), dtype=int64]
        The clip each window belongs to; clips are contiguous, in dataset order.
    embedding_info : dict
        :func:`edgel3.evaluate.embeddings.embed_files`'s info.
    """

    embeddings: np.ndarray
    patches: np.ndarray
    clip: np.ndarray
    embedding_info: dict

    def windows_of(self, clips) -> np.ndarray:
        """Window indices of the given clips (sorted)."""
        return np.flatnonzero(np.isin(self.clip, np.asarray(list(clips), dtype=np.int64)))


def load_task_data(dataset, reference, frontend, *, hop_size, center, cache_dir, verbose):
    """Embed every clip with the teacher (cached) and compute the matching log-mel patches.

    Parameters
    ----------
    dataset : Dataset
    reference : ModelReference
        The teacher.
    frontend : FrontendConfig
        The teacher's front end (:func:`teacher_frontend`).
    hop_size : float
    center : bool
    cache_dir : path-like or None
        Embedding cache (see :func:`edgel3.evaluate.embeddings.embed_files`).
    verbose : bool

    Returns
    -------
    TaskData

    Raises
    ------
    AudioError
        For unreadable clips.
    """
    from tqdm.auto import tqdm

    from ..engine import file_windows
    from ..evaluate.embeddings import embed_files
    from ..frontend import melspectrogram

    embeddings, info = embed_files(
        dataset.paths,
        reference,
        hop_size=hop_size,
        center=center,
        cache_dir=cache_dir,
        verbose=verbose,
    )
    patches = []
    for index, path in enumerate(
        tqdm(dataset.paths, unit="clip", desc="log-mel", disable=not verbose)
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EdgeL3Warning)  # embed_files reported them
            windows, _ = file_windows(path, frontend.sample_rate, hop_size=hop_size, center=center)
        if len(windows) != len(embeddings[index]):  # one window pipeline: cannot differ
            raise EdgeL3Error(
                f'"{path}": {len(windows)} windows but {len(embeddings[index])} embeddings.'
            )
        patches.append(melspectrogram(windows, frontend))
    counts = [len(e) for e in embeddings]
    return TaskData(
        np.concatenate(embeddings).astype(np.float32),
        np.concatenate(patches),
        np.repeat(np.arange(len(counts)), counts),
        info,
    )


def teacher_overlap(reference, dataset) -> str | None:
    """A warning when the teacher's embedding model was itself trained on audio of ``dataset``.

    Known for the bundled ``tiny`` model, whose card lists the ESC-10 clips it
    was distilled from.

    Parameters
    ----------
    reference : ModelReference
    dataset : Dataset

    Returns
    -------
    str or None
        The text of the warning, naming the folds; None when there is no overlap.
    """
    if reference.kind != "bundled" or reference.source != "tiny":
        return None
    from ..bundled import tiny_card

    trained = {Path(n).stem for n in tiny_card().get("data", {}).get("esc10_train_clips", [])}
    overlap = sorted({f for p, f in zip(dataset.paths, dataset.folds) if p.stem in trained})
    if not overlap:
        return None
    return (
        f"the teacher 'tiny' was distilled from audio of folds {overlap} of this dataset; "
        "its embedding is not independent of those folds (use an official teacher)"
    )
