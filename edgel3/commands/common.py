"""Argument types and helpers shared by the command modules (imports nothing heavy).

argparse types (:func:`positive_float`, :func:`positive_int`, :func:`float_list`,
:func:`int_list`, :func:`shard`), the defaults source :func:`signature_defaults`,
and the model/training helpers of ``prune``, ``distill`` and ``sea``
(:func:`load_model`, :func:`save_model`, :func:`add_training_arguments`,
:func:`prepare_training`). Heavy modules are imported inside the helpers only.
"""

from __future__ import annotations

import argparse
import inspect

from ..exceptions import EdgeL3Error, ParameterError

__all__ = [
    "positive_float",
    "positive_int",
    "float_list",
    "int_list",
    "shard",
    "signature_defaults",
    "load_model",
    "save_model",
    "add_training_arguments",
    "prepare_training",
]


# --------------------------------------------------------------------------- argparse types


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive; got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def float_list(text: str) -> list[float]:
    """argparse type: ``'0,85,85'`` -> ``[0.0, 85.0, 85.0]``."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers; got {text!r}"
        ) from None


def int_list(text: str) -> list[int]:
    """argparse type: ``'32,32,64'`` -> ``[32, 32, 64]``."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers; got {text!r}"
        ) from None


def shard(text: str) -> tuple[int, int]:
    """argparse type: ``'I/N'`` -> ``(I, N)`` (:func:`edgel3.batch.parse_shard`)."""
    from ..batch import parse_shard

    try:
        return parse_shard(text)
    except EdgeL3Error as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def signature_defaults(func) -> dict:
    """Keyword defaults of ``func``: the single source of a command's defaults.

    Parameters
    ----------
    func : callable

    Returns
    -------
    dict
        Parameter name -> default, for the parameters that have one.
    """
    return {
        name: p.default
        for name, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


# --------------------------------------------------------------------------- models


def load_model(text: str):
    """Load a model by name (``'sea-64'``, ``'tiny'``) or file, masked layers included.

    Parameters
    ----------
    text : str
        Any name or file :func:`edgel3.reference.resolve_model` accepts.

    Returns
    -------
    keras.Model or runner
    """
    from ..reference import resolve_model

    return resolve_model(text).load()


def save_model(model, path: str) -> str:
    """Save as ``.keras``, or in the legacy layout for ``.h5``/``.h5.gz`` (masks baked in).

    Parameters
    ----------
    model : keras.Model
    path : str
        Ends in ``.keras``, ``.h5`` or ``.h5.gz``.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ParameterError
        For any other suffix.
    """
    from ..compress.pruning import strip_masks

    if path.endswith(".keras"):
        model.save(path)
    elif path.endswith((".h5", ".h5.gz")):
        from ..legacy_h5 import save_legacy_h5

        save_legacy_h5(strip_masks(model), path, compress=path.endswith(".gz"))
    else:
        raise ParameterError(f"Output must end in .keras, .h5 or .h5.gz; got {path!r}.")
    return path


# --------------------------------------------------------------------------- training


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, student and training options of ``distill`` and ``sea``."""
    parser.add_argument("inputs", nargs="+", help="audio files and/or directories (unlabeled)")
    parser.add_argument("-o", "--output", required=True, help="student file (.keras)")
    parser.add_argument(
        "--teacher",
        default="sea-64",
        help="official name, 'tiny' or model file (default: %(default)s)",
    )
    parser.add_argument(
        "--student",
        default="tiny",
        help="family: tiny, ds, sea, sparse; or a model file to start from (default: %(default)s)",
    )
    parser.add_argument(
        "--head", choices=("linear", "bn_relu"), default="linear", help="student output head"
    )
    parser.add_argument("--hop-size", type=float, default=0.5, help="window hop in seconds")
    parser.add_argument("--max-windows-per-file", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validation-split", type=float, default=0.1)
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience")
    parser.add_argument("--minutes", type=float, default=None, help="training time budget")
    parser.add_argument(
        "--augment", action="store_true", help="gain/mix/noise/shift; teacher on the fly"
    )
    parser.add_argument("--cache", default=None, help=".npz cache of the teacher embeddings")
    parser.add_argument("--checkpoint-dir", default=None, help="best.keras, history.csv, backup/")
    parser.add_argument("--resume", action="store_true", help="resume from --checkpoint-dir")
    parser.add_argument("--seed", type=int, default=20180216)
    parser.add_argument("-q", "--quiet", action="store_true")


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

    Raises
    ------
    ParameterError
        When ``--student`` is neither a family nor an existing file.
    """
    import os

    from ..compress.augment import Augmenter
    from ..compress.data import as_teacher, load_windows
    from ..compress.students import FAMILIES, build_student

    teacher = as_teacher(args.teacher)
    if args.student in FAMILIES:
        student = build_student(args.student, emb_dim=emb_dim, head=args.head)
    elif os.path.exists(args.student):
        student = load_model(args.student)
    else:
        raise ParameterError(
            f"--student must be one of {FAMILIES} or an existing model file; got {args.student!r}."
        )
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
