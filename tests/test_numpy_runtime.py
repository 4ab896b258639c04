"""The TensorFlow-free NumPy runtime (issue 13): same numbers as Keras, no TensorFlow.

Tolerance: 1e-5 of the embedding's scale (max |value|), the project's bound for two
float32 executions of one network that sum in different orders (docs/runtime.rst).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgel3
from edgel3 import resample_kernel
from edgel3.exceptions import ParameterError
from edgel3.legacy_h5 import save_legacy_h5
from edgel3.numpy_runtime import NumpyRunner
from edgel3.reference import resolve_model
from edgel3.specs import get_spec

from .conftest import RELATIVE_TOLERANCE, SEA64_GZ, randomise_bn

LAYOUTS = [
    pytest.param("sea-512", 0.0, id="sea-512"),
    pytest.param("sea-256", 0.0, id="sea-256"),
    pytest.param("sea-128", 0.0, id="sea-128"),
    pytest.param("sea-64", 0.0, id="sea-64"),
    pytest.param("sparse-ft-95.45", 0.9545, id="sparse-95.45"),
    pytest.param("sparse-kd-53.5", 0.535, id="sparse-53.5"),
]


def random_weight_file(name: str, sparsity: float, folder, rng):
    """A random-weight file of an official layout (pruned at random to ``sparsity``)."""
    import keras

    from edgel3.networks import build_model

    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    model = build_model(get_spec(name))
    randomise_bn(model, rng)
    if sparsity:
        for layer in model.layers:
            if isinstance(layer, keras.layers.Conv2D):
                kernel, bias = layer.get_weights()
                keep = rng.random(kernel.shape) >= sparsity
                layer.set_weights([kernel * keep, bias + rng.normal(0, 0.01, bias.shape)])
    path = folder / f"random_{name}.h5"  # not an official name: not hash-checked
    save_legacy_h5(model, path, compress=False)
    return model, path


@pytest.mark.parametrize(("name", "sparsity"), LAYOUTS)
def test_runtime_equals_keras_on_every_official_layout(name, sparsity, tmp_path, rng):
    model, path = random_weight_file(name, sparsity, tmp_path, rng)
    runner = NumpyRunner(path)
    assert (runner.sample_rate, runner.embedding_size) == (
        get_spec(name).sample_rate,
        get_spec(name).emb_dim,
    )
    windows = rng.standard_normal((3, 1, runner.sample_rate)).astype(np.float32) * 0.1
    windows[2] *= 1e-3  # a quiet window: the front end's per-window normalisation
    expected = np.asarray(model.predict_on_batch(windows))
    for strategy in ("auto", "dense"):
        got = NumpyRunner(path, strategy=strategy).predict_on_batch(windows)
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(got, expected, rtol=0, atol=RELATIVE_TOLERANCE * scale)


def test_auto_runtime_rule(tmp_path, rng, monkeypatch):
    """'auto': every legacy file (official models included) -> NumPy, at any job size.

    The NumPy runtime starts seconds sooner and runs more windows per second than
    Keras (``benchmarks/runtimes.py``), with TensorFlow imported or not.
    """
    _, sparse_path = random_weight_file("sparse-ft-95.45", 0.9545, tmp_path, rng)
    _, dense_path = random_weight_file("sea-64", 0.0, tmp_path, rng)
    pruned, dense = resolve_model(str(sparse_path)), resolve_model(str(dense_path))
    assert "tensorflow" in sys.modules  # this test process has imported it
    for reference in (pruned, dense, resolve_model("sea-64")):
        assert reference.on_executor
        for n in (None, 1, 10**6):
            assert reference.uses_numpy(n)
            assert not reference.with_runtime("keras").uses_numpy(n)
        assert reference.for_job(10**6).runtime == "numpy"
        assert reference.with_runtime("keras").for_job(1).runtime == "keras"
    monkeypatch.delitem(sys.modules, "tensorflow")  # as in a fresh process: the same
    assert dense.uses_numpy(None) and dense.uses_numpy(10**6)
    assert type(pruned.runner(100)).__name__ == "NumpyRunner"


@pytest.mark.parametrize("entry", ["process_files", "cli"])
@pytest.mark.parametrize(("limit", "expected"), [(10_000, "numpy"), (5, "keras")])
def test_auto_runtime_decided_once_per_batch_run(tmp_path, rng, limit, expected, entry):
    """A run of 3 files (27 windows) decides once, from the files' headers.

    The bundled tiny (a .keras chain: NumPy only for jobs up to a window limit).
    """
    import soundfile as sf

    for index in range(3):
        sf.write(tmp_path / f"clip{index}.wav", rng.standard_normal(16000) * 0.1, 8000)
    files = sorted(str(p) for p in tmp_path.glob("clip*.wav"))
    out = str(tmp_path / "out")
    if entry == "process_files":
        call = (
            f"s = edgel3.process_files({files!r}, output_dir={out!r}, model='tiny')\n"
            "written = sum(result.status == 'written' for result in s)\n"
        )
    else:  # the batch engine behind the CLI (and --jobs, Ray)
        call = (
            "from edgel3.cli import main\n"
            f"assert main([*{files!r}, '-o', {out!r}, '--model', 'tiny', '-q']) == 0\n"
            "import glob\n"
            f"written = len(glob.glob({out + '/*.npz'!r}))\n"
        )
    script = (
        "import sys, edgel3, edgel3.reference as r\n"
        f"r.AUTO_NUMPY_MAX_WINDOWS = {limit}\n"
        + call
        + "print(written, 'numpy' if 'tensorflow' not in sys.modules else 'keras')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["3", expected]


def test_runtime_argument_is_checked(rng):
    audio = rng.standard_normal(16000) * 0.1
    with pytest.raises(ParameterError, match="runtime must be one of"):
        edgel3.get_embedding(audio, 16000, model="tiny", runtime="torch", verbose=0)
    with pytest.raises(ParameterError, match="runtime='numpy' runs .h5/.h5.gz weight files"):
        edgel3.get_embedding(audio, 16000, model=resolve_model("tiny").load(), runtime="numpy")


@pytest.mark.shared
def test_numpy_runtime_never_imports_tensorflow(tmp_path):
    script = (
        "import sys, numpy as np, edgel3\n"
        "x = np.random.default_rng(0).standard_normal(44100 * 3) * 0.1\n"
        f"e, t = edgel3.get_embedding(x, 44100, model={str(SEA64_GZ)!r}, runtime='numpy',"
        " verbose=0)\n"
        "print(e.shape, *(m in sys.modules for m in ('tensorflow', 'keras', 'scipy.signal')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # scipy.signal is 0.5-0.7 s of a cold start: the resampler's window comes without it.
    assert proc.stdout.strip() == "(26, 64) False False False"


@settings(max_examples=40, deadline=None)
@given(length=st.integers(2, 40_000), beta=st.floats(0.0, 40.0))
def test_kaiser_window_is_scipy_signals(length, beta):
    import scipy.signal

    expected = scipy.signal.get_window(("kaiser", beta), length, fftbins=False)
    np.testing.assert_array_equal(resample_kernel.kaiser_window(length, beta), expected)


@pytest.mark.shared
def test_cli_runtime_flag_gives_keras_numbers(tmp_path, rng, capsys):
    import soundfile as sf

    from edgel3.cli import main

    clip = tmp_path / "a.wav"
    sf.write(clip, rng.standard_normal(3 * 22050) * 0.1, 22050)
    outputs = {}
    for runtime in ("numpy", "keras"):
        out = tmp_path / runtime
        argv = [str(clip), "-o", str(out), "--model", str(SEA64_GZ), "--runtime", runtime, "-q"]
        assert main(argv) == 0
        outputs[runtime] = np.load(out / "a.npz")["embedding"]
    scale = max(1.0, float(np.abs(outputs["keras"]).max()))
    np.testing.assert_allclose(
        outputs["numpy"], outputs["keras"], rtol=0, atol=RELATIVE_TOLERANCE * scale
    )


THREADS_SCRIPT = """
import sys, numpy as np
from edgel3.threads import configure_threads
configure_threads(int(sys.argv[1]))
from edgel3.numpy_runtime import NumpyRunner
from threadpoolctl import threadpool_info
windows = np.load(sys.argv[2])
runner = NumpyRunner(sys.argv[3])
first = runner.predict_on_batch(windows)
again = runner.predict_on_batch(windows)
assert np.array_equal(first, again), "not reproducible within a process"
np.save(sys.argv[4], first)
print(sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}))
"""


@pytest.mark.parametrize(("name", "sparsity"), [("sea-64", 0.0), ("sparse-ft-95.45", 0.9545)])
def test_threads_reproducible_and_close_across_counts(name, sparsity, tmp_path, rng):
    """Fixed thread count: bit-identical run to run; 1 vs 2 threads: see below.

    Every BLAS library loaded (NumPy's and SciPy's OpenBLAS) runs the configured count.
    A dense model runs fixed chunks of windows, one per thread, each on one BLAS thread
    (edgel3.sparse): the same bits for every thread count. A pruned model's parallel
    numba kernels are only promised within the tolerance.
    """
    _, path = random_weight_file(name, sparsity, tmp_path, rng)
    sr = get_spec(name).sample_rate
    windows = (rng.standard_normal((24, 1, sr)) * 0.1).astype(np.float32)
    np.save(tmp_path / "windows.npy", windows)
    results = {}
    for threads in (1, 2, 2):
        out = tmp_path / f"emb{threads}_{len(results)}.npy"
        args = [str(threads), str(tmp_path / "windows.npy"), str(path), str(out)]
        proc = subprocess.run(
            [sys.executable, "-c", THREADS_SCRIPT, *args], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.split("\n")[-2] == f"[{threads}]"
        results.setdefault(threads, []).append(np.load(out))
    np.testing.assert_array_equal(results[2][0], results[2][1])  # run to run, 2 threads
    scale = float(np.abs(results[1][0]).max())
    for threads in (2,):
        if sparsity == 0.0:
            np.testing.assert_array_equal(results[1][0], results[threads][0])
        np.testing.assert_allclose(
            results[1][0], results[threads][0], rtol=0, atol=RELATIVE_TOLERANCE * scale
        )


def test_cli_runs_where_tensorflow_cannot_be_imported(tmp_path, rng):
    """The small-board install (docs/runtime.rst): no TensorFlow or Keras at all."""
    import soundfile as sf

    _, path = random_weight_file("sea-64", 0.0, tmp_path, rng)
    sf.write(tmp_path / "clip.wav", rng.standard_normal(44100 * 2) * 0.1, 44100)
    script = (
        "import sys\n"
        "sys.modules['tensorflow'] = None; sys.modules['keras'] = None  # import fails\n"
        "from edgel3.cli import main\n"
        f"raise SystemExit(main([{str(tmp_path / 'clip.wav')!r}, '-o', {str(tmp_path)!r}, "
        f"'--model', {str(path)!r}, '--runtime', 'numpy', '-q']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.load(tmp_path / "clip.npz")["embedding"].shape == (16, 64)


@pytest.mark.parametrize(
    ("name", "sparsity"), [("sea-64", 0.0), ("sparse-ft-95.45", 0.9545), ("tiny", None)]
)
def test_concurrent_calls_from_user_threads_keep_their_outputs(name, sparsity, tmp_path, rng):
    """A user's own thread pool calling get_embedding: each call gets its own rows.

    Runners are cached per model, so concurrent calls share one executor; its work
    arrays (and numba's pool) are taken one call at a time (edgel3.threads.NUMBA_LOCK).
    Before that lock, 4 threads x 32 calls of 30-s clips mixed outputs (max error 15.7).
    """
    from concurrent.futures import ThreadPoolExecutor

    model = "tiny"
    if sparsity is not None:
        model = str(random_weight_file(name, sparsity, tmp_path, rng)[1])
    sr = 8000 if sparsity is None else get_spec(name).sample_rate
    lengths = (1, 2, 3) if name.startswith("sparse") else (3, 5, 7.5, 11, 20, 30)  # 26 vs 900 w/s
    clips = [rng.standard_normal(int(sr * seconds)) * 0.1 for seconds in lengths]

    def embed(audio):
        return edgel3.get_embedding(audio, sr, model=model, runtime="numpy", verbose=0)[0]

    expected = [embed(audio) for audio in clips]
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(embed, clips * 4))
    for index, rows in enumerate(found):
        np.testing.assert_array_equal(rows, expected[index % len(clips)])
