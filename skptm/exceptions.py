"""Every public error and warning of skptm, in one place (as ``sklearn.exceptions``).

They are re-exported from :mod:`skptm` itself, so ``skptm.ImageReadError``
and ``skptm.exceptions.ImageReadError`` are the same class. This module
imports nothing heavy: catching an skptm error never starts TensorFlow.
"""

from __future__ import annotations

__all__ = [
    "CalibrationWarning",
    "FeatureCacheWarning",
    "ImageReadError",
    "ImageReadWarning",
    "OpenVINOCacheWarning",
    "WeightsUnavailableError",
]


class ImageReadError(ValueError):
    """An input item could not be read as an image.

    Attributes
    ----------
    index : int
        Position of the item in the input.
    path : str or None
        The item's file path, where it has one.
    needed_by : {"fit", "score", "compare"} or None
        Raised by ``fit``, ``score`` or :func:`skptm.compare`, which need
        every image (so the message does not offer ``on_error="nan"``).
    """

    #: What each caller that needs every image says.
    _NEEDS = {
        "fit": "Training cannot use an unreadable image",
        "score": "Scoring needs every image",
        "compare": "skptm.compare scores every approach on every image",
    }

    def __init__(self, index, path, cause, needed_by=None):
        self.index = index
        self.path = path
        self.cause = cause
        self.needed_by = needed_by
        where = f"index {index}" + (f" ({path!r})" if path else "")
        way_out = (
            f"{self._NEEDS[needed_by]}: fix or remove this item (and its label)."
            if needed_by
            else "Fix or remove this item, or pass on_error='nan' to get a row of NaN for it instead."
        )
        super().__init__(f"Could not read the image at {where}: {cause}. {way_out}")

    @property
    def training(self) -> bool:
        """Whether ``fit`` raised it."""
        return self.needed_by == "fit"

    def as_needed_by(self, caller) -> ImageReadError:
        """The same error, as ``caller`` (``"fit"``, ``"score"`` or ``"compare"``) raises it."""
        return type(self)(self.index, self.path, self.cause, caller)

    def __reduce__(self):  # survives joblib's worker processes
        return (type(self), (self.index, self.path, self.cause, self.needed_by))


class ImageReadWarning(UserWarning):
    """Some items could not be read and were given rows of NaN.

    Attributes
    ----------
    failures : tuple of (int, str or None, str)
        ``(index, path, cause)`` of each item that could not be read.
    """

    def __init__(self, *args, failures=()):
        super().__init__(*args)
        self.failures = tuple(failures)

    @classmethod
    def about(cls, failures, n, *, part="") -> ImageReadWarning:
        """The warning for ``failures`` ``(index, path, cause)`` among ``n``
        images (``part``: which part of a larger input they were, in words)."""
        listing = "; ".join(
            f"{index}" + (f" ({path})" if path else "") + f": {cause}" for index, path, cause in failures
        )
        return cls(
            f"{len(failures)} of {n} images{part} could not be read; their rows are NaN. "
            f"Failed items (index (path): cause): {listing}",
            failures=failures,
        )

    def located(self, locate, n, part) -> ImageReadWarning:
        """The same warning with each index mapped by ``locate`` to its place in the whole input."""
        return self.about([(locate(index), path, cause) for index, path, cause in self.failures], n, part=part)


class WeightsUnavailableError(OSError):
    """The ImageNet weights are neither in Keras's cache nor downloadable."""


class FeatureCacheWarning(UserWarning):
    """The feature cache could not be used as asked (an entry was damaged, or
    the directory is not writable); features were computed instead."""


class OpenVINOCacheWarning(UserWarning):
    """A converted model on disk could not be used and was converted again,
    or could not be stored."""


class CalibrationWarning(UserWarning):
    """This machine's engine measurements could not be read or stored; the
    choice falls back to TensorFlow float32 until they can."""
