"""``edgel3 memory-report``: sizes, MACs and activation memory against device budgets.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`). A ``.tflite``
file is read without TensorFlow; Keras models (official names, weight files) load
it inside :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_output

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Memory report of a model or an exported .tflite file: parameters, static size per "
    "precision (dense and sparse-encoded), MACs per window, largest activation, the peak "
    "of live activations and the LiteRT-Micro arena (head, tail, persistent buffers, total: "
    "from the tflite-micro interpreter for a .tflite file when it is installed, else an "
    "estimate with a margin), checked against budgets; --device: which exports fit which "
    "device presets. Prints text (--json: JSON); -o FILE also writes the report as JSON."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``memory-report`` options to ``parser``."""
    parser.add_argument(
        "model",
        help="a model name (tiny, sea-64, ...; see 'edgel3 models'), .h5/.h5.gz, .keras or "
        ".tflite file",
    )
    parser.add_argument(
        "--budget",
        action="append",
        metavar="BUDGET",
        help="budget name (a device preset: cortex-m7, stm32l476, nrf52840, esp32-s3, rp2040) "
        "or 'name:flash=2MiB,ram=1MiB,inference=512KiB,code=128KiB' (any subset; "
        "K/KB/KiB = 1024 B); repeatable (default: cortex-m7)",
    )
    parser.add_argument(
        "--device",
        action="append",
        metavar="NAME",
        help="print which exports fit which device presets instead of the report: a preset "
        "name or 'all'; repeatable (default: no device table)",
    )
    parser.add_argument(
        "--no-budget", action="store_true", help="check no budget (just the figures)"
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="print the report as JSON instead of text (default: text); '--json FILE' "
        "(the older spelling of -o FILE) prints text and writes JSON to FILE",
    )
    add_output(parser, "also write the report as JSON to this file (default: print only)")
    parser.add_argument("--no-layers", action="store_true", help="leave out the per-layer table")
    parser.add_argument(
        "--include-frontend",
        action="store_true",
        help="Keras models: count the mel spectrogram's input and output as activations",
    )
    parser.add_argument(
        "--fail-over-budget",
        action="store_true",
        help="exit with status 3 if any budget check fails",
    )


def run(args: argparse.Namespace) -> int:
    """Print the report (and write JSON); 3 with --fail-over-budget if a check fails."""
    from ..checks import check_output_path
    from ..exceptions import ParameterError
    from ..export.devices import select_devices
    from ..export.memory import memory_report, parse_budget
    from ..export.report_text import format_device_table
    from ..files import atomic_write

    # Budgets and the output name are checked before the model loads.
    if args.no_budget and args.budget:
        raise ParameterError("--no-budget checks no budget: leave out --budget.")
    budgets = [] if args.no_budget else [parse_budget(b) for b in (args.budget or ["cortex-m7"])]
    files = {path for path in (args.output, args.json) if path and path != "-"}
    if len(files) > 1:
        raise ParameterError(
            f"Give the JSON file to write once (-o FILE, or the older --json FILE); got "
            f"{sorted(files)}."
        )
    json_file = files.pop() if files else None
    if json_file:
        check_output_path(json_file, "-o/--output")
    devices = select_devices(args.device) if args.device else None
    report = memory_report(args.model, budgets=budgets, include_frontend=args.include_frontend)
    data = report.to_dict()
    if devices is not None:
        data["device_table"] = report.device_table(devices)
    if args.json == "-":
        print(json.dumps(data, indent=1))
    elif devices is not None:
        print(format_device_table(data["device_table"]))
    else:
        print(report.format(layers=not args.no_layers))
    if json_file:
        with atomic_write(json_file) as handle:
            handle.write((json.dumps(data, indent=1) + "\n").encode("utf-8"))
        print(f"wrote {json_file}", file=sys.stderr)
    if args.fail_over_budget and not report.passed():
        return 3
    return 0
