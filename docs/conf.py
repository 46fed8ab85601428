"""Sphinx configuration for the mpcai API reference.

Build (warnings are errors)::

    python -m sphinx -W -b html docs docs/_build/html

The API pages are generated from the docstrings of the installed ``mpcai``
package (``pip install -e '.[docs]'``); nothing here points outside the
repository.
"""

from __future__ import annotations

import mpcai

project = "mpcai"
author = "mpcai contributors"
copyright = "mpcai contributors"
release = mpcai.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

# Docstrings are reStructuredText (``:class:``, ``::`` blocks); napoleon also
# reads NumPy / Google "Args:" sections where a docstring uses them.
napoleon_google_docstring = True
napoleon_numpy_docstring = True

autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"

exclude_patterns = ["_build"]
templates_path: list[str] = []
html_static_path: list[str] = []
html_theme = "alabaster"
html_theme_options = {"description": "secure multiparty computation for decentralised AI"}
html_show_sourcelink = False
# no "Powered by" footer: the pages link to nothing outside the repository
html_show_sphinx = False
