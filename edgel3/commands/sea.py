"""``edgel3 sea``: Specialized Embedding Approximation on audio folders.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`); TensorFlow loads
inside :func:`run` only.
"""

from __future__ import annotations

import argparse

from .common import add_training_arguments, positive_int

#: ``--sampling`` choices: :data:`edgel3.compress.sea.SAMPLINGS`, repeated so that ``--help``
#: does not import the compression package (tests/test_cli_grammar.py checks they are equal).
SAMPLING_NAMES = ("random", "relevance", "diversity", "diversity_relevance")

__all__ = ["DESCRIPTION", "add_arguments", "run", "SAMPLING_NAMES"]

DESCRIPTION = (
    "SEA: fit StandardScaler + PCA(d) on a sample (random, relevance, diversity k-DPP, "
    "diversity_relevance) of the teacher's embeddings of your audio, then train a student "
    "to regress the projected embeddings. Writes the student and OUTPUT.projection.npz."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sea`` options to ``parser``."""
    add_training_arguments(parser)
    parser.add_argument(
        "-e",
        "--emb-dim",
        "--dim",
        dest="emb_dim",
        type=positive_int,
        default=64,
        help="PCA dimension d: the student's embedding size (--dim: the older spelling)",
    )
    parser.add_argument(
        "--sampling",
        choices=SAMPLING_NAMES,
        default="random",
        help="how the points that fit the PCA are chosen from the teacher's embeddings",
    )
    parser.add_argument(
        "--n-samples",
        type=positive_int,
        default=None,
        metavar="N",
        help="points used to fit the PCA (default: every embedding; at most 5000 for the "
        "diversity samplings)",
    )


def run(args: argparse.Namespace) -> int:
    """Fit the projection, train the student, save both; returns 0."""
    from ..checks import check_output_path
    from ..compress.pruning import save_model
    from ..compress.sea import SEAProjection, sea_distill
    from .common import staged_outputs
    from .distill import check_training_args, prepare_training

    projection_path = f"{args.output}.projection.npz"
    check_training_args(args)
    check_output_path(projection_path, "the projection")
    projection = SEAProjection(
        args.emb_dim, sampling=args.sampling, n_samples=args.n_samples, random_state=args.seed
    )
    teacher, data, student, options = prepare_training(args, args.emb_dim)
    target_cache = options.pop("target_cache")
    result, projection = sea_distill(
        student, data, teacher=teacher, projection=projection, target_cache=target_cache, **options
    )
    with staged_outputs(args.output, projection_path) as (model_file, projection_file):
        save_model(result.model, model_file)
        projection.save(projection_file)
    if not args.quiet:
        print(
            f"validation MSE {result.initial_val_loss:.4g} -> {result.best_val_loss:.4g} "
            f"({result.epochs} epochs on {result.device}); wrote {args.output} and "
            f"{projection_path}"
        )
    return 0
