"""edgel3 speed and memory benchmark (issue 3): one command, JSON + a markdown table.

    python benchmarks/benchmark.py [--quick] [--out results.json] [--table results.md]

Cases (each runs in its own process, so its peak RSS is its own):

* ``model``: model-only throughput on native-rate arrays (SEA-64 official weights,
  SEA-512 and the sparse L3 network pruned to the 95.45 % plan, random weights),
  windows/s, audio-seconds/s, MACs per window counted from the model, achieved
  GFLOP/s as a fraction of the float32 matmul peak measured in the same run,
  time split frontend / network; plus, for SEA-64, the 8 convs alone.
* ``file``: end to end on a 44.1 kHz file (``process_file``), split I/O /
  resample / frontend / network.
* ``cli``: the CLI over a folder of 44.1 kHz files.
* ``memory``: peak RSS of ``process_file`` on a 10-min and a 60-min 44.1 kHz file.
* ``resampler``: the legacy resampler (60 s of 44.1 kHz -> 8 / 48 kHz) and the fast one.
* ``fast``: embedding difference caused by ``fast_resample=True``.
* ``variants``: SEA-64 inference variants (predict_on_batch, tf.function, XLA, batch size).

The original's numbers (issue 3, same machine class) are kept below for the ratios.
Absolute times drift 10-20 % on shared machines; the matmul peak is measured
before and after the cases and every fraction uses the best of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("EDGEL3_SHARED_DIR", ROOT.parent / "shared"))
WEIGHTS_DIR = Path(os.environ.get("EDGEL3_WEIGHTS_DIR", SHARED / "weights"))
SEA64_FILE = WEIGHTS_DIR / "edgel3_sea_ust_audio_emb_64.h5.gz"
PLAN_95_45 = (0, 85, 85, 85, 75, 95, 98, 98)  # docs/models.rst §4

#: edgel3 0.2.1 on this machine class (issue 3).
ORIGINAL = {
    "sea64_windows_per_s": 243.0,
    "sparse_windows_per_s": 5.1,
    "resample_60s_44k_to_8k_s": 1.45,
    "resample_60s_44k_to_48k_s": 2.25,
    "sea64_peak_rss_10min_gb": 1.74,
    "matmul_peak_gflops": 181.0,
    # 60 s at 44.1 kHz, end to end: resampling + model (+ a little I/O).
    "sea64_file_60s_s": 1.45 + 2.46,
}
TARGETS = {
    "sea64_windows_per_s": 490.0,
    "sea64_conv_fraction_of_peak": 0.65,
    "sparse_windows_per_s": 3 * 5.1,
    "file_speedup": 2.5,
    "peak_rss_gb": 1.0,
    "rss_growth_60_vs_10": 0.10,
}


# --------------------------------------------------------------------------- measurements


def matmul_peak(n: int = 2048, repeats: int = 7) -> float:
    """float32 matmul GFLOP/s of NumPy's BLAS with all its threads (best of ``repeats``)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    best = np.inf
    for _ in range(repeats):
        tick = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - tick)
    return 2 * n**3 / best / 1e9


def best_time(fn, repeats: int = 3) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    best = np.inf
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tick)
    return best


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_macs(model) -> dict:
    """Multiply-adds per 1-s window, counted from the model's layers.

    Returns conv MACs of dense execution, conv MACs left by the non-zero
    weights (what the sparse path computes), the mel filterbank product, the
    FFT's real-arithmetic flops (~2.5 N log2 N per real frame) and, for
    reference, the original's convolutional STFT (2 kernels of n_dft x bins).
    """
    from edgel3.sparse_kernels import parse_model

    mel, _, convs = parse_model(model)
    cfg = mel.config
    height, width = cfg.n_mels, cfg.n_frames
    dense = sparse = 0
    for conv in convs:
        positions = height * width
        dense += positions * conv.kernel.size
        sparse += positions * int(np.count_nonzero(conv.kernel))
        if conv.pool == "2x2":
            height, width = height // 2, width // 2
    return {
        "conv_dense": int(dense),
        "conv_nonzero": int(sparse),
        "mel_filterbank": int(cfg.n_frames * cfg.n_bins * cfg.n_mels),
        "fft_flops": int(cfg.n_frames * 2.5 * cfg.n_dft * np.log2(cfg.n_dft)),
        "original_conv_stft": int(2 * cfg.n_frames * cfg.n_dft * cfg.n_bins),
    }


# --------------------------------------------------------------------------- models and audio


def prune(model, plan):
    """Magnitude-prune ``model`` to a per-layer plan (edgel3.compress, masks baked in)."""
    from edgel3.compress.pruning import prune_model, strip_masks

    return strip_masks(prune_model(model, plan)[0])


def make_model_files(folder: Path) -> dict:
    """Official SEA-64, random SEA-512 and the random sparse L3 at the 95.45 % plan as files."""
    import keras

    from edgel3.legacy_h5 import save_legacy_h5
    from edgel3.networks import build_model
    from edgel3.specs import get_spec

    keras.utils.set_random_seed(0)
    paths = {"sea64": str(SEA64_FILE)}
    for key, name, plan in (
        ("sea512", "sea-512", None),
        ("sparse95", "sparse-ft-95.45", PLAN_95_45),
    ):
        model = build_model(get_spec(name))
        if plan is not None:
            model = prune(model, plan)  # prune_model returns a pruned copy
        path = folder / f"random_{model.name}.h5"  # not an official name: not hash-checked
        save_legacy_h5(model, path, compress=False)
        paths[key] = str(path)
    return paths


def write_test_file(path: Path, seconds: float, sr: int = 44100, channels: int = 1) -> Path:
    """A 16-bit WAV of tones in noise, written block by block (flat memory)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    block = 10 * sr
    with sf.SoundFile(str(path), "w", sr, channels, subtype="PCM_16") as handle:
        for start in range(0, int(seconds * sr), block):
            n = min(block, int(seconds * sr) - start)
            t = (start + np.arange(n)) / sr
            tone = 0.2 * np.sin(2 * np.pi * (300 + 200 * np.sin(0.1 * t)) * t)
            audio = tone + 0.05 * rng.standard_normal(n)
            handle.write(np.repeat(audio[:, None], channels, axis=1) if channels > 1 else audio)
    return path


# --------------------------------------------------------------------------- cases (workers)


def _split_model(model):
    """(frontend-only fn, network-only keras model) of an edgel3 body."""
    import keras
    import tensorflow as tf

    from edgel3.layers import MelSpectrogram

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    mel = next(layer for layer in layers if isinstance(layer, MelSpectrogram))
    inputs = keras.Input(mel.compute_output_shape((None, 1, mel.config.sample_rate))[1:])
    x = inputs
    for layer in layers[layers.index(mel) + 1 :]:
        x = layer(x)
    return tf.function(mel.call), keras.Model(inputs, x)


def _window_batches(audio, sr: int, hop_size: float, batch_size: int) -> list:
    """The float32 batches the pipeline feeds a model (centred windows of native-rate audio)."""
    from edgel3.pipeline import WindowPipeline, batches

    pipeline = WindowPipeline(sr, sr, hop_size=hop_size, center=True, n_frames=len(audio))
    return [b.copy() for b in batches(pipeline.run(audio), batch_size)]


def _frontend_only(front_fn, batches, chunk: int = 8) -> None:
    """Run the mel layer alone over the batches, 8 windows at a time (bounded memory)."""
    for batch in batches:
        for start in range(0, len(batch), chunk):
            np.asarray(front_fn(batch[start : start + chunk]))


def case_model(params: dict) -> dict:
    """Model-only throughput on native-rate arrays."""
    import edgel3
    from edgel3 import core, runners, sparse

    model = core.load_model_file(params["path"])
    sr = runners.model_sample_rate(model)
    seconds = params["seconds"]
    audio = np.random.default_rng(1).normal(scale=0.1, size=int(seconds * sr))
    mode = params.get("mode", "auto")
    os.environ[sparse.ENV_VAR] = mode

    def run():
        return edgel3.get_embedding(audio, sr, model=model, verbose=0)

    emb, _ = run()  # warm-up: tracing, kernel choice
    elapsed = best_time(run, params.get("repeats", 2))
    n = emb.shape[0]
    executor = sparse.sparse_executor(model) if n >= sparse.MIN_WINDOWS else None
    # Frontend alone on the same windows, then the network = the rest.
    front_fn, network = _split_model(model)
    batches = _window_batches(audio, sr, 0.1, core.DEFAULT_BATCH_SIZE)
    t_front = best_time(lambda: _frontend_only(front_fn, batches), 2)
    t_frame = best_time(lambda: _window_batches(audio, sr, 0.1, 64), 2)
    macs = count_macs(model)
    executed = macs["conv_nonzero"] if executor is not None else macs["conv_dense"]
    result = {
        "windows": n,
        "seconds": elapsed,
        "windows_per_s": n / elapsed,
        "audio_s_per_s": seconds / elapsed,
        "execution": "sparse" if executor is not None else "dense",
        "layer_strategies": dict(executor.layer_strategies_) if executor is not None else None,
        "macs_per_window": macs,
        "gflop_per_s": 2 * (executed + macs["mel_filterbank"]) * n / elapsed / 1e9,
        "split_s": {
            "framing": t_frame,
            "frontend": t_front,
            "network": max(0.0, elapsed - t_front - t_frame),
        },
    }
    if params.get("convs_only"):
        mels = [np.asarray(front_fn(b)) for b in batches]
        t_net = best_time(lambda: [network.predict_on_batch(m) for m in mels], 3)
        result["convs_only"] = {
            "seconds": t_net,
            "windows_per_s": n / t_net,
            "gflop_per_s": 2 * macs["conv_dense"] * n / t_net / 1e9,
        }
    return result


def case_file(params: dict) -> dict:
    """End to end on a 44.1 kHz file with process_file (streamed when >= 60 s)."""
    from edgel3 import core, files, frontend, runners

    model = core.load_model_file(params["path"])
    sr = runners.model_sample_rate(model)
    path = params["file"]
    out = tempfile.mkdtemp()

    def run():
        return core.process_file(
            path, output_dir=out, model=model, verbose=False, hop_size=params["hop"]
        )

    elapsed = best_time(run, params.get("repeats", 1))
    t_io = best_time(lambda: files.read_audio(path), 1)
    audio, file_sr = files.read_audio(path)
    mono = frontend.downmix(audio)
    t_res = best_time(lambda: frontend.resample(mono, file_sr, sr), 1)
    resampled = frontend.resample(mono, file_sr, sr)
    front_fn, _ = _split_model(model)
    batches = _window_batches(resampled, sr, params["hop"], 64)
    t_front = best_time(lambda: _frontend_only(front_fn, batches), 1)
    n = sum(len(b) for b in batches)
    seconds = len(mono) / file_sr
    return {
        "windows": n,
        "seconds": elapsed,
        "windows_per_s": n / elapsed,
        "audio_s_per_s": seconds / elapsed,
        "split_s": {
            "io": t_io,
            "resample": t_res,
            "frontend": t_front,
            "network": max(0.0, elapsed - t_io - t_res - t_front),
        },
    }


def case_memory(params: dict) -> dict:
    """Peak RSS of process_file on one long file (this process does nothing else)."""
    from edgel3 import core

    model = core.load_model_file(params["path"])
    before = peak_rss_mb()
    tick = time.perf_counter()
    core.process_file(
        params["file"],
        output_dir=tempfile.mkdtemp(),
        model=model,
        verbose=False,
        hop_size=params["hop"],
    )
    return {
        "seconds": time.perf_counter() - tick,
        "rss_after_load_mb": before,
        "peak_rss_mb": peak_rss_mb(),
    }


def case_cli(params: dict) -> dict:
    """The CLI over a folder (TensorFlow import and model loading included)."""
    out = tempfile.mkdtemp()
    command = [sys.executable, "-m", "edgel3.cli", params["folder"], "-o", out, "-q"]
    command += ["--model", params["path"], "--overwrite"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    tick = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    elapsed = time.perf_counter() - tick
    n_files = len(list(Path(out).glob("*.npz")))
    return {
        "files": n_files,
        "seconds": elapsed,
        "files_per_s": n_files / elapsed,
        "audio_s_per_s": params["audio_seconds"] / elapsed,
    }


def case_resampler(params: dict) -> dict:
    from edgel3 import frontend

    x = np.random.default_rng(2).normal(size=int(params["seconds"] * 44100))
    frontend.resample_legacy(x[:44100], 44100, 8000)  # compile / load the kernel
    result = {}
    for target in (8000, 48000):
        result[f"exact_to_{target}_s"] = best_time(
            lambda t=target: frontend.resample_legacy(x, 44100, t), 2
        )
        result[f"fast_to_{target}_s"] = best_time(
            lambda t=target: frontend.resample(x, 44100, t, exact=False), 2
        )
    return result


def case_fast(params: dict) -> dict:
    """How much fast_resample moves SEA-64 embeddings (ESC-10 clips and a synthetic file)."""
    import edgel3
    from edgel3 import core, files

    model = core.load_model_file(params["path"])
    clips = sorted((SHARED / "data" / "esc10").rglob("*.flac"))[: params["clips"]]
    diffs, scales = [], []
    tick_exact = tick_fast = 0.0
    for clip in clips:
        audio, sr = files.read_audio(clip)
        tick = time.perf_counter()
        exact, _ = edgel3.get_embedding(audio, sr, model=model, verbose=0)
        tick_exact += time.perf_counter() - tick
        tick = time.perf_counter()
        fast, _ = edgel3.get_embedding(audio, sr, model=model, verbose=0, fast_resample=True)
        tick_fast += time.perf_counter() - tick
        diffs.append(np.abs(fast - exact))
        scales.append(np.abs(exact).max())
    diffs = np.concatenate(diffs)
    return {
        "clips": len(clips),
        "max_abs_diff": float(diffs.max()),
        "mean_abs_diff": float(diffs.mean()),
        "p99_abs_diff": float(np.percentile(diffs, 99)),
        "embedding_max": float(max(scales)),
        "exact_s": tick_exact,
        "fast_s": tick_fast,
    }


def case_variants(params: dict) -> dict:
    """SEA-64 model-only speed of inference variants (ideas measured, not all kept)."""
    import tensorflow as tf

    from edgel3 import core, frontend
    from edgel3.specs import SEA_FRONTEND

    model = core.load_model_file(params["path"])
    result = {}
    for batch in params["batches"]:
        x = np.random.default_rng(3).normal(scale=0.1, size=(batch, 1, 8000)).astype("float32")
        spec = [tf.TensorSpec((None, 1, 8000), tf.float32)]
        plain = tf.function(lambda a: model(a, training=False), input_signature=spec)
        xla = tf.function(
            lambda a: model(a, training=False), input_signature=spec, jit_compile=True
        )
        runs = {
            "predict_on_batch": lambda x=x: model.predict_on_batch(x),
            "tf_function": lambda x=x, f=plain: f(x).numpy(),
            "xla": lambda x=x, f=xla: f(x).numpy(),
        }
        result[f"batch_{batch}"] = {
            name: batch / best_time(fn, params.get("repeats", 3)) for name, fn in runs.items()
        }
    x = np.random.default_rng(3).normal(scale=0.1, size=(64, 8000)).astype("float32")
    front_fn, _ = _split_model(model)
    result["frontend_windows_per_s"] = {
        "in_graph_tf": 64 / best_time(lambda: np.asarray(front_fn(x[:, None])), 3),
        "numpy_scipy_fft": 64 / best_time(lambda: frontend.melspectrogram(x, SEA_FRONTEND), 3),
    }
    return result


CASES = {
    "model": case_model,
    "file": case_file,
    "memory": case_memory,
    "cli": case_cli,
    "resampler": case_resampler,
    "fast": case_fast,
    "variants": case_variants,
}


def run_worker(spec: dict) -> dict:
    """Run one case in this process; add its peak RSS."""
    result = CASES[spec["case"]](spec)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    return result


def run_case(spec: dict, timeout: float = 3600) -> dict:
    """Run one case in a fresh process (its own peak RSS); return its result dict."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- plan and report


def plan(quick: bool, paths: dict, data: dict) -> list[dict]:
    """The cases of one run, in order."""
    seconds = 10 if quick else 60
    specs = []
    for key in ("sea64", "sea512", "sparse95"):
        specs.append(
            {
                "case": "model",
                "model": key,
                "path": paths[key],
                "seconds": 3 if quick and key == "sparse95" else seconds,
                "convs_only": key == "sea64",
                "repeats": 1 if key == "sparse95" else 2,
            }
        )
    dense_seconds = 2 if quick else 8
    specs.append(
        {
            "case": "model",
            "model": "sparse95",
            "path": paths["sparse95"],
            "seconds": dense_seconds,
            "mode": "dense",
            "repeats": 1,
        }
    )
    for key in ("sea64", "sparse95"):
        specs.append(
            {
                "case": "file",
                "model": key,
                "path": paths[key],
                "file": data["file"],
                "hop": 0.1 if key == "sea64" else 1.0,
                "repeats": 2,
            }
        )
        specs.append(
            {
                "case": "cli",
                "model": key,
                "path": paths[key],
                "folder": data["folder"],
                "audio_seconds": data["folder_seconds"],
            }
        )
    for key, hop in (("sea64", 0.1), ("sparse95", 1.0)):
        for minutes, file in zip(data["long_minutes"], data["long_files"]):
            specs.append(
                {
                    "case": "memory",
                    "model": key,
                    "path": paths[key],
                    "file": file,
                    "minutes": minutes,
                    "hop": hop,
                }
            )
    specs.append({"case": "resampler", "seconds": seconds})
    specs.append({"case": "fast", "path": paths["sea64"], "clips": 4 if quick else 20})
    specs.append(
        {"case": "variants", "path": paths["sea64"], "batches": [16, 64, 256], "repeats": 3}
    )
    return specs


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _split_text(split: dict) -> str:
    return " / ".join(f"{k} {v:.2f}" for k, v in split.items())


def summarize(report: dict) -> str:
    """The markdown tables of a report (what the README and the closing note show)."""
    peak = max(report["peak_gflops"])
    lines = [
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; "
        f"float32 matmul peak {peak:.0f} GFLOP/s (runs: "
        + ", ".join(f"{p:.0f}" for p in report["peak_gflops"])
        + f"); load average before/after {report['machine']['load_before']:.1f} / "
        f"{report['machine']['load_after']:.1f}"
        + (" (CPU shared with other work)" if report["machine"]["shared"] else "")
        + ".",
        "",
        "| case | windows/s | audio-s/s | conv MACs/window (executed / dense) | GFLOP/s | "
        "% of peak | time split (s) | peak RSS MB | vs original |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for spec, result in report["results"]:
        if spec["case"] not in ("model", "file", "cli") or "error" in result:
            continue
        name = spec["model"] + (" dense" if spec.get("mode") == "dense" else "")
        if spec["case"] == "model":
            macs = result["macs_per_window"]
            executed = (
                macs["conv_nonzero"] if result["execution"] == "sparse" else macs["conv_dense"]
            )
            base = (
                ORIGINAL["sea64_windows_per_s"]
                if spec["model"] == "sea64"
                else ORIGINAL["sparse_windows_per_s"]
                if spec["model"] == "sparse95"
                else None
            )
            lines.append(
                f"| {name}, arrays at native rate | {_fmt(result['windows_per_s'])} | "
                f"{_fmt(result['audio_s_per_s'])} | {executed / 1e6:,.1f} M / "
                f"{macs['conv_dense'] / 1e6:,.1f} M | {_fmt(result['gflop_per_s'])} | "
                f"{100 * result['gflop_per_s'] / peak:.0f} % | {_split_text(result['split_s'])} | "
                f"{_fmt(result['peak_rss_mb'], 0)} | "
                + (f"{result['windows_per_s'] / base:.1f}x" if base else "-")
                + " |"
            )
            if "convs_only" in result:
                convs = result["convs_only"]
                lines.append(
                    f"| {name}, the 8 convs alone | {_fmt(convs['windows_per_s'])} | - | "
                    f"{macs['conv_dense'] / 1e6:,.1f} M | {_fmt(convs['gflop_per_s'])} | "
                    f"{100 * convs['gflop_per_s'] / peak:.0f} % | - | - | - |"
                )
        elif spec["case"] == "file":
            base = ORIGINAL["sea64_file_60s_s"] if spec["model"] == "sea64" else None
            lines.append(
                f"| {name}, 44.1 kHz file, hop {spec['hop']} | {_fmt(result['windows_per_s'])} | "
                f"{_fmt(result['audio_s_per_s'])} | - | - | - | "
                f"{_split_text(result['split_s'])} | {_fmt(result['peak_rss_mb'], 0)} | "
                + (
                    f"{base * result['audio_s_per_s'] / 60:.1f}x"
                    if base and result["audio_s_per_s"]
                    else "-"
                )
                + " |"
            )
        else:
            lines.append(
                f"| {name}, CLI over {result['files']} files | {_fmt(result['files_per_s'], 2)} "
                f"files/s | {_fmt(result['audio_s_per_s'])} | - | - | - | total "
                f"{result['seconds']:.1f} | - | - |"
            )
    memory = [(s, r) for s, r in report["results"] if s["case"] == "memory"]
    if memory:
        lines += [
            "",
            "| memory: process_file, 44.1 kHz file | minutes | hop | seconds | RSS after model "
            "load MB | peak RSS MB |",
            "|---|---|---|---|---|---|",
        ]
        for spec, result in memory:
            if "error" in result:
                lines.append(f"| {spec['model']} | {spec['minutes']} | error: {result['error']} |")
                continue
            lines.append(
                f"| {spec['model']} | {spec['minutes']} | {spec['hop']} | "
                f"{result['seconds']:.1f} | {result['rss_after_load_mb']:.0f} | "
                f"{result['peak_rss_mb']:.0f} |"
            )
    for spec, result in report["results"]:
        if spec["case"] == "resampler" and "error" not in result:
            lines += [
                "",
                f"Resampler, {spec['seconds']} s of 44.1 kHz: exact legacy -> 8 kHz "
                f"{result['exact_to_8000_s']:.2f} s, -> 48 kHz {result['exact_to_48000_s']:.2f} s "
                f"(original {ORIGINAL['resample_60s_44k_to_8k_s']} / "
                f"{ORIGINAL['resample_60s_44k_to_48k_s']} s for 60 s); fast (soxr) "
                f"{result['fast_to_8000_s']:.3f} / {result['fast_to_48000_s']:.3f} s.",
            ]
        if spec["case"] == "fast" and "error" not in result:
            lines += [
                "",
                f"fast_resample on {result['clips']} ESC-10 clips (SEA-64): embedding difference "
                f"max {result['max_abs_diff']:.3f}, p99 {result['p99_abs_diff']:.3f}, mean "
                f"{result['mean_abs_diff']:.4f} (embedding values up to "
                f"{result['embedding_max']:.1f}); {result['exact_s']:.2f} s exact vs "
                f"{result['fast_s']:.2f} s fast.",
            ]
        if spec["case"] == "variants" and "error" not in result:
            lines += ["", "SEA-64 windows/s by inference variant and batch size:", ""]
            for key, value in result.items():
                if not isinstance(value, dict):
                    continue
                lines.append(f"- {key}: " + ", ".join(f"{k} {v:,.0f}" for k, v in value.items()))
    lines += ["", "Targets:", ""] + [f"- {t}" for t in check_targets(report)]
    return "\n".join(lines) + "\n"


def check_targets(report: dict) -> list[str]:
    """One line per target of issue 3: met / not met, with the number."""
    peak = max(report["peak_gflops"])
    found = {}
    for spec, result in report["results"]:
        if "error" in result:
            continue
        found.setdefault((spec["case"], spec.get("model"), spec.get("mode")), []).append(
            (spec, result)
        )
    lines = []

    def verdict(ok):
        return "met" if ok else "NOT met"

    sea = found.get(("model", "sea64", None))
    if sea:
        rate = sea[0][1]["windows_per_s"]
        lines.append(
            f"SEA-64 >= {TARGETS['sea64_windows_per_s']:.0f} windows/s: {rate:,.0f} "
            f"({verdict(rate >= TARGETS['sea64_windows_per_s'])}; "
            f"{rate / ORIGINAL['sea64_windows_per_s']:.1f}x the original)"
        )
        convs = sea[0][1].get("convs_only")
        if convs:
            fraction = convs["gflop_per_s"] / peak
            lines.append(
                f"SEA-64 convs >= 65 % of the matmul peak: {100 * fraction:.0f} % "
                f"({verdict(fraction >= TARGETS['sea64_conv_fraction_of_peak'])})"
            )
    sparse = found.get(("model", "sparse95", None))
    if sparse:
        rate = sparse[0][1]["windows_per_s"]
        lines.append(
            f"sparse 95.45 % >= {TARGETS['sparse_windows_per_s']:.1f} windows/s: {rate:,.1f} "
            f"({verdict(rate >= TARGETS['sparse_windows_per_s'])}; "
            f"{rate / ORIGINAL['sparse_windows_per_s']:.1f}x the original)"
        )
    sea_file = found.get(("file", "sea64", None))
    if sea_file:
        speedup = ORIGINAL["sea64_file_60s_s"] * sea_file[0][1]["audio_s_per_s"] / 60
        lines.append(
            f"SEA-64 end to end on a 44.1 kHz file >= 2.5x: {speedup:.1f}x "
            f"({verdict(speedup >= TARGETS['file_speedup'])})"
        )
    for key in ("sea64", "sparse95"):
        runs = found.get(("memory", key, None), [])
        if len(runs) >= 2:
            (short_spec, short), (long_spec, long) = runs[0], runs[-1]
            growth = long["peak_rss_mb"] / short["peak_rss_mb"] - 1
            ok = long["peak_rss_mb"] <= 1024 * TARGETS["peak_rss_gb"]
            lines.append(
                f"{key}: peak RSS {long['peak_rss_mb']:.0f} MB for {long_spec['minutes']} min "
                f"(<= 1 GB: {verdict(ok)}), {100 * growth:+.1f} % vs {short_spec['minutes']} min "
                f"(<= 10 %: {verdict(growth <= TARGETS['rss_growth_60_vs_10'])})"
            )
    return lines


def _load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def prepare_data(folder: Path, quick: bool) -> dict:
    """Test audio: one 60-s (10-s quick) file, a folder of 5-s clips, two long files."""
    seconds = 10 if quick else 60
    clips = folder / "clips"
    clips.mkdir(exist_ok=True)
    n_clips = 4 if quick else 20
    for i in range(n_clips):
        write_test_file(clips / f"clip{i:02d}.wav", 5.0)
    long_minutes = (1, 6) if quick else (10, 60)
    long_files = [str(write_test_file(folder / f"long_{m}min.wav", 60 * m)) for m in long_minutes]
    return {
        "file": str(write_test_file(folder / f"file_{seconds}s.wav", seconds)),
        "folder": str(clips),
        "folder_seconds": 5.0 * n_clips,
        "long_minutes": long_minutes,
        "long_files": long_files,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short inputs (a smoke run)")
    parser.add_argument("--out", default="benchmark_results.json", help="JSON output file")
    parser.add_argument("--table", default=None, help="markdown output (default: OUT with .md)")
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--render", metavar="JSON", help="only print the tables of a saved run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    if args.render:
        print(summarize(json.loads(Path(args.render).read_text())))
        return 0
    started = time.time()
    load_before = _load_average()
    peaks = [matmul_peak()]
    with tempfile.TemporaryDirectory(prefix="edgel3-bench-") as tmp:
        folder = Path(tmp)
        paths = make_model_files(folder)
        data = prepare_data(folder, args.quick)
        results = []
        for spec in plan(args.quick, paths, data):
            if args.only and spec["case"] not in args.only:
                continue
            tick = time.time()
            result = run_case(spec)
            label = spec["case"] + " " + spec.get("model", "") + " " + spec.get("mode", "")
            print(f"{label.strip():<24} {time.time() - tick:7.1f} s", file=sys.stderr)
            results.append((spec, result))
        peaks.append(matmul_peak())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_after = _load_average()
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": cores,
            "load_before": load_before,
            "load_after": load_after,
            # More runnable work than ~half the cores before we started: someone else is busy.
            "shared": bool(load_before > 0.5 * cores),
        },
        "quick": args.quick,
        "seconds": time.time() - started,
        "peak_gflops": peaks,
        "original": ORIGINAL,
        "targets": TARGETS,
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    table = summarize(report)
    Path(args.table or Path(args.out).with_suffix(".md")).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
