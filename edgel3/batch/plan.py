"""Run planning: option checks, the run's model, shard selection, what is done (manifest)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..checks import check_choice, check_flag, check_positive_int
from ..core import check_embedding_options
from ..exceptions import OutputError, ParameterError
from ..locks import DatasetLock
from ..naming import output_paths
from ..provenance import decide_output, header_windows, input_facts, make_provenance
from ..reference import ModelReference, resolve_model
from ..runs import FileResult
from ..version import __version__
from .inputs import check_shard, select_shard
from .outputs import FileTask, ResultsManifest, shard_tag
from .parquet import check_dataset_options, compact_dataset, remove_partial_outputs

__all__ = [
    "RunSummary",
    "Plan",
    "RunOptions",
    "OUTPUT_FORMATS",
    "check_run_options",
    "check_portable",
    "check_output_dir",
    "plan_run",
    "result_output",
    "ModelRef",
    "resolve_model_ref",
]

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("npz", "parquet")


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


@dataclass
class Plan:
    """What a run has to do: ``todo`` and ``skipped`` are ``(input index, ...)`` pairs."""

    todo: list[tuple[int, FileTask]]
    skipped: list[tuple[int, FileResult]]
    manifest: ResultsManifest | None
    tag: str
    lock: DatasetLock | None = None
    #: Windows of the files to do, from their headers (unreadable headers count 0):
    #: what ``runtime='auto'`` decides on (:meth:`edgel3.reference.ModelReference.for_job`).
    windows: int = 0

    def close(self) -> None:
        """Drop superseded Parquet rows, then release the dataset lock (if any)."""
        if self.lock is not None:
            try:
                compact_dataset(self.manifest.directory)
            finally:
                self.lock.release()
                self.lock = None


@dataclass(frozen=True)
class RunOptions:
    """The checked per-file options every engine passes to :func:`edgel3.engine.embed_path`.

    Attributes
    ----------
    hop_size : float
    center : bool
    batch_size : int
    fast_resample : bool
    output_format : {'npz', 'parquet'}
    strict : bool
        Refuse files whose data is shorter than their header declares.
    """

    hop_size: float
    center: bool
    batch_size: int
    fast_resample: bool
    output_format: str
    strict: bool = False

    def config(self, reference: ModelReference) -> dict:
        """What makes two runs' outputs comparable: the manifest's config.

        Parameters
        ----------
        reference : ModelReference

        Returns
        -------
        dict
            ``model`` (:attr:`~edgel3.reference.ModelReference.model_id`),
            ``hop_size``, ``center``, ``fast_resample``, ``format`` and
            ``edgel3`` (the version).
        """
        return {
            "model": reference.model_id,
            "hop_size": self.hop_size,
            "center": self.center,
            "fast_resample": self.fast_resample,
            "format": self.output_format,
            "edgel3": __version__,
        }


def check_run_options(
    model,
    model_type,
    emb_dim,
    retrain_type,
    sparsity,
    center,
    hop_size,
    batch_size,
    output_format,
    fast_resample=False,
    strict=False,
    runtime="auto",
) -> tuple[ModelReference, RunOptions]:
    """Check the options shared by every engine and resolve the run's model.

    Nothing is loaded or downloaded: engines call
    :meth:`~edgel3.reference.ModelReference.located` once the run is planned,
    before starting workers, so that these never download concurrently.

    Parameters
    ----------
    model, model_type, emb_dim, retrain_type, sparsity, center, hop_size
        As in :func:`edgel3.get_embedding`.
    batch_size : int
    output_format : {'npz', 'parquet'}
    fast_resample : bool
    strict : bool
    runtime : {'auto', 'numpy', 'keras'}
        Carried by the returned reference (workers run what it says).

    Returns
    -------
    reference : ModelReference
    options : RunOptions

    Raises
    ------
    ParameterError
        Invalid options or model arguments.
    WeightsError
        A model file that does not exist.
    """
    reference, center, hop_size, _ = check_embedding_options(
        model, model_type, emb_dim, retrain_type, sparsity, center, hop_size, runtime=runtime
    )
    options = RunOptions(
        hop_size=hop_size,
        center=center,
        batch_size=check_positive_int(batch_size, "batch_size"),
        fast_resample=check_flag(fast_resample, "fast_resample"),
        output_format=check_choice(output_format, OUTPUT_FORMATS, "output_format"),
        strict=check_flag(strict, "strict"),
    )
    return reference, options


def check_portable(reference: ModelReference, engine: str) -> ModelReference:
    """Require a model other processes can load (a name or a file, not a loaded object).

    Parameters
    ----------
    reference : ModelReference
    engine : str
        Who needs it, for the message (``'jobs > 1'``, ``'the Ray engine'``).

    Returns
    -------
    ModelReference
        ``reference``.

    Raises
    ------
    ParameterError
        For a loaded model.
    """
    if not reference.portable:
        raise ParameterError(
            f"With {engine}, model must be a model name or a file path (other processes load it "
            f"themselves); got a loaded {type(reference.source).__name__}."
        )
    return reference


def check_output_dir(output_dir, output_format: str):
    """An output directory that is not an existing file (None allowed for ``.npz``).

    Raises
    ------
    ParameterError
        Parquet output without a directory.
    OutputError
        ``output_dir`` is an existing file.
    """
    if output_format == "parquet" and not output_dir:
        raise ParameterError("Parquet output needs an output directory (output_dir / -o DIR).")
    if output_dir and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputError(
            f'The output directory "{output_dir}" is an existing file; name a directory '
            "(it is created if missing)."
        )
    return output_dir


def plan_run(
    paths,
    output_dir,
    suffix,
    shard,
    reference: ModelReference,
    options: RunOptions,
    *,
    overwrite: bool = False,
    keep_existing: bool = False,
    roots=(),
) -> Plan:
    """Name every output, select the shard, and skip what is done; nothing is loaded.

    Output names are decided over all ``paths`` (before sharding, so shards
    never collide): :func:`edgel3.naming.output_paths`. An ``.npz`` is done
    when its provenance record matches the run
    (:func:`edgel3.provenance.decide_output`); a file of a Parquet dataset
    when the results manifest records it with the run's config, the file is
    unchanged and its part exists. A Parquet run takes the dataset's lock
    (:class:`edgel3.locks.DatasetLock`) first; :meth:`Plan.close` releases it.

    Parameters
    ----------
    paths : sequence of path-like
    output_dir : path-like or None
        Holds the results manifest; None writes ``.npz`` next to the inputs.
    suffix : str or None
        ``.npz`` name suffix.
    shard : (int, int), str or None
    reference : ModelReference
    options : RunOptions
    overwrite : bool
        Redo every file.
    keep_existing : bool
        Keep every existing ``.npz`` without checking it.
    roots : iterable of path-like
        Directories searched for the inputs (see :func:`~edgel3.naming.output_paths`).

    Returns
    -------
    Plan

    Raises
    ------
    ParameterError
        A bad shard or suffix, or Parquet output without an output directory.
    OutputError
        ``output_dir`` is a file, or another run holds the Parquet dataset.
    """
    output_format = options.output_format
    check_output_dir(output_dir, output_format)
    shard = check_shard(shard)
    paths = list(paths)
    outputs = [None] * len(paths)
    if output_format == "npz":
        outputs = output_paths(paths, output_dir, suffix, roots=roots)
    pairs = list(zip(paths, outputs))
    if shard is not None:
        chosen = {id(p) for p in select_shard(paths, *shard)}
        pairs = [pair for pair in pairs if id(pair[0]) in chosen]
    tag = shard_tag(shard)
    lock = None
    if output_format == "parquet":
        lock = DatasetLock(output_dir, shard)
        lock.acquire()
    try:
        manifest = (
            ResultsManifest(output_dir, options.config(reference), tag) if output_dir else None
        )
        if output_format == "parquet":
            for removed in remove_partial_outputs(output_dir, tag):
                logger.info("removed %s, left by an interrupted run", removed)
            compact_dataset(output_dir)  # a run killed before compacting left old rows
            check_dataset_options(output_dir, manifest.config, paths)  # never mix options
        model_id = reference.model_id
        todo, skipped, windows = [], [], 0
        for index, (path, output) in enumerate(pairs):
            facts = input_facts(path)
            record = make_provenance(
                model_id, options.hop_size, options.center, options.fast_resample, facts
            )
            task = FileTask.from_path(path, output, record)
            if output is None:
                done = not overwrite and manifest.is_done(task)
                reason = None if done else "new"
            else:
                reason = decide_output(
                    output, record, overwrite=overwrite, keep_existing=keep_existing
                )
            if reason is None:
                result = FileResult(Path(path), result_output(task, output_dir), "skipped")
                skipped.append((index, replace(result, note="up to date")))
            else:
                todo.append((index, replace(task, reason=reason)))
                windows += header_windows(facts, options.hop_size, options.center)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return Plan(todo, skipped, manifest, tag, lock, windows)


#: The model reference type of batch runs (formerly ``edgel3.batch.model_ref.ModelRef``).
ModelRef = ModelReference


def resolve_model_ref(
    model=None, model_type="sparse", emb_dim=128, retrain_type="ft", sparsity=95.45
) -> ModelReference:
    """Resolve a model for other processes: :func:`edgel3.reference.resolve_model`, then located.

    Kept for code written against ``edgel3.parallel.resolve_model_ref``; new code
    calls ``resolve_model(...).located()``.

    Parameters
    ----------
    model, model_type, emb_dim, retrain_type, sparsity
        As in :func:`edgel3.get_embedding`.

    Returns
    -------
    ModelReference

    Raises
    ------
    ParameterError, WeightsError
    """
    return resolve_model(model, model_type, emb_dim, retrain_type, sparsity).located()


def result_output(task: FileTask, output_dir) -> Path | None:
    """The output a FileResult names: the ``.npz`` file, or the dataset directory.

    Parameters
    ----------
    task : FileTask
    output_dir : path-like or None

    Returns
    -------
    pathlib.Path or None
    """
    if task.output is not None:
        return Path(task.output)
    return Path(output_dir) if output_dir else None
