"""Command-line entry point: ``edgel3 [COMMAND] ...`` (``embed`` when no command is named).

The commands live in :mod:`edgel3.commands`, one module per command; this
module builds their parsers and runs them with uniform error handling
(``--debug`` for tracebacks, one ``edgel3: error: ...`` line otherwise). Heavy
modules are imported inside the commands' ``run``, so ``edgel3 --help`` loads
neither TensorFlow nor SciPy. The grammar shared by the commands is described
in docs/cli.rst.

edgel3 0.2.1's helpers are kept with their signatures: :func:`parse_args`,
:func:`run`, :func:`get_file_list`, :func:`positive_float` (and
:func:`positive_int`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Sequence

from .commands import COMMANDS, load_command
from .commands.common import HelpFormatter, positive_float, positive_int
from .exceptions import AudioError, EdgeL3Error, EdgeL3Warning, ParameterError
from .tf_logging import quiet_tensorflow_import

__all__ = [
    "main",
    "build_parser",
    "split_command",
    "parse_args",
    "run",
    "get_file_list",
    "positive_float",
    "positive_int",
    "BROKEN_PIPE_STATUS",
    "show_warning",
]

logger = logging.getLogger("edgel3")

#: Exit status when the reader of the output goes away (``edgel3 models | head -1``):
#: 128 + SIGPIPE, what a shell reports for a program a closed pipe stopped.
BROKEN_PIPE_STATUS = 141


class _Parser(argparse.ArgumentParser):
    """argparse, except that an abbreviation matching only aliases of one option is that option.

    (``--outp`` matches ``--output`` and ``--output-dir``, two spellings of one option:
    Python < 3.12 calls that ambiguous.)
    """

    def _get_option_tuples(self, option_string):
        matches = super()._get_option_tuples(option_string)
        if len({id(match[0]) for match in matches}) == 1:
            return matches[:1]
        return matches


def build_parser(command: str = "embed") -> argparse.ArgumentParser:
    """Return the argument parser of a command.

    Building it imports the command's module only (no TensorFlow, SciPy or
    :mod:`edgel3.core`).

    Parameters
    ----------
    command : str
        One of :data:`edgel3.commands.COMMANDS` (``'embed'``, ``'models'``, ...).

    Returns
    -------
    argparse.ArgumentParser

    Raises
    ------
    ParameterError
        For an unknown command.
    """
    module = load_command(command)
    parser = _Parser(
        prog="edgel3" if command == "embed" else f"edgel3 {command}",
        description=module.DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    module.add_arguments(parser)
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show full tracebacks on errors, and TensorFlow's own log lines",
    )
    return parser


def split_command(argv: Sequence[str]) -> tuple[str, list[str]]:
    """Split a command line into the command and its arguments.

    The first argument names the command when it is one of
    :data:`~edgel3.commands.COMMANDS` spelled exactly (``models``); anything else,
    ``models/`` and ``./models`` included, is an input of ``embed``. When the
    command's name is also an existing path, a note on stderr says how to embed it.

    Parameters
    ----------
    argv : sequence of str
        Arguments without the program name.

    Returns
    -------
    command : str
    arguments : list of str
    """
    argv = list(argv)
    if not argv or argv[0] not in COMMANDS:
        return "embed", argv
    command = argv.pop(0)
    if command != "embed" and os.path.exists(command):
        print(
            f"edgel3: note: '{command}' is read as the command 'edgel3 {command}'; to embed "
            f"the path, run 'edgel3 embed {command}' or 'edgel3 ./{command}'.",
            file=sys.stderr,
        )
    return command, argv


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (``sys.argv[1:]`` by default).

    Returns
    -------
    int
        0 ok; 1 errors (one ``edgel3: error: ...`` line); 2 usage errors; -1 when
        ``embed`` finds no audio (edgel3 0.2.1's status); 130 on Ctrl-C;
        :data:`BROKEN_PIPE_STATUS` when stdout's reader went away.
    """
    command, arguments = split_command(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = build_parser(command).parse_args(arguments)
        except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
            return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        logging.basicConfig(level=logging.ERROR, format="edgel3: %(message)s")
        logging.getLogger("edgel3.locks").setLevel(logging.WARNING)  # "waiting for ..." lines
        # TensorFlow's C++ start-up lines are noise on the command line (--debug shows them).
        quiet_tensorflow_import(not args.debug)
        try:
            with warnings.catch_warnings():
                warnings.showwarning = show_warning
                status = load_command(command).run(args)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
            return status
        except EdgeL3Error as exc:
            if args.debug:
                raise
            print(f"edgel3: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("edgel3: interrupted", file=sys.stderr)
            return 130
    except BrokenPipeError:
        _discard_stdout()
        return BROKEN_PIPE_STATUS


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print an edgel3 warning as one ``edgel3: warning: ...`` line (others as Python does).

    Installed as :func:`warnings.showwarning` while a command runs.
    """
    if issubclass(category, EdgeL3Warning):
        print(f"edgel3: warning: {message}", file=file or sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture stdout)
        pass


# --------------------------------------------------------------------------- 0.2.1's helpers


def parse_args(args: Sequence[str]) -> argparse.Namespace:
    """Parse the options of ``edgel3 [embed]`` (edgel3 0.2.1's function).

    Parameters
    ----------
    args : sequence of str
        Arguments without the program name, e.g. ``['x.wav', '-n', '-t', '0.5']``.

    Returns
    -------
    argparse.Namespace
        With 0.2.1's attributes (``inputs``, ``output_dir``, ``suffix``,
        ``model_type``, ``emb_dim``, ``retrain_type``, ``model_sparsity``,
        ``no_centering``, ``hop_size``, ``quiet``) and the newer options.

    Raises
    ------
    SystemExit
        For a usage error (status 2) or ``--help`` (status 0), as argparse does.
    """
    return build_parser("embed").parse_args(list(args))


def get_file_list(input_list: Iterable) -> list[str]:
    """The audio files of a list of files and directories (edgel3 0.2.1's function).

    Each item is expanded on its own, as 0.2.1 did (a file listed twice, or both
    by itself and inside a listed directory, appears twice). Unlike 0.2.1,
    directories are searched recursively, only files with an audio extension
    are taken from them, and every path is absolute.

    Parameters
    ----------
    input_list : iterable of path-like
        Not a single string.

    Returns
    -------
    list of str

    Raises
    ------
    argparse.ArgumentTypeError
        If ``input_list`` is a string or not iterable (0.2.1's error).
    AudioError
        If an item does not exist (an :class:`~edgel3.exceptions.EdgeL3Error`).
    """
    from .files import collect_audio_files

    if isinstance(input_list, (str, bytes)) or not isinstance(input_list, Iterable):
        raise argparse.ArgumentTypeError(
            f"input_list must be a list of paths (not a string); got {input_list!r}"
        )
    return [os.path.abspath(path) for item in input_list for path in collect_audio_files([item])]


def run(
    inputs,
    output_dir=None,
    suffix=None,
    model_type="sparse",
    emb_dim=128,
    retrain_type="ft",
    sparsity=95.45,
    center=True,
    hop_size=0.1,
    verbose=False,
    *,
    model=None,
    batch_size: int = 64,
    overwrite: bool = False,
):
    """Embed audio files and save the ``.npz`` files, as ``edgel3 INPUTS`` does (0.2.1's function).

    Parameters
    ----------
    inputs : path-like or iterable of path-like
        A file or directory, or a list of them (directories are searched
        recursively for audio files).
    output_dir, suffix, model_type, emb_dim, retrain_type, sparsity, center, hop_size
        As in :func:`edgel3.process_file`.
    verbose : bool
        Show a progress bar and the summary line.
    model : str, path-like or keras.Model, optional
        A model name, file or loaded model; overrides ``model_type`` ... ``sparsity``.
    batch_size : int
        Windows per forward pass.
    overwrite : bool
        Recompute files whose output already exists (skipped otherwise).

    Returns
    -------
    list of edgel3.runs.FileResult
        One per file (0.2.1 returned None).

    Raises
    ------
    SystemExit
        With status -1 after printing ``Edgel3: No WAV files found in INPUTS.
        Aborting.`` when ``inputs`` hold no audio file (0.2.1's behaviour).
    ParameterError
        If ``inputs`` is neither a path nor an iterable of paths, or for a bad option.
    AudioError
        If an input does not exist, or after embedding every other file when some
        files failed (each failure is printed on stderr).
    """
    from .batch import gather_inputs
    from .commands.embed import NO_AUDIO_STATUS, no_audio_message, report_results
    from .runs import process_files

    if isinstance(inputs, (str, os.PathLike)):
        items = [inputs]
    elif isinstance(inputs, Iterable) and not isinstance(inputs, bytes):
        items = list(inputs)
    else:
        raise ParameterError(f"Invalid input: {inputs!r}; expected a path or a list of paths.")
    files = gather_inputs(items)
    if not files:
        print(no_audio_message(inputs))
        sys.exit(NO_AUDIO_STATUS)
    results = process_files(
        files,
        output_dir=output_dir,
        suffix=suffix,
        model=model,
        model_type=model_type,
        emb_dim=emb_dim,
        retrain_type=retrain_type,
        sparsity=sparsity,
        center=center,
        hop_size=hop_size,
        batch_size=batch_size,
        overwrite=overwrite,
        progress=bool(verbose),
    )
    if report_results(results, quiet=not verbose):
        failed = [str(r.path) for r in results if r.status == "failed"]
        raise AudioError(f"{len(failed)} of {len(results)} files failed: {', '.join(failed)}.")
    return results


if __name__ == "__main__":
    sys.exit(main())
