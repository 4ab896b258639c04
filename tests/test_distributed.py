"""The Ray Data engine on a real local Ray instance with 2 CPUs (one per module: slow start)."""

from __future__ import annotations

import json
import sys

import pytest

from edgel3 import distributed, outputs
from edgel3.cli import main
from edgel3.exceptions import EdgeL3Error, ParameterError

from .conftest import SEA64_GZ
from .test_parallel import assert_same_as_reference, make_corpus, reference_embeddings

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
    assert table.schema == outputs.parquet_schema()
    assert set(table.column("model").to_pylist()) == {"edgel3_sea_ust_audio_emb_64"}
    reference = reference_embeddings(files)
    assert table.num_rows == sum(len(ts) for _, ts in reference.values()), "no lost/dup rows"
    assert_same_as_reference(outputs.read_parquet_embeddings(out), reference)
    [error] = [json.loads(line) for line in errors.read_text().splitlines()]
    assert error["path"] == bad.as_posix() and "Could not read" in error["error"]

    # Resume: the recorded files are skipped without starting a pipeline; the bad one is retried.
    again = distributed.embed_files_ray(files, out, model=str(SEA64_GZ))
    assert again.count("skipped") == len(files) and again.count("written") == 0


def test_ray_options_are_checked_before_starting_anything(tmp_path):
    files = make_corpus(tmp_path / "audio", 1)
    with pytest.raises(ParameterError, match="Parquet"):
        distributed.embed_files_ray(files, tmp_path, model=str(SEA64_GZ), output_format="npz")
    with pytest.raises(ParameterError, match="output directory"):
        distributed.embed_files_ray(files, None, model=str(SEA64_GZ))
    with pytest.raises(ParameterError, match="shard"):
        distributed.embed_files_ray(files, tmp_path, model=str(SEA64_GZ), shard=(2, 2))


def test_missing_ray_gives_the_install_hint(monkeypatch, tmp_path, sea64_weights_dir):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(EdgeL3Error, match=r"pip install edgel3\[ray\]"):
        distributed.embed_files_ray([tmp_path / "a.wav"], tmp_path, model="sea-64")
