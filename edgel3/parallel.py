"""Parallel, resumable, shardable extraction over many files on one machine.

:func:`embed_files` runs ``jobs`` worker processes (``spawn`` start method:
TensorFlow is not fork-safe), each loading the model once, and writes one
``.npz`` per input (0.2.1's names) or a Parquet dataset. Finished files are
recorded in a results manifest in the output directory, so a killed run is
resumed by running the same command again; ``shard=(i, n)`` splits a corpus
between the tasks of a job array. See :mod:`edgel3.outputs` for the crash-safety
rules and ``docs/scale.rst`` for a tour.

Every file is embedded on its own, exactly as :func:`edgel3.get_embedding`
does for one signal, so the numbers do not depend on ``jobs`` or the engine.
"""

from __future__ import annotations

import logging
import numbers
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from .batch.inputs import gather_inputs, parse_shard, read_path_list, select_shard
from .batch.model_ref import ModelRef, resolve_model_ref
from .batch.plan import OUTPUT_FORMATS, RunSummary, check_run_options, plan_run, result_output
from .core import DEFAULT_BATCH_SIZE, FileResult
from .exceptions import AudioError, EdgeL3Error, EdgeL3Warning, OutputError, ParameterError
from .outputs import ErrorsFile, FileTask, ParquetPartWriter, new_run_id, npz_record
from .threads import cores_per_worker

__all__ = [
    "embed_files",
    "gather_inputs",
    "read_path_list",
    "parse_shard",
    "select_shard",
    "resolve_model_ref",
    "ModelRef",
    "RunSummary",
    "OUTPUT_FORMATS",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Options:
    hop_size: float
    center: bool
    batch_size: int
    output_format: str


# --------------------------------------------------------------------------- workers


@dataclass
class _Outcome:
    ok: bool
    rows: int = 0
    duration: float = 0.0
    embedding: object = None
    timestamps: object = None
    error: str | None = None
    warnings: tuple[str, ...] = ()
    fatal: BaseException | None = None


_WORKER: dict = {}


def _embed_one(task: FileTask, options: _Options, model) -> _Outcome:
    """Embed one file exactly as get_embedding does for one signal; write npz if asked."""
    from .core import embed_file
    from .files import save_embedding
    from .streaming import audio_info

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EdgeL3Warning)
            info = audio_info(task.path)
            embedding, stamps = embed_file(
                task.path,
                model,
                center=options.center,
                hop_size=options.hop_size,
                verbose=0,
                batch_size=options.batch_size,
            )
            if options.output_format == "npz":
                save_embedding(task.output, embedding, stamps)
    except (AudioError, OutputError) as exc:
        return _Outcome(False, error=str(exc))
    except Exception as exc:  # one bad file must not stop a long batch job
        logger.debug("unexpected error on %s", task.path, exc_info=True)
        return _Outcome(False, error=f"{type(exc).__name__}: {exc}")
    keep = options.output_format == "parquet"
    return _Outcome(
        True,
        rows=len(stamps),
        duration=info.frames / info.sample_rate,
        embedding=embedding if keep else None,
        timestamps=stamps if keep else None,
        warnings=tuple(str(w.message) for w in caught if issubclass(w.category, EdgeL3Warning)),
    )


def _watch_parent(parent_pid: int) -> None:
    """Exit a worker whose parent died (SIGKILL leaves pool workers orphaned otherwise)."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _init_worker(ref: ModelRef, threads: int, parent_pid: int) -> None:
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from .threads import configure_threads

        configure_threads(threads)  # TF, numba and BLAS share the cores: no oversubscription
        _WORKER["model"] = ref.load()
    except Exception as exc:  # reported by the first task, raised in the parent
        _WORKER["error"] = exc


def _worker_task(task: FileTask, options: _Options) -> _Outcome:
    if "error" in _WORKER:
        return _Outcome(False, fatal=_WORKER["error"])
    return _embed_one(task, options, _WORKER["model"])


def _run_inline(todo, options, ref, handle) -> None:
    model = ref.load()
    for index, task in todo:
        handle(index, task, _embed_one(task, options, model))


def _run_pool(todo, options, ref, jobs, handle) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = cores_per_worker(jobs)
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(ref, threads, os.getpid()),
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
                    outcome = future.result()
                except BrokenProcessPool as exc:
                    raise EdgeL3Error(
                        f"A worker process died while embedding {task.path} ({exc}); "
                        "run the same command again to resume."
                    ) from exc
                if outcome.fatal is not None:
                    raise outcome.fatal
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
) -> RunSummary:
    """Embed many files with ``jobs`` processes; resumable, shardable, crash-safe.

    Parameters
    ----------
    paths : sequence of path-like
        Audio files (see :func:`gather_inputs` for directories and lists).
    output_dir : path-like, optional
        Output directory; holds the results manifest (``_manifest*.jsonl``).
        Required for Parquet. ``.npz`` files go next to their inputs when
        None, and only existing outputs are skipped then.
    suffix : str, optional
        ``.npz`` names: ``NAME[_SUFFIX].npz``, as :func:`edgel3.process_file`.
    model, model_type, emb_dim, retrain_type, sparsity, center, hop_size
        As in :func:`edgel3.get_embedding`. With ``jobs > 1``, ``model`` must
        be a name or a file (a loaded model cannot be sent to other processes).
    jobs : int
        Worker processes, each loading the model once; 1 runs in this process.
    output_format : {'npz', 'parquet'}
        One ``.npz`` per file (0.2.1's arrays ``embedding`` and ``timestamps``),
        or a Parquet dataset with one row per window (``path``, ``timestamp``,
        ``embedding``, ``model``), written as atomic part files.
    shard : (int, int) or str, optional
        ``(i, n)`` or ``'i/n'``, 0-based: embed only shard ``i`` of ``n``
        (chosen by a hash of each path, see :func:`select_shard`).
    errors_file : path-like, optional
        JSON Lines file to which failed files are appended.
    batch_size : int
        Windows per forward pass (results do not depend on it).
    overwrite : bool
        Recompute files that are done.
    progress : bool
        Show a progress bar with files/s and audio-seconds/s.
    files_per_part : int
        Input files per Parquet part.

    Returns
    -------
    RunSummary

    Raises
    ------
    ParameterError, WeightsError
        Problems concerning every file are raised before any work is done.
    OutputError
        If the manifest or a Parquet part cannot be written.
    EdgeL3Error
        If a worker process dies (rerun to resume).
    """
    started = time.perf_counter()
    check_run_options(
        model_type, emb_dim, retrain_type, sparsity, center, hop_size, batch_size, output_format
    )
    if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs < 1:
        raise ParameterError(f"jobs must be a positive integer; got jobs={jobs!r}.")
    if isinstance(files_per_part, bool) or not isinstance(files_per_part, numbers.Integral):
        raise ParameterError(f"files_per_part must be an integer; got {files_per_part!r}.")
    if files_per_part < 1:
        raise ParameterError(f"files_per_part must be positive; got {files_per_part!r}.")
    ref = resolve_model_ref(model, model_type, emb_dim, retrain_type, sparsity)
    if jobs > 1 and not ref.portable:
        raise ParameterError(
            "With jobs > 1, model must be an official name or a file path; "
            f"got a loaded {type(ref.source).__name__}."
        )
    config = {"model": ref.model_id, "hop_size": hop_size, "center": bool(center)}
    config["format"] = output_format
    plan = plan_run(paths, output_dir, suffix, output_format, shard, config, overwrite)
    summary = RunSummary(run_id=new_run_id())
    summary.results = [None] * (len(plan.todo) + len(plan.skipped))
    for index, result in plan.skipped:
        summary.results[index] = result
    errors = ErrorsFile(errors_file, summary.run_id)
    writer = None
    if output_format == "parquet":
        writer = ParquetPartWriter(
            output_dir, plan.manifest, ref.model_id, summary.run_id, plan.tag, files_per_part
        )
    options = _Options(float(hop_size), bool(center), int(batch_size), output_format)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(plan.todo), unit="file", disable=not progress, smoothing=0.1)

    def handle(index: int, task: FileTask, outcome: _Outcome) -> None:
        output = result_output(task, output_dir)
        if outcome.ok:
            for message in outcome.warnings:
                logger.warning("%s: %s", task.path, message)
            if writer is not None:
                writer.add(task, outcome.embedding, outcome.timestamps, outcome.duration)
            elif plan.manifest is not None:
                plan.manifest.append([npz_record(task, outcome.rows, outcome.duration)])
            summary.audio_seconds += outcome.duration
            result = FileResult(Path(task.path), output, "written", warnings=outcome.warnings)
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
            _run_inline(plan.todo, options, ref, handle)
        elif plan.todo:
            _run_pool(plan.todo, options, ref, min(jobs, len(plan.todo)), handle)
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
