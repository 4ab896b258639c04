"""Memory report: a toy network computed by hand, and the papers' seed figures.

Sizes are exact integer arithmetic (no tolerance) unless a test compares with a
figure the papers rounded; those comparisons say how the paper rounded.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgel3.exceptions import ParameterError, WeightsError
from edgel3.export.budgets import BUDGETS, KIB, MIB, Budget, parse_budget, parse_size
from edgel3.export.memory import memory_report, sparse_sizes
from edgel3.specs import FrontendConfig, get_spec

TOY_FRONTEND = FrontendConfig(sample_rate=1000, n_dft=64, n_hop=50, n_mels=8)
PLAN_95_45 = (0, 85, 85, 85, 75, 95, 98, 98)  # docs/compress.rst: % of each conv kernel zeroed


def toy_model(seed: int = 0):
    """Mel (8, 20, 1) -> BN -> conv 4 -> conv 4 -> pool -> conv 2 (+BN+ReLU) -> max -> 2."""
    import keras

    from edgel3.models import build_audio_network

    keras.utils.set_random_seed(seed)
    model = build_audio_network(TOY_FRONTEND, [4, 4, 2], head="bn_relu", name="toy")
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # trained-looking BN statistics, none of them trivial
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = (w.shape for w in layer.get_weights())
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma),
                    rng.normal(0, 0.2, beta),
                    rng.normal(-40 if gamma == (1,) else 0, 0.5, mean),
                    rng.uniform(0.5, 2, var),
                ]
            )
    return model


def prune_to_plan(model, plan):
    """Zero the round(s * n / 100) smallest |w| of each conv kernel (docs/compress.rst)."""
    from edgel3.compress.pruning import prune_model, strip_masks

    return strip_masks(prune_model(model, plan)[0])


# Hand computation for the toy network (elements; activations per window).
# Tensors: mel 8x20x1 = 160; conv1/conv2 outputs 8x20x4 = 640; pool 4x10x4 = 160;
# conv3 4x10x2 = 80; global pool 2.
TOY_PARAMS = 4 + (36 + 4) + 16 + (144 + 4) + 16 + (72 + 2) + 8  # BN = 4 values per channel
TOY_KERNELS = 36 + 144 + 72
TOY_MACS = 8 * 20 * 4 * 9 * 1 + 8 * 20 * 4 * 9 * 4 + 4 * 10 * 2 * 9 * 4
# Sequential: the worst kernel is conv2 holding its input and output, 640 + 640.
TOY_PEAK_SEQUENTIAL = 640 + 640
# In place: conv1 expands (160 + 640); conv2 overwrites its input with 2 pending rows
# of 20 x 4 (640 + 160); the pool and conv3 are smaller.
TOY_PEAK_INPLACE = 160 + 640


def test_toy_report_matches_hand_computation():
    report = memory_report(toy_model(), budgets=())
    assert report.params == TOY_PARAMS == 306
    assert report.kernel_params == report.nonzero_kernel_params == TOY_KERNELS
    assert report.macs["conv"] == report.macs["network"] == TOY_MACS == 31_680
    assert report.static["float32"]["dense"] == 4 * TOY_PARAMS
    assert report.static["float16"]["dense"] == 2 * TOY_PARAMS
    assert report.static["int8"]["dense"] == TOY_PARAMS
    assert report.largest_activation["shape"] == [1, 8, 20, 4]
    assert report.largest_activation["bytes"] == {"float32": 2560, "float16": 2560, "int8": 640}
    assert report.peaks["sequential"]["float32"] == {"bytes": 4 * 1280, "node": "conv2d_2"}
    assert report.peaks["sequential"]["int8"]["bytes"] == TOY_PEAK_SEQUENTIAL
    assert report.peaks["inplace"]["int8"]["bytes"] == TOY_PEAK_INPLACE
    # A chain of well-sized buffers packs without fragmentation (hand-placed in the docs).
    assert report.peaks["arena"]["int8"]["bytes"] == TOY_PEAK_SEQUENTIAL
    live = {row["name"]: row["live_bytes_inplace"] for row in report.layers}
    # conv3 (4 -> 2 channels) runs in place: input 160 + 2 rows x 10 x 2 pending, in fp32.
    assert live["audio_embedding_layer"] == 4 * (160 + 2 * 10 * 2)
    # Front end: 20 frames x 64 taps x 33 bins x (re, im), then 20 x 33 x 8 mel weights.
    assert report.frontend["macs_stft_dense_dft"] == 20 * 64 * 33 * 2
    assert report.frontend["macs_mel"] == 20 * 33 * 8
    # BN and ReLU are folded into the convs, as the LiteRT converter folds them.
    ops = [row["op"] for row in report.layers]
    assert ops[:3] == ["BatchNormalization", "Conv2D+BN+RELU", "Conv2D+BN+RELU"]
    # With the front end: audio (1000) and its mel output are live in the first kernel.
    full = memory_report(toy_model(), budgets=(), include_frontend=True)
    assert full.macs["frontend"] == 20 * 64 * 33 * 2 + 20 * 33 * 8
    assert full.layers[0]["live_bytes_sequential"] == 4 * (1000 + 160)


def test_arena_planner_by_hand():
    """LiteRT-Micro's greedy planner can need more than the live sum (fragmentation)."""
    from edgel3.export.graph import Graph, Node, Tensor
    from edgel3.export.schedule import arena_size, peak

    # int8 tensors X=64 B alive at kernels 0-1, Z=32 B 0-3, Y=48 B 2-4, V=64 B 4-5.
    tensors = [
        Tensor(n, (size,), "int8") for n, size in (("X", 64), ("Z", 32), ("Y", 48), ("V", 64))
    ]
    nodes = [
        Node("n0", "other", "", [], [0, 1]),
        Node("n1", "other", "", [0], []),
        Node("n2", "other", "", [], [2]),
        Node("n3", "other", "", [1], []),
        Node("n4", "other", "", [2], [3]),
        Node("n5", "other", "", [3], []),
    ]
    graph = Graph("hand", "tflite", tensors, nodes, [], [])
    # Live sums: 96, 96, 80, 80, 112 (Y + V), 64.
    assert peak(graph, nodes, None, "sequential")[:2] == (112, 4)
    # Largest first at the lowest free offset: X 0-64; V 0-64 (disjoint in time);
    # Y above V at 64-112; Z meets X and Y, so it goes above both at 112-144.
    assert arena_size(graph, nodes, None) == 144


def test_sparse_encodings_by_hand():
    # 2 output channels (last axis) x 3x3x4 = 36 weights each; 5 non-zeros in all.
    kernel = np.zeros((3, 3, 4, 2), np.float32)
    kernel[0, 0, 0, 0] = kernel[1, 1, 1, 0] = kernel[2, 2, 3, 0] = 1.0
    kernel[0, 1, 2, 1] = kernel[2, 0, 1, 1] = -2.0
    sizes = sparse_sizes(kernel, 4)
    assert sizes == {
        "nonzero": 5,
        "dense": 72 * 4,
        "values": 5 * 4,
        "bitmap": 9 + 5 * 4,  # ceil(72 / 8) bytes of bits
        "csr": 5 * 4 + 5 * 1 + 3 * 4,  # 1-byte column indices (36 <= 256), 3 row pointers
    }


def test_pruned_toy_reports_sparse_sizes():
    model = prune_to_plan(toy_model(), (0, 50, 75))
    report = memory_report(model, budgets=())
    nonzero = 36 + 72 + 18  # round(50 % of 144) and round(75 % of 72) zeroed
    assert report.nonzero_kernel_params == nonzero
    assert report.static["float32"]["nonzero_kernel_values"] == 4 * nonzero
    other = TOY_PARAMS - TOY_KERNELS
    bitmap = sum(-(-n // 8) for n in (36, 144, 72)) + 4 * nonzero
    assert report.static["float32"]["bitmap"] == 4 * other + bitmap
    assert report.sparsity == pytest.approx(100 * (1 - nonzero / TOY_KERNELS))
    # Activations do not shrink with unstructured sparsity.
    assert report.peaks["sequential"]["int8"]["bytes"] == TOY_PEAK_SEQUENTIAL


# The toy's LiteRT-Micro estimate (edgel3.export.schedule.micro_estimate): 6 kernels run
# (BN, 3 convs, 2 pools; the flatten is a reshape), 1 + 4 + 4 + 2 = 11 output channels of
# kernels with weights; tail = 1.25 x (1024 + 216 x 6 + 8 x 11) = 3,010 -> 3,024 (16-aligned).
TOY_KERNELS_RUN, TOY_CHANNELS = 6, 11
TOY_TAIL = 3024
# The toy's front end on a device: float32 frame + spectrum (64 each), power (33 bins),
# patch (8 x 20); audio ring: int16 samples of 1 s + one 0.1 s hop at 1 kHz.
TOY_FRONTEND_BUFFERS = 4 * (64 + 64 + 33 + 8 * 20)
TOY_RING = 2 * (1000 + 100)


def test_toy_micro_estimate_by_hand():
    from edgel3.export.micro_frontend import frontend_cost

    report = memory_report(toy_model(), budgets=())
    assert 1024 + 216 * TOY_KERNELS_RUN + 8 * TOY_CHANNELS == 2408
    assert report.micro == {
        "head": TOY_PEAK_SEQUENTIAL,
        "tail": TOY_TAIL,
        "persistent": int(1.25 * 8 * TOY_CHANNELS),
        "total": TOY_PEAK_SEQUENTIAL + TOY_TAIL,
        "source": "estimate",
    }
    rows = {row["export"]: row for row in report.exports}
    assert list(rows) == ["float32", "float16", "int8"] and rows["int8"]["own"]
    assert rows["float32"]["micro"]["head"] == 4 * TOY_PEAK_SEQUENTIAL
    assert rows["float16"]["micro"] == rows["float32"]["micro"]  # computes in float32
    # File: stored values + 4,096 + 256 per kernel + 32 per channel.
    int8 = rows["int8"]["need"]
    assert int8["flash_parts"]["model"] == TOY_PARAMS + 4096 + 256 * 6 + 32 * 11
    assert int8["flash_parts"]["frontend_tables"] == frontend_cost(TOY_FRONTEND).table_bytes
    assert int8["ram_parts"] == {
        "arena": TOY_PEAK_SEQUENTIAL + TOY_TAIL,
        "frontend_buffers": TOY_FRONTEND_BUFFERS,
        "audio_ring": TOY_RING,
        "dequantized_weights": 0,
    }
    # float16: LiteRT-Micro has no float16 kernels; LiteRT keeps fp32 copies in RAM.
    assert rows["float16"]["need"]["ram_parts"]["dequantized_weights"] == 4 * TOY_PARAMS


def test_budget_checks_and_json(tmp_path):
    budget = Budget("tiny", flash=8000, ram=None, inference=5000)
    report = memory_report(toy_model(), budgets=[budget, "cortex-m7"])
    by_key = {(c["budget"], c["row"], c["item"]): c for c in report.checks}
    assert len(by_key) == len(report.checks) == 3 * 2 + 3 * 3
    need = {row["export"]: row["need"] for row in report.exports}
    # flash = file + front-end tables (+ the budget's code allowance); inference = arena.
    assert by_key[("tiny", "float32", "flash")]["bytes"] == need["float32"]["flash"] > 8000
    assert by_key[("tiny", "int8", "flash")]["bytes"] == need["int8"]["flash"] <= 8000
    m7 = BUDGETS["cortex-m7"]
    assert by_key[("cortex-m7", "int8", "flash")]["bytes"] == need["int8"]["flash"] + m7.code
    assert by_key[("tiny", "float32", "inference")]["bytes"] == 4 * 1280 + TOY_TAIL > 5000
    assert by_key[("tiny", "int8", "inference")]["bytes"] == report.micro["total"] <= 5000
    ram = by_key[("cortex-m7", "int8", "ram")]
    assert ram["bytes"] == report.micro["total"] + TOY_FRONTEND_BUFFERS + TOY_RING
    assert {c["source"] for c in report.checks} == {"estimate"}
    assert report.passed("cortex-m7") and not report.passed("tiny") and not report.passed()
    data = json.loads(report.to_json(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert data["micro"]["total"] == TOY_PEAK_SEQUENTIAL + TOY_TAIL
    assert data["peak_activation_bytes"]["sequential"]["int8"]["bytes"] == TOY_PEAK_SEQUENTIAL
    text = str(report)
    assert "FAIL" in text and "PASS" in text and "conv2d_2" in text and "estimate" in text


def test_device_table_and_fits():
    from edgel3.export.devices import fit, select_devices
    from edgel3.export.report_text import format_device_table

    report = memory_report(toy_model(), budgets=())
    own = next(row for row in report.exports if row["own"])
    small = Budget("small", flash=own["need"]["flash"], ram=own["need"]["ram"] - 1)
    table = report.device_table(["nrf52840", small])
    assert list(table["devices"]) == ["nrf52840", "small"]
    assert [row["export"] for row in table["rows"]] == ["float32", "float16", "int8"]
    cell = table["rows"][2]["fits"]["small"]
    assert cell["ok"] is False and cell["limiting"] == "ram" and cell["over_bytes"] == 1
    assert table["rows"][2]["fits"]["nrf52840"]["ok"] is True
    assert report.device_fits([small, "nrf52840"]) == {"small": False, "nrf52840": True}
    assert set(report.device_fits()) == set(BUDGETS)
    # A preset's code allowance counts against its flash.
    tight = Budget("tight", flash=own["need"]["flash"], code=1)
    assert fit(own["need"], tight)["limiting"] == "flash"
    text = format_device_table(table)
    assert "RAM +1 B" in text and "nrf52840" in text and "estimate" in text
    assert [d.name for d in select_devices("all")] == list(BUDGETS)
    assert [d.name for d in select_devices(["RP2040", "all"])][0] == "rp2040"
    with pytest.raises(ParameterError, match="esp32-s3"):
        select_devices(["esp32"])


def test_device_presets():
    """One table of presets, each with its source; the datasheets' sizes (KB = 1024 B)."""
    from edgel3.export.devices import CODE_ALLOWANCE, DEVICES

    assert BUDGETS is DEVICES
    sizes = {name: (d.flash, d.ram) for name, d in DEVICES.items()}
    assert sizes == {
        "cortex-m7": (2 * MIB, MIB),  # the SONYC mote (STM32H7)
        "stm32l476": (MIB, 128 * KIB),
        "nrf52840": (MIB, 256 * KIB),
        "esp32-s3": (8 * MIB, 512 * KIB),  # flash: an 8 MB module, assumed
        "rp2040": (2 * MIB, 264 * KIB),  # flash: the Pico board's
    }
    for device in DEVICES.values():
        assert device.source and device.board and device.code == CODE_ALLOWANCE
        assert device.inference is None or device.inference <= device.ram


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512KiB", 512 * KIB),
        ("512 KB", 512 * KIB),
        ("2MB", 2 * MIB),
        ("1.5M", 3 * MIB // 2),
        ("100", 100),
        (4096, 4096),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_budget():
    assert parse_budget("Cortex-M7") is BUDGETS["cortex-m7"]
    m7 = BUDGETS["cortex-m7"]
    assert (m7.flash, m7.ram, m7.inference) == (2 * MIB, MIB, 512 * KIB)
    assert parse_budget("nrf52840") is BUDGETS["nrf52840"]
    assert parse_budget("mine:flash=420KiB,inference=110KiB") == Budget(
        "mine", flash=420 * KIB, inference=110 * KIB
    )
    assert parse_budget("m:flash=1MiB,code=96K") == Budget("m", flash=MIB, code=96 * KIB)
    assert parse_budget({"ram": "64K"}) == Budget("custom", ram=64 * KIB)
    with pytest.raises(ParameterError, match="cortex-m4"):
        parse_budget("cortex-m4")
    with pytest.raises(ParameterError, match="rom"):
        parse_budget("x:rom=1MB")
    with pytest.raises(ParameterError, match="code"):
        parse_budget("x:code=1MB")  # an allowance alone checks nothing
    with pytest.raises(ParameterError, match="12 parsecs"):
        parse_size("12 parsecs")


def test_every_model_name_is_accepted():
    """memory_report resolves models with edgel3.reference.resolve_model: 'tiny' included."""
    from edgel3.bundled import TINY_PATH
    from edgel3.loading import load_model_file

    by_name = memory_report("tiny", budgets=()).to_dict()
    loaded = load_model_file(TINY_PATH)
    assert by_name == memory_report(loaded, budgets=()).to_dict()
    assert by_name == memory_report(TINY_PATH, budgets=()).to_dict()
    assert by_name["output_shape"] == [1, 64]


def test_rejects_unknown_objects(tmp_path):
    with pytest.raises(ParameterError, match="list"):
        memory_report([1, 2])
    # The one model resolver's errors (edgel3.reference), as for get_embedding.
    with pytest.raises(WeightsError, match="could not be found"):
        memory_report(tmp_path / "missing.tflite")
    with pytest.raises(ParameterError, match="sea-1"):
        memory_report("sea-1")
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"\0" * 64)
    with pytest.raises(ParameterError, match="TFL3"):
        memory_report(bogus)


# --------------------------------------------------------------------------- seed figures


def test_sparse_l3_seed_figures():
    """EdgeL3 (95.45 %): ~18 MB dense, 13.04 MB largest tensor, 0.81 / 0.41 MB non-zeros."""
    import keras

    from edgel3.models import build_model

    keras.utils.set_random_seed(3)
    model = prune_to_plan(build_model(get_spec("edgel3_ft_audio_sparsity_95.45")), PLAN_95_45)
    report = memory_report(model, budgets=["cortex-m7"])
    # docs/export.rst: 4,684,224 conv + 5,636 BN parameters; "~18 MB" = 18.76 decimal MB.
    assert report.params == 4_684_224 + 5_636
    assert report.static["float32"]["dense"] == 4 * 4_689_860
    # §6: the (256, 199, 64) conv1 output, 13,041,664 B fp32 (the papers' 12.7-12.8 MB figures
    # do not reproduce; 13.04 MB is the arithmetic) and 3.26 MB int8.
    assert report.largest_activation["shape"] == [1, 256, 199, 64]
    assert report.largest_activation["bytes"]["float32"] == 13_041_664
    assert report.largest_activation["bytes"]["int8"] == 3_260_416
    # §4: 213,281 non-zero kernel weights; x 4 B = 0.814 MiB fp32, x 2 B = 0.407 MiB fp16.
    assert report.nonzero_kernel_params == 213_281
    assert round(report.static["float32"]["nonzero_kernel_values"] / MIB, 3) == 0.814
    assert round(report.static["float16"]["nonzero_kernel_values"] / MIB, 3) == 0.407
    # §6: 10.203 G conv MACs, 835.5 M + 52.2 M front end (rounded as the table rounds).
    assert round(report.macs["conv"] / 1e9, 3) == 10.203
    assert round(report.frontend["macs_stft_dense_dft"] / 1e6, 1) == 835.5
    assert round(report.frontend["macs_mel"] / 1e6, 1) == 52.2
    # A sparse encoding saves flash, never RAM: CSR beats dense by far at 95 %.
    assert report.static["float32"]["csr"] < 0.1 * report.static["float32"]["dense"]
    checks = {(c["row"], c["item"]): c["ok"] for c in report.checks}
    assert checks[("float32", "flash")] is False
    assert checks[("int8+sparse", "flash")] is True
    assert checks[("int8", "inference")] is False  # 6.5 MB arena (3.26 MB activations)


@pytest.mark.parametrize(
    ("emb_dim", "largest", "size_mb", "conv_macs_m"),
    [
        (512, 819_200, 18.77, 636.5),
        (256, 409_600, 4.70, 159.6),
        (128, 409_600, 2.34, 131.3),
        (64, 409_600, 1.60, 122.4),
    ],
)
def test_sea_student_seed_figures(emb_dim, largest, size_mb, conv_macs_m):
    """SEA Table 1: (conv + BN) x 4 B in decimal MB; activation 0.82 / 0.41 MB (§6)."""
    from edgel3.models import build_model

    report = memory_report(build_model(get_spec(f"sea-{emb_dim}")), budgets=())
    assert report.largest_activation["bytes"]["float32"] == largest
    assert round(report.static["float32"]["dense"] / 1e6, 2) == size_mb
    assert round(report.macs["conv"] / 1e6, 1) == conv_macs_m


@pytest.mark.shared
def test_sea64_official_int8_targets(sea64_weights_dir):
    """SEA-64 at int8: static <= 420 KiB; peak activations by schedule (see docs/export.rst)."""
    report = memory_report("sea-64", budgets=())  # by name, from ../shared/weights
    assert report.params == 397_152 + 2_308  # docs/export.rst: conv + BN
    assert report.static["int8"]["dense"] == 399_460 <= 420 * KIB
    # Sequential: conv2 holds two (64, 50, 32) int8 tensors; the arena planner needs as much.
    assert report.peaks["sequential"]["int8"]["bytes"] == 2 * 64 * 50 * 32 == 204_800
    assert report.peaks["arena"]["int8"]["bytes"] == 204_800
    # In place: one such tensor + 2 pending output rows of 50 x 32 -> within 110 KiB.
    assert report.peaks["inplace"]["int8"]["bytes"] == 64 * 50 * 32 + 2 * 50 * 32
    assert report.peaks["inplace"]["int8"]["bytes"] <= 110 * KIB
