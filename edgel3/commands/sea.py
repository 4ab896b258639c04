"""``edgel3 sea``: Specialized Embedding Approximation on audio folders.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`); TensorFlow loads
inside :func:`run` only.
"""

from __future__ import annotations

import argparse

from .common import add_training_arguments

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "SEA: fit StandardScaler + PCA(d) on a sample (random, relevance, diversity k-DPP, "
    "diversity_relevance) of the teacher's embeddings of your audio, then train a student "
    "to regress the projected embeddings. Writes the student and OUTPUT.projection.npz."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sea`` options to ``parser``."""
    from ..compress.sea import SAMPLINGS

    add_training_arguments(parser)
    parser.add_argument("--dim", type=int, default=64, help="PCA dimension d (default: 64)")
    parser.add_argument("--sampling", choices=SAMPLINGS, default="random")
    parser.add_argument("--n-samples", type=int, default=None, help="points used to fit PCA")


def run(args: argparse.Namespace) -> int:
    """Fit the projection, train the student, save both; returns 0."""
    from ..compress.sea import SEAProjection, sea_distill
    from .common import prepare_training, save_model

    teacher, data, student, options = prepare_training(args, args.dim)
    projection = SEAProjection(
        args.dim, sampling=args.sampling, n_samples=args.n_samples, random_state=args.seed
    )
    target_cache = options.pop("target_cache")
    result, projection = sea_distill(
        student, data, teacher=teacher, projection=projection, target_cache=target_cache, **options
    )
    save_model(result.model, args.output)
    projection_path = projection.save(f"{args.output}.projection.npz")
    if not args.quiet:
        print(
            f"validation MSE {result.initial_val_loss:.4g} -> {result.best_val_loss:.4g} "
            f"({result.epochs} epochs on {result.device}); wrote {args.output} and "
            f"{projection_path}"
        )
    return 0
