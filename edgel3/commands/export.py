"""``edgel3 export``: a model to a LiteRT flatbuffer, with an optional check and report.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`); TensorFlow loads
inside :func:`run` only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_output, add_quiet, positive_float, positive_int, signature_defaults

__all__ = [
    "DESCRIPTION",
    "add_arguments",
    "run",
    "defaults",
    "QUANTIZATION_NAMES",
    "VARIANT_NAMES",
    "EXPORT_DEFAULTS",
    "output_path",
]

#: Equal to :data:`edgel3.export.convert.QUANTIZATIONS` / ``VARIANTS`` (a test checks),
#: repeated so that ``--help`` does not import the converter.
QUANTIZATION_NAMES = ("none", "float16", "dynamic", "int8")
VARIANT_NAMES = ("full", "backbone")

DESCRIPTION = (
    "Export an embedding model to LiteRT (TFLite): float32, float16, dynamic-range or full "
    "int8 (calibrated on audio you name). Writes OUTPUT.tflite and OUTPUT.json (variant, "
    "quantization, input/output scales, and for the backbone variant the front-end constants "
    "a device needs). Run the result with 'edgel3 --model OUTPUT.tflite ...'."
)


#: Defaults of :func:`edgel3.export.export_model`, repeated so that ``--help`` does not
#: import the converter (:func:`defaults` reads them from it; a test checks they are equal).
EXPORT_DEFAULTS = {
    "quantization": "none",
    "variant": None,
    "calibration": None,
    "calibration_windows": 200,
    "calibration_hop": 0.5,
    "bands": 1,
}


def defaults() -> dict:
    """Defaults of :func:`edgel3.export.export_model` (imports the converter)."""
    from ..export.convert import export_model

    return signature_defaults(export_model)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` options to ``parser``."""
    d = EXPORT_DEFAULTS
    parser.add_argument(
        "model", help="a model name (tiny, sea-64, ...; see 'edgel3 models'), .h5/.h5.gz or .keras"
    )
    parser.add_argument(
        "output_positional",
        nargs="?",
        metavar="OUTPUT",
        help="the .tflite file to write, as -o OUTPUT (the older spelling)",
    )
    add_output(
        parser,
        "the .tflite file to write, OUTPUT.json beside it (required: here or as the "
        "second argument)",
        metavar="OUTPUT",
    )
    parser.add_argument(
        "-Q",
        "--quantization",
        choices=QUANTIZATION_NAMES,
        default=d["quantization"],
        help="weights/activations precision: none (float32), float16, dynamic (int8 "
        "weights) or int8 (full integer, needs --calibration)",
    )
    parser.add_argument(
        "--variant",
        choices=VARIANT_NAMES,
        default=d["variant"],
        help="'full': 1-s audio in; 'backbone': log-mel patch in (default: full for float32, "
        "backbone when quantized)",
    )
    parser.add_argument(
        "--calibration",
        nargs="+",
        metavar="AUDIO",
        default=d["calibration"],
        help="audio files/folders whose windows calibrate int8 activations (required for "
        "int8; default: none)",
    )
    parser.add_argument(
        "--calibration-windows",
        type=positive_int,
        default=d["calibration_windows"],
        metavar="N",
        help="most calibration windows",
    )
    parser.add_argument(
        "--calibration-hop",
        type=positive_float,
        default=d["calibration_hop"],
        metavar="SECONDS",
        help="seconds between calibration windows in a file",
    )
    parser.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="resizable batch axis (default: batch 1, static shapes for microcontrollers)",
    )
    parser.add_argument(
        "--bands",
        type=positive_int,
        default=d["bands"],
        metavar="N",
        help="backbone: run the first (full-resolution) stage in N bands, one after the "
        "other, for a smaller LiteRT-Micro arena (default: %(default)s, no banding)",
    )
    parser.add_argument(
        "--c-source",
        metavar="DIR",
        help="also write DIR/NAME_model_data.cc/.h (the model as an aligned C array) and "
        "DIR/NAME_frontend.h (front-end constants, int8 scales) for a TFLite Micro "
        "application, NAME the output's stem; backbone exports only (default: none)",
    )
    parser.add_argument(
        "--check",
        nargs="+",
        metavar="AUDIO",
        help="compare the export with the Keras model on windows of these files/folders "
        "(max |diff| / scale, cosine, windows/s) (default: no check)",
    )
    parser.add_argument(
        "--check-windows",
        type=positive_int,
        default=64,
        metavar="N",
        help="windows used by --check",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="print the memory report of the exported file",
    )
    parser.add_argument(
        "--budget",
        action="append",
        metavar="BUDGET",
        help="with --report: budget name (cortex-m7) or 'name:flash=2MiB,ram=1MiB,"
        "inference=512KiB'; repeatable (default: cortex-m7)",
    )
    add_quiet(parser, "do not print what was written (--check and --report still print)")


def output_path(args: argparse.Namespace) -> str:
    """The output file given as ``-o OUTPUT`` or as the second positional argument.

    Raises
    ------
    ParameterError
        If neither or two different ones are given.
    """
    from ..exceptions import ParameterError

    given = {path for path in (args.output, args.output_positional) if path}
    if len(given) != 1:
        raise ParameterError(
            "Give the .tflite file to write once: edgel3 export MODEL -o OUTPUT.tflite"
            + (f"; got {sorted(given)}." if given else ".")
        )
    return given.pop()


def run(args: argparse.Namespace) -> int:
    """Export, then optionally check fidelity and print the memory report.

    Every input (budgets, check audio, calibration audio) and the output names
    are checked before anything is written, and the files are written out of
    sight (:func:`~edgel3.commands.common.staged_outputs`): they appear only
    when the export, its check and its report all succeeded.
    """
    import dataclasses

    from ..exceptions import ParameterError
    from ..export.budgets import parse_budget
    from ..export.calibration import calibration_data
    from ..export.convert import check_export_paths, export_model, load_keras_model
    from ..export.csource import check_c_source_dir, write_c_sources
    from ..litert import sidecar_path
    from ..runners import model_sample_rate
    from ..tf_logging import quiet_native_logs
    from .common import staged_outputs

    output = output_path(args)
    check_export_paths(output)
    if args.budget and not args.report:
        raise ParameterError("--budget is checked by the memory report: add --report.")
    budgets = [parse_budget(budget) for budget in args.budget or ["cortex-m7"]]
    c_paths = ()
    if args.c_source is not None:
        if args.variant == "full" or (args.variant is None and args.quantization == "none"):
            raise ParameterError(
                "--c-source writes the front end a device computes, for backbone exports "
                "(log-mel input): add --variant backbone or quantize (-Q int8)."
            )
        c_paths = check_c_source_dir(args.c_source, Path(output).stem)
    windows = None
    if args.check:  # read before anything is written: a bad file costs no export
        sample_rate = model_sample_rate(load_keras_model(args.model))
        windows = calibration_data(args.check, sample_rate, max_windows=args.check_windows)
    lines = []
    with staged_outputs(output, sidecar_path(output), *c_paths) as (staged, _, *c_staged):
        with quiet_native_logs():  # the converter's and LiteRT's C++ log lines
            result = export_model(
                args.model,
                staged,
                quantization=args.quantization,
                variant=args.variant,
                calibration=args.calibration,
                calibration_windows=args.calibration_windows,
                calibration_hop=args.calibration_hop,
                batch_size=None if args.dynamic_batch else 1,
                bands=args.bands,
            )
        result = dataclasses.replace(result, path=Path(output), sidecar=sidecar_path(output))
        if not args.quiet:
            lines.append(
                f"wrote {result.path} ({result.size:,} bytes; {result.variant}, "
                f"{result.quantization}"
                + (
                    f", calibrated on {result.calibration_windows} windows"
                    if result.calibration_windows
                    else ""
                )
                + f") and {result.sidecar}"
            )
        if c_paths:
            write_c_sources(staged, c_staged[0].parent, name=Path(output).stem)
            if not args.quiet:
                lines.append("and C sources " + ", ".join(str(path) for path in c_paths))
        if windows is not None:
            lines.append(_check(args.model, staged, windows))
        if args.report:
            from ..export.memory import memory_report

            lines.append(memory_report(staged, budgets=budgets).format(layers=False))
    if lines:
        print("\n".join(lines))
    return 0


def _check(model, exported_path, windows) -> str:
    """The fidelity line of ``--check``: the export against the Keras model on ``windows``."""
    from ..export.fidelity import compare_embeddings
    from ..litert import LiteRTModel
    from ..reference import resolve_model
    from ..tf_logging import quiet_native_logs

    keras_model = resolve_model(model).load()  # cached: the model export_model loaded
    with quiet_native_logs():
        stats = compare_embeddings(keras_model, LiteRTModel(exported_path), windows)
    return (
        f"check on {stats['windows']} windows: max |diff| {stats['max_abs_diff']:.4g} "
        f"({stats['max_abs_diff_relative']:.2e} of the embedding scale {stats['scale']:.4g}), "
        f"cosine mean {stats['cosine_mean']:.5f} min {stats['cosine_min']:.5f}; "
        f"windows/s Keras {stats['windows_per_s_reference']:.1f}, "
        f"LiteRT {stats['windows_per_s_candidate']:.1f}"
    )
