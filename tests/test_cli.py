"""The edgel3 command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edgel3 import cli, core
from edgel3.cli import main
from edgel3.commands import COMMANDS, load_command, module_name
from edgel3.exceptions import ParameterError
from edgel3.reference import model_names, resolve_model

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


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["models"], ["models", "--json"]]
    + [[command, "--help"] for command in COMMANDS if command != "embed"],
)
def test_help_and_models_do_not_import_tensorflow(argv):
    code = (
        f"import sys; from edgel3.cli import main; rc = main({argv!r}); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF loaded'; "
        "sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "edgel3" in proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_one_module_of_edgel3_commands(command):
    module = load_command(command)
    assert module.__name__ == module_name(command) == "edgel3.commands." + command.replace("-", "_")
    assert isinstance(module.DESCRIPTION, str) and callable(module.add_arguments)
    parser = cli.build_parser(command)
    assert parser.prog == ("edgel3" if command == "embed" else f"edgel3 {command}")
    assert parser.description == module.DESCRIPTION
    assert "--debug" in parser.format_help()


def test_unknown_command_is_a_parameter_error():
    with pytest.raises(ParameterError, match="Unknown command 'nope'"):
        cli.build_parser("nope")
    # On the command line an unknown first word is an input of the default command.
    assert main(["nope"]) == 1


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


@pytest.mark.shared
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


@pytest.mark.shared
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


@pytest.mark.shared
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


@pytest.mark.shared
def test_models_lists_every_name_resolve_model_accepts(capsys, sea64_weights_dir):
    names = [entry["name"] for entry in model_names()]
    # Bundled, short and official names, each listed once.
    assert {"tiny", "sea-64", "sparse-kd-87.0", "edgel3_ft_audio_sparsity_95.45"} <= set(names)
    assert len(names) == len(set(names)) == 1 + 20 + 20

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["name", "kind"]
    assert [line.split()[0] for line in lines[1:]] == names
    sea64_file = str(WEIGHTS_DIR / "edgel3_sea_ust_audio_emb_64.h5.gz")
    local = {line.split()[0]: line.split()[-1] for line in lines[1:]}
    assert local["sea-64"] == local["edgel3_sea_ust_audio_emb_64"] == sea64_file
    assert local["sea-128"] == "-"  # not in ../shared/weights, not in the (empty) cache

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == names
    by_name = {row["name"]: row for row in rows}
    for row in rows:
        # Every listed name is accepted by the resolver, and resolves to the listed model.
        reference = resolve_model(row["name"])
        if row["kind"] == "bundled":
            assert reference.kind == "bundled" and row["local_file"] == str(reference.path)
        else:
            assert reference.kind == "official" and reference.source == row["model"]
            assert row["sample_rate"] == reference.sample_rate
            assert row["emb_dim"] == reference.embedding_size
    assert by_name["sea-64"]["model"] == "edgel3_sea_ust_audio_emb_64"
    assert by_name["sea-64"]["local_file"] == sea64_file
    assert by_name["sparse-kd-87.0"]["sparsity"] == 87.0
    assert by_name["sparse-kd-87.0"]["retrain_type"] == "kd"
    assert by_name["sparse-kd-87.0"]["local_file"] is None
    tiny = by_name["tiny"]
    assert tiny["kind"] == "bundled" and (tiny["emb_dim"], tiny["sample_rate"]) == (64, 8000)


@pytest.mark.shared
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


def test_download_bundled_name_needs_no_download(capsys):
    from edgel3.bundled import TINY_PATH

    assert main(["download", "tiny", "-q"]) == 0
    assert capsys.readouterr().out.split() == ["ok", "tiny", str(TINY_PATH), "(bundled)"]


@pytest.mark.shared
def test_fast_resample_flag(audio_tree, tmp_path, sea64_weights_dir, capsys):
    exact, fast = tmp_path / "exact", tmp_path / "fast"
    wav = str(audio_tree / "a.wav")  # 16 kHz: resampled to 8 kHz
    assert main([wav, "--model", "sea-64", "-o", str(exact), "-q"]) == 0
    assert main([wav, "--model", "sea-64", "-o", str(fast), "-q", "--fast-resample"]) == 0
    a, b = np.load(exact / "a.npz")["embedding"], np.load(fast / "a.npz")["embedding"]
    assert a.shape == b.shape and not np.array_equal(a, b)  # a different resampler

    # With the batch options too: worker processes use the fast resampler as well.
    jobs = tmp_path / "jobs"
    args = [wav, str(audio_tree / "sub"), "--model", "sea-64", "-o", str(jobs), "-q"]
    assert main([*args, "--fast-resample", "--jobs", "2"]) == 0, capsys.readouterr().err
    c = np.load(jobs / "a.npz")["embedding"]
    # Another process may run with another thread count, which changes float32 sums in the
    # last bits: compare within 1e-5 of the embedding scale, not bit for bit.
    assert c.shape == b.shape
    assert np.max(np.abs(c - b)) <= 1e-5 * max(1.0, np.max(np.abs(b)))
    assert np.max(np.abs(c - a)) > 1e-5 * max(1.0, np.max(np.abs(a)))  # not the exact resampler
