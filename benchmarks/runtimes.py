"""NumPy runtime vs Keras path, measured in one run (issue 13): start, memory, windows/s.

Each case runs in a fresh subprocess (so imports and first-call costs count), the two
runtimes interleaved, best of ``--repeats``:

* cold: ``python -c "import edgel3; edgel3.get_embedding(x, 44100, model=M)"`` on 10 s;
* long: peak RSS and wall time of ``process_file`` on a ``--minutes`` 44.1 kHz file;
* warm windows/s on ``--windows`` windows already at the model's rate (the model
  loaded and called once first).

Preconditions are asserted: the runner that ran is the one named, and the pruned
model has its plan's sparsity. Usage::

    EDGEL3_WEIGHTS_DIR=../shared/weights python benchmarks/runtimes.py --minutes 10
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

RUNTIMES = ("numpy", "keras")

COLD = """
import sys, time, numpy as np, edgel3
x = np.random.default_rng(0).standard_normal(441000) * 0.1
edgel3.get_embedding(x, 44100, model={model!r}, runtime={runtime!r}, verbose=0)
assert ('tensorflow' in sys.modules) == ({runtime!r} == 'keras'), 'wrong runtime ran'
"""

LONG = """
import edgel3
edgel3.process_file({path!r}, output_dir={out!r}, model={model!r}, runtime={runtime!r},
                    verbose=False)
"""

WARM = """
import json, sys, time, numpy as np
from edgel3.reference import resolve_model
ref = resolve_model({model!r}).with_runtime({runtime!r})
runner = ref.runner({windows})
assert type(runner).__name__ == {expected!r}, type(runner).__name__
x = np.random.default_rng(0).standard_normal(({windows}, 1, runner.sample_rate)).astype('float32')
runner.predict_on_batch(x[:64] * 0.1)
best = float('inf')
for _ in range(2):
    tick = time.perf_counter(); runner.predict_on_batch(x * 0.1)
    best = min(best, time.perf_counter() - tick)
print(json.dumps({{'windows_per_s': {windows} / best}}))
"""


def timed(script: str) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and stdout of ``python -c script`` (GNU time)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
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


def write_long_file(path: Path, minutes: float) -> None:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", 44100, 1, subtype="PCM_16") as handle:
        for _ in range(int(minutes * 6)):
            handle.write(rng.standard_normal(441000) * 0.1)


def pruned_file(folder: Path) -> str:
    """The sparse 95.45 % layout, random weights pruned by the official plan."""
    import numpy as np
    from benchmark import make_model_files  # benchmarks/benchmark.py: the same files

    from edgel3.legacy_h5 import read_legacy_h5

    path = make_model_files(folder)["sparse95"]
    kernels = [k for _, k in read_legacy_h5(path).conv_kernels()]
    density = sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels)
    assert density < 0.06, f"the pruned model keeps {density:.1%} of its conv weights"
    return str(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sea-64")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--windows", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", help="write the results as JSON")
    args = parser.parse_args(argv)
    results: dict = {"model": args.model, "minutes": args.minutes}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for runtime in RUNTIMES * args.repeats:  # interleaved
            wall, rss, _ = timed(COLD.format(model=args.model, runtime=runtime))
            case = results.setdefault(f"cold_{runtime}", {"s": wall, "rss_mib": rss / 1024})
            case["s"] = min(case["s"], wall)
        long_file = folder / "long.wav"
        write_long_file(long_file, args.minutes)
        for runtime in RUNTIMES:
            script = LONG.format(path=str(long_file), out=tmp, model=args.model, runtime=runtime)
            wall, rss, _ = timed(script)
            results[f"long_{runtime}"] = {"s": wall, "rss_mib": rss / 1024}
        sparse = pruned_file(folder)
        for name, model in (("dense", args.model), ("sparse95", sparse)):
            for runtime in RUNTIMES:
                # Keras runs a pruned model through the sparse executor (edgel3.sparse).
                expected = "NumpyRunner" if runtime == "numpy" else "KerasRunner"
                if runtime == "keras" and name == "sparse95":
                    expected = "SparseExecutor"
                script = WARM.format(
                    model=model, runtime=runtime, windows=args.windows, expected=expected
                )
                _, _, out = timed(script)
                results[f"warm_{name}_{runtime}"] = json.loads(out.strip().splitlines()[-1])
    cold = results["cold_keras"]["s"] / results["cold_numpy"]["s"]
    print(json.dumps(results, indent=1))
    print(
        f"cold start: numpy {results['cold_numpy']['s']:.2f} s, keras "
        f"{results['cold_keras']['s']:.2f} s ({cold:.1f}x)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
