"""Embedding extraction on a Ray cluster (or a local Ray instance) with Ray Data.

The pipeline is Ray Data's offline batch inference pattern::

    file paths --map--> read + downmix + resample --map_batches--> actor pool
    (each actor holds the model) --write_parquet--> Parquet dataset

Ray is an optional dependency (``pip install edgel3[ray]``), imported only
inside :func:`embed_files_ray`. Every node needs edgel3 installed (or pass
``runtime_env`` through ``ray_init_kwargs``) and must reach the audio files
and the output directory at the same paths (a shared file system).

A run writes its parts into a hidden staging directory; once every part is
written and the row count checks out, the finished files are recorded in the
results manifest and the directory is renamed to ``ray-[<shard>-]<run>``.
A killed run therefore leaves nothing visible, and rerunning the command (or a
job-array task with ``shard``) embeds only what is not recorded. Numbers are
those of :func:`edgel3.get_embedding` for each file, bit for bit.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

from .batch.model_ref import resolve_model_ref
from .batch.plan import RunSummary, check_run_options, plan_run, result_output
from .core import DEFAULT_BATCH_SIZE, FileResult
from .exceptions import AudioError, EdgeL3Error, EdgeL3Warning, OutputError, ParameterError
from .outputs import ErrorsFile, _record, embeddings_table, new_run_id

__all__ = ["embed_files_ray", "RAY_INSTALL_HINT"]

logger = logging.getLogger(__name__)

RAY_INSTALL_HINT = "The Ray engine needs Ray Data: pip install edgel3[ray]"


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise EdgeL3Error(f"{RAY_INSTALL_HINT} ({exc}).") from exc
    return ray


def _read_row(row: dict, *, sample_rate: int) -> dict:
    """Map stage: read one file, downmix and resample it exactly as get_embedding does."""
    from .checks import check_audio
    from .files import read_audio
    from .pipeline import WindowPipeline

    out = {"index": row["index"], "path": row["path"], "duration": 0.0, "error": ""}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EdgeL3Warning)
            audio, sr = read_audio(row["abspath"])  # workers do not share our cwd
            out["duration"] = len(audio) / sr
            signal = _prepare_audio(check_audio(audio, "audio"), sr, sample_rate)
    except AudioError as exc:
        return {**out, "audio": np.zeros(0), "error": str(exc), "warnings": ""}
    except Exception as exc:  # one bad file must not stop the pipeline
        return {
            **out,
            "audio": np.zeros(0),
            "error": f"{type(exc).__name__}: {exc}",
            "warnings": "",
        }
    messages = [str(w.message) for w in caught if issubclass(w.category, EdgeL3Warning)]
    return {**out, "audio": signal, "warnings": "\n".join(messages)}


class _Collector:
    """Small actor gathering which files were embedded and which failed (deduplicated)."""

    def __init__(self):
        self.done: dict[int, tuple] = {}
        self.failed: dict[int, str] = {}

    def add(self, done, failed) -> None:
        for item in done:
            self.done[item[0]] = item
        for index, error in failed:
            self.failed[index] = error

    def results(self):
        return self.done, self.failed


class _Embedder:
    """Actor holding the model; embeds each file of a batch separately."""

    def __init__(self, ref, sample_rate, hop_size, center, batch_size, threads, sink):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from .threads import configure_threads

        configure_threads(threads)  # TF, numba and BLAS share the actor's CPUs
        self.model = ref.load()
        self.model_id = ref.model_id
        self.sample_rate = sample_rate
        self.hop_size = hop_size
        self.center = center
        self.batch_size = batch_size
        self.sink = sink

    def __call__(self, batch: dict):
        import ray

        from .core import get_embedding

        items, done, failed = [], [], []
        for i, index in enumerate(batch["index"]):
            index, path = int(index), str(batch["path"][i])
            if batch["error"][i]:
                failed.append((index, str(batch["error"][i])))
                continue
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", EdgeL3Warning)
                    embedding, stamps = get_embedding(
                        np.asarray(batch["audio"][i], dtype=np.float64),
                        self.sample_rate,
                        model=self.model,
                        center=self.center,
                        hop_size=self.hop_size,
                        verbose=0,
                        batch_size=self.batch_size,
                    )
            except Exception as exc:  # one bad file must not stop the pipeline
                failed.append((index, f"{type(exc).__name__}: {exc}"))
                continue
            messages = str(batch["warnings"][i]).split("\n") if batch["warnings"][i] else []
            messages += [str(w.message) for w in caught if issubclass(w.category, EdgeL3Warning)]
            items.append((path, embedding, stamps))
            duration = float(batch["duration"][i])
            done.append((index, len(stamps), duration, tuple(dict.fromkeys(messages))))
        ray.get(self.sink.add.remote(done, failed))
        return embeddings_table(items, self.model_id)


def _count_rows(directory: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in directory.rglob("*.parquet"))


def embed_files_ray(
    paths,
    output_dir,
    model=None,
    model_type="sparse",
    emb_dim=128,
    retrain_type="ft",
    sparsity=95.45,
    center=True,
    hop_size=0.1,
    *,
    address=None,
    concurrency=None,
    num_cpus: float = 1,
    files_per_batch: int = 8,
    output_format: str = "parquet",
    shard=None,
    errors_file=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
    progress: bool = False,
    ray_init_kwargs: dict | None = None,
) -> RunSummary:
    """Embed many files with a Ray Data pipeline into a Parquet dataset.

    Parameters
    ----------
    paths : sequence of path-like
        Audio files, readable by every Ray node at these paths.
    output_dir : path-like
        The Parquet dataset directory (one row per window: ``path``,
        ``timestamp``, ``embedding``, ``model``), also holding the results
        manifest; on a cluster, a shared file system path.
    model, model_type, emb_dim, retrain_type, sparsity, center, hop_size
        As in :func:`edgel3.get_embedding`; ``model`` must be an official
        name or a weight file (actors load it themselves).
    address : str, optional
        Ray cluster address (``'ray://head:10001'``, ``'auto'``); None starts
        a local Ray instance (or joins the cluster in ``$RAY_ADDRESS``). Not
        used when Ray is already initialised.
    concurrency : int or (int, int), optional
        Size of the actor pool (fixed, or min and max for autoscaling);
        default: the cluster's CPUs divided by ``num_cpus``.
    num_cpus : float
        CPUs reserved per actor (also its TensorFlow thread count).
    files_per_batch : int
        Files handed to an actor at a time.
    output_format : {'parquet'}
        Only Parquet: the Ray engine writes a dataset.
    shard, errors_file, batch_size, overwrite, progress
        As in :func:`edgel3.parallel.embed_files`.
    ray_init_kwargs : dict, optional
        Extra arguments of ``ray.init`` (``num_cpus``, ``runtime_env``, ...).

    Returns
    -------
    RunSummary

    Raises
    ------
    EdgeL3Error
        If Ray is not installed (with the install hint).
    ParameterError, WeightsError, OutputError
    """
    started = time.perf_counter()
    check_run_options(
        model_type, emb_dim, retrain_type, sparsity, center, hop_size, batch_size, output_format
    )
    if output_format != "parquet":
        raise ParameterError(
            f"The Ray engine writes a Parquet dataset; got output_format={output_format!r}."
        )
    if not output_dir:
        raise ParameterError("The Ray engine needs an output directory (output_dir / -o DIR).")
    if not (isinstance(files_per_batch, int) and files_per_batch >= 1):
        raise ParameterError(
            f"files_per_batch must be a positive integer; got {files_per_batch!r}."
        )
    if not (isinstance(num_cpus, (int, float)) and num_cpus > 0):
        raise ParameterError(f"num_cpus must be a positive number; got {num_cpus!r}.")
    ray = _import_ray()
    ref = resolve_model_ref(model, model_type, emb_dim, retrain_type, sparsity)
    if not ref.portable:
        raise ParameterError(
            "The Ray engine needs model as an official name or a file path; "
            f"got a loaded {type(ref.source).__name__}."
        )
    sample_rate = ref.sample_rate
    if sample_rate is None:
        from .core import model_sample_rate

        sample_rate = model_sample_rate(ref.load())
    config = {"model": ref.model_id, "hop_size": hop_size, "center": bool(center)}
    config["format"] = "parquet"
    plan = plan_run(paths, output_dir, None, "parquet", shard, config, overwrite)
    summary = RunSummary(run_id=new_run_id())
    results = dict(plan.skipped)
    name = "ray-" + (f"{plan.tag}-" if plan.tag else "") + summary.run_id
    staging, final = Path(output_dir) / f".{name}", Path(output_dir) / name

    started_ray = False
    if plan.todo and not ray.is_initialized():
        ray.init(address=address, **(ray_init_kwargs or {}))
        started_ray = True
    try:
        if plan.todo:
            done, failed = _run_pipeline(
                ray,
                plan,
                ref,
                sample_rate,
                staging,
                options=(hop_size, center, batch_size),
                concurrency=concurrency,
                num_cpus=num_cpus,
                files_per_batch=files_per_batch,
                progress=progress,
            )
        else:
            done, failed = {}, {}
    finally:
        if started_ray:
            ray.shutdown()
    tasks = dict(plan.todo)
    _commit(plan, tasks, done, staging, final)
    errors = []
    for index, task in plan.todo:
        output = result_output(task, output_dir)
        if index in done:
            _, rows, duration, messages = done[index]
            for message in messages:
                logger.warning("%s: %s", task.path, message)
            summary.audio_seconds += duration
            results[index] = FileResult(Path(task.path), output, "written", warnings=messages)
        else:
            error = failed.get(index, "not embedded (lost by the pipeline)")
            logger.warning("skipping %s: %s", task.path, error)
            errors.append((task.path, error))
            results[index] = FileResult(Path(task.path), output, "failed", error)
    ErrorsFile(errors_file, summary.run_id).add(errors)
    summary.results = [results[index] for index in sorted(results)]
    summary.seconds = time.perf_counter() - started
    return summary


def _run_pipeline(
    ray,
    plan,
    ref,
    sample_rate,
    staging,
    *,
    options,
    concurrency,
    num_cpus,
    files_per_batch,
    progress,
):
    hop_size, center, batch_size = options
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = bool(progress)
    if concurrency is None:
        cpus = ray.cluster_resources().get("CPU", 1)
        concurrency = max(1, int(cpus // num_cpus))
    if isinstance(concurrency, tuple):
        compute = ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
        actors = concurrency[0]
    else:
        compute = ray.data.ActorPoolStrategy(size=int(concurrency))
        actors = int(concurrency)
    sink = ray.remote(num_cpus=0)(_Collector).remote()
    items = [{"index": i, "path": task.path, "abspath": task.abspath} for i, task in plan.todo]
    # At least one block per actor (so none idles), at most files_per_batch files per block.
    blocks = min(len(items), max(actors, -(-len(items) // files_per_batch)))
    per_block = -(-len(items) // blocks)
    dataset = (
        ray.data.from_items(items, override_num_blocks=blocks)
        .map(_read_row, fn_kwargs={"sample_rate": sample_rate})
        .map_batches(
            _Embedder,
            fn_constructor_kwargs={
                "ref": ref,
                "sample_rate": sample_rate,
                "hop_size": float(hop_size),
                "center": bool(center),
                "batch_size": int(batch_size),
                "threads": max(1, int(num_cpus)),
                "sink": sink,
            },
            batch_size=per_block,
            batch_format="numpy",
            compute=compute,
            num_cpus=num_cpus,
        )
    )
    try:
        # Writing is light; zero CPUs lets it run while the actors hold every CPU.
        dataset.write_parquet(str(staging), ray_remote_args={"num_cpus": 0})
    except Exception as exc:  # Ray's errors carry remote tracebacks; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise EdgeL3Error(
            f"The Ray pipeline failed ({type(exc).__name__}: {first}); nothing was committed, "
            "run the command again (with --debug for the full error)."
        ) from exc
    return ray.get(sink.results.remote())


def _commit(plan, tasks, done, staging: Path, final: Path) -> None:
    """Check the staged rows, record the finished files, then rename the staging directory."""
    if not done:
        if staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
        return
    expected = sum(rows for _, rows, _, _ in done.values())
    found = _count_rows(staging) if staging.is_dir() else 0
    if found != expected:
        raise OutputError(
            f"The Ray run staged {found} rows in {staging} but reported {expected}; "
            "nothing was committed (run the command again)."
        )
    records = []
    for index, (_, rows, duration, _) in sorted(done.items()):
        record = _record(tasks[index], rows, duration)
        record["output"] = final.name
        records.append(record)
    plan.manifest.append(records)
    try:
        os.rename(staging, final)
    except OSError as exc:
        raise OutputError(f'Cannot rename "{staging}" to "{final}": {exc}') from exc
