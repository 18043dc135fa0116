"""Grad-CAM heat maps: where a fitted fine-tuned model looked (:func:`explain`).

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", ICCV 2017): the gradient of a
class's score with respect to a convolutional feature map, averaged over
the map's positions, weighs each channel; the ReLU of the weighted sum of the
channels is the map, brought back to the image by bilinear interpolation.

The score is read before the softmax: the class's logit, centred (minus the
mean logit of the classes). A softmax gives the same probabilities when one
number is added to every logit, so a logit alone is only defined up to that
number, and the parameterisation decides the map: the linear probe of a
two-class head (:func:`skptm._heads.fit_linear_probe`) keeps the first
logit at zero, and its raw Grad-CAM map would always be empty. Centred, the
score of either class is its evidence against the others (half the log-odds,
for two classes). A regressor's score is its output itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
from PIL import Image
from sklearn.utils.validation import check_is_fitted

from ._batches import Failure, stream_batches
from ._classifier import FineTunedClassifier
from ._features import make_source, padded_rows
from ._finetuned_base import BaseFineTuned
from ._images import oriented_size

#: Layers listed when ``layer`` names none of the backbone's.
_N_LISTED_LAYERS = 6


@dataclass(frozen=True)
class Explanation:
    """What :func:`grad_cam` computed, image by image.

    Attributes
    ----------
    maps : list of ndarray of shape (height, width), float32
        The heat maps, each at its image's own size, in [0, 1].
    targets : list
        What each map explains: a class label (classifier) or an output
        index (regressor).
    scores : ndarray of shape (n_images,), float64
        The probability of that class (classifier) or the predicted value in
        the targets' units (regressor), from the same forward pass.
    items : sequence
        The input items, in order (paths, arrays, PIL images), undecoded.
    """

    maps: list
    targets: list
    scores: np.ndarray
    items: object


def explain(estimator, images, *, target=None, layer=None):
    """Grad-CAM heat maps of where a fitted model looked for a class.

    For each image, the gradient of the class's score with respect to the
    backbone's last convolutional feature map (its output before pooling)
    weighs the map's channels, and the ReLU of their weighted sum is brought
    to the image's own size by bilinear interpolation, then divided by its
    maximum (Grad-CAM, Selvaraju et al., ICCV 2017). The score is the class's
    logit before the softmax minus the mean logit of the classes (a softmax
    ignores a shift of every logit, so a raw logit depends on how the head
    is parameterised: the linear probe of two classes keeps one at zero);
    for a regressor, its output. The model sees each image once, as
    given: test-time views (``tta``) are not averaged here, so the
    probability reported beside a map is that of the image alone, which
    can differ slightly from ``predict_proba`` with ``tta`` set.

    A map shows where the evidence the model used lies, not why, and only as
    finely as the feature map: the last stage of most networks is 32 times
    coarser than their input (7 by 7 cells at 224 px). Computed by
    TensorFlow in inference mode, whatever ``engine`` predicts with: the same
    images give the same maps on every call.

    For a vision transformer (DINOv2, DINOv3, ViT), the feature map is its
    patch tokens laid out on the patch grid (the class token and registers
    left out): one cell per patch, 16 by 16 at 224 px for DINOv2's patch 14.
    A model fitted with ``pooling="cls"`` has features that no patch token
    of the last block's output feeds: pass ``layer=`` for an earlier block
    (``"stage11"`` of a 12-block DINO or ViT) to see where its class token looked.
    For CLIP and SigLIP, whose features are an image embedding, the map is
    on the patch tokens of the deepest block that feeds it: SigLIP's last,
    CLIP's last but one (its embedding is the last block's class token).

    Parameters
    ----------
    estimator : FineTunedClassifier or FineTunedRegressor
        Fitted, on an image backbone with a spatial output: every network
        of :func:`~skptm.list_backbones` (the convolutional networks and
        the KerasHub transformers), or a custom convolutional one.
    images : images
        Any form the estimators take: paths, PIL images, arrays, a pandas
        column. Read as ``predict`` reads them (orientation, colour modes,
        ``resize`` and ``input_size``).
    target : label, int, sequence or None, default=None
        What to explain. ``None``: each image's predicted class (a
        regressor's only output). A label of ``classes_`` (or, where the
        labels are not numbers, an int: a column of ``predict_proba``); for
        a regressor, an output index. A sequence gives one per image.
    layer : str or None, default=None
        The backbone layer whose output is the feature map, by name: a layer
        of the backbone's own Keras model (for MobileNetV2, e.g.
        ``"block_13_expand_relu"``), or a block of a KerasHub transformer,
        ``"stage1"`` to its depth; a name it lacks is answered
        with those that have a spatial output. ``None`` is the backbone's
        output.
        Earlier layers give finer, noisier maps.

    Returns
    -------
    heat_maps : list of ndarray of shape (height, width), float32
        One per image, at the image's own size (before skptm resized it),
        with values in [0, 1]: 1 where the evidence for ``target`` is
        strongest, 0 where there is none. An image without any (its score
        cannot be raised by any position) gets a map of zeros.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    ValueError
        If the backbone has no spatial output (a tabular backbone, an image
        embedding), the features are a class token at the top, ``layer``
        names no layer, or ``target`` no
        class; :class:`~skptm.ImageReadError` names an unreadable image's
        index and path, whatever ``on_error`` says (a map needs an image).

    See Also
    --------
    skptm.plot.explain : The images with their maps overlaid, in a grid.

    Examples
    --------
    >>> import numpy as np
    >>> import skptm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (8, 48, 48, 3), dtype=np.uint8)
    >>> clf = skptm.FineTunedClassifier("mobilenet_v2", weights=None, input_size=48,
    ...                                 unfreeze=0, random_state=0).fit(X, [0, 1] * 4)
    >>> maps = skptm.explain(clf, [X[0], X[1, :40, :30]])
    >>> [m.shape for m in maps]
    [(48, 48), (40, 30)]
    >>> bool(all(0 <= m.min() and m.max() <= 1 for m in maps))
    True

    On photos and ImageNet weights (downloaded once):

    >>> from skptm.datasets import load_sample_photos
    >>> photos = load_sample_photos()  # doctest: +SKIP
    >>> clf = skptm.FineTunedClassifier("mobilenet_v2").fit(photos.paths, photos.target)  # doctest: +SKIP
    >>> maps = skptm.explain(clf, photos.paths[:4])  # doctest: +SKIP
    """
    return grad_cam(estimator, images, target=target, layer=layer).maps


def grad_cam(estimator, images, *, target=None, layer=None) -> Explanation:
    """:func:`explain`, with what each map explains and its score."""
    _check_estimator(estimator)
    network, params = estimator._network, estimator.get_params()
    if not network.takes_images:
        raise ValueError(
            f"Grad-CAM needs an image backbone; {network.blueprint.name!r} takes rows of a table, "
            "which have no positions to map. explain supports image backbones with a spatial output "
            "(every network of skptm.list_backbones(), or a custom convolutional one)."
        )
    cam = _grad_cam_of(estimator._trained, network.blueprint, layer, isinstance(estimator, FineTunedClassifier))
    source = _source(estimator, images)
    columns = _columns(estimator, target, len(source))
    maps, chosen, outputs = [], [], []
    for batch in stream_batches(source, params["batch_size"], params["n_jobs"]):
        batch.raise_first_failure()
        rows = np.asarray(batch.indices)
        coarse, picked, scores = cam(batch.data, None if columns is None else columns[rows], params["batch_size"])
        for index, feature_map in zip(rows, coarse, strict=True):
            size = _own_size(source, int(index))
            maps.append(to_image(feature_map, size, source.reader))
        chosen.extend(picked)
        outputs.extend(scores)
    return Explanation(maps, _labels(estimator, chosen), _in_units(estimator, chosen, outputs), source.items)


def unreadable_items(estimator, images) -> list:
    """The :class:`~skptm._batches.Failure` of every item of ``images`` that
    ``estimator`` cannot read (decoded as :func:`grad_cam` decodes them, no
    network run): what to leave out to explain the rest."""
    params = estimator.get_params()
    source = _source(estimator, images)
    return [
        failure
        for batch in stream_batches(source, params["batch_size"], params["n_jobs"])
        for failure in batch.failures
    ]


def _source(estimator, images):
    """``images`` read as the fitted ``estimator``'s ``predict`` reads them."""
    params = estimator.get_params()
    return make_source(estimator._network, images, resize=params["resize"], interpolation=params["interpolation"])


def _check_estimator(estimator):
    if not isinstance(estimator, BaseFineTuned):
        raise TypeError(
            "explain takes a fitted FineTunedClassifier or FineTunedRegressor: the maps follow the "
            f"gradient of its head's scores through its backbone. Received: {type(estimator).__name__}"
        )
    check_is_fitted(estimator, "model_")


def _own_size(source, index):
    try:
        return oriented_size(source.items[index])
    except Exception as exc:  # read once already: only a file changed since
        failure = Failure(index, source.path(index), exc)
        raise failure.error() from exc


# -- what to explain --------------------------------------------------------------------


def _columns(estimator, target, n):
    """The output column each image's map explains; ``None``: each predicted class."""
    if target is None:
        if isinstance(estimator, FineTunedClassifier):
            return None
        if estimator._n_outputs == 1:
            return np.zeros(n, dtype=np.int64)
        raise ValueError(
            f"This regressor has {estimator._n_outputs} outputs; pass target=INDEX (0 to "
            f"{estimator._n_outputs - 1}), or one index per image."
        )
    if isinstance(target, (str, bytes)) or np.ndim(target) == 0:
        return np.full(n, _column(estimator, target), dtype=np.int64)
    targets = list(target)
    if len(targets) != n:
        raise ValueError(f"target has {len(targets)} entries for {n} images: pass one target, or one per image.")
    return np.array([_column(estimator, value) for value in targets], dtype=np.int64)


def _column(estimator, value):
    if not isinstance(estimator, FineTunedClassifier):
        if _is_index(value, estimator._n_outputs):
            return int(value)
        raise ValueError(
            f"A regressor's target is an output index, 0 to {estimator._n_outputs - 1}. Received: target={value!r}"
        )
    classes = estimator.classes_
    matches = np.flatnonzero(np.atleast_1d(classes == value))
    if len(matches):
        return int(matches[0])
    numeric_labels = classes.dtype.kind in "biuf"
    if not numeric_labels and _is_index(value, len(classes)):
        return int(value)
    listed = ", ".join(map(repr, classes.tolist()[:10])) + (", ..." if len(classes) > 10 else "")
    raise ValueError(
        f"target {value!r} is not a class of this classifier; classes_: [{listed}]"
        + ("" if numeric_labels else f", or a column index 0 to {len(classes) - 1}")
        + "."
    )


def _is_index(value, n):
    return isinstance(value, Integral) and not isinstance(value, bool) and 0 <= value < n


def _labels(estimator, columns):
    if isinstance(estimator, FineTunedClassifier):
        return estimator.classes_[np.asarray(columns, dtype=np.int64)].tolist()
    return [int(column) for column in columns]


def _in_units(estimator, columns, scores):
    """Probabilities stay; a regressor's standardised outputs go back to the targets' units."""
    scores = np.asarray(scores, dtype=np.float64)
    if isinstance(estimator, FineTunedClassifier):
        return scores
    scale, offset = (np.asarray(part, dtype=np.float64) for part in estimator._target_affine)
    columns = np.asarray(columns, dtype=np.int64)
    return scores * scale[columns] + offset[columns]


# -- the gradients ----------------------------------------------------------------------


def _grad_cam_of(trained, blueprint, layer, classification):
    """The :class:`_GradCam` of ``trained`` at ``layer``, traced once per fitted model."""
    key = ("grad_cam", layer, classification)
    if key not in trained.traced:
        trained.traced[key] = _GradCam(trained, blueprint, layer, classification)
    return trained.traced[key]


class _GradCam:
    """The fitted network from raw RGB to a feature map and the head's scores,
    run under a gradient tape.

    Both kinds of fitted model are explained through their private backbone
    copy (``trained.base``): a model whose backbone was fine-tuned holds the
    trained weights there; in one whose backbone was not trained it holds the
    shared network's weights, the ones its predictions run through.
    """

    def __init__(self, trained, blueprint, layer, classification):
        import keras
        import tensorflow as tf

        from .networks import ImagePreprocessing, TokenPooling, staged_top, tower_blocks

        base = trained.base
        self.base, self.head, self.pooling = base, trained.head, blueprint.pooling
        self.classification = classification
        self.preprocessing = None
        if blueprint.preprocessing != "none":
            self.preprocessing = ImagePreprocessing(blueprint.preprocessing, dtype="float32")
        self.prefix_tokens = blueprint.prefix_tokens
        self.tokens_known = self.prefix_tokens > 0  # DINOv2, DINOv3, ViT: class token first
        top_shape = tuple(base.outputs[0].shape)
        # A vision transformer's tokens: pooled as its features are, mapped on its patch grid.
        self.token_pooling = None
        if _is_tokens(top_shape, self.tokens_known):
            self.token_pooling = TokenPooling(blueprint.pooling, self.prefix_tokens, dtype="float32")
        tower = tower_blocks(base)
        if tower is not None:  # CLIP, SigLIP: an embedding, mapped on a block's patch tokens
            layer = _tower_layer(tower, layer, base)
            self.prefix_tokens, self.tokens_known = tower.prefix_tokens, True
        self.extractor = None
        if layer is None:
            map_shape, what = top_shape, f"backbone {base.name!r}"
            if self.token_pooling is not None and blueprint.pooling == "cls":
                raise ValueError(_CLASS_TOKEN_AT_THE_TOP.format(base=base.name, stages=_stage_hint(base)))
        else:
            output = _layer_output(base, layer)
            map_shape, what = tuple(output.shape), f"layer {layer!r} of {base.name!r}"
            self.extractor = keras.Model(base.inputs, [output, staged_top(base)], name="skptm_grad_cam")
        _check_spatial(map_shape, what, self.tokens_known)
        self.grid = None
        if tower is not None:
            self.grid = tower.grid(blueprint.input_size)
        elif len(map_shape) == 3:
            self.grid = _patch_grid(map_shape[1] - self.prefix_tokens, blueprint.input_size, what)
        height, width = blueprint.input_size
        self._step = tf.function(
            self._gradients,
            autograph=False,  # no Python control flow on tensors to convert
            input_signature=[
                tf.TensorSpec((None, height, width, 3), tf.float32),
                tf.TensorSpec((None,), tf.int64),
            ],
        )

    def __call__(self, data, columns, batch_size):
        """Coarse maps ``(n, fh, fw)``, the columns explained (``columns``, or
        where ``None`` each predicted class) and their scores (a probability,
        or a standardised output) for one batch, padded as
        :func:`~skptm._features.predict_padded` pads."""
        n = len(data)
        rows = padded_rows(n, batch_size)
        padded = np.zeros((rows, *data.shape[1:]), dtype=np.float32)
        padded[:n] = data
        wanted = np.full(rows, -1, dtype=np.int64)  # -1: the predicted class
        if columns is not None:
            wanted[:n] = columns
        coarse, chosen, outputs = (part.numpy()[:n] for part in self._step(padded, wanted))
        scores = np.take_along_axis(self._readable(outputs), chosen[:, None], axis=1)[:, 0]
        return coarse, chosen.tolist(), scores

    def _gradients(self, x, wanted):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)  # the backbone may be frozen: record every operation from the input
            feature_map, outputs = self._forward(x)
            chosen = tf.where(wanted < 0, tf.argmax(outputs, axis=1), wanted)
            score = self._score(outputs, chosen)
        # Rows are independent (inference mode): the gradient of the sum is each row's own.
        gradients = tf.cast(tape.gradient(score, feature_map), tf.float32)
        feature_map = tf.cast(feature_map, tf.float32)
        if self.grid is not None:  # tokens: the patches' on their grid, the class token and registers left out
            gradients, feature_map = self._on_grid(gradients), self._on_grid(feature_map)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        coarse = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1))
        return coarse, chosen, outputs

    def _on_grid(self, tokens):
        import tensorflow as tf

        return tf.reshape(tokens[:, self.prefix_tokens :], (-1, *self.grid, tokens.shape[-1]))

    def _forward(self, x):
        import keras

        from ._heads import pre_activation

        if self.preprocessing is not None:
            x = self.preprocessing(x)
        if self.extractor is None:
            feature_map = top = self.base(x, training=False)
        else:
            feature_map, top = self.extractor(x, training=False)
        top = keras.ops.cast(top, "float32")
        if len(top.shape) == 2:  # an image embedding (CLIP, SigLIP): the features themselves
            pooled = top
        elif self.token_pooling is not None:
            pooled = self.token_pooling(top)
        elif self.pooling == "avg":
            pooled = keras.ops.mean(top, axis=(1, 2))
        else:
            pooled = keras.ops.max(top, axis=(1, 2))
        return feature_map, pre_activation(self.head, pooled)

    def _score(self, outputs, columns):
        import tensorflow as tf

        if self.classification:  # the centred logit (see the module notes)
            outputs = outputs - tf.reduce_mean(outputs, axis=1, keepdims=True)
        return tf.reduce_sum(tf.gather(outputs, columns, axis=1, batch_dims=1))

    def _readable(self, outputs):
        """Probabilities from logits; a regressor's outputs as they are."""
        if not self.classification:
            return outputs.astype(np.float64)
        shifted = np.exp(outputs.astype(np.float64) - outputs.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


def _layer_output(base, name):
    """The output of ``base``'s layer ``name``, or of block ``name`` (``"stage3"``)
    of a KerasHub transformer (:func:`~skptm.networks.stage_outputs`)."""
    import keras

    from .networks import stage_outputs

    stages = stage_outputs(base)
    if name in stages:
        return stages[name]
    names = [layer.name for layer in base.layers]
    if name in names:
        found = base.get_layer(name)
        if isinstance(found, keras.Model):  # its .output is its own graph's, not the backbone's
            raise ValueError(
                f"Layer {name!r} of backbone {base.name!r} is a model nested in it; name a layer of the "
                f"backbone's own graph, or pass layer=None for the backbone's output. Received: layer={name!r}"
            )
        return found.output
    import difflib

    spatial = [*stages][::-1] + [layer.name for layer in base.layers if _is_spatial(layer)][::-1]
    close = difflib.get_close_matches(name, [*stages, *names], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    listed = ", ".join(map(repr, spatial[:_N_LISTED_LAYERS]))
    more = len(spatial) - _N_LISTED_LAYERS
    raise ValueError(
        f"Backbone {base.name!r} has no layer named {name!r}.{hint} Layers with a spatial output, "
        f"from the top: {listed or 'none'}{f', and {more} more' if more > 0 else ''}. Received: layer={name!r}"
    )


def _is_spatial(layer):
    import keras

    if isinstance(layer, keras.Model):
        return False
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # not called, or called more than once
        return False
    return len(shape) == 4


def _is_tokens(shape, tokens_known):
    """Whether ``shape`` is a vision transformer's tokens, ``(batch, tokens, width)``,
    of a backbone whose tokens before the patches (class token, registers) skptm knows."""
    return len(shape) == 3 and tokens_known


def _check_spatial(shape, what, tokens_known=False):
    if len(shape) != 4 and not _is_tokens(shape, tokens_known):
        raise ValueError(
            f"Grad-CAM needs a feature map with positions, (batch, height, width, channels), or a vision "
            f"transformer's patch tokens; the output of {what} has shape {shape}. explain supports "
            "convolutional backbones (every network of skptm.list_backbones(), or a custom convolutional "
            "one) and the KerasHub transformers of the registry, not tokens of a custom backbone nor "
            "vector outputs; pass layer=NAME for a layer with a spatial output, where it has one."
        )


def _tower_layer(tower, layer, base):
    """The block of a CLIP or SigLIP image tower that Grad-CAM maps: ``layer``,
    or by default the deepest whose patch tokens reach the embedding."""
    if layer is None:
        return tower.deepest
    if layer in tower.names and tower.names.index(layer) > tower.names.index(tower.deepest):
        raise ValueError(
            f"The image embedding of {base.name!r} is its last block's class token, which no patch token "
            f"of that block's output feeds: Grad-CAM at layer {layer!r} would be empty. Pass "
            f"layer={tower.deepest!r} (the default) or an earlier block. Received: layer={layer!r}"
        )
    return layer


def _patch_grid(n_patches, input_size, what):
    """The ``(rows, columns)`` of ``n_patches`` square patches over ``input_size``."""
    height, width = input_size
    side = (height * width / n_patches) ** 0.5
    grid = (round(height / side), round(width / side))
    if grid[0] * grid[1] != n_patches:
        raise ValueError(
            f"The {n_patches} patch tokens of {what} tile no grid of square patches over the "
            f"{height}x{width} input; Grad-CAM cannot place them on the image."
        )
    return grid


_CLASS_TOKEN_AT_THE_TOP = (
    "With pooling='cls', the features are the class token of the last block's output, which no patch "
    "token of that same output feeds: Grad-CAM there would be empty. Fit with pooling='avg' or 'cls+avg', "
    "or pass layer= for an earlier block{stages}, through which the class token still looks at the "
    "patches. Backbone: {base!r}"
)


def _stage_hint(base):
    from .networks import stage_outputs

    stages = [*stage_outputs(base)]
    return f" ({stages[-2]!r}, ...)" if len(stages) >= 2 else ""


# -- back to the image ------------------------------------------------------------------


def to_image(coarse, size, reader):
    """A coarse map over the network's input as a map over the image, at its
    own ``size`` ``(height, width)``, normalised to [0, 1].

    The map is interpolated (bilinear) from the part of the input the image
    fills to the part of the image the network saw (:meth:`ImageReader.placement
    <skptm._images.ImageReader.placement>`): all of it for ``"stretch"`` and
    ``"pad"``; for ``"center_crop"``, its centre, the cropped borders being 0.
    """
    height, width = size
    input_height, input_width = reader.size
    map_height, map_width = coarse.shape
    (left, top, right, bottom), (t_left, t_top, t_right, t_bottom) = reader.placement(size)
    box = (
        t_left * map_width / input_width,
        t_top * map_height / input_height,
        t_right * map_width / input_width,
        t_bottom * map_height / input_height,
    )
    x0, y0 = min(round(left), width - 1), min(round(top), height - 1)
    x1, y1 = max(x0 + 1, min(round(right), width)), max(y0 + 1, min(round(bottom), height))
    part = Image.fromarray(np.ascontiguousarray(coarse, dtype=np.float32), "F")
    part = part.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR, box=box)
    heat = np.zeros((height, width), dtype=np.float32)
    heat[y0:y1, x0:x1] = np.asarray(part)
    peak = float(heat.max())
    if peak > 0 and np.isfinite(peak):
        heat /= peak
    else:
        heat[:] = 0.0
    return np.clip(heat, 0.0, 1.0, out=heat)
