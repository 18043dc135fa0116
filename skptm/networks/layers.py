"""The layers skptm puts around a backbone: preprocessing inside the graph, and pooling."""

from __future__ import annotations

import contextlib
import logging

import keras
import numpy as np

from .._backbones import FAMILY_MEAN_STD

_IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="skptm")
class ImagePreprocessing(keras.layers.Layer):
    """Raw RGB in 0-255 to the input a ``keras.applications`` family expects.

    The same arithmetic, in the same order, as the family's
    ``preprocess_input``, but inside the graph, on a copy, for any batch.

    Parameters
    ----------
    family : {"caffe", "tf", "torch", "clip"}
        ``"caffe"``: RGB to BGR, subtract the ImageNet mean. ``"tf"``: scale
        to [-1, 1]. ``"torch"``: scale to [0, 1], normalise with the ImageNet
        mean and standard deviation. ``"clip"``: the same with CLIP's mean
        and standard deviation.
    """

    def __init__(self, family, **kwargs):
        super().__init__(**kwargs)
        if family not in ("caffe", "tf", "torch", "clip"):  # "none" has no layer: nothing to do
            raise ValueError(f"Unknown preprocessing family. Received: family={family!r}")
        self.family = family

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        if self.family == "tf":
            return x / 127.5 - 1.0
        if self.family in FAMILY_MEAN_STD:
            mean, std = FAMILY_MEAN_STD[self.family]
            x = x / 255.0
            return (x - np.asarray(mean, "float32")) / np.asarray(std, "float32")
        return keras.ops.flip(x, axis=-1) - np.asarray(_IMAGENET_MEAN_BGR, "float32")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "family": self.family}


class _RetracingFilter(logging.Filter):
    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def quiet_retracing_warnings():
    """Drop TensorFlow's "tf.function retracing" warning inside the block.

    Every network skptm builds gets its own predict and train functions, and
    TensorFlow warns once a few of them have been traced, which is expected
    here and says nothing to the user. Only that message is filtered, only
    while skptm runs; the filter is removed afterwards.
    """
    logger = logging.getLogger("tensorflow")
    log_filter = _RetracingFilter()
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)


def get_layer(base, name, parameter="layer"):
    """``base``'s layer ``name``, or a ``ValueError`` listing the closest names."""
    names = [layer.name for layer in base.layers]
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
        hint = f" Closest: {', '.join(map(repr, close))}." if close else ""
        raise ValueError(
            f"Backbone {base.name!r} has no layer named {name!r}.{hint} "
            f"See [layer.name for layer in model.layers]. Received: {parameter}={name!r}"
        )
    return base.get_layer(name)


#: Poolings of a transformer's tokens: the patch tokens' mean or max, the
#: class token, or the class token and the patch tokens' mean side by side.
TOKEN_POOLINGS = ("avg", "max", "cls", "cls+avg")


def global_pool(tensor, pooling, prefix_tokens=0, output_label="out", source=None, tokens=None):
    """Pool a feature map to a vector: ``(pooled tensor, label for feature names)``.

    A feature map ``(batch, height, width, channels)`` is pooled over space;
    a transformer's tokens ``(batch, tokens, width)``, of which the first
    ``prefix_tokens`` are the class token and registers, by
    :class:`TokenPooling`; a vector ``(batch, n)`` (an image embedding) is
    kept and labelled ``output_label``. ``source``, the inner layer pooled
    (``layer=``), names the pooling layer, which must be unique in the model.
    ``tokens`` says whether a 3-D ``tensor`` is a transformer's tokens
    (default: where ``prefix_tokens`` is not 0; SigLIP's have no class token).
    """
    if len(tensor.shape) == 2:
        return tensor, output_label
    tokens = bool(prefix_tokens) if tokens is None else tokens
    if len(tensor.shape) == 3 and tokens and pooling is not None:
        if not prefix_tokens and pooling in ("cls", "cls+avg"):
            raise ValueError(
                f"pooling={pooling!r} takes a transformer's class token; the tokens of {source or 'this layer'!r} "
                "have none (SigLIP's blocks). Use pooling='avg' or 'max'."
            )
        name = f"{pooling.replace('+', '_')}_pool" + (f"_{source}" if source else "")
        return TokenPooling(pooling, prefix_tokens, name=name)(tensor), pooling
    if pooling in ("cls", "cls+avg"):
        raise ValueError(
            f"pooling={pooling!r} takes a transformer's class token; this backbone outputs "
            f"{tuple(tensor.shape)}. Use pooling='avg' or 'max'."
        )
    if len(tensor.shape) != 4:
        return keras.layers.Flatten()(tensor), "flat"
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D()(tensor), "avg"
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D()(tensor), "max"
    return keras.layers.Flatten()(tensor), "flat"


@keras.saving.register_keras_serializable(package="skptm")
class TokenPooling(keras.layers.Layer):
    """A transformer's tokens ``(batch, tokens, width)`` to one vector per image.

    Parameters
    ----------
    mode : {"avg", "max", "cls", "cls+avg"}
        The mean or the maximum of the patch tokens, the class token, or the
        class token followed by the patch tokens' mean (DINOv2's linear-probe
        feature, twice the width).
    prefix_tokens : int
        Tokens before the patches: the class token (first) and any registers,
        which no pooling of patch tokens includes.
    """

    def __init__(self, mode, prefix_tokens, **kwargs):
        super().__init__(**kwargs)
        if mode not in TOKEN_POOLINGS:
            raise ValueError(f"Unknown token pooling. Received: mode={mode!r}")
        self.mode = mode
        self.prefix_tokens = int(prefix_tokens)

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        patches = x[:, self.prefix_tokens :, :]
        if self.mode == "max":
            return keras.ops.max(patches, axis=1)
        mean = keras.ops.mean(patches, axis=1)
        if self.mode == "avg":
            return mean
        if self.mode == "cls":
            return x[:, 0, :]
        return keras.ops.concatenate([x[:, 0, :], mean], axis=-1)

    def compute_output_shape(self, input_shape):
        width = input_shape[-1] * (2 if self.mode == "cls+avg" else 1)
        return (input_shape[0], width)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "prefix_tokens": self.prefix_tokens}


@keras.saving.register_keras_serializable(package="skptm")
class FixedAffine(keras.layers.Layer):
    """``x * scale + offset`` per feature, with non-trainable weights.

    Standardises the pooled features at the head's entrance and, for the
    regressor, maps standardised outputs back to the target's units. Its
    weights are set from data once; no optimiser ever moves them.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", trainable=False, name="scale")
        self.offset = self.add_weight(shape=(self.units,), initializer="zeros", trainable=False, name="offset")

    def call(self, inputs):
        return keras.ops.cast(inputs, self.compute_dtype) * self.scale + self.offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def set_affine(layer, scale, offset) -> None:
    """Set a :class:`FixedAffine` layer to ``x * scale + offset``."""
    layer.set_weights([np.asarray(scale, np.float32), np.asarray(offset, np.float32)])
