"""Issue 11, item 4: `edgel3 evaluate` refuses bad metadata before embedding or scoring.

Each case builds a tiny ESC-10-like dataset (synthetic WAVs, 3 classes, folds 1-3),
breaks its metadata the way a user would, runs ``python -m edgel3 evaluate`` and checks:
exit status 1, one ``edgel3: error: ...`` line naming the rows (file and csv line), no
traceback, and nothing embedded or written. A valid dataset still evaluates, and
``--skip-missing`` names what it skips on one line instead of a raw Python warning.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edgel3.evaluate import evaluate, load_dataset
from edgel3.exceptions import EdgeL3Error, ParameterError

SR = 16000
#: (target, category, tone Hz or None for noise), like ESC-10's target/category columns.
CLASSES = ((0, "dog", 300.0), (1, "rooster", 1200.0), (2, "rain", None))
HEADER = "filename,fold,target,category,esc10,src_file,take"


def _signal(rng, tone):
    t = np.arange(SR) / SR
    if tone is None:
        return rng.normal(scale=0.3, size=SR)
    return 0.3 * np.sin(2 * np.pi * tone * t) + rng.normal(scale=0.05, size=SR)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """18 one-second clips: 2 per class in each of folds 1-3 (``{fold}-{category}_{k}.wav``)."""
    root = tmp_path_factory.mktemp("esc_audio")
    rng = np.random.default_rng(11)
    for fold in (1, 2, 3):
        for _, category, tone in CLASSES:
            for k in range(2):
                sf.write(root / f"{fold}-{category}_{k}.wav", _signal(rng, tone), SR)
    return root


def _rows():
    """The valid metadata rows (csv lines 2-19), as lists of fields."""
    return [
        [f"{fold}-{category}_{k}.wav", str(fold), str(target), category, "True", f"{fold}{k}", "A"]
        for fold in (1, 2, 3)
        for target, category, _ in CLASSES
        for k in range(2)
    ]


def _write_csv(path, rows):
    path.write_text("\n".join([HEADER, *(",".join(r) for r in rows)]) + "\n")
    return path


def _evaluate_cli(audio_dir, metadata, out, *extra):
    """``python -m edgel3 evaluate`` in quick mode with the bundled tiny model."""
    argv = [str(audio_dir), "--model", "tiny", "--quick", "--no-plots", "-q"]
    argv += ["--out", str(out), "--cache-dir", str(out.parent / "cache"), *extra]
    if metadata is not None:
        argv += ["--metadata", str(metadata)]
    return subprocess.run(
        [sys.executable, "-m", "edgel3", "evaluate", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_refused(proc, out, *fragments):
    """Exit 1, one `edgel3: error:` line holding every fragment, nothing embedded or written."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Warning:" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgel3: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Nothing was embedded or scored" in lines[0]
    assert proc.stdout == ""  # no summary, no score
    assert not out.exists(), sorted(out.rglob("*"))  # no report.json, predictions.csv
    assert not (out.parent / "cache").exists()  # nothing embedded


def _with(rows, line, column, value):
    """``rows`` with one field changed; ``line`` is the csv line (the header is line 1)."""
    rows[line - 2][column] = value
    return rows


# Line 6 is "1-rain_0.wav" (fold 1, target 2).
@pytest.mark.parametrize(
    "column, value, fragments",
    [
        (
            1,
            "x",
            [
                "fold must be an integer (1 of 18 rows)",
                '"1-rain_0.wav" (metadata line 6, fold "x")',
            ],
        ),
        (1, "", ["fold is blank (1 of 18 rows)", '"1-rain_0.wav" (metadata line 6)']),
        (1, "1.5", ["fold must be an integer", '"1-rain_0.wav" (metadata line 6, fold "1.5")']),
        (2, "", ["target is blank (1 of 18 rows)", '"1-rain_0.wav" (metadata line 6)']),
        (2, "rain", ["target must be a non-negative integer", '(metadata line 6, target "rain")']),
    ],
    ids=["fold-x", "fold-blank", "fold-1.5", "label-blank", "label-not-a-number"],
)
def test_bad_fold_or_label_is_refused_naming_the_row(tmp_path, audio_dir, column, value, fragments):
    # Before: fold 'x' became a one-clip fold scored on its own (exit 0); a blank fold became
    # fold ''; '1.5' a fold of its own; a blank or non-numeric target a ValueError traceback.
    csv = _write_csv(tmp_path / "meta.csv", _with(_rows(), 6, column, value))
    out = tmp_path / "out"
    _assert_refused(_evaluate_cli(audio_dir, csv, out), out, str(csv), *fragments)


def test_every_bad_row_is_in_the_one_message(tmp_path, audio_dir):
    rows = _rows()
    for line in (3, 5, 8, 12):
        rows[line - 2][1] = "x"
    rows[10][2] = ""  # line 12 also lacks its target
    csv = _write_csv(tmp_path / "meta.csv", rows)
    out = tmp_path / "out"
    _assert_refused(
        _evaluate_cli(audio_dir, csv, out),
        out,
        "fold must be an integer (4 of 18 rows)",
        "(metadata line 3, fold",
        "(metadata line 5, fold",
        "(metadata line 8, fold",
        "and 1 more",
        'target is blank (1 of 18 rows): "2-rain_0.wav" (metadata line 12)',
    )


def test_one_class_is_refused(tmp_path, audio_dir):
    # Before: scikit-learn's traceback "needs samples of at least 2 classes".
    csv = _write_csv(tmp_path / "meta.csv", [r for r in _rows() if r[3] == "dog"])
    out = tmp_path / "out"
    _assert_refused(
        _evaluate_cli(audio_dir, csv, out),
        out,
        'it has 1 class, "dog" (6 clips); classification needs at least two classes',
    )


def test_fold_with_a_single_clip_cannot_be_a_test_fold(tmp_path, audio_dir):
    # Before: fold 4 (one clip) was held out and scored 0 or 1 with the others, exit 0.
    rows = _rows()[1:] + [["1-dog_0.wav", "4", "0", "dog", "True", "40", "A"]]  # fold 1 -> 4
    csv = _write_csv(tmp_path / "meta.csv", rows)
    out = tmp_path / "out"
    _assert_refused(
        _evaluate_cli(audio_dir, csv, out),
        out,
        'fold 4 has 1 clip ("1-dog_0.wav" (metadata line 19)); a test fold needs at least 2',
    )


def test_class_without_training_clips_is_refused(tmp_path, audio_dir):
    # "rain" only in fold 3: held out, its clips could never be right.
    rows = [r for r in _rows() if r[3] != "rain" or r[1] == "3"]
    csv = _write_csv(tmp_path / "meta.csv", rows)
    out = tmp_path / "out"
    _assert_refused(
        _evaluate_cli(audio_dir, csv, out),
        out,
        'fold 3 holds clips of classes no other fold has ("rain")',
        '"3-rain_0.wav" (metadata line 14)',
    )


def test_file_listed_twice_is_refused(tmp_path, audio_dir):
    rows = _rows()
    rows[5][0] = rows[0][0]  # line 7 repeats line 2's file (in another class)
    csv = _write_csv(tmp_path / "meta.csv", rows)
    out = tmp_path / "out"
    _assert_refused(
        _evaluate_cli(audio_dir, csv, out),
        out,
        "file listed more than once (1 of 18 rows): ",
        '"1-dog_0.wav" (metadata line 7, first on line 2)',
    )


def test_missing_file_is_named(tmp_path, audio_dir):
    # Before: "1 of 19 rows have no audio file under DIR (first: 18)", a row index.
    rows = _rows() + [["dog_3.wav", "3", "0", "dog", "True", "33", "A"]]
    csv = _write_csv(tmp_path / "meta.csv", rows)
    out = tmp_path / "out"
    _assert_refused(
        _evaluate_cli(audio_dir, csv, out),
        out,
        f'audio file not found in "{audio_dir}" (1 of 19 rows): "dog_3.wav" (metadata line 20)',
        "--skip-missing",
    )


def test_skip_missing_names_the_skipped_file_on_one_line(tmp_path, audio_dir):
    # Before: "/path/datasets.py:448: EdgeL3Warning: 1 of 19 rows have no audio under ...;
    # skipped." and the source line under it.
    rows = _rows() + [["dog_3.wav", "3", "0", "dog", "True", "33", "A"]]
    csv = _write_csv(tmp_path / "meta.csv", rows)
    out = tmp_path / "out"
    proc = _evaluate_cli(audio_dir, csv, out, "--skip-missing")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f'edgel3: warning: skipped 1 of 19 metadata rows whose audio file is not in "{audio_dir}": '
        '"dog_3.wav" (metadata line 20)'
    ]
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["n_clips"] == 18
    assert report["dataset"]["skipped"] == ['"dog_3.wav" (metadata line 20)']


def test_valid_dataset_still_evaluates(tmp_path, audio_dir):
    """Positive control; folds written as floats ('1.0', as pandas writes them) are folds 1-3."""
    rows = [[r[0], f"{r[1]}.0", *r[2:]] for r in _rows()]
    csv = _write_csv(tmp_path / "meta.csv", rows)
    out = tmp_path / "out"
    proc = _evaluate_cli(audio_dir, csv, out)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "folds [1, 2, 3]" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["folds"] == [1, 2, 3] and report["dataset"]["skipped"] == []
    assert len(report["accuracy"]["per_fold"]) == 3
    # Tones at 300 Hz and 1.2 kHz and broadband noise: any embedding separates them.
    assert report["accuracy"]["mean"] > 0.8


# --------------------------------------------------------------------------- other layouts


def _us8k_folders(root, names_by_fold):
    for fold, names in names_by_fold.items():
        (root / f"fold{fold}").mkdir(parents=True)
        for name in names:
            sf.write(root / f"fold{fold}" / name, np.zeros(800), SR)
    return root


def test_fold_folders_with_a_misnamed_file_are_refused(tmp_path):
    root = _us8k_folders(
        tmp_path / "us8k",
        {1: ["1-0-0-0.wav", "2-1-0-0.wav", "oops.wav"], 2: ["3-0-0-0.wav", "4-1-0-0.wav"]},
    )
    (root / "fold1" / ".hidden.wav").write_bytes(b"")  # hidden files are not clips
    out = tmp_path / "out"
    _assert_refused(
        _evaluate_cli(root, None, out),
        out,
        f'Cannot evaluate "{root}": name is not "fsID-classID-occurrenceID-sliceID" '
        '(1 of 5 audio files): "fold1/oops.wav"',
    )


@pytest.mark.parametrize(
    "layout, fragment",
    [
        ({1: ["1-3-0-0.wav"], 2: ["2-3-0-0.wav"]}, 'it has 1 class, "dog_bark" (2 clips)'),
        (
            {
                1: ["1-0-0-0.wav", "2-1-0-0.wav"],
                2: ["3-0-0-0.wav", "4-1-0-0.wav"],
                3: ["5-1-0-0.wav"],
            },
            'fold 3 has 1 clip ("fold3/5-1-0-0.wav")',
        ),
    ],
    ids=["one-class", "single-clip-fold"],
)
def test_fold_folders_are_validated(tmp_path, layout, fragment):
    root = _us8k_folders(tmp_path / "us8k", layout)
    out = tmp_path / "out"
    _assert_refused(_evaluate_cli(root, None, out), out, fragment)


def test_us8k_csv_bad_fold_is_reported_once(tmp_path):
    root = _us8k_folders(tmp_path / "us8k", {1: ["1-0-0-0.wav", "2-1-0-0.wav"]})
    csv = tmp_path / "UrbanSound8K.csv"
    csv.write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "1-0-0-0.wav,1,0,4,1,1,0,air_conditioner\n"
        "2-1-0-0.wav,2,0,4,1,one,1,car_horn\n"
    )
    out = tmp_path / "out"
    proc = _evaluate_cli(root, csv, out)
    _assert_refused(
        proc,
        out,
        'fold must be an integer (1 of 2 rows): "2-1-0-0.wav" (metadata line 3, fold "one")',
    )
    assert "not found" not in proc.stderr


def test_generic_csv_folds(tmp_path, audio_dir):
    """Generic csv: integer folds, or names when no fold is a number; mixing them is an error."""
    rows = [f"{r[0]},{r[3]},{r[1]}" for r in _rows()]
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("\n".join(["path,label,fold", *rows[:-1], "3-rain_1.wav,rain,test"]) + "\n")
    with pytest.raises(ParameterError, match=r'"3-rain_1.wav" \(metadata line 19, fold "test"\)'):
        load_dataset(audio_dir, mixed)
    named = tmp_path / "named.csv"
    split = {"1": "train", "2": "train", "3": "test"}
    named.write_text(
        "".join(["path,label,fold\n", *(f"{r[0]},{r[3]},{split[r[1]]}\n" for r in _rows())])
    )
    assert load_dataset(audio_dir, named).fold_names == ("test", "train")


def test_api_raises_one_edgel3_error_before_embedding(tmp_path, audio_dir, monkeypatch):
    from edgel3.evaluate import embeddings

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded although the metadata is invalid")

    monkeypatch.setattr(embeddings, "embed_path", no_embedding)
    csv = _write_csv(tmp_path / "meta.csv", _with(_rows(), 6, 1, "x"))
    with pytest.raises(EdgeL3Error, match=r'metadata line 6, fold "x"'):
        evaluate(audio_dir, csv, model="tiny", quick=True, out_dir=tmp_path / "out")
    one_class = _write_csv(tmp_path / "one.csv", [r for r in _rows() if r[3] == "dog"])
    with pytest.raises(ParameterError, match="needs at least two classes"):
        evaluate(audio_dir, one_class, model="tiny", quick=True, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
