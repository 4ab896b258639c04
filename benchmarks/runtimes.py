"""NumPy runtime vs Keras path, measured in one run (issue 13): start, memory, windows/s.

Each case runs in a fresh subprocess (so imports and first-call costs count), the two
runtimes interleaved, best of ``--repeats``:

* numba: the cold first call with an empty numba cache (a fresh ``NUMBA_CACHE_DIR``)
  vs the same call once that cache is warm, i.e. what compiling the kernels costs
  (paid once per machine: ``cache=True``). Every other case runs with the warm cache;
* cold: ``python -c "import edgel3; edgel3.get_embedding(x, 44100, model=M)"`` on 10 s;
* long: peak RSS and wall time of ``process_file`` on a ``--minutes`` 44.1 kHz file;
* warm windows/s on ``--windows`` windows already at the model's rate (the model
  loaded and called once first), for ``M`` and the sparse 95.45 % layout.
* matmul peak: a 2048x2048 float32 GEMM through :mod:`edgel3.blas`; the NumPy
  runtime's conv rate is ``windows/s x`` the direct convolution's FLOPs per window
  (front end time included, so a lower bound). Its dense convs run as Winograd
  F(2x2, 3x3), 2.25x fewer multiplications than the direct form: the rate is an
  *effective* one (what a direct convolution would need to run at to be as fast).
  Also on one core: the convs and pools alone (the front end computed first) vs the
  one-thread GEMM peak.

Preconditions are checked in every case (:func:`check_runtime`, :func:`check_runner`,
:func:`check_pruned`, :func:`check_outputs`; a failure stops the run): the runtime
named is the one that ran (TensorFlow imported or not), the runner is the one named,
the pruned model has its plan's non-zero count, the outputs were written. Usage::

    EDGEL3_WEIGHTS_DIR=../shared/weights python benchmarks/runtimes.py --minutes 10
    python benchmarks/runtimes.py --quick   # no ../shared: random SEA-64 weights, ~1 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # `from benchmark import ...` when imported elsewhere
    sys.path.insert(0, str(BENCH_DIR))

RUNTIMES = ("numpy", "keras")

COLD = """
import sys, numpy as np, edgel3
from runtimes import check_runtime
x = np.random.default_rng(0).standard_normal(441000) * 0.1
edgel3.get_embedding(x, 44100, model={model!r}, runtime={runtime!r}, verbose=0)
check_runtime({runtime!r}, 'tensorflow' in sys.modules)
"""

LONG = """
import sys, edgel3
from runtimes import check_outputs, check_runtime
edgel3.process_file({path!r}, output_dir={out!r}, model={model!r}, runtime={runtime!r},
                    verbose=False)
check_runtime({runtime!r}, 'tensorflow' in sys.modules)
check_outputs({out!r}, 1)
"""

WARM = """
import json, sys, time, numpy as np
from edgel3.reference import resolve_model
from runtimes import check_runner, check_runtime
found = {{}}
for key, model, expected in {cases!r}:
    runner = resolve_model(model).with_runtime({runtime!r}).runner({windows})
    check_runner(runner, expected)
    x = np.random.default_rng(0).standard_normal(({windows}, 1, runner.sample_rate))
    x = (x * 0.1).astype('float32')
    runner.predict_on_batch(x[:64])
    best = float('inf')
    for _ in range(2):
        tick = time.perf_counter(); runner.predict_on_batch(x)
        best = min(best, time.perf_counter() - tick)
    found[key] = {{'windows_per_s': {windows} / best}}
check_runtime({runtime!r}, 'tensorflow' in sys.modules)
print(json.dumps(found))
"""

PEAK = """
import json, time, numpy as np, numba
from edgel3.blas import matmul_f32, single_threaded
from edgel3.numpy_runtime import load_numpy_runner
a = np.random.default_rng(0).standard_normal((2048, 2048)).astype('float32')
def peak():
    matmul_f32(a, a)
    best = float('inf')
    for _ in range(5):
        tick = time.perf_counter(); matmul_f32(a, a); best = min(best, time.perf_counter() - tick)
    return 2 * 2048**3 / best / 1e9
runner = load_numpy_runner({model_file!r})
executor = runner.executor
rows = executor.layer_rows()
flop = 2 * sum(macs for _, _, macs in rows)
found = {{'matmul_peak_gflops': peak(), 'conv_mflop_per_window': flop / 1e6}}
# One core: the convs and pools alone (front end done before) vs the one-thread GEMM peak.
numba.set_num_threads(1)
x = np.random.default_rng(0).standard_normal((4 * 9, 1, runner.sample_rate)).astype('float32')
with single_threaded():
    found['matmul_peak_gflops_one_core'] = peak()
    mel = executor._melspectrogram(x * 0.1)[..., 0]
    step = executor._windows_per_chunk(len(mel))
    executor._forward(mel[:step])
    best = float('inf')
    for _ in range(3):
        tick = time.perf_counter()
        for start in range(0, len(mel), step):
            executor._forward(mel[start : start + step])
        best = min(best, time.perf_counter() - tick)
found['conv_gflops_one_core'] = len(mel) * flop / best / 1e9
print(json.dumps(found))
"""

# --------------------------------------------------------------------------- preconditions


class PreconditionError(AssertionError):
    """A benchmark case would not measure what it reports."""


def check_runtime(runtime: str, tensorflow_imported: bool) -> None:
    """The runtime named is the one that ran: TensorFlow imported by Keras only.

    Parameters
    ----------
    runtime : {'numpy', 'keras'}
    tensorflow_imported : bool
        Whether the process that ran (any of them) imported TensorFlow.

    Raises
    ------
    PreconditionError
    """
    if runtime not in RUNTIMES:
        raise PreconditionError(f"unknown runtime {runtime!r}")
    if tensorflow_imported != (runtime == "keras"):
        raise PreconditionError(
            f"runtime {runtime!r} ran, but TensorFlow was "
            + ("imported" if tensorflow_imported else "not imported")
        )


def check_runner(runner, expected: str) -> None:
    """The runner that runs is the one named (its class name).

    Raises
    ------
    PreconditionError
    """
    if type(runner).__name__ != expected:
        raise PreconditionError(f"expected a {expected}, got a {type(runner).__name__}")


def check_pruned(path, plan) -> list[int]:
    """The weight file's conv kernels hold exactly the non-zero counts ``plan`` leaves.

    Parameters
    ----------
    path : path-like
        A legacy weight file (random weights: no zero but the pruned ones).
    plan : sequence of float
        Sparsity (%) per conv layer, e.g. ``benchmark.PLAN_95_45``.

    Returns
    -------
    list of int
        Non-zero weights per conv layer.

    Raises
    ------
    PreconditionError
    """
    import numpy as np

    from edgel3.compress.pruning import pruned_count
    from edgel3.legacy_h5 import read_legacy_h5

    kernels = [k for _, k in read_legacy_h5(path).conv_kernels()]
    if len(kernels) != len(plan):
        raise PreconditionError(f"{path}: {len(kernels)} conv layers for a plan of {len(plan)}")
    found = [int(np.count_nonzero(k)) for k in kernels]
    expected = [k.size - pruned_count(k.size, s) for k, s in zip(kernels, plan)]
    if found != expected:
        raise PreconditionError(
            f"{path}: non-zero conv weights {found}, the plan {tuple(plan)} leaves {expected}"
        )
    return found


def check_outputs(folder, n: int) -> int:
    """``folder`` holds ``n`` ``.npz`` outputs (searched recursively).

    Raises
    ------
    PreconditionError
    """
    found = len(list(Path(folder).rglob("*.npz")))
    if found != n:
        raise PreconditionError(f"{found} .npz outputs in {folder}, expected {n}")
    return found


# --------------------------------------------------------------------------- measuring


def timed(script: str, env: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and stdout of ``python -c script`` (GNU time).

    The benchmarks folder is on the script's ``PYTHONPATH`` (so it can import the
    checks above); ``env`` adds or overrides environment variables.
    """
    path = os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": path, **(env or {})}
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        tick = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", report.name, sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=env,
        )
        wall = time.perf_counter() - tick
        if proc.returncode:
            raise SystemExit(f"benchmark case failed:\n{proc.stderr[-2000:]}")
        return wall, int(report.read().split()[-1]), proc.stdout


def numba_compile_cost(script: str, cache: Path, env: dict | None = None) -> tuple[dict, dict]:
    """The cold first call with an empty numba cache vs the same call with it warm.

    Runs ``script`` twice in fresh processes with ``NUMBA_CACHE_DIR=cache``
    (a new folder): empty, numba compiles every kernel the call uses and writes
    it to the cache; warm, the kernels are loaded from it.

    Parameters
    ----------
    script : str
        A ``python -c`` script that uses the numba kernels (e.g. :data:`COLD`).
    cache : pathlib.Path
        A folder that does not exist yet.
    env : dict, optional
        More environment variables for both runs.

    Returns
    -------
    result : dict
        ``cold_s``, ``warm_s``, ``compile_s`` (their difference), ``warm_rss_mib``
        and ``cache_files`` (files numba wrote).
    env : dict
        ``env`` and ``NUMBA_CACHE_DIR`` (the cache, now warm), for the next cases.

    Raises
    ------
    PreconditionError
        If the cache was not empty, or the cold call wrote nothing to it.
    """
    cache.mkdir()  # FileExistsError: never an old cache
    env = {**(env or {}), "NUMBA_CACHE_DIR": str(cache)}
    cold, _, _ = timed(script, env)
    files = sum(1 for p in cache.rglob("*") if p.is_file())
    if not files:
        raise PreconditionError(f"the cold call wrote nothing to the numba cache {cache}")
    warm, rss, _ = timed(script, env)
    result = {
        "cold_s": cold,
        "warm_s": warm,
        "compile_s": cold - warm,
        "warm_rss_mib": rss / 1024,
        "cache_files": files,
    }
    return result, env


# --------------------------------------------------------------------------- inputs


def write_long_file(path: Path, minutes: float) -> None:
    """A 44.1 kHz mono PCM_16 file of seeded noise, written 10 s at a time."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    total = int(round(minutes * 60 * 44100))
    with sf.SoundFile(str(path), "w", 44100, 1, subtype="PCM_16") as handle:
        for start in range(0, total, 441000):
            handle.write(rng.standard_normal(min(441000, total - start)) * 0.1)


def random_weight_file(folder: Path, name: str, plan=None) -> str:
    """A random-weight legacy file of an official layout, magnitude-pruned to ``plan``.

    Built as :func:`benchmark.make_model_files` builds its files (seed 0,
    :func:`benchmark.prune`); the name is not an official one, so it is not
    hash-checked.

    Parameters
    ----------
    folder : pathlib.Path
    name : str
        An official model name (``'sea-64'``, ``'sparse-ft-95.45'``).
    plan : sequence of float, optional
        Sparsity (%) per conv layer.

    Returns
    -------
    str
        The ``.h5`` file.
    """
    import keras
    from benchmark import prune

    from edgel3.legacy_h5 import save_legacy_h5
    from edgel3.networks import build_model
    from edgel3.specs import get_spec

    keras.utils.set_random_seed(0)
    model = build_model(get_spec(name))
    if plan is not None:
        model = prune(model, plan)
    path = folder / f"random_{get_spec(name).name}.h5"
    save_legacy_h5(model, path, compress=False)
    return str(path)


def pruned_file(folder: Path) -> str:
    """The sparse 95.45 % layout, random weights pruned by the official plan (checked)."""
    from benchmark import PLAN_95_45

    path = random_weight_file(folder, "sparse-ft-95.45", PLAN_95_45)
    check_pruned(path, PLAN_95_45)
    return path


# --------------------------------------------------------------------------- run


def log(what: str, started: float) -> None:
    """Progress on stderr: what finished, and the seconds since ``started``."""
    print(f"{time.perf_counter() - started:7.1f} s  {what}", file=sys.stderr, flush=True)


def save_partial(results: dict, out) -> None:
    """Write the results so far (a failing late case keeps the measured ones)."""
    if out:
        Path(out).write_text(json.dumps(results, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sea-64")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--windows", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="no ../shared: random SEA-64 weights, 16 windows, 0.2 min, one repeat",
    )
    parser.add_argument(
        "--sparse-minutes",
        type=float,
        default=2.0,
        help="peak RSS of process_file with the pruned model on files of 1/4 and all of this",
    )
    parser.add_argument("--out", help="write the results as JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.quick:
            args.model = random_weight_file(folder, "sea-64")
            args.minutes, args.windows, args.repeats = 0.2, 16, 1
            args.sparse_minutes = 0.1
        results: dict = {"model": args.model, "minutes": args.minutes, "quick": args.quick}
        sparse = pruned_file(folder)
        log("model files", started)
        save_partial(results, args.out)
        numpy_cold = COLD.format(model=args.model, runtime="numpy")
        for repeat in range(args.repeats):  # interleaved: numpy (empty cache, warm), keras
            numba, env = numba_compile_cost(numpy_cold, folder / f"numba-cache-{repeat}")
            best = results.setdefault("numba", numba)
            for key in ("cold_s", "warm_s"):
                best[key] = min(best[key], numba[key])
            best["compile_s"] = best["cold_s"] - best["warm_s"]
            # The warm-cache run is the numpy cold start (same script, as a user runs it).
            wall, rss, _ = timed(COLD.format(model=args.model, runtime="keras"), env)
            for runtime, case in (
                ("numpy", (numba["warm_s"], numba["warm_rss_mib"])),
                ("keras", (wall, rss / 1024)),
            ):
                best = results.setdefault(f"cold_{runtime}", {"s": case[0], "rss_mib": case[1]})
                best["s"] = min(best["s"], case[0])
        log("cold and numba cases", started)
        save_partial(results, args.out)
        long_file = folder / "long.wav"
        write_long_file(long_file, args.minutes)
        for runtime in RUNTIMES:
            out = folder / f"long_{runtime}"
            script = LONG.format(
                path=str(long_file), out=str(out), model=args.model, runtime=runtime
            )
            wall, rss, _ = timed(script, env)
            results[f"long_{runtime}"] = {"s": wall, "rss_mib": rss / 1024}
            log(f"long {runtime}", started)
            save_partial(results, args.out)
        for minutes in (args.sparse_minutes / 4, args.sparse_minutes):  # flat in length?
            sparse_file = folder / f"sparse_{minutes:g}.wav"
            write_long_file(sparse_file, minutes)
            out = folder / f"long_sparse_{minutes:g}"
            script = LONG.format(path=str(sparse_file), out=str(out), model=sparse, runtime="numpy")
            wall, rss, _ = timed(script, env)
            results[f"long_sparse95_numpy_{minutes:g}min"] = {"s": wall, "rss_mib": rss / 1024}
            log(f"long sparse {minutes:g} min", started)
            save_partial(results, args.out)
        for runtime in RUNTIMES:
            # Keras runs a pruned model through the sparse executor (edgel3.sparse).
            cases = [
                ("dense", args.model, "NumpyRunner" if runtime == "numpy" else "KerasRunner"),
                ("sparse95", sparse, "NumpyRunner" if runtime == "numpy" else "SparseExecutor"),
            ]
            script = WARM.format(cases=cases, runtime=runtime, windows=args.windows)
            _, _, out = timed(script, env)
            for key, value in json.loads(out.strip().splitlines()[-1]).items():
                results[f"warm_{key}_{runtime}"] = value
            log(f"warm {runtime}", started)
            save_partial(results, args.out)
        from edgel3.reference import resolve_model

        model_file = resolve_model(args.model).numpy_file
        _, _, out = timed(PEAK.format(model_file=model_file), env)
        results.update(json.loads(out.strip().splitlines()[-1]))
        conv_gflops = (
            results["warm_dense_numpy"]["windows_per_s"] * results["conv_mflop_per_window"] / 1e3
        )
        results["numpy_conv_gflops_lower_bound"] = conv_gflops  # front end time included
        results["numpy_share_of_matmul_peak"] = conv_gflops / results["matmul_peak_gflops"]
        results["conv_share_of_matmul_peak_one_core"] = (
            results["conv_gflops_one_core"] / results["matmul_peak_gflops_one_core"]
        )
    results["seconds"] = time.perf_counter() - started
    cold = results["cold_keras"]["s"] / results["cold_numpy"]["s"]
    print(json.dumps(results, indent=1))
    numba = results["numba"]
    print(
        f"cold start: numpy {results['cold_numpy']['s']:.2f} s, keras "
        f"{results['cold_keras']['s']:.2f} s ({cold:.1f}x); numba compile (empty cache) "
        f"{numba['compile_s']:.2f} s ({numba['cold_s']:.2f} s cold vs {numba['warm_s']:.2f} s "
        f"warm cache)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
