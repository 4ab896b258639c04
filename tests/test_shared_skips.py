"""A clone without ../shared runs every other test; in CI a missing ../shared is a failure."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import PROJECT_ROOT


def _run_parity(tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if k != "CI"}
    environ.update(EDGEL3_SHARED_DIR=str(tmp_path / "no-shared"), **env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "tests/test_parity.py",
            "tests/test_shared_skips.py::test_marker_is_registered",
        ],
        cwd=PROJECT_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_shared_tests_skip_with_one_line_reason(tmp_path):
    result = _run_parity(tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 passed" in result.stdout and "skipped" in result.stdout
    assert "needs ../shared" in result.stdout
    assert "empty parameter set" not in result.stdout


def test_in_ci_a_missing_shared_is_a_failure(tmp_path):
    result = _run_parity(tmp_path, CI="true")
    assert result.returncode != 0
    assert "CI must run every test" in result.stdout


def test_marker_is_registered(pytestconfig):
    assert any(line.startswith("shared:") for line in pytestconfig.getini("markers"))
