"""The documentation builds with warnings as errors, and its API reference is complete.

``sphinx-build -W`` runs twice: from the project root (``sphinx-build docs OUT``, the
checkout's package) and from a copy of ``docs/`` in another folder (the installed
package), as a user building the docs would. A broken cross-reference, a malformed
docstring table or an undefined substitution in any page or public docstring fails
the build, and so this test. The API reference must name every public module of the
package, so a new module cannot be left out of it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def public_modules(package_dir: Path = ROOT / "edgel3") -> set[str]:
    """Dotted names of every module and package under ``package_dir`` without a private part.

    Parameters
    ----------
    package_dir : Path

    Returns
    -------
    set of str
        e.g. ``{'edgel3', 'edgel3.core', 'edgel3.batch', 'edgel3.batch.parquet', ...}``.
    """
    names = set()
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue
        names.add(".".join(parts))
    return names


def documented_modules(api_rst: Path = DOCS / "api.rst") -> set[str]:
    """Module names listed in the autosummary blocks of ``api.rst``."""
    return set(re.findall(r"^\s+(edgel3(?:\.\w+)*)\s*$", api_rst.read_text(), re.MULTILINE))


def test_api_reference_lists_every_public_module():
    missing = sorted(public_modules() - documented_modules())
    assert not missing, f"docs/api.rst does not list: {missing}"
    stale = sorted(documented_modules() - public_modules())
    assert not stale, f"docs/api.rst lists modules that do not exist: {stale}"


def test_public_modules_finds_a_new_module(tmp_path):
    package = tmp_path / "edgel3"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "core.py", "_private.py", "sub/__init__.py", "sub/x.py"):
        (package / name).write_text("")
    assert public_modules(package) == {"edgel3", "edgel3.core", "edgel3.sub", "edgel3.sub.x"}


def _sphinx(source: Path, out: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
        + [str(source), str(out)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def sphinx_available():
    pytest.importorskip("sphinx", reason="sphinx is in the test extra: pip install '.[test]'")
    pytest.importorskip("numpydoc", reason="numpydoc is in the test extra: pip install '.[test]'")


def test_docs_build_from_project_root(sphinx_available, tmp_path):
    result = _sphinx(Path("docs"), tmp_path / "html", cwd=ROOT)
    assert result.returncode == 0, result.stderr[-5000:]
    assert (tmp_path / "html" / "generated" / "edgel3.core.html").is_file()


def test_docs_build_from_a_copy_of_docs(sphinx_available, tmp_path):
    copy = tmp_path / "docs"
    shutil.copytree(DOCS, copy, ignore=shutil.ignore_patterns("_build", "generated"))
    result = _sphinx(Path("."), tmp_path / "html", cwd=copy)
    assert result.returncode == 0, result.stderr[-5000:]
    assert (tmp_path / "html" / "index.html").is_file()
