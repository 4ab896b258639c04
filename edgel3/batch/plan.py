"""Run planning: option checks, the run's model, shard selection, what is done (manifest)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import check_choice, check_flag, check_positive_int
from ..core import FileResult, check_embedding_options
from ..exceptions import ParameterError
from ..files import get_output_path
from ..reference import ModelReference, resolve_model
from .inputs import check_shard, select_shard
from .outputs import FileTask, ResultsManifest, remove_partial_outputs, shard_tag

__all__ = [
    "RunSummary",
    "Plan",
    "RunOptions",
    "OUTPUT_FORMATS",
    "check_run_options",
    "check_portable",
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
    """

    hop_size: float
    center: bool
    batch_size: int
    fast_resample: bool
    output_format: str

    def config(self, reference: ModelReference) -> dict:
        """What makes two runs' outputs comparable: the manifest's config.

        Parameters
        ----------
        reference : ModelReference

        Returns
        -------
        dict
            ``model`` (:attr:`~edgel3.reference.ModelReference.model_id`),
            ``hop_size``, ``center``, ``fast_resample`` and ``format``.
        """
        return {
            "model": reference.model_id,
            "hop_size": self.hop_size,
            "center": self.center,
            "fast_resample": self.fast_resample,
            "format": self.output_format,
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
        model, model_type, emb_dim, retrain_type, sparsity, center, hop_size
    )
    options = RunOptions(
        hop_size=hop_size,
        center=center,
        batch_size=check_positive_int(batch_size, "batch_size"),
        fast_resample=check_flag(fast_resample, "fast_resample"),
        output_format=check_choice(output_format, OUTPUT_FORMATS, "output_format"),
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


def plan_run(paths, output_dir, suffix, output_format, shard, config, overwrite) -> Plan:
    """Select the shard, stat the files and skip those already done.

    Parameters
    ----------
    paths : sequence of path-like
    output_dir : path-like or None
        Holds the results manifest; None (``.npz`` next to the inputs) skips
        only existing outputs.
    suffix : str or None
        ``.npz`` name suffix.
    output_format : {'npz', 'parquet'}
    shard : (int, int), str or None
    config : dict
        The run's manifest config (:meth:`RunOptions.config`).
    overwrite : bool
        Redo every file.

    Returns
    -------
    Plan

    Raises
    ------
    ParameterError
        A bad shard, or Parquet output without an output directory.
    """
    shard = check_shard(shard)
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
                (index, FileResult(Path(path), result_output(task, output_dir), "skipped"))
            )
        else:
            todo.append((index, task))
    return Plan(todo, skipped, manifest, tag)


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
