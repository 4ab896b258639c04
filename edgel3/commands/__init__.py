"""The ``edgel3`` subcommands: one module per command, dispatched by :mod:`edgel3.cli`.

===================  ==========================================  ===========================
command              module                                      library it drives
===================  ==========================================  ===========================
``edgel3 [embed]``   :mod:`edgel3.commands.embed`                :mod:`edgel3.core`,
                                                                 :mod:`edgel3.batch`
``models``           :mod:`edgel3.commands.models`               :mod:`edgel3.reference`
``download``         :mod:`edgel3.commands.download`             :mod:`edgel3.weights`
``evaluate``         :mod:`edgel3.commands.evaluate`             :mod:`edgel3.evaluate`
``export``           :mod:`edgel3.commands.export`               :mod:`edgel3.export`
``memory-report``    :mod:`edgel3.commands.memory_report`        :mod:`edgel3.export.memory`
``prune``            :mod:`edgel3.commands.prune`                :mod:`edgel3.compress`
``distill``          :mod:`edgel3.commands.distill`              :mod:`edgel3.compress`
``distill-task``     :mod:`edgel3.commands.distill_task`         :mod:`edgel3.compress`
``sea``              :mod:`edgel3.commands.sea`                  :mod:`edgel3.compress`
===================  ==========================================  ===========================

Every command module defines ``DESCRIPTION`` (str), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status), and imports nothing heavy at module
level: TensorFlow, scikit-learn and Ray load inside ``run``, so ``--help`` stays
light. Argument types and helpers they share are in :mod:`edgel3.commands.common`,
with the option grammar every command follows (one meaning per short flag,
``-o/--output`` for what a command writes, defaults shown; docs/cli.rst).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..exceptions import ParameterError

__all__ = ["COMMANDS", "module_name", "load_command"]

#: Every command, in the order the help text lists them; ``embed`` is the default.
COMMANDS = (
    "embed",
    "models",
    "download",
    "evaluate",
    "export",
    "memory-report",
    "prune",
    "distill",
    "distill-task",
    "sea",
)


def module_name(command: str) -> str:
    """The module implementing ``command`` (``'memory-report'`` -> ``'...commands.memory_report'``).

    Parameters
    ----------
    command : str
        One of :data:`COMMANDS`.

    Returns
    -------
    str

    Raises
    ------
    ParameterError
        For an unknown command.
    """
    if command not in COMMANDS:
        raise ParameterError(f"Unknown command {command!r}; expected one of {COMMANDS}.")
    return f"{__name__}.{command.replace('-', '_')}"


def load_command(command: str) -> ModuleType:
    """Import the module of ``command`` (see :func:`module_name`).

    Parameters
    ----------
    command : str

    Returns
    -------
    module
        With ``DESCRIPTION``, ``add_arguments`` and ``run``.
    """
    return importlib.import_module(module_name(command))
