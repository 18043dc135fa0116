"""Sphinx configuration for skptm's documentation.

Build it with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(``pip install -e ".[docs]"`` first). The toolchain is the one scikit-learn
and imbalanced-learn use: pydata-sphinx-theme, numpydoc, autosummary and
sphinx-gallery; the Markdown pages are read by myst-parser.

Nothing is fetched over the network at build time: no intersphinx
inventories, no version switcher, no remote images. The gallery runs each
example as it is; an example whose ImageNet weights cannot be had (offline,
or not in Keras's cache) runs on random weights at 64 px with fewer images,
and says so in its output and figure titles, so the gallery builds offline
in minutes on a CPU.
"""

import os
import re
from pathlib import Path

# Before anything imports TensorFlow (autodoc, the gallery's examples).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "agg")

from sphinx.util import logging as sphinx_logging

import skptm

# -- Project -----------------------------------------------------------------

project = "skptm"
author = "skptm developers"
copyright = "skptm developers"
release = skptm.__version__
version = ".".join(release.split(".")[:2])
language = "en"

# -- General -----------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
# The API pages say `skptm.PretrainedFeatureTransformer`, not the private
# module the class is defined in.
add_module_names = True
default_role = "literal"

# -- autodoc, autosummary, numpydoc -------------------------------------------

# One page per public object, `generated/skptm.<Name>.html`, as scikit-learn
# lays out its API reference (the estimators' HTML repr links there).
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_member_order = "groupwise"
# The signatures carry no annotations worth showing, and the docstrings
# already give every type in numpydoc's words.
autodoc_typehints = "none"
autoclass_content = "class"

# scikit-learn's settings: numpydoc's member tables would list each method a
# second time next to autosummary's, which Sphinx reports as duplicates.
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

# -- MyST (the Markdown pages) ------------------------------------------------

myst_enable_extensions = ["colon_fence", "deflist"]
# Anchors for `page.md#a-heading` links between the Markdown pages.
myst_heading_anchors = 3

# -- sphinx-gallery -------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Only the plot_*.py scripts are gallery examples; the command-line
    # scripts beside them (classify_photos.py, ...) are neither run nor shown.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(__init__\.py|(^|/)(?!plot_)[^/]*\.py$)",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "remove_config_comments": True,
    "reset_modules": ("matplotlib", "seaborn"),
    # Links from the examples' code to the API pages, and each API page's
    # "examples using this" gallery; local only, nothing is downloaded.
    "doc_module": ("skptm",),
    "reference_url": {"skptm": None},
    "backreferences_dir": "generated/backreferences",
    "download_all_examples": False,
}

# -- HTML ---------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"skptm {release}"
html_short_title = "skptm"
html_theme_options = {
    # No version switcher, icon links or analytics: nothing to fetch.
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
# No left sidebar on the pages without sub-pages (it would be empty); the API
# reference and the gallery keep theirs, listing their pages.
html_sidebars = {
    page: []
    for page in ("index", "getting_started", "user_guide", "performance", "reliability", "dask", "design_notes")
}
html_static_path = ["_static"]
html_css_files = ["skptm.css"]
html_show_sourcelink = True
html_copy_source = True

# -- The API page lists everything public ---------------------------------------


def _public_names():
    """Every public name, as `module.name`, that api.rst must document."""
    import skptm.dask
    import skptm.datasets
    import skptm.plot

    names = {f"skptm.{name}" for name in skptm.__all__}
    names |= {f"skptm.plot.{name}" for name in skptm.plot.__all__}
    names |= {f"skptm.dask.{name}" for name in skptm.dask.__all__}
    datasets = getattr(skptm.datasets, "__all__", None) or [
        name
        for name, value in vars(skptm.datasets).items()
        if callable(value) and not name.startswith("_") and getattr(value, "__module__", "") == "skptm.datasets"
    ]
    # load_image_folder is documented once, at the top level.
    names |= {f"skptm.datasets.{name}" for name in datasets if name not in skptm.__all__}
    return names


def _check_api_page(app):
    """Warn (an error under -W) when a public name is missing from api.rst."""
    text = (Path(app.srcdir) / "api.rst").read_text(encoding="utf-8")
    listed = set()
    module = "skptm"
    for line in text.splitlines():
        match = re.match(r"\s*\.\. currentmodule::\s*(\S+)", line)
        if match:
            module = match.group(1)
            continue
        entry = re.match(r"\s{3,}~?([A-Za-z_][\w.]*)\s*$", line)
        if entry and not line.strip().startswith(":"):
            listed.add(f"{module}.{entry.group(1)}")
    missing = sorted(_public_names() - listed)
    if missing:
        sphinx_logging.getLogger(__name__).warning("api.rst does not list these public names: %s", ", ".join(missing))


def _sklearn_references_as_text(app, env, node, contnode):
    """Render the references scikit-learn's inherited docstrings make as text.

    The estimators' pages document the methods they inherit from
    scikit-learn (``score``, ``set_output``, ``set_fit_request``, ...), whose
    docstrings point at labels and glossary terms of scikit-learn's own
    documentation. Nothing is fetched at build time (no intersphinx), so
    those become plain text; every other missing reference still warns.
    """
    if "docstring of sklearn." in (node.source or ""):
        return contnode
    return None


def setup(app):
    app.connect("builder-inited", _check_api_page)
    app.connect("missing-reference", _sklearn_references_as_text)
