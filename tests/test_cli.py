"""The edgel3 command line: commands, 0.2.1's flags and helpers, quiet start, closed pipes.

The grammar shared by the commands is tested in test_cli_grammar.py.
"""

from __future__ import annotations

import argparse
import json
import os
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
    # Sub-folders of the searched folder are kept under -o (one output per input, always).
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npz"))
    assert written == ["a_sea64.npz", "sub/b_sea64.npz", "sub/c_sea64.npz"]
    data = np.load(out / "sub" / "b_sea64.npz")
    audio, sr = sf.read(audio_tree / "sub" / "b.flac")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, ts = core.get_embedding(audio, sr, model=str(SEA64_GZ), hop_size=0.5, verbose=0)
    np.testing.assert_array_equal(data["embedding"], ref)
    np.testing.assert_array_equal(data["timestamps"], ts)
    assert "3 written, 0 skipped" in capsys.readouterr().out

    # Second run, same options (the model named otherwise): up to date, skipped unless
    # --overwrite; with another hop size they are stale and recomputed.
    again = [str(audio_tree), "-o", str(out), "--model", "sea-64", "-x", "sea64"]
    assert main([*again, "--hop-size", "0.5"]) == 0
    assert "0 written, 3 skipped" in capsys.readouterr().out
    assert main(again) == 0
    assert "3 written (3 replacing stale outputs)" in capsys.readouterr().out
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
    assert "3 written, 0 skipped, 1 failed, of 4 files." in captured.out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "a.npz",
        "sub",
        "sub/b.npz",
        "sub/c.npz",
    ]


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


# --------------------------------------------------------------------------- edgel3 0.2.1's CLI


@pytest.fixture
def clip(tmp_path, rng):
    """A 2.2-s 16 kHz noisy tone (embedded with the bundled 'tiny' model: no weights needed)."""
    path = tmp_path / "clip.wav"
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(35200) / 16000)
    sf.write(path, tone + rng.normal(scale=0.01, size=tone.size), 16000)
    return path


def test_parse_args_takes_every_0_2_1_flag():
    args = cli.parse_args(["x.wav"])
    assert args.inputs == ["x.wav"]
    assert (args.output_dir, args.suffix, args.model_type, args.emb_dim) == (
        None,
        None,
        "sparse",
        128,
    )
    assert (args.retrain_type, args.model_sparsity, args.no_centering) == ("ft", 95.45, False)
    assert (args.hop_size, args.quiet) == (0.1, False)
    short = ["-o", "/out", "-x", "sfx", "-mtype", "sea", "-e", "64", "-retrain", "kd"]
    short += ["-sp", "53.5", "-n", "-t", "0.5", "-q"]
    long = ["--output-dir", "/out", "--suffix", "sfx", "--model-type", "sea", "--emb-dim", "64"]
    long += ["--retrain-type", "kd", "--model-sparsity", "53.5", "--no-centering"]
    long += ["--hop-size", "0.5", "--quiet"]
    for argv in (short, long, ["--output", "/out", *short[2:]]):  # 0.2.1's tutorial: --output
        args = cli.parse_args(["x.wav", *argv])
        assert (args.output_dir, args.suffix, args.model_type, args.emb_dim) == (
            "/out",
            "sfx",
            "sea",
            64,
        )
        assert (args.retrain_type, args.model_sparsity, args.no_centering) == ("kd", 53.5, True)
        assert (args.hop_size, args.quiet) == (0.5, True)
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(["x.wav", "-sp", "12"])  # not a published sparsity
    assert exc.value.code == 2


def test_0_2_1_short_flags_embed(clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(clip), "-n", "-t", "0.5", "-x", "s", "-o", str(out), "--model", "tiny"]) == 0
    data = np.load(out / "clip_s.npz")
    audio, sr = sf.read(clip)
    ref, ts = core.get_embedding(audio, sr, model="tiny", center=False, hop_size=0.5, verbose=0)
    np.testing.assert_array_equal(data["embedding"], ref)
    np.testing.assert_array_equal(data["timestamps"], ts)
    np.testing.assert_allclose(ts, [0.0, 0.5, 1.0, 1.5])  # -n: windows start at 0; -t 0.5
    assert capsys.readouterr().out == "1 written, 0 skipped, 0 failed, of 1 files.\n"


def test_summary_mentions_overwrite_only_when_files_were_skipped(clip, tmp_path, capsys):
    argv = [str(clip), "-o", str(tmp_path / "out"), "--model", "tiny"]
    assert main(argv) == 0
    assert "(up to date" not in capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == (
        "0 written, 1 skipped (up to date; --overwrite recomputes them), 0 failed, of 1 files.\n"
    )
    assert main([*argv, "--overwrite"]) == 0
    assert capsys.readouterr().out == "1 written, 0 skipped, 0 failed, of 1 files.\n"


def test_positive_float_and_int_raise_argument_type_errors():
    assert cli.positive_float(5) == 5.0 and type(cli.positive_float(5)) is float
    assert cli.positive_float("1.3") == 1.3
    for bad in (-5, -1.0, 0, None, "hello", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.positive_float(bad)
    assert cli.positive_int("3") == 3 == cli.positive_int(3) == cli.positive_int(3.0)
    for bad in (0, -1, 2.5, "2.5", None, True, "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.positive_int(bad)


def test_get_file_list(audio_tree):
    from edgel3.exceptions import EdgeL3Error

    for bad in (str(audio_tree / "a.wav"), 5, None):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.get_file_list(bad)
    files = [str(audio_tree / "a.wav"), str(audio_tree / "sub" / "b.flac")]
    assert cli.get_file_list(files[::-1]) == files[::-1]
    found = cli.get_file_list([audio_tree])  # recursive, audio only (notes.txt is not)
    assert sorted(os.path.relpath(f, audio_tree) for f in found) == [
        "a.wav",
        os.path.join("sub", "b.flac"),
        os.path.join("sub", "c.ogg"),
    ]
    assert all(os.path.isabs(f) for f in found)
    # Each item expanded on its own, as in 0.2.1: a file also inside a listed folder twice.
    assert len(cli.get_file_list([audio_tree, files[0]])) == 4
    with pytest.raises(EdgeL3Error, match="could not be found"):
        cli.get_file_list(["/fake/path/to/file"])


def test_run_like_0_2_1(clip, tmp_path, capsys):
    from edgel3.exceptions import EdgeL3Error

    for bad in (None, 5, 1.0):
        with pytest.raises(EdgeL3Error, match="Invalid input"):
            cli.run(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exc:
        cli.run([str(empty)])
    assert exc.value.code == -1
    assert capsys.readouterr().out == f"Edgel3: No WAV files found in {[str(empty)]}. Aborting.\n"

    results = cli.run(str(clip), output_dir=str(tmp_path / "out"), model="tiny")
    assert [r.status for r in results] == ["written"]
    assert (tmp_path / "out" / "clip.npz").is_file()
    assert capsys.readouterr().out == ""  # verbose=False, 0.2.1's default: nothing printed
    # A bad file: the others are written, then one error names it.
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEfmt garbage")
    with pytest.raises(EdgeL3Error, match="1 of 2 files failed: .*bad.wav"):
        cli.run([str(tmp_path / "bad.wav"), str(clip)], suffix="x", model="tiny")
    assert (tmp_path / "clip_x.npz").is_file()


def test_no_audio_found_prints_0_2_1_message_and_status(tmp_path, capsys):
    assert main([str(tmp_path)]) == -1  # sys.exit(-1): status 255 in a shell, as 0.2.1
    assert (
        capsys.readouterr().out == f"Edgel3: No WAV files found in {[str(tmp_path)]}. Aborting.\n"
    )


def test_python_m_edgel3(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "edgel3", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("edgel3 ")
    proc = subprocess.run(
        [sys.executable, "-m", "edgel3", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 255 and "No WAV files found" in proc.stdout
    # 0.2.1's tests run the command line by importing edgel3.__main__.
    code = (
        "import sys; sys.argv = ['edgel3', 'models', '--json']; import edgel3.__main__; "
        "print('imported')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("imported") and '"name": "tiny"' in proc.stdout


# --------------------------------------------------------------------------- quiet, closed pipes


def env_without_tf_level():
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def test_a_cli_run_and_the_api_print_no_tensorflow_line(clip, tmp_path):
    # The real TensorFlow: whatever it prints on this machine must not reach stderr.
    proc = subprocess.run(
        [sys.executable, "-m", "edgel3", str(clip), "--model", "tiny", "-q", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env_without_tf_level(),
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    code = (
        "import soundfile as sf, edgel3\n"
        f"audio, sr = sf.read({str(clip)!r})\n"
        "emb, ts = edgel3.get_embedding(audio, sr, model='tiny', verbose=0)\n"
        "print(emb.shape)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env_without_tf_level()
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.strip() == "(18, 64)"  # 2.2 s, centred, hop 0.1 s


#: TensorFlow's start-up lines (as 2.21 prints them), and one line of another library.
STARTUP_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796430480.486520    8402 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796430480.8    8402 cpu_feature_guard.cc:227] This binary is optimized",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild.",
    "E0000 00:00:1796430481.5    8402 cuda_platform.cc:52] failed call to cuInit: (303)",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "a line of another library",
]
FAKE_TENSORFLOW = "import os\n" + "".join(
    f"os.write(2, {(line + chr(10)).encode()!r})\n" for line in STARTUP_LINES
)


@pytest.mark.parametrize(
    "importer, level, enabled, kept",
    [
        ("edgel3.networks", None, True, ["another"]),
        ("edgel3.networks", "2", True, ["cuInit", "another"]),
        ("edgel3.networks", "1", True, ["cuInit", "another"]),
        ("edgel3.networks", "0", True, ["WARNING", "oneDNN", "cpu", "To enable", "cuInit", "INFO"]),
        (
            "edgel3.networks",
            None,
            False,
            ["WARNING", "oneDNN", "cpu", "To enable", "cuInit", "INFO"],
        ),
        ("__main__", None, True, ["WARNING", "oneDNN", "cpu", "To enable", "cuInit", "INFO"]),
    ],
)
def test_first_tensorflow_import_by_edgel3_is_filtered(tmp_path, importer, level, enabled, kept):
    # A stand-in 'tensorflow' that writes TensorFlow's start-up lines to fd 2 on import.
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    code = (
        f"import os, sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "from edgel3.tf_logging import quiet_tensorflow_import\n"
        f"quiet_tensorflow_import({enabled})\n"
        f"exec('import tensorflow', {{'__name__': {importer!r}}})\n"
        "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\n"
    )
    env = env_without_tf_level()
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-1] == "a line of another library"  # never dropped
    markers = ["WARNING", "oneDNN", "cpu", "To enable", "cuInit", "INFO"]
    present = [m for m in markers if any(m in line for line in lines[:-1])]
    assert present == [m for m in markers if m in kept]
    quieted = enabled and importer.startswith("edgel3")
    # edgel3 sets level 3 only when the user has not chosen one, and only when it quiets.
    assert proc.stdout.strip() == (level or ("3" if quieted else "None"))


def test_filter_tensorflow_log_keeps_what_is_not_tensorflow_s():
    from edgel3.tf_logging import filter_tensorflow_log

    text = (
        "I0000 00:00:1.5 12 port.cc:153] oneDNN\n"
        "/x.py:3: UserWarning: kept\n"
        "  warnings.warn('kept')\n"
        "W0101 10:11:12.131415 99 file.cc:9] a warning\n"
        "F0101 10:11:12.131415 99 file.cc:9] fatal\n"
    )
    assert filter_tensorflow_log(text, 3) == (
        "/x.py:3: UserWarning: kept\n"
        "  warnings.warn('kept')\n"
        "F0101 10:11:12.131415 99 file.cc:9] fatal\n"
    )
    assert filter_tensorflow_log(text, 0) == text


@pytest.mark.parametrize("argv", [["models", "--json"], ["models"], ["--help"]])
def test_a_closed_pipe_ends_quietly(argv):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line (like 'head -1', only surer)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edgel3", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, cli.BROKEN_PIPE_STATUS)
    if argv[0] == "models":
        assert proc.returncode == cli.BROKEN_PIPE_STATUS
