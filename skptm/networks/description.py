"""What a built network is: one object that names every part callers need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .layers import quiet_retracing_warnings


@dataclass(frozen=True)
class FeatureNetwork:
    """A built feature network and what callers need to know about it.

    Attributes
    ----------
    model : keras.Model
        Raw input to features, ``(batch, n_features)``.
    base : keras.Model
        The backbone inside ``model`` (shared, never to be trained in place).
    takes_images : bool
        ``True`` for image input ``(batch, height, width, 3)``; ``False`` for
        rows of a table ``(batch, n_columns)``.
    input_size : tuple of int or None
        ``(height, width)`` of the image input.
    n_input_features : int or None
        The table width a tabular network requires, if fixed.
    feature_names : tuple of str
    preprocessing : str
        The preprocessing family inside ``model``.
    precision : str
        What the network computes in (``"float32"``, ``"bfloat16"`` or
        ``"float16"``); features are float32 in every case.
    engine : str
        What runs :meth:`predict`: ``"tensorflow"`` (``model`` itself), or
        another engine of :mod:`skptm.engines` that set ``runner``.
    runner : callable or None
        ``batch -> features`` for an engine other than TensorFlow (set by
        :func:`skptm.engines.prepare`); ``None`` runs ``model`` itself.
    """

    model: object
    base: object
    takes_images: bool
    input_size: tuple | None
    n_input_features: int | None
    feature_names: tuple
    preprocessing: str = "none"
    precision: str = "float32"
    engine: str = "tensorflow"
    runner: Callable | None = field(default=None, compare=False, repr=False)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Features of one batch, as a float32 array."""
        if self.runner is not None:
            return self.runner(batch)
        with quiet_retracing_warnings():
            return np.asarray(self.model.predict_on_batch(batch), dtype=np.float32)
