"""``.keras`` files run with NumPy (keras_file, keras_ops, keras_runner): Keras's numbers.

Tolerance: 1e-5 of the embedding's scale (max |value|), the project's bound for two
float32 executions of one network that sum in different orders (docs/runtime.rst).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgel3.bundled import TINY_PATH
from edgel3.exceptions import ParameterError, WeightsError
from edgel3.keras_file import same_padding, storage_names, supports_keras_file
from edgel3.keras_runner import KerasFileRunner, load_keras_file_runner
from edgel3.specs import SEA_FRONTEND, get_spec

from .conftest import assert_close

SR = SEA_FRONTEND.sample_rate


def sample_windows(rng, n: int = 6) -> np.ndarray:
    """Noise at several levels, a tone, a quiet window and an all-zero one: ``(n, 1, sr)``."""
    windows = rng.standard_normal((n, 1, SR)) * rng.uniform(0.01, 0.5, (n, 1, 1))
    windows[0, 0] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)
    windows[1] *= 1e-4  # quiet
    windows[2] = 0.0  # silent
    return windows.astype(np.float32)


def assert_matches(runner, model, windows):
    expected = np.asarray(model.predict_on_batch(windows), np.float32)
    found = runner.predict_on_batch(windows)
    assert found.shape == expected.shape and found.dtype == np.float32
    assert np.abs(expected).max() > 0  # a degenerate (all-zero) embedding would prove nothing
    assert_close(found, expected)


def randomise(model, rng):
    """Random values in every variable, BN statistics positive: a mis-mapped array shows."""
    import keras

    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    for layer in model.layers:
        if type(layer).__name__ == "MelSpectrogram":
            continue
        for variable in layer.weights:
            shape, name = tuple(variable.shape), variable.path.rsplit("/", 1)[-1]
            if name in ("gamma", "moving_variance"):
                value = rng.uniform(0.5, 2.0, shape)
            elif name in ("beta", "moving_mean", "bias"):
                value = rng.normal(0, 0.3, shape)
            elif name == "mask":
                continue
            else:  # kernels: He-like scale keeps the activations in range
                fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
                if type(layer).__name__ == "DepthwiseConv2D":
                    fan_in = shape[0] * shape[1]
                value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
            variable.assign(value.astype("float32"))
    return model


def saved(model, path):
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tiny_keras():
    from edgel3.loading import load_model_file

    return load_model_file(TINY_PATH)


def test_storage_names_and_padding():
    # The weight store's names, as Keras 3 derives them (checked on tiny.keras below).
    assert storage_names(["MaxPooling2D", "ReLU", "GlobalMaxPooling2D", "ReLU"]) == [
        "max_pooling2d",
        "re_lu",
        "global_max_pooling2d",
        "re_lu_1",
    ]
    assert storage_names(["BatchNormalization"] * 3)[-1] == "batch_normalization_2"
    # TF 'same': the odd row of a stride-2 conv is padded after.
    assert [same_padding(n, 3, 2) for n in (64, 50, 25, 13)] == [(0, 1), (0, 1), (1, 1), (1, 1)]
    assert same_padding(8, 1, 1) == (0, 0) and same_padding(7, 4, 1) == (1, 2)


def test_tiny_storage_names_are_the_files_groups():
    import h5py

    with zipfile.ZipFile(TINY_PATH) as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
        with h5py.File(archive.open("model.weights.h5"), "r") as weights:
            groups = set(weights["layers"])
    names = storage_names([layer["class_name"] for layer in layers])
    assert set(names) == groups
    assert names[1] == "mel_spectrogram" and "depthwise_conv2d_4" in names


def test_bundled_tiny_equals_keras(tiny_keras, rng):
    runner = KerasFileRunner(TINY_PATH)
    assert (runner.sample_rate, runner.embedding_size, runner.name) == (SR, 64, "edgel3_tiny")
    assert supports_keras_file(TINY_PATH)
    assert_matches(runner, tiny_keras, sample_windows(rng, 7))
    # BN folded into the convs, ReLUs fused: one op per conv, the input BN, pool, dense.
    assert len(runner.ops) == 14
    assert runner.executor_parts() is None  # depthwise: not an L3/SEA body


@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_tiny_any_batch_size(tiny_keras, n, seed):
    rng = np.random.default_rng(seed)
    windows = sample_windows(rng, 6)[rng.permutation(6)[:n]]
    runner = load_keras_file_runner(TINY_PATH)
    if np.abs(windows).max() == 0:  # only the silent window: the embedding is the Dense bias
        windows = windows + np.float32(0.1)
    assert_matches(runner, tiny_keras, windows)
    alone = runner.predict_on_batch(windows[-1:])  # a window's result ignores the batch
    np.testing.assert_allclose(runner.predict_on_batch(windows)[-1:], alone, rtol=0, atol=1e-5)
    # (n, sr) works as (n, 1, sr) does
    np.testing.assert_array_equal(
        runner.predict_on_batch(windows[:, 0]), runner.predict_on_batch(windows)
    )


def test_runner_is_cached_and_checks_its_input(tmp_path):
    runner = load_keras_file_runner(TINY_PATH)
    assert load_keras_file_runner(str(TINY_PATH)) is runner
    assert runner.predict_on_batch(np.zeros((0, 1, SR), np.float32)).shape == (0, 64)
    with pytest.raises(ParameterError, match="windows must have shape"):
        runner.predict_on_batch(np.zeros((2, 1, SR + 1), np.float32))
    with pytest.raises(WeightsError, match="could not be found"):
        load_keras_file_runner(tmp_path / "missing.keras")


@pytest.mark.parametrize("pruned", [False, True], ids=["sea-64", "sea-64-pruned"])
def test_sea_layout_equals_keras(tmp_path, rng, pruned):
    import keras

    from edgel3.compress.pruning import prune_model
    from edgel3.networks import build_model

    model = randomise(build_model(get_spec("sea-64")), rng)
    if pruned:  # MaskedConv2D layers (kernel, bias, mask)
        model, _ = prune_model(model, "95.45")
        masks = [np.asarray(layer.mask) for layer in model.layers if hasattr(layer, "mask")]
        assert len(masks) == 8 and np.mean([m.mean() for m in masks]) < 0.5
        for layer in model.layers:
            if hasattr(layer, "mask"):  # weights where the mask is 0: Keras ignores them
                mask = np.asarray(layer.mask)
                noise = (1 - mask) * rng.normal(0, 0.1, mask.shape)
                layer.kernel.assign(np.asarray(layer.kernel) + noise.astype("float32"))
    path = saved(model, tmp_path / "sea.keras")
    assert supports_keras_file(path)
    loaded = keras.saving.load_model(path)
    runner = KerasFileRunner(path)
    assert runner.embedding_size == 64
    windows = sample_windows(rng, 5)
    assert_matches(runner, loaded, windows)
    # The same body on the sparse executor (zeros skipped in pruned layers).
    from edgel3.sparse import SparseExecutor

    parts = runner.executor_parts()
    assert [conv.pool for conv in parts[3]] == ["none", "2x2"] * 3 + ["none", "global"]
    assert_matches(SparseExecutor.from_parts(*parts), runner, windows)


def custom_functional():
    """Strided and valid convs, BN without gamma / beta, a pool, depthwise (x2), Dense."""
    import keras
    from keras import layers

    from edgel3.layers import MelSpectrogram

    inputs = keras.Input(shape=(1, SR))
    x = MelSpectrogram.from_frontend(SEA_FRONTEND)(inputs)
    x = layers.BatchNormalization(center=False)(x)
    x = layers.Conv2D(8, (5, 3), strides=(2, 2), padding="same", activation="relu")(x)
    x = layers.BatchNormalization(scale=False, epsilon=1e-2)(x)
    x = layers.Conv2D(12, 3, strides=(2, 1), padding="valid", use_bias=False)(x)
    x = layers.ReLU(max_value=6.0)(x)
    x = layers.MaxPooling2D((3, 2))(x)
    x = layers.DepthwiseConv2D((3, 2), padding="valid", depth_multiplier=2, use_bias=False)(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    outputs = layers.Dense(10)(x)
    return keras.Model(inputs, outputs, name="custom")


def custom_sequential():
    """A Sequential model: 'same' pooling, global average pooling kept 4-D, then flattened."""
    import keras
    from keras import layers

    from edgel3.layers import MelSpectrogram

    return keras.Sequential(
        [
            keras.Input(shape=(1, SR)),
            MelSpectrogram.from_frontend(SEA_FRONTEND),
            layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.Activation("relu6"),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.Conv2D(8, 1, activation="relu"),
            layers.GlobalAveragePooling2D(keepdims=True),
            layers.Flatten(),
            layers.Dense(5),
        ],
        name="custom_sequential",
    )


@pytest.mark.parametrize("build", [custom_functional, custom_sequential])
def test_custom_models_equal_keras(tmp_path, rng, build):
    import keras

    model = randomise(build(), rng)
    path = saved(model, tmp_path / "custom.keras")
    assert supports_keras_file(path)
    runner = KerasFileRunner(path)
    assert runner.embedding_size == model.output_shape[-1]
    assert runner.executor_parts() is None
    assert_matches(runner, keras.saving.load_model(path), sample_windows(rng, 5))


def test_unsupported_layer_is_named(tmp_path):
    import keras
    from keras import layers

    from edgel3.layers import MelSpectrogram

    inputs = keras.Input(shape=(1, SR))
    x = MelSpectrogram.from_frontend(SEA_FRONTEND)(inputs)
    x = layers.LayerNormalization(name="odd_norm")(x)
    outputs = layers.GlobalMaxPooling2D()(x)
    path = saved(keras.Model(inputs, outputs), tmp_path / "odd.keras")
    assert not supports_keras_file(path)
    with pytest.raises(WeightsError) as info:
        KerasFileRunner(path)
    message = str(info.value)
    assert "'odd_norm'" in message and "LayerNormalization" in message and str(path) in message
    assert "\n" not in message


def test_config_weights_mismatch_and_bad_files(tmp_path):
    with zipfile.ZipFile(TINY_PATH) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(parts["config.json"])
    stem = next(layer for layer in config["config"]["layers"] if layer["name"] == "stem_conv")
    stem["config"]["filters"] = 24  # the stored kernel has 16
    path = tmp_path / "edited.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, json.dumps(config) if name == "config.json" else data)
    assert supports_keras_file(path)  # the config alone is fine
    with pytest.raises(WeightsError, match="'stem_conv'.*shapes"):
        KerasFileRunner(path)
    del next(lay for lay in config["config"]["layers"] if lay["name"] == "melspectrogram_1")[
        "config"
    ]["n_mels"]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, json.dumps(config) if name == "config.json" else data)
    assert not supports_keras_file(path)
    with pytest.raises(WeightsError, match="not a Keras model config"):
        KerasFileRunner(path)
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    assert not supports_keras_file(tmp_path / "junk.keras")
    with pytest.raises(WeightsError, match="not a readable .keras file"):
        KerasFileRunner(tmp_path / "junk.keras")


def test_runs_without_tensorflow_or_keras():
    script = (
        "import sys, numpy as np\n"
        "from edgel3.bundled import TINY_PATH\n"
        "from edgel3.keras_file import supports_keras_file\n"
        "from edgel3.keras_runner import load_keras_file_runner\n"
        "assert supports_keras_file(TINY_PATH)\n"
        "runner = load_keras_file_runner(TINY_PATH)\n"
        "x = np.random.default_rng(0).standard_normal((10, 1, 8000)).astype('float32')\n"
        "print(runner.predict_on_batch(x).shape, 'tensorflow' in sys.modules,\n"
        "      'keras' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[0] == "(10, 64) False False"
