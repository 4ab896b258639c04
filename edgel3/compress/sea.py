"""Specialized Embedding Approximation (SEA): distil a teacher's *projected* embeddings.

Recipe (Srivastava et al., ICASSP 2021; docs/compress.rst, SEA):

1. embed unlabeled in-domain audio with the teacher;
2. choose a sample of those embeddings (``random``; ``relevance``: probability
   proportional to the loudness rank of a window within its group, e.g. its
   file or time slot; ``diversity``: a k-DPP over L1-normalised embeddings;
   ``diversity_relevance``: a k-DPP with relevance as quality);
3. fit ``StandardScaler`` then ``PCA(d)`` on the sample: ``phi``;
4. train a student to regress ``phi(teacher(x))`` with MSE.

The released SEA students end in BN + ReLU, so the negative half of the
standardised PCA targets is unreachable; :func:`sea_distill` builds students
with a linear head by default and keeps ``head='bn_relu'`` for parity.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..checks import check_choice, check_positive_int
from ..exceptions import ParameterError
from .data import WindowSet
from .teachers import as_teacher, teacher_targets

__all__ = ["SAMPLINGS", "relevance_scores", "sample_points", "SEAProjection", "sea_distill"]

SAMPLINGS = ("random", "relevance", "diversity", "diversity_relevance")


def relevance_scores(loudness: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Relevance of each window: its loudness rank within its group over the group size.

    ``rank(loudness, method='min') / n_in_group`` as in the SEA code (where a
    group was a 2-hour slot of one sensor), in ``(0, 1]``; louder = more relevant.

    Parameters
    ----------
    loudness : np.ndarray [shape=(n,)]
        Level of each window (e.g. ``WindowSet.loudness``, dBFS).
    groups : np.ndarray [shape=(n,)], optional
        Group label of each window (default: one group).

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float64]
    """
    from scipy.stats import rankdata

    loudness = np.asarray(loudness, dtype=np.float64)
    groups = np.zeros(len(loudness), dtype=np.int64) if groups is None else np.asarray(groups)
    if groups.shape != loudness.shape:
        raise ParameterError(f"groups must have shape {loudness.shape}; got {groups.shape}.")
    scores = np.empty(len(loudness))
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        scores[rows] = rankdata(loudness[rows], method="min") / rows.size
    return scores


def sample_points(
    embeddings: np.ndarray,
    k: int,
    sampling: str = "random",
    *,
    loudness: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    sigma: float = 0.1,
    n_sweeps: int = 3,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Choose ``k`` of the ``n`` embeddings to fit SEA's projection on.

    Parameters
    ----------
    embeddings : np.ndarray [shape=(n, D)]
        Teacher embeddings.
    k : int
    sampling : {'random', 'relevance', 'diversity', 'diversity_relevance'}
    loudness, groups : np.ndarray [shape=(n,)], optional
        Needed by the relevance samplings (see :func:`relevance_scores`).
    sigma, n_sweeps : float, int
        k-DPP ridge and chain length (see :func:`edgel3.compress.dpp.sample_kdpp`).
    rng : np.random.Generator or int, optional

    Returns
    -------
    np.ndarray [shape=(k,), dtype=int64]
        Sorted indices.
    """
    from .dpp import l1_normalise, sample_kdpp

    n = len(embeddings)
    check_choice(sampling, SAMPLINGS, "sampling")
    if check_positive_int(k, "k") > n:
        raise ParameterError(f"Cannot sample k={k!r} of {n} embeddings.")
    rng = np.random.default_rng(rng)
    relevance = None
    if "relevance" in sampling:
        if loudness is None:
            raise ParameterError(f"sampling={sampling!r} needs the loudness of each window.")
        relevance = relevance_scores(loudness, groups)
    if sampling == "random":
        return np.sort(rng.choice(n, size=int(k), replace=False))
    if sampling == "relevance":
        return np.sort(rng.choice(n, size=int(k), replace=False, p=relevance / relevance.sum()))
    return sample_kdpp(
        l1_normalise(embeddings),
        int(k),
        sigma=sigma,
        quality=relevance,
        n_sweeps=n_sweeps,
        rng=rng,
    )


class SEAProjection:
    """SEA's ``phi``: StandardScaler + PCA fitted on a sampled subset of teacher embeddings.

    Parameters
    ----------
    n_components : int or None
        Output size ``d``; ``None`` is the identity (SEA's Student 0).
    sampling : {'random', 'relevance', 'diversity', 'diversity_relevance'}
    n_samples : int, optional
        Size of the fitting sample (default: all points for ``'random'``/
        ``'relevance'``, ``min(n, 5000)`` for the k-DPP samplings).
    sigma, n_sweeps : float, int
        k-DPP settings.
    random_state : int, optional

    Raises
    ------
    ParameterError
        If ``n_samples`` is below ``n_components`` (checked here, before any work).

    Attributes
    ----------
    sample_index_ : np.ndarray
        Indices of the points the projection was fitted on.
    scaler_ : sklearn.preprocessing.StandardScaler
    pca_ : sklearn.decomposition.PCA

    Examples
    --------
    >>> emb = np.random.default_rng(0).random((200, 16))
    >>> SEAProjection(4, random_state=0).fit(emb).transform(emb).shape
    (200, 4)
    """

    def __init__(
        self,
        n_components: int | None = 64,
        *,
        sampling: str = "random",
        n_samples: int | None = None,
        sigma: float = 0.1,
        n_sweeps: int = 3,
        random_state: int | None = None,
    ):
        if n_components is not None and n_samples is not None and n_samples < n_components:
            raise ParameterError(
                f"n_samples={n_samples!r} points cannot fit a PCA of n_components="
                f"{n_components!r}: give at least as many points as components."
            )
        self.n_components = n_components
        self.sampling = sampling
        self.n_samples = n_samples
        self.sigma = sigma
        self.n_sweeps = n_sweeps
        self.random_state = random_state

    def fit(self, embeddings, *, loudness=None, groups=None) -> SEAProjection:
        """Sample points and fit the scaler and PCA on them; returns ``self``."""
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        embeddings = np.asarray(embeddings, dtype=np.float64)
        n = len(embeddings)
        default = n if self.sampling in ("random", "relevance") else min(n, 5000)
        k = min(n, self.n_samples or default)
        self.sample_index_ = sample_points(
            embeddings,
            k,
            self.sampling,
            loudness=loudness,
            groups=groups,
            sigma=self.sigma,
            n_sweeps=self.n_sweeps,
            rng=self.random_state,
        )
        sample = embeddings[self.sample_index_]
        self.scaler_ = StandardScaler().fit(sample)
        if self.n_components is None:
            self.pca_ = None
            return self
        if not 1 <= int(self.n_components) <= min(sample.shape):
            raise ParameterError(
                f"n_components={self.n_components!r} must lie in [1, {min(sample.shape)}] "
                f"for a sample of shape {sample.shape}."
            )
        self.pca_ = PCA(int(self.n_components), random_state=self.random_state).fit(
            self.scaler_.transform(sample)
        )
        return self

    def transform(self, embeddings) -> np.ndarray:
        """``PCA(scaler(embeddings))`` as float32 (identity when ``n_components`` is None)."""
        if not hasattr(self, "scaler_"):
            raise ParameterError("This SEAProjection is not fitted yet; call fit() first.")
        embeddings = np.asarray(embeddings, dtype=np.float64)
        if self.pca_ is None:
            return embeddings.astype(np.float32)
        return self.pca_.transform(self.scaler_.transform(embeddings)).astype(np.float32)

    def fit_transform(self, embeddings, **kwargs) -> np.ndarray:
        """Fit, then transform all ``embeddings``."""
        return self.fit(embeddings, **kwargs).transform(embeddings)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted arrays to an ``.npz`` (no pickle); see :meth:`load`."""
        from ..files import atomic_write

        arrays = {
            "scaler_mean": self.scaler_.mean_,
            "scaler_scale": self.scaler_.scale_,
            "sample_index": self.sample_index_,
            "params": np.array(json.dumps(self._params())),
        }
        if self.pca_ is not None:
            arrays.update(pca_mean=self.pca_.mean_, pca_components=self.pca_.components_)
        with atomic_write(path) as handle:
            np.savez(handle, **arrays)
        return Path(path)

    def _params(self) -> dict:
        return {
            "n_components": self.n_components,
            "sampling": self.sampling,
            "n_samples": self.n_samples,
            "sigma": self.sigma,
            "n_sweeps": self.n_sweeps,
            "random_state": self.random_state,
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> SEAProjection:
        """Read a projection written by :meth:`save`."""
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        with np.load(path) as stored:
            projection = cls(**json.loads(str(stored["params"])))
            projection.sample_index_ = stored["sample_index"]
            projection.scaler_ = StandardScaler()
            projection.scaler_.mean_ = stored["scaler_mean"]
            projection.scaler_.scale_ = stored["scaler_scale"]
            projection.scaler_.var_ = stored["scaler_scale"] ** 2
            projection.scaler_.n_features_in_ = stored["scaler_mean"].size
            projection.pca_ = None
            if "pca_components" in stored:
                projection.pca_ = PCA(int(projection.n_components))
                projection.pca_.mean_ = stored["pca_mean"]
                projection.pca_.components_ = stored["pca_components"]
                projection.pca_.n_components_ = stored["pca_components"].shape[0]
                projection.pca_.n_features_in_ = stored["pca_mean"].size
                projection.pca_.whiten = False
        return projection


def sea_distill(
    student,
    data: WindowSet,
    *,
    teacher,
    projection: SEAProjection | None = None,
    groups: np.ndarray | None = None,
    target_cache: str | os.PathLike | None = None,
    **distill_options,
):
    """Run SEA: teacher embeddings -> fitted projection -> student regression.

    Parameters
    ----------
    student : keras.Model
        Outputs ``projection.n_components`` values (e.g.
        ``build_student('sea', emb_dim=64)``, linear head by default).
    data : WindowSet
        Unlabeled in-domain windows.
    teacher
        See :func:`edgel3.compress.data.as_teacher`.
    projection : SEAProjection, optional
        Unfitted (fitted here) or fitted; default ``SEAProjection(student's output size)``.
    groups : np.ndarray [shape=(len(data),)], optional
        Relevance groups (default: each window's source file).
    target_cache : path-like, optional
        Cache of the raw teacher embeddings.
    **distill_options
        Passed to :func:`edgel3.compress.distill.distill` (``epochs``,
        ``augment``, ``checkpoint_dir``...).

    Returns
    -------
    result : edgel3.compress.distill.DistillResult
    projection : SEAProjection
        The fitted ``phi`` (apply it to teacher embeddings to compare).
    """
    from .distill import distill

    teacher = as_teacher(teacher)
    raw = teacher_targets(
        teacher, data, cache=target_cache, progress=distill_options.get("verbose", 1) > 0
    )
    if projection is None:
        projection = SEAProjection(int(student.output_shape[-1]))
    if not hasattr(projection, "scaler_"):
        projection.fit(
            raw, loudness=data.loudness, groups=data.file_index if groups is None else groups
        )
    targets = projection.transform(raw)
    result = distill(
        student,
        data,
        targets,
        teacher=teacher,
        target_transform=projection.transform,
        **distill_options,
    )
    return result, projection
