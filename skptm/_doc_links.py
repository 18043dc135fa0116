"""Links from the estimators' HTML representation to their API reference pages."""

#: Root of the published documentation (``docs/``, built by Sphinx).
DOCS_URL = "https://skptm.readthedocs.io/en/latest/"


class DocLinkMixin:
    """Make scikit-learn's HTML representation (the "?" icon in a notebook)
    link to the estimator's page, ``generated/skptm.<Name>.html``, which
    autosummary writes for every public name."""

    _doc_link_module = "skptm"
    _doc_link_template = DOCS_URL + "generated/{estimator_module}.{estimator_name}.html"
