"""Sphinx configuration: the driver author's reference, built from docstrings.

The hook specs (``dockyard.hookspecs``) and the driver kit (``dockyard.driverkit``)
are documented where they are defined; ``docs/reference/*.rst`` only lists them
for autodoc, so the reference cannot drift from the code.  The Markdown pages
(architecture, security, plugins) are read by myst-parser, so one build checks
them and the reference together.

Build: ``sphinx-build -W --keep-going -b html docs build/docs`` (the ``docs`` extra
of pyproject.toml installs Sphinx and myst-parser; ``tests/unit/test_docs_build.py``
runs the same build with warnings as errors).  Autodoc imports the package as
installed (``pip install -e .``), so nothing is added to ``sys.path`` but the shim
kit's directory: ``zygote`` imports ``supervisor`` by bare name, as it does when a
driver runs it standalone (``dockyard/driverkit/shim/__init__.py``).
"""

import importlib.util
import sys

project = "Dockyard"
author = "the Dockyard authors"
copyright = "the Dockyard authors"

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# -- Markdown (myst-parser) ---------------------------------------------------
# ``#`` to ``###`` headings get GitHub's anchors, so a link written for GitHub
# (``architecture.md#the-driver-kit``) resolves in the built docs too, and a
# broken one is a warning (an error under -W).
myst_heading_anchors = 3

# -- autodoc ------------------------------------------------------------------
# undoc-members: the kit's promise covers every public name, documented or not
# (``__all__``, else no leading underscore), so the reference lists them all
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "undoc-members": True,
}
# the hook specs' and the kit's hints are part of the contract: keep them in the
# signature, where a driver author reads them with the arguments
autodoc_typehints = "signature"

_shim = importlib.util.find_spec("dockyard.driverkit.shim")
if _shim is not None and _shim.submodule_search_locations:
    sys.path.append(list(_shim.submodule_search_locations)[0])

# -- output -------------------------------------------------------------------
html_theme = "alabaster"
html_title = "Dockyard: drivers and their kit"
