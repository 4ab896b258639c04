"""Sparse execution of pruned models (edgel3.sparse) and thread settings (edgel3.threads).

The executor must give the dense Keras model's numbers within float32 rounding
(only the summation order differs), pick itself only for pruned models, and
notice weight changes.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import edgel3
from edgel3 import core, sparse, sparse_kernels, threads
from edgel3.compress.pruning import prune_model, strip_masks
from edgel3.exceptions import ParameterError
from edgel3.models import build_audio_network, build_model
from edgel3.specs import SEA_FRONTEND, SPARSE_FRONTEND, get_spec

from .conftest import SEA64_GZ, randomise_bn

PLAN_95_45 = (0, 85, 85, 85, 75, 95, 98, 98)  # docs/compress.rst: % of conv kernel weights zeroed


def _prune(model, plan):
    return strip_masks(prune_model(model, plan)[0])


@pytest.fixture(scope="module")
def l3_pruned():
    """The official sparse L3 architecture, random weights pruned to the 95.45 % plan."""
    keras.utils.set_random_seed(3)
    model = build_model(get_spec("sparse-ft-95.45"))
    return randomise_bn(_prune(model, PLAN_95_45), np.random.default_rng(3))


@pytest.fixture(scope="module")
def small_sea():
    keras.utils.set_random_seed(5)
    model = build_audio_network(SEA_FRONTEND, [8, 8, 16, 16, 16, 16, 8, 8], head="bn_relu")
    return randomise_bn(_prune(model, (0, 60, 70, 80, 90, 95, 50, 0)), np.random.default_rng(5))


def _tolerance(reference):
    # float32 sums of up to 4608 products in another order: relative error ~1e-6 of the
    # activations' scale; 2e-5 of the largest embedding value leaves a 10x margin.
    return 2e-5 * float(np.max(np.abs(reference)))


@pytest.mark.parametrize("strategy", ["sparse", "dense", "auto"])
def test_executor_equals_dense_keras_small(small_sea, rng, strategy):
    batch = rng.normal(scale=0.1, size=(5, 1, 8000)).astype(np.float32)
    batch[3] = 0.0  # an all-zero window: constant melspec, as in the original
    reference = small_sea.predict_on_batch(batch)
    executor = sparse.SparseExecutor(small_sea, strategy=strategy)
    got = executor(batch)
    assert got.shape == reference.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, reference, rtol=0, atol=_tolerance(reference))
    assert set(executor.layer_strategies_.values()) <= {"sparse", "dense"}
    if strategy == "auto":  # a fixed rule by density: the same kernels on every run
        rows = sparse.conv_densities(small_sea)
        expected = {
            name: "dense" if d > sparse.DENSE_ABOVE_DENSITY else "sparse" for name, d, _ in rows
        }
        first, second = rows[0][0], rows[1][0]
        expected[first] = expected[second]  # the one-channel first conv follows the next
        assert executor.layer_strategies_ == expected
        assert set(expected.values()) == {"sparse", "dense"}  # both kernels and both layouts


def test_executor_equals_dense_keras_on_the_l3_95_45_plan(l3_pruned, rng):
    batch = rng.normal(scale=0.1, size=(2, 1, 48000)).astype(np.float32)
    reference = l3_pruned.predict_on_batch(batch)
    executor = sparse.sparse_executor(l3_pruned)
    assert isinstance(executor, sparse.SparseExecutor)  # 95.45 % keeps ~11 % of the MACs
    got = executor(batch)
    np.testing.assert_allclose(got, reference, rtol=0, atol=_tolerance(reference))
    assert (got < 0).any()  # no BN/ReLU head: signed embeddings, as the dense model's
    # The pruned convs (2-25 % non-zero) run sparse, and so does conv1 (dense, one input
    # channel: it follows the next layer, so no layout or thread-pool change).
    assert set(executor.layer_strategies_.values()) == {"sparse"}


@pytest.mark.shared
def test_model_level_choice(l3_pruned, monkeypatch):
    sea64 = core.load_model_file(SEA64_GZ)
    assert sparse.supports(sea64) and sparse.kept_fraction(sea64) == 1.0
    assert sparse.sparse_executor(sea64) is None  # dense: TensorFlow wins
    rows = sparse.conv_densities(l3_pruned)
    planned = sum((100 - p) / 100 * macs for p, (_, _, macs) in zip(PLAN_95_45, rows))
    # 10.87 % of the dense MACs are left by the plan (rounding of the per-layer counts).
    assert sparse.kept_fraction(l3_pruned) == pytest.approx(planned / 10.203e9, rel=1e-3)
    assert sparse.sparse_executor(l3_pruned, mode="dense") is None
    monkeypatch.setenv(sparse.ENV_VAR, "sparse")
    assert isinstance(sparse.sparse_executor(sea64), sparse.SparseExecutor)
    monkeypatch.setenv(sparse.ENV_VAR, "fastest")
    with pytest.raises(ParameterError, match="EDGEL3_SPARSE_EXEC must be one of"):
        sparse.sparse_executor(sea64)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert not sparse.supports(other) and sparse.sparse_executor(other, mode="sparse") is None
    with pytest.raises(ParameterError, match="cannot run model"):
        sparse.SparseExecutor(other)


def test_get_embedding_uses_it_and_matches_dense(small_sea, rng, monkeypatch):
    audio = rng.normal(scale=0.1, size=3 * 8000)
    # 21 windows >= MIN_WINDOWS: the executor runs (the model keeps ~14 % of its MACs).
    emb, _ = edgel3.get_embedding(audio, 8000, model=small_sea, verbose=0, batch_size=8)
    assert sparse._EXECUTORS.get(small_sea) is not None
    monkeypatch.setenv(sparse.ENV_VAR, "dense")
    dense, _ = edgel3.get_embedding(audio, 8000, model=small_sea, verbose=0, batch_size=8)
    np.testing.assert_allclose(emb, dense, rtol=0, atol=_tolerance(dense))


def test_executor_is_rebuilt_when_weights_change(small_sea, rng):
    batch = rng.normal(scale=0.1, size=(3, 1, 8000)).astype(np.float32)
    first = sparse.sparse_executor(small_sea, mode="sparse")
    assert sparse.sparse_executor(small_sea, mode="sparse") is first
    conv = small_sea.get_layer("conv2d_2")
    kernel, bias = conv.get_weights()
    try:
        conv.set_weights([kernel * 2, bias])
        second = sparse.sparse_executor(small_sea, mode="sparse")
        assert second is not first and not first.matches(small_sea)
        reference = small_sea.predict_on_batch(batch)
        np.testing.assert_allclose(second(batch), reference, atol=_tolerance(reference))
    finally:
        conv.set_weights([kernel, bias])


def test_conv_densities_follow_the_plan(l3_pruned):
    rows = sparse.conv_densities(l3_pruned)
    assert [name for name, _, _ in rows][-1] == "audio_embedding_layer"
    densities = [round(1 - d, 2) * 100 for _, d, _ in rows]
    assert densities == pytest.approx(PLAN_95_45, abs=0.5)
    # docs/export.rst: 10.203 G dense conv MACs per 1-s window of the sparse L3 network.
    assert sum(macs for _, _, macs in rows) == pytest.approx(10.203e9, rel=1e-3)


def test_sparse_frontend_shapes_are_the_48k_ones(l3_pruned):
    mel, _, convs = sparse_kernels.parse_model(l3_pruned)
    assert (mel.config.n_mels, mel.config.n_frames) == (256, 199)
    assert mel.config == SPARSE_FRONTEND
    assert [c.pool for c in convs] == ["none", "2x2"] * 3 + ["none", "global"]
    assert not convs[-1].relu and all(c.relu for c in convs[:-1])


# --------------------------------------------------------------------------- threads


def test_configure_threads(monkeypatch):
    applied = threads.configure_threads(1)
    assert applied["threads"] == 1 and applied["numba"] in ("set", "environment")
    import numba

    assert numba.get_num_threads() == 1
    applied = threads.configure_threads()  # back to the default: all cores
    assert applied["threads"] == threads.available_cores()
    monkeypatch.setenv(threads.ENV_VAR, "1")
    assert threads.default_threads() == 1
    monkeypatch.setenv(threads.ENV_VAR, "many")
    with pytest.raises(ParameterError, match="EDGEL3_NUM_THREADS must be a positive integer"):
        threads.default_threads()
    with pytest.raises(ParameterError, match="threads must be a positive integer; got threads=0"):
        threads.configure_threads(0)
    monkeypatch.delenv(threads.ENV_VAR)
    threads.configure_threads()


def test_cores_per_worker():
    cores = threads.available_cores()
    assert threads.cores_per_worker(1) == cores
    assert threads.cores_per_worker(cores * 4) == 1  # never zero threads
    with pytest.raises(ParameterError, match="jobs must be a positive integer"):
        threads.cores_per_worker(0)
