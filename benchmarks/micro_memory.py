"""Device memory of the exports (issue 14 points 1 and 2): the interpreter against the estimate.

For each model (``tiny``; SEA-64 with the official weights when ``EDGEL3_WEIGHTS_DIR``
holds them, else random weights of its layout; ``--all`` adds SEA 128/256/512 and
the sparse L3 layout with random weights) and each export (int8, int8 with 3 bands,
float16, float32 backbone), calibrated on ESC-10 fold-1 clips (``--data``; synthesized
noise without it):

- the tflite-micro interpreter's head, tail, persistent buffers and total
  (:func:`edgel3.export.micro.micro_allocations`), or why it refuses the file;
- edgel3's estimates of the same: from the Keras model (planner head + tail margin,
  unbanded exports) and from the file's own graph;
- the file size against the Keras file estimate;
- which device presets each export fits (:meth:`MemoryReport.device_table`).

    EDGEL3_WEIGHTS_DIR=../shared/weights nice -n 10 python benchmarks/micro_memory.py \\
        --out micro_memory.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "esc10"
EXPORTS = {  # label -> export_model options
    "int8": {"quantization": "int8"},
    "int8 --bands 3": {"quantization": "int8", "bands": 3},
    "float16": {"quantization": "float16"},
    "float32 backbone": {"quantization": "none", "variant": "backbone"},
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load(name: str):
    """The Keras model: tiny (bundled), SEA-64 official if available, else random weights."""
    import keras

    from edgel3.bundled import TINY_PATH
    from edgel3.export.convert import load_keras_model
    from edgel3.loading import load_model_file
    from edgel3.models import build_model
    from edgel3.specs import get_spec

    if name == "tiny":
        return load_model_file(TINY_PATH), "bundled"
    if name == "sea-64":
        try:
            return load_keras_model(name), "official"
        except Exception as exc:  # no weights here: the layout with random weights
            log(f"sea-64 official weights unavailable ({exc}); random weights")
    keras.utils.set_random_seed(0)
    model = build_model(get_spec(name))
    rng = np.random.default_rng(0)
    for layer in model.layers:  # trained-looking BN (identity BN folds away)
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights(
                [rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.2, shape)]
                + [rng.normal(0, 0.2, shape), rng.uniform(0.5, 2.0, shape)]
            )
    return model, "random"


def calibration(data: Path, sample_rate: int, windows: int):
    from edgel3.export.calibration import calibration_data

    clips = sorted((data / "audio").glob("1-*"))
    if clips:
        return calibration_data(clips, sample_rate, max_windows=windows)
    return np.random.default_rng(0).normal(0, 0.1, (windows, sample_rate)).astype(np.float32)


def measure(name: str, data: Path, windows: int, folder: Path) -> dict:
    from edgel3.exceptions import ParameterError
    from edgel3.export.convert import export_model
    from edgel3.export.graph import graph_from_tflite
    from edgel3.export.memory import memory_report
    from edgel3.export.micro import MicroRuntimeError, micro_allocations
    from edgel3.export.schedule import micro_estimate
    from edgel3.runners import model_sample_rate

    model, weights = load(name)
    keras_report = memory_report(model, budgets=())
    keras_rows = {row["export"]: row for row in keras_report.exports}
    calib = calibration(data, model_sample_rate(model), windows)
    result = {"model": name, "weights": weights, "keras_device_table": None, "exports": {}}
    result["keras_device_table"] = keras_report.device_table()
    for label, options in EXPORTS.items():
        path = folder / f"{name}_{label.replace(' ', '_').replace('-', '')}.tflite"
        extra = {"calibration": calib} if options["quantization"] == "int8" else {}
        start = time.perf_counter()
        try:
            export_model(model, path, **options, **extra)
        except ParameterError as exc:  # tiny's stride-2 stem cannot be banded
            log(f"{name} {label}: {exc}")
            continue
        seconds = time.perf_counter() - start
        try:
            device = micro_allocations(path)
        except MicroRuntimeError as exc:
            device = {"refused": str(exc)}
        graph = graph_from_tflite(path.read_bytes())
        report = memory_report(path, budgets=())
        precision = {"float16": "float16", "float32 backbone": "float32"}.get(label, "int8")
        keras = keras_rows[precision]
        row = {
            "file_bytes": path.stat().st_size,
            "file_estimate": keras["need"]["flash_parts"]["model"],
            "interpreter": device,
            "estimate_from_keras": keras["micro"],
            "estimate_from_file": micro_estimate(graph, graph.nodes, None),
            "device_table": report.device_table(),
            "export_seconds": round(seconds, 1),
        }
        result["exports"][label] = row
        log(f"{name} {label}: {json.dumps({k: row[k] for k in ('file_bytes', 'interpreter')})}")
    return result


def print_tables(results: list) -> None:
    from edgel3.export.report_text import format_device_table

    print(
        f"{'model':8} {'export':17} {'file':>10} {'head':>9} {'tail':>7} {'persist':>8} "
        f"{'total':>9} {'est.file':>9} {'est.keras':>10}  {'ratio':>6}"
    )
    for result in results:
        for label, row in result["exports"].items():
            device, keras = row["interpreter"], row["estimate_from_keras"]
            own = row["estimate_from_file"]
            if "total" in device:
                figures = (
                    f"{device['head']:>9,} {device['tail']:>7,} {device['persistent']:>8,} "
                    f"{device['total']:>9,}"
                )
                ratio = f"{keras['total'] / device['total']:.3f}" if "bands" not in label else ""
            else:
                figures, ratio = f"{'(interpreter refuses: no float16 kernels)':>36}", ""
            print(
                f"{result['model']:8} {label:17} {row['file_bytes']:>10,} {figures} "
                f"{own['total']:>9,} {keras['total']:>10,}  {ratio:>6}"
            )
    for result in results:
        print()
        print(format_device_table(result["keras_device_table"]))
        for label, row in result["exports"].items():
            table = row["device_table"]
            table["model"] = f"{result['model']} {label} ({table['model']})"
            print()
            print(format_device_table({**table, "rows": table["rows"]}).split("\n  devices")[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ESC-10 folder")
    parser.add_argument("--calibration-windows", type=int, default=200)
    parser.add_argument("--all", action="store_true", help="also SEA 128/256/512 and sparse L3")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    names = ["tiny", "sea-64"]
    if args.all:
        names += ["sea-128", "sea-256", "sea-512", "edgel3_ft_audio_sparsity_95.45"]
    with tempfile.TemporaryDirectory(prefix="micro_memory_") as tmp:
        results = [measure(n, args.data, args.calibration_windows, Path(tmp)) for n in names]
    print_tables(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
