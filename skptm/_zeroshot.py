"""ZeroShotClassifier: classes by name, through an image-text model's two towers."""

from __future__ import annotations

import os
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._transformer import PretrainedFeatureTransformer

#: The seven prompts CLIP's authors found best as an ensemble on ImageNet
#: (CLIP's "Prompt Engineering for ImageNet" notebook).
DEFAULT_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


class ZeroShotClassifier(ClassifierMixin, BaseEstimator):
    """Classify images into classes given by name, with an image-text model.

    Each class becomes a *prototype*: the mean of the text tower's normalised
    embeddings of the class name in every prompt template (the prompt
    ensemble of CLIP's authors). An image's score for a class is the cosine
    of its image embedding with the prototype, times the model's learnt
    temperature (plus SigLIP's learnt bias). ``fit`` needs no image: with
    ``classes`` given, ``fit(None)`` is enough. With labelled images, each
    prototype blends in the mean image embedding of its class
    (``image_weight``), a few-shot refinement of the zero-shot classifier.

    Parameters
    ----------
    backbone : str, default="clip_vit_base_patch32"
        An image-text backbone of the registry: CLIP (``"clip_vit_base_patch32"``,
        ``"clip_vit_base_patch16"``) or SigLIP (``"siglip_base_patch16_224"``,
        ``"siglip2_base_patch16_224"``, ...). Needs ``pip install 'skptm[hub]'``.
    classes : list of str or None, default=None
        The class names, as words a caption would use (``["cat", "dog"]``).
        ``None`` takes the sorted labels of ``y`` in ``fit`` as names.
    templates : list of str or None, default=None
        Prompts with one ``{}`` for the class name; their embeddings are
        averaged. ``None``: the seven prompts of CLIP's ImageNet ensemble.
    weights : "imagenet" or path, default="imagenet"
        The preset's pretrained weights (through KerasHub's cache), or a
        local KerasHub preset directory holding both towers and the
        tokenizer. (Random weights cannot name anything: there is no
        ``None``.)
    image_weight : float in [0, 1], default=0.0
        With labelled images in ``fit``: the share of each prototype that
        comes from the mean image embedding of its class (0: text only).
    batch_size : int, default=32
        Images per batch for the image tower.
    engine, precision : str, default="auto"
        As in :class:`PretrainedFeatureTransformer`, for the image tower.
    on_error : {"raise", "warn"}, default="raise"
        As in :class:`PretrainedFeatureTransformer`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class names.
    prototypes_ : ndarray of shape (n_classes, embedding size)
        Unit-norm class prototypes in the image embedding space.
    logit_scale_ : float
        The model's learnt temperature (``exp`` of its stored log-scale).
    logit_bias_ : float
        SigLIP's learnt bias (``0.0`` for CLIP).
    calibration_ : {"softmax", "sigmoid"}
        How ``predict_proba`` turns scores into probabilities, as the
        model's authors do: a softmax over the classes for CLIP, an
        independent sigmoid per class for SigLIP (whose rows need not sum
        to one).

    Examples
    --------
    >>> from skptm import ZeroShotClassifier
    >>> clf = ZeroShotClassifier("clip_vit_base_patch32", classes=["cat", "dog"])
    >>> clf.fit(None).predict(["photos/tabby.jpg"])  # doctest: +SKIP
    array(['cat'], dtype='<U3')
    """

    _parameter_constraints: dict = {
        "backbone": [str],
        "classes": [list, tuple, None],
        "templates": [list, tuple, None],
        "weights": [StrOptions({"imagenet"}), str, os.PathLike],
        "image_weight": [Interval(Real, 0, 1, closed="both")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "engine": [str],
        "precision": [str],
        "on_error": [StrOptions({"raise", "warn"})],
    }

    def __init__(
        self,
        backbone="clip_vit_base_patch32",
        *,
        classes=None,
        templates=None,
        weights="imagenet",
        image_weight=0.0,
        batch_size=32,
        engine="auto",
        precision="auto",
        on_error="raise",
    ):
        self.backbone = backbone
        self.classes = classes
        self.templates = templates
        self.weights = weights
        self.image_weight = image_weight
        self.batch_size = batch_size
        self.engine = engine
        self.precision = precision
        self.on_error = on_error

    def _image_tower(self):
        return PretrainedFeatureTransformer(
            self.backbone,
            weights=self.weights,
            batch_size=self.batch_size,
            engine=self.engine,
            precision=self.precision,
            on_error=self.on_error,
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Compute the class prototypes from their names (and labelled images).

        Parameters
        ----------
        X : images or None
            ``None`` (with ``classes``): zero-shot, no image needed. Images
            (as :class:`PretrainedFeatureTransformer` takes them), with
            ``y``: their mean embedding per class is blended into the
            prototypes by ``image_weight``.
        y : array-like of str, optional
            Class names of ``X``; they name the classes when ``classes`` is
            ``None``.

        Returns
        -------
        self : ZeroShotClassifier
        """
        from .networks.hub import text_tower

        names = self._class_names(y)
        templates = list(self.templates) if self.templates is not None else list(DEFAULT_TEMPLATES)
        bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
        if bad or not templates:
            raise ValueError(f"Every template must be a string with one '{{}}' for the class name. Received: {bad}")
        tower = text_tower(self.backbone, self.weights)
        prompts = [template.format(name) for name in names for template in templates]
        embedded = _unit(tower.embed(prompts)).reshape(len(names), len(templates), -1)
        prototypes = _unit(embedded.mean(axis=1))
        if X is not None and y is not None and self.image_weight > 0:
            images = _unit(self._image_tower().fit_transform(X))
            labels = column_or_1d(y).astype(str)
            for i, name in enumerate(names):
                chosen = labels == name
                if chosen.any():
                    mean = _unit(images[chosen].mean(axis=0, keepdims=True))[0]
                    prototypes[i] = (1 - self.image_weight) * prototypes[i] + self.image_weight * mean
            prototypes = _unit(prototypes)
        self.classes_ = np.asarray(names)
        self.prototypes_ = prototypes.astype(np.float32)
        self.logit_scale_, self.logit_bias_ = tower.logit_scale, tower.logit_bias
        self.calibration_ = tower.calibration
        return self

    def _class_names(self, y):
        if self.classes is not None:
            names = [str(name) for name in self.classes]
            if len(names) < 2 or len(set(names)) != len(names):
                raise ValueError(
                    f"classes must name at least two different classes. Received: classes={self.classes!r}"
                )
            if y is not None:
                unknown = sorted(set(column_or_1d(y).astype(str)) - set(names))
                if unknown:
                    raise ValueError(f"y has labels that are not in classes: {unknown}. Received: classes={names}")
            return names
        if y is None:
            raise ValueError("Name the classes: pass classes=['cat', 'dog', ...], or labelled images as y.")
        check_classification_targets(y)
        return sorted(set(column_or_1d(y).astype(str)))

    def decision_function(self, X):
        """Scores ``logit_scale * cosine + logit_bias``, shape ``(n_images, n_classes)``."""
        check_is_fitted(self)
        images = _unit(self._image_tower().fit_transform(X))
        return self.logit_scale_ * images @ self.prototypes_.T + self.logit_bias_

    def predict_proba(self, X):
        """Class probabilities: softmax over classes (CLIP) or sigmoid per class (SigLIP)."""
        scores = self.decision_function(X)
        if self.calibration_ == "sigmoid":
            return 1 / (1 + np.exp(-scores))
        scores = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The class name of highest score for each image."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = False
        tags.non_deterministic = False
        return tags


def _unit(vectors):
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
