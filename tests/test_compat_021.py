"""edgel3 0.2.1's Python surface, as its README, tutorial, signatures and tests document it.

A 0.2.1 user switches without changing a line (issue 12): the module paths
(``edgel3.edgel3_exceptions``, ``edgel3.edgel3_warnings``, ``edgel3.version``,
``edgel3.models``), the positional orders of ``get_embedding``, ``process_file``,
``get_output_path``, ``models.load_embedding_model`` and
``models.load_embedding_model_path``, the warning and error classes, models the
caller owns, and ``core._center_audio``/``core._pad_audio`` (imported by 0.2.1's own
tests). The deliberate differences are pinned too (README, "Migrating from 0.2.1").
The command line's 0.2.1 surface is tested in ``tests/test_cli.py``.

Tests that need no weight file use the bundled ``tiny`` model where 0.2.1 had an
official one: the argument order is what is checked, not the model.
"""

from __future__ import annotations

import ast
import inspect
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import edgel3

from .conftest import PROJECT_ROOT, SEA64_GZ, ModelResolved, assert_close


@pytest.fixture
def noise(rng):
    return rng.normal(scale=0.1, size=2 * 8000)


@pytest.fixture
def wav(tmp_path, noise):
    import soundfile as sf

    path = tmp_path / "in" / "chirp_mono.wav"
    path.parent.mkdir()
    sf.write(path, noise, 8000)
    return path


@pytest.fixture(scope="module")
def sea64():
    return edgel3.core.load_model_file(SEA64_GZ)


def _positional(func):
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = inspect.signature(func).parameters.values()
    return [(p.name, p.default) for p in params if p.kind in kinds]


# --------------------------------------------------------------------------- module paths


def test_0_2_1_import_lines_work():
    # 0.2.1's tests/test_core.py, line for line.
    from edgel3.core import _center_audio, _pad_audio, get_embedding, get_output_path, process_file
    from edgel3.edgel3_exceptions import EdgeL3Error
    from edgel3.edgel3_warnings import EdgeL3Warning
    from edgel3.models import load_embedding_model, load_embedding_model_path

    assert EdgeL3Error is edgel3.exceptions.EdgeL3Error
    assert EdgeL3Warning is edgel3.exceptions.EdgeL3Warning
    assert (get_embedding, get_output_path, process_file) == (
        edgel3.get_embedding,
        edgel3.get_output_path,
        edgel3.process_file,
    )
    assert load_embedding_model is edgel3.load_embedding_model
    assert callable(load_embedding_model_path)
    assert callable(_center_audio) and callable(_pad_audio)


def test_import_edgel3_then_attribute_paths_as_in_the_tutorial():
    import edgel3 as fresh

    assert fresh.models.load_embedding_model is edgel3.loading.load_embedding_model
    assert fresh.edgel3_exceptions.EdgeL3Error is fresh.EdgeL3Error
    assert fresh.edgel3_warnings.EdgeL3Warning is fresh.EdgeL3Warning


def test_version_names():
    from edgel3.version import __version__, short_version, version

    assert version == __version__ == edgel3.__version__
    # 0.2.1: short_version = '0.2', version = '0.2.1' (major.minor of the version).
    assert short_version == ".".join(version.split(".")[:2])
    assert version.startswith(short_version + ".")


def test_error_subclasses_are_still_edgel3_errors():
    from edgel3.edgel3_exceptions import EdgeL3Error

    for name in ("ParameterError", "AudioError", "WeightsError", "OutputError"):
        assert issubclass(getattr(edgel3.exceptions, name), EdgeL3Error)


# --------------------------------------------------------------------------- warnings


def test_edgel3_warning_matches_every_0_2_1_filter():
    """0.2.1: ``class EdgeL3Warning(Warning)``; now a UserWarning, itself a Warning."""
    from edgel3.edgel3_warnings import EdgeL3Warning

    assert issubclass(EdgeL3Warning, Warning)
    silence = np.zeros(8000)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=Warning)
        with pytest.raises(Warning, match="Provided audio is all zeros") as caught:
            edgel3.get_embedding(silence, 8000, model="tiny", verbose=0)
    assert caught.type is EdgeL3Warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            edgel3.get_embedding(silence, 8000, model="tiny", verbose=0)
        except Warning as warning:  # 0.2.1 users' ``except Warning``
            assert isinstance(warning, EdgeL3Warning)
        else:
            pytest.fail("no warning raised")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", EdgeL3Warning)  # silencing edgel3 only
        edgel3.get_embedding(silence, 8000, model="tiny", verbose=0)
    with pytest.warns(Warning, match="shorter than window size"):
        edgel3.get_embedding(np.ones(100), 8000, model="tiny", verbose=0)


# --------------------------------------------------------------------------- signatures


def test_get_embedding_positional_order_and_defaults():
    assert _positional(edgel3.get_embedding) == [
        ("audio", inspect.Parameter.empty),
        ("sr", inspect.Parameter.empty),
        ("model", None),
        ("model_type", "sparse"),
        ("emb_dim", 128),
        ("retrain_type", "ft"),
        ("sparsity", 95.45),
        ("center", True),
        ("hop_size", 0.1),
        ("verbose", 1),
    ]


def test_process_file_positional_order_and_defaults():
    """0.2.1 had no retrain_type in process_file: it is keyword-only, after 0.2.1's order."""
    assert _positional(edgel3.process_file) == [
        ("filepath", inspect.Parameter.empty),
        ("output_dir", None),
        ("suffix", None),
        ("model", None),
        ("model_type", "sparse"),
        ("emb_dim", 128),
        ("sparsity", 95.45),
        ("center", True),
        ("hop_size", 0.1),
        ("verbose", True),
    ]
    params = inspect.signature(edgel3.process_file).parameters
    assert params["retrain_type"].kind is inspect.Parameter.KEYWORD_ONLY


def test_get_output_path_and_model_loaders_positional_order():
    assert _positional(edgel3.get_output_path) == [
        ("filepath", inspect.Parameter.empty),
        ("suffix", inspect.Parameter.empty),
        ("output_dir", None),
    ]
    for func in (edgel3.models.load_embedding_model, edgel3.models.load_embedding_model_path):
        names = [name for name, _ in _positional(func)]
        assert names == ["model_type", "emb_dim", "retrain_type", "sparsity"], func.__name__


def test_new_options_are_keyword_only():
    legacy = {
        edgel3.get_embedding: 10,
        edgel3.process_file: 10,
        edgel3.get_output_path: 3,
        edgel3.models.load_embedding_model: 4,
    }
    for func, count in legacy.items():
        params = list(inspect.signature(func).parameters.values())
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[count:]), func


# --------------------------------------------------------------------------- positional calls


def test_process_file_0_2_1_positional_call_selects_the_model_it_names(wav, resolved_models):
    """Issue 12: ``process_file(f, out, sfx, None, 'sparse', 128, 95.45)`` raised."""
    seen = resolved_models
    for sparsity in (95.45, 87.0):
        with pytest.raises(ModelResolved):
            edgel3.process_file(wav, wav.parent, "sfx", None, "sparse", 128, sparsity)
    assert seen == ["edgel3_ft_audio_sparsity_95.45", "edgel3_ft_audio_sparsity_87.0"]


def test_process_file_positional_center_hop_and_verbose(wav, tmp_path):
    out = tmp_path / "out"
    edgel3.process_file(wav, out, "sfx", "tiny", "sparse", 128, 95.45, False, 0.5, False)
    data = np.load(out / "chirp_mono_sfx.npz")
    # 2 s, not centred, hop 0.5 s: 1 + (2 - 1) / 0.5 windows starting at 0, 0.5, 1.
    np.testing.assert_array_equal(data["timestamps"], [0.0, 0.5, 1.0])
    assert data["embedding"].shape == (3, 64)


@pytest.mark.shared
def test_process_file_0_2_1_positional_call_with_a_sea_model(wav, tmp_path, sea64_weights_dir):
    import soundfile as sf

    out = edgel3.process_file(wav, tmp_path, "sfx", None, "sea", 64, 95.45)
    assert Path(out) == tmp_path / "chirp_mono_sfx.npz"
    data = np.load(out)
    assert data["embedding"].shape == (16, 64)  # 2 s, centred, hop 0.1 s: 1 + (2.5 - 1) / 0.1
    audio, sr = sf.read(wav)
    ref, ts = edgel3.get_embedding(audio, sr, None, "sea", 64, "ft", 95.45, True, 0.1, 0)
    np.testing.assert_array_equal(data["embedding"], ref)
    np.testing.assert_array_equal(data["timestamps"], ts)


def test_get_embedding_positional_call(noise):
    emb, ts = edgel3.get_embedding(noise, 8000, "tiny", "sparse", 128, "kd", 53.5, False, 0.5, 0)
    np.testing.assert_array_equal(ts, [0.0, 0.5, 1.0])
    assert emb.shape == (3, 64)


def test_get_output_path_as_0_2_1_tests_expect():
    test_filepath = "/path/to/the/test/file/audio.wav"
    assert (
        edgel3.get_output_path(test_filepath, "embedding.npz", "/tmp/test/output/dir")
        == "/tmp/test/output/dir/audio_embedding.npz"
    )
    assert (
        edgel3.get_output_path(test_filepath, "embedding.npz")
        == "/path/to/the/test/file/audio_embedding.npz"
    )
    assert edgel3.get_output_path(test_filepath, ".npz") == "/path/to/the/test/file/audio.npz"


@pytest.mark.shared
def test_models_load_embedding_model_positional_call_and_readme_keywords(sea64_weights_dir, noise):
    by_position = edgel3.models.load_embedding_model("sea", 64, "ft", 95.45)
    by_keyword = edgel3.models.load_embedding_model(model_type="sea", emb_dim=64)  # README
    assert by_position.output_shape == by_keyword.output_shape == (None, 64)
    # The tutorial: load once, pass it in; the same numbers as letting edgel3 load it.
    ref, _ = edgel3.get_embedding(noise, 8000, model_type="sea", emb_dim=64, verbose=0)
    emb, _ = edgel3.get_embedding(noise, 8000, model=by_keyword, verbose=0)
    assert_close(emb, ref)  # by name the NumPy runtime runs, the loaded model Keras


# --------------------------------------------------------------------------- weight file paths


def test_load_embedding_model_path_names_0_2_1_files_without_downloading(monkeypatch, tmp_path):
    from edgel3.models import load_embedding_model_path
    from edgel3.weights import cache_dir

    monkeypatch.setenv("EDGEL3_WEIGHTS_URL", "http://127.0.0.1:9/{filename}")
    path = load_embedding_model_path("sparse", 128, "kd", 87.0)
    assert isinstance(path, str)
    assert Path(path) == cache_dir() / "edgel3_kd_audio_sparsity_87.0.h5.gz"
    assert not Path(path).exists()  # where a download would put it; nothing downloaded
    # 0.2.1's file names (``edgel3_sea_ust_audio_emb_{emb}.h5``, ``edgel3_{rt}_..._{sp}.h5``).
    sea = load_embedding_model_path("sea", 256, "ft", 95.45)
    assert Path(sea).name == "edgel3_sea_ust_audio_emb_256.h5.gz"
    assert Path(load_embedding_model_path("sparse", 128, "ft", 87)).name.startswith(
        "edgel3_ft_audio_sparsity_87.0.h5"
    )


def test_load_embedding_model_path_finds_an_unpacked_0_2_1_file(monkeypatch, tmp_path):
    from edgel3.models import load_embedding_model_path

    legacy = tmp_path / "edgel3_sea_ust_audio_emb_512.h5"  # as 0.2.1's setup.py left it
    legacy.write_bytes(b"not read")
    monkeypatch.setenv("EDGEL3_WEIGHTS_DIR", str(tmp_path))
    assert load_embedding_model_path("sea", 512, "ft", 95.45) == str(legacy)


@pytest.mark.shared
def test_load_embedding_model_path_finds_the_shared_file(sea64_weights_dir):
    from edgel3.models import load_embedding_model_path

    assert Path(load_embedding_model_path("sea", 64, "ft", 95.45)) == SEA64_GZ


def test_load_embedding_model_path_validates_like_0_2_1():
    from edgel3.edgel3_exceptions import EdgeL3Error
    from edgel3.models import load_embedding_model_path

    with pytest.raises(EdgeL3Error, match="Invalid sparsity value 40"):
        load_embedding_model_path("sparse", 128, "ft", 40)


# --------------------------------------------------------------------------- models the caller owns


@pytest.mark.shared
def test_a_loaded_model_is_the_callers_own(sea64_weights_dir, noise):
    """0.2.1 built a new model on every load; changing it changed nothing else."""
    ref, _ = edgel3.get_embedding(noise, 8000, model_type="sea", emb_dim=64, verbose=0)
    first = edgel3.models.load_embedding_model("sea", 64, "ft", 95.45)
    for weight in first.weights:
        weight.assign(np.zeros(weight.shape, dtype=weight.dtype))
    second = edgel3.models.load_embedding_model("sea", 64, "ft", 95.45)
    assert second is not first
    assert all(np.any(np.asarray(w)) for w in second.trainable_weights[:2])
    again, _ = edgel3.get_embedding(noise, 8000, model_type="sea", emb_dim=64, verbose=0)
    np.testing.assert_array_equal(again, ref)
    emb, _ = edgel3.get_embedding(noise, 8000, model=second, verbose=0)
    assert_close(emb, ref)


# --------------------------------------------------------------------------- 0.2.1's test_core


def test_invalid_arguments_raise_edgel3_error_as_in_0_2_1(noise):
    from edgel3.edgel3_exceptions import EdgeL3Error

    invalid = [
        dict(model="invalid"),
        dict(retrain_type="invalid"),
        dict(center="invalid"),
        dict(sparsity=40),
        dict(sparsity=-95.45),
        dict(sparsity="invalid"),
        dict(hop_size=-1),
        dict(hop_size=0),
        dict(verbose=-1),
        dict(retrain_type=1),
    ]
    for kwargs in invalid:
        options = dict(retrain_type="ft", sparsity=95.45, center=False, hop_size=0.1, verbose=1)
        options.update(kwargs)
        with pytest.raises(EdgeL3Error):
            edgel3.get_embedding(noise, 8000, **options)
    with pytest.raises(EdgeL3Error):
        edgel3.get_embedding(np.ones((10, 10, 10)), 8000, model="tiny", verbose=0)
    with pytest.raises(EdgeL3Error, match="Got empty audio"):
        edgel3.get_embedding(np.zeros(0), 8000, model="tiny", verbose=0)


def test_short_audio_warns_and_gives_one_window_as_in_0_2_1():
    from edgel3.edgel3_warnings import EdgeL3Warning

    with pytest.warns(EdgeL3Warning, match="shorter than window size"):
        emb, ts = edgel3.get_embedding(
            np.full(3000, 0.1), 8000, model="tiny", center=False, verbose=0
        )
    assert emb.shape == (1, 64) and list(ts) == [0]


@pytest.mark.parametrize(("center", "hop_size"), [(True, 0.1), (False, 0.1), (False, 0.2)])
def test_window_counts_as_0_2_1_tests_compute_them(noise, center, hop_size):
    sr = 8000  # the model's rate: 0.2.1's formula counts windows at the rate it framed at
    emb, _ = edgel3.get_embedding(
        noise, sr, model="tiny", center=center, hop_size=hop_size, verbose=0
    )
    front = sr // 2 if center else 0
    assert emb.shape[0] == 1 + int((noise.shape[0] + front - sr) / float(int(hop_size * sr)))


def test_process_file_as_0_2_1_tests_use_it(wav, tmp_path):
    from edgel3.edgel3_exceptions import EdgeL3Error

    out = tmp_path / "out"
    out.mkdir()
    edgel3.process_file(wav, output_dir=out, model="tiny")
    edgel3.process_file(wav, output_dir=out, suffix="suffix", model="tiny")
    edgel3.process_file(wav, model="tiny")
    for path in (out / "chirp_mono.npz", out / "chirp_mono_suffix.npz", wav.with_suffix(".npz")):
        data = np.load(path)
        assert data["embedding"].ndim == 2 and data["timestamps"].ndim == 1
    invalid = wav.parent / "invalid.wav"
    invalid.write_text("This is not an audio file.")
    with pytest.raises(EdgeL3Error):
        edgel3.process_file(invalid, model="tiny")
    with pytest.raises(EdgeL3Error):
        edgel3.process_file("/fake/directory/asdf.wav", model="tiny")


def test_center_audio_as_0_2_1_tests_expect():
    from edgel3.core import _center_audio

    audio = np.ones((100,))
    centered = _center_audio(audio, 50)  # even window
    assert centered.size == 125
    assert np.all(centered[:25] == 0)
    assert np.array_equal(audio, centered[25:])
    centered = _center_audio(audio, 49)  # odd window
    assert centered.size == 124
    assert np.all(centered[:24] == 0)
    assert np.array_equal(audio, centered[24:])


def test_pad_audio_as_0_2_1_tests_expect():
    from edgel3.core import _pad_audio

    frame_len, hop_len = 50, 25
    short = np.ones((10,))
    padded = _pad_audio(short, frame_len, hop_len)  # shorter than one window
    assert padded.size == 50
    assert np.array_equal(padded[:10], short) and np.all(padded[10:] == 0)
    partial = np.ones((90,))
    padded = _pad_audio(partial, frame_len, hop_len)  # to a whole number of hops
    assert padded.size == 100
    assert np.array_equal(padded[:90], partial) and np.all(padded[90:] == 0)
    whole = np.ones((100,))
    padded = _pad_audio(whole, frame_len, hop_len)  # already whole
    assert padded.size == 100 and np.array_equal(padded, whole)


def test_compat_helpers_are_not_used_inside_edgel3():
    for path in (PROJECT_ROOT / "edgel3").rglob("*.py"):
        if path.name == "core.py" and path.parent.name == "edgel3":
            continue
        text = path.read_text()
        assert "_center_audio" not in text and "_pad_audio" not in text, path


# --------------------------------------------------------------------------- deliberate differences


def test_process_file_honours_retrain_type(wav, resolved_models):
    """0.2.1's process_file always loaded the 'ft' model; retrain_type is now honoured."""
    seen = resolved_models
    with pytest.raises(ModelResolved):
        edgel3.process_file(wav, None, None, None, "sparse", 128, 87.0, retrain_type="kd")
    assert seen == ["edgel3_kd_audio_sparsity_87.0"]


def test_process_files_skips_bad_files_where_process_file_raises(wav):
    from edgel3.edgel3_exceptions import EdgeL3Error

    bad = wav.parent / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    results = edgel3.process_files([bad, wav], model="tiny")
    assert [r.status for r in results] == ["failed", "written"]
    with pytest.raises(EdgeL3Error):
        edgel3.process_file(bad, model="tiny")


# --------------------------------------------------------------------------- dependencies


#: Distribution name -> the module it provides.
MODULES = {"soundfile": "soundfile", "tensorflow": "tensorflow"}


def _install_requires() -> list[str]:
    tree = ast.parse((PROJECT_ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return [ast.literal_eval(elt) for elt in node.value.elts]
    raise AssertionError("setup.py has no install_requires")


def _imported_modules() -> set[str]:
    names = set()
    for path in (PROJECT_ROOT / "edgel3").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_required_distribution_is_imported():
    """Issue 12: resampy was required but never imported (the exact resampler is ours)."""
    imported = _imported_modules()
    required = [re.split(r"[<>=\[ ;]", req)[0] for req in _install_requires()]
    assert "resampy" not in required
    for name in required:
        module = MODULES.get(name, name.replace("-", "_"))
        assert module in imported, f"{name} is in install_requires but edgel3 never imports it"
