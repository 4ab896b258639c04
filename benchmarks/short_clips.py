"""Many short clips (issue 13): per-file loop, list call and CLI, NumPy vs Keras, one run.

A folder of ``--clips`` (200) 4-s 22.05 kHz mono PCM_16 clips of seeded noise is
embedded by every case in a fresh process (start-up, imports and model loading
count; peak RSS by GNU time, :func:`runtimes.timed`), the runtimes interleaved,
best of ``--repeats``:

(a) baseline: ``for f in files: edgel3.get_embedding(*soundfile.read(f), model=M,
    runtime='keras')``;
(b) the same loop with ``runtime='numpy'``;
(c) ``get_embedding`` on the list of all the signals, each runtime;
(d) the CLI, ``edgel3 DIR -o OUT --model M --runtime R --jobs 1`` and ``--jobs 2``,
    each runtime.

Reported: wall seconds and the speed-up of each case over (a), as a markdown
table and ``--out`` JSON; the numba compile cost (the first call with an empty
numba cache vs a warm one; every case runs with the warm cache); with
``--profile``, where a clip's time goes in the NumPy runtime (read, resample,
front end, network, write), timed in one process with the functions the
pipeline calls, on the first ``--profile-clips`` (50) clips. ``--threads N``
gives every thread pool of every case N threads (default: all cores).

Preconditions, checked in each case (a failure stops the run): the runtime named
is the one that ran (TensorFlow imported by Keras only, in every process: a
``sitecustomize`` probe marks each process whose TensorFlow package runs, so the
CLI's ``--jobs 2`` workers are checked too), every clip was embedded, each case
gives the same number of windows per clip, the CLI wrote one output per clip.

    EDGEL3_WEIGHTS_DIR=../shared/weights python benchmarks/short_clips.py --profile
    python benchmarks/short_clips.py --model tiny     # bundled model: Keras cases only
    python benchmarks/short_clips.py --quick          # 6 clips, random SEA-64 weights

The NumPy runtime runs legacy weight files only (every official model); for a
model it cannot run (the bundled ``tiny``) its cases are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from runtimes import (  # noqa: E402 - benchmarks/ is not a package
    RUNTIMES,
    PreconditionError,
    check_runner,
    check_runtime,
    log,
    numba_compile_cost,
    random_weight_file,
    timed,
)

CLIP_SECONDS = 4.0
CLIP_RATE = 22050
#: Environment variable naming the folder where the probe marks TensorFlow imports.
MARKS_VARIABLE = "EDGEL3_BENCH_TENSORFLOW_MARKS"

#: ``sitecustomize.py`` put first on the cases' ``PYTHONPATH``: every Python process of
#: a case (the CLI's spawned workers included) leaves a file in the marks folder when
#: TensorFlow's package body runs (it imports ``tensorflow.*`` submodules; a mere
#: ``find_spec('tensorflow')`` does not).
PROBE = f'''
import os, sys


class _TensorFlowProbe:
    fired = False

    def find_spec(self, name, path=None, target=None):
        if not self.fired and name.startswith("tensorflow."):
            self.fired = True
            marks = os.environ.get("{MARKS_VARIABLE}")
            if marks:
                open(os.path.join(marks, "tensorflow-%d" % os.getpid()), "w").close()
        return None


sys.meta_path.insert(0, _TensorFlowProbe())
'''

HEAD = """
import glob, json, sys, soundfile, edgel3
from runtimes import check_runtime
files = sorted(glob.glob({pattern!r}))
"""

LOOP = (
    HEAD
    + """
rows = []
for f in files:
    emb, _ = edgel3.get_embedding(*soundfile.read(f), model={model!r}, runtime={runtime!r},
                                  verbose=0)
    rows.append(len(emb))
check_runtime({runtime!r}, 'tensorflow' in sys.modules)
print(json.dumps({{'clips': len(files), 'rows': rows}}))
"""
)

LIST = (
    HEAD
    + """
signals, rates = zip(*(soundfile.read(f) for f in files))
embs, _ = edgel3.get_embedding(list(signals), list(rates), model={model!r},
                               runtime={runtime!r}, verbose=0)
check_runtime({runtime!r}, 'tensorflow' in sys.modules)
print(json.dumps({{'clips': len(files), 'rows': [len(e) for e in embs]}}))
"""
)

CLI = """
import json, sys
from edgel3.cli import main   # what the `edgel3` command runs
from runtimes import check_outputs
argv = [{folder!r}, '-o', {out!r}, '--model', {model!r}, '--runtime', {runtime!r},
        '--jobs', {jobs!r}, '-q']
status = main(argv)
if status:
    raise SystemExit(f'edgel3 {{argv}} exited with status {{status}}')
print(json.dumps({{'clips': check_outputs({out!r}, {n})}}))
"""

ONE_CLIP = """
import sys, soundfile, edgel3
from runtimes import check_runtime
edgel3.get_embedding(*soundfile.read({path!r}), model={model!r}, runtime={runtime!r}, verbose=0)
check_runtime({runtime!r}, 'tensorflow' in sys.modules)
"""

PROFILE = """
import json
from short_clips import profile_clips
print(json.dumps(profile_clips({files!r}, {model!r}, {out!r})))
"""

#: The profile's stages, in pipeline order.
STAGES = ("read", "resample", "front end", "network", "write")


# --------------------------------------------------------------------------- inputs


def write_clips(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` 4-s 22.05 kHz mono PCM_16 clips of seeded noise, ``clip0000.wav``...

    Returns
    -------
    list of pathlib.Path
        Sorted as ``glob`` sorts them.
    """
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"clip{i:04d}.wav"
        audio = rng.standard_normal(int(CLIP_SECONDS * CLIP_RATE)) * 0.1
        sf.write(str(path), audio, CLIP_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def install_probe(folder: Path) -> Path:
    """Write the TensorFlow probe (:data:`PROBE`) as ``folder/sitecustomize.py``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(PROBE)
    return folder


def thread_environment(threads: int | None) -> dict:
    """Environment variables giving every thread pool ``threads`` threads (``{}``: defaults).

    edgel3's own setting (:data:`edgel3.threads.ENV_VAR`) and the libraries'
    variables, read when each library starts: TensorFlow's intra-op pool,
    numba's, and every OpenBLAS (NumPy and SciPy each bundle one).
    """
    if threads is None:
        return {}
    value = str(int(threads))
    names = ("EDGEL3_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "NUMBA_NUM_THREADS")
    return {name: value for name in (*names, "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}


def numpy_runs(model) -> bool:
    """Whether the NumPy runtime runs ``model`` (a legacy weight file; nothing is loaded)."""
    from edgel3.reference import resolve_model

    return resolve_model(model).is_legacy


# --------------------------------------------------------------------------- checks


def check_case(runtime: str, result: dict, n_clips: int, marks: Path) -> None:
    """A case's preconditions, seen from outside its processes.

    Parameters
    ----------
    runtime : {'numpy', 'keras'}
    result : dict
        The case's JSON: ``clips`` (embedded or written).
    n_clips : int
        Clips in the folder.
    marks : pathlib.Path
        The probe's marks folder of this case: TensorFlow ran in a process iff a
        file is there.

    Raises
    ------
    PreconditionError
    """
    if result["clips"] != n_clips:
        raise PreconditionError(f"{result['clips']} clips embedded of {n_clips}")
    check_runtime(runtime, any(marks.iterdir()))


def check_same_rows(rows_by_case: dict) -> list[int]:
    """Every in-process case gives the same number of windows for each clip.

    Parameters
    ----------
    rows_by_case : dict
        Case name -> windows per clip.

    Returns
    -------
    list of int

    Raises
    ------
    PreconditionError
    """
    found = {name: list(rows) for name, rows in rows_by_case.items()}
    first = next(iter(found.values()))
    different = [name for name, rows in found.items() if rows != first]
    if different or not first or min(first) < 1:
        raise PreconditionError(f"windows per clip differ between cases: {different or found}")
    return first


# --------------------------------------------------------------------------- profile


def profile_clips(files, model, output_dir) -> dict:
    """Where each clip's time goes in the NumPy runtime, per clip, in this process.

    Each clip goes through the stages of :func:`edgel3.process_file` with the
    functions the pipeline calls (nothing reimplemented), each timed:

    * read: :func:`edgel3.files.audio_info`, :func:`edgel3.files.read_audio`,
      :func:`edgel3.checks.check_audio`;
    * resample: :class:`edgel3.pipeline.WindowPipeline` (the exact legacy resampler
      to the model's rate, framing) and :func:`edgel3.pipeline.batches`;
    * front end: :func:`edgel3.frontend.melspectrogram` with the file's filterbank;
    * network: the runner's ``predict_on_batch`` minus the front end's time (the
      runner computes the mel spectrogram itself, then the convs);
    * write: :func:`edgel3.provenance.input_facts`, ``make_provenance`` and
      :func:`edgel3.files.save_embedding` (``np.savez``, atomic).

    Then :func:`edgel3.process_file` of the same clip; ``other`` is its time
    minus the stages' (argument checks, model resolution, runner lookup).

    Parameters
    ----------
    files : list of str
    model : str
        A model the NumPy runtime runs (official name or legacy weight file).
    output_dir : str

    Returns
    -------
    dict
        ``clips``, ``windows`` (per clip), ``ms`` (stage -> mean ms per clip,
        with ``other`` and ``total``, the mean :func:`~edgel3.process_file`) and
        ``median_ms`` (the stages' and total's medians: robust to another
        process taking the cores for a while).
    """
    import numpy as np

    import edgel3
    from edgel3.checks import check_audio
    from edgel3.files import audio_info, get_output_path, read_audio, save_embedding
    from edgel3.frontend import melspectrogram, timestamps
    from edgel3.legacy_h5 import read_legacy_h5
    from edgel3.numpy_runtime import parse_legacy
    from edgel3.pipeline import WindowPipeline, batches
    from edgel3.provenance import input_facts, make_provenance
    from edgel3.reference import resolve_model

    hop, center = 0.1, True  # the defaults of get_embedding and process_file
    reference = resolve_model(model).with_runtime("numpy")
    runner = reference.runner()
    check_runner(runner, "NumpyRunner")
    _, filterbank, _, _ = parse_legacy(read_legacy_h5(reference.numpy_file))
    config = runner.spec.frontend
    staged, whole = Path(output_dir, "staged"), Path(output_dir, "whole")
    options = dict(model=model, runtime="numpy", verbose=False)
    edgel3.process_file(files[0], output_dir=str(whole), suffix="warm-up", **options)
    times = {stage: [] for stage in (*STAGES, "total")}
    windows = []
    for path in files:
        tick = time.perf_counter()
        audio_info(path)
        audio, sr = read_audio(path)
        signal = check_audio(audio)
        t_read = time.perf_counter()
        pipeline = WindowPipeline(
            sr, runner.sample_rate, hop_size=hop, center=center, n_frames=len(signal)
        )
        batch = np.concatenate([b.copy() for b in batches(pipeline.run(signal), 64)])
        t_resample = time.perf_counter()
        melspectrogram(batch.reshape(len(batch), -1), config, filterbank=filterbank)
        t_front = time.perf_counter()
        embedding = runner.predict_on_batch(batch)
        t_model = time.perf_counter()
        record = make_provenance(reference.model_id, hop, center, False, input_facts(path))
        output = get_output_path(path, ".npz", output_dir=str(staged))
        save_embedding(output, embedding, timestamps(len(embedding), hop), provenance=record)
        t_write = time.perf_counter()
        edgel3.process_file(path, output_dir=str(whole), **options)
        t_whole = time.perf_counter()
        for stage, seconds in (
            ("read", t_read - tick),
            ("resample", t_resample - t_read),
            ("front end", t_front - t_resample),
            ("network", (t_model - t_front) - (t_front - t_resample)),
            ("write", t_write - t_model),
            ("total", t_whole - t_write),
        ):
            times[stage].append(seconds)
        windows.append(len(batch))
    check_runtime("numpy", "tensorflow" in sys.modules)
    ms = {stage: 1000 * float(np.mean(values)) for stage, values in times.items()}
    ms["other"] = ms["total"] - sum(ms[stage] for stage in STAGES)
    median = {stage: 1000 * float(np.median(values)) for stage, values in times.items()}
    return {
        "clips": len(files),
        "windows": float(np.mean(windows)),
        "ms": ms,
        "median_ms": median,
    }


def profile_table(profile: dict) -> str:
    """The profile as a markdown table: ms per clip (mean, median), share of the mean total."""
    ms, median = profile["ms"], profile["median_ms"]
    lines = [
        f"NumPy runtime, {profile['clips']} clips, {profile['windows']:.0f} windows each; "
        "share = the stage's mean / process_file's mean",
        "",
        "| stage | mean ms per clip | median ms | share |",
        "|---|---|---|---|",
    ]
    for stage in (*STAGES, "other", "total"):
        name = "total (process_file)" if stage == "total" else stage
        middle = f"{median[stage]:.1f}" if stage in median else "-"
        lines.append(
            f"| {name} | {ms[stage]:.1f} | {middle} | {100 * ms[stage] / ms['total']:.0f} % |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- run


def plan(runtimes) -> list[tuple[str, str, str, dict]]:
    """The cases: (name, runtime, script, format keywords), runtimes interleaved, Keras first."""
    runtimes = sorted(runtimes, key=lambda runtime: runtime != "keras")
    cases = []
    for name, script, extra in (
        ("per-file loop", LOOP, {}),
        ("(c) list call", LIST, {}),
        ("(d) CLI --jobs 1", CLI, {"jobs": "1"}),
        ("(d) CLI --jobs 2", CLI, {"jobs": "2"}),
    ):
        for runtime in runtimes:
            if script is LOOP:
                name = "(a) per-file loop" if runtime == "keras" else "(b) per-file loop"
            cases.append((name, runtime, script, extra))
    return cases


def case_table(cases: dict, n_clips: int) -> str:
    """The cases as a markdown table, with each case's speed-up over (a)."""
    base = cases["(a) per-file loop, keras"]["s"]
    lines = [
        f"{n_clips} clips of {CLIP_SECONDS:g} s at {CLIP_RATE} Hz; fresh process per case "
        "(start-up included); speed-up = (a)'s wall time / the case's",
        "",
        "| case | runtime | wall s | speed-up vs (a) | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for key, case in cases.items():
        name, runtime = key.rsplit(", ", 1)
        lines.append(
            f"| {name} | {runtime} | {case['s']:.1f} | {base / case['s']:.2f}x | "
            f"{case['rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sea-64", help="default: %(default)s")
    parser.add_argument("--clips", type=int, default=200, help="default: %(default)s")
    parser.add_argument("--repeats", type=int, default=1, help="default: %(default)s")
    parser.add_argument("--profile", action="store_true", help="add the NumPy runtime's profile")
    parser.add_argument(
        "--profile-clips", type=int, default=50, help="clips profiled (default: %(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="threads per pool in every case (TensorFlow, numba, BLAS; default: all cores)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="6 clips, random SEA-64 weights (no ../shared)"
    )
    parser.add_argument("--out", help="write the results as JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgel3-clips-") as tmp:
        folder = Path(tmp)
        if args.quick:
            args.model, args.clips = random_weight_file(folder, "sea-64"), 6
        runtimes = RUNTIMES if numpy_runs(args.model) else ("keras",)
        if "numpy" not in runtimes:
            print(f"{args.model}: not a legacy weight file, Keras cases only", file=sys.stderr)
        if args.profile and "numpy" not in runtimes:
            parser.error(f"--profile runs the NumPy runtime, which cannot run {args.model}")
        clips = folder / "clips"
        files = write_clips(clips, args.clips)
        probe = install_probe(folder / "probe")
        results: dict = {
            "model": args.model,
            "clips": args.clips,
            "repeats": args.repeats,
            "threads": args.threads,
        }
        threads = thread_environment(args.threads)
        one = ONE_CLIP.format(path=str(files[0]), model=args.model, runtime=runtimes[0])
        results["numba"], env = numba_compile_cost(one, folder / "numba-cache", threads)
        results["numba"]["runtime"] = runtimes[0]
        log("numba compile cost", started)
        env.update(threads)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(probe), str(BENCH_DIR), os.environ.get("PYTHONPATH")])
        )
        cases: dict = {}
        rows: dict = {}
        for repeat in range(args.repeats):
            for index, (name, runtime, script, extra) in enumerate(plan(runtimes)):
                tag = f"{repeat}-{index}"
                marks = folder / f"marks-{tag}"
                marks.mkdir()
                text = script.format(
                    pattern=str(clips / "*.wav"),
                    folder=str(clips),
                    out=str(folder / f"out-{tag}"),
                    model=args.model,
                    runtime=runtime,
                    n=len(files),
                    **extra,
                )
                wall, rss, stdout = timed(text, {**env, MARKS_VARIABLE: str(marks)})
                result = json.loads(stdout.strip().splitlines()[-1])
                check_case(runtime, result, len(files), marks)
                key = f"{name}, {runtime}"
                if "rows" in result:
                    rows[key] = result["rows"]
                case = cases.setdefault(key, {"s": wall, "rss_mib": rss / 1024})
                if wall < case["s"]:
                    case.update(s=wall, rss_mib=rss / 1024)
                log(f"{key}: {wall:.1f} s", started)
        results["windows_per_clip"] = check_same_rows(rows)
        results["cases"] = cases
        tables = [
            f"Threads per pool: {args.threads or 'default (all cores)'}.",
            case_table(cases, len(files)),
        ]
        if args.profile:
            profiled = [str(f) for f in files[: args.profile_clips]]
            script = PROFILE.format(files=profiled, model=args.model, out=tmp)
            marks = folder / "marks-profile"
            marks.mkdir()
            _, _, stdout = timed(script, {**env, MARKS_VARIABLE: str(marks)})
            results["profile"] = json.loads(stdout.strip().splitlines()[-1])
            check_case("numpy", results["profile"], len(profiled), marks)
            tables.append(profile_table(results["profile"]))
            log("profile", started)
    numba = results["numba"]
    tables.append(
        f"numba compile cost ({numba['runtime']} runtime, one clip, fresh process): "
        f"{numba['cold_s']:.2f} s with an empty cache vs {numba['warm_s']:.2f} s with it "
        f"warm: {numba['compile_s']:.2f} s, paid once per machine ({numba['cache_files']} "
        "cache files)"
    )
    results["seconds"] = time.perf_counter() - started
    print("\n\n".join(tables))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
