"""Throughput of batch extraction: files/s and audio-seconds/s, local workers and Ray.

Embeds ESC-10 (400 five-second 44.1 kHz clips) with SEA-64 at the default hop
(0.1 s, centred) into a Parquet dataset, with ``jobs=1`` (in this process),
``jobs=2`` (two spawned workers) and the Ray engine (a local Ray instance with
``--ray-cpus`` CPUs, one actor per CPU). Times are end to end: worker start-up
and model loading are included, Ray's own start-up (``ray.init``) is not (it is
printed separately: a cluster is normally up already). Prints a table and,
with ``--json``, writes the numbers.

Usage::

    EDGEL3_WEIGHTS_DIR=../shared/weights python benchmarks/throughput_esc10.py \\
        --data ../shared/data/esc10/audio --engines jobs1 jobs2 ray --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def run_once(engine: str, files, model: str, workdir: Path, ray_cpus: int) -> dict:
    from edgel3.distributed import embed_files_ray
    from edgel3.parallel import embed_files

    out = Path(tempfile.mkdtemp(dir=workdir, prefix=f"{engine}-"))
    before = _cpu_seconds()
    if engine == "ray":
        summary = embed_files_ray(files, out, model=model, concurrency=ray_cpus)
    else:
        jobs = int(engine.removeprefix("jobs"))
        summary = embed_files(files, out, model=model, jobs=jobs, output_format="parquet")
    cpu = _cpu_seconds() - before
    shutil.rmtree(out)
    if summary.count("written") != len(files):
        raise RuntimeError(f"{engine}: {summary.count('failed')} files failed")
    return {
        "seconds": summary.seconds,
        "files_per_s": summary.files_per_second,
        "audio_s_per_s": summary.audio_seconds_per_second,
        "audio_seconds": summary.audio_seconds,
        "load_average_1min": os.getloadavg()[0],  # other users of the CPU during the run
        # This process and its (reaped) workers; Ray actors are not our children: None.
        "cpu_seconds": None if engine == "ray" else cpu,
    }


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/esc10/audio", help="audio folder")
    parser.add_argument("--model", default="sea-64", help="model name or file")
    parser.add_argument("--engines", nargs="+", default=["jobs1", "jobs2", "ray"])
    parser.add_argument("--limit", type=int, default=None, help="use only the first N files")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine (median kept)")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)

    from edgel3.parallel import gather_inputs

    files = gather_inputs([args.data])[: args.limit]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ray_init_s = None
        if "ray" in args.engines:
            import ray

            started = time.perf_counter()
            ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
            ray_init_s = time.perf_counter() - started
        try:
            for engine in args.engines:
                runs = [
                    run_once(engine, files, args.model, Path(tmp), args.ray_cpus)
                    for _ in range(args.repeat)
                ]
                rows[engine] = {
                    "runs": runs,
                    "median_seconds": statistics.median(r["seconds"] for r in runs),
                }
                best = min(runs, key=lambda r: r["seconds"])
                print(
                    f"{engine:6} {len(files)} files  "
                    + "  ".join(
                        f"{r['seconds']:.1f}s (load {r['load_average_1min']:.1f}"
                        + (f", {r['cpu_seconds']:.0f} cpu-s)" if r["cpu_seconds"] else ")")
                        for r in runs
                    )
                    + f"  best: {best['files_per_s']:.2f} files/s, "
                    f"{best['audio_s_per_s']:.1f} audio-s/s",
                    flush=True,
                )
        finally:
            if ray_init_s is not None:
                ray.shutdown()
    if ray_init_s is not None:
        print(f"ray.init: {ray_init_s:.1f}s (not included above)")
    print(f"load average after the runs: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "files": len(files),
                    "model": args.model,
                    "cpus": os.cpu_count(),
                    "machine": platform.platform(),
                    "ray_init_seconds": ray_init_s,
                    "load_average_after": os.getloadavg(),
                    "engines": rows,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
