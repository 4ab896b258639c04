"""``edgel3 evaluate``: cross-validated downstream accuracy of an embedding model.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`); TensorFlow and
scikit-learn load inside :func:`run` only, so ``edgel3 evaluate --help`` stays light.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .common import (
    add_hop_size,
    add_no_centering,
    add_output,
    add_quiet,
    positive_int,
    signature_defaults,
)

__all__ = [
    "DESCRIPTION",
    "add_arguments",
    "run",
    "defaults",
    "CLASSIFIER_NAMES",
    "LAYOUT_NAMES",
    "EVALUATE_DEFAULTS",
]

#: ``--classifier`` choices (equal to :data:`edgel3.evaluate.classifiers.CLASSIFIERS`,
#: repeated here so that ``--help`` does not import scikit-learn).
CLASSIFIER_NAMES = ("mlp", "logreg", "svm")

DESCRIPTION = (
    "Evaluate an embedding model downstream: embed a labelled audio dataset (cached), train "
    "a classifier leave-one-fold-out on the dataset's own folds and write report.json, "
    "predictions.csv, confusion_matrix.png and embedding_map.png. Layouts: ESC-50/ESC-10 csv, "
    "UrbanSound8K foldN/ folders or csv, generic csv with path,label,fold."
)


#: ``--layout`` choices (:data:`edgel3.evaluate.datasets.LAYOUTS`), repeated likewise.
LAYOUT_NAMES = ("auto", "esc50", "us8k", "generic")

#: Defaults of :func:`edgel3.evaluate.evaluate`, repeated so that ``--help`` imports neither
#: the evaluation package nor :mod:`edgel3.core` (:func:`defaults` reads them from it; a
#: test checks they are equal).
EVALUATE_DEFAULTS = {
    "metadata": None,
    "layout": "auto",
    "model": None,
    "classifier": None,
    "hop_size": None,
    "folds": None,
    "test_folds": None,
    "seed": 0,
    "cache_dir": None,
    "batch_size": 64,
}


def defaults() -> dict:
    """Defaults of :func:`edgel3.evaluate.evaluate` (imports the evaluation package)."""
    from ..evaluate.api import evaluate

    return signature_defaults(evaluate)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options to ``parser``."""
    d = EVALUATE_DEFAULTS
    parser.add_argument("audio_dir", help="folder with the audio clips (or the dataset root)")
    parser.add_argument(
        "--metadata",
        default=d["metadata"],
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
        "--multilabel",
        action="store_true",
        help="generic csv: labels hold several classes separated by ';' (reports AUPRC)",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="evaluate the clips that exist when some metadata rows have no audio",
    )
    parser.add_argument(
        "--model",
        default=d["model"],
        help="a model name (tiny, sea-64, ...; see 'edgel3 models') or a model file "
        "(.h5, .h5.gz, .keras, .tflite) (default: get_embedding's default model)",
    )
    parser.add_argument(
        "--classifier",
        choices=CLASSIFIER_NAMES,
        default=d["classifier"],
        help="frame classifier: the papers' MLP with grid search, or a logistic-regression / "
        "linear-SVM baseline (default: mlp, or logreg with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fast settings: hop 0.5 s, logistic regression, no grid search",
    )
    add_hop_size(
        parser,
        d["hop_size"],
        "seconds between windows (default: 0.1, or 0.5 with --quick)",
    )
    add_no_centering(parser, "do not pad half a window at the start of each clip")
    parser.add_argument(
        "--folds",
        nargs="+",
        default=d["folds"],
        help="use only the clips of these folds (default: all)",
    )
    parser.add_argument(
        "--test-folds",
        nargs="+",
        default=d["test_folds"],
        help="hold out only these folds (default: every fold)",
    )
    parser.add_argument("--seed", type=int, default=d["seed"], help="random seed")
    add_output(
        parser,
        "output folder for the report and figures",
        dest="out",
        aliases=("--out",),
        metavar="DIR",
        default="edgel3_evaluation",
    )
    parser.add_argument(
        "--cache-dir",
        default=d["cache_dir"],
        metavar="DIR",
        help="embedding cache (default: $EDGEL3_CACHE_DIR/embeddings, else OUTPUT/embeddings)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=d["batch_size"],
        help="windows per forward pass",
    )
    add_quiet(parser, "no progress bars; summary only")


def run(args: argparse.Namespace) -> int:
    """Run one evaluation and print its summary; returns 0.

    The rows ``--skip-missing`` leaves out are named on one
    ``edgel3: warning: ...`` line on stderr (and listed in ``report.json``).
    Invalid metadata raises before anything is embedded or written.
    """
    from ..evaluate.api import evaluate
    from ..evaluate.datasets import load_dataset
    from ..evaluate.report import format_summary
    from ..exceptions import EdgeL3Warning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EdgeL3Warning)
        dataset = load_dataset(
            args.audio_dir,
            args.metadata,
            layout=args.layout,
            multilabel=args.multilabel,
            missing="skip" if args.skip_missing else "error",
        )
    for warning in caught:
        if issubclass(warning.category, EdgeL3Warning):
            print(f"edgel3: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    report = evaluate(
        dataset,
        model=args.model,
        classifier=args.classifier,
        quick=args.quick,
        hop_size=args.hop_size,
        center=not args.no_centering,
        folds=args.folds,
        test_folds=args.test_folds,
        seed=args.seed,
        out_dir=args.out,
        cache_dir=args.cache_dir,
        plots=not args.no_plots,
        batch_size=args.batch_size,
        verbose=not args.quiet,
    )
    print(format_summary(report))
    return 0
