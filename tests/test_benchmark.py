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


# --------------------------------------------------------------------------- issue 13: runtimes


BENCHMARKS = PROJECT_ROOT / "benchmarks"
#: A plan for SEA-64's 8 convs, light enough to build and prune in a second.
SEA64_PLAN = (0, 50, 75, 90, 50, 50, 75, 90)


@pytest.fixture(scope="module")
def runtimes():
    """benchmarks/runtimes.py, importable with its neighbours (it imports ``benchmark``)."""
    import importlib
    import sys

    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module("runtimes")


@pytest.fixture(scope="module")
def short_clips(runtimes):
    import importlib

    return importlib.import_module("short_clips")


@pytest.fixture(scope="module")
def sea64_files(runtimes, tmp_path_factory):
    """Random-weight SEA-64 files: dense, and pruned by SEA64_PLAN."""
    dense = runtimes.random_weight_file(tmp_path_factory.mktemp("dense"), "sea-64")
    pruned_folder = tmp_path_factory.mktemp("pruned")
    return dense, runtimes.random_weight_file(pruned_folder, "sea-64", SEA64_PLAN)


def test_runtime_check_follows_the_tensorflow_import(runtimes):
    runtimes.check_runtime("numpy", tensorflow_imported=False)
    runtimes.check_runtime("keras", tensorflow_imported=True)
    for runtime, imported in (("numpy", True), ("keras", False), ("tflite", False)):
        with pytest.raises(runtimes.PreconditionError):
            runtimes.check_runtime(runtime, imported)


def test_runner_check_compares_class_names(runtimes):
    class NumpyRunner:
        pass

    runtimes.check_runner(NumpyRunner(), "NumpyRunner")
    with pytest.raises(runtimes.PreconditionError, match="expected a KerasRunner"):
        runtimes.check_runner(NumpyRunner(), "KerasRunner")


def test_pruned_check_counts_the_plans_nonzero_weights(runtimes, sea64_files):
    from edgel3.compress.pruning import pruned_count
    from edgel3.legacy_h5 import read_legacy_h5

    dense, pruned = sea64_files
    counts = runtimes.check_pruned(pruned, SEA64_PLAN)
    sizes = [k.size for _, k in read_legacy_h5(pruned).conv_kernels()]
    assert counts == [n - pruned_count(n, s) for n, s in zip(sizes, SEA64_PLAN)]
    assert counts[0] == sizes[0] and counts[3] < sizes[3] // 9  # 0 % and 90 % pruned
    with pytest.raises(runtimes.PreconditionError, match="non-zero conv weights"):
        runtimes.check_pruned(dense, SEA64_PLAN)  # a "pruned" file that is not pruned
    with pytest.raises(runtimes.PreconditionError, match="non-zero conv weights"):
        runtimes.check_pruned(pruned, (0, 50, 75, 90, 50, 50, 75, 95))
    with pytest.raises(runtimes.PreconditionError, match="8 conv layers for a plan of 2"):
        runtimes.check_pruned(pruned, (0, 50))


def test_outputs_check_counts_npz_files(runtimes, tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.npz", "sub/b.npz", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert runtimes.check_outputs(tmp_path, 2) == 2
    with pytest.raises(runtimes.PreconditionError, match="2 .npz outputs"):
        runtimes.check_outputs(tmp_path, 3)


def test_a_benchmark_case_fails_when_the_runner_is_not_the_one_named(runtimes, sea64_files):
    dense, _ = sea64_files
    script = runtimes.WARM.format(
        cases=[("dense", dense, "KerasRunner")], runtime="numpy", windows=16
    )
    with pytest.raises(SystemExit, match="PreconditionError: expected a KerasRunner"):
        runtimes.timed(script)


def test_numba_cost_needs_a_fresh_cache_that_the_call_fills(runtimes, tmp_path):
    (tmp_path / "old").mkdir()
    with pytest.raises(FileExistsError):
        runtimes.numba_compile_cost("pass", tmp_path / "old")
    with pytest.raises(runtimes.PreconditionError, match="wrote nothing"):
        runtimes.numba_compile_cost("pass", tmp_path / "new")  # no numba kernel runs


@pytest.mark.slow
def test_quick_runtimes_benchmark_runs_and_checks_itself(short_clips, tmp_path):
    """The whole quick benchmark (40-60 s on 2 cores): every case ran and was checked.

    One thread per pool: on a busy 2-core machine the spinning BLAS pools of small
    calls can make the run several times slower (docs/runtime.rst, many short clips).
    """
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "runtimes.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **short_clips.thread_environment(1)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["quick"] and results["minutes"] == 0.2
    for runtime in ("numpy", "keras"):
        assert results[f"cold_{runtime}"]["s"] > 0
        assert results[f"long_{runtime}"]["rss_mib"] > 0
        for model in ("dense", "sparse95"):
            assert results[f"warm_{model}_{runtime}"]["windows_per_s"] > 0
    # TensorFlow's import alone is hundreds of MiB: the runtimes really differ.
    assert results["cold_keras"]["rss_mib"] > results["cold_numpy"]["rss_mib"] + 200
    assert results["numba"]["cache_files"] > 0 and results["numba"]["cold_s"] > 0


# --------------------------------------------------------------------------- short clips


def test_clips_are_4_s_mono_pcm16_and_seeded(short_clips, tmp_path):
    files = short_clips.write_clips(tmp_path / "a", 3)
    again = short_clips.write_clips(tmp_path / "b", 3)
    info = sf.info(str(files[0]))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (
        22050,
        1,
        88200,
        "PCM_16",
    )
    assert [f.name for f in files] == ["clip0000.wav", "clip0001.wav", "clip0002.wav"]
    assert np.array_equal(sf.read(str(files[2]))[0], sf.read(str(again[2]))[0])
    assert not np.array_equal(sf.read(str(files[0]))[0], sf.read(str(files[1]))[0])


def test_tensorflow_probe_marks_real_imports_only(short_clips, tmp_path):
    """The probe on a stand-in ``tensorflow`` package: a lookup does not mark, an import does."""
    import os
    import subprocess
    import sys

    probe = short_clips.install_probe(tmp_path / "probe")
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("from . import python\n")
    (fake / "python.py").write_text("")
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(probe), str(tmp_path / "fake")]),
        short_clips.MARKS_VARIABLE: str(marks),
    }
    for code, expected in (
        ("import importlib.util; assert importlib.util.find_spec('tensorflow')", 0),
        ("import tensorflow, tensorflow", 1),
    ):
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        assert len(list(marks.iterdir())) == expected, code
    result = {"clips": 2}
    short_clips.check_case("keras", result, 2, marks)
    with pytest.raises(short_clips.PreconditionError, match="'numpy' ran, but TensorFlow"):
        short_clips.check_case("numpy", result, 2, marks)
    with pytest.raises(short_clips.PreconditionError, match="2 clips embedded of 3"):
        short_clips.check_case("keras", result, 3, marks)


def test_cases_must_agree_on_windows_per_clip(short_clips):
    same = {"(a), keras": [36, 36], "(b), numpy": [36, 36]}
    assert short_clips.check_same_rows(same) == [36, 36]
    with pytest.raises(short_clips.PreconditionError, match="differ"):
        short_clips.check_same_rows({**same, "(c), numpy": [36, 35]})
    with pytest.raises(short_clips.PreconditionError):
        short_clips.check_same_rows({"(a), keras": []})


def test_short_clip_plan_interleaves_runtimes_after_the_keras_baseline(short_clips):
    cases = short_clips.plan(("numpy", "keras"))
    assert [(name, runtime) for name, runtime, _, _ in cases[:3]] == [
        ("(a) per-file loop", "keras"),
        ("(b) per-file loop", "numpy"),
        ("(c) list call", "keras"),
    ]
    assert [runtime for _, runtime, _, _ in cases] == ["keras", "numpy"] * 4
    assert [extra for _, _, _, extra in cases][-2:] == [{"jobs": "2"}] * 2
    assert [runtime for _, runtime, _, _ in short_clips.plan(("keras",))] == ["keras"] * 4
    table = short_clips.case_table(
        {
            "(a) per-file loop, keras": {"s": 30.0, "rss_mib": 900.0},
            "(b) per-file loop, numpy": {"s": 12.0, "rss_mib": 300.0},
        },
        200,
    )
    assert "| (b) per-file loop | numpy | 12.0 | 2.50x | 300 |" in table


def test_profile_of_the_numpy_runtime_in_a_fresh_process(short_clips, sea64_files, tmp_path):
    import json

    files = [str(f) for f in short_clips.write_clips(tmp_path / "clips", 2)]
    script = short_clips.PROFILE.format(files=files, model=sea64_files[0], out=str(tmp_path))
    _, _, stdout = short_clips.timed(script, short_clips.thread_environment(1))
    profile = json.loads(stdout.strip().splitlines()[-1])
    assert profile["clips"] == 2 and profile["windows"] == 36  # 4 s, centred, hop 0.1
    ms = profile["ms"]
    assert all(ms[stage] > 0 for stage in (*short_clips.STAGES[:3], "write", "total"))
    assert ms["other"] == pytest.approx(ms["total"] - sum(ms[s] for s in short_clips.STAGES))
    assert len(list((tmp_path / "staged").glob("*.npz"))) == 2
    table = short_clips.profile_table(profile)
    for stage in (*short_clips.STAGES, "other", "total (process_file)"):
        assert f"\n| {stage} | " in table
