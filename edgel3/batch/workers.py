"""Local batch extraction: :func:`embed_files` with a pool of worker processes.

:func:`embed_files` runs ``jobs`` worker processes (``spawn`` start method:
TensorFlow is not fork-safe), each loading the model once, and writes one
``.npz`` per input (0.2.1's names) or a Parquet dataset. Finished files are
recorded in a results manifest in the output directory, so a killed run is
resumed by running the same command again; ``shard=(i, n)`` splits a corpus
between the tasks of a job array. See :mod:`edgel3.batch.outputs` for the
crash-safety rules and ``docs/scale.rst`` for a tour.

Every file goes through :func:`edgel3.engine.embed_path` on its own (long
files are streamed), exactly as :func:`edgel3.embed_file` does, so the rows
and timestamps do not depend on ``jobs``; the values agree within float32
rounding (TensorFlow's and numba's reductions depend on the thread count,
which differs between the caller and its workers; see ``docs/scale.rst``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from ..checks import check_flag, check_positive_int
from ..core import DEFAULT_BATCH_SIZE
from ..exceptions import EdgeL3Error, OutputError
from ..runs import FileResult
from ..tf_logging import DEFAULT_LEVEL, LEVEL_VARIABLE
from ..threads import cores_per_worker
from .embedding import FileOutcome, embed_one_file
from .outputs import ErrorsFile, FileTask, manifest_record, new_run_id
from .parquet import ParquetPartWriter, dataset_metadata
from .plan import (
    RunOptions,
    RunSummary,
    check_portable,
    check_run_options,
    plan_run,
    result_output,
)

__all__ = ["embed_files"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _embed_task(reference, task: FileTask, options: RunOptions) -> FileOutcome:
    output = task.output if options.output_format == "npz" else None
    keep = options.output_format == "parquet"
    return embed_one_file(
        reference,
        task.abspath,
        options,
        output=output,
        keep=keep,
        provenance=task.provenance,
        recheck=task.reason != "overwrite",
    )


def _watch_parent(parent_pid: int) -> None:
    """Exit a worker whose parent died (SIGKILL leaves pool workers orphaned otherwise)."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _init_worker(reference, threads: int, parent_pid: int) -> None:
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    os.environ.setdefault(LEVEL_VARIABLE, DEFAULT_LEVEL)  # as edgel3.tf_logging sets it
    _WORKER["reference"] = reference
    try:
        from ..threads import configure_threads

        configure_threads(threads)  # TF, numba and BLAS share the cores: no oversubscription
        reference.prepare()  # once per worker (cached); embed_path picks the runner per file
    except Exception as exc:  # reported by the first task, raised in the parent
        _WORKER["error"] = exc


def _worker_task(task: FileTask, options: RunOptions):
    """Run in a worker: ``(outcome, None)``, or ``(None, error)`` for a run-wide error."""
    if "error" in _WORKER:
        return None, _WORKER["error"]
    from .embedding import RUN_ERRORS

    try:
        return _embed_task(_WORKER["reference"], task, options), None
    except RUN_ERRORS as exc:
        return None, exc


def _run_inline(todo, options, reference, handle) -> None:
    reference.prepare()
    for index, task in todo:
        handle(index, task, _embed_task(reference, task, options))


def _run_pool(todo, options, reference, jobs, handle) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = cores_per_worker(jobs)
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(reference, threads, os.getpid()),
    )
    queue = iter(todo)
    pending = {}

    def submit(count: int) -> None:
        for index, task in islice(queue, count):
            pending[pool.submit(_worker_task, task, options)] = (index, task)

    try:
        submit(2 * jobs)  # a short queue keeps memory flat on huge corpora
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index, task = pending.pop(future)
                try:
                    outcome, fatal = future.result()
                except BrokenProcessPool as exc:
                    raise EdgeL3Error(
                        f"A worker process died while embedding {task.path} ({exc}); "
                        "run the same command again to resume."
                    ) from exc
                if fatal is not None:
                    raise fatal
                handle(index, task, outcome)
            submit(len(done))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- driver


def embed_files(
    paths: Sequence,
    output_dir=None,
    suffix=None,
    model=None,
    model_type="sparse",
    emb_dim=128,
    retrain_type="ft",
    sparsity=95.45,
    center=True,
    hop_size=0.1,
    *,
    jobs: int = 1,
    output_format: str = "npz",
    shard=None,
    errors_file=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
    progress: bool = False,
    files_per_part: int = 256,
    fast_resample: bool = False,
    strict: bool = False,
    runtime: str = "auto",
    keep_existing: bool = False,
    roots=(),
) -> RunSummary:
    """Embed many files with ``jobs`` processes; resumable, shardable, crash-safe.

    Parameters
    ----------
    paths : sequence of path-like
        Audio files (see :func:`~edgel3.batch.inputs.gather_inputs` for
        directories and lists).
    output_dir : path-like, optional
        Output directory; holds the results manifest (``_manifest*.jsonl``).
        Required for Parquet. ``.npz`` files go next to their inputs when
        None, and only existing outputs are skipped then.
    suffix : str, optional
        ``.npz`` names: ``NAME[_SUFFIX].npz``, as :func:`edgel3.process_file`.
    model, model_type, emb_dim, retrain_type, sparsity, center, hop_size
        As in :func:`edgel3.get_embedding` (resolved by
        :func:`edgel3.reference.resolve_model`). With ``jobs > 1``, ``model``
        must be a name or a file (a loaded model cannot be sent to other
        processes).
    jobs : int
        Worker processes, each loading the model once; 1 runs in this process.
    output_format : {'npz', 'parquet'}
        One ``.npz`` per file (0.2.1's arrays ``embedding`` and ``timestamps``),
        or a Parquet dataset with one row per window (``path``, ``timestamp``,
        ``embedding``, ``model``), written as atomic part files.
    shard : (int, int) or str, optional
        ``(i, n)`` or ``'i/n'``, 0-based: embed only shard ``i`` of ``n``
        (chosen by a hash of each path, see
        :func:`~edgel3.batch.inputs.select_shard`).
    errors_file : path-like, optional
        JSON Lines file to which failed files (``level`` ``'error'``) and
        per-file warnings (``'warning'``) are appended.
    batch_size : int
        Windows per forward pass (results do not depend on it).
    overwrite : bool
        Recompute files that are done.
    keep_existing : bool
        Keep every existing ``.npz`` without checking its provenance.
    roots : iterable of path-like
        Directories searched for the inputs: their sub-folders are kept under
        ``output_dir`` (:func:`edgel3.naming.output_paths`).
    progress : bool
        Show a progress bar with files/s and audio-seconds/s.
    files_per_part : int
        Input files per Parquet part.
    fast_resample : bool
        Resample with the fast, non-exact resampler (see
        :func:`edgel3.get_embedding`); recorded in the manifest, so exact and
        fast outputs are never mistaken for each other.
    strict : bool
        Fail files whose data is shorter than their header declares (by
        default they are embedded with a ``TruncatedAudioWarning``).
    runtime : {'auto', 'numpy', 'keras'}
        What runs the model (see :func:`edgel3.get_embedding`).

    Returns
    -------
    RunSummary

    Raises
    ------
    ParameterError, WeightsError
        Problems concerning every file are raised before any work is done
        (or, for an option only a worker can check, when it is found).
    OutputError
        If the manifest or a Parquet part cannot be written.
    EdgeL3Error
        If a worker process dies (rerun to resume).
    """
    started = time.perf_counter()
    reference, options = check_run_options(
        model,
        model_type,
        emb_dim,
        retrain_type,
        sparsity,
        center,
        hop_size,
        batch_size,
        output_format,
        fast_resample,
        strict,
        runtime,
    )
    jobs = check_positive_int(jobs, "jobs")
    files_per_part = check_positive_int(files_per_part, "files_per_part")
    if jobs > 1:
        check_portable(reference, "jobs > 1")
    overwrite = check_flag(overwrite, "overwrite")
    keep_existing = check_flag(keep_existing, "keep_existing")
    summary = RunSummary(run_id=new_run_id())
    errors = ErrorsFile(errors_file, summary.run_id)
    plan = plan_run(
        paths,
        output_dir,
        suffix,
        shard,
        reference,
        options,
        overwrite=overwrite,
        keep_existing=keep_existing,
        roots=roots,
    )
    try:
        return _execute(
            plan,
            reference,
            options,
            jobs,
            output_dir,
            files_per_part,
            errors,
            summary,
            progress,
            started,
        )
    finally:
        plan.close()


def _execute(
    plan, reference, options, jobs, output_dir, files_per_part, errors, summary, progress, started
) -> RunSummary:
    """Run a plan's todo list and fill ``summary``."""
    summary.results = [None] * (len(plan.todo) + len(plan.skipped))
    for index, result in plan.skipped:
        summary.results[index] = result
    writer = None
    if options.output_format == "parquet":
        writer = ParquetPartWriter(
            output_dir,
            plan.manifest,
            reference.model_id,
            summary.run_id,
            plan.tag,
            files_per_part,
            metadata=dataset_metadata(plan.manifest.config, reference),
        )
    if plan.todo:
        # Official weights found once, before any worker starts; 'auto' decided for the run.
        reference = reference.located().for_job(plan.windows)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(plan.todo), unit="file", disable=not progress or not plan.todo, smoothing=0.1
    )

    def handle(index: int, task: FileTask, outcome: FileOutcome) -> None:
        output = result_output(task, output_dir)
        if outcome.kept:
            result = FileResult(Path(task.path), output, "skipped", note="up to date")
        elif outcome.ok:
            for message in outcome.warnings:
                logger.warning("%s: %s", task.path, message)
            errors.add([(task.path, message) for message in outcome.warnings], level="warning")
            facts = outcome.facts
            if writer is not None:
                writer.add(task, outcome.embedding, outcome.timestamps, outcome.duration, **facts)
            elif plan.manifest is not None:
                record = manifest_record(task, outcome.rows, outcome.duration, **facts)
                plan.manifest.append([record])
            summary.audio_seconds += outcome.duration
            note = task.reason if task.reason.startswith("stale") else None
            result = FileResult(
                Path(task.path), output, "written", warnings=outcome.warnings, note=note
            )
        else:
            logger.warning("skipping %s: %s", task.path, outcome.error)
            errors.add([(task.path, outcome.error)])
            result = FileResult(Path(task.path), output, "failed", outcome.error)
        summary.results[index] = result
        elapsed = time.perf_counter() - started
        bar.set_postfix_str(f"{summary.audio_seconds / elapsed:.1f} audio-s/s", refresh=False)
        bar.update(1)

    try:
        if plan.todo and jobs == 1:
            _run_inline(plan.todo, options, reference, handle)
        elif plan.todo:
            _run_pool(plan.todo, options, reference, min(jobs, len(plan.todo)), handle)
    except BaseException:
        if writer is not None and not isinstance(sys.exc_info()[1], OutputError):
            writer.flush()  # keep what is finished; the rest is resumed by the next run
        raise
    else:
        if writer is not None:
            writer.flush()
    finally:
        bar.close()
    summary.results = [r for r in summary.results if r is not None]
    summary.seconds = time.perf_counter() - started
    return summary
