"""``edgel3 distill``: knowledge distillation of a teacher into a student on audio folders.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`); TensorFlow loads
inside :func:`run` only.
"""

from __future__ import annotations

import argparse

from .common import add_training_arguments, positive_int

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Distil a teacher (official model, 'tiny', or a model file) into a student "
    "(tiny, ds, sea, sparse or a model file, e.g. a pruned one) with MSE on the "
    "teacher's embeddings of your audio."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``distill`` options to ``parser``."""
    add_training_arguments(parser)
    parser.add_argument(
        "-e",
        "--emb-dim",
        type=positive_int,
        default=None,
        help="embedding size of a student built from a family (default: the teacher's)",
    )


def run(args: argparse.Namespace) -> int:
    """Distil the teacher into the student and save it; returns 0."""
    from ..compress.data import as_teacher
    from ..compress.distill import distill
    from .common import prepare_training, save_model

    emb_dim = args.emb_dim
    if emb_dim is None:
        import numpy as np

        teacher = as_teacher(args.teacher)
        emb_dim = teacher(np.zeros((1, teacher.sr), np.float32)).shape[1]
    teacher, data, student, options = prepare_training(args, emb_dim)
    result = distill(student, data, teacher=teacher, **options)
    save_model(result.model, args.output)
    if not args.quiet:
        print(
            f"validation MSE {result.initial_val_loss:.4g} -> {result.best_val_loss:.4g} "
            f"({result.epochs} epochs on {result.device}); wrote {args.output}"
        )
    return 0
