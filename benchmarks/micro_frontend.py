"""The microcontroller front end on real audio (issue 14 point 4), one run.

Measured on ESC-10 (``--data``, the ESC-50 layout read in place), every clip
resampled to 8 kHz by edgel3's exact resampler and cut into 1-s windows every
0.5 s (:func:`edgel3.export.calibration.calibration_data`), then quantized to
int16 as a 16-bit ADC delivers it:

1. patches: :func:`edgel3.export.micro_frontend.micro_melspectrogram` on the int16
   samples against :func:`edgel3.frontend.melspectrogram` on the same samples as
   float (``q / 32768``): max and mean |dB difference| over all cells, the max over
   cells above -20, -40 and -50 dB, the max of the difference times ``10**(L/10)`` (a
   cell at level L has ``10**(L/10)`` of the peak's amplitude), the share of int8 input
   codes that differ, and what int16 rounding of the audio itself changes;
2. for ``tiny`` and SEA-64 (official weights), each exported to int8 (calibrated
   on ``--calibration-windows`` windows of fold-1 clips): cosine of the embeddings
   of the int8 file fed by the microcontroller front end against the Keras model,
   and against the int8 file fed by the float front end, on ``--windows`` windows of
   folds 2-5;
3. the edgel3 evaluate quick protocol on ESC-10 (hop 0.5 s, logistic regression) for
   the Keras model and for the int8 file fed by the microcontroller front end:
   tiny on test folds 4 and 5 (its training used folds 1-3: docs/model_card_tiny.md),
   SEA-64 on all five folds;
4. :func:`edgel3.export.micro_frontend.frontend_cost` next to the network's MACs.

    EDGEL3_WEIGHTS_DIR=../shared/weights nice -n 10 python benchmarks/micro_frontend.py \
        --out micro_frontend.json
    python benchmarks/micro_frontend.py --quick      # 40 clips, tiny only, no accuracy
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "esc10"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def esc10_files(data: Path) -> dict[int, list[Path]]:
    """ESC-10 audio files by fold (the csv names .wav; the copy holds .flac)."""
    folds: dict[int, list[Path]] = {}
    with open(data / "meta" / "esc10.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            name = row["filename"]
            path = data / "audio" / name
            if not path.is_file():
                path = path.with_suffix(".flac")
            folds.setdefault(int(row["fold"]), []).append(path)
    return folds


def patch_differences(windows: np.ndarray, scale: float, zero_point: int) -> dict:
    """Microcontroller vs float front end on the same int16 windows."""
    from edgel3.export.micro_frontend import micro_melspectrogram, quantize_patches, to_int16
    from edgel3.frontend import melspectrogram
    from edgel3.specs import SEA_FRONTEND

    thresholds = (-20, -40, -50)
    worst = worst_scaled = worst_unquantized = total_unquantized = 0.0
    worst_above = dict.fromkeys(thresholds, 0.0)
    total = cells = codes_differ = 0
    for start in range(0, len(windows), 64):
        part = windows[start : start + 64]
        samples = to_int16(part)
        micro = micro_melspectrogram(samples, SEA_FRONTEND)
        ref = melspectrogram(samples.astype(np.float32) / np.float32(32768), SEA_FRONTEND)
        diff = np.abs(micro.astype(np.float64) - ref)
        worst = max(worst, float(diff.max()))
        # The error scaled to the peak's level: 10**(L/10) is the cell's amplitude relative to
        # the window's maximum (tests/test_micro_frontend.py bounds this by DB_BOUND).
        worst_scaled = max(worst_scaled, float((diff * 10.0 ** (ref / 10.0)).max()))
        for level in thresholds:
            loud = diff[ref > level]
            worst_above[level] = max(worst_above[level], float(loud.max(initial=0.0)))
        total += float(diff.sum())
        cells += diff.size
        codes = quantize_patches(micro, scale, zero_point)
        codes_differ += int(np.count_nonzero(codes != quantize_patches(ref, scale, zero_point)))
        unquantized = melspectrogram(part, SEA_FRONTEND)
        gap = np.abs(micro.astype(np.float64) - unquantized)
        worst_unquantized = max(worst_unquantized, float(gap.max()))
        total_unquantized += float(gap.sum())
    return {
        "windows": int(len(windows)),
        "max_db": worst,
        "mean_db": total / cells,
        **{f"max_db_above_minus{-level}": worst_above[level] for level in thresholds},
        "max_db_scaled_to_peak_level": worst_scaled,
        "int8_codes_differing": codes_differ / cells,
        # The float front end on the audio before int16 rounding: what 16-bit samples cost.
        "max_db_vs_float_audio_not_int16": worst_unquantized,
        "mean_db_vs_float_audio_not_int16": total_unquantized / cells,
    }


def export_int8(model, name: str, calibration: list[Path], windows: int, out: Path) -> Path:
    from edgel3.export.convert import export_model
    from edgel3.tf_logging import quiet_native_logs

    path = out / f"{name}_int8.tflite"
    with quiet_native_logs():
        export_model(
            model, path, quantization="int8", calibration=calibration, calibration_windows=windows
        )
    return path


def cosines(keras_model, exported: Path, windows: np.ndarray) -> dict:
    from edgel3.export.fidelity import compare_embeddings
    from edgel3.export.micro_frontend import to_int16
    from edgel3.export.micro_model import MicroFrontendModel
    from edgel3.litert import LiteRTModel

    litert = LiteRTModel(exported)
    micro = MicroFrontendModel(litert)
    # The same int16 samples for every path, so only the front end and the network differ.
    audio = (to_int16(windows).astype(np.float32) / np.float32(32768))[:, None]
    keys = ("cosine_mean", "cosine_min", "max_abs_diff_relative")
    pairs = {
        "micro_int8_vs_keras": (keras_model, micro),
        "float_frontend_int8_vs_keras": (keras_model, litert),
        "micro_int8_vs_float_frontend_int8": (litert, micro),
    }
    result = {}
    for label, (reference, candidate) in pairs.items():
        stats = compare_embeddings(reference, candidate, audio)
        result[label] = {key: stats[key] for key in keys}
    return result


def accuracy(model, data: Path, test_folds, cache: Path) -> dict:
    from edgel3.evaluate import evaluate

    start = time.perf_counter()
    report = evaluate(
        data,
        data / "meta" / "esc10.csv",
        model=model,
        quick=True,
        test_folds=test_folds,
        cache_dir=cache,
        plots=False,
    )
    acc = report["accuracy"]
    return {
        "mean": acc["mean"],
        "per_fold": acc["per_fold"],
        "seconds": time.perf_counter() - start,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--windows", type=int, default=400, help="windows for the cosines")
    parser.add_argument("--calibration-windows", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)

    import edgel3
    from edgel3.export.calibration import calibration_data
    from edgel3.export.convert import load_keras_model
    from edgel3.export.csource import resolver_calls
    from edgel3.export.memory import memory_report
    from edgel3.export.micro_frontend import frontend_cost
    from edgel3.litert import LiteRTModel

    folds = esc10_files(args.data)
    every = [p for f in sorted(folds) for p in folds[f]]
    held = [p for f in sorted(folds) if f != 1 for p in folds[f]]
    if args.quick:
        every, held = every[::10], held[::10]
    results: dict = {"data": str(args.data), "clips": len(every)}

    log(f"resampling {len(every)} clips to 8 kHz")
    windows = calibration_data(every, 8000, max_windows=10**6, hop_size=0.5)
    models = {"tiny": "tiny"} if args.quick else {"tiny": "tiny", "sea-64": "sea-64"}
    held_windows = calibration_data(held, 8000, max_windows=args.windows, hop_size=0.5)
    with tempfile.TemporaryDirectory(prefix="edgel3_micro_") as tmp:
        tmp = Path(tmp)
        for name, source in models.items():
            log(f"{name}: int8 export")
            keras_model = load_keras_model(source)
            exported = export_int8(keras_model, name, folds[1], args.calibration_windows, tmp)
            detail = LiteRTModel(exported).input_details
            scale, zero_point = (float(v) for v in detail["quantization"])
            entry: dict = {"input_scale": scale, "input_zero_point": int(zero_point)}
            if name == "tiny":  # the front end is the same for both models (SEA_FRONTEND)
                log(f"patches of {len(windows)} windows")
                results["patches"] = patch_differences(windows, scale, int(zero_point))
            entry["resolver_calls"] = resolver_calls(exported.read_bytes())
            report = memory_report(exported)
            cost = frontend_cost(LiteRTModel(exported).frontend)
            entry["macs_network"] = int(report.macs["network"])
            entry["macs_frontend_dense_dft"] = int(report.macs["frontend"])
            entry["frontend_cost"] = {
                "macs": cost.macs,
                "ops": cost.ops,
                "buffer_bytes": cost.buffer_bytes,
                "buffers": cost.buffers,
                "table_bytes": cost.table_bytes,
                "tables": cost.tables,
                "audio_bytes": cost.audio_bytes,
            }
            log(f"{name}: cosines on {len(held_windows)} windows")
            entry["cosines"] = cosines(keras_model, exported, held_windows)
            if not args.quick:
                from edgel3.export.micro_model import MicroFrontendModel

                test_folds = (4, 5) if name == "tiny" else None
                log(f"{name}: ESC-10 quick protocol, Keras")
                entry["accuracy_keras"] = accuracy(source, args.data, test_folds, tmp / "cache")
                log(f"{name}: ESC-10 quick protocol, int8 fed by the microcontroller front end")
                entry["accuracy_micro_int8"] = accuracy(
                    MicroFrontendModel(exported), args.data, test_folds, tmp / "cache"
                )
                entry["test_folds"] = list(test_folds) if test_folds else [1, 2, 3, 4, 5]
            results[name] = entry
    results["edgel3_version"] = edgel3.__version__
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
