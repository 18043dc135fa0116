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
    training : bool
        Raised by ``fit``, which cannot learn from an unreadable image (so
        the message does not offer ``on_error="nan"``).
    """

    def __init__(self, index, path, cause, training=False):
        self.index = index
        self.path = path
        self.cause = cause
        self.training = training
        where = f"index {index}" + (f" ({path!r})" if path else "")
        way_out = (
            "Training cannot use an unreadable image: fix or remove this item (and its label)."
            if training
            else "Fix or remove this item, or pass on_error='nan' to get a row of NaN for it instead."
        )
        super().__init__(f"Could not read the image at {where}: {cause}. {way_out}")

    def for_training(self) -> ImageReadError:
        """The same error, as ``fit`` raises it."""
        return type(self)(self.index, self.path, self.cause, training=True)

    def __reduce__(self):  # survives joblib's worker processes
        return (type(self), (self.index, self.path, self.cause, self.training))


class ImageReadWarning(UserWarning):
    """Some items could not be read and were given rows of NaN."""


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
