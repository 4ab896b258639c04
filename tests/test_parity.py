"""Golden parity: our embeddings equal edgel3 0.2.1's for SEA-64 (the contract).

Tolerances (max abs on embeddings whose values reach ~50-60), from the issue
and docs/frontend.rst §7: cells 160 dB below a window's peak are float32 rounding
noise, so two valid float32 executions differ by ~2e-5 on noisy signals and
~0.02 on 16-bit tonal chirps.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import soundfile as sf

import edgel3
from edgel3.exceptions import AudioError, EdgeL3Error

from .conftest import GOLDEN_DIR, RELATIVE_TOLERANCE, SEA64_GZ, golden_files

pytestmark = pytest.mark.shared

# Noisy synthetic, silence and short inputs: 1e-5 of the embedding's scale (values reach
# ~50-60, so ~5e-4), docs/frontend.rst §7.2; measured <= 4.2e-5.
# 16-bit chirps: low cells are rounding-dominated (docs/frontend.rst §7 measures <= 0.027).
TOLERANCE_CHIRP = 0.05


def _tolerance(name: str, golden: np.ndarray) -> float:
    if name.startswith("chirp"):
        return TOLERANCE_CHIRP
    return RELATIVE_TOLERANCE * max(1.0, float(np.abs(golden).max()))


@pytest.fixture(scope="module")
def sea64(tmp_path_factory):
    from edgel3.core import load_model_file

    return load_model_file(GOLDEN_DIR.parent / "weights" / "edgel3_sea_ust_audio_emb_64.h5.gz")


@pytest.mark.parametrize("runtime", ["keras", "numpy"])
@pytest.mark.parametrize("golden", golden_files(), ids=lambda p: p.stem)
def test_golden_embedding(golden, runtime, sea64):
    """Through Keras (the loaded model) and through the TensorFlow-free NumPy runtime."""
    ref = np.load(golden)
    model = sea64 if runtime == "keras" else str(SEA64_GZ)
    audio, sr = sf.read(GOLDEN_DIR / str(ref["audio_path"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb, ts = edgel3.get_embedding(
            audio,
            sr,
            model=model,
            model_type="sea",
            emb_dim=64,
            center=bool(ref["center"]),
            hop_size=float(ref["hop_size"]),
            verbose=0,
            runtime=runtime,
        )
    assert emb.dtype == np.float32
    assert emb.shape == ref["embedding"].shape
    np.testing.assert_allclose(
        emb, ref["embedding"], rtol=0, atol=_tolerance(golden.name, ref["embedding"])
    )
    np.testing.assert_array_equal(ts, ref["timestamps"])
    assert [str(w.message) for w in caught if issubclass(w.category, edgel3.EdgeL3Warning)] == [
        str(m) for m in ref["warnings"]
    ]
    assert not [w for w in caught if not issubclass(w.category, edgel3.EdgeL3Warning)]


def test_golden_list_input_matches_single_calls(sea64):
    """A list in gives a list out, and cross-signal batching changes nothing."""
    names = ["chirp_8k", "synth_22050hz_10s_seed0", "chirp_stereo"]
    signals, rates, refs = [], [], []
    for name in names:
        ref = np.load(GOLDEN_DIR / f"{name}__center1_hop0p25.npz")
        audio, sr = sf.read(GOLDEN_DIR / str(ref["audio_path"]))
        signals.append(audio)
        rates.append(sr)
        refs.append(ref)
    embs, stamps = edgel3.get_embedding(
        signals, rates, model=sea64, hop_size=0.25, verbose=0, batch_size=7
    )
    assert isinstance(embs, list) and len(embs) == 3
    for emb, ts, ref, name in zip(embs, stamps, refs, names):
        np.testing.assert_allclose(
            emb, ref["embedding"], rtol=0, atol=_tolerance(name, ref["embedding"])
        )
        np.testing.assert_array_equal(ts, ref["timestamps"])


def test_empty_wav_raises_like_the_manifest(sea64):
    manifest = json.loads((GOLDEN_DIR / "manifest.json").read_text())
    audio, sr = sf.read(GOLDEN_DIR / "audio" / "empty.wav")
    with pytest.raises(EdgeL3Error, match="Got empty audio") as info:
        edgel3.get_embedding(audio, sr, model=sea64, verbose=0)
    assert isinstance(info.value, AudioError)
    assert str(info.value) in manifest["empty.wav"]
