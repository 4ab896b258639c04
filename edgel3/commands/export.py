"""``edgel3 export``: a model to a LiteRT flatbuffer, with an optional check and report.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`); TensorFlow loads
inside :func:`run` only.
"""

from __future__ import annotations

import argparse

from .common import positive_float, positive_int, signature_defaults

__all__ = [
    "DESCRIPTION",
    "add_arguments",
    "run",
    "defaults",
    "QUANTIZATION_NAMES",
    "VARIANT_NAMES",
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


def defaults() -> dict:
    """Defaults of :func:`edgel3.export.export_model` (the CLI's single source)."""
    from ..export.convert import export_model

    return signature_defaults(export_model)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` options to ``parser``."""
    d = defaults()
    parser.add_argument(
        "model", help="a model name (tiny, sea-64, ...; see 'edgel3 models'), .h5/.h5.gz or .keras"
    )
    parser.add_argument("output", help="the .tflite file to write (OUTPUT.json goes beside it)")
    parser.add_argument(
        "-q",
        "--quantization",
        choices=QUANTIZATION_NAMES,
        default=d["quantization"],
        help="(default: %(default)s)",
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
        help="audio files/folders whose windows calibrate int8 activations (required for int8)",
    )
    parser.add_argument(
        "--calibration-windows",
        type=positive_int,
        default=d["calibration_windows"],
        help="most calibration windows (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-hop",
        type=positive_float,
        default=d["calibration_hop"],
        help="seconds between calibration windows in a file (default: %(default)s)",
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
        help="backbone: run the first (full-resolution) stage in N bands, one after the "
        "other, for a smaller LiteRT-Micro arena (default: %(default)s, no banding)",
    )
    parser.add_argument(
        "--check",
        nargs="+",
        metavar="AUDIO",
        help="compare the export with the Keras model on windows of these files/folders "
        "(max |diff| / scale, cosine, windows/s)",
    )
    parser.add_argument(
        "--check-windows",
        type=positive_int,
        default=64,
        help="windows used by --check (default: %(default)s)",
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


def run(args: argparse.Namespace) -> int:
    """Export, then optionally check fidelity and print the memory report."""
    from ..export.calibration import calibration_data
    from ..export.convert import export_model

    result = export_model(
        args.model,
        args.output,
        quantization=args.quantization,
        variant=args.variant,
        calibration=args.calibration,
        calibration_windows=args.calibration_windows,
        calibration_hop=args.calibration_hop,
        batch_size=None if args.dynamic_batch else 1,
        bands=args.bands,
    )
    print(
        f"wrote {result.path} ({result.size:,} bytes; {result.variant}, {result.quantization}"
        + (
            f", calibrated on {result.calibration_windows} windows"
            if result.calibration_windows
            else ""
        )
        + f") and {result.sidecar}"
    )
    if args.check:
        from ..export.fidelity import compare_embeddings
        from ..litert import LiteRTModel
        from ..reference import resolve_model

        model = resolve_model(args.model).load()  # cached: the model export_model loaded
        exported = LiteRTModel(result.path)
        windows = calibration_data(args.check, exported.sample_rate, max_windows=args.check_windows)
        stats = compare_embeddings(model, exported, windows)
        print(
            f"check on {stats['windows']} windows: max |diff| {stats['max_abs_diff']:.4g} "
            f"({stats['max_abs_diff_relative']:.2e} of the embedding scale {stats['scale']:.4g}), "
            f"cosine mean {stats['cosine_mean']:.5f} min {stats['cosine_min']:.5f}; "
            f"windows/s Keras {stats['windows_per_s_reference']:.1f}, "
            f"LiteRT {stats['windows_per_s_candidate']:.1f}"
        )
    if args.report:
        from ..export.memory import memory_report

        budgets = args.budget or ["cortex-m7"]
        print(memory_report(result.path, budgets=budgets).format(layers=False))
    return 0
