"""``python -m edgel3 ...``: the ``edgel3`` command line (:func:`edgel3.cli.main`).

As in edgel3 0.2.1 (whose tests import this module to run the command line),
importing this module runs the command line on ``sys.argv``; a non-zero exit
status ends the interpreter with that status.
"""

import sys

from .cli import main

status = main()
if status or __name__ == "__main__":
    sys.exit(status)
