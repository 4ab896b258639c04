"""``.keras`` files and the bundled ``tiny`` through the NumPy runtime's entry points (issue 13).

``get_embedding``, ``process_file``, the CLI and the ``'auto'`` rule of
:class:`edgel3.reference.ModelReference`; the runners themselves are tested in
``test_keras_file.py``. Tolerance: 1e-5 of the embedding's scale (docs/runtime.rst).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import edgel3
from edgel3 import reference as reference_module
from edgel3.exceptions import ParameterError, WeightsError
from edgel3.keras_runner import KerasFileRunner
from edgel3.numpy_runtime import NumpyRunner
from edgel3.reference import resolve_model
from edgel3.specs import get_spec

from .conftest import assert_close
from .test_keras_file import randomise, saved


def embeddings(audio, sr, model, **kwargs):
    """``{runtime: embedding}`` for 'numpy' and 'keras', timestamps checked equal."""
    out, stamps = {}, {}
    for runtime in ("numpy", "keras"):
        out[runtime], stamps[runtime] = edgel3.get_embedding(
            audio, sr, model=model, runtime=runtime, verbose=0, **kwargs
        )
    np.testing.assert_array_equal(stamps["numpy"], stamps["keras"])
    return out


@pytest.fixture(scope="module")
def sea_files(tmp_path_factory):
    """Random-weight SEA-64 bodies saved as .keras by Keras: dense and pruned 95.45 %."""
    from edgel3.compress.pruning import prune_model
    from edgel3.networks import build_model

    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("keras_bodies")
    model = randomise(build_model(get_spec("sea-64")), rng)
    pruned, _ = prune_model(model, "95.45")
    return saved(model, folder / "sea.keras"), saved(pruned, folder / "pruned.keras")


def unsupported_file(folder):
    import keras
    from keras import layers

    from edgel3.layers import MelSpectrogram
    from edgel3.specs import SEA_FRONTEND

    inputs = keras.Input(shape=(1, SEA_FRONTEND.sample_rate))
    x = MelSpectrogram.from_frontend(SEA_FRONTEND)(inputs)
    x = layers.LayerNormalization(name="odd_norm")(x)
    outputs = layers.GlobalMaxPooling2D()(x)
    return saved(keras.Model(inputs, outputs), folder / "odd.keras")


def test_tiny_get_embedding_and_process_file(tmp_path, rng):
    import soundfile as sf

    audio = (rng.standard_normal(44100 * 3) * 0.1).astype("float32")
    out = embeddings(audio, 44100, "tiny")
    assert out["numpy"].shape == (26, 64)
    assert_close(out["numpy"], out["keras"])
    reference = resolve_model("tiny")
    assert isinstance(reference.with_runtime("numpy").runner(5), KerasFileRunner)
    assert (reference.sample_rate, reference.embedding_size) == (8000, 64)
    sf.write(tmp_path / "clip.wav", audio, 44100, subtype="FLOAT")  # the same samples
    edgel3.process_file(
        str(tmp_path / "clip.wav"), output_dir=str(tmp_path), model="tiny", runtime="numpy"
    )
    assert_close(np.load(tmp_path / "clip.npz")["embedding"], out["keras"])


def test_sea_keras_bodies_run_on_the_executor(sea_files, rng):
    dense, pruned = (resolve_model(str(path)) for path in sea_files)
    assert dense.runs_on_numpy and pruned.runs_on_numpy
    assert dense.on_executor and pruned.on_executor
    for reference in (dense, pruned):
        runner = reference.with_runtime("numpy").runner(3)
        assert isinstance(runner, NumpyRunner) and runner.spec is None
        sr = get_spec("sea-64").sample_rate
        assert (reference.embedding_size, reference.sample_rate) == (64, sr)
    audio = rng.standard_normal(44100 * 2) * 0.1
    for path in sea_files:
        out = embeddings(audio, 44100, str(path))
        assert_close(out["numpy"], out["keras"])


def test_auto_rule_for_keras_files(sea_files, tmp_path, monkeypatch):
    keras_limit = reference_module.AUTO_NUMPY_MAX_WINDOWS
    tiny = resolve_model("tiny")
    dense, pruned = (resolve_model(str(path)) for path in sea_files)
    odd = resolve_model(str(unsupported_file(tmp_path)))
    assert sys.modules.get("tensorflow") is not None  # imported here: Keras is warm
    assert not tiny.uses_numpy(1) and not tiny.on_executor
    for body in (dense, pruned):  # SEA / sparse L3 bodies: the executor, at any size
        assert body.uses_numpy(None) and body.uses_numpy(10 * keras_limit)
    monkeypatch.delitem(sys.modules, "tensorflow")  # as in a fresh process
    assert tiny.uses_numpy(1) and tiny.uses_numpy(keras_limit)
    assert not tiny.uses_numpy(keras_limit + 1) and not tiny.uses_numpy(None)
    assert tiny.for_job(keras_limit).runtime == "numpy"
    assert tiny.for_job(keras_limit + 1).runtime == "keras"
    assert tiny.with_runtime("keras").for_job(1).runtime == "keras"
    # A .keras file with other layers stays on Keras.
    assert not odd.runs_on_numpy and not odd.uses_numpy(1)
    assert odd.for_job(1).runtime == "auto"
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # unimportable: not loaded either
    assert tiny.uses_numpy(1)
    assert tiny.uses_numpy(keras_limit + 1) and tiny.uses_numpy(None)  # Keras could not run
    assert tiny.for_job(keras_limit + 1).runtime == "numpy"


def test_numpy_runtime_errors_name_the_problem(tmp_path, rng):
    odd = str(unsupported_file(tmp_path))
    audio = rng.standard_normal(8000) * 0.1
    with pytest.raises(WeightsError) as info:
        edgel3.get_embedding(audio, 8000, model=odd, runtime="numpy", verbose=0)
    message = str(info.value)
    assert "'odd_norm'" in message and "LayerNormalization" in message and odd in message
    assert "runtime='keras'" in message
    (tmp_path / "model.tflite").write_bytes(b"\0" * 16)
    with pytest.raises(ParameterError, match="runtime='numpy' runs .*'model.tflite'"):
        resolve_model(str(tmp_path / "model.tflite")).with_runtime("numpy")
    loaded = resolve_model("tiny").load()  # a keras.Model, as load_embedding_model gives
    assert type(loaded).__module__.startswith("keras")
    with pytest.raises(ParameterError, match="a loaded object"):
        edgel3.get_embedding(audio, 8000, model=loaded, runtime="numpy", verbose=0)


def test_cli_on_tiny_where_tensorflow_cannot_be_imported(tmp_path, rng):
    import soundfile as sf

    audio = rng.standard_normal(44100 * 3) * 0.1
    for index in range(2):
        sf.write(tmp_path / f"clip{index}.wav", audio * (index + 1), 44100, subtype="FLOAT")
    files = [str(tmp_path / f"clip{index}.wav") for index in range(2)]
    expected = [
        edgel3.get_embedding(audio * (i + 1), 44100, model="tiny", runtime="keras", verbose=0)[0]
        for i in range(2)
    ]
    for runtime, jobs in (("numpy", "1"), ("auto", "1"), ("auto", "2")):
        out = tmp_path / f"{runtime}{jobs}"
        script = (
            "import sys\n"
            "sys.modules['tensorflow'] = None; sys.modules['keras'] = None  # import fails\n"
            "from edgel3.cli import main\n"
            f"raise SystemExit(main([*{files!r}, '-o', {str(out)!r}, '--model', 'tiny', "
            f"'--runtime', {runtime!r}, '--jobs', {jobs!r}, '-q']))\n"
        )
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        for index in range(2):
            found = np.load(out / f"clip{index}.npz")["embedding"]
            assert_close(found, expected[index])
