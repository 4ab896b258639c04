"""Shared fixtures: paths into ../shared, seeded RNG, synthesized signals."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEL3_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
GOLDEN_DIR = SHARED / "golden"
WEIGHTS_DIR = SHARED / "weights"
SEA64_GZ = WEIGHTS_DIR / "edgel3_sea_ust_audio_emb_64.h5.gz"
#: Two float32 executions of one network (another runtime, summation order or kernel)
#: agree within this fraction of the embedding's scale (docs/runtime.rst).
RELATIVE_TOLERANCE = 1e-5


def assert_close(found, expected):
    """Same shape; values within :data:`RELATIVE_TOLERANCE` of ``max(1, max|expected|)``."""
    found, expected = np.asarray(found), np.asarray(expected)
    assert found.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    error = float(np.abs(found - expected).max(initial=0.0))
    assert error <= RELATIVE_TOLERANCE * scale, (error, scale)


DATA_DIR = SHARED / "data"

#: Whether the reference material (golden outputs of 0.2.1, the SEA-64 weight file) is here.
SHARED_AVAILABLE = GOLDEN_DIR.is_dir() and SEA64_GZ.is_file()
SHARED_REASON = (
    f"needs ../shared (golden outputs and the SEA-64 weight file) at {SHARED}; "
    "put it beside the project root or set EDGEL3_SHARED_DIR"
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "shared: the test reads ../shared (skipped without it, a failure in CI)"
    )


def pytest_runtest_setup(item):
    """Tests marked ``shared`` skip with one line when ../shared is missing; in CI they fail."""
    if item.get_closest_marker("shared") is None or SHARED_AVAILABLE:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run every test: {SHARED_REASON}", pytrace=False)
    pytest.skip(SHARED_REASON)


def golden_files(prefix: str = "") -> list:
    """Golden embedding files (not the intermediate melspec ones), sorted.

    Without ../shared: one placeholder marked ``shared``, so parametrized tests skip (or, in
    CI, fail) with the one-line reason instead of pytest's "empty parameter set".
    """
    if not SHARED_AVAILABLE:
        return [pytest.param(GOLDEN_DIR / "missing.npz", marks=pytest.mark.shared, id="no-shared")]
    return sorted(
        p
        for p in GOLDEN_DIR.glob(f"{prefix}*__center*_hop*.npz")
        if not p.name.startswith("intermediate_")
    )


def randomise_bn(model, rng):
    """Trained-looking BatchNormalization statistics (so BN folding in a runner matters)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, shape).astype("float32"),
                    rng.normal(0, 0.2, shape).astype("float32"),
                    rng.normal(0, 0.2, shape).astype("float32"),
                    rng.uniform(0.5, 2.0, shape).astype("float32"),
                ]
            )
    return model


@pytest.fixture
def rng():
    """A seeded random generator, so synthesized fixtures are reproducible."""
    return np.random.default_rng(20180216)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test away from the user's real weight cache and env settings."""
    monkeypatch.setenv("EDGEL3_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("EDGEL3_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("EDGEL3_WEIGHTS_URL", raising=False)


@pytest.fixture
def sea64_weights_dir(monkeypatch):
    """Point EDGEL3_WEIGHTS_DIR at ../shared/weights (read in place, never copied)."""
    monkeypatch.setenv("EDGEL3_WEIGHTS_DIR", str(WEIGHTS_DIR))
    return WEIGHTS_DIR


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


@contextlib.contextmanager
def serve_directory(directory: Path):
    """Serve ``directory`` on 127.0.0.1 (free port) in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        # A short poll interval: shutdown() waits up to one interval (default 0.5 s).
        target=server.serve_forever,
        kwargs={"poll_interval": 0.02},
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def served_weights(monkeypatch):
    """EDGEL3_WEIGHTS_URL pointing at a local server of ../shared/weights."""
    with serve_directory(WEIGHTS_DIR) as url:
        monkeypatch.setenv("EDGEL3_WEIGHTS_URL", url)
        yield url


class ModelResolved(Exception):
    """Raised by :func:`resolved_models` where a model would run (nothing is loaded)."""


@pytest.fixture
def resolved_models(monkeypatch):
    """Record which model each call would run, then stop it with :class:`ModelResolved`.

    Spies on ``ModelReference.runner`` (whatever runtime would run the model); the list
    it returns fills with each reference's source (the official file stem).
    """
    from edgel3.reference import ModelReference

    seen = []

    def fake_runner(reference, n_windows=None):
        seen.append(reference.source)
        raise ModelResolved

    monkeypatch.setattr(ModelReference, "runner", fake_runner)
    return seen
