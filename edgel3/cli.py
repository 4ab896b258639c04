"""Command-line entry point: ``edgel3 [COMMAND] ...`` (``embed`` when no command is named).

The commands live in :mod:`edgel3.commands`, one module per command; this
module only builds their parsers and runs them with uniform error handling
(``--debug`` for tracebacks, one ``edgel3: error: ...`` line otherwise). Heavy
modules are imported inside the commands' ``run``, so ``edgel3 --help`` does
not load TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .commands import COMMANDS, load_command
from .exceptions import EdgeL3Error

__all__ = ["main", "build_parser"]

logger = logging.getLogger("edgel3")


def build_parser(command: str = "embed") -> argparse.ArgumentParser:
    """Return the argument parser of a command.

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
    parser = argparse.ArgumentParser(
        prog="edgel3" if command == "embed" else f"edgel3 {command}",
        description=module.DESCRIPTION,
    )
    module.add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 errors, 2 usage).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (``sys.argv[1:]`` by default).

    Returns
    -------
    int
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "embed"
    try:
        args = build_parser(command).parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code or 0)
    logging.basicConfig(level=logging.ERROR, format="edgel3: %(message)s")
    if not args.debug:
        # TensorFlow's C++ info/warning logs are noise for CLI users (the few lines it prints
        # before its logger initialises cannot be silenced from here).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return load_command(command).run(args)
    except EdgeL3Error as exc:
        if args.debug:
            raise
        print(f"edgel3: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgel3: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
