"""Pickle-free persistence: skops files, written atomically.

:func:`save` and :func:`load` are thin conveniences over :mod:`skops.io`
(an optional dependency: ``pip install skops``, or the ``skops`` extra). A skops file is a
zip holding a JSON description of the objects and every array as a ``.npy``
file read with ``allow_pickle=False``; loading constructs only types that are
trusted, by name. skptm's estimators go through it as their slim pickles do:
parameters, the weights training changed as plain arrays, and a fingerprint
of the base weights, checked on load.
"""

from __future__ import annotations

import io
import os

from ._classifier import FineTunedClassifier
from ._io import atomic_path
from ._regressor import FineTunedRegressor
from ._transformer import PretrainedFeatureTransformer

_INSTALL_HINT = 'skptm.save and skptm.load need skops: pip install "skptm[skops]" (or pip install skops).'


def _skops_io():
    try:
        import skops.io
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return skops.io


def _type_name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def trusted_types() -> list[str]:
    """The types :func:`load` trusts beyond skops's defaults, by name.

    skptm's three estimators, and the concrete :mod:`pathlib` path classes
    (which their ``weights`` and ``cache`` parameters accept; a path is
    rebuilt from its strings and runs no code).
    """
    import pathlib

    types = [
        FineTunedClassifier,
        FineTunedRegressor,
        PretrainedFeatureTransformer,
        pathlib.PosixPath,
        pathlib.WindowsPath,
    ]
    return sorted({_type_name(cls) for cls in types})


def _names(trusted) -> list[str]:
    if trusted is None:
        return []
    if isinstance(trusted, (str, type)):
        trusted = [trusted]
    if isinstance(trusted, bool) or not all(isinstance(item, (str, type)) for item in trusted):
        raise TypeError(
            "trusted must be a list of type names (str) or types, as listed by "
            "skops.io.get_untrusted_types; there is no way to trust everything. "
            f"Received: trusted={trusted!r}"
        )
    return [item if isinstance(item, str) else _type_name(item) for item in trusted]


def save(estimator, path) -> None:
    """Save an estimator, or a pipeline holding skptm estimators, as a skops file.

    The file is written atomically: to a temporary file in the same
    directory, then renamed over ``path``. If saving fails or is interrupted,
    a previous file at ``path`` is left intact, and the temporary file is
    removed (unless the process itself is killed).

    What a fitted fine-tuned estimator stores is what its pickle stores: its
    parameters, the head's weights and the unfrozen layers' weights (plain
    arrays), and a fingerprint of the base weights. The base weights
    themselves are not stored: they come from the ``weights`` parameter on
    the machine that loads the file.

    Parameters
    ----------
    estimator : object
        A skptm estimator, or any object skops can store (a scikit-learn
        ``Pipeline`` holding skptm estimators, for example). Parameters that
        hold Keras objects (a ``keras.Model`` as ``backbone``, a Keras layer
        as ``augment``) cannot be stored without pickle; use a backbone name
        with a weights file instead.
    path : str or path-like
        Where to write; conventionally ends in ``.skops``.

    Raises
    ------
    ImportError
        If skops is not installed.
    TypeError
        If something in ``estimator`` cannot be stored by skops.

    See Also
    --------
    load : Read the file back.

    Examples
    --------
    >>> import os, tempfile
    >>> import skptm
    >>> from skptm import PretrainedFeatureTransformer
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "features.skops")
    >>> skptm.save(PretrainedFeatureTransformer("mobilenet_v2", input_size=96), path)
    >>> skptm.load(path)
    PretrainedFeatureTransformer(backbone='mobilenet_v2', input_size=96)
    >>> folder.cleanup()

    A fitted pipeline goes the same way:

    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> pipe = make_pipeline(PretrainedFeatureTransformer("mobilenet_v2"),
    ...                      LogisticRegression()).fit(images, labels)  # doctest: +SKIP
    >>> skptm.save(pipe, "pipe.skops")  # doctest: +SKIP
    """
    sio = _skops_io()
    path = os.fspath(path)
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        try:
            sio.dump(estimator, file)
        except TypeError as exc:
            raise TypeError(
                f"Cannot save {type(estimator).__name__} with skops: {exc}. skops stores "
                "only data it can rebuild without pickle; parameters holding Keras objects "
                "(a keras.Model as backbone, a Keras layer as augment) cannot be stored. "
                "Use a backbone name with a weights file, or pickle/joblib for files that "
                "only you will load."
            ) from exc
        file.flush()
        os.fsync(file.fileno())


def load(path, trusted=None):
    """Load an estimator saved with :func:`save` (or ``skops.io.dump``).

    Only trusted types are constructed: those skops trusts by default
    (scikit-learn's estimators, NumPy arrays, built-in containers...),
    skptm's own estimators and :mod:`pathlib` paths, and the types named in
    ``trusted``. A file holding any other type is refused before anything in
    it is constructed, with an error listing those types.

    A fine-tuned estimator checks, as unpickling does, that the base
    weights available here (from its ``weights`` parameter) are those it
    was trained on, and raises ``ValueError`` if they differ.

    Parameters
    ----------
    path : str or path-like
        A skops file.
    trusted : list of str or type, default=None
        More types to trust, by their full name as
        ``skops.io.get_untrusted_types(file=path)`` lists them (review that
        list first: each type is code that loading will run). There is no
        way to trust everything.

    Returns
    -------
    estimator : object

    Raises
    ------
    ImportError
        If skops is not installed.
    TypeError
        If the file holds types that are not trusted.
    ValueError
        If a fine-tuned estimator's base weights differ from those it was
        trained on.

    See Also
    --------
    save : Write the file.

    Examples
    --------
    >>> import skptm
    >>> model = skptm.load("model.skops")  # doctest: +SKIP
    >>> model.predict(images)  # doctest: +SKIP

    A pipeline with a step from another package: review, then trust it by name.

    >>> import skops.io
    >>> skops.io.get_untrusted_types(file="other.skops")  # doctest: +SKIP
    ['mypackage.MyStep', 'skptm._transformer.PretrainedFeatureTransformer']
    >>> model = skptm.load("other.skops", trusted=["mypackage.MyStep"])  # doctest: +SKIP
    """
    sio = _skops_io()
    allowed = sorted(set(trusted_types()) | set(_names(trusted)))
    with open(path, "rb") as file:  # read once: what is audited is what is loaded
        data = file.read()
    unexpected = [name for name in sio.get_untrusted_types(data=data) if name not in allowed]
    if unexpected:
        raise TypeError(
            f"{os.fspath(path)!r} holds types that are not trusted: {unexpected}. Loading "
            "would import and run them, so review them first; if you trust them, pass them "
            f"by name: skptm.load(path, trusted={unexpected!r})."
        )
    return sio.load(io.BytesIO(data), trusted=allowed)
