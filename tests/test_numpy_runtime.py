"""The TensorFlow-free NumPy runtime (issue 13): same numbers as Keras, no TensorFlow.

Tolerance: 1e-5 of the embedding's scale (max |value|), the project's bound for two
float32 executions of one network that sum in different orders (docs/runtime.rst).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgel3
from edgel3 import resample_kernel
from edgel3.exceptions import ParameterError
from edgel3.legacy_h5 import save_legacy_h5
from edgel3.numpy_runtime import NumpyRunner
from edgel3.reference import resolve_model
from edgel3.specs import get_spec

from .conftest import SEA64_GZ, randomise_bn

RELATIVE_TOLERANCE = 1e-5

LAYOUTS = [
    pytest.param("sea-512", 0.0, id="sea-512"),
    pytest.param("sea-256", 0.0, id="sea-256"),
    pytest.param("sea-128", 0.0, id="sea-128"),
    pytest.param("sea-64", 0.0, id="sea-64"),
    pytest.param("sparse-ft-95.45", 0.9545, id="sparse-95.45"),
    pytest.param("sparse-kd-53.5", 0.535, id="sparse-53.5"),
]


def random_weight_file(name: str, sparsity: float, folder, rng):
    """A random-weight file of an official layout (pruned at random to ``sparsity``)."""
    import keras

    from edgel3.networks import build_model

    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    model = build_model(get_spec(name))
    randomise_bn(model, rng)
    if sparsity:
        for layer in model.layers:
            if isinstance(layer, keras.layers.Conv2D):
                kernel, bias = layer.get_weights()
                keep = rng.random(kernel.shape) >= sparsity
                layer.set_weights([kernel * keep, bias + rng.normal(0, 0.01, bias.shape)])
    path = folder / f"random_{name}.h5"  # not an official name: not hash-checked
    save_legacy_h5(model, path, compress=False)
    return model, path


@pytest.mark.parametrize(("name", "sparsity"), LAYOUTS)
def test_runtime_equals_keras_on_every_official_layout(name, sparsity, tmp_path, rng):
    model, path = random_weight_file(name, sparsity, tmp_path, rng)
    runner = NumpyRunner(path)
    assert (runner.sample_rate, runner.embedding_size) == (
        get_spec(name).sample_rate,
        get_spec(name).emb_dim,
    )
    windows = rng.standard_normal((3, 1, runner.sample_rate)).astype(np.float32) * 0.1
    windows[2] *= 1e-3  # a quiet window: the front end's per-window normalisation
    expected = np.asarray(model.predict_on_batch(windows))
    for strategy in ("auto", "dense"):
        got = NumpyRunner(path, strategy=strategy).predict_on_batch(windows)
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(got, expected, rtol=0, atol=RELATIVE_TOLERANCE * scale)


def test_numpy_runtime_is_opt_in_until_measured_faster(tmp_path, rng):
    """'auto' keeps Keras (benchmarks/runtimes.py: the runtime is slower per window today)."""
    _, sparse_path = random_weight_file("sparse-ft-95.45", 0.9545, tmp_path, rng)
    for name in (str(sparse_path), "sparse-ft-95.45", "sea-64", "tiny"):
        assert not resolve_model(name).uses_numpy()
        assert not resolve_model(name).with_runtime("keras").uses_numpy()
    assert resolve_model("sea-64").with_runtime("numpy").uses_numpy()
    assert resolve_model(str(sparse_path)).with_runtime("numpy").uses_numpy()
    assert type(resolve_model(str(sparse_path)).with_runtime("numpy").runner()).__name__ == (
        "NumpyRunner"
    )


def test_runtime_argument_is_checked(rng):
    audio = rng.standard_normal(16000) * 0.1
    with pytest.raises(ParameterError, match="runtime must be one of"):
        edgel3.get_embedding(audio, 16000, model="tiny", runtime="torch", verbose=0)
    with pytest.raises(ParameterError, match="legacy weight files"):
        edgel3.get_embedding(audio, 16000, model="tiny", runtime="numpy", verbose=0)


@pytest.mark.shared
def test_numpy_runtime_never_imports_tensorflow(tmp_path):
    script = (
        "import sys, numpy as np, edgel3\n"
        "x = np.random.default_rng(0).standard_normal(44100 * 3) * 0.1\n"
        f"e, t = edgel3.get_embedding(x, 44100, model={str(SEA64_GZ)!r}, runtime='numpy',"
        " verbose=0)\n"
        "print(e.shape, *(m in sys.modules for m in ('tensorflow', 'keras', 'scipy.signal')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # scipy.signal is 0.5-0.7 s of a cold start: the resampler's window comes without it.
    assert proc.stdout.strip() == "(26, 64) False False False"


@settings(max_examples=40, deadline=None)
@given(length=st.integers(2, 40_000), beta=st.floats(0.0, 40.0))
def test_kaiser_window_is_scipy_signals(length, beta):
    import scipy.signal

    expected = scipy.signal.get_window(("kaiser", beta), length, fftbins=False)
    np.testing.assert_array_equal(resample_kernel.kaiser_window(length, beta), expected)


@pytest.mark.shared
def test_cli_runtime_flag_gives_keras_numbers(tmp_path, rng, capsys):
    import soundfile as sf

    from edgel3.cli import main

    clip = tmp_path / "a.wav"
    sf.write(clip, rng.standard_normal(3 * 22050) * 0.1, 22050)
    outputs = {}
    for runtime in ("numpy", "keras"):
        out = tmp_path / runtime
        argv = [str(clip), "-o", str(out), "--model", str(SEA64_GZ), "--runtime", runtime, "-q"]
        assert main(argv) == 0
        outputs[runtime] = np.load(out / "a.npz")["embedding"]
    scale = max(1.0, float(np.abs(outputs["keras"]).max()))
    np.testing.assert_allclose(
        outputs["numpy"], outputs["keras"], rtol=0, atol=RELATIVE_TOLERANCE * scale
    )
