"""What a network is made of (:class:`Blueprint`) and what a built one offers
(:class:`FeatureNetwork`): named fields, one object each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .._backbones import DEFAULT_RESIZING
from .layers import quiet_retracing_warnings


@dataclass(frozen=True)
class Blueprint:
    """Every choice that shapes a network skptm assembles, by name.

    :func:`skptm.networks.assembly.assemble` builds a feature network from a
    blueprint without a ``head``, and the fine-tuning model from one with a
    head. A feature network keeps its blueprint, so the fine-tuning model is
    ``dataclasses.replace(network.blueprint, head=..., augment=...)``: the
    same input, preprocessing, backbone and pooling by construction.

    Attributes
    ----------
    base : keras.Model
        The built backbone (the cache's shared one).
    name : str
        The backbone's name: prefix of the feature names.
    input_size : tuple of int or None
        ``(height, width)`` of the image input; ``None`` for a table.
    takes_images : bool
        ``True`` for image input; ``False`` for rows of a table.
    n_input_features : int or None
        The table width of a tabular backbone, if fixed.
    preprocessing : {"caffe", "tf", "torch", "none"}
        The preprocessing family inside the network.
    pooling : {"avg", "max"} or None
    layers : tuple of str or None
        Inner layers whose pooled outputs are concatenated, instead of the top.
    precision : str
        What ``base`` computes in.
    head : keras.Model or None
        The fine-tuning head on the pooled features; ``None`` for a feature network.
    augment : None, "light" or keras.layers.Layer
        Augmentation before preprocessing (fine-tuning only).
    seed : int
        Seed of the augmentation layers.
    output_affine : tuple of arrays or None
        ``(scale, offset)`` from standardised outputs back to the targets' units.
    views : tuple of str
        Test-time views whose features a feature network averages
        (:mod:`skptm.networks.views`); ``()`` for none.
    prefix_tokens : int
        For a transformer that outputs tokens, how many come before the
        patches (class token, registers); ``0`` otherwise.
    output_label : str
        Feature-name label of an output that is already a vector
        (``"embedding"`` for CLIP and SigLIP).
    resizing : tuple of str
        ``(resize, interpolation)`` of the backbone's own (its registry
        entry's): what the estimators' ``"auto"`` stands for.
    """

    base: object
    name: str
    input_size: tuple | None = None
    takes_images: bool = True
    n_input_features: int | None = None
    preprocessing: str = "none"
    pooling: str | None = "avg"
    layers: tuple | None = None
    precision: str = "float32"
    head: object = None
    augment: object = None
    seed: int = 0
    output_affine: tuple | None = field(default=None, compare=False)
    views: tuple = ()
    prefix_tokens: int = 0
    output_label: str = "out"
    resizing: tuple = DEFAULT_RESIZING


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
    blueprint : Blueprint or None
        What ``model`` was assembled from.
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
    blueprint: Blueprint | None = field(default=None, compare=False, repr=False)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def resizing(self) -> tuple:
        """``(resize, interpolation)`` of the backbone's own (:attr:`Blueprint.resizing`)."""
        return self.blueprint.resizing if self.blueprint is not None else DEFAULT_RESIZING

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Features of one batch, as a float32 array."""
        if self.runner is not None:
            return self.runner(batch)
        with quiet_retracing_warnings():
            return np.asarray(self.model.predict_on_batch(batch), dtype=np.float32)
