"""edgel3.sklearn: the EmbeddingTransformer's features, its estimator contract, a grid search."""

from __future__ import annotations

import collections
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import edgel3
from edgel3.exceptions import AudioError, EdgeL3Warning, ParameterError

from .conftest import DATA_DIR, PROJECT_ROOT

# scikit-learn is in the eval and test extras; 1.6 gave parametrize_with_checks its
# expected_failed_checks.
sklearn = pytest.importorskip("sklearn", minversion="1.6")

from sklearn.base import clone  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from edgel3 import sklearn as edgel3_sklearn  # noqa: E402
from edgel3.sklearn import POOLINGS, EmbeddingTransformer, pool_windows  # noqa: E402

ESC10 = DATA_DIR / "esc10"
#: Features are pooled float32 embeddings computed two ways (the transformer, or
#: get_embedding then pool_windows) through the same runner: identical up to float32
#: rounding of a sum over windows in another batch layout.
RTOL, ATOL = 1e-5, 1e-5


def expected_failed_checks(estimator):
    """The scikit-learn checks that cannot apply to clips, with the reason."""
    return {
        "check_n_features_in_after_fitting": (
            "a row of a 2-D X is a clip's samples, not a fixed set of features: clips of any "
            "length are accepted after fit (the transformer is stateless)"
        ),
    }


#: Not run at all: scikit-learn skips it unless SCIPY_ARRAY_API is set before SciPy is
#: imported, and the transformer computes with NumPy (other arrays are converted on input).
NOT_RUN = {"check_array_api_input"}


def _check_name(param) -> str:
    check = param.values[1] if hasattr(param, "values") else param[1]
    return getattr(check, "func", check).__name__


_CHECKS = parametrize_with_checks(
    [EmbeddingTransformer(model="tiny", sr=8000, hop_size=0.5)],
    expected_failed_checks=expected_failed_checks,
)


# Rows of a few random samples at 8 kHz (the checks' data) are clips shorter than one
# window: each is padded and warns, by design; the warnings are tested below.
@pytest.mark.filterwarnings("ignore::edgel3.exceptions.EdgeL3Warning")
@pytest.mark.parametrize(
    _CHECKS.args[0],
    [param for param in _CHECKS.args[1] if _check_name(param) not in NOT_RUN],
    **_CHECKS.kwargs,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- features


@pytest.fixture
def clips(rng):
    """Three signals of 1.3, 2 and 0.7 s at 16 kHz (the last shorter than a window)."""
    return [rng.normal(scale=0.1, size=n) for n in (20800, 32000, 11200)]


def reference_features(signals, sr, pooling="mean+std", hop_size=0.1):
    found = []
    for signal in signals:
        emb, _ = edgel3.get_embedding(signal, sr, model="tiny", hop_size=hop_size, verbose=0)
        found.append(pool_windows(emb, pooling))
    return np.stack(found)


def test_features_of_arrays_pairs_and_files_are_pooled_get_embedding_rows(clips, tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, clips[1], 16000, subtype="FLOAT")
    transformer = EmbeddingTransformer(model="tiny", sr=16000)
    with pytest.warns(EdgeL3Warning, match="shorter than window size"):
        expected = reference_features(clips, 16000)
    with pytest.warns(EdgeL3Warning, match="shorter than window size"):
        found = transformer.fit_transform(clips)
    assert found.shape == (3, 128) and found.dtype == np.float32
    np.testing.assert_allclose(found, expected, rtol=RTOL, atol=ATOL)
    # A file, a (signal, rate) pair and an array at sr, mixed in one list, keep their order.
    pair = (clips[0], 16000)
    mixed = EmbeddingTransformer(model="tiny").transform([str(path), pair, path])
    np.testing.assert_allclose(mixed, expected[[1, 0, 1]], rtol=RTOL, atol=ATOL)
    # Rows of a 2-D array are clips at sr.
    rows = np.stack([clips[0][:20000], clips[1][:20000]])
    np.testing.assert_allclose(
        transformer.transform(rows), reference_features(list(rows), 16000), rtol=RTOL, atol=ATOL
    )


def test_a_tensor_of_clips_is_read_like_an_array(clips):
    class Tensor:  # exposes only the array interface, as CPU tensors do
        def __init__(self, array):
            self.array = array
            self.__array_interface__ = array.__array_interface__

    rows = np.stack([clips[0][:16000], clips[1][:16000]])
    transformer = EmbeddingTransformer(model="tiny", sr=16000, pooling="mean")
    np.testing.assert_array_equal(transformer.transform(Tensor(rows)), transformer.transform(rows))


@pytest.mark.parametrize("runtime", ["numpy", "keras"])
def test_a_clips_features_do_not_depend_on_the_other_clips(rng, runtime):
    # Bit for bit, on both runtimes: each clip is embedded alone (a shared batch would let
    # BLAS/TensorFlow pick other kernels, and so other last bits, by batch size).
    signals = [rng.normal(scale=0.1, size=8000 + 997 * k) for k in range(7)]
    transformer = EmbeddingTransformer(model="tiny", sr=8000, pooling="mean+std", runtime=runtime)
    whole = transformer.transform(signals)
    for subset in ([3], [0, 6], [5, 1, 2]):
        part = transformer.transform([signals[i] for i in subset])
        np.testing.assert_array_equal(part, whole[subset])


@settings(max_examples=50, deadline=None)
@given(
    embedding=arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(1, 5)),
        elements=st.floats(-100, 100, width=32),
    ),
    parts=st.lists(st.sampled_from(POOLINGS), min_size=1, max_size=4, unique=True),
)
def test_pooling_concatenates_its_statistics_in_order(embedding, parts):
    pooled = pool_windows(embedding, "+".join(parts))
    expected = np.concatenate([getattr(np, part)(embedding, axis=0) for part in parts])
    assert pooled.dtype == np.float32 and pooled.shape == (embedding.shape[1] * len(parts),)
    # NumPy's float32 mean and std accumulate in float32, pool_windows in float64: over at
    # most 6 values up to 100 they differ by float32 rounding, a few ulps (7.6e-6) of 100.
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("pooling", ["", "median", "mean+mean", "mean,std", None, 3])
def test_bad_pooling_is_a_parameter_error(pooling):
    with pytest.raises(ParameterError, match="pooling must name"):
        pool_windows(np.ones((2, 3)), pooling)
    with pytest.raises(ParameterError, match="pooling must name"):
        EmbeddingTransformer(model="tiny", pooling=pooling, sr=8000).fit([np.ones(800)])


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.ones(800), r"one clip per row .* Reshape your data"),
        ("a.wav", r"got one path 'a.wav': pass \[path\]"),
        ([], "X holds no clips"),
        ([np.ones(800)], "X\\[0\\] is a signal without a sample rate: set sr="),
    ],
    ids=["1-D array", "one path", "empty", "no rate"],
)
def test_bad_inputs_say_what_to_pass(X, match):
    with pytest.raises(ParameterError, match=match):
        EmbeddingTransformer(model="tiny").fit(X)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(AudioError, match="nothing.wav"):
        EmbeddingTransformer(model="tiny").transform([tmp_path / "nothing.wav"])


def test_estimator_contract_params_clone_and_fitted_attributes(clips):
    transformer = EmbeddingTransformer(model="tiny", hop_size=0.5, pooling="max", sr=16000)
    params = transformer.get_params()
    assert params["hop_size"] == 0.5 and params["pooling"] == "max" and params["model"] == "tiny"
    copy = clone(transformer).set_params(pooling="mean+std+min")
    assert copy.pooling == "mean+std+min" and transformer.pooling == "max"
    assert transformer.fit([clips[0]]) is transformer
    assert not hasattr(transformer, "n_features_in_")  # a list of clips has no width
    transformer.fit(np.zeros((2, 8000)) + 0.1)
    assert transformer.n_features_in_ == 8000
    names = copy.get_feature_names_out()
    assert len(names) == 3 * 64 and names[0] == "mean_0" and names[-1] == "min_63"
    frame = copy.set_output(transform="pandas").transform(clips[:2])
    assert list(frame.columns) == list(names) and frame.shape == (2, 192)


def test_cache_dir_embeds_each_clip_once(monkeypatch, clips, tmp_path):
    counts = {"signals": 0, "files": 0}
    original_signals, original_path = edgel3_sklearn.embed_signals, edgel3_sklearn.embed_path

    def counting_signals(reference, signals, *args, **kwargs):
        counts["signals"] += len(signals)
        return original_signals(reference, signals, *args, **kwargs)

    def counting_path(*args, **kwargs):
        counts["files"] += 1
        return original_path(*args, **kwargs)

    monkeypatch.setattr(edgel3_sklearn, "embed_signals", counting_signals)
    monkeypatch.setattr(edgel3_sklearn, "embed_path", counting_path)
    path = tmp_path / "clip.wav"
    sf.write(path, clips[0], 16000, subtype="FLOAT")
    X = [clips[1], path]
    transformer = EmbeddingTransformer(model="tiny", sr=16000, cache_dir=tmp_path / "cache")
    first = transformer.transform(X)
    assert counts == {"signals": 1, "files": 1}
    # Again, by a clone (as GridSearchCV makes them) and with another pooling: read back.
    np.testing.assert_array_equal(clone(transformer).transform(X), first)
    again = clone(transformer).set_params(pooling="max").transform(X)
    assert counts == {"signals": 1, "files": 1}
    np.testing.assert_array_equal(
        again, EmbeddingTransformer(model="tiny", sr=16000, pooling="max").transform(X)
    )
    assert counts == {"signals": 2, "files": 2}  # that one had no cache
    # Another hop or other samples are other embeddings: computed.
    transformer.set_params(hop_size=0.5).transform(X)
    assert counts == {"signals": 3, "files": 3}
    transformer.transform([clips[1] * 0.5, path])
    assert counts == {"signals": 4, "files": 3}


# --------------------------------------------------------------------------- the module


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    for name in [n for n in sys.modules if n == "sklearn" or n.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)  # import sklearn(.base) now fails
    monkeypatch.delitem(sys.modules, "edgel3.sklearn")
    with pytest.raises(ImportError, match=r'pip install "edgel3\[eval\]"'):
        importlib.import_module("edgel3.sklearn")


def test_edgel3_sklearn_never_shadows_scikit_learn():
    # Inside the package, ``import sklearn`` is absolute: the real one.
    assert Path(sklearn.__file__).parent.name == "sklearn"
    assert edgel3_sklearn.BaseEstimator.__module__ == "sklearn.base"
    # With the package folder itself on sys.path, edgel3/sklearn.py would be found as
    # 'sklearn': it refuses with an explanation instead of breaking scikit-learn.
    code = "import sys; sys.path.insert(0, 'edgel3'); import sklearn"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "package folder is on sys.path" in proc.stderr


# --------------------------------------------------------------------------- a grid search


class _Recorder(EmbeddingTransformer):
    """Records the clips of each transform call (clones share the class attribute)."""

    calls: list = []

    def transform(self, X):
        _Recorder.calls.append([str(p) for p in X])
        return super().transform(X)


@pytest.mark.shared
def test_grid_search_on_esc10_folds(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from edgel3.evaluate.datasets import load_dataset

    dataset = load_dataset(ESC10, ESC10 / "meta" / "esc10.csv")
    # 4 classes x 5 folds x 4 clips (of 8): reading and resampling the clips is the cost.
    seen = collections.Counter()
    keep = []
    for i, (label, fold) in enumerate(zip(dataset.labels, dataset.folds)):
        seen[label, fold] += 1
        if label < 4 and seen[label, fold] <= 4:
            keep.append(i)
    X = [str(dataset.paths[i]) for i in keep]
    y = dataset.labels[keep]
    folds = np.asarray(dataset.folds)[keep]
    fold_of = dict(zip(X, folds))
    pipeline = Pipeline(
        [
            ("embed", _Recorder(model="tiny", hop_size=0.5, cache_dir=tmp_path / "cache")),
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(max_iter=2000)),
        ]
    )
    search = GridSearchCV(pipeline, {"classify__C": [0.1, 1.0]}, cv=GroupKFold(n_splits=5))
    _Recorder.calls = []
    search.fit(X, y, groups=folds)

    assert search.n_splits_ == 5
    # Sequential: each fit transforms its training clips, then scores its test clips.
    *pairs, refit = _Recorder.calls
    assert len(pairs) == 2 * 2 * 5 and set(refit) == set(X)
    tested = []
    for train, test in zip(pairs[::2], pairs[1::2]):
        test_folds = {fold_of[p] for p in test}
        assert len(test_folds) == 1, "a test split is one fold"
        assert test_folds.isdisjoint(fold_of[p] for p in train), "no test fold in training"
        assert len(train) + len(test) == len(X)
        tested.append(test_folds.pop())
    assert sorted(set(tested)) == sorted(set(folds))
    # Chance is 1/4. The mean over 80 test clips of a random guess has a standard
    # deviation of sqrt(0.25 * 0.75 / 80) = 0.048: 0.45 is 4.1 of them above chance.
    assert search.best_score_ > 0.25 + 0.2
