"""The task-student table on ESC-10: SEA-64 teacher, int8 students, leave-one-fold-out.

Runs ``edgel3 distill-task`` (:func:`edgel3.compress.task_students.distill_task`)
on ESC-10 (400 five-second clips, 10 classes, ESC-50's 5 folds) with the
official SEA-64 weights as teacher, a logistic-regression teacher classifier
and students of width 0.25, 0.5 and 1 (the bundled tiny architecture), every
fold held out in turn. Prints the table and writes ``task_students.json``,
``.txt`` and ``.md`` and the int8 exports to ``--output``; the JSON gains
``benchmark`` (command line, machine, load average, wall time).

Time: 19.3 minutes measured with the default 40 epochs (niced, on a 2-core
CPU with a load average of 2-4 from other jobs): 34 s of embedding and log-mel
patches, then about 3.7 minutes per fold for the three students (a student
epoch is ~2,700 windows; early stopping ends most runs before 40 epochs),
their int8 exports and scoring. ``--epochs`` trades accuracy for time. Run it
niced on a shared machine::

    EDGEL3_WEIGHTS_DIR=../shared/weights nice -n 10 python benchmarks/task_students.py \\
        --data ../shared/data/esc10 -o task_students_esc10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/esc10", help="the ESC-10 root")
    parser.add_argument("-o", "--output", default="task_students_esc10", help="output folder")
    parser.add_argument("--teacher", default="sea-64")
    parser.add_argument("--sizes", default="0.25,0.5,1")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--test-folds", nargs="+", default=None)
    args = parser.parse_args(argv)

    from edgel3.cli import main as edgel3
    from edgel3.files import atomic_write

    root = Path(args.data)
    command = [
        "distill-task",
        str(root / "audio"),
        "--metadata",
        str(root / "meta" / "esc10.csv"),
        "--teacher",
        args.teacher,
        "--sizes",
        args.sizes,
        "--epochs",
        str(args.epochs),
        "-o",
        args.output,
    ]
    if args.test_folds:
        command += ["--test-folds", *args.test_folds]
    start = time.perf_counter()
    status = edgel3(command)
    seconds = time.perf_counter() - start
    if status:
        return status
    path = Path(args.output) / "task_students.json"
    report = json.loads(path.read_text())
    report["benchmark"] = {
        "command": "edgel3 " + " ".join(command),
        "wall_s": seconds,
        "load_average_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
    }
    with atomic_write(path) as handle:
        handle.write((json.dumps(report, indent=1) + "\n").encode("utf-8"))
    print(f"\nwall time {seconds / 60:.1f} min; {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
