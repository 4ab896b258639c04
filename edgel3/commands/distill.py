"""``edgel3 distill``: knowledge distillation of a teacher into a student on audio folders.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`); TensorFlow loads
inside :func:`run` only.
"""

from __future__ import annotations

import argparse

from .common import add_training_arguments, positive_int

__all__ = ["DESCRIPTION", "add_arguments", "run", "check_training_args", "prepare_training"]

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
    from ..compress.pruning import save_model

    check_training_args(args)
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


# --------------------------------------------------------------------------- shared with sea


def check_training_args(args: argparse.Namespace) -> None:
    """Check ``distill``/``sea``'s student and the files they write, before anything loads.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed with :func:`add_training_arguments`.

    Raises
    ------
    ParameterError
        An output without a model suffix, ``--resume`` without ``--checkpoint-dir``,
        or a ``--student`` that is neither a family nor an existing file.
    OutputError
        An output, ``--cache`` or ``--checkpoint-dir`` that cannot be written.
    """
    import os

    from ..checks import check_output_path
    from ..compress.pruning import MODEL_SUFFIXES
    from ..compress.students import FAMILIES
    from ..exceptions import ParameterError

    if args.student not in FAMILIES and not os.path.isfile(args.student):
        raise ParameterError(
            f"--student must be one of {FAMILIES} or an existing model file; got {args.student!r}."
        )
    check_output_path(args.output, "-o/--output", suffixes=MODEL_SUFFIXES)
    if args.cache is not None and not os.path.isfile(args.cache):  # a cache may be read-only
        check_output_path(args.cache, "--cache")
    if args.resume and args.checkpoint_dir is None:
        raise ParameterError("--resume continues a run saved in --checkpoint-dir: give it.")
    if args.checkpoint_dir is not None:
        check_output_path(args.checkpoint_dir, "--checkpoint-dir", folder=True)


def prepare_training(args: argparse.Namespace, emb_dim: int):
    """The teacher, windows, student and distillation options of parsed ``distill``/``sea`` args.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed with :func:`add_training_arguments`.
    emb_dim : int
        Embedding size of a student built from a family name.

    Returns
    -------
    teacher : edgel3.compress.data.Teacher
    data : edgel3.compress.data.WindowSet
        Windows ``(n, sr)`` at the teacher's rate.
    student : keras.Model
    options : dict
        Keyword arguments of :func:`edgel3.compress.distill.distill`.

    Call :func:`check_training_args` first.
    """
    from ..compress.augment import Augmenter
    from ..compress.data import as_teacher, load_windows
    from ..compress.students import FAMILIES, build_student
    from ..reference import resolve_model

    teacher = as_teacher(args.teacher)
    if args.student in FAMILIES:
        student = build_student(args.student, emb_dim=emb_dim, head=args.head)
    else:
        student = resolve_model(args.student).load()
    data = load_windows(
        args.inputs,
        teacher.sr,
        hop_size=args.hop_size,
        max_windows_per_file=args.max_windows_per_file,
        progress=not args.quiet,
    )
    options = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "validation": args.validation_split,
        "patience": args.patience,
        "time_limit": None if args.minutes is None else 60 * args.minutes,
        "augment": Augmenter() if args.augment else None,
        "target_cache": args.cache,
        "checkpoint_dir": args.checkpoint_dir,
        "resume": args.resume,
        "seed": args.seed,
        "verbose": 0 if args.quiet else 1,
    }
    return teacher, data, student, options
