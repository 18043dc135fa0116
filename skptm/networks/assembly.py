"""Assemble a network skptm runs from a built backbone: input, preprocessing,
backbone (or some of its layers), pooling, names of the features."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from .description import FeatureNetwork
from .layers import FixedAffine, ImagePreprocessing, get_layer, global_pool, set_affine
from .weights import private_copy


def as_size(input_size):
    """``input_size`` as a ``(height, width)`` tuple, or ``None``."""
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return (input_size, input_size)
    return tuple(int(s) for s in input_size)


def wrap(base, spec, backbone, family, pooling, layers, input_size, precision) -> FeatureNetwork:
    """The feature network around ``base``: raw input to pooled features.

    Parameters
    ----------
    base : keras.Model
        The built backbone.
    spec : BackboneSpec or None
        Its registry entry (``None`` for a custom backbone).
    backbone : str, keras.Model or callable
        What the user passed, for naming.
    family : {"caffe", "tf", "torch", "none"}
        Preprocessing inside the graph.
    pooling : {"avg", "max"} or None
    layers : tuple of str or None
        Inner layers whose pooled outputs are concatenated, instead of the top.
    input_size : (int, int) or None
    precision : str
        What ``base`` computes in.
    """
    base_shape = tuple(base.inputs[0].shape[1:])
    prefix = spec.name if spec is not None else _custom_name(backbone, base)
    if len(base_shape) == 1:
        return _wrap_tabular(base, prefix, base_shape[0], precision)
    if len(base_shape) != 3 or base_shape[-1] != 3:
        raise ValueError(
            "A custom backbone must take images (batch, height, width, 3) or rows of "
            f"a table (batch, n_features); {base.name!r} takes {base_shape}."
        )
    size = _image_size(base, base_shape, as_size(input_size))
    inputs = keras.Input(shape=(*size, 3), name="rgb_0_255")
    x = inputs if family == "none" else ImagePreprocessing(family, name="preprocessing")(inputs)
    if layers:
        extractor = keras.Model(base.inputs, [get_layer(base, name).output for name in layers], name="layers")
        outputs = extractor(x)
        parts = [(f"{prefix}_{name}", out) for name, out in zip(layers, outputs, strict=True)]
    else:
        parts = [(prefix, base(x))]
    pooled, names = [], []
    for part_prefix, tensor in parts:
        tensor, label = global_pool(tensor, pooling)
        pooled.append(tensor)
        names.extend(feature_names(part_prefix, label, tensor.shape[-1]))
    output = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="features")(pooled)
    model = keras.Model(inputs, output, name=f"skptm_{prefix}")
    return FeatureNetwork(
        model=model,
        base=base,
        takes_images=True,
        input_size=size,
        n_input_features=None,
        feature_names=tuple(names),
        preprocessing=family,
        precision=precision,
    )


def _wrap_tabular(base, prefix, n_columns, precision):
    if len(base.outputs[0].shape) != 2:
        raise ValueError(
            f"A tabular backbone must output (batch, n_features); {base.name!r} outputs {tuple(base.outputs[0].shape)}."
        )
    names = tuple(f"{prefix}_{i}" for i in range(base.outputs[0].shape[-1]))
    return FeatureNetwork(
        model=base,
        base=base,
        takes_images=False,
        input_size=None,
        n_input_features=n_columns,
        feature_names=names,
        precision=precision,
    )


def _custom_name(backbone, base):
    if isinstance(backbone, keras.Model):
        return backbone.name
    return getattr(backbone, "__name__", None) or base.name


def feature_names(prefix, pooling_label, n_features):
    """``{prefix}_{pooling label}_{i}``: the one pattern of skptm's feature names."""
    return [f"{prefix}_{pooling_label}_{i}" for i in range(n_features)]


def _image_size(base, base_shape, input_size):
    fixed = base_shape[:2]
    if None in fixed:
        if input_size is None:
            raise ValueError(
                f"Backbone {base.name!r} accepts any image size; pass input_size=(height, "
                "width) (or an int for a square) to choose one."
            )
        return input_size
    if input_size is not None and tuple(input_size) != tuple(fixed):
        raise ValueError(
            f"Backbone {base.name!r} takes images of size {tuple(fixed)}; got "
            f"input_size={input_size}. Leave input_size=None to use its own size."
        )
    return tuple(fixed)


LIGHT_AUGMENTATION = "light"


# -- the fine-tuning model -------------------------------------------------------------


@dataclass
class TrainedModel:
    """A fine-tuned model, its parts, and the paths needed to rebuild or slim it down."""

    model: object  # keras.Model: raw input -> predictions in the targets' units
    trainee: object  # keras.Model: raw input -> what the loss sees (standardised targets)
    features: object  # keras.Model: raw input -> pooled backbone features (transform)
    base: object  # the private backbone copy inside ``model``
    head: object  # keras.Sequential on pooled features
    unfrozen: tuple  # paths of the backbone layers trained in phase 2


def build_model(network: FeatureNetwork, pooling, head, augment, seed, output_affine=None) -> TrainedModel:
    """[augment] -> preprocessing -> private backbone copy -> pool -> head [-> target scale].

    The backbone is always a private copy of ``network.base`` (same
    weights): training it, or anything a user does to ``model_``, never
    touches the per-process cache that transformers share.
    """
    base = private_copy(network.base)
    base.trainable = False
    if network.takes_images:
        inputs = keras.Input((*network.input_size, 3), name="rgb_0_255")
        x = inputs
        augmentation = make_augmentation(augment, seed)
        if augmentation is not None:
            x = augmentation(x)
        if network.preprocessing != "none":
            x = ImagePreprocessing(network.preprocessing, name="preprocessing")(x)
        pooled, _ = global_pool(base(x, training=False), pooling)
    else:
        inputs = keras.Input((network.n_input_features,), name="table")
        pooled = base(inputs, training=False)
    outputs = head(pooled)
    trainee = keras.Model(inputs, outputs, name="skptm_finetuned")
    model = trainee
    if output_affine is not None:
        target_scale = FixedAffine(outputs.shape[-1], name="target_scale")
        model = keras.Model(inputs, target_scale(outputs), name="skptm_finetuned")
        set_affine(target_scale, *output_affine)
    features = keras.Model(inputs, pooled, name="skptm_finetuned_features")
    return TrainedModel(model, trainee, features, base, head, ())


def make_augmentation(augment, seed):
    """``None``, the ``"light"`` preset, or the user's Keras layer."""
    if augment is None:
        return None
    if isinstance(augment, str):
        if augment != LIGHT_AUGMENTATION:
            raise ValueError(f"augment must be None, 'light' or a Keras layer. Received: augment={augment!r}")
        return keras.Sequential(
            [
                keras.layers.RandomFlip("horizontal", seed=seed),
                keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 1),
                keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 2),
                keras.layers.RandomContrast(0.1, value_range=(0, 255), seed=seed + 3),
            ],
            name="augmentation",
        )
    return augment
