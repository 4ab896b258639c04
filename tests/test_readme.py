"""The README's Python example runs as written (on synthesized files, offline)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import soundfile as sf

from .conftest import PROJECT_ROOT


@pytest.mark.shared
def test_readme_python_example_runs(tmp_path, monkeypatch, rng, sea64_weights_dir):
    text = (PROJECT_ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    sf.write("dog.wav", rng.normal(scale=0.1, size=(44100 * 2, 2)), 44100)
    sf.write("a.wav", rng.normal(scale=0.1, size=16000), 16000)
    sf.write("b.flac", rng.normal(scale=0.1, size=8000), 8000)
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["emb"].shape == (3, 64)  # 2 s, hop 0.5, no centring: starts 0, .5, 1
    live = np.concatenate(namespace["live"])
    # The push stream batches other windows together: 1e-5 of the scale (docs/pipeline.rst).
    scale = max(1.0, float(np.abs(namespace["emb"]).max()))
    np.testing.assert_allclose(live, namespace["emb"], rtol=0, atol=1e-5 * scale)
    assert np.load("dog.npz")["embedding"].shape == (16, 64)  # 2 s, centred, hop 0.1
    assert [r.status for r in namespace["results"]] == ["written", "written"]
