"""What the commands that read images share: their sources, their unreadable
images, the optional libraries they need, and their tables."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np

from .._io import check_writable_folder
from .._validation import listing
from ..datasets import IMAGE_EXTENSIONS, collect_images
from ..exceptions import ImageReadWarning, WeightsUnavailableError
from . import UserError


def collect(command, source):
    """The image paths of ``source`` (see :func:`skptm.datasets.collect_images`), as str.

    Returns
    -------
    paths : list of str or None
        ``None`` when there are none, after saying so on stderr (the caller
        exits with code 2).
    """
    paths = collect_images(source)
    if paths:
        paths = [str(path) for path in paths]
        _check_names_are_text(paths)
        return paths
    print(
        f"skptm {command}: error: no images found in {source!r} (looked for {', '.join(IMAGE_EXTENSIONS)} files"
        + (", recursively)." if Path(source).is_dir() else ", one path per line)."),
        file=sys.stderr,
    )
    return None


def output_file(path) -> Path:
    """``path`` as a ``Path``, once its folder is known to exist and take a new
    file: said before the work, which would otherwise be lost at the end."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"the output must be a file; {str(path)!r} is a folder.")
    if not path.parent.is_dir():
        raise UserError(f"the output's folder does not exist: {str(path.parent)!r}")
    check_writable_folder(path.parent)
    if path.exists():
        try:
            with open(path, "ab"):  # opened to append, nothing written: the file is unchanged
                pass
        except OSError as exc:
            raise UserError(f"cannot write {str(path)!r} ({exc.strerror or exc}): choose another file.") from None
    return path


def _check_names_are_text(paths):
    """A :class:`UserError` naming the files whose names are not text (bytes
    that are not UTF-8) or hold a line break: the outputs (CSV, Parquet,
    path lists) could not write them, or would misalign the rows after
    them, and would fail only after every image was computed."""
    undecodable = [path for path in paths if not _is_text(path)]
    if undecodable:
        shown = listing([path.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for path in undecodable])
        raise UserError(
            f"{len(undecodable)} file name{'s are' if len(undecodable) > 1 else ' is'} not valid UTF-8 "
            f"(shown with \ufffd for the bytes): {shown}. Rename {'them' if len(undecodable) > 1 else 'it'} "
            "(e.g. with convmv), or list the images in a text file without them."
        )
    broken = [path for path in paths if "\n" in path or "\r" in path]
    if broken:
        shown = listing([path.encode("unicode_escape").decode("ascii") for path in broken])
        raise UserError(
            f"{len(broken)} file name{'s hold' if len(broken) > 1 else ' holds'} a line break ({shown}): "
            "the outputs list one path a line and would shift every row after it. Rename "
            f"{'them' if len(broken) > 1 else 'it'}, or list the images in a text file without them."
        )


def _is_text(path):
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def naming_unreadable_ourselves():
    """Silence :class:`~skptm.ImageReadWarning`: the command names the
    unreadable images itself, once, at the end."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageReadWarning)
        yield


def unreadable(paths, rows):
    """The paths whose rows are all NaN (images that could not be read)."""
    return [path for path, bad in zip(paths, np.isnan(rows).all(axis=1), strict=True) if bad]


def run_offline_aware(command, args, params, call, meaning):
    """``call(**params)``; on missing ImageNet weights with ``--if-offline
    random-weights``, say so on stderr and call again with random weights.

    ``meaning`` says what the results then show, for the notice; ``params``
    then holds ``weights=None``, so that the caller can label its output.
    """
    from . import user_message

    try:
        return call(**params)
    except WeightsUnavailableError as exc:
        if args.if_offline != "random-weights" or params["weights"] != "imagenet":
            raise
        print(f"skptm {command}: notice: {user_message(exc, command)}", file=sys.stderr)
        print(
            f"skptm {command}: notice: falling back to random weights (--if-offline random-weights): {meaning}",
            file=sys.stderr,
        )
        params["weights"] = None
        return call(**params)


def require(module, purpose, install):
    """A :class:`UserError` saying how to install ``module`` when it is missing,
    checked before any work starts."""
    if importlib.util.find_spec(module) is None:
        raise UserError(f"{purpose} needs {module}, which is not installed: {install}")


def print_table(header, rows, right=()):
    """Columns of text, a rule under the header; the columns in ``right`` right-aligned."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def line(row):
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def load_classifier(path):
    """The fitted classifier in skops file ``path`` (written by ``skptm train``
    or :func:`skptm.save`), or a :class:`UserError` saying why it cannot be used."""
    from .._persistence import load

    try:
        model = load(path)
    except (WeightsUnavailableError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # skops raises many kinds of error on a foreign file
        raise UserError(
            f"cannot load a model from {str(path)!r}: {type(exc).__name__}: {exc} (write one with "
            "'skptm train' or skptm.save)."
        ) from exc
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise UserError(f"{str(path)!r} holds a {type(model).__name__}, not a fitted classifier.")
    if not skptm_parts(model):
        raise UserError(
            f"{str(path)!r} holds a {type(model).__name__} that does not take images: the command line runs "
            "models that do (a FineTunedClassifier, or a Pipeline that starts with a "
            "PretrainedFeatureTransformer)."
        )
    return model


def skptm_parts(model) -> list:
    """The skptm estimators in ``model``: itself, or its steps at any depth (a
    Pipeline's), whose options the command line sets (``--batch-size``, ...)."""
    from .._finetuned_base import BaseFineTuned
    from .._transformer import PretrainedFeatureTransformer
    from .._zeroshot import ZeroShotClassifier

    kinds = (BaseFineTuned, PretrainedFeatureTransformer, ZeroShotClassifier)
    inside = model.get_params(deep=True).values() if hasattr(model, "get_params") else ()
    parts = {id(part): part for part in (model, *inside) if isinstance(part, kinds)}
    return list(parts.values())


def set_command_options(model, args, *, keep=()) -> None:
    """Set the options of ``args`` on every skptm estimator in ``model``
    (``keep``: parameters the command set itself, left as they are)."""
    from ._arguments import params_for

    for part in skptm_parts(model):
        params = {name: value for name, value in params_for(part, args).items() if name not in keep}
        part.set_params(**params)
