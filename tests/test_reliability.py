"""Outputs a user can trust after any run (issue 11): each case as a user hits it.

Every test reproduces a situation that used to lose data, keep stale results,
duplicate rows or leave debris with exit status 0, and asserts: nothing lost
(one output per input), nothing duplicated, nothing stale, nothing left behind,
and a one-line ``edgel3: ...`` message (no traceback) for user errors.
Cases of other areas live in ``test_reliability_*.py`` beside this module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgel3.cli import main
from edgel3.provenance import read_provenance

SR = 16000
PY = [sys.executable, "-m", "edgel3"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


def write_clip(path: Path, seconds: float = 1.5, seed: int = 0, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    signal_ = np.random.default_rng(seed).standard_normal(int(seconds * sr)) * 0.1
    sf.write(path, signal_, sr)
    return path


def npz_outputs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.npz"))


def debris(folder: Path) -> list[str]:
    """Hidden temporaries and locks (dataset lock files of live runs excepted)."""
    return sorted(p.name for p in folder.rglob(".*"))


def run_cli(*args, cwd=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PY, *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd, **kwargs
    )


def assert_one_line_error(proc_or_err: str, rc: int):
    assert rc not in (0, None)
    assert "Traceback" not in proc_or_err
    lines = [line for line in proc_or_err.splitlines() if line.startswith("edgel3:")]
    assert len(lines) == 1, proc_or_err


# --------------------------------------------------------------------------- one output per input


def test_same_stem_other_extension_gives_two_outputs(tmp_path, capsys):
    """Before: a.wav and a.flac -> '1 written, 1 skipped', a.flac never embedded."""
    folder = tmp_path / "audio"
    write_clip(folder / "a.wav", seed=1)
    sf.write(folder / "a.flac", np.random.default_rng(2).standard_normal(SR) * 0.1, SR)
    assert main([str(folder), "--model", "tiny", "-q"]) == 0
    assert npz_outputs(folder) == ["a.flac.npz", "a.wav.npz"]
    out = tmp_path / "out"
    assert main([str(folder), "-o", str(out), "--model", "tiny", "--overwrite"]) == 0
    assert "2 written, 0 skipped, 0 failed" in capsys.readouterr().out
    assert npz_outputs(out) == ["a.flac.npz", "a.wav.npz"]
    for name, ext in (("a.wav.npz", "a.wav"), ("a.flac.npz", "a.flac")):
        record = read_provenance(out / name)
        assert record["input"]["path"] == str(folder / ext)
    wav, flac = (np.load(out / n)["embedding"] for n in ("a.wav.npz", "a.flac.npz"))
    assert wav.shape[0] != flac.shape[0] or not np.allclose(wav, flac)


def test_same_name_in_subfolders_with_jobs_and_manifest(tmp_path, capsys):
    """Before: sub/d1/x.wav and sub/d2/x.wav -> one x.npz, the manifest mapped both to it."""
    folder = tmp_path / "sub"
    write_clip(folder / "d1" / "x.wav", seed=1)
    write_clip(folder / "d2" / "x.wav", seconds=2.5, seed=2)
    out = tmp_path / "out"
    argv = [str(folder), "-o", str(out), "--model", "tiny", "--jobs", "2"]
    assert main(argv) == 0
    assert "2 written" in capsys.readouterr().out
    assert npz_outputs(out) == ["d1/x.npz", "d2/x.npz"]
    records = [json.loads(line) for line in (out / "_manifest.jsonl").read_text().splitlines()]
    outputs = {r["abspath"]: r["output"] for r in records}
    assert len(outputs) == 2 and len(set(outputs.values())) == 2
    # Files listed one by one (no searched folder): the folders still tell them apart.
    listed = tmp_path / "out2"
    files = [folder / "d1" / "x.wav", folder / "d2" / "x.wav"]
    assert main([*map(str, files), "-o", str(listed), "--model", "tiny", "-q"]) == 0
    assert npz_outputs(listed) == ["d1/x.npz", "d2/x.npz"]
    # A resume redoes nothing and loses nothing.
    assert main(argv) == 0
    assert "0 written, 2 skipped" in capsys.readouterr().out


def test_shards_never_share_an_output(tmp_path):
    """Names are decided over all inputs, before sharding: two shards cannot collide."""
    from edgel3.batch import embed_files, gather_inputs, search_roots

    folder = tmp_path / "c"
    for k in range(6):
        write_clip(folder / f"d{k}" / "x.wav", seconds=1.0, seed=k)
    files = gather_inputs([folder])
    outputs = []
    for index in range(3):
        summary = embed_files(
            files,
            tmp_path / "out",
            model="tiny",
            shard=(index, 3),
            roots=search_roots([folder]),
        )
        outputs += [str(r.output) for r in summary.results]
    assert len(outputs) == 6 and len(set(outputs)) == 6


# --------------------------------------------------------------------------- stale outputs


def test_rerun_with_other_options_recomputes_and_says_so(tmp_path, capsys):
    """Before: a rerun with --hop-size 0.5 printed '0 written, 1 skipped' and kept hop 0.1."""
    clip = write_clip(tmp_path / "a.wav", seconds=3.0)
    out = tmp_path / "out"
    base = [str(clip), "-o", str(out), "--model", "tiny"]
    assert main(base) == 0
    first = np.load(out / "a.npz")
    assert len(first["timestamps"]) == 26  # centred: 0.5 s of zeros first
    capsys.readouterr()
    assert main([*base, "--hop-size", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "1 written (1 replacing stale outputs)" in text and "hop_size 0.1 -> 0.5" in text
    assert len(np.load(out / "a.npz")["timestamps"]) == 6
    record = read_provenance(out / "a.npz")
    assert record["hop_size"] == 0.5 and record["model"].startswith("tiny@")
    assert record["input"]["sample_rate"] == SR and record["input"]["frames"] == 3 * SR
    # Changed input: recomputed; --keep-existing keeps whatever exists (0.2.1's rule).
    write_clip(clip, seconds=2.0, seed=5)
    assert main([*base, "--hop-size", "0.5", "--keep-existing"]) == 0
    assert "0 written, 1 skipped" in capsys.readouterr().out
    assert main([*base, "--hop-size", "0.5"]) == 0
    assert "input file changed" in capsys.readouterr().out
    assert len(np.load(out / "a.npz")["timestamps"]) == 4
    # An output without a record (0.2.1's, or another tool's) is not trusted.
    np.savez(out / "a.npz", embedding=np.zeros((1, 1)), timestamps=np.zeros(1))
    assert main([*base, "--hop-size", "0.5"]) == 0
    assert "no provenance record" in capsys.readouterr().out


def test_noop_rerun_decides_before_loading_tensorflow(tmp_path):
    """Before: a no-op rerun loaded TensorFlow and the model before skipping (17-38 s)."""
    clip = write_clip(tmp_path / "a.wav")
    out = tmp_path / "out"
    assert main([str(clip), "-o", str(out), "--model", "tiny", "-q"]) == 0
    script = (
        "import sys; from edgel3.cli import main; "
        f"rc = main([{str(clip)!r}, '-o', {str(out)!r}, '--model', 'tiny']); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "0 written, 1 skipped" in proc.stdout
    assert proc.stdout.strip().endswith("False False")


# --------------------------------------------------------------------------- concurrent runs


def test_two_concurrent_parquet_runs_never_duplicate_rows(tmp_path):
    """Before: both exited 0 with two parts, 1,840 rows for 920 windows."""
    import pandas as pd

    folder = tmp_path / "audio"
    for k in range(8):
        write_clip(folder / f"c{k}.wav", seconds=4.0, seed=k)
    out = tmp_path / "ds"
    argv = [folder, "-o", out, "--model", "tiny", "--format", "parquet", "-q"]
    first = subprocess.Popen([*PY, *map(str, argv)], env=ENV, stderr=subprocess.PIPE, text=True)
    second = run_cli(*argv)
    first_err = first.communicate()[1]
    codes = sorted([first.returncode, second.returncode])
    # Either the second ran after the first (nothing left to do), or it was refused.
    if codes != [0, 0]:
        assert codes == [0, 1]
        refused = second.stderr if second.returncode else first_err
        assert "Another edgel3 run" in refused and "Traceback" not in refused
    assert main([str(a) for a in argv]) == 0  # finish whatever a refused run left
    table = pd.read_parquet(out)
    assert not table.duplicated(["path", "timestamp"]).any()
    assert table.groupby("path").size().to_dict() == {
        Path(folder / f"c{k}.wav").as_posix(): 36 for k in range(8)
    }
    assert debris(out) == []


def test_dataset_lock_refuses_a_live_run_and_frees_on_kill(tmp_path):
    """A second run of the same dataset is refused while the first lives, not after it dies."""
    from edgel3.locks import DatasetLock, LockBusy

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from edgel3.locks import DatasetLock; "
            f"DatasetLock({str(tmp_path)!r}, (0, 2)).acquire(); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    try:
        with pytest.raises(LockBusy, match=r"Another edgel3 run \(pid \d+\) is writing this shard"):
            DatasetLock(tmp_path, (0, 2)).acquire()
        with DatasetLock(tmp_path, (1, 2)):  # the other task of the job array runs
            pass
        for other in (None, (0, 3)):  # another sharding would overlap: refused
            with pytest.raises(LockBusy, match="another --shard count|this dataset"):
                DatasetLock(tmp_path, other).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    with DatasetLock(tmp_path, None):  # a killed holder leaves nothing stuck
        pass
    assert debris(tmp_path) == []


def test_two_concurrent_npz_runs_compute_each_file_once(tmp_path):
    """Concurrent .npz runs used to do all the work twice; now one waits for the other."""
    folder = tmp_path / "audio"
    for k in range(6):
        write_clip(folder / f"c{k}.wav", seconds=3.0, seed=k)
    out = tmp_path / "out"
    argv = [folder, "-o", out, "--model", "tiny"]
    procs = [
        subprocess.Popen([*PY, *map(str, argv)], env=ENV, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    texts = [p.communicate()[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    written = sum(int(t.split(" written")[0].split()[-1]) for t in texts)
    assert written == 6, texts
    assert npz_outputs(out) == [f"c{k}.npz" for k in range(6)]
    assert debris(out) == []


# --------------------------------------------------------------------------- debris and modes


def test_leftovers_of_killed_writers_are_swept(tmp_path, capsys):
    """Temporary files and lock files a SIGKILL leaves are removed by the next run."""
    clip = write_clip(tmp_path / "a.wav")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.npz.k3j_x9.partial").write_bytes(b"")
    (out / ".a.npz.lock").write_text("999999")
    assert main([str(clip), "-o", str(out), "--model", "tiny"]) == 0
    assert npz_outputs(out) == ["a.npz"] and debris(out) == []


def mount_small_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return proc.returncode == 0


def limit_file_size(limit: int):
    def apply():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_leaves_no_partial_files_and_a_rerun_completes(tmp_path):
    """Before: a disk-full run left 14 zero-byte .NAME.npz.<random>.partial files, forever.

    On a 1 MiB tmpfs when the machine lets the test mount one; otherwise the
    same failure is made with a file-size limit (RLIMIT_FSIZE: writes fail).
    """
    folder = tmp_path / "audio"
    for k in range(6):
        write_clip(folder / f"c{k}.wav", seconds=30.0 if k % 2 else 2.0, seed=k)
    out = tmp_path / "small"
    mounted = mount_small_tmpfs(out, "1m")
    try:
        ballast = out / "ballast"
        kwargs = {}
        if mounted:
            ballast.write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))
        else:
            kwargs["preexec_fn"] = limit_file_size(64 * 1024)
        proc = run_cli(folder, "-o", out, "--model", "tiny", **kwargs)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert "failed" in proc.stderr and debris(out) == []
        survivors = npz_outputs(out)
        for name in survivors:  # what was written is complete
            assert np.load(out / name)["embedding"].ndim == 2
        ballast.unlink(missing_ok=True)
        proc = run_cli(folder, "-o", out, "--model", "tiny")
        assert proc.returncode == 0, proc.stderr
        assert f"{6 - len(survivors)} written, {len(survivors)} skipped" in proc.stdout
        assert npz_outputs(out) == [f"c{k}.npz" for k in range(6)] and debris(out) == []
    finally:
        if mounted:
            subprocess.run(["umount", str(out)], check=False)


def test_outputs_honour_the_umask(tmp_path):
    """Before: every file written through a temporary file was 0600 whatever the umask."""
    clip = write_clip(tmp_path / "a.wav")
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        out = tmp_path / f"out{umask:o}"
        for fmt in ("npz", "parquet"):
            proc = run_cli(
                clip, "-o", out / fmt, "--model", "tiny", "--format", fmt, "-q",
                preexec_fn=lambda u=umask: os.umask(u),
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
        files = [p for p in out.rglob("*") if p.is_file()]
        assert len(files) >= 4  # .npz, manifest, part, manifest
        assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(mode)}


# --------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("output-is-file-parquet", id="-o names a file, parquet"),
        pytest.param("output-is-file-npz", id="-o names a file, npz"),
        pytest.param("errors-file-is-dir", id="--errors-file is a directory"),
        pytest.param("suffix-with-slash", id="-x a/b"),
        pytest.param("overwrite-and-keep", id="--overwrite --keep-existing"),
    ],
)
def test_embed_user_errors_are_one_line_and_write_nothing(case, tmp_path, capsys):
    """Before: tracebacks (FileExistsError, NotADirectoryError), a silent subfolder, a stop."""
    folder = tmp_path / "audio"
    for k in range(3):
        write_clip(folder / f"c{k}.wav", seed=k)
    target = tmp_path / "target"
    argv = [str(folder), "--model", "tiny"]
    if case.startswith("output-is-file"):
        target.write_text("not a folder")
        argv += ["-o", str(target), "--format", case.rsplit("-", 1)[1]]
    elif case == "errors-file-is-dir":
        target.mkdir()
        argv += ["-o", str(tmp_path / "out"), "--errors-file", str(target)]
    elif case == "suffix-with-slash":
        argv += ["-o", str(tmp_path / "out"), "-x", "a/b"]
    else:
        argv += ["--overwrite", "--keep-existing"]
    rc = main(argv)
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, rc)
    assert not (tmp_path / "out").exists() and npz_outputs(folder) == []


# --------------------------------------------------------------------------- audio integrity


def test_truncated_wav_warns_in_summary_and_errors_file_or_fails_with_strict(tmp_path, capsys):
    """Before: a WAV whose header says 3 s but holds 1.5 s was embedded with exit 0, no word."""
    clip = write_clip(tmp_path / "audio" / "cut.wav", seconds=3.0)
    data = clip.read_bytes()
    clip.write_bytes(data[: 44 + (len(data) - 44) // 2])
    write_clip(tmp_path / "audio" / "ok.wav", seconds=1.0, seed=3)
    errors = tmp_path / "errors.jsonl"
    argv = [str(tmp_path / "audio"), "-o", str(tmp_path / "out"), "--model", "tiny"]
    assert main([*argv, "--errors-file", str(errors)]) == 0
    captured = capsys.readouterr()
    [line] = [x for x in captured.err.splitlines() if "truncated" in x]
    assert (
        line.startswith("edgel3: warning: ")
        and "3.000 s (48000 frames)" in line
        and "1.500 s (24000 frames)" in line
    )
    assert "1 written with warnings" in captured.out
    [record] = [json.loads(x) for x in errors.read_text().splitlines()]
    assert record["level"] == "warning" and record["path"].endswith("cut.wav")
    assert "truncated" in record["error"]
    strict_out = tmp_path / "strict"
    rc = main([*argv[:-4], "-o", str(strict_out), "--model", "tiny", "--strict"])
    captured = capsys.readouterr()
    assert rc == 1 and "Traceback" not in captured.err
    assert "refused (strict)" in captured.err
    assert npz_outputs(strict_out) == ["ok.npz"] and debris(strict_out) == []


def test_staging_folder_of_a_killed_export_is_swept(tmp_path, capsys):
    """A SIGKILL during 'edgel3 export' leaves .NAME.<random>.partial/; the next run sweeps it."""
    leftover = tmp_path / ".tiny.tflite.ab12_x.partial"
    leftover.mkdir()
    (leftover / "tiny.tflite").write_bytes(b"half")
    assert main(["export", "tiny", "-o", str(tmp_path / "tiny.tflite"), "-q"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.tflite"]


def test_parquet_rerun_with_other_options_or_changed_input_shows_each_file_once(tmp_path):
    """Redone files used to keep their old rows in old parts: pandas showed them twice."""
    import pandas as pd

    folder = tmp_path / "audio"
    for k in range(3):
        write_clip(folder / f"c{k}.wav", seconds=2.0, seed=k)
    out = tmp_path / "ds"
    base = [str(folder), "-o", str(out), "--model", "tiny", "--format", "parquet", "-q"]

    def rows_per_file():
        table = pd.read_parquet(out)
        assert not table.duplicated(["path", "timestamp"]).any()
        return table.groupby("path").size().sort_index().tolist()

    assert main(base) == 0
    assert rows_per_file() == [16, 16, 16]
    assert main([*base, "--hop-size", "0.5"]) == 0  # other options: every file redone
    assert rows_per_file() == [4, 4, 4]
    write_clip(folder / "c1.wav", seconds=3.0, seed=9)  # a changed input: that file redone
    assert main([*base, "--hop-size", "0.5"]) == 0
    assert rows_per_file() == [4, 6, 4]
    assert main([*base, "--hop-size", "0.5", "--overwrite"]) == 0
    assert rows_per_file() == [4, 6, 4]
    assert debris(out) == []
    from edgel3.batch import read_parquet_embeddings

    assert sorted(len(t) for _, t in read_parquet_embeddings(out).values()) == [4, 4, 6]
