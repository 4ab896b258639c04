"""LiteRT export: every quantization on a toy model, SEA-64 fidelity on golden inputs and
ESC-10 clips, inference through get_embedding without TensorFlow, and the CLI.

Fidelity tolerances are the issue's contract: float32 max |diff| <= 1e-3 of the
embedding scale (largest |value| of the Keras embeddings), float16 cosine >=
0.999, int8 mean cosine >= 0.98.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import edgel3
from edgel3.cli import main
from edgel3.exceptions import ParameterError, WeightsError
from edgel3.export.budgets import KIB
from edgel3.export.calibration import calibration_data
from edgel3.export.convert import QUANTIZATIONS, VARIANTS, export_model
from edgel3.export.fidelity import compare_embeddings, cosine_similarity
from edgel3.export.memory import memory_report
from edgel3.export.runtime import LiteRTModel
from edgel3.frontend import mel_filterbank
from edgel3.specs import SEA_FRONTEND

from .conftest import DATA_DIR, GOLDEN_DIR, SEA64_GZ, golden_files
from .test_export_memory import TOY_FRONTEND, prune_to_plan, toy_model

FP32_RELATIVE = 1e-3  # max |diff| / embedding scale (issue #6)
FP16_COSINE = 0.999
INT8_MEAN_COSINE = 0.98


def _esc10(fold: int, count: int) -> list:
    """The first ``count`` ESC-10 clips of a fold, read in place (csv names end in .wav)."""
    with open(DATA_DIR / "esc10" / "meta" / "esc10.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["fold"]) == fold]
    audio = DATA_DIR / "esc10" / "audio"
    return [audio / r["filename"].replace(".wav", ".flac") for r in rows[:count]]


TOY_KERNEL_WEIGHTS = 36 + 144 + 72
TOY_ZEROS = 72 + 54  # the pruned toy: 50 % of conv2's 144 and 75 % of conv3's 72 weights


@pytest.fixture(scope="module")
def toy():
    """The toy network, pruned (sparse models must keep their zeros when exported)."""
    return prune_to_plan(toy_model(seed=1), (0, 50, 75))


@pytest.fixture(scope="module")
def toy_windows():
    """Noise at several levels plus tones: 1-s windows at the toy's 1 kHz."""
    rng = np.random.default_rng(11)
    t = np.arange(TOY_FRONTEND.sample_rate) / TOY_FRONTEND.sample_rate
    levels = np.geomspace(1e-3, 1.0, 24)[:, None]
    noise = rng.normal(size=(24, t.size)) * levels
    tones = np.sin(2 * np.pi * rng.uniform(20, 480, size=(24, 1)) * t) * levels
    return np.concatenate([noise, tones + 0.01 * noise]).astype(np.float32)


@pytest.fixture(scope="module")
def toy_backbone(toy, tmp_path_factory):
    """The toy exported as a float32 backbone (log-mel input), shared by several tests."""
    return export_model(toy, tmp_path_factory.mktemp("toy") / "toy.tflite", variant="backbone")


@pytest.fixture(scope="module")
def sea64():
    return edgel3.core.load_model_file(SEA64_GZ)


@pytest.fixture(scope="module")
def sea64_exports(sea64, tmp_path_factory):
    """SEA-64 exported three ways; int8 calibrated on ESC-10 fold-1 clips."""
    out = tmp_path_factory.mktemp("sea64")
    return {
        "none": export_model(sea64, out / "sea64.tflite"),
        "float16": export_model(sea64, out / "sea64_fp16.tflite", quantization="float16"),
        "int8": export_model(
            sea64,
            out / "sea64_int8.tflite",
            quantization="int8",
            calibration=_esc10(1, 8),
            calibration_windows=64,
            bands=3,
        ),
    }


@pytest.fixture(scope="module")
def esc10_windows():
    """Held-out real audio: 8 ESC-10 fold-2 clips, 9 windows each, at 8 kHz."""
    return calibration_data(_esc10(2, 8), 8000, max_windows=72)


# --------------------------------------------------------------------------- toy model


@pytest.mark.parametrize(
    ("quantization", "variant"),
    [("none", "full"), ("float16", "backbone"), ("dynamic", "backbone"), ("int8", "backbone")],
)
def test_toy_every_quantization(toy, toy_windows, tmp_path, quantization, variant):
    result = export_model(
        toy,
        tmp_path / "toy.tflite",
        quantization=quantization,
        calibration=toy_windows[::2],  # even windows calibrate, odd ones are held out
        batch_size=None if quantization == "none" else 1,  # one resizable, others batch 1
    )
    assert result.variant == variant and result.path.stat().st_size == result.size
    model = LiteRTModel(result.path)
    assert (model.sample_rate, model.emb_dim, model.variant) == (1000, 2, variant)
    stats = compare_embeddings(toy, model, toy_windows[1::2], batch_size=5)
    if quantization == "none":
        assert stats["max_abs_diff_relative"] <= FP32_RELATIVE
    elif quantization == "float16":
        assert stats["cosine_min"] >= FP16_COSINE
    else:
        assert stats["cosine_mean"] >= INT8_MEAN_COSINE
    info = json.loads(result.sidecar.read_text())
    assert info["quantization"] == quantization and info["variant"] == variant
    expected_dtype = "int8" if quantization == "int8" else "float32"
    assert info["input"]["dtype"] == info["output"]["dtype"] == expected_dtype
    assert np.dtype(model.input_details["dtype"]).name == expected_dtype
    # Zeros stay zeros in every format (int8 rounding may add a few more).
    lite = memory_report(result.path, budgets=())
    assert lite.kernel_params == TOY_KERNEL_WEIGHTS
    zeros = lite.kernel_params - lite.nonzero_kernel_params
    assert zeros == TOY_ZEROS if quantization in ("none", "float16") else zeros >= TOY_ZEROS


def test_toy_backbone_float32(toy, toy_windows, toy_backbone):
    model = LiteRTModel(toy_backbone.path)
    assert model.variant == "backbone" and model.frontend == TOY_FRONTEND
    stats = compare_embeddings(toy, model, toy_windows, batch_size=7)
    assert stats["max_abs_diff_relative"] <= FP32_RELATIVE


def test_toy_tflite_memory_report_matches_keras(toy, toy_backbone):
    """The same kernels read from the flatbuffer: MACs, largest tensor and peaks agree."""
    path = toy_backbone.path
    keras_report = memory_report(toy, budgets=())
    lite = memory_report(path, budgets=())
    assert lite.macs["conv"] == keras_report.macs["conv"]
    assert lite.largest_activation["bytes"]["exported"] == 4 * 640
    for schedule in ("sequential", "inplace"):
        assert (
            lite.peaks[schedule]["exported"]["bytes"]
            == (keras_report.peaks[schedule]["float32"]["bytes"])
        )
    # BN folded into the convs: conv weights + biases, and the input BN's scale and shift.
    assert lite.params == (36 + 4) + (144 + 4) + (72 + 2) + 2
    assert lite.frontend["n_mels"] == TOY_FRONTEND.n_mels  # from the sidecar
    assert lite.measured["file_bytes"] == path.stat().st_size


def test_export_errors(toy, toy_windows, tmp_path):
    with pytest.raises(ParameterError, match="variant='backbone'"):
        export_model(
            toy, tmp_path / "x.tflite", quantization="int8", variant="full", calibration=toy_windows
        )
    with pytest.raises(ParameterError, match="calibration"):
        export_model(toy, tmp_path / "x.tflite", quantization="int8")
    with pytest.raises(ParameterError, match="quantization='int4'"):
        export_model(toy, tmp_path / "x.tflite", quantization="int4")
    with pytest.raises(ParameterError, match="shape"):
        export_model(
            toy,
            tmp_path / "x.tflite",
            quantization="int8",
            calibration=np.zeros((4, 999), np.float32),
        )
    for quantization in ("float16", "dynamic"):  # allowed, with a warning (no export here)
        with pytest.warns(edgel3.EdgeL3Warning, match="backbone"):
            with pytest.raises(ParameterError, match="batch_size"):
                export_model(
                    toy,
                    tmp_path / "x.tflite",
                    quantization=quantization,
                    variant="full",
                    batch_size=0,
                )
    with pytest.raises(ParameterError, match="already a LiteRT file"):
        export_model(str(tmp_path / "m.tflite"), tmp_path / "x.tflite")
    assert not (tmp_path / "x.tflite").exists()


def test_export_takes_every_model_name(toy, toy_backbone, tmp_path):
    """export_model resolves models with edgel3.reference.resolve_model: 'tiny' included."""
    from edgel3.bundled import TINY_PATH
    from edgel3.export.convert import load_keras_model
    from edgel3.loading import load_model_file

    tiny = load_model_file(TINY_PATH)
    assert load_keras_model("tiny") is tiny  # the per-process cache: one load
    result = export_model("tiny", tmp_path / "tiny.tflite")
    exported = LiteRTModel(result.path)
    assert (exported.sample_rate, exported.emb_dim) == (8000, 64)
    info = json.loads(result.sidecar.read_text())
    assert info["source_model"] == tiny.name and info["emb_dim"] == 64
    windows = np.random.default_rng(3).normal(0, 0.1, (4, 1, 8000)).astype(np.float32)
    stats = compare_embeddings(tiny, exported, windows)
    assert stats["max_abs_diff_relative"] <= FP32_RELATIVE
    with pytest.raises(ParameterError, match="already a LiteRT model"):
        load_keras_model(LiteRTModel(toy_backbone.path))
    with pytest.raises(ParameterError, match="already a LiteRT file"):
        load_keras_model(toy_backbone.path)
    with pytest.raises(ParameterError, match="sea-1"):
        export_model("sea-1", tmp_path / "x.tflite")


def test_runtime_errors(toy_backbone, tmp_path):
    with pytest.raises(WeightsError, match="could not be found"):
        LiteRTModel(tmp_path / "missing.tflite")
    model = LiteRTModel(toy_backbone.path)
    with pytest.raises(ParameterError, match=r"\(b, 1, 1000\)"):
        model.predict_on_batch(np.zeros((2, 1, 800), np.float32))
    # Without its sidecar a backbone of an unknown front end cannot be run.
    alone = tmp_path / "alone.tflite"
    shutil.copyfile(toy_backbone.path, alone)
    with pytest.raises(WeightsError, match="sidecar"):
        LiteRTModel(alone)
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(WeightsError, match="Could not load"):
        LiteRTModel(tmp_path / "bad.tflite")


def test_litert_inference_without_tensorflow(toy_backbone):
    """get_embedding and the memory report of a .tflite load neither TensorFlow nor Keras."""
    path = toy_backbone.path
    script = (
        "import sys, numpy as np, edgel3\n"
        f"e, t = edgel3.get_embedding(np.ones(2500) * 0.1, 1000, model={str(path)!r}, "
        "verbose=0, center=False, hop_size=0.5)\n"
        "from edgel3.cli import main\n"
        f"assert main(['memory-report', {str(path)!r}, '--no-layers']) == 0\n"
        "print(e.shape, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip().split("\n")[-1] == "(4, 2) False False"


def test_tensorflow_interpreter_fallback(toy_backbone, toy_windows, monkeypatch):
    path = toy_backbone.path
    expected = LiteRTModel(path).predict_on_batch(toy_windows[:4, None])
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    fallback = LiteRTModel(path)
    assert type(fallback._interpreter).__module__.startswith("tensorflow")
    # The same flatbuffer in two builds of the runtime: float32 rounding only.
    np.testing.assert_allclose(
        fallback.predict_on_batch(toy_windows[:4, None]), expected, rtol=1e-5, atol=1e-6
    )


# --------------------------------------------------------------------------- SEA-64


@pytest.mark.parametrize(
    "golden",
    golden_files("synth_22050hz")[:1] + golden_files("chirp_44k")[:1],
    ids=lambda p: p.stem,
)
def test_sea64_float32_matches_golden(sea64_exports, golden):
    """get_embedding(model='x.tflite') reproduces 0.2.1's golden embeddings."""
    g = np.load(golden)
    audio, sr = sf.read(GOLDEN_DIR / str(g["audio_path"]))
    emb, ts = edgel3.get_embedding(
        audio,
        sr,
        model=str(sea64_exports["none"].path),
        center=bool(g["center"]),
        hop_size=float(g["hop_size"]),
        verbose=0,
    )
    scale = np.abs(g["embedding"]).max()
    assert emb.shape == g["embedding"].shape
    assert np.abs(emb - g["embedding"]).max() <= FP32_RELATIVE * scale
    np.testing.assert_array_equal(ts, g["timestamps"])


@pytest.mark.shared
def test_sea64_fidelity_on_esc10(sea64, sea64_exports, esc10_windows):
    reference = sea64.predict_on_batch(esc10_windows[:, None])
    scale = np.abs(reference).max()
    fp32 = LiteRTModel(sea64_exports["none"].path).predict_on_batch(esc10_windows[:, None])
    assert np.abs(fp32 - reference).max() <= FP32_RELATIVE * scale
    fp16_model = LiteRTModel(sea64_exports["float16"].path)
    assert fp16_model.variant == "backbone"  # the default once quantized
    fp16 = fp16_model.predict_on_batch(esc10_windows[:, None])
    assert cosine_similarity(reference, fp16).min() >= FP16_COSINE
    int8_model = LiteRTModel(sea64_exports["int8"].path)
    assert int8_model.variant == "backbone" and int8_model.sample_rate == 8000
    int8 = int8_model.predict_on_batch(esc10_windows[:, None])
    assert cosine_similarity(reference, int8).mean() >= INT8_MEAN_COSINE


@pytest.mark.shared
def test_sea64_int8_targets_measured_on_file(sea64_exports):
    """The int8 file itself: <= 420 KiB, and <= 110 KB of activations for LiteRT-Micro.

    Unbanded, conv2's (64, 50, 32) input and output need 204,800 B
    (test_export_memory); 3 bands leave conv4's (32, 25, 64) pair, 102,400 B.
    """
    result = sea64_exports["int8"]
    assert result.calibration_windows == 64
    report = memory_report(result.path, budgets=["cortex-m7"])
    assert report.measured["file_bytes"] <= 420 * KIB
    assert report.measured["activation_dtypes"] == ["int8"]
    assert report.peaks["sequential"]["exported"]["bytes"] == 2 * 32 * 25 * 64
    # The planner's own layout; tflite-micro 2026.10 reports the same arena head.
    assert report.peaks["arena"]["exported"]["bytes"] == 102_400 <= 110_000
    assert report.passed("cortex-m7")


def test_banded_backbone_is_the_same_function(toy):
    from edgel3.export.banded import BandedBackbone
    from edgel3.export.convert import backbone_model
    from edgel3.frontend import melspectrogram

    backbone, frontend = backbone_model(toy)
    rng = np.random.default_rng(2)
    patches = melspectrogram(rng.normal(size=(6, 1000)).astype(np.float32), frontend)
    expected = np.asarray(backbone.predict_on_batch(patches))
    for bands in (1, 2, 3, 4):  # 4 pooled rows: uneven splits and one row per band
        got = BandedBackbone(backbone, bands).predict_on_batch(patches)
        # The same float32 kernels on the same values: summation order at most.
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    with pytest.raises(ParameterError, match=r"bands must be an int in \[1, 4\]"):
        BandedBackbone(backbone, 5)
    with pytest.raises(ParameterError, match="variant='backbone'"):
        export_model(toy, "x.tflite", bands=2)


@pytest.mark.shared
def test_sea64_sidecar_describes_the_front_end(sea64_exports):
    info = json.loads(sea64_exports["int8"].sidecar.read_text())
    fe = info["frontend"]
    assert (fe["sample_rate"], fe["n_dft"], fe["n_hop"], fe["n_mels"], fe["n_frames"]) == (
        8000,
        1024,
        160,
        64,
        50,
    )
    # The sparse filterbank rebuilds the model's float32 matrix exactly.
    rebuilt = np.zeros((fe["n_bins"], fe["n_mels"]), np.float32)
    for band, entry in enumerate(fe["filterbank"]):
        rebuilt[entry["start_bin"] : entry["start_bin"] + len(entry["weights"]), band] = entry[
            "weights"
        ]
    np.testing.assert_array_equal(rebuilt, mel_filterbank(SEA_FRONTEND))
    assert info["input"]["shape"] == [1, 64, 50, 1] and info["input"]["dtype"] == "int8"
    assert info["calibration"]["windows"] == 64


def test_cosine_similarity_edge_cases():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [0.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    np.testing.assert_allclose(cosine_similarity(a, b), [1.0, 1.0, 0.0, -1.0])


# --------------------------------------------------------------------------- CLI


def test_cli_defaults_match_library():
    from edgel3.cli import build_parser
    from edgel3.commands import export as export_cli

    assert export_cli.QUANTIZATION_NAMES == QUANTIZATIONS
    assert export_cli.VARIANT_NAMES == VARIANTS
    args = build_parser("export").parse_args(["m", "o.tflite"])
    defaults = export_cli.defaults()
    for name in (
        "quantization",
        "variant",
        "calibration",
        "calibration_windows",
        "calibration_hop",
    ):
        assert getattr(args, name) == defaults[name]
    assert defaults["batch_size"] == 1 and not args.dynamic_batch


def test_cli_export_report_and_embed(toy, tmp_path, capsys):
    keras_file = tmp_path / "toy.keras"
    toy.save(keras_file)
    rng = np.random.default_rng(5)
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    for i in range(2):
        sf.write(audio_dir / f"clip{i}.wav", rng.normal(size=2000) * 0.1, 1000)
    out = tmp_path / "toy_int8.tflite"
    assert (
        main(
            [
                "export",
                str(keras_file),
                str(out),
                "-Q",
                "int8",
                "--calibration",
                str(audio_dir),
                "--check",
                str(audio_dir),
                "--report",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "calibrated on" in text and "cosine mean" in text and "cortex-m7" in text
    assert (
        main(
            [
                "memory-report",
                str(out),
                "--json",
                str(tmp_path / "r.json"),
                "--budget",
                "tiny:flash=1KiB",
                "--fail-over-budget",
            ]
        )
        == 3
    )
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["checks"][0]["budget"] == "tiny" and data["checks"][0]["ok"] is False
    capsys.readouterr()
    assert main(["memory-report", str(keras_file), "--json", "-", "--no-budget"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 306
    # Embedding files through the exported model (the default 'embed' command).
    assert main(["--model", str(out), str(audio_dir), "-o", str(tmp_path / "emb"), "-q"]) == 0
    saved = np.load(tmp_path / "emb" / "clip0.npz")
    assert saved["embedding"].shape == (16, 2)  # 2 s centred at hop 0.1 s
    assert main(["export", str(out), str(tmp_path / "again.tflite")]) == 1
    assert "already a LiteRT file" in capsys.readouterr().err
