"""``edgel3 distill-task``: int8 task students distilled from a teacher, leave-one-fold-out.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`); TensorFlow,
scikit-learn and the compression package load inside :func:`run` only.
"""

from __future__ import annotations

import argparse

from .common import add_hop_size, add_no_centering, add_output, add_quiet, float_list, positive_int
from .evaluate import LAYOUT_NAMES

__all__ = ["DESCRIPTION", "add_arguments", "run", "defaults", "DISTILL_TASK_DEFAULTS"]

DESCRIPTION = (
    "Task students (Cerutti et al., Interspeech 2019): for each fold of a labelled dataset, "
    "train a classifier on the teacher's embeddings of the other folds, distil it into small "
    "end-to-end int8 classifiers on the teacher's log-mel input (soft targets, optionally hard "
    "labels), and score them on the held-out fold. Writes task_students.json/.txt/.md (one row "
    "per student size: parameters, int8 flash, arena, MACs, accuracy, devices) and the "
    "int8 exports to DIR/models/."
)

#: Defaults of :func:`edgel3.compress.task_students.distill_task`, repeated so that
#: ``--help`` imports neither TensorFlow nor the compression package (:func:`defaults`
#: reads them from it; tests/test_distill_task.py checks they are equal).
DISTILL_TASK_DEFAULTS = {
    "layout": "auto",
    "teacher": "sea-64",
    "classifier": "logreg",
    "sizes": (0.25, 0.5, 1.0),
    "temperature": 4.0,
    "hard_weight": 0.5,
    "hop_size": 0.5,
    "epochs": 40,
    "batch_size": 64,
    "learning_rate": 2e-3,
    "patience": 6,
    "calibration_windows": 200,
    "seed": 20180216,
}

#: ``--classifier`` choices (:data:`edgel3.compress.task_students.TASK_CLASSIFIERS`).
TASK_CLASSIFIER_NAMES = ("logreg", "mlp")


def defaults() -> dict:
    """Defaults of :func:`edgel3.compress.task_students.distill_task` (imports it)."""
    from ..compress.task_students import distill_task
    from .common import signature_defaults

    return signature_defaults(distill_task)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``distill-task`` options to ``parser``."""
    d = DISTILL_TASK_DEFAULTS
    parser.add_argument("audio_dir", help="folder with the audio clips (or the dataset root)")
    parser.add_argument(
        "--metadata",
        default=None,
        metavar="CSV",
        help="metadata csv (ESC-50/ESC-10, UrbanSound8K or path,label,fold) (default: none, "
        "for UrbanSound8K foldN/ folders)",
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUT_NAMES,
        default=d["layout"],
        help="dataset layout (default: %(default)s, from the csv's columns)",
    )
    parser.add_argument(
        "--teacher",
        default=d["teacher"],
        help="the teacher's embedding model: a name (see 'edgel3 models'), 'tiny' or a model "
        "file; the students take its log-mel input",
    )
    parser.add_argument(
        "--classifier",
        choices=TASK_CLASSIFIER_NAMES,
        default=d["classifier"],
        help="the teacher's frame classifier (quick settings)",
    )
    parser.add_argument(
        "--sizes",
        type=float_list,
        default=list(d["sizes"]),
        metavar="W,W,...",
        help="width multipliers of the students (1 = the bundled tiny architecture)",
    )
    parser.add_argument(
        "--temperature", type=float, default=d["temperature"], help="distillation temperature T"
    )
    parser.add_argument(
        "--hard-weight",
        type=float,
        default=d["hard_weight"],
        metavar="W",
        help="weight of the hard-label loss in [0, 1] (0: soft targets only)",
    )
    parser.add_argument(
        "--folds", nargs="+", default=None, help="use only the clips of these folds (default: all)"
    )
    parser.add_argument(
        "--test-folds",
        nargs="+",
        default=None,
        help="hold out only these folds (default: every fold)",
    )
    add_hop_size(parser, d["hop_size"], "seconds between windows (teacher and students)")
    add_no_centering(parser, "do not pad half a window at the start of each clip")
    parser.add_argument(
        "--epochs", type=positive_int, default=d["epochs"], help="most epochs per student"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=d["batch_size"], help="windows per step"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=d["learning_rate"], help="Adam learning rate"
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=d["patience"],
        help="early stopping: epochs without a better validation loss",
    )
    parser.add_argument(
        "--calibration-windows",
        type=positive_int,
        default=d["calibration_windows"],
        metavar="N",
        help="training windows that calibrate each int8 export",
    )
    parser.add_argument("--seed", type=int, default=d["seed"], help="random seed")
    add_output(parser, "output folder (report files and models/)", metavar="DIR", required=True)
    parser.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="the teacher's embedding cache (default: $EDGEL3_CACHE_DIR/embeddings, else "
        "OUTPUT/embeddings)",
    )
    add_quiet(parser, "no progress bars; the table only")


def run(args: argparse.Namespace) -> int:
    """Run the pipeline, write the report files and exports, print the table; returns 0.

    Every input is checked (the dataset's metadata, the options, the output
    folder) before anything is embedded or trained; the files appear together
    at the end, or not at all.
    """
    from pathlib import Path

    from ..checks import check_output_path
    from ..compress.task_networks import check_sizes, model_files
    from ..compress.task_report import REPORT_FILES, format_table, write_report
    from ..compress.task_students import distill_task
    from ..evaluate.cache import default_cache_dir
    from ..evaluate.datasets import load_dataset
    from ..evaluate.protocol import check_splits
    from .common import staged_outputs

    out = check_output_path(args.output, "-o/--output", folder=True)
    dataset = load_dataset(args.audio_dir, args.metadata, layout=args.layout)
    if args.folds is not None:
        dataset = dataset.subset(args.folds)
    held_out = check_splits(
        dataset.labels,
        dataset.folds,
        test_folds=args.test_folds,
        groups=dataset.groups,
        classes=dataset.classes,
        names=dataset.describe,
    )
    models = [out / "models" / name for name in model_files(check_sizes(args.sizes), held_out)]
    cache_dir = args.cache_dir or default_cache_dir(out)
    with staged_outputs(*[out / name for name in REPORT_FILES], *models) as staged:
        report = distill_task(
            dataset,
            teacher=args.teacher,
            classifier=args.classifier,
            sizes=args.sizes,
            temperature=args.temperature,
            hard_weight=args.hard_weight,
            test_folds=args.test_folds,
            hop_size=args.hop_size,
            center=not args.no_centering,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            patience=args.patience,
            calibration_windows=args.calibration_windows,
            seed=args.seed,
            model_dir=Path(staged[len(REPORT_FILES)]).parent,
            cache_dir=cache_dir,
            verbose=not args.quiet,
        )
        write_report(report, out, paths=staged[: len(REPORT_FILES)])
    print(format_table(report))
    if not args.quiet:
        print(f"\nwrote {', '.join(REPORT_FILES)} and {len(models) // 2} int8 models to {out}")
    return 0
