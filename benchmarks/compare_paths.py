"""Time every embedding path of this tree against another edgel3 tree, interleaved, in one run.

Each case runs in a fresh worker process (the tree under test first on
``PYTHONPATH``), alternating baseline and candidate, ``--repeat`` times; the
table reports the best time of each and the ratio (baseline / candidate: > 1
means this tree is faster). Only ratios from one run mean anything on a
shared machine.

    git worktree add /tmp/edgel3-base <commit>
    python benchmarks/compare_paths.py --baseline /tmp/edgel3-base --weights ../shared/weights

Cases (SEA-64 official weights, and a random sparse L3 pruned to the 95.45 % plan):

* ``array-44k``   -- get_embedding on 60 s of 44.1 kHz audio (exact resampling + model);
* ``native-8k``   -- get_embedding on 60 s of 8 kHz audio (framing + model);
* ``list-clips``  -- get_embedding on a list of 40 clips of 4 s at 22.05 kHz;
* ``file-whole``  -- process_file on a 30 s 44.1 kHz WAV (read whole);
* ``file-stream`` -- process_file on a 90 s 44.1 kHz WAV (streamed in blocks);
* ``sparse-48k``  -- get_embedding on 10 s of 48 kHz audio, pruned sparse L3 (sparse executor).
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

import numpy as np

HERE = Path(__file__).resolve().parent
CASES = ("array-44k", "native-8k", "list-clips", "file-whole", "file-stream", "sparse-48k")


def _worker(case: str, data: dict) -> float:
    """Run one case after a warm-up; return its best wall time of 3, in seconds."""
    import soundfile as sf

    import edgel3
    from edgel3 import core

    model = core.load_model_file(data["sparse" if case == "sparse-48k" else "sea64"])
    rng = np.random.default_rng(0)
    if case == "array-44k":
        audio, sr = rng.normal(scale=0.1, size=60 * 44100), 44100
        run = lambda: edgel3.get_embedding(audio, sr, model=model, verbose=0)  # noqa: E731
    elif case == "native-8k":
        audio, sr = rng.normal(scale=0.1, size=60 * 8000), 8000
        run = lambda: edgel3.get_embedding(audio, sr, model=model, verbose=0)  # noqa: E731
    elif case == "list-clips":
        clips = [rng.normal(scale=0.1, size=4 * 22050) for _ in range(40)]
        run = lambda: edgel3.get_embedding(clips, 22050, model=model, verbose=0)  # noqa: E731
    elif case in ("file-whole", "file-stream"):
        path = data["file30" if case == "file-whole" else "file90"]
        out = tempfile.mkdtemp()
        run = lambda: core.process_file(path, output_dir=out, model=model, verbose=False)  # noqa: E731
    elif case == "sparse-48k":
        audio, sr = rng.normal(scale=0.1, size=10 * 48000), 48000
        run = lambda: edgel3.get_embedding(audio, sr, model=model, verbose=0)  # noqa: E731
    else:
        raise SystemExit(f"unknown case {case}")
    del sf
    run()  # warm-up: tracing, kernel choice, numba compilation
    best = float("inf")
    for _ in range(3):  # best of 3 in the process, then best over the alternations
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _prepare(folder: Path, weights: Path) -> dict:
    import keras
    import soundfile as sf

    from edgel3.compress.pruning import prune_model, strip_masks
    from edgel3.legacy_h5 import save_legacy_h5
    from edgel3.networks import build_model
    from edgel3.specs import get_spec

    keras.utils.set_random_seed(0)
    sparse = strip_masks(prune_model(build_model(get_spec("sparse-ft-95.45")), "95.45")[0])
    nonzero = sum(int(np.count_nonzero(w)) for w in sparse.get_weights() if w.ndim == 4)
    sparse_path = folder / "sparse95.h5"
    save_legacy_h5(sparse, sparse_path, compress=False)
    rng = np.random.default_rng(1)
    data = {
        "sea64": str(weights / "edgel3_sea_ust_audio_emb_64.h5.gz"),
        "sparse": str(sparse_path),
        "sparse_conv_nonzero": nonzero,
    }
    for seconds in (30, 90):
        path = folder / f"tones{seconds}.wav"
        t = np.arange(seconds * 44100) / 44100
        audio = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(path, audio, 44100, subtype="PCM_16")
        data[f"file{seconds}"] = str(path)
    return data


def _time(tree: Path, case: str, data_file: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, __file__, "--worker", case, "--data", str(data_file)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another edgel3 source tree")
    parser.add_argument("--weights", type=Path, default=HERE.parent.parent / "shared" / "weights")
    parser.add_argument("--repeat", type=int, default=3, help="alternations per case")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(_worker(args.worker, json.loads(args.data.read_text())))
        return 0
    if args.baseline is None:
        parser.error("--baseline is required")
    folder = Path(tempfile.mkdtemp(prefix="edgel3-paths-"))
    data = _prepare(folder, args.weights)
    data_file = folder / "data.json"
    data_file.write_text(json.dumps(data))
    candidate = HERE.parent
    results = {}
    print(f"sparse model: {data['sparse_conv_nonzero']:,} non-zero conv weights")
    print("| case | baseline s | this tree s | ratio |\n|---|---|---|---|")
    for case in args.cases:
        times = {"baseline": [], "candidate": []}
        for _ in range(args.repeat):
            times["baseline"].append(_time(args.baseline, case, data_file))
            times["candidate"].append(_time(candidate, case, data_file))
        best = {k: min(v) for k, v in times.items()}
        results[case] = {**best, "ratio": best["baseline"] / best["candidate"], "all": times}
        print(
            f"| {case} | {best['baseline']:.3f} | {best['candidate']:.3f} "
            f"| {results[case]['ratio']:.2f}x |",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
