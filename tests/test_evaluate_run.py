"""End to end: the embedding cache, the `edgel3 evaluate` command on ESC-10 with SEA-64."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edgel3 import loading
from edgel3.bundled import TINY_PATH
from edgel3.cli import build_parser, main
from edgel3.commands import evaluate as evaluate_cli
from edgel3.evaluate import embeddings as embeddings_module
from edgel3.evaluate import evaluate
from edgel3.evaluate.classifiers import CLASSIFIERS
from edgel3.evaluate.datasets import load_dataset
from edgel3.evaluate.embeddings import embed_files
from edgel3.exceptions import AudioError, ParameterError

from .conftest import DATA_DIR, SEA64_GZ

ESC10 = DATA_DIR / "esc10"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Counter:
    """Wraps the engine call of edgel3.evaluate.embeddings and counts the files it embeds."""

    def __init__(self, monkeypatch):
        self.files = 0
        original = embeddings_module.embed_path

        def counting(*args, **kwargs):
            self.files += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(embeddings_module, "embed_path", counting)


@pytest.fixture
def wav_files(tmp_path, rng):
    paths = []
    for i in range(5):
        path = tmp_path / "audio" / f"clip{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, rng.normal(scale=0.1, size=8000 + 2000 * i), 8000)
        paths.append(path)
    return paths


def test_cache_reuse_does_not_call_the_model(monkeypatch, tmp_path, wav_files):
    cache = tmp_path / "cache"
    counter = _Counter(monkeypatch)
    first, info = embed_files(wav_files, "tiny", hop_size=0.5, cache_dir=cache)
    assert (info["computed"], info["cached"]) == (5, 0) and counter.files == 5
    # Second run: no model call, and not even a model load.
    load = loading.load_model_file
    monkeypatch.setattr(loading, "load_model_file", lambda *a, **k: pytest.fail("model loaded"))
    second, info = embed_files(wav_files, "tiny", hop_size=0.5, cache_dir=cache)
    assert counter.files == 5 and (info["computed"], info["cached"]) == (0, 5)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)  # the cache stores the exact float32 array
    # Only what changed is recomputed: an edited file misses, another hop misses.
    monkeypatch.setattr(loading, "load_model_file", load)
    sf.write(wav_files[0], np.zeros(8000) + 0.01, 8000)
    _, info = embed_files(wav_files, "tiny", hop_size=0.5, cache_dir=cache)
    assert (info["computed"], counter.files) == (1, 6)
    _, info = embed_files(wav_files[:2], "tiny", hop_size=0.25, cache_dir=cache)
    assert (info["computed"], counter.files) == (2, 8)
    # Files with the same content are embedded once.
    copy = tmp_path / "copy.wav"
    copy.write_bytes(wav_files[1].read_bytes())
    embs, info = embed_files([wav_files[1], copy], "tiny", hop_size=0.2, cache_dir=cache)
    assert (info["computed"], counter.files) == (1, 9)
    np.testing.assert_array_equal(embs[0], embs[1])


def test_loaded_model_and_its_file_share_embeddings(tmp_path, wav_files):
    model = loading.load_model_file(TINY_PATH)
    from_model, info_model = embed_files(wav_files[:2], model, hop_size=0.5, cache_dir=tmp_path)
    from_file, info_file = embed_files(wav_files[:2], TINY_PATH, hop_size=0.5, cache_dir=tmp_path)
    assert info_model["model"]["source"] == "object" and info_file["model"]["source"] == "bundled"
    for a, b in zip(from_model, from_file):
        np.testing.assert_array_equal(a, b)  # same weights, same windows: identical


def test_bad_file_is_named(tmp_path, wav_files):
    bad = tmp_path / "audio" / "bad.wav"
    sf.write(bad, np.full(8000, np.nan), 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r'Cannot embed ".*bad.wav": .*NaN'):
        embed_files([wav_files[0], bad], "tiny", cache_dir=tmp_path / "cache")
    with pytest.raises(AudioError, match="could not be found"):
        embed_files([tmp_path / "absent.wav"], "tiny", cache_dir=tmp_path / "cache")


@pytest.fixture(scope="module")
def esc10_run(tmp_path_factory):
    """`edgel3 evaluate` on ESC-10 folds 1-2 (160 clips), quick mode, SEA-64 from file."""
    out = tmp_path_factory.mktemp("esc10_report")
    cache = tmp_path_factory.mktemp("esc10_cache")
    argv = [
        "evaluate",
        str(ESC10),
        "--metadata",
        str(ESC10 / "meta" / "esc10.csv"),
        "--model",
        str(SEA64_GZ),
        "--folds",
        "1",
        "2",
        "--quick",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "-q",
    ]
    return out, cache, argv


@pytest.mark.shared
def test_cli_end_to_end_on_two_esc10_folds(esc10_run, capsys):
    out, cache, argv = esc10_run
    assert main(argv) == 0
    summary = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["n_clips"] == 160 and report["dataset"]["folds"] == [1, 2]
    assert report["embedding"] == report["embedding"] | {
        "hop_size": 0.5,
        "emb_dim": 64,
        "computed_files": 160,
        "n_frames": 1600,  # 5-s clips, hop 0.5, centred: 10 windows each
    }
    assert [f["fold"] for f in report["folds"]] == [1, 2]
    assert [f["train_folds"] for f in report["folds"]] == [[2], [1]]
    acc = report["accuracy"]
    # Chance is 0.10. A 2-fold quick run with SEA-64 scored 0.60-0.63 while
    # developing; 0.35 leaves room for BLAS/platform differences yet fails on a
    # broken pipeline (shuffled labels, wrong aggregation).
    assert all(0.35 < a <= 1.0 for a in acc["per_fold"])
    assert acc["mean"] == pytest.approx(np.mean(acc["per_fold"]), abs=1e-12)
    assert sum(v["support"] for v in report["per_class"].values()) == 160
    assert np.sum(report["confusion_matrix"]["matrix"]) == 160
    for name in ("confusion_matrix.png", "embedding_map.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 160
    right = sum(r["label"] == r["predicted"] for r in rows)
    assert right / 160 == pytest.approx(acc["pooled"], abs=1e-12)
    assert f"accuracy {acc['mean']:.4f}" in summary and "lowest F1" in summary


@pytest.mark.shared
def test_second_evaluation_reuses_cache_and_is_reproducible(esc10_run, monkeypatch):
    out, cache, argv = esc10_run
    if not (out / "report.json").exists():  # run alone: build the cache first
        assert main(argv) == 0
    first = json.loads((out / "report.json").read_text())
    counter = _Counter(monkeypatch)
    kwargs = dict(
        model=SEA64_GZ, quick=True, folds=[1, 2], cache_dir=cache, test_folds=[2], plots=False
    )
    again = evaluate(ESC10, ESC10 / "meta" / "esc10.csv", **kwargs)
    assert counter.files == 0 and again["embedding"]["cached_files"] == 160
    assert again["accuracy"]["per_fold"] == first["accuracy"]["per_fold"][1:]
    svm = evaluate(ESC10, ESC10 / "meta" / "esc10.csv", classifier="svm", **kwargs)
    assert counter.files == 0 and 0.35 < svm["accuracy"]["mean"] <= 1.0  # see above
    # The short name resolves to the identity of the official file: same cache, no model run.
    short = evaluate(ESC10, ESC10 / "meta" / "esc10.csv", **(kwargs | {"model": "sea-64"}))
    assert short["model"]["source"] == "official" and short["model"]["id"] == first["model"]["id"]
    assert counter.files == 0 and short["accuracy"] == again["accuracy"]


def test_multilabel_generic_csv(tmp_path, rng):
    """SONYC-UST style: ';'-separated labels, AUPRC report, figures, predictions."""
    t = np.arange(8000) / 8000
    rows = ["path,label,fold"]
    for i in range(12):
        tone, noise = i % 2 == 0, i % 3 != 0  # every fold holds both values of both labels
        signal = 0.3 * np.sin(2 * np.pi * 440 * t) * tone + rng.normal(
            scale=0.2 * noise + 0.01, size=t.size
        )
        sf.write(tmp_path / f"{i}.wav", signal, 8000)
        labels = ";".join(name for name, on in (("noise", noise), ("tone", tone)) if on)
        rows.append(f"{i}.wav,{labels},{i // 4 + 1}")
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(tmp_path, tmp_path / "meta.csv", multilabel=True)
    report = evaluate(data, model="tiny", quick=True, out_dir=tmp_path / "out")
    assert report["task"] == "multilabel" and "accuracy" not in report
    micro = report["auprc"]["micro"]
    assert len(micro["per_fold"]) == 3 and 0.0 < micro["mean"] <= 1.0
    # A tone and broadband noise are trivially separable in any audio embedding;
    # 0.8 AUPRC is far above the 0.5 of random scores on these balanced labels.
    assert report["auprc"]["macro"]["mean"] > 0.8
    assert set(report["per_class"]) == {"noise", "tone"}
    assert (tmp_path / "out" / "embedding_map.png").read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "out" / "confusion_matrix.png").exists()
    with open(tmp_path / "out" / "predictions.csv", newline="") as fh:
        first = next(csv.DictReader(fh))
    assert first["label"] == "tone" and first["fold"] == "1"


def test_cli_defaults_equal_library_defaults():
    import inspect

    args = build_parser("evaluate").parse_args(["data"])
    params = inspect.signature(evaluate).parameters
    for option, name in [
        ("metadata", "metadata"),
        ("layout", "layout"),
        ("model", "model"),
        ("classifier", "classifier"),
        ("quick", "quick"),
        ("hop_size", "hop_size"),
        ("folds", "folds"),
        ("test_folds", "test_folds"),
        ("seed", "seed"),
        ("cache_dir", "cache_dir"),
        ("batch_size", "batch_size"),
    ]:
        assert getattr(args, option) == params[name].default, option
    assert (not args.no_centering) == params["center"].default
    assert (not args.no_plots) == params["plots"].default
    assert evaluate_cli.CLASSIFIER_NAMES == CLASSIFIERS


def test_help_imports_neither_tensorflow_nor_sklearn():
    code = (
        "import sys; from edgel3.cli import main; rc = main(['evaluate', '--help']); "
        "heavy = [m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib') "
        "if m in sys.modules]; assert not heavy, heavy; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--metadata" in proc.stdout and "--quick" in proc.stdout


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--quick"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgel3: error: Cannot tell the layout") and err.count("\n") == 1
    for name in ("a.wav", "b.wav"):
        (tmp_path / name).write_bytes(b"")  # the loader only checks that the files exist
    (tmp_path / "meta.csv").write_text("path,label,fold\na.wav,x,1\nb.wav,y,2\n")
    with pytest.raises(ParameterError, match="seed must be a non-negative integer"):
        evaluate(tmp_path, tmp_path / "meta.csv", seed=-1)
