"""Sphinx configuration of the pyro-diffvi documentation.

Build with ``make docs`` (or ``sphinx-build -W --keep-going -b html docs docs/_build/html``): warnings are
errors. No intersphinx: the build must work offline.
"""

from __future__ import annotations

import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import pyro_diffvi  # noqa: E402

project = "pyro-diffvi"
author = "the pyro-diffvi authors"
copyright = "the pyro-diffvi authors, Apache-2.0"
release = pyro_diffvi.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# autodoc: every page documents its package's ``__all__``; type hints go into the parameter list.
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = False
# Heavy optional dependencies of the simulated-genotype loader are imported lazily; nothing to mock.

# MyST: the guide and results pages are plain Markdown with $math$ and heading anchors.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"pyro-diffvi {release}"
html_static_path: list[str] = []

_PUBLIC_PACKAGES = (
    "guides", "infer", "distributions", "priors", "diffusion", "samplers", "nn", "metrics", "datasets", "ops",
)


def _check_exported_data(app):
    """Warn (an error under ``-W``) about an exported constant that its API page does not document.

    ``automodule`` documents the classes and functions of a package's ``__all__``, but skips imported
    module-level constants (they carry no docstring of their own), so the pages list them with
    explicit ``autodata`` directives; this check keeps those lists complete.
    """
    import importlib
    from pathlib import Path

    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    for package in _PUBLIC_PACKAGES:
        try:
            module = importlib.import_module(f"pyro_diffvi.{package}")
        except ImportError:  # autodoc reports the failure itself
            continue
        page = Path(app.srcdir, "api", f"{package}.rst")
        text = page.read_text()
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isroutine(value):
                continue
            if f".. autodata:: pyro_diffvi.{package}.{name}" not in text:
                logger.warning(
                    "pyro_diffvi.%s exports the constant %s, which %s does not document "
                    "(add an autodata directive)", package, name, page, location=str(page),
                )


def _drop_builtin_type_docstrings(app, what, name, obj, options, lines):
    # an undocumented constant would otherwise show the docstring of its type (``dict``, ``tuple``)
    if what == "data" and type(obj).__doc__ and "\n".join(lines).strip() == inspect.cleandoc(type(obj).__doc__):
        lines.clear()


def setup(app):
    app.connect("builder-inited", _check_exported_data)
    app.connect("autodoc-process-docstring", _drop_builtin_type_docstrings)
