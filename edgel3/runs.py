"""Many files in this process: :func:`process_files` and its per-file :class:`FileResult`.

One loaded model embeds every file that needs it. Output names come from
:mod:`edgel3.naming` (one distinct output per input), the keep-or-recompute
decision from :mod:`edgel3.provenance` (made before any model is loaded), and
each output is computed under its lock (:mod:`edgel3.locks`). Worker
processes and Ray (:mod:`edgel3.batch`) apply the same rules.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from .checks import check_flag, check_positive_int
from .core import DEFAULT_BATCH_SIZE, check_embedding_options, embed_file
from .exceptions import AudioError, EdgeL3Warning, OutputError
from .files import save_embedding
from .locks import output_lock, report_wait, sweep_partials
from .naming import output_paths
from .provenance import decide_output, header_windows, input_facts, make_provenance

__all__ = ["FileResult", "process_files"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileResult:
    """Outcome of processing one file with :func:`process_files`.

    Attributes
    ----------
    path : pathlib.Path
        Input file.
    output : pathlib.Path or None
        Output file (``None`` if it failed before a path was known).
    status : {'written', 'skipped', 'failed'}
    error : str or None
        The error message of a failed file.
    warnings : tuple of str
        EdgeL3Warning messages raised while processing it.
    note : str or None
        Why a file was skipped (``'up to date'``) or recomputed
        (``'stale: hop_size 0.1 -> 0.5'``).
    """

    path: Path
    output: Path | None
    status: str
    error: str | None = None
    warnings: tuple[str, ...] = ()
    note: str | None = None


def process_files(
    filepaths,
    output_dir=None,
    suffix=None,
    model=None,
    model_type="sparse",
    emb_dim=128,
    sparsity=95.45,
    center=True,
    hop_size=0.1,
    *,
    retrain_type="ft",
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
    keep_existing: bool = False,
    progress: bool = False,
    fast_resample: bool = False,
    strict: bool = False,
    runtime: str = "auto",
    roots=(),
) -> list[FileResult]:
    """Embed many files with one loaded model; a bad file is reported, not fatal.

    The positional order is :func:`edgel3.process_file`'s (up to ``hop_size``). Each
    input gets its own output (:func:`edgel3.naming.output_paths`: colliding
    names are told apart), decided before anything is computed. An existing
    output is kept only if its provenance record (:mod:`edgel3.provenance`)
    says it was made from the same input, model, options and edgel3 version;
    otherwise it is recomputed (its result's ``note`` says why). The model is
    loaded only if some file needs computing. While computing an output the
    run holds its lock (:func:`edgel3.locks.output_lock`): a concurrent run
    reaching the same output waits, then keeps the fresh result.

    Parameters
    ----------
    filepaths : iterable of path-like
        Audio files.
    output_dir, suffix
        As in :func:`edgel3.process_file`.
    model, model_type, emb_dim, sparsity, center, hop_size, retrain_type
        As in :func:`edgel3.get_embedding`.
    batch_size : int
        Windows per forward pass.
    overwrite : bool
        Recompute every file, current or not.
    keep_existing : bool
        Keep every existing output without checking it (edgel3 0.2.1's rule).
    progress : bool
        Show a progress bar over files.
    fast_resample : bool
        Use the fast, non-exact resampler (see :func:`edgel3.get_embedding`).
    strict : bool
        Refuse (fail) a file whose data is shorter than its header declares,
        instead of embedding what is present with a warning.
    runtime : {'auto', 'numpy', 'keras'}
        What runs the model (see :func:`edgel3.get_embedding`).
    roots : iterable of path-like
        Directories the inputs were found in: their sub-folders are kept under
        ``output_dir``.

    Returns
    -------
    list of FileResult
        One per input, in order.

    Raises
    ------
    ParameterError, WeightsError
        Problems that concern every file (options, model) are raised at once.
    """
    from tqdm.auto import tqdm

    reference, center, hop_size, _ = check_embedding_options(
        model, model_type, emb_dim, retrain_type, sparsity, center, hop_size, runtime=runtime
    )
    batch_size = check_positive_int(batch_size, "batch_size")
    overwrite = check_flag(overwrite, "overwrite")
    keep_existing = check_flag(keep_existing, "keep_existing")
    strict = check_flag(strict, "strict")
    paths = [Path(p) for p in filepaths]
    outputs = [Path(o) for o in output_paths(paths, output_dir, suffix, roots=roots)]
    model_id = reference.model_id

    def expected(path: Path) -> dict:
        return make_provenance(model_id, hop_size, center, fast_resample, input_facts(path))

    results: list[FileResult | None] = [None] * len(paths)
    todo, windows = [], 0
    for index, (path, output) in enumerate(zip(paths, outputs)):
        facts = input_facts(path)
        record = make_provenance(model_id, hop_size, center, fast_resample, facts)
        reason = decide_output(output, record, overwrite=overwrite, keep_existing=keep_existing)
        if reason is None:
            results[index] = FileResult(path, output, "skipped", note="up to date")
        else:
            todo.append((index, path, output))
            windows += header_windows(facts, hop_size, center)
    if todo:
        reference = reference.for_job(windows)  # 'auto' decided once for the run
        reference.prepare()  # load once (cached), for every file
    for index, path, output in tqdm(todo, unit="file", disable=not progress or not todo):
        lock = output_lock(output)
        try:
            lock.acquire(on_wait=report_wait(output))
        except OutputError as exc:
            results[index] = FileResult(path, output, "failed", str(exc))
            continue
        try:
            record = expected(path)  # after waiting: another run may have made it
            reason = decide_output(output, record, overwrite=overwrite, keep_existing=keep_existing)
            if reason is None:
                results[index] = FileResult(path, output, "skipped", note="up to date")
                continue
            sweep_partials(output)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", EdgeL3Warning)
                embedding, stamps = embed_file(
                    path,
                    model=reference.source,
                    center=center,
                    hop_size=hop_size,
                    batch_size=batch_size,
                    fast_resample=fast_resample,
                    strict=strict,
                    runtime=reference.runtime,
                )
                save_embedding(output, embedding, stamps, provenance=record)
        except (AudioError, OutputError) as exc:
            logger.warning("skipping %s: %s", path, exc)
            results[index] = FileResult(path, output, "failed", str(exc))
            continue
        finally:
            lock.release()
        messages = tuple(dict.fromkeys(str(w.message) for w in caught))
        for message in messages:
            logger.warning("%s: %s", path, message)
        note = reason if reason.startswith("stale") else None
        results[index] = FileResult(path, output, "written", warnings=messages, note=note)
    return results
