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

from edgel3 import core, outputs, parallel
from edgel3.cli import build_parser, main
from edgel3.exceptions import OutputError, ParameterError

from .conftest import SEA64_GZ


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


def reference_embeddings(files, hop_size=0.1, center=True) -> dict[str, tuple]:
    """get_embedding, one file at a time in this process: the numbers every engine must give."""
    model = core.load_model_file(SEA64_GZ)
    result = {}
    for path in files:
        audio, sr = sf.read(path)
        with warnings.catch_warnings():
            # Clips under 1 s warn that they are padded; not what is tested here.
            warnings.simplefilter("ignore")
            result[Path(path).as_posix()] = core.get_embedding(
                audio, sr, model=model, hop_size=hop_size, center=center, verbose=0
            )
    return result


def assert_same_as_reference(found: dict, reference: dict) -> None:
    """Bit-identical: every engine embeds each file alone, with the same batches and kernels."""
    assert sorted(found) == sorted(reference)
    for path, (embedding, stamps) in reference.items():
        np.testing.assert_array_equal(found[path][0], embedding, err_msg=path)
        np.testing.assert_array_equal(found[path][1], stamps, err_msg=path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    files = make_corpus(tmp_path_factory.mktemp("corpus"), 9)
    return files, reference_embeddings(files)


# --------------------------------------------------------------------------- inputs and shards


def test_parse_shard():
    assert parallel.parse_shard("0/1") == (0, 1)
    assert parallel.parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/3", "1", "a/b", "1/0"):
        with pytest.raises(ParameterError, match="shard"):
            parallel.parse_shard(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_cover_every_file_exactly_once_and_are_stable(count):
    paths = [f"data/{d}/clip{i}.wav" for d in range(5) for i in range(40)]
    shards = [parallel.select_shard(paths, i, count) for i in range(count)]
    assert sorted(p for shard in shards for p in shard) == sorted(paths)
    # A path's shard depends on the path alone: not on order, nor on the other files.
    reordered = [parallel.select_shard(paths[::-1] + ["new.wav"], i, count) for i in range(count)]
    for before, after in zip(shards, reordered):
        assert set(before) == set(after) - {"new.wav"}
    if count > 1:
        assert all(shards), "200 paths hashed into every shard"


def test_read_path_list_txt_and_csv(tmp_path):
    (tmp_path / "lists").mkdir()
    txt = tmp_path / "lists" / "files.txt"
    txt.write_text("# comment\na.wav\n\n/abs/b.flac\n")
    assert parallel.read_path_list(txt) == [tmp_path / "lists" / "a.wav", Path("/abs/b.flac")]
    csv_file = tmp_path / "lists" / "meta.csv"
    csv_file.write_text("fold,path,label\n1,x/a.wav,dog\n2,b.wav,rain\n")
    assert parallel.read_path_list(csv_file) == [
        tmp_path / "lists" / "x" / "a.wav",
        tmp_path / "lists" / "b.wav",
    ]
    no_path_column = tmp_path / "first.csv"
    no_path_column.write_text("name,label\nc.wav,1\n")
    assert parallel.read_path_list(no_path_column) == [tmp_path / "c.wav"]


def test_gather_inputs_deduplicates_and_keeps_missing_listed_files(tmp_path):
    files = make_corpus(tmp_path / "audio", 3)
    listing = tmp_path / "list.txt"
    listing.write_text(f"audio/{files[0].relative_to(tmp_path / 'audio')}\nmissing.wav\n")
    found = parallel.gather_inputs([tmp_path / "audio"], manifest=listing)
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

    table = outputs.embeddings_table(
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
    assert outputs.read_parquet_embeddings(tmp_path)["a.wav"][0].shape == (2, 3)
    removed = outputs.remove_partial_outputs(tmp_path)
    assert sorted(removed) == sorted([partial, staging])
    assert other_shard.exists(), "a concurrent shard's temporary file is left alone"


def test_embeddings_table_schema():
    table = outputs.embeddings_table(
        [
            ("a.wav", np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.0, 0.1])),
            ("b.wav", np.zeros((1, 3), np.float32), np.array([0.0])),
        ],
        "m",
    )
    assert table.schema == outputs.parquet_schema()
    assert table.column("path").to_pylist() == ["a.wav", "a.wav", "b.wav"]
    assert table.column("embedding").to_pylist()[1] == [3.0, 4.0, 5.0]
    with pytest.raises(OutputError, match="different sizes"):
        outputs.embeddings_table(
            [("a", np.zeros((1, 3)), np.zeros(1)), ("b", np.zeros((1, 4)), np.zeros(1))], "m"
        )


# --------------------------------------------------------------------------- runs in this process


def test_jobs_1_npz_and_its_manifest(corpus, tmp_path):
    files, reference = corpus
    out = tmp_path / "out"
    run = parallel.embed_files(files, out, model=str(SEA64_GZ), suffix="sea")
    assert run.count("written") == len(files) and run.audio_seconds > 0
    found = {}
    for path in files:
        data = np.load(out / f"{path.stem}_sea.npz")
        found[path.as_posix()] = (data["embedding"], data["timestamps"])
    assert_same_as_reference(found, reference)
    records = [json.loads(line) for line in (out / "_manifest.jsonl").read_text().splitlines()]
    assert {r["path"] for r in records} == {p.as_posix() for p in files}
    assert {r["model"] for r in records} == {"edgel3_sea_ust_audio_emb_64"}


def test_resume_skips_done_files_and_redoes_changed_ones(tmp_path, sea64_weights_dir):
    files = make_corpus(tmp_path / "audio", 4, seed=3)
    out = tmp_path / "out"
    first = parallel.embed_files(files, out, model=str(SEA64_GZ), hop_size=0.5)
    assert first.count("written") == 4
    # The same run again: all done. A changed input is redone (its size/mtime changed).
    audio, sr = sf.read(files[0])
    sf.write(files[0], audio[: len(audio) // 2], sr, subtype="FLOAT")
    again = parallel.embed_files(files, out, model="sea-64", hop_size=0.5)
    assert [r.status for r in again.results] == ["written", "skipped", "skipped", "skipped"]
    # Outputs made with other options are stale, not mistaken for done.
    other_hop = parallel.embed_files(files, out, model="sea-64", hop_size=0.25)
    assert other_hop.count("written") == 4
    assert np.load(out / f"{files[1].stem}.npz")["timestamps"][1] == 0.25


def test_parquet_rows_of_a_changed_input_are_superseded(tmp_path):
    files = make_corpus(tmp_path / "audio", 3, seed=4)
    out = tmp_path / "ds"
    model = str(SEA64_GZ)
    parallel.embed_files(files, out, model=model, output_format="parquet", hop_size=0.5)
    audio, sr = sf.read(files[2])
    sf.write(files[2], audio[: sr // 2], sr, subtype="FLOAT")
    rerun = parallel.embed_files(files, out, model=model, output_format="parquet", hop_size=0.5)
    assert [r.status for r in rerun.results] == ["skipped", "skipped", "written"]
    # The old part keeps the old rows; the reader returns the newest record's rows only.
    found = outputs.read_parquet_embeddings(out)
    assert_same_as_reference(found, reference_embeddings(files, hop_size=0.5))


def test_shards_in_one_parquet_dataset_cover_every_file_once(corpus, tmp_path):
    files, reference = corpus
    out = tmp_path / "ds"
    written = 0
    for index in range(3):
        run = parallel.embed_files(
            files, out, model=str(SEA64_GZ), output_format="parquet", shard=f"{index}/3"
        )
        written += run.count("written")
        assert (out / f"_manifest.shard-{index}-of-3.jsonl").exists() or not run.results
    assert written == len(files)
    assert_same_as_reference(outputs.read_parquet_embeddings(out), reference)
    rerun = parallel.embed_files(files, out, model=str(SEA64_GZ), output_format="parquet")
    assert rerun.count("skipped") == len(files), "the manifests of all shards are read"


def test_errors_file_and_cli_options(corpus, tmp_path, capsys):
    files, reference = corpus
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEfmt garbage")
    listing = tmp_path / "list.csv"
    listing.write_text("path\n" + "\n".join([*map(str, files[:3]), "bad.wav", "gone.wav"]) + "\n")
    errors = tmp_path / "errors.jsonl"
    out = tmp_path / "out"
    argv = ["--manifest", str(listing), "-o", str(out), "--model", str(SEA64_GZ)]
    rc = main([*argv, "--errors-file", str(errors), "--format", "npz", "--hop-size", "0.5"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "3 written, 0 skipped (output exists; use --overwrite), 2 failed" in captured.out
    assert "files/s" in captured.out and "audio-seconds/s" in captured.out
    lines = [json.loads(line) for line in errors.read_text().splitlines()]
    assert [Path(e["path"]).name for e in lines] == ["bad.wav", "gone.wav"]
    assert "Could not read" in lines[0]["error"] and "could not be found" in lines[1]["error"]
    assert sorted(p.name for p in out.glob("*.npz")) == sorted(f"{p.stem}.npz" for p in files[:3])
    # Usage errors: a shard out of range, no inputs at all, Ray options without Ray.
    assert main([*argv, "--shard", "3/3"]) == 2
    assert main(["-o", str(out)]) == 2
    assert main([str(files[0]), "--ray-address", "auto"]) == 2


def test_cli_batch_defaults_equal_library_defaults():
    import inspect

    args = build_parser().parse_args(["x.wav"])
    params = inspect.signature(parallel.embed_files).parameters
    assert (args.jobs or 1) == params["jobs"].default
    assert (args.format or "npz") == params["output_format"].default
    assert args.shard == params["shard"].default
    assert args.errors_file == params["errors_file"].default
    assert args.engine == "local" and args.manifest is None


def test_invalid_run_options(corpus, tmp_path, sea64_weights_dir):
    files, _ = corpus
    with pytest.raises(ParameterError, match="jobs"):
        parallel.embed_files(files, tmp_path, model="sea-64", jobs=0)
    with pytest.raises(ParameterError, match="output_format"):
        parallel.embed_files(files, tmp_path, model="sea-64", output_format="csv")
    with pytest.raises(ParameterError, match="output directory"):
        parallel.embed_files(files, None, model="sea-64", output_format="parquet")
    with pytest.raises(ParameterError, match="loaded"):
        parallel.embed_files(files, tmp_path, model=core.load_model_file(SEA64_GZ), jobs=2)


# --------------------------------------------------------------------------- worker processes

# `edgel3 --jobs 2 --format parquet`, slowed down and with small parts so that it can be
# killed mid-way: a part is written, then 0.4 s pass before it is recorded and renamed.
_KILLED_RUN = """
import sys, time
import pyarrow.parquet as pq
from edgel3 import cli, parallel

write_table = pq.write_table

def slow_write_table(table, where, **kwargs):
    write_table(table, where, **kwargs)
    time.sleep(0.4)

pq.write_table = slow_write_table
parallel.embed_files.__kwdefaults__["files_per_part"] = 2
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
    argv = [*map(str, files), "-o", str(out), "--model", str(SEA64_GZ), "--format", "parquet"]
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

    # The parts written by the two workers hold get_embedding's numbers.
    reference = reference_embeddings(files)
    by_workers = outputs.read_parquet_embeddings(out)
    assert_same_as_reference(by_workers, {p: reference[p] for p in by_workers})

    rerun = parallel.embed_files(
        files, out, model=str(SEA64_GZ), output_format="parquet", files_per_part=2
    )
    assert rerun.count("skipped") == len(committed)
    assert rerun.count("written") == len(files) - len(committed)
    assert not list(out.glob(".*")), "the rerun removed what the killed run left"
    table = pq.read_table(out)
    rows_per_file = {}
    for path in table.column("path").to_pylist():
        rows_per_file[path] = rows_per_file.get(path, 0) + 1
    assert rows_per_file == {p: len(ts) for p, (_, ts) in reference.items()}, "no lost/dup rows"
    assert_same_as_reference(outputs.read_parquet_embeddings(out), reference)


def test_batch_modules_import_no_heavy_stack():
    code = (
        "import sys, edgel3.parallel, edgel3.distributed, edgel3.outputs; "
        "heavy = {'tensorflow', 'keras', 'ray', 'pyarrow'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bundled_tiny_model_in_workers_gives_get_embedding_numbers(corpus, tmp_path):
    files, _ = corpus
    run = parallel.embed_files(files[:2], tmp_path, model="tiny", output_format="parquet")
    assert run.count("written") == 2
    found = outputs.read_parquet_embeddings(tmp_path)
    for path in files[:2]:
        audio, sr = sf.read(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # clips under 1 s warn that they are padded
            embedding, stamps = core.get_embedding(audio, sr, model="tiny", verbose=0)
        # Same file, same model, one file per call: bit-identical.
        np.testing.assert_array_equal(found[path.as_posix()][0], embedding)
        np.testing.assert_array_equal(found[path.as_posix()][1], stamps)
