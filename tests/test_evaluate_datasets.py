"""Dataset layouts of edgel3.evaluate: ESC-50/ESC-10, UrbanSound8K, generic csv."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from edgel3.evaluate.datasets import (
    US8K_CLASSES,
    Dataset,
    detect_layout,
    load_dataset,
    load_esc50,
)
from edgel3.evaluate.metadata import check_folds, sorted_unique
from edgel3.exceptions import EdgeL3Warning, ParameterError

from .conftest import DATA_DIR

ESC10 = DATA_DIR / "esc10"


@pytest.mark.shared
def test_esc10_metadata_read_in_place():
    ds = load_dataset(ESC10, ESC10 / "meta" / "esc10.csv")
    assert ds.layout == "esc50" and len(ds) == 400
    assert ds.fold_names == (1, 2, 3, 4, 5)
    # Classes follow ESC-50's target order, not the alphabet.
    assert ds.classes[:3] == ("dog", "rooster", "rain")
    assert all(p.suffix == ".flac" and p.is_file() for p in ds.paths)  # .wav in csv -> .flac
    # The README: 8 clips of each class in each fold.
    counts = collections.Counter(zip(ds.folds, ds.labels.tolist()))
    assert set(counts.values()) == {8} and len(counts) == 50
    # Groups are Freesound source recordings: 304 of them, never split across folds.
    assert len(set(ds.groups)) == 304
    folds_of_group = collections.defaultdict(set)
    for group, fold in zip(ds.groups, ds.folds):
        folds_of_group[group].add(fold)
    assert all(len(f) == 1 for f in folds_of_group.values())


@pytest.mark.shared
def test_esc50_csv_with_esc10_audio_needs_skip():
    with pytest.raises(ParameterError, match=r"audio file not found in .*\(1600 of 2000 rows\)"):
        load_esc50(ESC10, ESC10 / "meta" / "esc50.csv")
    with pytest.warns(EdgeL3Warning, match="skipped 1600 of 2000 metadata rows"):
        ds = load_esc50(ESC10, ESC10 / "meta" / "esc50.csv", missing="skip")
    assert len(ds) == 400 and len(ds.classes) == 10


@pytest.mark.shared
def test_subset_keeps_only_given_folds():
    ds = load_dataset(ESC10, ESC10 / "meta" / "esc10.csv").subset(["2", 4])
    assert ds.fold_names == (2, 4) and len(ds) == 160
    with pytest.raises(ParameterError, match="got 7"):
        ds.subset([7])


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # the loaders only look at names; no audio is read
    return path


def test_us8k_folders_without_metadata(tmp_path):
    _touch(tmp_path / "fold1" / "100032-3-0-0.wav")
    _touch(tmp_path / "fold1" / "100032-3-0-1.wav")
    _touch(tmp_path / "fold2" / "7061-6-0-0.wav")
    _touch(tmp_path / "fold10" / "99180-9-1-3.wav")
    _touch(tmp_path / "fold10" / "readme.txt")
    assert detect_layout(tmp_path) == "us8k"
    ds = load_dataset(tmp_path)
    assert ds.fold_names == (1, 2, 10)
    assert ds.classes == (US8K_CLASSES[3], US8K_CLASSES[6], US8K_CLASSES[9])
    assert ds.labels.tolist() == [0, 0, 1, 2]
    assert ds.groups == ("100032", "100032", "7061", "99180")


def test_us8k_metadata_csv(tmp_path):
    _touch(tmp_path / "audio" / "fold5" / "1-2-0-0.wav")
    _touch(tmp_path / "audio" / "fold7" / "3-0-0-0.wav")
    csv = tmp_path / "UrbanSound8K.csv"
    csv.write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "1-2-0-0.wav,1,0,4,1,5,2,children_playing\n"
        "3-0-0-0.wav,3,0,4,1,7,0,air_conditioner\n"
    )
    ds = load_dataset(tmp_path, csv)  # finds the clips under audio/
    assert ds.layout == "us8k" and ds.classes == ("air_conditioner", "children_playing")
    assert ds.labels.tolist() == [1, 0] and ds.folds == (5, 7)


def test_generic_multilabel_csv(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav"):
        _touch(tmp_path / "clips" / name)
    csv = tmp_path / "meta.csv"
    csv.write_text(
        "path,label,fold\nclips/a.wav,dog;engine,train\nclips/b.wav,,test\nclips/c.wav,engine,test\n"
    )
    ds = load_dataset(None, csv, multilabel=True)  # paths relative to the csv
    assert ds.multilabel and ds.classes == ("dog", "engine")
    np.testing.assert_array_equal(ds.labels, [[1, 1], [0, 0], [0, 1]])
    assert ds.fold_names == ("test", "train")


@pytest.mark.parametrize(
    "header, message",
    [("name,cls\n", "Cannot tell the layout"), ("path,label\n", "Cannot tell the layout")],
)
def test_unknown_csv_layout_names_columns(tmp_path, header, message):
    csv = tmp_path / "m.csv"
    csv.write_text(header + "x,y\n")
    with pytest.raises(ParameterError, match=message):
        load_dataset(tmp_path, csv)


def test_bad_arguments(tmp_path):
    with pytest.raises(ParameterError, match="layout must be one of"):
        load_dataset(tmp_path, layout="esc")
    with pytest.raises(ParameterError, match="without metadata"):
        load_dataset(tmp_path)
    with pytest.raises(ParameterError, match="labels must have shape"):
        Dataset(paths=["a", "b"], labels=[0], folds=[1, 2], classes=["x"], groups=["a", "b"])


def test_fold_helpers():
    assert sorted_unique([3, 1, 3, 2]) == (1, 2, 3)
    assert sorted_unique(["test", 1, "train"]) == (1, "test", "train")  # mixed: by str
    # Folds typed on the command line ('2') name the dataset's int folds.
    assert check_folds(["2", 3], (1, 2, 3), "folds") == [2, 3]
    assert check_folds(1, (1, 2), "test_folds") == [1]
    with pytest.raises(ParameterError, match="test_folds must be folds of the dataset"):
        check_folds(["x"], (1, 2), "test_folds")
    with pytest.raises(ParameterError, match="must name at least one fold"):
        check_folds([], (1, 2), "folds")


def test_missing_must_be_error_or_skip(tmp_path):
    _touch(tmp_path / "a.wav")
    _touch(tmp_path / "c.wav")
    csv = tmp_path / "m.csv"
    csv.write_text("path,label,fold\na.wav,x,1\nb.wav,y,2\nc.wav,y,1\n")
    with pytest.warns(EdgeL3Warning, match=r'skipped 1 of 3 .*"b.wav" \(metadata line 3\)'):
        ds = load_dataset(tmp_path, csv, missing="skip")
    assert [p.name for p in ds.paths] == ["a.wav", "c.wav"] and ds.lines == (2, 4)
    assert ds.skipped == ('"b.wav" (metadata line 3)',)
    with pytest.raises(ParameterError, match=r"missing must be one of \('error', 'skip'\)"):
        load_dataset(tmp_path, csv, missing="ignore")
    with pytest.raises(ParameterError, match="Invalid multilabel value 'yes'"):
        load_dataset(tmp_path, tmp_path / "m.csv", multilabel="yes")
