"""Argument types, the shared option grammar and helpers of the command modules.

Imports nothing heavy: building any command's parser must not load NumPy's
heavier users (SciPy, :mod:`edgel3.core`, TensorFlow), so ``--help`` stays fast.

* argparse types: :func:`positive_float`, :func:`positive_int`, :func:`float_list`,
  :func:`int_list`, :func:`shard`;
* the grammar shared by every command (docs/cli.rst): :data:`SHORT_FLAGS`,
  :class:`HelpFormatter` (every option shows its default), and the adders of
  the common options :func:`add_output`, :func:`add_quiet`, :func:`add_hop_size`,
  :func:`add_no_centering`;
* :func:`signature_defaults` (the library defaults the tests compare with);
* the model/training helpers of ``prune``, ``distill`` and ``sea``
  (:func:`load_model`, :func:`save_model`, :func:`add_training_arguments`,
  :func:`prepare_training`); heavy modules are imported inside them only.
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
    "SHORT_FLAGS",
    "HelpFormatter",
    "add_output",
    "add_quiet",
    "add_hop_size",
    "add_no_centering",
    "signature_defaults",
    "load_model",
    "save_model",
    "add_training_arguments",
    "prepare_training",
]


# --------------------------------------------------------------------------- argparse types


def positive_float(value) -> float:
    """argparse type: a number > 0 (edgel3 0.2.1's ``edgel3.cli.positive_float``).

    Parameters
    ----------
    value : str or number

    Returns
    -------
    float

    Raises
    ------
    argparse.ArgumentTypeError
        If ``value`` is not a number, or not positive (NaN included).
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a positive number; got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {value!r}")
    return number


def positive_int(value) -> int:
    """argparse type: an integer >= 1.

    Parameters
    ----------
    value : str or int
        ``'3'`` or ``3``; a float with a fraction (``2.5``) and booleans are rejected.

    Returns
    -------
    int

    Raises
    ------
    argparse.ArgumentTypeError
        If ``value`` is not a positive integer.
    """
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value!r}")
    return number


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


# --------------------------------------------------------------------------- the grammar

#: Every short flag of every command and the long option it stands for: one letter, one
#: meaning (docs/cli.rst). The multi-letter ones are edgel3 0.2.1's.
SHORT_FLAGS = {
    "-o": "--output",
    "-x": "--suffix",
    "-q": "--quiet",
    "-n": "--no-centering",
    "-t": "--hop-size",
    "-e": "--emb-dim",
    "-j": "--jobs",
    "-mtype": "--model-type",
    "-retrain": "--retrain-type",
    "-sp": "--model-sparsity",
    "-Q": "--quantization",
    "-h": "--help",
}


class HelpFormatter(argparse.HelpFormatter):
    """Help formatter of every command: an option taking a value shows its default.

    ``(default: VALUE)`` is appended to the help of an option whose default is
    set (not None) unless its help already speaks of the default; options whose
    default is None say in words what happens without them.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        return self.help_with_default(action)

    @staticmethod
    def help_with_default(action: argparse.Action) -> str:
        """The help of ``action`` as shown (before ``%(default)s`` is filled in).

        Parameters
        ----------
        action : argparse.Action

        Returns
        -------
        str
        """
        text = action.help or ""
        if (
            not action.option_strings
            or action.nargs == 0  # a flag: store_true and the like
            or action.default in (None, argparse.SUPPRESS)
            or "default" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


def add_output(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    dest: str = "output",
    aliases: tuple[str, ...] = (),
    metavar: str = "PATH",
    **kwargs,
) -> argparse.Action:
    """Add ``-o/--output`` (and older spellings as ``aliases``): what a command writes.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    help : str
    dest : str
        Attribute name in the parsed namespace.
    aliases : tuple of str
        Other long spellings accepted (``'--output-dir'``, ``'--out'``).
    metavar : str
    **kwargs
        More :meth:`argparse.ArgumentParser.add_argument` arguments (``default``,
        ``required``).

    Returns
    -------
    argparse.Action
    """
    return parser.add_argument(
        "-o", "--output", *aliases, dest=dest, metavar=metavar, help=help, **kwargs
    )


def add_quiet(parser: argparse.ArgumentParser, help: str = "no progress bars or summary"):
    """Add ``-q/--quiet``."""
    return parser.add_argument("-q", "--quiet", action="store_true", help=help)


def add_hop_size(parser: argparse.ArgumentParser, default, help: str):
    """Add ``-t/--hop-size`` (seconds between windows)."""
    return parser.add_argument(
        "-t", "--hop-size", type=positive_float, default=default, metavar="SECONDS", help=help
    )


def add_no_centering(parser: argparse.ArgumentParser, help: str):
    """Add ``-n/--no-centering``."""
    return parser.add_argument("-n", "--no-centering", action="store_true", help=help)


def signature_defaults(func) -> dict:
    """Keyword defaults of ``func`` (the library defaults a command's options must equal).

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


#: Defaults of the training options: those of :func:`edgel3.compress.distill.distill` and
#: :func:`edgel3.compress.data.load_windows` (repeated so that ``--help`` imports neither;
#: tests/test_cli_grammar.py checks that they are equal).
TRAINING_DEFAULTS = {
    "hop_size": 0.5,
    "epochs": 50,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "validation": 0.1,
    "patience": 10,
    "seed": 20180216,
}


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, student and training options of ``distill`` and ``sea``."""
    d = TRAINING_DEFAULTS
    parser.add_argument("inputs", nargs="+", help="audio files and/or directories (unlabeled)")
    add_output(parser, "the student model file to write (.keras, or .h5/.h5.gz)", required=True)
    parser.add_argument(
        "--teacher",
        default="sea-64",
        help="official model name, 'tiny' or a model file",
    )
    parser.add_argument(
        "--student",
        default="tiny",
        help="architecture family (tiny, ds, sea, sparse) or a model file to start from",
    )
    parser.add_argument(
        "--head",
        choices=("linear", "bn_relu"),
        default="linear",
        help="output head of a student built from a family",
    )
    add_hop_size(parser, d["hop_size"], "seconds between training windows in a file")
    parser.add_argument(
        "--max-windows-per-file",
        type=positive_int,
        default=None,
        metavar="N",
        help="at most N windows of each file, evenly spaced (default: all)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=d["epochs"], help="most training epochs"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=d["batch_size"], help="windows per step"
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=d["learning_rate"],
        help="initial Adam learning rate (reduced on plateaus)",
    )
    parser.add_argument(
        "--validation-split",
        type=float,
        default=d["validation"],
        metavar="FRACTION",
        help="fraction of the windows held out for validation and early stopping",
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=d["patience"],
        help="early stopping: epochs without validation improvement",
    )
    parser.add_argument(
        "--minutes",
        type=positive_float,
        default=None,
        help="training time budget in minutes (default: none; --epochs bounds it)",
    )
    parser.add_argument(
        "--augment",
        action="store_true",
        help="augment (gain, mix, noise, shift), the teacher embedding each batch on the fly",
    )
    parser.add_argument(
        "--cache",
        default=None,
        metavar="FILE",
        help=".npz cache of the teacher's embeddings, reused when the data match "
        "(default: no cache)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        metavar="DIR",
        help="write best.keras, history.csv and backup/ there (default: no checkpoints)",
    )
    parser.add_argument("--resume", action="store_true", help="resume from --checkpoint-dir")
    parser.add_argument("--seed", type=int, default=d["seed"], help="random seed")
    add_quiet(parser, "no progress bars or summary")


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
