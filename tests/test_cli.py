"""The edgel3 command line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edgel3 import cli, core
from edgel3.cli import main

from .conftest import SEA64_GZ, WEIGHTS_DIR


@pytest.fixture
def audio_tree(tmp_path, rng):
    """A folder with wav/flac/ogg files in a subfolder, and one corrupt wav."""
    root = tmp_path / "audio"
    (root / "sub").mkdir(parents=True)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    sf.write(root / "a.wav", tone + rng.normal(scale=0.01, size=tone.size), 16000)
    sf.write(root / "sub" / "b.flac", rng.normal(scale=0.1, size=12000), 8000)
    sf.write(root / "sub" / "c.ogg", rng.normal(scale=0.1, size=(22050, 2)), 22050)
    (root / "notes.txt").write_text("not audio")
    return root


def test_cli_defaults_equal_library_defaults():
    args = cli.build_parser().parse_args(["x.wav"])
    import inspect

    params = inspect.signature(core.process_file).parameters
    assert args.model_type == params["model_type"].default
    assert args.emb_dim == params["emb_dim"].default
    assert args.retrain_type == params["retrain_type"].default
    assert args.model_sparsity == params["sparsity"].default
    assert args.hop_size == params["hop_size"].default
    assert (not args.no_centering) == params["center"].default
    assert args.batch_size == params["batch_size"].default
    assert args.output_dir == params["output_dir"].default
    assert args.suffix == params["suffix"].default


@pytest.mark.parametrize("argv", [["--help"], ["models", "--help"], ["--version"]])
def test_help_does_not_import_tensorflow(argv):
    code = (
        f"import sys; from edgel3.cli import main; rc = main({argv!r}); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF loaded'; "
        "sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "edgel3" in proc.stdout


def test_import_edgel3_does_not_import_tensorflow():
    code = (
        "import sys, edgel3; edgel3.get_embedding; edgel3.frontend; edgel3.weights; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_usage_errors_exit_2(capsys):
    assert main(["--model-type", "big", "x.wav"]) == 2
    assert main(["--hop-size", "-1", "x.wav"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_embed_folder_recursively_with_sea(audio_tree, tmp_path, capsys, sea64_weights_dir):
    out = tmp_path / "out"
    rc = main(
        [
            str(audio_tree),
            "-o",
            str(out),
            "--model-type",
            "sea",
            "--emb-dim",
            "64",
            "-x",
            "sea64",
            "--hop-size",
            "0.5",
            "--batch-size",
            "3",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a_sea64.npz", "b_sea64.npz", "c_sea64.npz"]
    data = np.load(out / "b_sea64.npz")
    audio, sr = sf.read(audio_tree / "sub" / "b.flac")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, ts = core.get_embedding(audio, sr, model=str(SEA64_GZ), hop_size=0.5, verbose=0)
    np.testing.assert_array_equal(data["embedding"], ref)
    np.testing.assert_array_equal(data["timestamps"], ts)
    assert "3 written, 0 skipped" in capsys.readouterr().out

    # Second run: outputs exist and are skipped unless --overwrite.
    assert main([str(audio_tree), "-o", str(out), "--model", "sea-64", "-x", "sea64"]) == 0
    assert "0 written, 3 skipped" in capsys.readouterr().out
    assert (
        main(
            [
                str(audio_tree),
                "-o",
                str(out),
                "--model",
                "sea-64",
                "-x",
                "sea64",
                "--overwrite",
                "--quiet",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == ""


def test_outputs_next_to_inputs_and_no_centering(audio_tree, sea64_weights_dir):
    assert (
        main(
            [
                str(audio_tree / "a.wav"),
                "--model-type",
                "sea",
                "--emb-dim",
                "64",
                "--no-centering",
                "-q",
            ]
        )
        == 0
    )
    data = np.load(audio_tree / "a.npz")
    assert data["embedding"].shape == (1, 64)  # 1 s, no centring: one window


def test_bad_file_is_reported_and_the_rest_written(audio_tree, tmp_path, capsys, sea64_weights_dir):
    bad = audio_tree / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEfmt garbage")
    out = tmp_path / "out"
    rc = main([str(audio_tree), "-o", str(out), "--model", "sea-64"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "bad.wav" in captured.err
    assert "3 written, 0 skipped (output exists; use --overwrite), 1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", "b.npz", "c.npz"]


def test_missing_input_is_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.wav")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgel3: error:") and "nope.wav" in err
    assert "Traceback" not in err


def test_models_command_lists_all_20(capsys, sea64_weights_dir):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 21
    assert any("edgel3_sea_ust_audio_emb_64" in line and str(WEIGHTS_DIR) in line for line in lines)


def test_download_command_fetches_and_verifies(served_weights, capsys):
    from edgel3.weights import cache_dir

    assert main(["download", "sea-64", "-q"]) == 0
    assert (cache_dir() / "edgel3_sea_ust_audio_emb_64.h5.gz").is_file()
    assert capsys.readouterr().out.startswith("ok  edgel3_sea_ust_audio_emb_64")
    # Not on the (local) server: one clear line naming the file; exit status 1.
    assert main(["download", "sparse-kd-87.0", "-q"]) == 1
    err = capsys.readouterr().err
    assert "edgel3_kd_audio_sparsity_87.0.h5.gz" in err and "Traceback" not in err


def test_download_unknown_name(capsys):
    assert main(["download", "nope"]) == 1
    assert "Unknown model name 'nope'" in capsys.readouterr().err


def test_fast_resample_flag(audio_tree, tmp_path, sea64_weights_dir, capsys):
    exact, fast = tmp_path / "exact", tmp_path / "fast"
    wav = str(audio_tree / "a.wav")  # 16 kHz: resampled to 8 kHz
    assert main([wav, "--model", "sea-64", "-o", str(exact), "-q"]) == 0
    assert main([wav, "--model", "sea-64", "-o", str(fast), "-q", "--fast-resample"]) == 0
    a, b = np.load(exact / "a.npz")["embedding"], np.load(fast / "a.npz")["embedding"]
    assert a.shape == b.shape and not np.array_equal(a, b)  # a different resampler
    assert main([wav, "--model", "sea-64", "--fast-resample", "--jobs", "2"]) == 2
    assert "--fast-resample works without the batch options" in capsys.readouterr().err
