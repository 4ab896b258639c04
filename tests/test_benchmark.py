"""Smoke test of benchmarks/benchmark.py: its measuring, counting and reporting functions."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import soundfile as sf

from edgel3 import core

from .conftest import PROJECT_ROOT, SEA64_GZ


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "edgel3_benchmark", PROJECT_ROOT / "benchmarks" / "benchmark.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.shared
def test_count_macs_of_sea64_matches_the_published_figures(bench):
    macs = bench.count_macs(core.load_model_file(SEA64_GZ))
    # docs/models.rst §6 / issue 3: 122.4 M conv MACs, 52.5 M for the original's conv-STFT,
    # 1.6 M for the mel filterbank; SEA-64 has no zero weights.
    assert macs["conv_dense"] == pytest.approx(122.4e6, rel=1e-3)
    assert macs["conv_nonzero"] == macs["conv_dense"]
    assert macs["original_conv_stft"] == pytest.approx(52.5e6, rel=1e-3)
    assert macs["mel_filterbank"] == 50 * 513 * 64


def test_prune_follows_the_plan(bench):
    from edgel3.models import build_audio_network
    from edgel3.specs import SEA_FRONTEND

    model = bench.prune(build_audio_network(SEA_FRONTEND, [4, 4, 8, 8]), (0, 50, 75, 90))
    kernels = [layer.get_weights()[0] for layer in model.layers if "conv" in layer.name]
    kernels += [model.get_layer("audio_embedding_layer").get_weights()[0]]
    zeros = [round(100 * float(np.mean(k == 0))) for k in kernels]
    assert zeros == [0, 50, 75, 90]


def test_measurement_helpers(bench, tmp_path):
    assert bench.matmul_peak(n=128, repeats=2) > 0
    assert bench.best_time(lambda: sum(range(100)), repeats=2) >= 0
    assert bench.peak_rss_mb() > 10
    path = bench.write_test_file(tmp_path / "one.wav", 1.5, channels=2)
    audio, sr = sf.read(str(path))
    assert sr == 44100 and audio.shape == (66150, 2) and 0 < np.abs(audio).max() < 1


def test_resampler_case_in_a_worker_process(bench):
    result = bench.run_case({"case": "resampler", "seconds": 0.2})
    assert set(result) >= {"exact_to_8000_s", "fast_to_48000_s", "peak_rss_mb"}
    assert all(value > 0 for value in result.values())


def test_report_tables_and_target_verdicts(bench):
    model = {
        "windows": 596,
        "seconds": 1.0,
        "windows_per_s": 596.0,
        "audio_s_per_s": 60.0,
        "execution": "dense",
        "macs_per_window": {"conv_dense": 122_400_000, "conv_nonzero": 122_400_000},
        "gflop_per_s": 150.0,
        "split_s": {"frontend": 0.2, "network": 0.8},
        "peak_rss_mb": 600.0,
        "convs_only": {"seconds": 0.6, "windows_per_s": 990.0, "gflop_per_s": 120.0},
    }
    memory = [
        ({"case": "memory", "model": "sea64", "minutes": m, "hop": 0.1}, r)
        for m, r in (
            (10, {"seconds": 60.0, "rss_after_load_mb": 500.0, "peak_rss_mb": 700.0}),
            (60, {"seconds": 360.0, "rss_after_load_mb": 500.0, "peak_rss_mb": 720.0}),
        )
    ]
    report = {
        "machine": {"cpu": "x", "cores": 2, "load_before": 0.1, "load_after": 0.2, "shared": False},
        "peak_gflops": [190.0, 200.0],
        "results": [({"case": "model", "model": "sea64"}, model), *memory],
    }
    table = bench.summarize(report)
    assert "| sea64, arrays at native rate | 596.0 |" in table
    assert "60 % |" in table  # 120 GFLOP/s of the best peak, 200
    verdicts = bench.check_targets(report)
    assert verdicts[0].startswith("SEA-64 >= 490 windows/s: 596 (met; 2.5x")
    assert "convs >= 65 % of the matmul peak: 60 % (NOT met)" in verdicts[1]
    assert "+2.9 % vs 10 min (<= 10 %: met)" in verdicts[2]
