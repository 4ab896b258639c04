"""Typed, self-describing Parquet datasets: fixed-size embeddings, metadata, every reader.

A dataset written by :func:`edgel3.batch.embed_files` is read with pyarrow, pandas (to a
2-D array without a Python loop, as ``docs/outputs.rst`` shows) and Hugging Face
``datasets``; datasets of older versions (``list<float32>``) still read; rows made with
other options are never mixed into one dataset.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgel3
from edgel3 import batch
from edgel3.cli import main
from edgel3.exceptions import OutputError
from edgel3.reference import resolve_model

from .test_parallel import assert_matches_reference, make_corpus, reference_embeddings

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

HOP = 0.5  # few rows per clip: the readers are tested, not the model


@pytest.fixture
def dataset(tmp_path):
    """A Parquet dataset of four clips embedded by the bundled tiny model."""
    files = make_corpus(tmp_path / "audio", 4, seed=11)
    out = tmp_path / "ds"
    run = batch.embed_files(files, out, model="tiny", output_format="parquet", hop_size=HOP)
    assert run.count("written") == 4
    return files, out


def part_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.parquet"))


def sorted_rows(paths, stamps, matrix):
    """Rows ordered by (path, timestamp): each reader returns parts in its own order."""
    order = np.lexsort((np.asarray(stamps), np.asarray(paths)))
    return matrix[order]


def reference_matrix(files, **options) -> np.ndarray:
    reference = reference_embeddings(files, **options)
    return np.concatenate([reference[path][0] for path in sorted(reference)])


# --------------------------------------------------------------------------- writing


def test_parts_are_typed_and_carry_how_they_were_made(dataset):
    files, out = dataset
    tiny = resolve_model("tiny")
    table = pq.read_table(out)
    embedding_type = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(embedding_type)
    assert embedding_type.list_size == tiny.embedding_size
    assert embedding_type.value_type == pa.float32()
    for part in part_files(out):
        record = json.loads(pq.read_schema(part).metadata[b"edgel3"])
        assert record == {
            "model": tiny.model_id,
            "hop_size": HOP,
            "center": True,
            "fast_resample": False,
            "format": "parquet",
            "edgel3": edgel3.__version__,
            "sample_rate": tiny.sample_rate,
            "embedding_size": tiny.embedding_size,
        }
    # The .npz provenance record of the same file, less its input facts (in the manifest).
    [result] = edgel3.process_files(files[:1], out.parent / "npz", model="tiny", hop_size=HOP)
    provenance = json.loads(str(np.load(result.output)["provenance"]))
    assert {k: v for k, v in provenance.items() if k != "input"}.items() <= record.items()


def test_embeddings_table_types_parts_without_rows_when_told_the_size():
    empty = batch.embeddings_table([], "m", {"model": "m"}, embedding_size=5)
    assert empty.num_rows == 0 and empty.schema.field("embedding").type.list_size == 5
    assert json.loads(empty.schema.metadata[b"edgel3"])["embedding_size"] == 5
    untyped = batch.embeddings_table([], "m")  # size unknown: older versions' variable list
    assert untyped.schema == batch.parquet_schema() and untyped.schema.metadata is None
    with pytest.raises(OutputError, match=r"different sizes in one part: \[3, 5\]"):
        batch.embeddings_table([("a", np.zeros((2, 3)), np.zeros(2))], "m", embedding_size=5)


@settings(max_examples=25, deadline=None)
@given(
    dim=st.integers(1, 9),
    lengths=st.lists(st.integers(0, 4), min_size=1, max_size=4).filter(any),
    seed=st.integers(0, 2**16),
)
def test_any_part_reads_back_exactly_with_pyarrow_pandas_and_edgel3(dim, lengths, seed):
    import pandas as pd

    rng = np.random.default_rng(seed)
    items = [
        (f"f{i}.wav", rng.normal(size=(n, dim)).astype(np.float32), np.arange(n) * 0.1)
        for i, n in enumerate(lengths)
    ]
    table = batch.embeddings_table(items, "m", {"model": "m"}, embedding_size=dim)
    expected = np.concatenate([emb for _, emb, _ in items])
    with tempfile.TemporaryDirectory() as folder:
        pq.write_table(table, Path(folder) / "part-0.parquet")
        frame = pd.read_parquet(folder, dtype_backend="pyarrow")
        matrix = frame["embedding"].list.flatten().to_numpy().reshape(len(frame), -1)
        found = batch.read_parquet_embeddings(folder)
    assert matrix.dtype == np.float32 and matrix.shape == (len(expected), dim)
    np.testing.assert_array_equal(matrix, expected)  # float32 stored and read: exact
    assert sorted(found) == sorted(p for p, emb, _ in items if len(emb))
    for path, emb, stamps in items:
        if len(emb):
            np.testing.assert_array_equal(found[path][0], emb)
            np.testing.assert_array_equal(found[path][1], stamps)


# --------------------------------------------------------------------------- every reader


def test_pyarrow_reads_a_2d_array(dataset):
    import pyarrow.compute as pc

    files, out = dataset
    table = pq.read_table(out)
    # docs/outputs.rst: the values of every row, then one reshape (no Python loop).
    matrix = pc.list_flatten(table["embedding"]).to_numpy().reshape(table.num_rows, -1)
    found = sorted_rows(table["path"].to_pylist(), table["timestamp"].to_numpy(), matrix)
    np.testing.assert_allclose(found, reference_matrix(files, hop_size=HOP), rtol=0, atol=1e-4)


def test_pandas_reads_a_2d_float32_array_without_a_loop(dataset):
    import pandas as pd

    files, out = dataset
    frame = pd.read_parquet(out, dtype_backend="pyarrow")
    # docs/outputs.rst's one-liner: Arrow's list accessor, then one reshape.
    matrix = frame["embedding"].list.flatten().to_numpy().reshape(len(frame), -1)
    assert matrix.dtype == np.float32 and matrix.shape[1] == resolve_model("tiny").embedding_size
    found = sorted_rows(frame["path"].tolist(), frame["timestamp"].to_numpy(), matrix)
    # The rows of get_embedding; 1e-4 of values up to ~20 allows float32 rounding from
    # another batch layout in the workers (tests/test_parallel.py uses 1e-5 of the scale).
    np.testing.assert_allclose(found, reference_matrix(files, hop_size=HOP), rtol=0, atol=1e-4)


def test_hugging_face_datasets_reads_fixed_length_vectors(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # read when datasets is imported
    hf = pytest.importorskip("datasets")

    files, out = dataset
    ds = hf.Dataset.from_parquet(str(out / "**" / "*.parquet"), cache_dir=str(tmp_path / "hf"))
    assert ds.features["embedding"].length == resolve_model("tiny").embedding_size
    matrix = ds.with_format("numpy")["embedding"][:]
    assert matrix.dtype == np.float32 and matrix.ndim == 2
    found = sorted_rows(ds["path"][:], np.asarray(ds["timestamp"][:]), matrix)
    np.testing.assert_allclose(found, reference_matrix(files, hop_size=HOP), rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- older datasets


def write_old_way(out: Path) -> None:
    """Rewrite each part as older edgel3 did: list<float32> rows, no rate or size recorded."""
    for part in part_files(out):
        table = pq.read_table(part)
        record = json.loads(table.schema.metadata[b"edgel3"])
        for key in ("sample_rate", "embedding_size"):
            del record[key]
        old = table.cast(batch.parquet_schema()).replace_schema_metadata(
            {"edgel3": json.dumps(record, sort_keys=True)}
        )
        pq.write_table(old, part)


def test_datasets_of_older_versions_still_read_and_are_retyped_when_redone(dataset):
    import pandas as pd

    files, out = dataset
    before = batch.read_parquet_embeddings(out)
    write_old_way(out)
    assert pq.read_table(out).schema.field("embedding").type == pa.list_(pa.float32())
    after = batch.read_parquet_embeddings(out)
    assert sorted(after) == sorted(before)
    for path, (embedding, stamps) in before.items():
        np.testing.assert_array_equal(after[path][0], embedding)
        np.testing.assert_array_equal(after[path][1], stamps)
    frame = pd.read_parquet(out, dtype_backend="pyarrow")  # a variable list: flatten too
    assert frame["embedding"].list.flatten().to_numpy().size == len(frame) * 64
    # The same run again: up to date (the manifest), nothing rewritten.
    again = batch.embed_files(files, out, model="tiny", output_format="parquet", hop_size=HOP)
    assert again.count("skipped") == 4
    # Redone with other options: old parts are dropped, the dataset is typed again.
    batch.embed_files(files, out, model="tiny", output_format="parquet", hop_size=0.25)
    assert pa.types.is_fixed_size_list(pq.read_table(out).schema.field("embedding").type)
    assert_matches_reference(
        batch.read_parquet_embeddings(out), reference_embeddings(files, hop_size=0.25)
    )


def test_ragged_old_rows_are_refused(tmp_path):
    rows = pa.table(
        {
            "path": ["a.wav", "a.wav"],
            "timestamp": [0.0, 0.1],
            "embedding": pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32())),
            "model": ["m", "m"],
        }
    )
    pq.write_table(rows, tmp_path / "part-0.parquet")
    with pytest.raises(OutputError, match=r"holds embeddings of sizes \[1, 2\]"):
        batch.read_parquet_embeddings(tmp_path)


# --------------------------------------------------------------------------- never mixed


def test_a_run_with_other_options_never_mixes_rows(dataset, tmp_path, capsys):
    files, out = dataset
    extra = make_corpus(tmp_path / "more", 2, seed=12)
    before = batch.read_parquet_embeddings(out)
    # New files with the dataset's options: appended.
    batch.embed_files(extra, out, model="tiny", output_format="parquet", hop_size=HOP)
    assert len(batch.read_parquet_embeddings(out)) == 6
    # New files with another hop: refused before any work, naming what is there.
    with pytest.raises(OutputError, match=r"other options .*hop_size 0\.5, .*\(4 files"):
        batch.embed_files(files[:2], out, model="tiny", output_format="parquet", hop_size=0.25)
    argv = [str(p) for p in files[:2]] + ["-o", str(out), "--model", "tiny", "-q"]
    assert main([*argv, "--format", "parquet", "--hop-size", "0.25"]) == 1
    assert "Their rows would be mixed" in capsys.readouterr().err
    kept = batch.read_parquet_embeddings(out)
    for path, (embedding, _) in before.items():
        np.testing.assert_array_equal(kept[path][0], embedding)
    # Every file of the dataset with the new hop: redone, and one hop again.
    everything = files + extra
    batch.embed_files(everything, out, model="tiny", output_format="parquet", hop_size=0.25)
    assert_matches_reference(
        batch.read_parquet_embeddings(out), reference_embeddings(everything, hop_size=0.25)
    )
    hops = {json.loads(pq.read_schema(p).metadata[b"edgel3"])["hop_size"] for p in part_files(out)}
    assert hops == {0.25}


@pytest.mark.parametrize(
    ("second", "match"),
    [
        ({"hop_size": 0.25}, r"mixes rows .*hop_size 0\.25.*hop_size 0\.5"),
        ({"dim": 5}, r"mixes rows .*3 values.*5 values"),
    ],
    ids=["other hop", "other size"],
)
def test_the_reader_refuses_a_dataset_of_mixed_rows(tmp_path, second, match):
    config = {"model": "m", "hop_size": 0.5, "center": True, "fast_resample": False}
    for index, change in enumerate([{}, second]):
        dim = change.get("dim", 3)
        record = {**config, **{k: v for k, v in change.items() if k != "dim"}}
        items = [(f"{index}.wav", np.ones((2, dim), np.float32), np.array([0.0, 0.5]))]
        table = batch.embeddings_table(items, "m", record)
        pq.write_table(table, tmp_path / f"part-{index}.parquet")
    with pytest.raises(OutputError, match=match):
        batch.read_parquet_embeddings(tmp_path)
