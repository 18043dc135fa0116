"""ZeroShotClassifier: classes by name, through an image-text model's two towers."""

from __future__ import annotations

import os
import string
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d

from ._finetuned_base import labels_of
from ._transformer import PretrainedFeatureTransformer
from ._validation import is_missing_label, listing, unlabelled
from .exceptions import ImageReadError

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
    classes : list or None, default=None
        The classes, named as a caption would (``["cat", "dog"]``): at least
        two, different and not blank. ``None`` takes the labels of ``y`` in
        ``fit`` (sorted, as ``numpy.unique`` sorts them). The labels keep
        their type in ``classes_`` and ``predict``; their ``str`` is what
        goes into the prompts.
    templates : list of str or None, default=None
        Prompts with one ``{}`` for the class name (``{{`` and ``}}`` for
        literal braces); their embeddings are averaged. ``None``: the seven
        prompts of CLIP's ImageNet ensemble.
    weights : "imagenet" or path, default="imagenet"
        The preset's pretrained weights (through KerasHub's cache), or a
        local KerasHub preset directory holding both towers and the
        tokenizer. (Random weights cannot name anything: there is no
        ``None``.)
    image_weight : float in [0, 1], default=0.0
        With labelled images in ``fit``: the share of each prototype that
        comes from the mean image embedding of its class (0: text only,
        and the images are not read).
    batch_size : int, default=32
        Images per batch for the image tower.
    engine, precision : str, default="auto"
        As in :class:`PretrainedFeatureTransformer`, for the image tower.
    on_error : {"raise", "nan"}, default="raise"
        An unreadable image: ``"raise"`` an :class:`~skptm.ImageReadError`
        naming its index and path; ``"nan"`` gives it NaN scores and
        probabilities, and the label ``None`` in ``predict`` (NaN for float
        class labels). An unreadable image in ``fit`` always raises.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The classes, as ``classes`` (or ``y``) gives them.
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
        "on_error": [StrOptions({"raise", "nan"})],
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
        y : array-like of shape (n_images,), optional
            The classes of ``X``; they name the classes when ``classes`` is
            ``None`` (their ``str`` goes into the prompts).

        Returns
        -------
        self : ZeroShotClassifier
        """
        from .networks.hub import text_tower

        if X is not None and y is not None and not isinstance(X, (str, os.PathLike)):
            check_consistent_length(X, y)
        if X is not None and y is None and self.image_weight > 0:
            raise ValueError(
                f"image_weight={self.image_weight} blends each class's mean image embedding into its "
                "prototype: pass the images' labels as y, or image_weight=0 for prototypes from the "
                "class names alone."
            )
        classes = self._classes(y)
        templates = _checked_templates(self.templates)
        tower = text_tower(self.backbone, self.weights)
        prompts = [template.format(str(name)) for name in classes for template in templates]
        embedded = _unit(tower.embed(prompts)).reshape(len(classes), len(templates), -1)
        prototypes = _unit(embedded.mean(axis=1))
        if X is not None and y is not None and self.image_weight > 0:
            try:
                images = _unit(self._image_tower().set_params(on_error="raise").fit_transform(X))
            except ImageReadError as exc:
                raise exc.as_needed_by("fit") from exc.__cause__
            labels = column_or_1d(y)
            for i, name in enumerate(classes):
                chosen = labels == name
                if chosen.any():
                    mean = _unit(images[chosen].mean(axis=0, keepdims=True))[0]
                    prototypes[i] = (1 - self.image_weight) * prototypes[i] + self.image_weight * mean
            prototypes = _unit(prototypes)
        self.classes_ = classes
        self.prototypes_ = prototypes.astype(np.float32)
        self.logit_scale_, self.logit_bias_ = tower.logit_scale, tower.logit_bias
        self.calibration_ = tower.calibration
        return self

    def _classes(self, y):
        """The classes, from ``classes`` or the labels of ``y``, checked."""
        labels = None if y is None else _checked_labels(y)
        if self.classes is None:
            if labels is None:
                raise ValueError("Name the classes: pass classes=['cat', 'dog', ...], or labelled images as y.")
            classes = np.unique(labels)
            if len(classes) < 2:
                raise ValueError(
                    f"y has one class, {classes.tolist()[0]!r}; zero-shot classification needs at least two. "
                    "Name them all: classes=['cat', 'dog', ...] (fit's labels may then cover only some)."
                )
            return classes
        classes = np.asarray(list(self.classes))
        blank = [i for i, name in enumerate(self.classes) if is_missing_label(name, blank_strings=True)]
        if blank:
            raise ValueError(
                f"classes has no name at index {listing(blank)}: each class needs words for the "
                f"prompts. Received: classes={self.classes!r}"
            )
        if len(classes) < 2 or len(set(classes.tolist())) != len(classes):
            raise ValueError(f"classes must name at least two different classes. Received: classes={self.classes!r}")
        if labels is not None:
            known = set(classes.tolist())
            unknown = sorted({label for label in labels.tolist() if label not in known}, key=str)
            if unknown:
                raise ValueError(
                    f"y has labels that are not in classes: {', '.join(map(repr, unknown))}. Add them "
                    f"to classes, or drop those images. Received: classes={self.classes!r}"
                )
        return classes

    def _scores(self, X):
        """``logit_scale * cosine + logit_bias`` of each image with each prototype."""
        check_is_fitted(self)
        images = _unit(self._image_tower().fit_transform(X))
        return self.logit_scale_ * images @ self.prototypes_.T + self.logit_bias_

    def decision_function(self, X):
        """The images' scores, ``logit_scale * cosine + logit_bias`` per class.

        Parameters
        ----------
        X : images

        Returns
        -------
        scores : ndarray of shape (n_images, n_classes), or (n_images,) for two classes
            With two classes, as scikit-learn's binary classifiers: the score
            of ``classes_[1]`` minus that of ``classes_[0]`` (positive:
            ``classes_[1]``).
        """
        scores = self._scores(X)
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict_proba(self, X):
        """Class probabilities: softmax over classes (CLIP) or sigmoid per class (SigLIP).

        Parameters
        ----------
        X : images

        Returns
        -------
        proba : ndarray of shape (n_images, n_classes)
            In the order of ``classes_``; a row of NaN for an unreadable
            image with ``on_error="nan"``.
        """
        scores = self._scores(X)
        if self.calibration_ == "sigmoid":
            return 1 / (1 + np.exp(-scores))
        scores = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The class of highest score for each image.

        Parameters
        ----------
        X : images

        Returns
        -------
        labels : ndarray of shape (n_images,)
            From ``classes_``; with ``on_error="nan"``, an unreadable
            image's label is ``None`` (NaN for float class labels), in an
            object array.
        """
        scores = self._scores(X)  # checks fitted first, before classes_ is read
        return labels_of(self.classes_, scores)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = False
        tags.non_deterministic = False
        return tags


def _checked_templates(templates):
    """The prompt templates (CLIP's ensemble for ``None``), each with exactly
    one ``{}`` replacement field, else a ``ValueError`` naming the first bad one."""
    templates = list(DEFAULT_TEMPLATES if templates is None else templates)
    if not templates:
        raise ValueError("templates is empty: pass prompts with one '{}' for the class name, or None for the default.")
    for index, template in enumerate(templates):
        problem = _template_problem(template)
        if problem:
            raise ValueError(
                f"Every template must be a string with one '{{}}' for the class name (and '{{{{' or "
                f"'}}}}' for a literal brace); template {index} {problem}. Received: templates[{index}]={template!r}"
            )
    return templates


def _template_problem(template):
    """What is wrong with ``template`` in words, or ``None``."""
    if not isinstance(template, str):
        return f"is not a string but a {type(template).__name__}"
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"is malformed ({exc})"
    if len(fields) != 1:
        return f"has {len(fields)} replacement fields"
    if fields[0]:
        return f"names its field {{{fields[0]}}}: write {{}}"
    return None


def _checked_labels(y):
    """``y`` as a 1-D array of class labels, none of them missing or blank."""
    labels = column_or_1d(y)
    missing = unlabelled(labels, blank_strings=True)
    if missing:
        raise ValueError(
            f"y has no label at index {listing(missing)}: every image in fit needs the name of its "
            "class. Label those images, or drop them."
        )
    check_classification_targets(labels)
    return labels


def _unit(vectors):
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
