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

import csv
import hashlib
import logging
import numbers
import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from .core import DEFAULT_BATCH_SIZE, FileResult, _check_batch_size, _check_options
from .exceptions import AudioError, EdgeL3Error, EdgeL3Warning, OutputError, ParameterError
from .files import collect_audio_files, get_output_path
from .outputs import (
    ErrorsFile,
    FileTask,
    ParquetPartWriter,
    ResultsManifest,
    new_run_id,
    npz_record,
    remove_partial_outputs,
    shard_tag,
)
from .specs import REGISTRY, get_spec, resolve_spec

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

OUTPUT_FORMATS = ("npz", "parquet")


# --------------------------------------------------------------------------- inputs


def read_path_list(path) -> list[Path]:
    """Read a list of input paths from a text or CSV file.

    A ``.csv`` file needs a header row; paths are taken from its ``path``
    column (else ``filename``, else ``file``, else the first column). Any other
    file holds one path per line; blank lines and lines starting with ``#``
    are skipped. Relative paths are relative to the list's own folder.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    AudioError
        If the list cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AudioError(f'Could not read the list of files "{path}": {exc}') from exc
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if not rows:
            return []
        header = [cell.strip().lower() for cell in rows[0]]
        column = next((header.index(n) for n in ("path", "filename", "file") if n in header), 0)
        entries = [row[column].strip() for row in rows[1:] if len(row) > column]
    else:
        entries = [line.strip() for line in text.splitlines()]
        entries = [e for e in entries if not e.startswith("#")]
    return [path.parent / e for e in entries if e]


def gather_inputs(inputs: Iterable = (), *, manifest=None, recursive: bool = True) -> list[Path]:
    """Expand inputs and a list file into a de-duplicated list of audio files.

    Parameters
    ----------
    inputs : iterable of path-like
        Files and directories, as :func:`edgel3.files.collect_audio_files` takes them
        (a missing one is an error).
    manifest : path-like, optional
        A list of paths (see :func:`read_path_list`); a listed file that is
        missing is kept, to be reported as a failed file.
    recursive : bool
        Search directories recursively.

    Returns
    -------
    list of pathlib.Path
        Positional inputs first, then the listed ones, each file once.
    """
    found = collect_audio_files(inputs, recursive=recursive)
    if manifest is not None:
        for entry in read_path_list(manifest):
            if entry.is_dir():
                found.extend(collect_audio_files([entry], recursive=recursive))
            else:
                found.append(entry)
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(os.path.abspath(path), path)
    return list(unique.values())


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``'i/n'`` (0-based ``i``, ``0 <= i < n``) into ``(i, n)``.

    Raises
    ------
    ParameterError
        If ``text`` is not of that form.

    Examples
    --------
    >>> parse_shard('2/8')
    (2, 8)
    """
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ParameterError(f"shard must be 'i/n' with integers; got {text!r}.") from None
    _check_shard((index, count))
    return index, count


def _check_shard(shard) -> tuple[int, int] | None:
    if shard is None:
        return None
    if isinstance(shard, str):
        return parse_shard(shard)
    index, count = shard
    if not (isinstance(index, numbers.Integral) and isinstance(count, numbers.Integral)) or not (
        0 <= index < count
    ):
        raise ParameterError(
            f"shard index is 0-based: expected i/n with 0 <= i < n; got {index}/{count}."
        )
    return int(index), int(count)


def _shard_of(path, count: int) -> int:
    digest = hashlib.sha1(Path(path).as_posix().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(paths: Sequence, index: int, count: int) -> list:
    """The paths of shard ``index`` of ``count``, chosen by a hash of each path.

    A path's shard depends on the path alone (as listed, not on the other
    files or their order), so shards are stable across runs and over a growing
    corpus, and the ``count`` shards cover every path exactly once.

    Parameters
    ----------
    paths : sequence of path-like
    index, count : int
        ``0 <= index < count``.

    Returns
    -------
    list
        The selected paths, in their original order.
    """
    index, count = _check_shard((index, count))
    return [p for p in paths if _shard_of(p, count) == index]


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ModelRef:
    """A model as worker processes and Ray actors can load it.

    Attributes
    ----------
    source : str or keras.Model
        An official model name or an absolute file path (portable), or a
        loaded model (usable in this process only).
    model_id : str
        Written to manifests and Parquet rows: the official name, or
        ``<file name>@<sha1 prefix>`` for other files.
    sample_rate : int or None
        The model's input rate, when known without loading it.
    weights : str or None
        For official models, the weight file found by this process (used by
        workers where it exists; elsewhere they find or download their own).
    """

    source: object
    model_id: str
    sample_rate: int | None
    weights: str | None = None

    @property
    def portable(self) -> bool:
        """Whether other processes can load the model from ``source``."""
        return isinstance(self.source, str)

    def load(self):
        """Load (or return) the model in this process; cached per process."""
        from .core import _load_official, _resolve_model

        if self.weights is not None:
            # Environment settings (EDGEL3_WEIGHTS_DIR) may not reach Ray workers: pass the file.
            found = self.weights if os.path.exists(self.weights) else None
            return _load_official(get_spec(self.source), weights_path=found)
        return _resolve_model(self.source, "sparse", 128, "ft", 95.45)


def resolve_model_ref(
    model=None, model_type="sparse", emb_dim=128, retrain_type="ft", sparsity=95.45
) -> ModelRef:
    """Resolve ``get_embedding``'s model arguments without loading TensorFlow.

    Official weights are located (downloaded and verified if needed) here, once,
    so that workers never download concurrently.

    Returns
    -------
    ModelRef

    Raises
    ------
    ParameterError, WeightsError
    """
    from .weights import get_weights_path

    if model is None or (isinstance(model, str) and not os.path.exists(model)):
        if model is None:
            spec = resolve_spec(model_type, emb_dim, retrain_type, sparsity)
        else:
            try:
                spec = get_spec(model)
            except ParameterError:
                raise ParameterError(
                    f"model={model!r} is neither an existing file nor an official model name "
                    "(see `edgel3 models`)."
                ) from None
        weights = str(get_weights_path(spec))
        return ModelRef(spec.name, spec.name, spec.sample_rate, weights)
    if isinstance(model, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(model))
        return ModelRef(path, _file_model_id(path), _file_sample_rate(path))
    if hasattr(model, "predict_on_batch") and hasattr(model, "layers"):
        return ModelRef(model, str(model.name), None)
    raise ParameterError(
        "model must be None, a keras.Model, a model name or a file path; "
        f"got {type(model).__name__}."
    )


def _file_model_id(path: str) -> str:
    from .weights import file_blob_sha1

    digest = file_blob_sha1(path)
    for spec in REGISTRY.values():
        if spec.blob_sha1 == digest:
            return spec.name
    return f"{os.path.basename(path)}@{digest[:12]}"


def _file_sample_rate(path: str) -> int | None:
    if not path.endswith((".h5", ".h5.gz")):
        return None
    from .legacy_h5 import infer_spec, read_legacy_h5

    try:
        return infer_spec(read_legacy_h5(path)).sample_rate
    except EdgeL3Error:
        return None  # the real error is raised where the model is loaded


# --------------------------------------------------------------------------- planning


@dataclass
class RunSummary:
    """Outcome of a batch run.

    Attributes
    ----------
    results : list of FileResult
        One per input of the run (its shard), in input order.
    seconds : float
        Wall time of the run, model loading and worker start-up included.
    audio_seconds : float
        Duration of the audio embedded (written files only).
    run_id : str
        Id written to output names, manifest and errors file.
    """

    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0
    run_id: str = ""

    def count(self, status: str) -> int:
        """Number of results with ``status`` ('written', 'skipped' or 'failed')."""
        return sum(result.status == status for result in self.results)

    @property
    def files_per_second(self) -> float:
        """Written files per second of wall time."""
        return self.count("written") / self.seconds if self.seconds else 0.0

    @property
    def audio_seconds_per_second(self) -> float:
        """Seconds of audio embedded per second of wall time."""
        return self.audio_seconds / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class _Options:
    hop_size: float
    center: bool
    batch_size: int
    output_format: str


@dataclass
class _Plan:
    todo: list[tuple[int, FileTask]]
    skipped: list[tuple[int, FileResult]]
    manifest: ResultsManifest | None
    tag: str


def _check_run_options(
    model_type, emb_dim, retrain_type, sparsity, center, hop_size, batch_size, output_format
):
    _check_options(model_type, emb_dim, retrain_type, sparsity, center, hop_size, 0)
    _check_batch_size(batch_size)
    if output_format not in OUTPUT_FORMATS:
        raise ParameterError(
            f"output_format must be one of {OUTPUT_FORMATS}; got output_format={output_format!r}."
        )


def _plan(paths, output_dir, suffix, output_format, shard, config, overwrite) -> _Plan:
    """Select the shard, stat the files and skip those already done."""
    shard = _check_shard(shard)
    if shard is not None:
        paths = select_shard(paths, *shard)
    tag = shard_tag(shard)
    if output_format == "parquet" and not output_dir:
        raise ParameterError("Parquet output needs an output directory (output_dir / -o DIR).")
    manifest = ResultsManifest(output_dir, config, tag) if output_dir else None
    if output_format == "parquet":
        for removed in remove_partial_outputs(output_dir, tag):
            logger.info("removed %s, left by an interrupted run", removed)
    todo, skipped = [], []
    for index, path in enumerate(paths):
        output = None
        if output_format == "npz":
            output = os.path.abspath(get_output_path(path, (suffix or "") + ".npz", output_dir))
        task = FileTask.from_path(path, output)
        done = not overwrite and manifest is not None and manifest.is_done(task)
        if output is not None and not overwrite and not done:
            # 0.2.1's rule (an existing output is kept) unless the manifest says it is stale.
            stale = manifest is not None and manifest.is_outdated(task)
            done = os.path.exists(output) and not stale
        if done:
            skipped.append(
                (index, FileResult(Path(path), _result_output(task, output_dir), "skipped"))
            )
        else:
            todo.append((index, task))
    return _Plan(todo, skipped, manifest, tag)


def _result_output(task: FileTask, output_dir) -> Path | None:
    if task.output is not None:
        return Path(task.output)
    return Path(output_dir) if output_dir else None


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
    from .core import get_embedding
    from .files import read_audio, save_embedding

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EdgeL3Warning)
            audio, sr = read_audio(task.path)
            embedding, stamps = get_embedding(
                audio,
                sr,
                model=model,
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
        duration=len(audio) / sr,
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
        import tensorflow as tf

        # Share the cores instead of oversubscribing them (results do not depend on it).
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        _WORKER["model"] = ref.load()
    except Exception as exc:  # reported by the first task, raised in the parent
        _WORKER["error"] = exc


def _worker_task(task: FileTask, options: _Options) -> _Outcome:
    if "error" in _WORKER:
        return _Outcome(False, fatal=_WORKER["error"])
    return _embed_one(task, options, _WORKER["model"])


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _run_inline(todo, options, ref, handle) -> None:
    model = ref.load()
    for index, task in todo:
        handle(index, task, _embed_one(task, options, model))


def _run_pool(todo, options, ref, jobs, handle) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, _cpu_count() // jobs)
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
    _check_run_options(
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
    plan = _plan(paths, output_dir, suffix, output_format, shard, config, overwrite)
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
        output = _result_output(task, output_dir)
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
