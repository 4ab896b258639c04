"""Embedding one file of a batch run, the same way in every engine.

Local workers (:mod:`edgel3.batch.workers`) and Ray actors
(:mod:`edgel3.batch.ray_engine`) both call :func:`embed_one_file`, which runs
:func:`edgel3.engine.embed_path` (long files are streamed block by block),
records the :class:`~edgel3.exceptions.EdgeL3Warning` messages and turns the
errors that concern one file into a failed :class:`FileOutcome`, so that one
bad file never stops a long job. Errors that concern every file (an invalid
option, weights that cannot be loaded) are raised.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from ..exceptions import EdgeL3Error, EdgeL3Warning, ParameterError, WeightsError
from .plan import RunOptions

__all__ = ["FileOutcome", "embed_one_file", "RUN_ERRORS"]

logger = logging.getLogger(__name__)

#: Errors that concern every file of a run: raised, never recorded as a failed file.
RUN_ERRORS = (ParameterError, WeightsError)


@dataclass
class FileOutcome:
    """What embedding one file gave.

    Attributes
    ----------
    ok : bool
    rows : int
        Windows embedded.
    duration : float
        Seconds of audio (0 for a failed file).
    embedding : np.ndarray [shape=(rows, D), dtype=float32] or None
        Kept only when asked (Parquet output).
    timestamps : np.ndarray [shape=(rows,)] or None
    error : str or None
        The message of a failed file.
    warnings : tuple of str
        EdgeL3Warning messages (all-zero, short or truncated audio).
    kept : bool
        The output was found up to date once its lock was held (another run
        made it meanwhile): nothing was computed.
    sample_rate, frames : int
        The input's rate and the frames read (0 for a failed or kept file).
    """

    ok: bool
    rows: int = 0
    duration: float = 0.0
    embedding: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()
    kept: bool = False
    sample_rate: int = 0
    frames: int = 0

    @property
    def facts(self) -> dict:
        """``sample_rate`` and ``frames``, for the results manifest."""
        return {"sample_rate": self.sample_rate, "frames": self.frames}


def embed_one_file(
    reference,
    path: str,
    options: RunOptions,
    *,
    output: str | None = None,
    keep: bool = False,
    provenance: dict | None = None,
    recheck: bool = True,
) -> FileOutcome:
    """Embed one file with :func:`edgel3.engine.embed_path`; write its ``.npz`` if asked.

    An ``.npz`` is computed and written while holding its lock
    (:func:`edgel3.locks.output_lock`); once the lock is held, an output that
    another run has meanwhile made up to date is kept (``recheck``), and the
    temporary files of killed writers are swept.

    Parameters
    ----------
    reference : ModelReference
        Loaded once per process (:meth:`~edgel3.reference.ModelReference.load`
        is cached).
    path : str
        The file (an absolute path in worker processes: they may not share
        the caller's working directory).
    options : RunOptions
    output : str, optional
        Save ``embedding`` and ``timestamps`` to this ``.npz`` (atomically).
    keep : bool
        Return the arrays (for Parquet output).
    provenance : dict, optional
        The record the ``.npz`` carries (:func:`edgel3.provenance.make_provenance`).
    recheck : bool
        Keep an output found up to date once its lock is held (False with
        ``overwrite``).

    Returns
    -------
    FileOutcome

    Raises
    ------
    ParameterError, WeightsError
        Problems that concern every file (:data:`RUN_ERRORS`).
    """
    from ..engine import embed_path
    from ..files import save_embedding
    from ..locks import output_lock, report_wait, sweep_partials
    from ..provenance import stale_reason

    lock = output_lock(output) if output is not None else None
    try:
        if lock is not None:
            lock.acquire(on_wait=report_wait(output))
            if recheck and provenance is not None and stale_reason(output, provenance) is None:
                return FileOutcome(True, kept=True)
            sweep_partials(output)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EdgeL3Warning)
            embedding, stamps, info = embed_path(
                reference,
                path,
                hop_size=options.hop_size,
                center=options.center,
                batch_size=options.batch_size,
                fast_resample=options.fast_resample,
                strict=options.strict,
            )
            if output is not None:
                save_embedding(output, embedding, stamps, provenance=provenance)
    except RUN_ERRORS:
        raise
    except Exception as exc:  # one bad file must not stop a long batch job
        logger.debug("error on %s", path, exc_info=True)
        if isinstance(exc, EdgeL3Error):
            return FileOutcome(False, error=str(exc))
        return FileOutcome(False, error=f"{type(exc).__name__}: {exc}")
    finally:
        if lock is not None:
            lock.release()
    messages = [str(w.message) for w in caught if issubclass(w.category, EdgeL3Warning)]
    return FileOutcome(
        True,
        rows=len(stamps),
        duration=info.duration,
        embedding=embedding if keep else None,
        timestamps=stamps if keep else None,
        warnings=tuple(dict.fromkeys(messages)),
        sample_rate=info.sample_rate,
        frames=info.frames,
    )
