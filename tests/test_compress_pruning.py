"""Magnitude pruning, masks through training, filter/depth reduction, sensitivity sweeps."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from edgel3.compress import filters, pruning, sensitivity
from edgel3.core import load_model_file
from edgel3.exceptions import ParameterError
from edgel3.legacy_h5 import save_legacy_h5
from edgel3.models import build_audio_network, build_model
from edgel3.specs import SEA_FRONTEND, get_spec

from .conftest import SEA64_GZ

# docs/compress.rst: non-zero kernel weights per layer of the 95.45 % plan, and the table's totals.
NONZERO_95_45 = [576, 5530, 11059, 22118, 73728, 29491, 23593, 47186]
TABLE_TOTALS = {
    "53.5": 2179238,
    "63.5": 1711066,
    "72.3": 1298189,
    "73.5": 1239206,
    "81.0": 896371,
    "87.0": 605146,
    "90.5": 444614,
    "95.45": 213281,
    "97.0": 140468,
    "98.0": 93547,
    "99.0": 46730,
}


def _tiny_model(filters=(2, 2, 4, 4, 4, 4, 8, 8), head="bn_relu"):
    keras.utils.set_random_seed(7)
    return build_audio_network(SEA_FRONTEND, list(filters), head=head, name="tiny_test")


# A custom 8-layer plan for the tiny 8-conv test model.
PLAN = [0, 50, 50, 60, 60, 70, 80, 90]


def _windows(rng, n=8):
    return rng.normal(scale=0.1, size=(n, 1, 8000)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(pruning.PLANS, key=float))
def test_official_plan_counts(name):
    plan = pruning.get_plan(name)
    nonzero = [n - pruning.pruned_count(n, s) for n, s in zip(pruning.CONV_KERNEL_SIZES, plan)]
    for n, s, kept in zip(pruning.CONV_KERNEL_SIZES, plan, nonzero):
        # Exact rule: the kept share is within half a weight of (100 - s) % of n.
        assert abs(kept - n * (100 - s) / 100) <= 0.5
    # The table's totals round the sum of unrounded per-layer counts, so the sum of the
    # eight rounded counts can differ from it by at most 8 half-weights; it is <= 2 here.
    assert abs(sum(nonzero) - TABLE_TOTALS[name]) <= 2
    if name == "95.45":
        assert nonzero == NONZERO_95_45


def test_plan_names_are_normalised():
    assert pruning.get_plan(87) == pruning.get_plan("87.0") == pruning.get_plan("87")
    assert pruning.get_plan("97") == pruning.PLANS["97.0"]


@pytest.mark.parametrize(
    ("plan", "match"),
    [
        ("42", "Unknown pruning plan"),
        ([10, 20], "gives 2 sparsities"),
        ([0, 0, 0, 0, 0, 0, 0, 120], r"\[0, 100\]"),
    ],
)
def test_bad_plans_raise(plan, match):
    with pytest.raises(ParameterError, match=match):
        pruning.prune_model(_tiny_model(), plan)


def test_mask_is_exact_with_ties():
    kernel = np.ones((3, 3, 4, 5), dtype=np.float32)  # every |w| tied
    mask = pruning.magnitude_mask(kernel, 33.3)
    assert mask.sum() == 180 - round(0.333 * 180)
    # Stable argsort: the first positions in memory order are the ones dropped.
    assert not mask.ravel()[:60].any() and mask.ravel()[60:].all()


def test_l3_model_pruned_to_95_45_exactly():
    model = build_model(get_spec("sparse-ft-95.45"))  # random init, 4.68 M conv weights
    pruned, report = pruning.prune_model(model, "95.45")
    assert [r.nonzero for r in report] == NONZERO_95_45
    assert [r.target for r in report] == list(pruning.PLANS["95.45"])
    for old, new in zip(pruning.prunable_layers(model), pruning.prunable_layers(pruned)):
        kernel, mask = np.asarray(new.kernel), np.asarray(new.mask)
        assert np.count_nonzero(kernel) == np.count_nonzero(mask)
        # Survivors are the largest |w| and keep their values; biases are never pruned.
        old_kernel = np.asarray(old.kernel)
        assert np.array_equal(kernel[mask > 0], old_kernel[mask > 0])
        if (mask == 0).any():
            assert np.abs(old_kernel[mask == 0]).max() <= np.abs(old_kernel[mask > 0]).min()
        assert np.array_equal(np.asarray(new.bias), np.asarray(old.bias))
    assert "total" in pruning.format_report(report)


def _fit_a_few_steps(model, rng):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.05), loss="mse", jit_compile=False
    )
    x = _windows(rng, 16)
    y = rng.normal(size=(16, model.output_shape[-1])).astype(np.float32)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)  # 8 optimizer steps


def test_masks_survive_training(rng):
    pruned, report = pruning.prune_model(_tiny_model(), PLAN)
    before = [np.asarray(layer.kernel).copy() for layer in pruning.prunable_layers(pruned)]
    _fit_a_few_steps(pruned, rng)
    after_report = pruning.sparsity_report(pruned)
    assert [r.nonzero for r in after_report] == [r.nonzero for r in report]
    for layer, old in zip(pruning.prunable_layers(pruned), before):
        kernel, mask = np.asarray(layer.kernel), np.asarray(layer.mask)
        assert np.all(kernel[mask == 0] == 0.0)  # the stored variable, not only the product
        assert not np.allclose(kernel[mask > 0], old[mask > 0])  # training did move weights

    # Control: the same zeros in a plain (stripped) model come back to life when trained,
    # so the test above would notice masks that are not enforced.
    plain = pruning.strip_masks(pruning.prune_model(_tiny_model(), PLAN)[0])
    _fit_a_few_steps(plain, rng)
    assert pruning.sparsity_report(plain)[1].nonzero > report[1].nonzero


def test_masked_model_saves_loads_and_strips(rng, tmp_path):
    pruned, _ = pruning.prune_model(_tiny_model(), PLAN)
    x = _windows(rng)
    expected = pruned.predict(x, verbose=0)
    pruned.save(tmp_path / "pruned.keras")
    loaded = load_model_file(tmp_path / "pruned.keras")
    assert isinstance(loaded.get_layer("conv2d_2"), pruning.MaskedConv2D)
    # Same graph and weights: only float summation order may differ (none expected on CPU).
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=0, atol=1e-6)
    plain = pruning.strip_masks(pruned)
    assert not any(isinstance(layer, pruning.MaskedConv2D) for layer in plain.layers)
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, rtol=0, atol=1e-6)
    path = save_legacy_h5(plain, tmp_path / "pruned.h5.gz")
    reloaded = pruning.sparsity_report(load_model_file(path))
    assert [r.nonzero for r in reloaded] == [r.nonzero for r in pruning.sparsity_report(pruned)]


@pytest.fixture(scope="module")
def sea64():
    return load_model_file(SEA64_GZ)


@pytest.mark.shared
def test_filter_pruning_shrinks_and_round_trips(sea64, rng, tmp_path):
    x = _windows(rng)
    widths = [16, 16, 32, 32, 64, 64, 32, 32]
    small, kept = filters.prune_filters(sea64, widths)
    body = filters.parse_body(small)
    assert body.filters == widths and small.output_shape == (None, 32)
    assert [k.shape[0] for k in kept] == widths
    assert small.count_params() < sea64.count_params() / 2
    # The kept filters are those with the largest L1 norms.
    norms = filters.filter_l1_norms(sea64)
    for norm, keep in zip(norms, kept):
        dropped = np.setdiff1d(np.arange(norm.size), keep)
        assert norm[keep].min() >= norm[dropped].max()
    kernel = np.asarray(body.convs[1].kernel)
    original = np.asarray(filters.parse_body(sea64).convs[1].kernel)
    np.testing.assert_array_equal(kernel, original[:, :, kept[0], :][:, :, :, kept[1]])

    path = save_legacy_h5(small, tmp_path / "small.h5.gz")
    loaded = load_model_file(path)
    assert filters.parse_body(loaded).filters == widths
    # Identical weights and graph: equal up to float32 summation order.
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), small.predict(x, verbose=0), rtol=0, atol=1e-5
    )

    # Any width per conv (not expressible in the legacy layout) round-trips as .keras.
    odd, _ = filters.prune_filters(sea64, [16, 24, 32, 48, 64, 96, 40, 48])
    odd.save(tmp_path / "odd.keras")
    np.testing.assert_allclose(
        load_model_file(tmp_path / "odd.keras").predict(x, verbose=0),
        odd.predict(x, verbose=0),
        rtol=0,
        atol=1e-5,
    )


@pytest.mark.shared
def test_filter_pruning_keeping_everything_is_identity(sea64, rng):
    x = _windows(rng)
    same, _ = filters.prune_filters(sea64, filters.parse_body(sea64).filters)
    # Same weights copied into the same architecture: bit-identical outputs expected.
    np.testing.assert_array_equal(same.predict(x, verbose=0), sea64.predict(x, verbose=0))


@pytest.mark.shared
def test_depth_reduction_taps_an_earlier_conv(sea64, rng):
    x = _windows(rng)
    reduced = filters.reduce_depth(sea64, 6)
    assert reduced.output_shape == (None, 128)
    # The reduced model = conv6's BN + ReLU map of the full model, max-pooled over time/mel.
    tap = keras.Model(sea64.inputs, sea64.get_layer("activation_6").output)
    expected = tap.predict(x, verbose=0).max(axis=(1, 2))
    np.testing.assert_allclose(reduced.predict(x, verbose=0), expected, rtol=0, atol=1e-5)
    with pytest.raises(ParameterError, match="n_convs must lie"):
        filters.reduce_depth(sea64, 9)
    with pytest.raises(ParameterError, match="more filters"):
        filters.prune_filters(sea64, [64] * 8)


def test_sensitivity_sweep(rng):
    model = _tiny_model()
    x = _windows(rng, 12)
    weights = [w.copy() for w in model.get_weights()]
    result = sensitivity.sensitivity_sweep(model, x, sparsities=(0, 60, 100))
    assert result.scores.shape == (8, 3) and result.baseline == 0.0
    assert np.all(result.scores[:, 0] == 0.0)  # 0 % prunes nothing: identical embeddings
    assert np.all(result.scores[:, 2] > 0.0)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)  # the model is restored
    custom = sensitivity.sensitivity_sweep(
        model,
        x,
        sparsities=(50,),
        layers=["conv2d_1"],
        metric=lambda a, b: float(np.abs(a - b).max()),
    )
    assert custom.layers == ["conv2d_1"] and custom.scores[0, 0] > 0
    calls = []
    scored = sensitivity.sensitivity_sweep(
        model, sparsities=(50, 90), layers=["conv2d_2"], evaluate=lambda m: calls.append(1) or 0.5
    )
    assert len(calls) == 3 and np.all(scored.scores == 0.5)
    assert "conv2d_2" in scored.to_text()


@pytest.mark.shared
def test_prune_cli(tmp_path, capsys):
    from edgel3.cli import main

    out = tmp_path / "pruned.keras"
    assert main(["prune", str(SEA64_GZ), "--plan", "95.45", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["target"] for row in report["layers"]] == list(pruning.PLANS["95.45"])
    # SEA-64's conv2 holds 9,216 kernel weights: 85 % pruned leaves round(0.15 * 9216) = 1,382.
    assert report["layers"][1]["nonzero"] == 1382
    assert isinstance(load_model_file(out).get_layer("conv2d_2"), pruning.MaskedConv2D)
    narrow = tmp_path / "narrow.h5.gz"
    assert (
        main(["prune", str(SEA64_GZ), "--filters", "8,8,16,16,32,32,16,16", "-o", str(narrow)]) == 0
    )
    assert load_model_file(narrow).output_shape == (None, 16)
    assert main(["prune", str(SEA64_GZ), "-o", str(narrow)]) == 1  # nothing to do: one-line error
    assert "Nothing to do" in capsys.readouterr().err


def test_compress_imports_stay_light():
    import subprocess
    import sys

    code = (
        "import sys, edgel3.compress as c, edgel3.compress.sea, edgel3.compress.augment, "
        "edgel3.compress.dpp, edgel3.compress.data, edgel3.compress.teachers, "
        "edgel3.commands.prune, edgel3.commands.distill, edgel3.commands.sea, edgel3.bundled; "
        "print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
