"""The Ray Data engine on a real local Ray instance with 2 CPUs (one per module: slow start)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from edgel3 import batch
from edgel3.cli import main
from edgel3.exceptions import EdgeL3Error, ParameterError
from edgel3.reference import resolve_model

from .conftest import SEA64_GZ
from .test_parallel import (
    assert_matches_reference,
    make_corpus,
    make_long_file,
    reference_embeddings,
)

# Ray Data's own DataContext() sets fields it deprecated (use_push_based_shuffle, use_polars in
# ray 2.60), warning from its __setattr__ shim: nothing our code does or can change.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="module")
def local_ray():
    import ray

    # address="local": always a private instance, never another process's cluster.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.shared
def test_ray_run_on_a_folder_matches_get_embedding_and_resumes(
    local_ray, tmp_path, capsys, sea64_weights_dir
):
    import pyarrow.parquet as pq

    files = make_corpus(tmp_path / "audio", 7, seed=5)
    bad = tmp_path / "audio" / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEfmt garbage")
    out, errors = tmp_path / "ds", tmp_path / "errors.jsonl"
    # An official name: the actors load the file the driver found (they do not see our env).
    argv = [str(tmp_path / "audio"), "-o", str(out), "--model", "sea-64", "--engine", "ray"]
    rc = main([*argv, "--errors-file", str(errors), "-q"])
    captured = capsys.readouterr()
    assert rc == 1 and "bad.wav" in captured.err  # the bad file is reported, the rest written

    # One committed directory of parts written by Ray's write_parquet, and the manifest.
    committed = [p.name for p in out.iterdir() if not p.name.startswith(("_", "."))]
    assert len(committed) == 1 and committed[0].startswith("ray-")
    table = pq.read_table(out)
    assert table.schema == batch.parquet_schema(64)  # SEA-64: fixed_size_list<float32>[64]
    assert set(table.column("model").to_pylist()) == {"edgel3_sea_ust_audio_emb_64"}
    reference = reference_embeddings(files, model=str(SEA64_GZ))
    assert table.num_rows == sum(len(ts) for _, ts in reference.values()), "no lost/dup rows"
    # Within 1e-5 of the scale, not bit for bit: each actor runs TensorFlow with one thread
    # (num_cpus=1), this process with all cores, and float32 reductions depend on that.
    assert_matches_reference(batch.read_parquet_embeddings(out), reference)
    records = [json.loads(line) for line in errors.read_text().splitlines()]
    [error] = [record for record in records if record["level"] == "error"]
    assert error["path"] == bad.as_posix() and "Could not read" in error["error"]

    # Resume: the recorded files are skipped without starting a pipeline; the bad one is retried.
    again = batch.embed_files_ray(files, out, model=str(SEA64_GZ))
    assert again.count("skipped") == len(files) and again.count("written") == 0


def test_ray_streams_long_files_and_accepts_fast_resample(local_ray, tmp_path):
    files = make_corpus(tmp_path / "audio", 2, seed=9)
    # 61 s: above edgel3.engine.STREAM_MIN_SECONDS, so the actor's embed_path reads it block by
    # block (a setting monkeypatched here would not reach the actor processes).
    files.append(make_long_file(tmp_path / "audio" / "long.wav"))
    out = tmp_path / "ds"
    exact = batch.embed_files_ray(files, out, model="tiny", num_cpus=1, files_per_batch=1)
    assert exact.count("written") == len(files)
    found = batch.read_parquet_embeddings(out)
    assert_matches_reference(found, reference_embeddings(files))
    long_rows = found[files[-1].as_posix()][0]
    assert len(long_rows) > 600 and np.all(np.isfinite(long_rows)) and np.abs(long_rows).max() > 0

    # The same dataset with the fast resampler: a different config, so every file is redone
    # (not taken for done), and the reader returns the newest rows.
    fast = batch.embed_files_ray(files, out, model="tiny", fast_resample=True)
    assert fast.count("written") == len(files)
    records = [json.loads(x) for x in (out / "_manifest.jsonl").read_text().splitlines()]
    assert sorted(r["fast_resample"] for r in records) == [False] * 3 + [True] * 3
    assert_matches_reference(
        batch.read_parquet_embeddings(out), reference_embeddings(files, fast_resample=True)
    )


def test_ray_options_are_checked_before_starting_anything(tmp_path):
    files = make_corpus(tmp_path / "audio", 1)
    run = batch.embed_files_ray
    with pytest.raises(ParameterError, match="Parquet"):
        run(files, tmp_path, model="tiny", output_format="npz")
    with pytest.raises(ParameterError, match="output directory"):
        run(files, None, model="tiny")
    with pytest.raises(ParameterError, match="shard"):
        run(files, tmp_path, model="tiny", shard=(2, 2))
    # True is not an integer here (edgel3.checks); it was accepted before.
    with pytest.raises(ParameterError, match="files_per_batch must be a positive integer"):
        run(files, tmp_path, model="tiny", files_per_batch=True)
    for bad in (True, 0, (2, 1), (0, 2)):
        with pytest.raises(ParameterError, match="concurrency"):
            run(files, tmp_path, model="tiny", concurrency=bad)
    with pytest.raises(ParameterError, match="num_cpus"):
        run(files, tmp_path, model="tiny", num_cpus=True)
    with pytest.raises(ParameterError, match="batch_size"):
        run(files, tmp_path, model="tiny", batch_size=True)
    with pytest.raises(ParameterError, match="the Ray engine, model must be .* loaded"):
        run(files, tmp_path, model=resolve_model("tiny").load())
    assert not list(tmp_path.glob("_manifest*")), "nothing was planned or written"


def test_missing_ray_gives_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(EdgeL3Error, match=r"pip install edgel3\[ray\]"):
        batch.embed_files_ray([tmp_path / "a.wav"], tmp_path, model="tiny")
