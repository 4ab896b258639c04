"""Argument types, the shared option grammar and helpers of the command modules.

Imports nothing heavy: building any command's parser must not load NumPy's
heavier users (SciPy, :mod:`edgel3.core`, TensorFlow), so ``--help`` stays fast.

* argparse types: :func:`positive_float`, :func:`positive_int`, :func:`open_fraction`,
  :func:`float_list`, :func:`int_list`, :func:`shard`;
* the grammar shared by every command (docs/cli.rst): :data:`SHORT_FLAGS`,
  :class:`HelpFormatter` (every option shows its default), and the adders of
  the common options :func:`add_output`, :func:`add_quiet`, :func:`add_hop_size`,
  :func:`add_no_centering`;
* :func:`signature_defaults` (the library defaults the tests compare with);
* :func:`staged_outputs`: a command's output files appear all together at the end,
  or not at all;
* the training options of ``distill`` and ``sea`` (:func:`add_training_arguments`;
  :mod:`edgel3.commands.distill` prepares the training for both).

A command checks every input and output name before it starts any work (see
docs/cli.rst, "Errors and outputs"): a bad name costs nothing and leaves nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import shutil
import tempfile
from pathlib import Path

from ..exceptions import EdgeL3Error, OutputError

__all__ = [
    "positive_float",
    "positive_int",
    "open_fraction",
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
    "staged_outputs",
    "TRAINING_DEFAULTS",
    "add_training_arguments",
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


def open_fraction(value) -> float:
    """argparse type: a number strictly between 0 and 1 (``--validation-split``).

    Parameters
    ----------
    value : str or number

    Returns
    -------
    float

    Raises
    ------
    argparse.ArgumentTypeError
        If ``value`` is not a number in (0, 1) (NaN included).
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1; got {value!r}")
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


# --------------------------------------------------------------------------- outputs


def _existing_folder(folder: Path) -> Path:
    """``folder`` or, when it does not exist yet, the nearest folder above it that does."""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


@contextlib.contextmanager
def staged_outputs(*paths):
    """Write a command's output files out of sight; show them all at the end, or none.

    Yields one temporary path per output, with the output's own file name, in a
    hidden staging folder (``.NAME.<random>.partial/``) beside it (in the nearest
    existing folder, so that the final move is a rename on one file system).
    When the block ends without error, every staged file it wrote is moved to
    its output path (missing folders are made then, with the umask's mode); on
    any error, Ctrl-C included, the staging folders are removed, no output
    appears and a file an earlier run left at an output path is kept.

    Files written into the staging folder should still go through
    :class:`edgel3.files.atomic_write` (or equally honour the umask): they are
    moved, not copied, so they keep their mode.

    Parameters
    ----------
    *paths : path-like
        The output files.

    Yields
    ------
    list of pathlib.Path
        Where to write each output, in the order given.

    Raises
    ------
    OutputError
        If a staging folder cannot be made or an output cannot be moved into
        place (outputs already moved by this call are removed again).

    Examples
    --------
    >>> with staged_outputs("model.keras", "model.keras.projection.npz") as (model, proj):
    ...     save(model); save_projection(proj)            # doctest: +SKIP
    """
    from ..locks import output_lock, sweep_partials

    finals = [Path(path) for path in paths]
    stages: dict[Path, Path] = {}
    locks = []
    try:
        temps = []
        for final in finals:
            key = final.parent.absolute()
            # One writer per output at a time; what a killed one staged is removed.
            lock = output_lock(_existing_folder(key) / final.name)
            lock.acquire()
            locks.append(lock)
            sweep_partials(lock.path.parent / final.name)
            if key not in stages:
                try:
                    stages[key] = Path(
                        tempfile.mkdtemp(
                            prefix=f".{final.name}.", suffix=".partial", dir=_existing_folder(key)
                        )
                    )
                except OSError as exc:
                    raise OutputError(f'Cannot write "{final}": {exc}') from exc
            temps.append(stages[key] / final.name)
        yield temps
        moved = []
        try:
            for temp, final in zip(temps, finals):
                if temp.exists():
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(temp, final)
                    moved.append(final)
        except OSError as exc:
            for final in moved:
                final.unlink(missing_ok=True)
            raise OutputError(f'Cannot write "{final}": {exc}') from exc
    finally:
        for stage in stages.values():
            shutil.rmtree(stage, ignore_errors=True)
        for lock in reversed(locks):
            lock.release()


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
        type=open_fraction,
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
