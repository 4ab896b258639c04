"""Sphinx configuration for edgel3's documentation."""

import sys
from pathlib import Path

# Paths from this file, not the working directory: ``sphinx-build docs OUT`` from the
# project root documents the checkout beside it; a copy of docs/ anywhere else documents
# the installed edgel3 (``pip install .``).
ROOT = Path(__file__).resolve().parent.parent
if (ROOT / "edgel3" / "version.py").is_file():
    sys.path.insert(0, str(ROOT))

from edgel3.version import __version__  # noqa: E402 - after the path is set

project = "edgel3"
author = "edgel3 developers"
copyright = "2019-2026, the edgel3 authors"  # noqa: A001 - Sphinx's name
release = version = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc", "sphinx.ext.viewcode"]
autosummary_generate = True
numpydoc_show_class_members = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
