"""Measure how far every embedding path is from ``get_embedding`` on the same signal.

Prints a markdown table: for each path, whether rows and timestamps are equal
on every input, and the worst absolute and relative (to ``max|embedding|``)
difference of the values. Inputs: random signals at odd and usual rates, mono
and stereo, from 0.3 s to 70 s (above the 60-s streaming threshold).

    python benchmarks/path_equality.py --model tiny
    EDGEL3_WEIGHTS_DIR=../shared/weights python benchmarks/path_equality.py --model sea-64
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

INPUTS = [  # (rate, seconds, channels)
    (87360, 3.1, 1),
    (11025, 0.3, 2),
    (44100, 7.0, 1),
    (22050, 12.4, 2),
    (48000, 1.0, 1),
    (8000, 5.5, 1),
    (44100, 70.0, 1),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--hop-size", type=float, default=2687 / 8000)
    parser.add_argument("--no-centering", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    import edgel3
    from edgel3 import engine
    from edgel3.batch import embed_files, embed_files_ray, read_parquet_embeddings

    reference = edgel3.resolve_model(args.model)
    options = dict(hop_size=args.hop_size, center=not args.no_centering)
    folder = Path(tempfile.mkdtemp(prefix="edgel3-equality-"))
    rng = np.random.default_rng(0)
    signals, paths = [], []
    for i, (sr, seconds, channels) in enumerate(INPUTS):
        n = int(seconds * sr)
        audio = rng.uniform(-0.5, 0.5, (n, channels) if channels > 1 else n)
        path = folder / f"in{i}_{sr}.wav"
        sf.write(path, audio, sr, subtype="DOUBLE")
        signals.append((audio, sr))
        paths.append(path)

    expected = [
        edgel3.get_embedding(a, sr, model=reference, verbose=0, **options) for a, sr in signals
    ]
    got: dict[str, list] = {}
    others = [np.zeros(12345)] * 1
    listed = edgel3.get_embedding(
        [*others, *[a for a, _ in signals]],
        [11025, *[sr for _, sr in signals]],
        model=reference,
        batch_size=7,
        verbose=0,
        **options,
    )
    got["get_embedding, in a list (batch 7)"] = list(zip(listed[0][1:], listed[1][1:]))
    for stream in (False, True):
        name = "process_file, streamed" if stream else "process_file, whole"
        got[name] = [
            engine.embed_path(reference, p, batch_size=64, stream=stream, **options)[:2]
            for p in paths
        ]
    pushed = []
    for audio, sr in signals:
        live = edgel3.EmbeddingStream(reference, sr, **options)
        parts, stamps, start = [], [], 0
        while start < len(audio):
            size = int(rng.integers(1, 2 * sr))
            e, t = live.push(audio[start : start + size])
            parts.append(e)
            stamps.append(t)
            start += size
        e, t = live.close()
        pushed.append((np.concatenate([*parts, e]), np.concatenate([*stamps, t])))
    got["push stream (random chunks)"] = pushed
    summary = embed_files(paths, folder / "jobs2", model=args.model, jobs=2, **options)
    got["--jobs 2"] = [
        (np.load(r.output)["embedding"], np.load(r.output)["timestamps"]) for r in summary.results
    ]
    if not args.skip_ray:
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            embed_files_ray(paths, folder / "ray", model=args.model, **options)
        finally:
            ray.shutdown()
        rows = read_parquet_embeddings(folder / "ray")
        got["Ray"] = [rows[str(p)] for p in paths]

    print(f"model {reference.model_id}, hop {args.hop_size:.6g}, centre {options['center']}")
    print("| path | rows & timestamps | worst abs diff | worst diff / max abs |")
    print("|---|---|---|---|")
    table = {}
    for name, results in got.items():
        same = all(
            len(e) == len(ref_e) and np.array_equal(t, ref_t)
            for (e, t), (ref_e, ref_t) in zip(results, expected)
        )
        worst = max(
            float(np.max(np.abs(e - ref_e), initial=0))
            for (e, _), (ref_e, _) in zip(results, expected)
        )
        rel = max(
            float(np.max(np.abs(e - ref_e), initial=0)) / max(1.0, float(np.abs(ref_e).max()))
            for (e, _), (ref_e, _) in zip(results, expected)
        )
        table[name] = {"rows_and_timestamps_equal": same, "worst_abs": worst, "worst_rel": rel}
        print(f"| {name} | {'equal' if same else 'DIFFERENT'} | {worst:.2g} | {rel:.2g} |")
    if args.out:
        args.out.write_text(json.dumps(table, indent=2))
    return (
        0
        if all(v["rows_and_timestamps_equal"] and v["worst_rel"] <= 1e-5 for v in table.values())
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
