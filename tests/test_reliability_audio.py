"""Issue 11, audio integrity: truncated files, all-zero and too-short files warn on every path.

A file holding less audio than its header declares (an interrupted copy or download) is
embedded from what is present with a :class:`TruncatedAudioWarning` naming both lengths,
or refused with ``strict=True``; nothing is invented for the missing part.
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np
import pytest
import soundfile as sf

import edgel3
from edgel3.engine import embed_path, file_windows
from edgel3.exceptions import AudioError, EdgeL3Warning, TruncatedAudioWarning
from edgel3.files import audio_info
from edgel3.reference import resolve_model

SR = 16000
DECLARED = 3 * SR  # the header's 3 s


@pytest.fixture(scope="module")
def tiny():
    """The bundled 8 kHz model: needs nothing from ../shared."""
    return resolve_model("tiny")


def _noise(seconds: float, sr: int = SR) -> np.ndarray:
    return 0.1 * np.random.default_rng(11).standard_normal(int(seconds * sr))


def _truncated(path, fmt: str = "WAV", subtype: str = "PCM_16"):
    """A 3-s file whose bytes are cut to half: the header still says 3 s."""
    sf.write(str(path), _noise(3), SR, format=fmt, subtype=subtype)
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    return str(path)


def _present(path) -> np.ndarray:
    """What soundfile decodes from the file: the only audio there is."""
    audio, sr = sf.read(str(path), dtype="float64")
    assert sr == SR
    return audio


def _lengths(frames: int) -> str:
    return f"{frames / SR:.3f} s ({frames} frames)"


# ------------------------------------------------------------------- the paths that read a file


def _embed_file(path, tmp_path, **kwargs):
    return edgel3.embed_file(path, model="tiny", **kwargs)


def _process_file(path, tmp_path, **kwargs):
    out = edgel3.process_file(
        path, output_dir=tmp_path / "out", model="tiny", verbose=False, **kwargs
    )
    saved = np.load(out)
    return saved["embedding"], saved["timestamps"]


def _embed_path(stream: bool):
    """embed_path read whole (``stream=False``) or block by block (``stream=True``)."""

    def run(path, tmp_path, **kwargs):
        options = dict(hop_size=0.1, center=True, batch_size=64, stream=stream)
        emb, ts, _ = embed_path(resolve_model("tiny"), path, **options, **kwargs)
        return emb, ts

    return run


PATHS = {
    "embed_file": _embed_file,
    "process_file": _process_file,
    "embed_path-whole": _embed_path(stream=False),
    "embed_path-streamed": _embed_path(stream=True),
}


def _edgel3_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, EdgeL3Warning)]


# ------------------------------------------------------------------- header vs data


@pytest.mark.parametrize(
    "fmt, ext, subtype, channels",
    [
        ("WAV", "wav", "PCM_16", 1),
        ("WAV", "wav", "PCM_16", 2),
        ("WAV", "wav", "FLOAT", 1),
        ("WAVEX", "wav", "PCM_24", 2),
        ("AIFF", "aiff", "PCM_16", 1),
        ("AIFF", "aiff", "PCM_24", 2),
        ("RF64", "rf64", "PCM_16", 1),
    ],
)
def test_audio_info_reports_the_declared_and_present_lengths(tmp_path, fmt, ext, subtype, channels):
    """libsndfile's own report (extra_info) gives the header's length; frames is what is there."""
    path = tmp_path / f"cut.{ext}"
    audio = _noise(3) if channels == 1 else np.stack([_noise(3)] * channels, 1)
    sf.write(str(path), audio, SR, format=fmt, subtype=subtype)
    intact = audio_info(path)
    assert (intact.frames, intact.declared_frames, intact.truncation) == (DECLARED, None, None)
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    info = audio_info(path)
    assert info.declared_frames == DECLARED
    assert info.frames == len(_present(path)) < DECLARED
    assert _lengths(DECLARED) in info.truncation and _lengths(info.frames) in info.truncation


@pytest.mark.parametrize("placeholder", [0xFFFFFFFF, 0x7FFFFFFF])
def test_unknown_length_placeholder_is_not_truncation(tmp_path, placeholder):
    """Writers of unseekable streams put "length unknown" sizes in the header: no warning."""
    path = tmp_path / "piped.wav"
    sf.write(str(path), _noise(2), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.find(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", placeholder)
    data[4:8] = struct.pack("<I", placeholder)
    path.write_bytes(bytes(data))
    info = audio_info(path)
    assert (info.frames, info.declared_frames) == (2 * SR, None)


# ------------------------------------------------------------------- truncated files


@pytest.mark.parametrize("how", PATHS)
def test_truncated_wav_is_embedded_from_what_is_present_with_a_warning(tmp_path, how):
    """Before: exit 0, no word. Now: a warning naming both lengths; rows from the present data."""
    path = _truncated(tmp_path / "cut.wav")
    present = _present(path)
    with pytest.warns(TruncatedAudioWarning) as caught:
        emb, ts = PATHS[how](path, tmp_path)
    (message,) = [str(w.message) for w in caught if w.category is TruncatedAudioWarning]
    assert path in message
    assert _lengths(DECLARED) in message and _lengths(len(present)) in message
    # Nothing invented: the rows are exactly those of the audio present.
    expected, expected_ts = edgel3.get_embedding(present, SR, model="tiny", verbose=0)
    whole, _ = edgel3.get_embedding(_noise(3), SR, model="tiny", verbose=0)
    assert len(emb) == len(expected) < len(whole)
    np.testing.assert_array_equal(ts, expected_ts)
    np.testing.assert_allclose(emb, expected, rtol=0, atol=1e-5 * max(1, np.abs(expected).max()))


@pytest.mark.parametrize("how", PATHS)
def test_truncated_wav_is_refused_when_strict(tmp_path, how):
    path = _truncated(tmp_path / "cut.wav")
    present = len(_present(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdgeL3Warning)  # refused, not warned
        with pytest.raises(AudioError, match="truncated") as raised:
            PATHS[how](path, tmp_path, strict=True)
    message = str(raised.value)
    assert "\n" not in message
    assert _lengths(DECLARED) in message and _lengths(present) in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("stream", [False, True])
def test_truncated_mp3_warns_the_same_whole_and_streamed(tmp_path, tiny, stream):
    """An MP3 header counts the whole stream; a cut file decodes to less. Before: silently
    embedded when read whole, "got X of Y frames" error when streamed."""
    path = _truncated(tmp_path / "cut.mp3", fmt="MP3", subtype="MPEG_LAYER_III")
    present = _present(path)
    options = dict(hop_size=0.1, center=True, batch_size=64, stream=stream)
    with pytest.warns(TruncatedAudioWarning, match="truncated") as caught:
        emb, ts, info = embed_path(tiny, path, **options)
    message = next(str(w.message) for w in caught if w.category is TruncatedAudioWarning)
    assert _lengths(DECLARED) in message and _lengths(len(present)) in message
    assert (info.frames, info.declared_frames) == (len(present), DECLARED)
    expected, _ = edgel3.get_embedding(present, SR, model="tiny", verbose=0)
    assert len(emb) == len(ts) == len(expected)
    with pytest.raises(AudioError, match=r"truncated.*refused \(strict\)"):
        embed_path(tiny, path, strict=True, **options)


@pytest.mark.parametrize("stream", [False, True])
def test_truncated_flac_is_refused_not_embedded(tmp_path, tiny, stream):
    """libsndfile cannot decode a cut FLAC to its end: an AudioError on both paths, never rows."""
    path = _truncated(tmp_path / "cut.flac", fmt="FLAC")
    with pytest.raises(AudioError, match="Could not read audio file"):
        embed_path(tiny, path, hop_size=0.1, center=True, batch_size=64, stream=stream)


def test_intact_file_gives_no_warning(tmp_path):
    path = str(tmp_path / "whole.wav")
    sf.write(path, _noise(3), SR, subtype="PCM_16")
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdgeL3Warning)
        expected, _ = edgel3.get_embedding(_present(path), SR, model="tiny", verbose=0)
        for how in PATHS.values():
            emb, _ = how(path, tmp_path)
            assert len(emb) == len(expected)
    assert audio_info(path).declared_frames is None


def test_calibration_windows_warn_about_a_truncated_file(tmp_path):
    path = _truncated(tmp_path / "cut.wav")
    with pytest.warns(TruncatedAudioWarning, match=r"3\.000 s \(48000 frames\)"):
        windows, short = file_windows(path, 8000, hop_size=0.5, center=False)
    intact = str(tmp_path / "present.wav")
    sf.write(intact, _present(path), SR, subtype="PCM_16")
    expected, _ = file_windows(intact, 8000, hop_size=0.5, center=False)
    assert not short
    np.testing.assert_array_equal(windows, expected)


def test_process_files_records_the_truncation_per_file(tmp_path):
    """Batch runs collect EdgeL3Warnings per file: the truncation is one of them."""
    path = _truncated(tmp_path / "cut.wav")
    (result,) = edgel3.process_files([path], output_dir=tmp_path / "out", model="tiny")
    assert result.status == "written"
    assert any("truncated" in w and _lengths(DECLARED) in w for w in result.warnings)


# ------------------------------------------------------------------- all zeros, too short


@pytest.mark.parametrize("how", PATHS)
@pytest.mark.parametrize(
    "case, audio, expected",
    [
        ("zeros", np.zeros(2 * SR), "Provided audio is all zeros"),
        ("short", _noise(0.5), "shorter than window size (1 second)"),
    ],
)
def test_all_zero_and_short_files_warn_on_every_path(tmp_path, how, case, audio, expected):
    path = str(tmp_path / f"{case}.wav")
    sf.write(path, audio, SR, subtype="PCM_16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb, _ = PATHS[how](path, tmp_path)
    messages = _edgel3_warnings(caught)
    assert [m for m in messages if expected in m], messages
    assert not [m for m in messages if "truncated" in m]
    assert len(emb) >= 1
