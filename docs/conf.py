"""Sphinx configuration for edgel3's documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "edgel3"
author = "edgel3 developers"
copyright = "2019-2026, the edgel3 authors"  # noqa: A001 - Sphinx's name
exec(open(os.path.join("..", "edgel3", "version.py")).read())  # defines __version__
release = __version__  # noqa: F821

extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc", "sphinx.ext.viewcode"]
autosummary_generate = True
numpydoc_show_class_members = False
autodoc_mock_imports = ["tensorflow"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
