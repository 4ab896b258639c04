"""Run planning: option checks, shard selection, and what is done (results manifest)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import check_positive_int
from ..core import FileResult, check_embedding_options
from ..exceptions import ParameterError
from ..files import get_output_path
from ..outputs import FileTask, ResultsManifest, remove_partial_outputs, shard_tag
from .inputs import check_shard, select_shard

__all__ = [
    "RunSummary",
    "Plan",
    "OUTPUT_FORMATS",
    "check_run_options",
    "plan_run",
    "result_output",
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


def check_run_options(
    model_type, emb_dim, retrain_type, sparsity, center, hop_size, batch_size, output_format
) -> None:
    """Validate the options shared by every engine (raises ParameterError)."""
    check_embedding_options(None, model_type, emb_dim, retrain_type, sparsity, center, hop_size)
    check_positive_int(batch_size, "batch_size")
    if output_format not in OUTPUT_FORMATS:
        raise ParameterError(
            f"output_format must be one of {OUTPUT_FORMATS}; got output_format={output_format!r}."
        )


def plan_run(paths, output_dir, suffix, output_format, shard, config, overwrite) -> Plan:
    """Select the shard, stat the files and skip those already done."""
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


def result_output(task: FileTask, output_dir) -> Path | None:
    """The output a FileResult names: the .npz file, or the dataset directory."""
    if task.output is not None:
        return Path(task.output)
    return Path(output_dir) if output_dir else None
