"""Teachers and training windows on the one resolver, pipeline and runner (no ../shared needed)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import soundfile as sf

from edgel3 import frontend, sparse
from edgel3.compress.data import file_windows, load_windows, synth_windows
from edgel3.compress.pruning import prune_model, strip_masks
from edgel3.compress.teachers import Teacher, as_teacher, teacher_targets
from edgel3.exceptions import AudioError, ParameterError, WeightsError
from edgel3.export.calibration import calibration_data
from edgel3.networks import build_model
from edgel3.reference import resolve_model
from edgel3.runners import KerasRunner
from edgel3.specs import get_spec

from .conftest import randomise_bn


def _close(a, b):
    """max|a - b| <= 1e-5 of b's scale.

    The sparse executor sums the same float32 products as TensorFlow's conv in
    another order (and thread counts change TF's order too), so equality holds to
    float32 rounding of the activations, not bit for bit.
    """
    return float(np.abs(a - b).max()) <= 1e-5 * max(1.0, float(np.abs(b).max()))


@pytest.fixture(scope="module")
def pruned_sea64():
    """The SEA-64 architecture with random weights, pruned to the 95.45 % plan (masked)."""
    keras.utils.set_random_seed(7)
    model = randomise_bn(build_model(get_spec("sea-64")), np.random.default_rng(7))
    masked, _ = prune_model(model, "95.45")
    return masked


@pytest.mark.parametrize("masks", ["masked", "stripped"])
def test_pruned_teacher_runs_sparse_and_matches_keras(pruned_sea64, masks, monkeypatch):
    monkeypatch.delenv(sparse.ENV_VAR, raising=False)  # the automatic choice
    model = pruned_sea64 if masks == "masked" else strip_masks(pruned_sea64)
    data = synth_windows(40, 8000, seed=3)
    teacher = as_teacher(model, batch_size=16)
    assert teacher.sr == 8000 and teacher.name == resolve_model(model).model_id
    # 95.45 % keeps ~11 % of the multiply-adds: the one runner choice picks sparse.
    runner = teacher.runner(len(data))
    assert isinstance(runner, sparse.SparseExecutor)
    assert isinstance(teacher.runner(sparse.MIN_WINDOWS - 1), KerasRunner)  # too few windows
    assert not runner.layer_strategies_
    targets = teacher_targets(teacher, data)
    assert runner.layer_strategies_  # filled by the executor's first call: it ran
    dense = np.asarray(model.predict_on_batch(data.windows[:, None, :]))
    assert targets.shape == dense.shape == (40, 64) and targets.dtype == np.float32
    assert _close(targets, dense)
    # On-the-fly targets (augmented batches) go the same way.
    assert _close(teacher(data.windows[:20]), dense[:20])


def test_teacher_identity_and_errors(tmp_path):
    tiny = as_teacher("tiny")
    assert (tiny.sr, tiny.reference.kind) == (8000, "bundled")
    assert tiny.name == resolve_model("tiny").model_id and tiny.name.startswith("tiny@")
    assert isinstance(tiny.runner(64), KerasRunner)  # a dense student: never sparse
    assert as_teacher(tiny) is tiny
    fn = as_teacher(lambda w: np.ones((len(w), 3)), sr=16000.0)
    assert fn.sr == 16000 and fn.reference is None
    with pytest.raises(ParameterError, match="no runner"):
        fn.runner()
    with pytest.raises(ParameterError, match="sample rate"):
        as_teacher(lambda w: w)
    with pytest.raises(ParameterError, match="sea-1"):
        as_teacher("sea-1")
    with pytest.raises(WeightsError, match="could not be found"):
        as_teacher(tmp_path / "missing.keras")
    with pytest.raises(ParameterError, match="batch_size"):
        as_teacher("tiny", batch_size=0)
    with pytest.raises(ParameterError, match="list"):
        as_teacher([1, 2])
    # The old positional form still builds a callable teacher.
    assert Teacher(lambda w: w[:, :2], 100, "x")(np.ones((3, 100))).shape == (3, 2)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """Three files: stereo 22,050 Hz (2.3 s), mono 8 kHz (3.1 s), and a short 44.1 kHz one."""
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(4)
    sf.write(folder / "a.wav", rng.normal(0, 0.1, (50715, 2)), 22050)
    sf.write(folder / "b.flac", rng.normal(0, 0.1, 24800), 8000)
    sf.write(folder / "c.wav", rng.normal(0, 0.1, 30000), 44100)
    return folder


def _frontend_windows(path, sr, hop_size, center):
    """The whole-signal functions of edgel3.frontend (docs/frontend.rst)."""
    audio, rate = sf.read(path, dtype="float64")
    mono = frontend.downmix(audio)
    if rate != sr:
        mono = frontend.resample(mono, rate, sr)
    return frontend.frame_audio(mono, sr, hop_size=hop_size, center=center).astype(np.float32)


@pytest.mark.parametrize(("hop_size", "center"), [(0.5, True), (0.37, False)])
def test_load_windows_are_the_pipeline_windows(audio_dir, hop_size, center):
    data = load_windows([audio_dir], 8000, hop_size=hop_size, center=center)
    files = sorted(audio_dir.iterdir())
    assert data.files == [str(f) for f in files]
    expected = [_frontend_windows(f, 8000, hop_size, center) for f in files]
    # The pipeline is tested bit for bit against these functions (tests/test_pipeline.py).
    np.testing.assert_array_equal(data.windows, np.concatenate(expected))
    counts = np.bincount(data.file_index)
    assert counts.tolist() == [len(e) for e in expected]
    capped = load_windows(
        [audio_dir], 8000, hop_size=hop_size, center=center, max_windows_per_file=2
    )
    assert np.bincount(capped.file_index).tolist() == [min(2, len(e)) for e in expected]
    rows = np.linspace(0, len(expected[0]) - 1, 2).round().astype(int)
    np.testing.assert_array_equal(capped.windows[:2], expected[0][rows])


def test_fast_resample_and_checks(audio_dir, tmp_path):
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(2 * 44100) / 44100)
    sf.write(tmp_path / "tone.wav", tone, 44100, subtype="FLOAT")
    exact, _ = file_windows(tmp_path / "tone.wav", 8000, hop_size=0.5, center=True)
    fast, short = file_windows(
        tmp_path / "tone.wav", 8000, hop_size=0.5, center=True, fast_resample=True
    )
    assert fast.shape == exact.shape and not short
    assert not np.array_equal(fast, exact)  # another resampler...
    # ...of the same passband signal (they differ near Nyquist and at the edges).
    middle = slice(1000, 7000)
    assert np.abs(fast[1:-1, middle] - exact[1:-1, middle]).max() < 0.02 * 0.5  # seen: 0.0033
    assert file_windows(audio_dir / "c.wav", 8000, hop_size=0.5, center=True)[1]  # 0.68 s
    with pytest.raises(ParameterError, match="hop"):
        load_windows([audio_dir], 8000, hop_size=0)
    with pytest.raises(ParameterError, match="sample rate"):
        load_windows([audio_dir], 8000.5)
    with pytest.raises(ParameterError, match="max_windows_per_file"):
        load_windows([audio_dir], 8000, max_windows_per_file=0)
    sf.write(tmp_path / "nan.wav", np.full(800, np.nan), 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_windows(tmp_path / "nan.wav", 8000)


def test_calibration_data_uses_the_same_windows(audio_dir):
    windows = calibration_data(audio_dir, 8000, max_windows=100, hop_size=0.5)
    every = load_windows([audio_dir], 8000, hop_size=0.5, center=False)
    # 100 >= all windows: every uncentred window of every file, in order.
    np.testing.assert_array_equal(windows, every.windows)
    assert calibration_data(audio_dir, 8000, max_windows=4).shape == (4, 8000)
    fast = calibration_data(audio_dir, 8000, max_windows=100, fast_resample=True)
    assert fast.shape == windows.shape
    with pytest.raises(ParameterError, match="max_windows"):
        calibration_data(audio_dir, 8000, max_windows=0)
