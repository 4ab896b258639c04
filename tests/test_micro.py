"""The tflite-micro interpreter: memory figures the device agrees with, and its outputs.

Every model edgel3 builds (tiny, SEA 512/256/128/64, the sparse L3 network) is
exported to int8 once per session with random, trained-looking weights (the
arena does not depend on the weights' values, only on the graph), and:

- the interpreter's head is edgel3's planner figure exactly;
- the estimate a Keras report gives (planner head + tail margin) is never below
  the interpreter's total, and at most 25 % above it (a looser bound would turn
  "does not fit" verdicts into noise: the tail is 2-22 % of these totals);
- the interpreter runs int8 exports to the same int8 bytes as LiteRT's int8
  kernels;
- the README's example budget gets the interpreter's answer.

CI installs tflite-micro (the ``test`` extra); without it these tests skip with
one line, and fail when the environment variable CI is set.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from edgel3.cli import main
from edgel3.exceptions import ParameterError
from edgel3.export.budgets import KIB
from edgel3.export.convert import backbone_model, export_model
from edgel3.export.graph import graph_from_tflite
from edgel3.export.memory import memory_report
from edgel3.export.micro import (
    MicroRuntimeError,
    MicroUnavailableError,
    micro_allocations,
    micro_available,
    run_micro,
)
from edgel3.export.micro_frontend import quantize_patches
from edgel3.export.schedule import micro_estimate
from edgel3.frontend import melspectrogram

from .conftest import PROJECT_ROOT, randomise_bn
from .test_export_memory import PLAN_95_45, prune_to_plan

#: Keras estimate / interpreter total: at least 1 (never below), at most this.
ESTIMATE_LOOSENESS = 1.25
MODELS = ("tiny", "sea-64", "sea-128", "sea-256", "sea-512", "edgel3_ft_audio_sparsity_95.45")
MICRO_REASON = 'needs the tflite-micro interpreter: pip install "edgel3[micro]"'


@pytest.fixture(scope="session")
def micro():
    """Skip (or in CI, fail) with one line when tflite-micro is not installed."""
    if not micro_available():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run every test: {MICRO_REASON}", pytrace=False)
        pytest.skip(MICRO_REASON)


def _model(name: str):
    """A model of an official layout with random weights and trained-looking BN statistics."""
    import keras

    from edgel3.bundled import TINY_PATH
    from edgel3.loading import load_model_file
    from edgel3.models import build_model
    from edgel3.specs import get_spec

    if name == "tiny":
        return load_model_file(TINY_PATH)  # the bundled model: real weights
    keras.utils.set_random_seed(0)
    model = randomise_bn(build_model(get_spec(name)), np.random.default_rng(0))
    if "sparsity" in name:
        model = prune_to_plan(model, PLAN_95_45)
    return model


def _windows(sample_rate: int, count: int, seed: int) -> np.ndarray:
    """Noise with a few tones: log-mel patches with structure, so int8 codes vary."""
    rng = np.random.default_rng(seed)
    t = np.arange(sample_rate) / sample_rate
    tones = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 1000.0, 3100.0))
    return (0.1 * tones + rng.normal(0, 0.05, (count, sample_rate))).astype(np.float32)


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """name -> (Keras model, int8 .tflite path); 4 calibration windows each (ranges only)."""
    from edgel3.runners import model_sample_rate

    folder = tmp_path_factory.mktemp("micro_exports")
    made = {}
    for name in MODELS:
        model = _model(name)
        windows = _windows(model_sample_rate(model), 4, seed=1)
        path = folder / f"{name}_int8.tflite"
        export_model(model, path, quantization="int8", calibration=windows)
        made[name] = (model, path)
    return made


@pytest.fixture(scope="session")
def tiny_float32(exports, tmp_path_factory):
    path = tmp_path_factory.mktemp("micro_float") / "tiny_backbone.tflite"
    export_model(exports["tiny"][0], path, variant="backbone")
    return path


@pytest.fixture(scope="session")
def sea64_banded(exports, tmp_path_factory):
    model = exports["sea-64"][0]
    path = tmp_path_factory.mktemp("micro_banded") / "sea64_int8_b3.tflite"
    export_model(model, path, quantization="int8", calibration=_windows(8000, 4, 1), bands=3)
    return path


@pytest.mark.parametrize("name", MODELS)
def test_estimate_bounds_the_interpreter(micro, exports, name):
    model, path = exports[name]
    device = micro_allocations(path)
    assert device["source"] == "tflite-micro"
    assert device["total"] == device["head"] + device["tail"] > device["persistent"] > 0
    report = memory_report(model, budgets=())
    rows = {row["export"]: row for row in report.exports}
    estimate = rows["int8"]["micro"]
    assert report.micro == estimate and estimate["source"] == "estimate"
    # The planner lays out exactly the interpreter's head; only the tail is estimated.
    assert estimate["head"] == device["head"]
    assert device["total"] <= estimate["total"] <= ESTIMATE_LOOSENESS * device["total"]
    # The file estimate bounds the real file too (flash).
    assert rows["int8"]["need"]["flash_parts"]["model"] >= path.stat().st_size
    # A .tflite report is the interpreter's; without it, its estimate also bounds it.
    on_file = memory_report(path, budgets=())
    assert on_file.micro == device
    graph = graph_from_tflite(path.read_bytes())
    from_file = micro_estimate(graph, graph.nodes, None)
    assert device["total"] <= from_file["total"] <= ESTIMATE_LOOSENESS * device["total"]


def test_estimate_bounds_float32_and_banded(micro, exports, tiny_float32, sea64_banded):
    keras_rows = {r["export"]: r for r in memory_report(exports["tiny"][0], budgets=()).exports}
    device = micro_allocations(tiny_float32)
    estimate = keras_rows["float32"]["micro"]
    assert estimate["head"] == device["head"]
    assert device["total"] <= estimate["total"] <= ESTIMATE_LOOSENESS * device["total"]
    banded = micro_allocations(sea64_banded)
    graph = graph_from_tflite(sea64_banded.read_bytes())
    from_file = micro_estimate(graph, graph.nodes, None)
    assert from_file["head"] == banded["head"]
    assert banded["total"] <= from_file["total"] <= ESTIMATE_LOOSENESS * banded["total"]
    # Bands lower the head (docs/export.rst) and add kernels, hence tail.
    unbanded = micro_allocations(exports["sea-64"][1])
    assert banded["head"] < unbanded["head"] and banded["tail"] > unbanded["tail"]


def test_total_is_the_arena_the_interpreter_needs(micro, exports):
    path = exports["tiny"][1]
    figures = micro_allocations(path)
    assert micro_allocations(path, arena_size=figures["total"]) == figures
    with pytest.raises(MicroRuntimeError, match="too small"):
        micro_allocations(path, arena_size=figures["total"] - 16)


def test_interpreter_refusals_are_clear(micro, exports, tmp_path):
    float16 = tmp_path / "tiny_fp16.tflite"
    export_model(exports["tiny"][0], float16, quantization="float16")
    with pytest.raises(MicroRuntimeError, match="DEQUANTIZE"):
        micro_allocations(float16)
    # The report falls back to the estimate and says why.
    report = memory_report(float16, budgets=())
    assert report.micro["source"] == "estimate" and "DEQUANTIZE" in report.micro["note"]
    with pytest.raises(ParameterError, match="TFL3"):
        micro_allocations(b"\0" * 64)


def _litert_codes(path, codes: np.ndarray) -> np.ndarray:
    """LiteRT's own int8 kernels (without its default XNNPACK delegate), one input at a time."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=path.read_bytes(),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for item in codes:
        interpreter.set_tensor(inp["index"], item[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(outputs)


@pytest.mark.parametrize("which", ["tiny", "sea-64 --bands 3"])
def test_interpreter_outputs_match_litert(micro, exports, sea64_banded, which):
    """Same int8 bytes as LiteRT's int8 kernels: both implement TFLite's integer
    requantization (fixed-point multiplier and shift). LiteRT's default XNNPACK delegate
    requantizes in its own way and differs by a few codes (docs/export.rst)."""
    from edgel3.litert import LiteRTModel

    model, path = exports["tiny"] if which == "tiny" else (exports["sea-64"][0], sea64_banded)
    scale, zero_point = LiteRTModel(path).input_details["quantization"]
    _, config = backbone_model(model)
    patches = melspectrogram(_windows(config.sample_rate, 6, seed=7), config)
    codes = quantize_patches(patches, scale, zero_point)
    device = run_micro(path, codes)
    reference = _litert_codes(path, codes)
    assert device.dtype == reference.dtype == np.int8 and device.shape == reference.shape
    assert len(np.unique(device)) > 8  # varied outputs, not a saturated constant
    np.testing.assert_array_equal(device, reference)
    with pytest.raises(ParameterError, match="int8"):
        run_micro(path, patches)  # float patches: quantize first


def test_without_the_package(exports, monkeypatch):
    """No tflite-micro: a clear error from the wrapper, a labelled estimate from the report."""
    monkeypatch.setitem(sys.modules, "tflite_micro", None)  # import raises ImportError
    path = exports["tiny"][1]
    with pytest.raises(MicroUnavailableError, match=r'pip install "edgel3\[micro\]"'):
        micro_allocations(path)
    with pytest.raises(ImportError):  # also what a caller would naturally catch
        run_micro(path, np.zeros((1, 64, 50, 1), np.int8))
    assert micro_available() is False
    report = memory_report(path, budgets=["cortex-m7"])
    assert report.micro["source"] == "estimate" and "edgel3[micro]" in report.micro["note"]
    assert {c["source"] for c in report.checks} == {"estimate"}
    assert "estimate" in report.format(layers=False)


def test_budget_uses_the_interpreter_total(micro, exports, capsys):
    path = exports["tiny"][1]
    total = micro_allocations(path)["total"]
    limit = total - 1
    rc = main(["memory-report", str(path), "--budget", f"b:inference={limit}", "--no-layers"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "tflite-micro" in text and f"FAIL {total / 1024:.1f} KiB" in text
    report = memory_report(path, budgets=[f"b:inference={total}"])
    (check,) = report.checks
    assert check["bytes"] == total and check["ok"] and check["source"] == "tflite-micro"


def test_device_table_cli(micro, exports, capsys, tmp_path):
    path, out = exports["tiny"][1], tmp_path / "r.json"
    assert main(["memory-report", str(path), "--device", "all", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("cortex-m7", "stm32l476", "nrf52840", "esp32-s3", "rp2040"):
        assert name in text
    import json

    data = json.loads(out.read_text())
    (row,) = data["device_table"]["rows"]
    assert (
        row["source"] == "tflite-micro"
        and row["need"]["ram_parts"]["arena"] == (data["micro"]["total"])
    )
    fits = memory_report(path, budgets=()).device_fits()
    assert fits == {name: cell["ok"] for name, cell in row["fits"].items()}


@pytest.mark.shared
def test_readme_budget_example(micro, sea64_weights_dir, tmp_path, capsys):
    """The README's SEA-64 int8 --bands 3 export against its 'mote' budget: the interpreter's
    total, not the planner's head, decides (the head alone fits 110 KiB)."""
    from .test_export import _esc10

    path = tmp_path / "sea64_int8.tflite"
    export_model(
        "sea-64",
        path,
        quantization="int8",
        calibration=_esc10(1, 4),
        calibration_windows=8,
        bands=3,
    )
    device = micro_allocations(path)
    assert device["head"] <= 110 * KIB < device["total"]
    budget = "mote:flash=420KiB,inference=110KB"
    assert main(["memory-report", str(path), "--budget", budget, "--no-layers"]) == 0
    text = capsys.readouterr().out
    assert f"FAIL {device['total'] / 1024:.1f} KiB" in text
    report = memory_report(path, budgets=[budget])
    inference = next(c for c in report.checks if c["item"] == "inference")
    assert inference["bytes"] == device["total"] and not inference["ok"]
    # The README shows this command and the figure it prints.
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert f'edgel3 memory-report sea64_int8.tflite --budget "{budget}"' in readme
    assert f"`FAIL {device['total'] / 1024:.1f} KiB`" in readme
    assert f"{device['total']:,} B" in readme
