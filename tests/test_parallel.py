"""Batch extraction on one machine: inputs, shards, manifest, resume after SIGKILL, workers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgel3 import batch, core
from edgel3.cli import build_parser, main
from edgel3.engine import should_stream
from edgel3.exceptions import OutputError, ParameterError
from edgel3.files import audio_info
from edgel3.reference import ModelReference, resolve_model

from .conftest import SEA64_GZ

outputs = batch.outputs


def make_corpus(root: Path, count: int, seed: int = 7) -> list[Path]:
    """Synthesize ``count`` short clips (8/16/22.05 kHz, mono and stereo, 0.7-2.5 s)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        sr = (8000, 16000, 22050)[i % 3]
        n = int(sr * (0.7 + 0.3 * (i % 7)))
        t = np.arange(n) / sr
        tone = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + rng.normal(scale=0.05, size=n)
        audio = np.stack([tone, tone[::-1]], axis=1) if i % 4 == 3 else tone
        path = root / f"sub{i % 2}" / f"clip{i:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, audio, sr, subtype="FLOAT")
        files.append(path)
    return files


def make_long_file(path: Path, seconds: float = 61.0, sr: int = 11025, seed: int = 2) -> Path:
    """A file above edgel3.engine.STREAM_MIN_SECONDS: every engine streams it block by block."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, rng.normal(scale=0.1, size=int(seconds * sr)), sr, subtype="FLOAT")
    assert should_stream(audio_info(path))
    return path


def reference_embeddings(
    files, hop_size=0.1, center=True, model="tiny", fast_resample=False
) -> dict[str, tuple]:
    """get_embedding, one file at a time in this process: the numbers every engine must give."""
    result = {}
    for path in files:
        audio, sr = sf.read(path)
        with warnings.catch_warnings():
            # Clips under 1 s warn that they are padded; not what is tested here.
            warnings.simplefilter("ignore")
            result[Path(path).as_posix()] = core.get_embedding(
                audio,
                sr,
                model=model,
                hop_size=hop_size,
                center=center,
                verbose=0,
                fast_resample=fast_resample,
            )
    return result


def assert_matches_reference(found: dict, reference: dict) -> None:
    """Same files, rows and timestamps; values within 1e-5 of the embedding's scale.

    Not bit for bit: worker processes and Ray actors run TensorFlow and numba with other
    thread counts than this process, and their float32 reductions depend on the thread count
    (SEA-64 with 1 and with 2 threads differs by about 2.4e-6).
    """
    assert sorted(found) == sorted(reference)
    for path, (embedding, stamps) in reference.items():
        got, got_stamps = found[path]
        assert got.shape == embedding.shape, path
        np.testing.assert_array_equal(got_stamps, stamps, err_msg=path)
        scale = max(1.0, float(np.abs(embedding).max()))
        worst = float(np.abs(got - embedding).max()) if embedding.size else 0.0
        assert worst <= 1e-5 * scale, f"{path}: max |diff| {worst:.3g} (scale {scale:.3g})"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    files = make_corpus(tmp_path_factory.mktemp("corpus"), 9)
    return files, reference_embeddings(files)


# --------------------------------------------------------------------------- inputs and shards


def test_parse_shard():
    assert batch.parse_shard("0/1") == (0, 1)
    assert batch.parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/3", "1", "a/b", "1/0"):
        with pytest.raises(ParameterError, match="shard"):
            batch.parse_shard(bad)
    for bad in ((True, 2), (0, True), (0, 1.0), (3,)):  # True is not an integer (edgel3.checks)
        with pytest.raises(ParameterError, match="shard"):
            batch.check_shard(bad)
    assert batch.check_shard(None) is None and batch.check_shard("1/2") == (1, 2)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_cover_every_file_exactly_once_and_are_stable(count):
    paths = [f"data/{d}/clip{i}.wav" for d in range(5) for i in range(40)]
    shards = [batch.select_shard(paths, i, count) for i in range(count)]
    assert sorted(p for shard in shards for p in shard) == sorted(paths)
    # A path's shard depends on the path alone: not on order, nor on the other files.
    reordered = [batch.select_shard(paths[::-1] + ["new.wav"], i, count) for i in range(count)]
    for before, after in zip(shards, reordered):
        assert set(before) == set(after) - {"new.wav"}
    if count > 1:
        assert all(shards), "200 paths hashed into every shard"


def test_read_path_list_txt_and_csv(tmp_path):
    (tmp_path / "lists").mkdir()
    txt = tmp_path / "lists" / "files.txt"
    txt.write_text("# comment\na.wav\n\n/abs/b.flac\n")
    assert batch.read_path_list(txt) == [tmp_path / "lists" / "a.wav", Path("/abs/b.flac")]
    csv_file = tmp_path / "lists" / "meta.csv"
    csv_file.write_text("fold,path,label\n1,x/a.wav,dog\n2,b.wav,rain\n")
    assert batch.read_path_list(csv_file) == [
        tmp_path / "lists" / "x" / "a.wav",
        tmp_path / "lists" / "b.wav",
    ]
    no_path_column = tmp_path / "first.csv"
    no_path_column.write_text("name,label\nc.wav,1\n")
    assert batch.read_path_list(no_path_column) == [tmp_path / "c.wav"]


def test_gather_inputs_deduplicates_and_keeps_missing_listed_files(tmp_path):
    files = make_corpus(tmp_path / "audio", 3)
    listing = tmp_path / "list.txt"
    listing.write_text(f"audio/{files[0].relative_to(tmp_path / 'audio')}\nmissing.wav\n")
    found = batch.gather_inputs([tmp_path / "audio"], manifest=listing)
    assert [os.path.abspath(p) for p in found] == [
        *(os.path.abspath(p) for p in sorted(files)),
        os.path.abspath(tmp_path / "missing.wav"),
    ]


# --------------------------------------------------------------------------- outputs


def test_manifest_ignores_torn_lines_and_other_configs(tmp_path):
    task = outputs.FileTask.from_path(__file__)
    manifest = outputs.ResultsManifest(tmp_path, {"model": "m", "hop_size": 0.1})
    (tmp_path / "part-x.parquet").write_bytes(b"")
    manifest.append([{**vars(task), "output": "part-x.parquet"}])
    assert outputs.ResultsManifest(tmp_path, {"model": "m", "hop_size": 0.1}).is_done(task)
    assert not outputs.ResultsManifest(tmp_path, {"model": "m", "hop_size": 0.5}).is_done(task)
    # A killed writer can leave half a line: it is ignored, and the next append mends it.
    with open(manifest.path, "a") as handle:
        handle.write('{"abspath": "/half')
    reread = outputs.ResultsManifest(tmp_path, {"model": "m", "hop_size": 0.1})
    assert reread.is_done(task)
    other = outputs.FileTask.from_path(Path(__file__).parent / "conftest.py")
    reread.append([{**vars(other), "output": "part-x.parquet"}])
    lines = manifest.path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["path"] == other.path
    assert outputs.ResultsManifest(tmp_path, {"model": "m", "hop_size": 0.1}).is_done(other)


def test_partial_outputs_are_invisible_and_removed(tmp_path):
    import pyarrow.parquet as pq

    table = batch.embeddings_table(
        [("a.wav", np.ones((2, 3), np.float32), np.array([0.0, 0.1]))], "model-x"
    )
    pq.write_table(table, tmp_path / "part-20260101T000000-abcdef-00000.parquet")
    # What a killed run leaves: a half-written part and a Ray staging directory.
    partial = tmp_path / ".part-20260102T000000-abcdef-00000.parquet.partial"
    partial.write_bytes(b"PAR1 half a file")
    staging = tmp_path / ".ray-20260102T000000-abcdef"
    staging.mkdir()
    pq.write_table(table, staging / "x.parquet")
    other_shard = tmp_path / ".part-shard-1-of-2-20260102T000000-abcdef-00000.parquet.partial"
    other_shard.write_bytes(b"")
    assert pq.read_table(tmp_path).num_rows == 2  # readers skip hidden files
    assert batch.read_parquet_embeddings(tmp_path)["a.wav"][0].shape == (2, 3)
    removed = batch.remove_partial_outputs(tmp_path)
    assert sorted(removed) == sorted([partial, staging])
    assert other_shard.exists(), "a concurrent shard's temporary file is left alone"


def test_embeddings_table_schema():
    table = batch.embeddings_table(
        [
            ("a.wav", np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.0, 0.1])),
            ("b.wav", np.zeros((1, 3), np.float32), np.array([0.0])),
        ],
        "m",
    )
    assert table.schema == batch.parquet_schema(3)  # fixed_size_list<float32>[3]
    assert table.column("path").to_pylist() == ["a.wav", "a.wav", "b.wav"]
    assert table.column("embedding").to_pylist()[1] == [3.0, 4.0, 5.0]
    with pytest.raises(OutputError, match="different sizes"):
        batch.embeddings_table(
            [("a", np.zeros((1, 3)), np.zeros(1)), ("b", np.zeros((1, 4)), np.zeros(1))], "m"
        )


# --------------------------------------------------------------------------- runs in this process


@pytest.mark.shared
def test_jobs_1_npz_and_its_manifest(tmp_path):
    files = make_corpus(tmp_path / "audio", 4, seed=8)
    out = tmp_path / "out"
    run = batch.embed_files(files, out, model=str(SEA64_GZ), suffix="sea")
    assert run.count("written") == len(files) and run.audio_seconds > 0
    found = {}
    for path in files:
        data = np.load(out / f"{path.stem}_sea.npz")
        found[path.as_posix()] = (data["embedding"], data["timestamps"])
    assert_matches_reference(found, reference_embeddings(files, model=str(SEA64_GZ)))
    records = [json.loads(line) for line in (out / "_manifest.jsonl").read_text().splitlines()]
    assert {r["path"] for r in records} == {p.as_posix() for p in files}
    # The file's hash is the published one: its id is the official name (as model="sea-64").
    assert {r["model"] for r in records} == {"edgel3_sea_ust_audio_emb_64"}
    assert {r["fast_resample"] for r in records} == {False}


def test_resume_skips_done_files_and_redoes_changed_ones(tmp_path):
    files = make_corpus(tmp_path / "audio", 4, seed=3)
    out = tmp_path / "out"
    first = batch.embed_files(files, out, model="tiny", hop_size=0.5)
    assert first.count("written") == 4
    # The same run again: all done. A changed input is redone (its size/mtime changed).
    audio, sr = sf.read(files[0])
    sf.write(files[0], audio[: len(audio) // 2], sr, subtype="FLOAT")
    again = batch.embed_files(files, out, model="tiny", hop_size=0.5)
    assert [r.status for r in again.results] == ["written", "skipped", "skipped", "skipped"]
    # Outputs made with other options are stale, not mistaken for done.
    other_hop = batch.embed_files(files, out, model="tiny", hop_size=0.25)
    assert other_hop.count("written") == 4
    assert np.load(out / f"{files[1].stem}.npz")["timestamps"][1] == 0.25


def test_fast_and_exact_outputs_are_never_mistaken_for_each_other(tmp_path):
    files = make_corpus(tmp_path / "audio", 3, seed=6)
    out = tmp_path / "ds"
    run = dict(model="tiny", output_format="parquet", hop_size=0.5)
    assert batch.embed_files(files, out, **run).count("written") == 3
    fast = batch.embed_files(files, out, fast_resample=True, **run)
    assert fast.count("written") == 3, "exact outputs are not done for a fast run"
    assert_matches_reference(
        batch.read_parquet_embeddings(out),
        reference_embeddings(files, hop_size=0.5, fast_resample=True),
    )
    assert batch.embed_files(files, out, fast_resample=True, **run).count("skipped") == 3
    # Records written before the field existed were exact runs.
    legacy = {"model": "m", "hop_size": 0.5, "center": True, "format": "npz"}
    manifest = outputs.ResultsManifest(tmp_path, {**legacy, "fast_resample": False})
    assert manifest.matches(legacy)
    assert not outputs.ResultsManifest(tmp_path, {**legacy, "fast_resample": True}).matches(legacy)


def test_parquet_rows_of_a_changed_input_are_superseded(tmp_path):
    files = make_corpus(tmp_path / "audio", 3, seed=4)
    out = tmp_path / "ds"
    batch.embed_files(files, out, model="tiny", output_format="parquet", hop_size=0.5)
    audio, sr = sf.read(files[2])
    sf.write(files[2], audio[: sr // 2], sr, subtype="FLOAT")
    rerun = batch.embed_files(files, out, model="tiny", output_format="parquet", hop_size=0.5)
    assert [r.status for r in rerun.results] == ["skipped", "skipped", "written"]
    # The old part keeps the old rows; the reader returns the newest record's rows only.
    found = batch.read_parquet_embeddings(out)
    assert_matches_reference(found, reference_embeddings(files, hop_size=0.5))


def test_shards_in_one_parquet_dataset_cover_every_file_once(corpus, tmp_path):
    files, reference = corpus
    out = tmp_path / "ds"
    written = 0
    for index in range(3):
        run = batch.embed_files(
            files, out, model="tiny", output_format="parquet", shard=f"{index}/3"
        )
        written += run.count("written")
        assert (out / f"_manifest.shard-{index}-of-3.jsonl").exists() or not run.results
    assert written == len(files)
    assert_matches_reference(batch.read_parquet_embeddings(out), reference)
    rerun = batch.embed_files(files, out, model="tiny", output_format="parquet")
    assert rerun.count("skipped") == len(files), "the manifests of all shards are read"


def test_errors_file_and_cli_options(corpus, tmp_path, capsys):
    files, reference = corpus
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEfmt garbage")
    listing = tmp_path / "list.csv"
    listing.write_text("path\n" + "\n".join([*map(str, files[:3]), "bad.wav", "gone.wav"]) + "\n")
    errors = tmp_path / "errors.jsonl"
    out = tmp_path / "out"
    argv = ["--manifest", str(listing), "-o", str(out), "--model", "tiny"]
    rc = main([*argv, "--errors-file", str(errors), "--format", "npz", "--hop-size", "0.5"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "3 written, 0 skipped, 2 failed" in captured.out
    assert "files/s" in captured.out and "audio-seconds/s" in captured.out
    records = [json.loads(line) for line in errors.read_text().splitlines()]
    lines = [e for e in records if e["level"] == "error"]
    assert [Path(e["path"]).name for e in lines] == ["bad.wav", "gone.wav"]
    # Per-file warnings are recorded too (the corpus's first clip is shorter than a window).
    assert {e["level"] for e in records} == {"error", "warning"}
    assert "Could not read" in lines[0]["error"] and "could not be found" in lines[1]["error"]
    assert sorted(p.name for p in out.glob("*.npz")) == sorted(f"{p.stem}.npz" for p in files[:3])
    # Usage errors: a shard out of range, no inputs at all, Ray options without Ray.
    assert main([*argv, "--shard", "3/3"]) == 2
    assert main(["-o", str(out)]) == 2
    assert main([str(files[0]), "--ray-address", "auto"]) == 2


def test_cli_batch_defaults_equal_library_defaults():
    import inspect

    args = build_parser().parse_args(["x.wav"])
    params = inspect.signature(batch.embed_files).parameters
    assert (args.jobs or 1) == params["jobs"].default
    assert (args.format or "npz") == params["output_format"].default
    assert args.shard == params["shard"].default
    assert args.errors_file == params["errors_file"].default
    assert args.fast_resample == params["fast_resample"].default
    assert args.engine == "local" and args.manifest is None


def test_invalid_run_options(corpus, tmp_path):
    files, _ = corpus
    for bad in (0, True, 2.0):  # True and 2.0 are not integers here (edgel3.checks)
        with pytest.raises(ParameterError, match="jobs must be a positive integer"):
            batch.embed_files(files, tmp_path, model="tiny", jobs=bad)
    with pytest.raises(ParameterError, match="files_per_part"):
        batch.embed_files(files, tmp_path, model="tiny", files_per_part=True)
    with pytest.raises(ParameterError, match="batch_size"):
        batch.embed_files(files, tmp_path, model="tiny", batch_size=0)
    with pytest.raises(ParameterError, match="fast_resample"):
        batch.embed_files(files, tmp_path, model="tiny", fast_resample="yes")
    with pytest.raises(ParameterError, match="output_format"):
        batch.embed_files(files, tmp_path, model="tiny", output_format="csv")
    with pytest.raises(ParameterError, match="output directory"):
        batch.embed_files(files, None, model="tiny", output_format="parquet")
    with pytest.raises(ParameterError, match="jobs > 1, model must be .* loaded"):
        batch.embed_files(files, tmp_path, model=resolve_model("tiny").load(), jobs=2)
    # An option that only the model can check stops the run (it concerns every file).
    with pytest.raises(ParameterError, match="shorter than one sample"):
        batch.embed_files(files[:1], tmp_path, model="tiny", hop_size=1e-5)
    assert not list(tmp_path.glob("*.npz"))


def test_a_loaded_model_runs_in_this_process(corpus, tmp_path):
    files, reference = corpus
    loaded = resolve_model("tiny").load()
    run = batch.embed_files(files[:2], tmp_path, model=loaded, output_format="parquet")
    assert run.count("written") == 2
    found = batch.read_parquet_embeddings(tmp_path)
    assert_matches_reference(found, {p.as_posix(): reference[p.as_posix()] for p in files[:2]})
    records = (tmp_path / "_manifest.jsonl").read_text().splitlines()
    (model_id,) = {json.loads(line)["model"] for line in records}
    assert model_id == resolve_model(loaded).model_id


def test_old_import_paths_re_export_the_batch_package():
    from edgel3 import distributed, parallel
    from edgel3 import outputs as old_outputs

    assert parallel.embed_files is batch.embed_files
    assert distributed.embed_files_ray is batch.embed_files_ray
    assert old_outputs.read_parquet_embeddings is batch.read_parquet_embeddings
    assert old_outputs.npz_record is batch.outputs.manifest_record
    assert parallel.ModelRef is ModelReference
    reference = parallel.resolve_model_ref("tiny")
    assert isinstance(reference, ModelReference) and reference.kind == "bundled"
    for module in (parallel, distributed, old_outputs, batch):
        assert all(hasattr(module, name) for name in module.__all__), module


# --------------------------------------------------------------------------- worker processes

# `edgel3 --jobs 2 --format parquet`, slowed down and with small parts so that it can be
# killed mid-way: a part is written, then 0.4 s pass before it is recorded and renamed.
_KILLED_RUN = """
import sys, time
import pyarrow.parquet as pq
from edgel3 import batch, cli

write_table = pq.write_table

def slow_write_table(table, where, **kwargs):
    write_table(table, where, **kwargs)
    time.sleep(0.4)

pq.write_table = slow_write_table
batch.embed_files.__kwdefaults__["files_per_part"] = 2
if __name__ == "__main__":  # spawned workers import this file too
    sys.exit(cli.main(sys.argv[1:]))
"""


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_jobs_2_killed_then_resumed_loses_and_duplicates_nothing(tmp_path):
    import pyarrow.parquet as pq

    files = make_corpus(tmp_path / "audio", 16, seed=11)
    out = tmp_path / "ds"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILLED_RUN))
    argv = [*map(str, files), "-o", str(out), "--model", "tiny", "--format", "parquet"]
    proc = subprocess.Popen(
        [sys.executable, str(script), *argv, "--jobs", "2", "-q"],
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    manifest = out / "_manifest.jsonl"
    workers = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and manifest.read_text().count("\n") >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        workers = _children(proc.pid)
        assert len(workers) >= 2
        proc.send_signal(signal.SIGKILL)  # the parent only: its workers must notice and exit
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "orphaned workers kept running"
    finally:
        if proc.poll() is None or any(_alive(pid) for pid in workers):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert 4 <= len(records) < len(files)
    # A part is recorded, then renamed into place: all that is visible is complete and recorded.
    committed = {r["path"] for r in records if (out / r["output"]).exists()}
    visible = pq.read_table(out)
    assert set(visible.column("path").to_pylist()) == committed

    # The parts written by the two workers hold get_embedding's numbers (within the tolerance:
    # the workers run with half the threads of this process).
    reference = reference_embeddings(files)
    by_workers = batch.read_parquet_embeddings(out)
    assert_matches_reference(by_workers, {p: reference[p] for p in by_workers})

    rerun = batch.embed_files(files, out, model="tiny", output_format="parquet", files_per_part=2)
    assert rerun.count("skipped") == len(committed)
    assert rerun.count("written") == len(files) - len(committed)
    assert not list(out.glob(".*")), "the rerun removed what the killed run left"
    table = pq.read_table(out)
    rows_per_file = {}
    for path in table.column("path").to_pylist():
        rows_per_file[path] = rows_per_file.get(path, 0) + 1
    assert rows_per_file == {p: len(ts) for p, (_, ts) in reference.items()}, "no lost/dup rows"
    assert_matches_reference(batch.read_parquet_embeddings(out), reference)


def test_batch_modules_import_no_heavy_stack():
    code = (
        "import sys, edgel3.batch, edgel3.parallel, edgel3.distributed, edgel3.outputs; "
        "heavy = {'tensorflow', 'keras', 'ray', 'pyarrow'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_jobs_2_fast_resample_streams_long_files_and_matches_get_embedding(corpus, tmp_path):
    files, _ = corpus
    inputs = [*files[:3], make_long_file(tmp_path / "long.wav")]
    run = batch.embed_files(
        inputs, tmp_path / "ds", model="tiny", jobs=2, output_format="parquet", fast_resample=True
    )
    assert run.count("written") == len(inputs)
    assert run.audio_seconds == pytest.approx(sum(audio_info(p).duration for p in inputs))
    assert_matches_reference(
        batch.read_parquet_embeddings(tmp_path / "ds"),
        reference_embeddings(inputs, fast_resample=True),
    )
