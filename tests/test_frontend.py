"""Tests of edgel3.frontend against docs/frontend.rst, the SEA-64 weight file and the goldens."""

from __future__ import annotations

import gzip
import io
import math
import re

import h5py
import numpy as np
import pytest
import scipy.fft
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from edgel3 import frontend, resample_kernel, stft
from edgel3 import resample as resample_module
from edgel3.exceptions import AudioError, ParameterError
from edgel3.specs import SEA_FRONTEND, SPARSE_FRONTEND

from .conftest import GOLDEN_DIR, SEA64_GZ, SHARED_AVAILABLE, golden_files

MELSPEC_GROUP = "model_weights/melspectrogram_1/melspectrogram_1/"


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sea64_melspec_weights():
    """(filterbank, real_kernels, imag_kernels) stored in the SEA-64 h5."""
    with gzip.open(SEA64_GZ, "rb") as fh:
        data = fh.read()
    with h5py.File(io.BytesIO(data), "r") as h5:
        return tuple(
            h5[MELSPEC_GROUP + name][()]
            for name in ("Variable:0", "real_kernels:0", "imag_kernels:0")
        )


def _unique_golden_inputs():
    """One (audio_path, sr, golden file) per distinct input; the 4 settings share it."""
    seen = {}
    files = golden_files()
    if not SHARED_AVAILABLE:
        return [pytest.param(None, None, None, marks=pytest.mark.shared, id="no-shared")]
    for path in files:
        with np.load(path) as g:
            key = (str(g["audio_path"]), int(g["sr"]))
        seen.setdefault(key, path)
    return [pytest.param(path, key[0], key[1], id=key[0]) for key, path in seen.items()]


def _golden_input(audio_path: str):
    audio, sr = sf.read(GOLDEN_DIR / audio_path)
    return frontend.downmix(audio), sr


def _naive_frames(audio, sr, hop_len, center):
    """Literal transcription of docs/frontend.rst §3 with a Python loop."""
    signal = list(audio)
    if center:
        signal = [0.0] * int(sr / 2) + signal
    length = len(signal)
    if length < sr:
        signal += [0.0] * (sr - length)
    else:
        signal += [0.0] * (math.ceil((length - sr) / hop_len) * hop_len - (length - sr))
    n_frames = 1 + int((len(signal) - sr) / hop_len)
    return np.array([signal[i * hop_len : i * hop_len + sr] for i in range(n_frames)])


def re_shape(shape):
    """Regex matching a shape as it appears in an error message."""
    return re.escape(str(shape))


def _noise_windows(rng, n, config):
    return rng.standard_normal((n, config.frame_length))


# ---------------------------------------------------------------------------
# Downmix
# ---------------------------------------------------------------------------


def test_downmix_mono_float64_is_not_copied():
    x = np.arange(5, dtype=np.float64)
    assert frontend.downmix(x) is x


def test_downmix_mono_other_dtype_becomes_float64():
    x = np.array([1, -2, 3], dtype=np.int16)
    y = frontend.downmix(x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [1.0, -2.0, 3.0])


def test_downmix_stereo_is_channel_mean(rng):
    x = rng.standard_normal((100, 2)).astype(np.float32)
    before = x.copy()
    y = frontend.downmix(x)
    assert y.dtype == np.float64 and y.shape == (100,)
    # Same float64 operations as the definition, so exact.
    np.testing.assert_array_equal(y, (x[:, 0].astype(np.float64) + x[:, 1]) / 2)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("shape", [(4, 2, 2), ()])
def test_downmix_bad_ndim(shape):
    with pytest.raises(AudioError, match=re_shape(shape)):
        frontend.downmix(np.zeros(shape))


# ---------------------------------------------------------------------------
# Legacy resampler
# ---------------------------------------------------------------------------


def test_filter_table_matches_description():
    table, delta = resample_kernel.legacy_table()
    assert table.shape == (64 * 512 + 1,) == (32769,)
    assert table.dtype == np.float64
    # Centre of the Kaiser taper is exactly 1 and sinc(0) = 1.
    assert table[0] == 0.9475937167399596
    # Zero crossings of rolloff*sinc(rolloff*t) fall between table points; the
    # tail is tapered to a tiny value.
    assert abs(table[-1]) < 1e-6
    np.testing.assert_array_equal(delta[:-1], np.diff(table))
    assert delta[-1] == 0
    assert not table.flags.writeable and not delta.flags.writeable


def test_downsampling_leaves_cached_table_untouched(rng):
    table = resample_kernel.legacy_table()[0].copy()
    frontend.resample_legacy(rng.standard_normal(480), 48000, 8000)
    np.testing.assert_array_equal(resample_kernel.legacy_table()[0], table)


@pytest.mark.parametrize("path, audio_path, sr", _unique_golden_inputs())
def test_resample_legacy_matches_golden_audio_target(path, audio_path, sr):
    audio, file_sr = _golden_input(audio_path)
    assert file_sr == sr
    with np.load(path) as g:
        target = g["audio_target"]
    y = frontend.resample_legacy(audio, sr, 8000)
    assert y.shape == target.shape and y.dtype == np.float64
    # Same float64 operations in the same order: measured <= 2.2e-16 (one ulp
    # of the summands); 1e-9 is the project's parity bound (docs/frontend.rst §7).
    np.testing.assert_allclose(y, target, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "sr_orig, sr_new",
    [
        (44100, 8000),
        (22050, 8000),
        (48000, 8000),  # integer increment
        (96000, 8000),
        (8000, 48000),  # upsampling: step = 512
        (8000, 44100),
        (44100, 48000),
    ],
)
def test_numba_and_numpy_backends_agree(rng, sr_orig, sr_new):
    pytest.importorskip("numba")
    x = rng.standard_normal(int(0.3 * sr_orig))
    y_numba = resample_module._resample_legacy(x, sr_orig, sr_new, backend="numba")
    y_numpy = resample_module._resample_legacy(x, sr_orig, sr_new, backend="numpy")
    # Both sum the same products in the same order (measured: bit-identical);
    # 1e-12 leaves room for a compiler fusing a multiply-add.
    np.testing.assert_allclose(y_numba, y_numpy, rtol=0, atol=1e-12)


def test_time_register_is_a_sequential_accumulation():
    inc = 44100 / 8000
    expected = np.empty(20000)
    tr = 0.0
    for t in range(expected.size):
        expected[t] = tr
        tr += inc
    # Exact: np.cumsum must reproduce the original's float64 `tr += inc`.
    np.testing.assert_array_equal(resample_module.time_register(expected.size, inc), expected)


@pytest.mark.shared
def test_accumulated_register_matters_for_44k():
    """resampy >= 0.3's `t * inc` register is measurably not the official one."""
    inc = 1.0 / (8000 / 44100)
    n_out = 16000
    assert not np.array_equal(resample_module.time_register(n_out, inc), np.arange(n_out) * inc)
    audio, sr = _golden_input("audio/chirp_44k.wav")
    with np.load(GOLDEN_DIR / "chirp_44k__center1_hop0p10.npz") as g:
        target = g["audio_target"]
    accumulated = resample_module._resample_legacy(audio, sr, 8000, register="accumulated")
    multiplied = resample_module._resample_legacy(audio, sr, 8000, register="multiplied")
    # 1e-9: parity bound; the multiplied register is off by ~5.7e-4 (docs/frontend.rst §2).
    assert np.abs(accumulated - target).max() <= 1e-9
    assert np.abs(multiplied - target).max() > 1e-4


def test_resample_legacy_too_short():
    with pytest.raises(AudioError, match=r"too short to resample: 5 samples.*48000.*8000"):
        frontend.resample_legacy(np.ones(5), 48000, 8000)
    assert frontend.resample_legacy(np.ones(6), 48000, 8000).shape == (1,)


def test_resample_legacy_equal_rates_returns_copy():
    x = np.linspace(-1, 1, 100)
    y = frontend.resample_legacy(x, 8000, 8000)
    assert y is not x and not np.shares_memory(x, y)
    np.testing.assert_array_equal(x, y)


def test_resample_legacy_does_not_mutate_input(rng):
    x = rng.standard_normal(1000)
    before = x.copy()
    frontend.resample_legacy(x, 22050, 8000)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("sr_orig, sr_new", [(0, 8000), (44100, -1), ("44100", 8000), (True, 8000)])
def test_resample_legacy_bad_rates(sr_orig, sr_new):
    with pytest.raises(ParameterError, match="sample rate"):
        frontend.resample_legacy(np.ones(100), sr_orig, sr_new)


def test_resample_legacy_rejects_multichannel():
    with pytest.raises(AudioError, match=r"\(100, 2\)"):
        frontend.resample_legacy(np.ones((100, 2)), 44100, 8000)


def test_resample_fast_path_is_not_exact(rng):
    x = rng.standard_normal(4410)
    exact = frontend.resample(x, 44100, 8000)
    fast = frontend.resample(x, 44100, 8000, exact=False)
    np.testing.assert_array_equal(exact, frontend.resample_legacy(x, 44100, 8000))
    assert fast.shape == exact.shape == (800,)
    # Different filter: the two must differ clearly (well above rounding).
    assert np.abs(fast - exact).max() > 1e-3


# ---------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hop_size, sr, expected",
    [
        (0.29, 48000, 13919),
        (0.57, 48000, 27359),
        (0.29, 8000, 2320),
        (0.1, 8000, 800),
        (0.25, 8000, 2000),
        (1 / 8000, 8000, 1),
    ],
)
def test_hop_length_truncates(hop_size, sr, expected):
    assert frontend.hop_length(hop_size, sr) == expected


@pytest.mark.parametrize("hop_size", [0, -1, -0.1, float("nan"), float("inf"), "0.1", None, True])
def test_hop_length_rejects_non_positive(hop_size):
    with pytest.raises(ParameterError, match="hop_size must be a positive number"):
        frontend.hop_length(hop_size, 8000)


def test_hop_length_shorter_than_one_sample():
    with pytest.raises(
        ParameterError, match=r"hop_size=0\.0001 is shorter than one sample at sr=8000"
    ):
        frontend.hop_length(1e-4, 8000)


# (n_samples at 8 kHz, center, hop_size, expected windows) -- docs/frontend.rst §3.
WINDOW_COUNTS = [
    (80000, True, 0.1, 96),
    (80000, False, 0.1, 91),
    (80000, True, 0.25, 39),
    (80000, False, 0.25, 37),
    (16000, True, 0.1, 16),
    (16000, True, 0.25, 7),
    (16000, False, 0.1, 11),
    (16000, False, 0.25, 5),
    (8, True, 0.1, 1),
    (8, True, 0.25, 1),
    (8, False, 0.1, 1),
    (8, False, 0.25, 1),
]


@pytest.mark.parametrize("n_samples, center, hop_size, expected", WINDOW_COUNTS)
def test_window_counts_and_timestamps(n_samples, center, hop_size, expected):
    hop_len = frontend.hop_length(hop_size, 8000)
    assert frontend.n_windows(n_samples, 8000, hop_len, center) == expected
    windows = frontend.frame_audio(np.ones(n_samples), 8000, hop_size=hop_size, center=center)
    assert windows.shape == (expected, 8000)
    ts = frontend.timestamps(expected, hop_size)
    assert ts.dtype == np.float64
    np.testing.assert_array_equal(ts, np.arange(expected) * hop_size)


def test_last_centred_window_of_10s_is_at_9p5s():
    assert frontend.timestamps(96, 0.1)[-1] == 9.5


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.stem)
def test_window_counts_and_timestamps_match_goldens(path):
    with np.load(path) as g:
        n_samples = g["audio_target"].shape[0]
        hop_size, center = float(g["hop_size"]), bool(g["center"])
        hop_len = frontend.hop_length(hop_size, 8000)
        assert hop_len == int(g["hop_len"])
        n = frontend.n_windows(n_samples, 8000, hop_len, center)
        assert n == g["embedding"].shape[0]
        # Timestamps are exact (docs/frontend.rst §7).
        np.testing.assert_array_equal(frontend.timestamps(n, hop_size), g["timestamps"])


@pytest.mark.parametrize(
    "n_samples, sr, hop_size, center",
    [
        (80000, 8000, 0.1, True),
        (80000, 8000, 0.25, False),
        (8123, 8000, 0.29, True),
        (7999, 8000, 0.1, False),
        (1, 8000, 0.25, True),
        (100000, 48000, 0.29, True),
        (96001, 48000, 0.57, False),
    ],
)
def test_frames_match_naive_reference(rng, n_samples, sr, hop_size, center):
    audio = rng.standard_normal(n_samples)
    before = audio.copy()
    windows = frontend.frame_audio(audio, sr, hop_size=hop_size, center=center)
    expected = _naive_frames(audio, sr, frontend.hop_length(hop_size, sr), center)
    np.testing.assert_array_equal(windows, expected)
    np.testing.assert_array_equal(audio, before)


def test_frame_audio_returns_read_only_view():
    windows = frontend.frame_audio(np.ones(20000), 8000, hop_size=0.1, center=True)
    assert windows.dtype == np.float64
    assert not windows.flags.writeable
    assert np.shares_memory(windows[0], windows[1])  # overlapping view, not copies


def test_centre_pads_front_only():
    # 2 s + 0.5 s of centring = 20000; (20000 - 8000) is a whole number of
    # 2000-sample hops, so nothing at all is appended.
    windows = frontend.frame_audio(np.ones(16000), 8000, hop_size=0.25, center=True)
    assert windows.shape == (7, 8000)
    assert np.all(windows[0, :4000] == 0) and np.all(windows[0, 4000:] == 1)
    assert np.all(windows[-1] == 1)
    uncentred = frontend.frame_audio(np.ones(16000), 8000, hop_size=0.25, center=False)
    assert np.all(uncentred == 1)


def test_short_audio_is_padded_to_one_window():
    windows = frontend.frame_audio(np.ones(8), 8000, hop_size=0.1, center=False)
    assert windows.shape == (1, 8000)
    assert windows[0, :8].sum() == 8 and np.all(windows[0, 8:] == 0)


# ---------------------------------------------------------------------------
# Mel spectrogram
# ---------------------------------------------------------------------------


@pytest.mark.shared
def test_filterbank_is_bit_identical_to_h5(sea64_melspec_weights):
    stored = sea64_melspec_weights[0]
    fb = frontend.mel_filterbank(SEA_FRONTEND)
    assert fb.dtype == np.float32 and fb.shape == (513, 64)
    np.testing.assert_array_equal(fb, stored)


@pytest.mark.shared
def test_dft_kernels_match_h5(sea64_melspec_weights):
    real, imag = frontend.dft_kernels(SEA_FRONTEND)
    for mine, stored in zip((real, imag), sea64_melspec_weights[1:], strict=True):
        assert mine.dtype == np.float32 and mine.shape == stored.shape == (1024, 1, 1, 513)
        # Measured bit-identical; 2e-9 is docs/frontend.rst §7's allowance for a
        # different libm cos/sin rounding one float64 ulp the other way.
        np.testing.assert_allclose(mine, stored, rtol=0, atol=2e-9)


def test_hann_window_is_periodic():
    w = frontend.hann_window(1024)
    assert w.dtype == np.float32 and w[0] == 0 and w[512] == 1
    # float32 rounding of the float64 formula.
    np.testing.assert_allclose(
        w, 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024), rtol=0, atol=6e-8
    )


@pytest.mark.parametrize("config", [SEA_FRONTEND, SPARSE_FRONTEND], ids=["sea", "sparse"])
def test_filterbank_dc_and_nyquist_have_no_weight(config):
    fb = frontend.mel_filterbank(config)
    assert not fb[0].any() and not fb[-1].any()


def test_48k_filterbank_has_empty_filters_0_and_7():
    fb = frontend.mel_filterbank(SPARSE_FRONTEND)
    assert fb.shape == (1025, 256) and fb.dtype == np.float32
    np.testing.assert_array_equal(np.flatnonzero(~fb.any(axis=0)), [0, 7])


def test_filterbank_returns_a_fresh_array():
    fb = frontend.mel_filterbank(SEA_FRONTEND)
    fb[:] = 0
    assert frontend.mel_filterbank(SEA_FRONTEND).any()


@pytest.mark.parametrize(
    "config, padding, n_frames, shape",
    [
        (SEA_FRONTEND, (432, 432), 50, (64, 50, 1)),
        (SPARSE_FRONTEND, (982, 982), 199, (256, 199, 1)),
    ],
    ids=["sea", "sparse"],
)
def test_padding_frames_and_output_shape(rng, config, padding, n_frames, shape):
    assert config.same_padding == padding
    assert config.n_frames == n_frames
    out = frontend.melspectrogram(_noise_windows(rng, 1, config), config)
    assert out.shape == (1, *shape) and out.dtype == np.float32
    assert out.max() == 0 and out.min() >= -80


@pytest.mark.parametrize("config", [SEA_FRONTEND, SPARSE_FRONTEND], ids=["sea", "sparse"])
def test_all_zero_window_gives_all_zeros(rng, config):
    windows = np.zeros((2, config.frame_length))
    windows[1] = rng.standard_normal(config.frame_length)
    out = frontend.melspectrogram(windows, config)
    np.testing.assert_array_equal(out[0], 0)
    assert out[1].min() < 0


def test_48k_empty_filters_sit_at_the_floor(rng):
    out = frontend.melspectrogram(_noise_windows(rng, 1, SPARSE_FRONTEND), SPARSE_FRONTEND)
    np.testing.assert_array_equal(out[0, [0, 7]], -80)


def test_max_is_per_window(rng):
    windows = _noise_windows(rng, 3, SEA_FRONTEND) * np.array([[1e-3], [1.0], [30.0]])
    together = frontend.melspectrogram(windows, SEA_FRONTEND)
    alone = np.concatenate([frontend.melspectrogram(w[None], SEA_FRONTEND) for w in windows])
    np.testing.assert_array_equal(together.max(axis=(1, 2, 3)), 0)
    # Each window is transformed on its own; only BLAS blocking could differ
    # between batch sizes, i.e. float32 rounding of a ~-80..0 dB value (~1e-5).
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("gain", [1e-3, 10.0])
def test_gain_invariance(rng, gain):
    windows = _noise_windows(rng, 2, SEA_FRONTEND)
    ref = frontend.melspectrogram(windows, SEA_FRONTEND)
    scaled = frontend.melspectrogram(windows * gain, SEA_FRONTEND)
    # A gain only shifts log values before the max is removed; what remains is
    # float32 rounding of numbers up to ~100 dB (ulp ~8e-6), a few ulps.
    np.testing.assert_allclose(scaled, ref, rtol=0, atol=5e-5)


def test_float32_and_float64_windows_agree(rng):
    windows = _noise_windows(rng, 2, SEA_FRONTEND)
    np.testing.assert_array_equal(
        frontend.melspectrogram(windows, SEA_FRONTEND),
        frontend.melspectrogram(windows.astype(np.float32), SEA_FRONTEND),
    )


@pytest.mark.shared
def test_stored_filterbank_gives_same_result(rng, sea64_melspec_weights):
    windows = _noise_windows(rng, 2, SEA_FRONTEND)
    np.testing.assert_array_equal(
        frontend.melspectrogram(windows, SEA_FRONTEND),
        frontend.melspectrogram(windows, SEA_FRONTEND, filterbank=sea64_melspec_weights[0]),
    )


def test_tone_peaks_in_band_16():
    t = np.arange(8000) / 8000
    out = frontend.melspectrogram(np.sin(2 * np.pi * 440 * t)[None], SEA_FRONTEND)
    assert int(out[0, :, 25, 0].argmax()) == 16


@pytest.mark.parametrize(
    "shape, config",
    [((8000,), SEA_FRONTEND), ((2, 48000), SEA_FRONTEND), ((1, 8000), SPARSE_FRONTEND)],
)
def test_melspectrogram_rejects_wrong_window_shape(shape, config):
    with pytest.raises(ParameterError, match=re_shape(shape)):
        frontend.melspectrogram(np.zeros(shape), config)


def test_melspectrogram_rejects_wrong_filterbank():
    with pytest.raises(ParameterError, match=r"\(513, 64\)"):
        frontend.melspectrogram(np.zeros((1, 8000)), SEA_FRONTEND, filterbank=np.zeros((64, 513)))


# ---------------------------------------------------------------------------
# melspectrogram: bit for bit what the straightforward implementation gives
# ---------------------------------------------------------------------------


def _reference_melspectrogram(windows, config, filterbank=None):
    """The straightforward edgel3 implementation the fast one replaced, verbatim.

    Whole-chunk temporaries (frames * window, re² + im²) for up to 2**22 elements;
    ``frontend.melspectrogram`` must give exactly its bits.
    """
    if filterbank is None:
        fb = frontend.mel_filterbank(config)
    else:
        fb = np.asarray(filterbank, dtype=np.float32)
    window = frontend.hann_window(config.n_dft)
    pad_left, pad_right = config.same_padding
    amin = np.float32(1e-10)
    ten = np.float32(10.0)
    ln10 = np.float32(np.log(10.0))
    n_frames = config.n_frames
    out = np.empty((windows.shape[0], config.n_mels, n_frames, 1), dtype=np.float32)
    chunk = max(1, 2**22 // (n_frames * config.n_dft))
    for start in range(0, windows.shape[0], chunk):
        block = windows[start : start + chunk]
        padded = np.zeros(
            (block.shape[0], pad_left + config.frame_length + pad_right), dtype=np.float32
        )
        padded[:, pad_left : pad_left + config.frame_length] = block
        frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_dft, axis=1)
        frames = frames[:, :: config.n_hop]
        spec = scipy.fft.rfft(frames * window, axis=-1, workers=-1)
        power = spec.real * spec.real + spec.imag * spec.imag
        amplitude = np.sqrt(power @ fb)
        log_spec = ten * np.log(np.maximum(amplitude, amin)) / ln10
        log_spec -= log_spec.max(axis=(1, 2), keepdims=True)
        np.maximum(log_spec, np.float32(-80.0), out=log_spec)
        out[start : start + block.shape[0], :, :, 0] = log_spec.transpose(0, 2, 1)
    return out


def _assert_same_bits(windows, config, blas_threads, filterbank=None, fft_workers=-1):
    """The front end, with BLAS at ``blas_threads``, gives the reference's one-thread bits.

    The mel matmul's last bits depend on the BLAS thread count (its K blocking);
    ``melspectrogram`` runs it on one thread whatever the setting (edgel3.blas), so
    its output is the reference's on one thread. ``None`` leaves the default (all cores).
    """
    with threadpool_limits(1, user_api="blas"):
        expected = _reference_melspectrogram(windows, config, filterbank)
    with threadpool_limits(blas_threads, user_api="blas"):
        actual = frontend.melspectrogram(
            windows, config, filterbank=filterbank, fft_workers=fft_workers
        )
    assert actual.shape == expected.shape and actual.dtype == np.float32
    # array_equal, not allclose: not one bit may move. NaN never occurs here.
    assert np.array_equal(actual, expected), float(np.max(np.abs(actual - expected)))


@st.composite
def _window_batches(draw, config, max_windows):
    """Batches of noise (peak 1e-6 to 10), all-zero and single-sample windows."""
    length = config.frame_length
    n = draw(st.integers(0, max_windows))
    kinds = draw(st.lists(st.sampled_from(["noise", "zero", "impulse"]), min_size=n, max_size=n))
    log_gains = draw(st.lists(st.floats(-6.0, 1.0), min_size=n, max_size=n))
    positions = draw(
        st.lists(
            st.one_of(st.sampled_from([0, length - 1]), st.integers(0, length - 1)),
            min_size=n,
            max_size=n,
        )
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    windows = np.zeros((n, length))
    for row, kind, log_gain, position in zip(windows, kinds, log_gains, positions):
        gain = 10.0**log_gain
        if kind == "noise":
            noise = rng.standard_normal(length)
            row[:] = gain * noise / np.abs(noise).max()
        elif kind == "impulse":
            row[position] = gain * rng.choice([-1.0, 1.0])
    return windows.astype(draw(st.sampled_from([np.float32, np.float64])))


# Sizes reach past several groups of windows (81 at 8 kHz, 10 at 48 kHz) and blocks.
_BIT_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.data_too_large])


@pytest.mark.parametrize("blas_threads", [None, 1], ids=["blas-default", "blas-1"])
@settings(_BIT_SETTINGS, max_examples=30)
@given(windows=_window_batches(SEA_FRONTEND, max_windows=180))
def test_melspectrogram_bits_sea(windows, blas_threads):
    _assert_same_bits(windows, SEA_FRONTEND, blas_threads)


@pytest.mark.parametrize("blas_threads", [None, 1], ids=["blas-default", "blas-1"])
@settings(_BIT_SETTINGS, max_examples=12)
@given(windows=_window_batches(SPARSE_FRONTEND, max_windows=23))
def test_melspectrogram_bits_sparse(windows, blas_threads):
    _assert_same_bits(windows, SPARSE_FRONTEND, blas_threads)


@st.composite
def _overlapping_batches(draw, config, max_windows):
    """Batches of runs cut from signals (hops on and off the STFT hop), silence, repeats.

    What :func:`edgel3.stft.frame_runs` must get right: the windows of one signal at a
    whole number of STFT hops share frames, everything else is transformed alone.
    """
    length, n_hop = config.frame_length, config.n_hop
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    parts, total = [], 0
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, max(1, max_windows - total)))
        kind = draw(st.sampled_from(["stft-hops", "other-hop", "silence", "repeat", "gaps"]))
        if kind == "silence":
            part = np.zeros((n, length))
        elif kind == "repeat":
            part = np.repeat(rng.standard_normal((1, length)), n, axis=0)
        else:
            if kind == "other-hop":
                hop = draw(st.integers(1, length))
            else:  # up to past the frames two windows can share
                hop = n_hop * draw(st.integers(1, config.n_frames + 1))
            signal = rng.standard_normal((n - 1) * hop + length) * 10.0 ** draw(
                st.floats(-6.0, 1.0)
            )
            if kind == "gaps":  # silent stretches: many shifts pass the first-sample screen
                for start in rng.integers(0, signal.shape[0], size=4):
                    signal[start : start + draw(st.integers(1, 3 * length))] = 0.0
            part = np.lib.stride_tricks.sliding_window_view(signal, length)[::hop][:n]
        parts.append(part)
        total += n
        if total >= max_windows:
            break
    windows = np.concatenate(parts)
    return windows.astype(draw(st.sampled_from([np.float32, np.float64])))


@pytest.mark.parametrize("config", [SEA_FRONTEND, SPARSE_FRONTEND], ids=["sea", "sparse"])
@settings(_BIT_SETTINGS, max_examples=30)
@given(data=st.data())
def test_shared_frames_and_fft_threads_keep_each_windows_bits(config, data):
    """Runs of overlapping windows (frames computed once) or unrelated ones, the FFT on one
    thread (the NumPy runtime's chunk threads) or all: each window's bits as if alone."""
    sea = config is SEA_FRONTEND
    windows = data.draw(
        st.one_of(
            _overlapping_batches(config, max_windows=40 if sea else 8),
            _window_batches(config, max_windows=100 if sea else 12),
        )
    )
    _assert_same_bits(windows, config, None, fft_workers=data.draw(st.sampled_from([1, -1])))


def test_frame_runs_follow_the_signal(rng):
    """Runs at 0.1 s (five STFT hops at 8 kHz), none at 0.05 s; clips split."""
    clip = rng.standard_normal(3 * 8000)
    at_100ms = frontend.frame_audio(clip, 8000, hop_size=0.1, center=True)
    assert stft.frame_runs(at_100ms, SEA_FRONTEND) == [(0, len(at_100ms), 800)]
    at_50ms = frontend.frame_audio(clip, 8000, hop_size=0.05, center=True)
    assert all(shift == 0 for _, _, shift in stft.frame_runs(at_50ms, SEA_FRONTEND))
    other = frontend.frame_audio(rng.standard_normal(8000), 8000, hop_size=0.1, center=False)
    both = np.concatenate([at_100ms[:5], other, at_100ms[5:7]])
    assert stft.frame_runs(both, SEA_FRONTEND) == [(0, 5, 800), (5, 6, 0), (6, 8, 800)]
    # Every whole number of STFT hops up to the last one two windows share frames at.
    first, last = stft.interior_frames(SEA_FRONTEND)
    long = rng.standard_normal(8000 + 3 * (last - first + 2) * SEA_FRONTEND.n_hop)
    for hops in range(1, last - first + 3):
        hop = hops * SEA_FRONTEND.n_hop
        windows = np.lib.stride_tricks.sliding_window_view(long, 8000)[::hop][:4]
        expected = [(0, 4, hop)] if hops <= last - first else [(i, i + 1, 0) for i in range(4)]
        assert stft.frame_runs(windows, SEA_FRONTEND) == expected, hops
    # 48 kHz: 0.1 s is 4800 samples, not a whole number of 242-sample hops.
    sparse = frontend.frame_audio(rng.standard_normal(2 * 48000), 48000, hop_size=0.1, center=True)
    assert all(shift == 0 for _, _, shift in stft.frame_runs(sparse, SPARSE_FRONTEND))


def test_interior_frames_read_no_padding():
    for config in (SEA_FRONTEND, SPARSE_FRONTEND):
        first, last = stft.interior_frames(config)
        pad_left = config.same_padding[0]
        assert first * config.n_hop >= pad_left > (first - 1) * config.n_hop
        end = last * config.n_hop - pad_left + config.n_dft
        assert end <= config.frame_length < end + config.n_hop


@pytest.mark.parametrize("blas_threads", [None, 1], ids=["blas-default", "blas-1"])
@pytest.mark.parametrize("config", [SEA_FRONTEND, SPARSE_FRONTEND], ids=["sea", "sparse"])
def test_melspectrogram_bits_on_framed_audio(rng, config, blas_threads):
    """frame_audio's read-only, overlapping float64 view, past a group boundary."""
    seconds = 12 if config is SEA_FRONTEND else 4
    audio = rng.standard_normal(seconds * config.sample_rate) * 0.1
    windows = frontend.frame_audio(audio, config.sample_rate, hop_size=0.1, center=True)
    assert not windows.flags.writeable and len(windows) > 2**22 // (config.n_frames * config.n_dft)
    _assert_same_bits(windows, config, blas_threads)


@pytest.mark.parametrize(
    "layout",
    [np.ascontiguousarray, np.asfortranarray, lambda fb: fb.astype(np.float64)],
    ids=["c-order", "fortran-order", "float64"],
)
def test_melspectrogram_bits_with_given_filterbank(rng, layout):
    """A filterbank passed in (e.g. read from a weight file) reaches BLAS as before."""
    filterbank = layout(frontend.mel_filterbank(SEA_FRONTEND))
    windows = _noise_windows(rng, 5, SEA_FRONTEND)
    _assert_same_bits(windows, SEA_FRONTEND, None, filterbank=filterbank)


@pytest.mark.parametrize("config", [SEA_FRONTEND, SPARSE_FRONTEND], ids=["sea", "sparse"])
def test_melspectrogram_of_no_windows(config):
    out = frontend.melspectrogram(np.zeros((0, config.frame_length)), config)
    assert out.shape == (0, config.n_mels, config.n_frames, 1) and out.dtype == np.float32


def test_melspectrogram_does_not_modify_its_input(rng):
    windows = _noise_windows(rng, 3, SEA_FRONTEND).astype(np.float32)
    before = windows.copy()
    frontend.melspectrogram(windows, SEA_FRONTEND)
    np.testing.assert_array_equal(windows, before)


# Level-aware bounds (dB) for the chirp, whose low cells are float32 rounding
# noise of the TF conv vs our FFT (docs/frontend.rst §7): measured max 5.7e-6 above
# -20, 4.5e-4 in [-40, -20), 4.3e-3 in [-50, -40), 0.035 below.
CHIRP_BOUNDS = [(-20, 1e-4), (-40, 2e-3), (-50, 2e-2), (-80.5, 0.1)]
# Noise fills the floor with real content: measured <= 3.1e-5 everywhere.
SYNTH_BOUNDS = [(-80.5, 1e-4)]


@pytest.mark.parametrize(
    "name, bounds",
    [
        ("chirp_8k__center0_hop0p10", CHIRP_BOUNDS),
        ("synth_22050hz_10s_seed0__center1_hop0p25", SYNTH_BOUNDS),
    ],
)
@pytest.mark.shared
def test_melspectrogram_matches_intermediate_golden(name, bounds):
    with np.load(GOLDEN_DIR / f"intermediate_melspec__{name}.npz") as g:
        golden = g["melspec"]
    with np.load(GOLDEN_DIR / f"{name}.npz") as g:
        audio_target = g["audio_target"]
        hop_size, center = float(g["hop_size"]), bool(g["center"])
    windows = frontend.frame_audio(audio_target, 8000, hop_size=hop_size, center=center)
    out = frontend.melspectrogram(windows, SEA_FRONTEND)
    assert out.shape == golden.shape
    # Structure: every window peaks at exactly 0 in the same cell, the floor
    # cells coincide.
    np.testing.assert_array_equal(out.max(axis=(1, 2, 3)), 0)
    np.testing.assert_array_equal(golden.max(axis=(1, 2, 3)), 0)
    flat_out, flat_golden = out.reshape(len(out), -1), golden.reshape(len(golden), -1)
    np.testing.assert_array_equal(flat_out.argmax(axis=1), flat_golden.argmax(axis=1))
    np.testing.assert_array_equal(out == -80, golden == -80)
    upper = np.inf
    for lower, atol in bounds:
        cells = (golden > lower) & (golden <= upper)
        np.testing.assert_allclose(
            out[cells],
            golden[cells],
            rtol=0,
            atol=atol,
            err_msg=f"golden cells in ({lower}, {upper}] dB",
        )
        upper = lower


def test_resample_legacy_falls_back_to_numpy_without_numba(rng, monkeypatch):
    x = rng.standard_normal(2205)
    expected = resample_module._resample_legacy(x, 22050, 8000, backend="numpy")
    monkeypatch.setattr(resample_kernel, "_NUMBA_KERNEL", False)  # as if numba were missing
    np.testing.assert_array_equal(frontend.resample_legacy(x, 22050, 8000), expected)


@pytest.mark.parametrize("n_dft", [256, 400, 512, 1024, 2048, 4096])
def test_hann_window_is_scipys_bit_for_bit(n_dft):
    import scipy.signal

    expected = scipy.signal.get_window("hann", n_dft, fftbins=True).astype(np.float32)
    np.testing.assert_array_equal(frontend.hann_window(n_dft), expected)
