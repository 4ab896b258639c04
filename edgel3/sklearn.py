"""scikit-learn: :class:`EmbeddingTransformer`, clips in, pooled embedding features out.

The transformer turns a list of clips (audio files, ``(signal, sr)`` pairs, or
arrays at ``sr``) into one feature row per clip: the clip's window embeddings
(:func:`edgel3.get_embedding`'s rows) pooled over time by :func:`pool_windows`.
It follows scikit-learn's estimator contract, so it fits in a
:class:`~sklearn.pipeline.Pipeline` and a
:class:`~sklearn.model_selection.GridSearchCV`; see ``docs/sklearn.rst``.

scikit-learn is an optional dependency (``pip install "edgel3[eval]"``), imported
when this module is. The module is ``edgel3.sklearn``: inside edgel3, ``import
sklearn`` is an absolute import and always finds scikit-learn itself.
"""

from __future__ import annotations

if __name__ == "sklearn":  # edgel3/ itself on sys.path: it would shadow scikit-learn
    raise ImportError(
        "edgel3/sklearn.py was imported as the top-level module 'sklearn' because the edgel3 "
        "package folder is on sys.path; run Python from outside edgel3/ (import it as "
        "edgel3.sklearn)."
    )

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from .checks import check_audio, check_positive_int, check_sample_rate, is_real
from .core import DEFAULT_BATCH_SIZE, check_embedding_options
from .engine import embed_path, embed_signals
from .exceptions import AudioError, EdgeL3Warning, ParameterError
from .tensors import as_array

SKLEARN_HINT = 'edgel3.sklearn needs scikit-learn: pip install "edgel3[eval]"'

try:
    from sklearn.base import BaseEstimator, TransformerMixin
except ImportError as exc:  # the message names the extra that provides it
    raise ImportError(f"{SKLEARN_HINT} ({exc}).") from exc

__all__ = ["EmbeddingTransformer", "pool_windows", "POOLINGS", "SKLEARN_HINT"]

#: Statistics :func:`pool_windows` computes over a clip's windows, in the order they are
#: accepted; ``pooling`` joins some of them with ``+`` (``'mean+std'``).
POOLINGS = ("mean", "std", "max", "min")
#: Means and deviations accumulate in float64 (as edgel3.hear's scene mean); features are float32.
_STATISTICS = {
    "mean": lambda e: e.mean(axis=0, dtype=np.float64),
    "std": lambda e: e.std(axis=0, dtype=np.float64),
    "max": lambda e: e.max(axis=0),
    "min": lambda e: e.min(axis=0),
}


def _pooling_parts(pooling) -> list[str]:
    """The statistics ``pooling`` names, checked."""
    parts = pooling.split("+") if isinstance(pooling, str) else []
    if not parts or any(p not in POOLINGS for p in parts) or len(set(parts)) != len(parts):
        raise ParameterError(
            f"pooling must name one or more of {', '.join(POOLINGS)} joined by '+' "
            f"(each once), e.g. 'mean+std'; got pooling={pooling!r}."
        )
    return parts


def pool_windows(embedding, pooling: str = "mean+std") -> np.ndarray:
    """Pool a clip's window embeddings over time into one feature vector.

    Parameters
    ----------
    embedding : np.ndarray [shape=(T, D)]
        One row per window (T >= 1), as :func:`edgel3.get_embedding` returns.
    pooling : str
        Statistics over the T windows, joined by ``+`` and concatenated in
        that order: ``'mean'``, ``'std'`` (population standard deviation, 0
        for one window), ``'max'``, ``'min'``.

    Returns
    -------
    np.ndarray [shape=(D * k,), dtype=float32]
        ``k`` statistics of ``D`` values each (means and deviations accumulated
        in float64).

    Raises
    ------
    ParameterError
        An unknown or repeated statistic, or not a ``(T, D)`` array with T >= 1.

    Examples
    --------
    >>> import numpy as np
    >>> pool_windows(np.array([[0.0, 1.0], [2.0, 5.0]]), "mean+max")
    array([1., 3., 2., 5.], dtype=float32)
    """
    parts = _pooling_parts(pooling)
    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim != 2 or not len(embedding):
        raise ParameterError(
            f"embedding must have shape (T, D) with T >= 1; got shape {embedding.shape}."
        )
    return np.concatenate([_STATISTICS[part](embedding) for part in parts]).astype(np.float32)


class EmbeddingTransformer(TransformerMixin, BaseEstimator):
    """Clip features for scikit-learn: edgel3 window embeddings pooled over each clip.

    Stateless: :meth:`fit` checks the parameters and returns ``self``;
    :meth:`transform` embeds each clip with the model and pools its windows
    (:func:`pool_windows`). Parameters are only stored by ``__init__``
    (scikit-learn's rule), so :func:`~sklearn.base.clone`, ``get_params`` and
    ``set_params`` work, and a grid search may tune ``hop_size`` or
    ``pooling`` like any other parameter.

    Parameters
    ----------
    model : str, path-like, keras.Model, runner or None
        Anything :func:`edgel3.get_embedding`'s ``model`` accepts: an official or
        short name (``'sea-64'``), the bundled ``'tiny'``, a weight file; None is
        ``get_embedding``'s default (sparse L3, 128 values). Default ``'sea-64'``:
        the smallest official model, run without TensorFlow (its weights are
        downloaded once, verified). Prefer a name or a path to a loaded model:
        :func:`~sklearn.base.clone` deep-copies parameters.
    hop_size : float
        Hop between windows in seconds (as in ``get_embedding``).
    pooling : str
        Statistics over each clip's windows, joined by ``+``: any of
        ``'mean'``, ``'std'``, ``'max'``, ``'min'`` (:func:`pool_windows`).
        ``'mean+std'`` gives ``2 * D`` features.
    sr : int or None
        Sample rate (Hz) of clips given as arrays without their own rate
        (rows of a 2-D array, or a list of 1-D arrays). Not used for files or
        ``(signal, sr)`` pairs.
    center : bool
        Centre windows on their timestamps (as in ``get_embedding``).
    runtime : {'auto', 'numpy', 'keras'}
        What runs the model (as in ``get_embedding``).
    batch_size : int
        Windows per forward pass; features do not depend on it.
    cache_dir : path-like or None
        Keep each clip's window embeddings (before pooling) in this folder
        (:class:`edgel3.evaluate.cache.EmbeddingCache`), keyed by the model's
        identity, ``hop_size``, ``center`` and the clip's content: the SHA-256
        of a file's bytes, or of an array's samples, dtype, shape and rate.
        Later transforms of the same clips read them back (across processes,
        e.g. ``GridSearchCV(n_jobs=4)``, and sessions); changing ``pooling``
        still hits the cache. None (default): embed every time.

    Attributes
    ----------
    n_features_in_ : int
        Samples per signal, set by :meth:`fit` only when ``X`` is a 2-D numeric
        array (scikit-learn's convention); clips of any length are accepted.

    See Also
    --------
    edgel3.get_embedding : the window embeddings pooled here.

    Notes
    -----
    ``X`` is a sequence of clips, each one of

    * an audio file (``str`` or path-like), read with edgel3's reader at its
      own rate (long files streamed);
    * a ``(signal, sr)`` pair;
    * an array or CPU tensor (``(n,)`` or ``(n, channels)``) at ``sr``.

    A numeric array or tensor (:func:`edgel3.tensors.as_array`) with two or
    more dimensions is one clip per row, at ``sr``. A 1-D numeric array is
    refused (one clip or many?): pass ``[signal]``. A pandas Series or a
    one-column frame of file paths works too.

    Features are float32, one row per clip: ``len(pooling parts) * D``
    columns named ``mean_0 ... std_63`` (:meth:`get_feature_names_out`), so
    ``set_output(transform='pandas')`` works.

    Examples
    --------
    >>> import numpy as np
    >>> from edgel3.sklearn import EmbeddingTransformer
    >>> clips = np.random.default_rng(0).normal(scale=0.1, size=(3, 16000))  # 3 x 1 s
    >>> features = EmbeddingTransformer(model="tiny", sr=16000).fit_transform(clips)
    >>> features.shape, features.dtype
    ((3, 128), dtype('float32'))
    """

    def __init__(
        self,
        model="sea-64",
        *,
        hop_size=0.1,
        pooling="mean+std",
        sr=None,
        center=True,
        runtime="auto",
        batch_size=DEFAULT_BATCH_SIZE,
        cache_dir=None,
    ):
        self.model = model
        self.hop_size = hop_size
        self.pooling = pooling
        self.sr = sr
        self.center = center
        self.runtime = runtime
        self.batch_size = batch_size
        self.cache_dir = cache_dir

    # ------------------------------------------------------------------ scikit-learn API

    def fit(self, X, y=None):
        """Check the parameters and ``X``; nothing is learned.

        Parameters
        ----------
        X : sequence of clips [length n] or np.ndarray [shape=(n, samples)]
            See the class Notes.
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ParameterError
            A bad parameter or input layout.
        WeightsError
            A model file that does not exist.
        """
        self._settings()
        clips, n_features = self._clips(X)
        with warnings.catch_warnings():  # transform warns about these clips, once
            warnings.simplefilter("ignore", EdgeL3Warning)
            _checked(clips)
        if n_features is not None:
            self.n_features_in_ = n_features
        elif hasattr(self, "n_features_in_"):
            del self.n_features_in_  # refitted on clips that are not an array
        return self

    def transform(self, X):
        """Embed each clip and pool its windows.

        Parameters
        ----------
        X : sequence of clips [length n] or np.ndarray [shape=(n, samples)]
            See the class Notes.

        Returns
        -------
        np.ndarray [shape=(n, D * k), dtype=float32]
            One row per clip; ``k`` statistics in ``pooling``.

        Raises
        ------
        AudioError
            A missing or unreadable file, unusable audio (the message names the clip).
        ParameterError
            A bad parameter or input layout.
        WeightsError
            Weights that cannot be found or loaded.

        Warns
        -----
        EdgeL3Warning
            All-zero clips, clips shorter than one window (padded), as
            ``get_embedding`` (not for clips read from ``cache_dir``).
        """
        settings = self._settings()
        clips = _checked(self._clips(X)[0])
        embeddings = self._window_embeddings(clips, settings)
        return np.stack([pool_windows(e, self.pooling) for e in embeddings])

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: ``'<statistic>_<index>'`` (``'mean_0'``, ...).

        Parameters
        ----------
        input_features : ignored
            The inputs are clips, not named features.

        Returns
        -------
        np.ndarray [shape=(D * k,), dtype=object]
        """
        settings = self._settings()
        size = settings["reference"].embedding_size
        names = [f"{part}_{i}" for part in settings["parts"] for i in range(size)]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False  # stateless: transform needs no fit
        tags.input_tags.string = True  # file paths
        tags.transformer_tags.preserves_dtype = ["float32"]  # features are always float32
        return tags

    # ------------------------------------------------------------------ internals

    def _settings(self) -> dict:
        """The checked parameters and the resolved model (nothing is loaded)."""
        reference, center, hop_size, _ = check_embedding_options(
            self.model, "sparse", 128, "ft", 95.45, self.center, self.hop_size, 0, self.runtime
        )
        sr = None if self.sr is None else check_sample_rate(self.sr)
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise ParameterError(
                f"cache_dir must be a folder (str or path-like) or None; got {self.cache_dir!r}."
            )
        return {
            "reference": reference,
            "center": center,
            "hop_size": hop_size,
            "sr": sr,
            "batch_size": check_positive_int(self.batch_size, "batch_size"),
            "parts": _pooling_parts(self.pooling),
        }

    def _clips(self, X) -> tuple[list[tuple], int | None]:
        """``X`` as ``('file', path)`` / ``('signal', array, sr)`` items, and its feature count."""
        if isinstance(X, (str, os.PathLike)):
            raise ParameterError(
                f"X must be a sequence of clips; got one path {str(X)!r}: pass [path]."
            )
        if hasattr(X, "tocsr"):  # scipy.sparse, without importing scipy
            raise ParameterError(
                "X is a sparse matrix: sparse input is not supported. Pass clips (files, "
                "(signal, sr) pairs or arrays), or a dense array with one clip per row."
            )
        n_features = None
        if not isinstance(X, (list, tuple)):
            if hasattr(X, "iloc") and getattr(X, "ndim", 0) == 1:  # a pandas Series
                X = X.tolist()
            else:  # an array, a frame, or a tensor of clips (one per row)
                X = as_array(X, "X")
        if isinstance(X, np.ndarray):
            X, n_features = _array_clips(X)
        clips = [self._clip(item, index) for index, item in enumerate(X)]
        if not clips:
            raise ParameterError("X holds no clips; pass at least one.")
        return clips, n_features

    def _clip(self, item, index: int) -> tuple:
        if isinstance(item, (str, os.PathLike)):
            return ("file", os.fspath(item))
        sr = self.sr
        if (
            isinstance(item, tuple)
            and len(item) == 2
            and is_real(item[1])
            and np.ndim(item[0]) >= 1
        ):
            item, sr = item
        if sr is None:
            raise ParameterError(
                f"X[{index}] is a signal without a sample rate: set sr= on the "
                "EmbeddingTransformer, or pass (signal, sr) pairs."
            )
        return ("signal", item, check_sample_rate(sr, f"sample rate of X[{index}]"))

    def _window_embeddings(self, clips, settings) -> list[np.ndarray]:
        """The ``(T, D)`` window embeddings of every clip, through the cache if any."""
        reference = settings["reference"]
        options = {
            "hop_size": settings["hop_size"],
            "center": settings["center"],
            "batch_size": settings["batch_size"],
        }
        cache, digests = None, [None] * len(clips)
        if self.cache_dir is not None and reference.stable_id:
            from .evaluate.cache import EmbeddingCache

            cache = EmbeddingCache(
                self.cache_dir,
                reference.model_id,
                hop_size=settings["hop_size"],
                center=settings["center"],
            )
            digests = [_digest(clip) for clip in clips]
        results = [cache.get(d) if cache is not None else None for d in digests]
        todo = [i for i, r in enumerate(results) if r is None]
        # One clip per call, as for files: a clip's windows are batched alone, so its
        # features never depend on which other clips X holds (BLAS and TensorFlow pick
        # kernels, and so last bits, by batch size; scikit-learn checks subset invariance).
        for i in todo:
            if clips[i][0] == "signal":
                results[i] = embed_signals(reference, [clips[i][1]], [clips[i][2]], **options)[0]
            else:
                results[i] = embed_path(reference, clips[i][1], **options)[0]
        if cache is not None:
            for i in todo:
                cache.put(digests[i], results[i])
        return results


def _checked(clips: list[tuple]) -> list[tuple]:
    """The clips with each signal checked by :func:`edgel3.checks.check_audio`."""
    return [
        ("signal", check_audio(clip[1], f"X[{index}]", stacklevel=4), clip[2])
        if clip[0] == "signal"
        else clip
        for index, clip in enumerate(clips)
    ]


def _array_clips(X: np.ndarray):
    """The clips of an array ``X`` (rows, or the items of a 1-D object array), and its width."""
    if X.dtype.kind == "c":
        raise ParameterError(f"Complex data not supported: audio is real; got dtype {X.dtype}.")
    if X.dtype.kind not in "biuf":
        if X.ndim == 1:
            return X, None  # items: paths, arrays, (signal, sr) pairs
        if (
            X.ndim == 2
            and X.shape[1] == 1
            and all(isinstance(v, (str, os.PathLike)) for v in X[:, 0])
        ):
            return X[:, 0], None  # a one-column frame of paths
        try:
            X = X.astype(np.float64)  # numbers stored as objects
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"X of dtype {X.dtype} must hold numbers (one clip per row) or be a "
                f"sequence of clips: {exc}"
            ) from exc
    if X.ndim < 2:
        raise ParameterError(
            f"A numeric X needs one clip per row (shape (n, samples)); got shape {X.shape}. "
            "Reshape your data: [signal] or signal[np.newaxis] for one clip."
        )
    if X.shape[1] == 0:
        raise ParameterError(
            f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is "
            "required: each row holds a clip's samples."
        )
    return X, int(X.shape[1])


def _digest(clip: tuple) -> str:
    """SHA-256 of a file's bytes, or of an array clip's samples, dtype, shape and rate."""
    if clip[0] == "file":
        from .evaluate.cache import file_digest

        path = Path(clip[1])
        if not path.is_file():
            raise AudioError(f'File "{path}" could not be found.')
        return file_digest(path)
    _, signal, sr = clip
    digest = hashlib.sha256(f"array {signal.dtype.str} {signal.shape} {sr}\n".encode())
    digest.update(np.ascontiguousarray(signal).tobytes())
    return digest.hexdigest()
