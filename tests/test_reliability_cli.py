"""User errors and outputs of export, memory-report, prune, distill, sea, models (issue 11).

Each bad command runs as a user types it (:func:`edgel3.cli.main` in-process, which
prints exactly what the program prints; a few through ``python -m edgel3``) and must
end with a non-zero status, one ``edgel3...: error: ...`` line on stderr, no
traceback, and the working folder exactly as it was: no output, no temporary, no
staging folder, an existing file untouched. Then the cases where writing had begun
when something failed (``export``'s check and report, ``sea``'s second file): no
output appears and an earlier run's files are kept. Last, the API's number checks
(``get_embedding(x, float('inf'))`` and friends): a ``ParameterError`` naming the value,
never an ``OverflowError``.

``BAD_COMMANDS`` is a plain list of ``pytest.param(argv, id=...)`` run in the shared
folder made by :func:`workspace`; cases of other commands can be added to it.
"""

from __future__ import annotations

import fractions
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import edgel3
from edgel3.cli import main
from edgel3.exceptions import EdgeL3Error, OutputError, ParameterError

SR = 16000
PY = [sys.executable, "-m", "edgel3"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
#: One error line, as edgel3 prints it (``edgel3: error:``) or argparse does
#: (``edgel3 prune: error:``, after the usage lines).
ERROR_LINE = re.compile(r"^edgel3( [a-z-]+)?: error: \S")
#: Per-conv sparsities for the bundled tiny model (6 prunable convs).
TINY_PLAN = "50,50,50,50,50,50"
#: Training options that make distill/sea quick with the bundled model.
QUICK = ["--teacher", "tiny", "--epochs", "1", "-q"]


def write_clip(path: Path, seconds: float = 1.5, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1, SR)
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder with good audio and every kind of bad path the commands are given."""
    root = tmp_path_factory.mktemp("workspace")
    write_clip(root / "audio" / "a.wav", seed=1)
    write_clip(root / "audio" / "b.wav", seed=2)
    (root / "empty").mkdir()
    (root / "garbage.wav").write_bytes(b"not audio at all" * 10)
    (root / "garbage.tflite").write_bytes(b"not a flatbuffer" * 10)
    (root / "empty.tflite").write_bytes(b"")
    (root / "garbage.h5").write_bytes(b"junk" * 10)
    (root / "afile").write_text("a file, not a folder")
    for folder in ("adir.tflite", "adir.keras", "adir.json", "clash/out.json"):
        (root / folder).mkdir(parents=True)
    (root / "clash" / "s.keras.projection.npz").mkdir()
    if os.geteuid() != 0:  # root writes anywhere: the read-only case needs another user
        (root / "ro").mkdir()
        (root / "ro").chmod(0o555)
    return root


def snapshot(folder: Path) -> dict:
    """Every entry under ``folder`` (hidden ones included) with its size and mtime."""
    entries = {}
    for path in folder.rglob("*"):
        stat = path.lstat()
        entries[path.relative_to(folder).as_posix()] = (
            path.is_dir(),
            0 if path.is_dir() else stat.st_size,
            stat.st_mtime_ns,
        )
    return entries


def assert_one_line_error(rc, out: str, err: str):
    assert rc not in (0, None), out + err
    assert "Traceback" not in out + err, out + err
    lines = [line for line in err.splitlines() if line.startswith("edgel3")]
    assert len(lines) == 1 and ERROR_LINE.match(lines[0]), err
    assert not [line for line in out.splitlines() if line.startswith("edgel3")], out


def partials(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob(".*"))


# --------------------------------------------------------------------------- the battery

#: Bad commands, run in :func:`workspace` (paths are relative to it).
BAD_COMMANDS = [
    # the dispatcher and models
    pytest.param(["models", "--bogus"], id="models-unknown-option"),
    pytest.param(["models", "extra"], id="models-extra-argument"),
    pytest.param([], id="no-arguments"),
    pytest.param(["frobnicate"], id="unknown-command-missing-path"),
    pytest.param(["export"], id="export-no-model"),
    pytest.param(["memory-report"], id="memory-no-model"),
    # export: model
    pytest.param(["export", "missing.h5", "-o", "out.tflite"], id="export-missing-model-file"),
    pytest.param(["export", "nosuchmodel", "-o", "out.tflite"], id="export-unknown-model"),
    pytest.param(["export", "audio", "-o", "out.tflite"], id="export-model-is-a-folder"),
    pytest.param(["export", "garbage.h5", "-o", "out.tflite"], id="export-garbage-h5"),
    pytest.param(["export", "garbage.tflite", "-o", "out.tflite"], id="export-tflite-model"),
    # export: output
    pytest.param(["export", "tiny"], id="export-no-output"),
    pytest.param(["export", "tiny", "a.tflite", "-o", "b.tflite"], id="export-two-outputs"),
    pytest.param(["export", "tiny", "-o", "adir.tflite"], id="export-output-is-a-folder"),
    pytest.param(["export", "tiny", "-o", "afile/out.tflite"], id="export-output-under-a-file"),
    pytest.param(["export", "tiny", "-o", "out.json"], id="export-output-named-like-sidecar"),
    pytest.param(["export", "tiny", "-o", "clash/out.tflite"], id="export-sidecar-is-a-folder"),
    # export: inputs read after converting, before
    pytest.param(
        ["export", "tiny", "-o", "out.tflite", "--check", "missing.wav"], id="export-check-missing"
    ),
    pytest.param(
        ["export", "tiny", "-o", "out.tflite", "--check", "empty"], id="export-check-empty"
    ),
    pytest.param(
        ["export", "tiny", "-o", "out.tflite", "--check", "garbage.wav"], id="export-check-garbage"
    ),
    pytest.param(
        ["export", "tiny", "-o", "out.tflite", "-Q", "int8", "--calibration", "missing.wav"],
        id="export-calibration-missing",
    ),
    pytest.param(["export", "tiny", "-o", "out.tflite", "-Q", "int8"], id="export-int8-no-audio"),
    pytest.param(
        ["export", "tiny", "-o", "out.tflite", "--bands", "2", "--variant", "full"],
        id="export-bands-full",
    ),
    pytest.param(
        ["export", "tiny", "-o", "out.tflite", "-Q", "int4"], id="export-bad-quantization"
    ),
    pytest.param(
        ["export", "tiny", "-o", "out.tflite", "--report", "--budget", "bogus"],
        id="export-unknown-budget",
    ),
    pytest.param(
        ["export", "tiny", "-o", "out.tflite", "--report", "--budget", "x:flash=12XB"],
        id="export-bad-budget-size",
    ),
    pytest.param(
        ["export", "tiny", "-o", "out.tflite", "--budget", "cortex-m7"],
        id="export-budget-without-report",
    ),
    # memory-report
    pytest.param(["memory-report", "missing.h5"], id="memory-missing-model"),
    pytest.param(["memory-report", "garbage.tflite"], id="memory-garbage-tflite"),
    pytest.param(["memory-report", "empty.tflite"], id="memory-empty-tflite"),
    pytest.param(["memory-report", "tiny", "--budget", "bogus"], id="memory-unknown-budget"),
    pytest.param(["memory-report", "tiny", "--budget", "flash=-1"], id="memory-negative-budget"),
    pytest.param(["memory-report", "tiny", "--budget", "x:rom=1MiB"], id="memory-budget-key"),
    pytest.param(
        ["memory-report", "tiny", "--no-budget", "--budget", "cortex-m7"],
        id="memory-budget-and-no-budget",
    ),
    pytest.param(["memory-report", "tiny", "-o", "adir.json"], id="memory-output-is-a-folder"),
    pytest.param(["memory-report", "tiny", "-o", "afile/r.json"], id="memory-output-under-a-file"),
    pytest.param(
        ["memory-report", "tiny", "--json", "a.json", "-o", "b.json"], id="memory-two-outputs"
    ),
    # prune
    pytest.param(["prune", "missing.h5", "--plan", "95.45", "-o", "p.keras"], id="prune-no-model"),
    pytest.param(["prune", "tiny", "-o", "p.keras"], id="prune-nothing-to-do"),
    pytest.param(["prune", "tiny", "--plan", TINY_PLAN], id="prune-no-output"),
    pytest.param(["prune", "tiny", "--plan", "42", "-o", "p.keras"], id="prune-unknown-plan"),
    pytest.param(
        ["prune", "tiny", "--plan", "10,abc", "-o", "p.keras"], id="prune-plan-not-numbers"
    ),
    pytest.param(["prune", "tiny", "--plan", "10,20", "-o", "p.keras"], id="prune-plan-length"),
    pytest.param(["prune", "tiny", "--plan", TINY_PLAN, "-o", "p.txt"], id="prune-bad-suffix"),
    pytest.param(
        ["prune", "tiny", "--plan", TINY_PLAN, "-o", "adir.keras"], id="prune-output-folder"
    ),
    pytest.param(
        ["prune", "tiny", "--plan", TINY_PLAN, "-o", "afile/p.keras"], id="prune-output-under-file"
    ),
    pytest.param(["prune", "tiny", "--depth", "2", "-o", "p.keras"], id="prune-depth-not-l3"),
    pytest.param(["prune", "tiny", "--sensitivity", "missing.wav"], id="prune-sweep-missing-audio"),
    pytest.param(
        ["prune", "tiny", "--sensitivity", "audio", "--sparsities", "150"],
        id="prune-sweep-sparsity-range",
    ),
    pytest.param(
        ["prune", "tiny", "--sensitivity", "audio", "-o", "p.keras"], id="prune-sweep-with-output"
    ),
    # distill
    pytest.param(["distill", "missing.wav", "-o", "s.keras", *QUICK], id="distill-missing-input"),
    pytest.param(["distill", "empty", "-o", "s.keras", *QUICK], id="distill-no-audio"),
    pytest.param(["distill", "garbage.wav", "-o", "s.keras", *QUICK], id="distill-garbage-audio"),
    pytest.param(
        ["distill", "audio", "-o", "s.keras", "--student", "bogus", *QUICK], id="distill-student"
    ),
    pytest.param(
        ["distill", "audio", "-o", "s.keras", "--teacher", "bogus", "--epochs", "1"],
        id="distill-teacher",
    ),
    pytest.param(["distill", "audio", "-o", "s.txt", *QUICK], id="distill-bad-suffix"),
    pytest.param(["distill", "audio", "-o", "adir.keras", *QUICK], id="distill-output-folder"),
    pytest.param(
        ["distill", "audio", "-o", "s.keras", "--validation-split", "1.5", *QUICK],
        id="distill-validation-range",
    ),
    pytest.param(["distill", "audio", "-o", "s.keras", "--resume", *QUICK], id="distill-resume"),
    pytest.param(
        ["distill", "audio", "-o", "s.keras", "--checkpoint-dir", "afile", *QUICK],
        id="distill-checkpoint-dir-is-a-file",
    ),
    pytest.param(
        ["distill", "audio", "-o", "s.keras", "--cache", "empty", *QUICK], id="distill-cache-folder"
    ),
    pytest.param(
        ["distill", "audio", "-o", "s.keras", "--cache", "garbage.wav", *QUICK],
        id="distill-cache-not-a-cache",
    ),
    # sea
    pytest.param(["sea", "missing.wav", "-o", "s.keras", *QUICK], id="sea-missing-input"),
    pytest.param(["sea", "audio", "-o", "s.txt", "-e", "8", *QUICK], id="sea-bad-suffix"),
    pytest.param(
        ["sea", "audio", "-o", "s.keras", "-e", "8", "--n-samples", "2", *QUICK],
        id="sea-n-samples-below-dim",
    ),
    pytest.param(["sea", "audio", "-o", "s.keras", "-e", "500", *QUICK], id="sea-dim-too-large"),
    pytest.param(
        ["sea", "audio", "-o", "clash/s.keras", "-e", "8", *QUICK], id="sea-projection-is-a-folder"
    ),
]
if os.geteuid() != 0:  # permissions do not stop root
    BAD_COMMANDS += [
        pytest.param(["export", "tiny", "-o", "ro/out.tflite"], id="export-read-only-folder"),
        pytest.param(["prune", "tiny", "--plan", TINY_PLAN, "-o", "ro/p.h5"], id="prune-read-only"),
        pytest.param(["memory-report", "tiny", "-o", "ro/r.json"], id="memory-read-only-folder"),
    ]

#: Bad settings in the environment: (argv, environment variables).
BAD_ENVIRONMENTS = [
    pytest.param(["models"], {"EDGEL3_WEIGHTS_DIR": "afile"}, id="models-weights-dir-is-a-file"),
    pytest.param(["models"], {"EDGEL3_WEIGHTS_DIR": "nowhere"}, id="models-weights-dir-missing"),
]


@pytest.mark.parametrize("argv", BAD_COMMANDS)
def test_bad_command_is_one_line_and_leaves_the_folder_as_it_was(
    argv, workspace, monkeypatch, capsys
):
    """Before: tracebacks (prune --plan 10,abc, an output that is a folder, --checkpoint-dir
    naming a file), outputs written before the error (export --check missing.wav, a bad
    --budget, sea's projection) and mistakes found only after training (a bad -o suffix)."""
    monkeypatch.chdir(workspace)
    before = snapshot(workspace)
    rc = main(argv)
    captured = capsys.readouterr()
    assert_one_line_error(rc, captured.out, captured.err)
    assert snapshot(workspace) == before


@pytest.mark.parametrize("argv, env", BAD_ENVIRONMENTS)
def test_bad_environment_is_one_line(argv, env, workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rc = main(argv)
    captured = capsys.readouterr()
    assert_one_line_error(rc, captured.out, captured.err)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(
            ["export", "tiny", "-o", "out.tflite", "--check", "missing.wav"],
            id="export-check-missing",
        ),
        pytest.param(["prune", "tiny", "--plan", "10,abc", "-o", "p.keras"], id="prune-plan"),
        pytest.param(["distill", "audio", "-o", "adir.keras", *QUICK], id="distill-output-folder"),
    ],
)
def test_bad_command_as_a_program(argv, workspace):
    """The same through ``python -m edgel3``: what a shell shows."""
    before = snapshot(workspace)
    proc = subprocess.run(
        [*PY, *argv], capture_output=True, text=True, env=ENV, cwd=workspace, timeout=300
    )
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)
    assert snapshot(workspace) == before


# --------------------------------------------------------------------------- failures after writing


@pytest.mark.parametrize("failing", ["edgel3.export.fidelity.compare_embeddings", "report"])
def test_export_failing_its_check_or_report_leaves_no_output(
    failing, tmp_path, monkeypatch, capsys
):
    """Before: ``--check missing.wav`` (or a failing check/report) left the .tflite and .json."""
    write_clip(tmp_path / "audio" / "a.wav")
    old = {"out.tflite": b"old export", "out.json": b'{"old": true}\n'}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)

    def boom(*args, **kwargs):
        raise EdgeL3Error("the check failed")

    if failing == "report":
        monkeypatch.setattr("edgel3.export.memory.memory_report", boom)
        argv = ["export", "tiny", "-o", str(tmp_path / "out.tflite"), "--report"]
    else:
        monkeypatch.setattr(failing, boom)
        argv = ["export", "tiny", "-o", str(tmp_path / "out.tflite"), "--check", "audio"]
    monkeypatch.chdir(tmp_path)
    rc = main(argv)
    captured = capsys.readouterr()
    assert_one_line_error(rc, captured.out, captured.err)
    assert {name: (tmp_path / name).read_bytes() for name in old} == old
    assert partials(tmp_path) == []


def test_export_writes_both_files_at_the_end_with_the_umask(tmp_path, monkeypatch, capsys):
    write_clip(tmp_path / "audio" / "a.wav")
    monkeypatch.chdir(tmp_path)
    mask = os.umask(0o027)
    try:
        rc = main(["export", "tiny", "-o", "new/tiny.tflite", "--check", "audio", "--report"])
    finally:
        os.umask(mask)
    out = capsys.readouterr().out
    assert rc == 0
    assert "wrote new/tiny.tflite" in out and "and new/tiny.json" in out
    assert "check on" in out and "Memory report" in out and ".partial" not in out
    for name in ("tiny.tflite", "tiny.json"):
        assert (tmp_path / "new" / name).stat().st_mode & 0o777 == 0o640
    assert partials(tmp_path) == []
    info = edgel3.litert.read_sidecar(tmp_path / "new" / "tiny.tflite")
    assert info["variant"] == "full"


def test_export_model_writes_neither_file_when_the_sidecar_fails(tmp_path, monkeypatch):
    from edgel3.export import convert

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(convert, "json", types.SimpleNamespace(dumps=fail))
    with pytest.raises(OSError):
        convert.export_model("tiny", tmp_path / "x.tflite")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _fake_sea_distill(student, data, *, teacher, projection, target_cache, **options):
    """sea_distill without the training: the student as it is, a projection fitted on noise."""
    rng = np.random.default_rng(0)
    projection.fit(rng.standard_normal((50, 16)))
    result = types.SimpleNamespace(
        model=student, initial_val_loss=1.0, best_val_loss=0.5, epochs=1, device="cpu"
    )
    return result, projection


@pytest.mark.parametrize("fails", [False, True])
def test_sea_writes_model_and_projection_together(fails, tmp_path, monkeypatch, capsys):
    """Before: a projection that could not be written left the student model alone."""
    from edgel3.compress import sea

    write_clip(tmp_path / "audio" / "a.wav")
    monkeypatch.setattr(sea, "sea_distill", _fake_sea_distill)
    if fails:

        def fail(self, path):
            raise OutputError(f'Cannot write "{path}": disk full')

        monkeypatch.setattr(sea.SEAProjection, "save", fail)
    monkeypatch.chdir(tmp_path)
    mask = os.umask(0o022)
    try:
        rc = main(["sea", "audio", "-o", "s.keras", "-e", "8", *QUICK])
    finally:
        os.umask(mask)
    captured = capsys.readouterr()
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != "audio")
    if fails:
        assert_one_line_error(rc, captured.out, captured.err)
        assert names == []
    else:
        assert rc == 0, captured.err
        assert names == ["s.keras", "s.keras.projection.npz"]
        assert {(tmp_path / n).stat().st_mode & 0o777 for n in names} == {0o644}


def test_saved_models_appear_complete_or_not_at_all(tmp_path, monkeypatch):
    """Keras writes .keras files in place; edgel3 saves them atomically (best.keras too)."""
    import keras

    from edgel3.compress.pruning import save_model
    from edgel3.reference import resolve_model

    model = resolve_model("tiny").load()
    target = tmp_path / "m.keras"
    target.write_bytes(b"an earlier model")

    def half_save(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK half a zip")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", half_save)
        with pytest.raises(OSError):
            save_model(model, target)
    assert target.read_bytes() == b"an earlier model" and partials(tmp_path) == []
    mask = os.umask(0o027)
    try:
        save_model(model, target)
        save_model(model, tmp_path / "m.h5.gz")
    finally:
        os.umask(mask)
    assert keras.saving.load_model(target).count_params() == model.count_params()
    assert {p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {0o640}
    with pytest.raises(ParameterError, match=r"\.keras"):
        save_model(model, tmp_path / "m.txt")


def test_staged_outputs_all_or_nothing(tmp_path):
    from edgel3.commands.common import staged_outputs

    (tmp_path / "a.bin").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with staged_outputs(tmp_path / "a.bin", tmp_path / "sub" / "b.bin") as (a, b):
            a.write_bytes(b"new")
            raise KeyboardInterrupt
    assert (tmp_path / "a.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # no sub/, no staging
    with staged_outputs(tmp_path / "a.bin", tmp_path / "sub" / "b.bin") as (a, b):
        assert not (tmp_path / "sub").exists()
        a.write_bytes(b"new")
        b.write_bytes(b"b")
    assert (tmp_path / "a.bin").read_bytes() == b"new"
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"b" and partials(tmp_path) == []


# --------------------------------------------------------------------------- the API's numbers

BAD_RATES = [
    float("inf"),
    float("-inf"),
    float("nan"),
    1e308,
    10**400,
    -(10**400),
    2**63,
    0,
    16000.5,
    np.float64("inf"),
    np.longdouble("1e400"),
    fractions.Fraction(10**400),
    True,
    np.True_,
    "16000",
    None,
]


@pytest.mark.parametrize("sr", BAD_RATES, ids=[repr(v)[:24] for v in BAD_RATES])
def test_get_embedding_bad_sample_rate_is_a_parameter_error_naming_it(sr):
    """Before: ``10**400`` raised OverflowError; ``1e308`` an AudioError with 300 digits."""
    audio = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    with pytest.raises(ParameterError, match="sample rate") as info:
        edgel3.get_embedding(audio, sr, model="tiny", verbose=0)
    message = str(info.value)
    assert len(message) < 200
    assert repr(sr)[:16] in message


@pytest.mark.parametrize("sr", [np.float32(16000), np.int64(16000), 16000.0, np.uint16(16000)])
def test_get_embedding_numpy_sample_rates_are_accepted(sr):
    audio = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    embedding, _ = edgel3.get_embedding(audio, sr, model="tiny", verbose=0)
    assert embedding.shape[0] >= 1 and np.all(np.isfinite(embedding))


@pytest.mark.parametrize(
    "hop", [1e308, 10**400, float("inf"), 2e9], ids=["1e308", "10**400", "inf", "2e9"]
)
def test_get_embedding_huge_hop_is_a_parameter_error(hop):
    """Before: ``hop_size=1e308`` raised OverflowError in the framing."""
    audio = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    with pytest.raises(ParameterError, match="hop size"):
        edgel3.get_embedding(audio, SR, model="tiny", hop_size=hop, verbose=0)


def test_number_checks_never_overflow():
    from edgel3.checks import MAX_SAMPLE_RATE, check_fraction, check_hop_size, check_sample_rate

    assert check_sample_rate(MAX_SAMPLE_RATE) == MAX_SAMPLE_RATE
    assert check_hop_size(fractions.Fraction(1, 2)) == 0.5
    for check, value in (
        (check_sample_rate, MAX_SAMPLE_RATE + 1),
        (check_hop_size, 10**400),
        (lambda v: check_fraction(v, "x"), 10**400),
        (lambda v: check_fraction(v, "x"), np.longdouble("1e400")),
    ):
        with pytest.raises(ParameterError):
            check(value)
