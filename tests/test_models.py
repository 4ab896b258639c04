"""Architectures, the Keras mel layer, and loading legacy Keras-2/kapre weight files."""

from __future__ import annotations

import numpy as np
import pytest

from edgel3 import frontend
from edgel3.exceptions import WeightsError
from edgel3.specs import REGISTRY, SEA_FRONTEND, SPARSE_FRONTEND, get_spec

from .conftest import GOLDEN_DIR, SEA64_GZ

keras = __import__("keras")

from edgel3.layers import MelSpectrogram  # noqa: E402
from edgel3.legacy_h5 import read_legacy_h5  # noqa: E402
from edgel3.models import build_audio_network, build_model, load_legacy_weights  # noqa: E402


def _conv_params(model) -> int:
    return sum(
        int(np.prod(w.shape))
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
        for w in layer.weights
    )


@pytest.mark.parametrize(
    ("name", "conv_params"),
    [
        ("edgel3_ft_audio_sparsity_95.45", 4_684_224),
        ("sea-512", 4_684_224),
        ("sea-256", 1_171_680),
        ("sea-128", 581_600),
        ("sea-64", 397_152),
    ],
)
def test_conv_parameter_counts(name, conv_params):
    """docs/models.rst §5."""
    assert _conv_params(build_model(get_spec(name))) == conv_params


@pytest.mark.shared
def test_layer_names_and_shapes_follow_the_legacy_graph():
    model = build_model(get_spec("sea-64"))
    legacy = read_legacy_h5(SEA64_GZ)
    assert [layer.name for layer in model.layers] == legacy.layer_names
    shapes = {layer.name: layer.output.shape for layer in model.layers}
    assert shapes["melspectrogram_1"] == (None, 64, 50, 1)
    assert shapes["max_pooling2d_3"] == (None, 8, 6, 128)
    assert shapes["flatten_1"] == (None, 64)


def test_sparse_network_shapes_and_weighted_layers():
    model = build_model(get_spec("edgel3_kd_audio_sparsity_87.0"))
    shapes = {layer.name: layer.output.shape for layer in model.layers}
    assert shapes["melspectrogram_1"] == (None, 256, 199, 1)
    assert shapes["activation_1"] == (None, 256, 199, 64)
    assert shapes["audio_embedding_layer"] == (None, 32, 24, 512)
    assert shapes["flatten_1"] == (None, 512)
    # docs/models.rst §3: 0.2.1 loaded sparse files by topology into exactly 17 weighted layers.
    assert len([layer for layer in model.layers if layer.weights]) == 17
    assert "batch_normalization_9" not in shapes


@pytest.mark.parametrize("config", [SEA_FRONTEND, SPARSE_FRONTEND], ids=["8k", "48k"])
def test_keras_mel_layer_matches_numpy(config, rng):
    audio = rng.normal(scale=0.1, size=(3, config.sample_rate)).astype(np.float32)
    audio[2] = 0.0  # an all-zero window maps to all zeros (docs/frontend.rst §4.5)
    layer = MelSpectrogram.from_frontend(config)
    ours = keras.ops.convert_to_numpy(layer(audio[:, None, :]))
    ref = frontend.melspectrogram(audio, config)
    assert ours.shape == (3, config.n_mels, config.n_frames, 1)
    # Both float32 FFT paths; noise fills every cell, so they agree to float32 rounding of dB.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-3)
    assert np.all(ours[2] == 0)
    assert np.allclose(ours[:2].max(axis=(1, 2, 3)), 0)


@pytest.mark.shared
def test_keras_mel_layer_matches_golden_intermediate():
    ref = np.load(GOLDEN_DIR / "intermediate_melspec__chirp_8k__center0_hop0p10.npz")
    import soundfile as sf

    audio, _ = sf.read(GOLDEN_DIR / "audio" / "chirp_8k.wav")
    layer = MelSpectrogram.from_frontend(SEA_FRONTEND)
    ours = keras.ops.convert_to_numpy(layer(audio[None, None, :].astype(np.float32)))
    golden = ref["melspec"]
    loud = golden > -50  # docs/frontend.rst §7: compare only cells above -50 dB cell-wise
    # kapre's conv STFT vs our FFT: <= 3e-3 dB in [-50, -40), far less above.
    np.testing.assert_allclose(ours[loud], golden[loud], rtol=0, atol=5e-3)


@pytest.mark.shared
def test_legacy_file_loads_into_keras3_model():
    model = build_model(get_spec("sea-64"))
    legacy = read_legacy_h5(SEA64_GZ)
    load_legacy_weights(model, legacy)
    stored = dict((name, arrays) for name, _, arrays in legacy.weighted_layers)
    for layer in model.layers:
        if layer.weights and not isinstance(layer, MelSpectrogram):
            for ours, theirs in zip(layer.get_weights(), stored[layer.name]):
                np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(
        model.get_layer("melspectrogram_1").get_weights()[0], stored["melspectrogram_1"][2]
    )


def _with_array(legacy, layer_name, index, new):
    layers = []
    for name, names, arrays in legacy.weighted_layers:
        arrays = list(arrays)
        if name == layer_name:
            arrays[index] = new(arrays[index])
        layers.append((name, names, arrays))
    return type(legacy)(**{**legacy.__dict__, "weighted_layers": layers})


@pytest.mark.parametrize(
    ("layer_name", "index", "corrupt", "message"),
    [
        ("melspectrogram_1", 0, lambda a: a * 1.01, "real DFT kernels differ"),
        ("melspectrogram_1", 2, lambda a: np.roll(a, 1, axis=0), "mel filterbank differ"),
        ("conv2d_3", 0, lambda a: a[..., :-1], "shapes"),
    ],
)
@pytest.mark.shared
def test_mismatching_arrays_are_errors(layer_name, index, corrupt, message):
    legacy = _with_array(read_legacy_h5(SEA64_GZ), layer_name, index, corrupt)
    with pytest.raises(WeightsError, match=message):
        load_legacy_weights(build_model(get_spec("sea-64")), legacy)


@pytest.mark.shared
def test_wrong_architecture_is_an_error():
    legacy = read_legacy_h5(SEA64_GZ)
    with pytest.raises(WeightsError, match="the model"):
        load_legacy_weights(build_model(get_spec("edgel3_ft_audio_sparsity_95.45")), legacy)


def test_depth_reduced_network_builds():
    model = build_audio_network(SEA_FRONTEND, [8, 8, 16, 16, 32], head="none")
    assert model.output_shape == (None, 32)
    assert model.get_layer("audio_embedding_layer").filters == 32


@pytest.mark.shared
def test_keras_save_load_round_trip(tmp_path, rng):
    model = build_model(get_spec("sea-64"))
    load_legacy_weights(model, read_legacy_h5(SEA64_GZ))
    path = tmp_path / "sea64.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    batch = rng.normal(size=(2, 1, 8000)).astype(np.float32)
    np.testing.assert_array_equal(model.predict_on_batch(batch), restored.predict_on_batch(batch))


def test_registry_specs_all_build_shapes():
    """Every registry entry maps to the right family constants."""
    for spec in REGISTRY.values():
        expected = SEA_FRONTEND if spec.model_type == "sea" else SPARSE_FRONTEND
        assert spec.frontend == expected
