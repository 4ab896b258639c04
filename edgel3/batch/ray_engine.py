"""Embedding extraction on a Ray cluster (or a local Ray instance) with Ray Data.

The pipeline is Ray Data's offline batch inference pattern::

    file paths --map_batches--> actor pool (each actor holds the model and
    embeds each file with edgel3.engine.embed_path, streaming long files)
    --write_parquet--> Parquet dataset

Ray is an optional dependency (``pip install edgel3[ray]``), imported only
inside :func:`embed_files_ray`. Every node needs edgel3 installed (or pass
``runtime_env`` through ``ray_init_kwargs``) and must reach the audio files
and the output directory at the same paths (a shared file system).

A run writes its parts into a hidden staging directory; once every part is
written and the row count checks out, the finished files are recorded in the
results manifest and the directory is renamed to ``ray-[<shard>-]<run>``.
A killed run therefore leaves nothing visible, and rerunning the command (or a
job-array task with ``shard``) embeds only what is not recorded. Rows and
timestamps are those of :func:`edgel3.embed_file` for each file; the values
agree within float32 rounding (the actors' thread counts differ from the
caller's; see ``docs/scale.rst``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..checks import check_positive_int, is_real
from ..core import DEFAULT_BATCH_SIZE
from ..exceptions import EdgeL3Error, OutputError, ParameterError
from ..runs import FileResult
from ..tf_logging import DEFAULT_LEVEL, LEVEL_VARIABLE
from .embedding import embed_one_file
from .outputs import ErrorsFile, manifest_record, new_run_id
from .parquet import dataset_metadata, embeddings_table
from .plan import RunSummary, check_portable, check_run_options, plan_run, result_output

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
    """Actor holding the model; embeds each file of a batch with embed_path (streamed if long)."""

    def __init__(self, reference, model_id, options, threads, sink, config=None):
        os.environ.setdefault(LEVEL_VARIABLE, DEFAULT_LEVEL)  # as edgel3.tf_logging sets it
        from ..threads import configure_threads

        configure_threads(threads)  # TF, numba and BLAS share the actor's CPUs
        reference.prepare()  # once per actor (cached per process)
        self.reference = reference
        self.model_id = model_id
        self.options = options
        self.sink = sink
        self.config = config

    def __call__(self, batch: dict):
        import ray

        items, done, failed = [], [], []
        for i, index in enumerate(batch["index"]):
            index, path = int(index), str(batch["path"][i])
            # Actors do not share the driver's working directory: the absolute path.
            outcome = embed_one_file(
                self.reference, str(batch["abspath"][i]), self.options, keep=True
            )
            if not outcome.ok:
                failed.append((index, outcome.error))
                continue
            items.append((path, outcome.embedding, outcome.timestamps))
            done.append((index, outcome.rows, outcome.duration, outcome.warnings, outcome.facts))
        ray.get(self.sink.add.remote(done, failed))
        size = self.reference.embedding_size  # the loaded model's: types a part without rows
        return embeddings_table(items, self.model_id, self.config, embedding_size=size)


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
    fast_resample: bool = False,
    strict: bool = False,
    runtime: str = "auto",
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
        As in :func:`edgel3.get_embedding` (resolved by
        :func:`edgel3.reference.resolve_model`); ``model`` must be a name or
        a model file (actors load it themselves).
    address : str, optional
        Ray cluster address (``'ray://head:10001'``, ``'auto'``); None starts
        a local Ray instance (or joins the cluster in ``$RAY_ADDRESS``). Not
        used when Ray is already initialised.
    concurrency : int or (int, int), optional
        Size of the actor pool (fixed, or min and max for autoscaling);
        default: the cluster's CPUs divided by ``num_cpus``.
    num_cpus : float
        CPUs reserved per actor (also its thread count, at least 1).
    files_per_batch : int
        Files handed to an actor at a time.
    output_format : {'parquet'}
        Only Parquet: the Ray engine writes a dataset.
    shard, errors_file, batch_size, overwrite, progress, fast_resample, strict, runtime
        As in :func:`edgel3.batch.embed_files`.
    ray_init_kwargs : dict, optional
        Extra arguments of ``ray.init`` (``num_cpus``, ``runtime_env``, ...).

    Returns
    -------
    RunSummary

    Raises
    ------
    EdgeL3Error
        If Ray is not installed (with the install hint), or the pipeline fails.
    ParameterError, WeightsError, OutputError
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
    if output_format != "parquet":
        raise ParameterError(
            f"The Ray engine writes a Parquet dataset; got output_format={output_format!r}."
        )
    if not output_dir:
        raise ParameterError("The Ray engine needs an output directory (output_dir / -o DIR).")
    check_positive_int(files_per_batch, "files_per_batch")
    if not (is_real(num_cpus) and num_cpus > 0):
        raise ParameterError(f"num_cpus must be a positive number; got num_cpus={num_cpus!r}.")
    concurrency = _check_concurrency(concurrency)
    check_portable(reference, "the Ray engine")
    ray = _import_ray()
    errors = ErrorsFile(errors_file, new_run_id())
    plan = plan_run(paths, output_dir, None, shard, reference, options, overwrite=overwrite)
    try:
        return _run_plan(
            ray,
            plan,
            reference,
            options,
            errors,
            started,
            address,
            ray_init_kwargs,
            concurrency=concurrency,
            num_cpus=num_cpus,
            files_per_batch=files_per_batch,
            progress=progress,
        )
    finally:
        plan.close()


def _run_plan(ray, plan, reference, options, errors, started, address, ray_init_kwargs, **pipeline):
    """Run a planned Ray job and commit its dataset; the summary."""
    output_dir = plan.manifest.directory
    summary = RunSummary(run_id=errors.run_id)
    results = dict(plan.skipped)
    name = "ray-" + (f"{plan.tag}-" if plan.tag else "") + summary.run_id
    staging, final = Path(output_dir) / f".{name}", Path(output_dir) / name

    started_ray = False
    done, failed = {}, {}
    if plan.todo:
        # Official weights are found here, once: actors do not see this process's environment.
        reference = reference.located().for_job(plan.windows)  # 'auto' decided for the run
        if not ray.is_initialized():
            ray.init(address=address, **(ray_init_kwargs or {}))
            started_ray = True
    try:
        if plan.todo:
            done, failed = _run_pipeline(
                ray,
                plan,
                reference,
                options,
                staging,
                **pipeline,
            )
    finally:
        if started_ray:
            ray.shutdown()
    tasks = dict(plan.todo)
    _commit(plan, tasks, done, staging, final)
    failures = []
    for index, task in plan.todo:
        output = result_output(task, output_dir)
        if index in done:
            _, rows, duration, messages, _ = done[index]
            for message in messages:
                logger.warning("%s: %s", task.path, message)
            errors.add([(task.path, message) for message in messages], level="warning")
            summary.audio_seconds += duration
            results[index] = FileResult(Path(task.path), output, "written", warnings=messages)
        else:
            error = failed.get(index, "not embedded (lost by the pipeline)")
            logger.warning("skipping %s: %s", task.path, error)
            failures.append((task.path, error))
            results[index] = FileResult(Path(task.path), output, "failed", error)
    errors.add(failures)
    summary.results = [results[index] for index in sorted(results)]
    summary.seconds = time.perf_counter() - started
    return summary


def _check_concurrency(concurrency):
    """None, a positive int, or a ``(min, max)`` pair of them with ``min <= max``."""
    if concurrency is None:
        return None
    if isinstance(concurrency, tuple) and len(concurrency) == 2:
        low = check_positive_int(concurrency[0], "concurrency[0]")
        high = check_positive_int(concurrency[1], "concurrency[1]")
        if low > high:
            raise ParameterError(
                f"concurrency must be (min, max) with min <= max; got {concurrency!r}."
            )
        return low, high
    return check_positive_int(concurrency, "concurrency")


def _run_pipeline(
    ray,
    plan,
    reference,
    options,
    staging,
    *,
    concurrency,
    num_cpus,
    files_per_batch,
    progress,
):
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = bool(progress)
    if concurrency is None:
        cpus = ray.cluster_resources().get("CPU", 1)
        concurrency = max(1, int(cpus // num_cpus))
    if isinstance(concurrency, tuple):
        compute = ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
        actors = concurrency[0]
    else:
        compute = ray.data.ActorPoolStrategy(size=concurrency)
        actors = concurrency
    sink = ray.remote(num_cpus=0)(_Collector).remote()
    items = [{"index": i, "path": task.path, "abspath": task.abspath} for i, task in plan.todo]
    # At least one block per actor (so none idles), at most files_per_batch files per block.
    blocks = min(len(items), max(actors, -(-len(items) // files_per_batch)))
    per_block = -(-len(items) // blocks)
    dataset = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        _Embedder,
        fn_constructor_kwargs={
            "reference": reference,
            "model_id": reference.model_id,
            "options": options,
            "threads": max(1, int(num_cpus)),
            "sink": sink,
            "config": dataset_metadata(plan.manifest.config, reference),
        },
        batch_size=per_block,
        batch_format="numpy",
        compute=compute,
        num_cpus=num_cpus,
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
    expected = sum(item[1] for item in done.values())
    found = _count_rows(staging) if staging.is_dir() else 0
    if found != expected:
        raise OutputError(
            f"The Ray run staged {found} rows in {staging} but reported {expected}; "
            "nothing was committed (run the command again)."
        )
    records = []
    for index, (_, rows, duration, _, facts) in sorted(done.items()):
        record = manifest_record(tasks[index], rows, duration, **facts)
        record["output"] = final.name
        records.append(record)
    plan.manifest.append(records)
    try:
        os.rename(staging, final)
    except OSError as exc:
        raise OutputError(f'Cannot rename "{staging}" to "{final}": {exc}') from exc
