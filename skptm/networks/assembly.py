"""The one assembly of every network skptm runs, from a :class:`Blueprint`.

:func:`describe` turns a built backbone and the estimator's parameters into a
blueprint; :func:`assemble` builds a feature network from it, or, with a head
(``dataclasses.replace(network.blueprint, head=...)``), the fine-tuning model.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import keras

from .._backbones import DEFAULT_RESIZING, feature_names
from .description import Blueprint, FeatureNetwork
from .hub import BLOCK_CONTAINERS, ENCODER_PARTS, tower_block_layers, tower_blocks
from .layers import FixedAffine, ImagePreprocessing, get_layer, global_pool, set_affine
from .precision import dtype_policy_scope
from .views import with_views
from .weights import private_copy


def as_size(input_size):
    """``input_size`` as a ``(height, width)`` tuple, or ``None``."""
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return (input_size, input_size)
    return tuple(int(s) for s in input_size)


def describe(base, spec, backbone, family, pooling, layers, input_size, precision, views=()) -> Blueprint:
    """The :class:`Blueprint` of the feature network around a built ``base``.

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
    views : tuple of str
        Test-time views whose features are averaged (``()``: none).
    """
    base_shape = tuple(base.inputs[0].shape[1:])
    name = spec.name if spec is not None else _custom_name(backbone, base)
    hub = spec is not None and spec.is_hub
    if len(base_shape) == 1:
        if len(base.outputs[0].shape) != 2:
            raise ValueError(
                f"A tabular backbone must output (batch, n_features); {base.name!r} outputs "
                f"{tuple(base.outputs[0].shape)}."
            )
        if views:
            raise ValueError(f"tta needs a backbone that takes images; {base.name!r} takes rows of a table.")
        return Blueprint(base=base, name=name, takes_images=False, n_input_features=base_shape[0], precision=precision)
    if len(base_shape) != 3 or base_shape[-1] != 3:
        raise ValueError(
            "A custom backbone must take images (batch, height, width, 3) or rows of "
            f"a table (batch, n_features); {base.name!r} takes {base_shape}."
        )
    return Blueprint(
        base=base,
        name=name,
        input_size=_image_size(base, base_shape, as_size(input_size)),
        preprocessing=family,
        pooling=pooling,
        layers=tuple(layers) if layers else None,
        precision=precision,
        views=tuple(views),
        prefix_tokens=spec.prefix_tokens if hub else 0,
        output_label="embedding" if hub else "out",
        resizing=spec.resizing if spec is not None else DEFAULT_RESIZING,
    )


def assemble(blueprint: Blueprint):
    """The one assembly of every network skptm runs.

    ``[augmentation] -> preprocessing -> backbone (or some of its layers) ->
    pooling [-> head [-> target scale]]``; a feature network with test-time
    ``views`` runs on each view of its input and averages the features. skptm's layers around the backbone
    compute in float32 whatever dtype policy the user set; the backbone keeps
    the precision it was built in.

    Parameters
    ----------
    blueprint : Blueprint
        What to assemble. Without a ``head``: a feature network around the
        (shared) backbone. With one: the fine-tuning model around a private
        copy of the backbone, so that training it, or anything a user does
        to the fitted model, never touches the networks the cache shares.

    Returns
    -------
    FeatureNetwork or TrainedModel
        :class:`FeatureNetwork` without a head, :class:`TrainedModel` with one.
    """
    with dtype_policy_scope("float32"):
        if blueprint.head is None:
            return _feature_network(blueprint)
        return _trained_model(blueprint)


def _feature_network(blueprint: Blueprint) -> FeatureNetwork:
    if not blueprint.takes_images:
        model, names = blueprint.base, _numbered(blueprint.name, blueprint.base.outputs[0].shape[-1])
    else:
        inputs, pooled, names = _trunk(blueprint, blueprint.base)
        model = with_views(keras.Model(inputs, pooled, name=f"skptm_{blueprint.name}"), blueprint.views)
    return FeatureNetwork(
        model=model,
        base=blueprint.base,
        takes_images=blueprint.takes_images,
        input_size=blueprint.input_size,
        n_input_features=blueprint.n_input_features,
        feature_names=tuple(names),
        preprocessing=blueprint.preprocessing,
        precision=blueprint.precision,
        blueprint=blueprint,
    )


def _trained_model(blueprint: Blueprint) -> TrainedModel:
    if blueprint.layers:
        raise ValueError("A fine-tuning model is assembled on the backbone's top, not on inner layers.")
    base = private_copy(blueprint.base)
    base.trainable = False
    inputs, pooled, _ = _trunk(blueprint, base)
    outputs = blueprint.head(pooled)
    trainee = keras.Model(inputs, outputs, name="skptm_finetuned")
    model = trainee
    if blueprint.output_affine is not None:
        target_scale = FixedAffine(outputs.shape[-1], name="target_scale")
        model = keras.Model(inputs, target_scale(outputs), name="skptm_finetuned")
        set_affine(target_scale, *blueprint.output_affine)
    features = keras.Model(inputs, pooled, name="skptm_finetuned_features")
    return TrainedModel(model, trainee, features, base, blueprint.head, ())


def _trunk(blueprint: Blueprint, base):
    """Input -> [augmentation] -> preprocessing -> ``base`` -> pooling, and the
    names of the pooled features."""
    if not blueprint.takes_images:
        inputs = keras.Input((blueprint.n_input_features,), name="table")
        pooled = base(inputs, training=False)
        return inputs, pooled, _numbered(blueprint.name, pooled.shape[-1])
    inputs = keras.Input((*blueprint.input_size, 3), name="rgb_0_255")
    x = inputs
    augmentation = make_augmentation(blueprint.augment, blueprint.seed)
    if augmentation is not None:
        x = augmentation(x)
    if blueprint.preprocessing != "none":
        x = ImagePreprocessing(blueprint.preprocessing, name="preprocessing")(x)
    # training=False: batch normalisation stays in inference mode, in
    # fine-tuning too (the recipe of the Keras transfer-learning guide).
    if blueprint.layers:
        extractor = keras.Model(base.inputs, [layer_output(base, name) for name in blueprint.layers], name="layers")
        outputs = extractor(x, training=False)
        parts = [(f"{blueprint.name}_{name}", name, out) for name, out in zip(blueprint.layers, outputs, strict=True)]
    else:
        parts = [(blueprint.name, None, base(x, training=False))]
    # CLIP's and SigLIP's blocks give tokens where their top gives an embedding.
    tower = tower_blocks(base) if blueprint.layers else None
    prefix_tokens, tokens = (tower.prefix_tokens, True) if tower is not None else (blueprint.prefix_tokens, None)
    pooled, names = [], []
    for prefix, source, tensor in parts:
        if tower is not None and blueprint.pooling is None:
            _check_token_count(tensor, tower, blueprint.input_size, source)
        tensor, label = global_pool(
            tensor,
            blueprint.pooling,
            prefix_tokens,
            blueprint.output_label,
            source,
            tokens=tokens,
        )
        pooled.append(tensor)
        names.extend(pooled_feature_names(prefix, label, tensor.shape[-1]))
    output = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="features")(pooled)
    return inputs, output, names


def _check_token_count(tensor, tower, input_size, source):
    """Flattened tokens (``pooling=None``) need their count: KerasHub 0.32
    states one token too many for SigLIP's (a class token it does not have)."""
    rows, columns = tower.grid(input_size)
    count = rows * columns + tower.prefix_tokens
    if len(tensor.shape) == 3 and tensor.shape[1] != count:
        raise ValueError(
            f"pooling=None flattens the tokens of layer {source!r}, and KerasHub states {tensor.shape[1]} "
            f"where the network computes {count}, so the feature count would be wrong. Pool them: "
            "pooling='avg' or 'max'."
        )


def pooled_feature_names(prefix, label, n_features):
    """Feature names of one pooled output; ``"cls+avg"`` is two halves, named so."""
    if label == "cls+avg":
        half = n_features // 2
        return feature_names(prefix, "cls", half) + feature_names(prefix, "avg", half)
    return feature_names(prefix, label, n_features)


def layer_output(base, name):
    """The output of ``base``'s layer ``name``; for a KerasHub transformer, also
    the output of block ``i`` by one name in every family, ``"stage{i}"`` (1
    to depth; KerasHub's name for the DINO blocks), see :func:`stage_outputs`."""
    stages = stage_outputs(base)
    if name in stages:
        return stages[name]
    try:
        return get_layer(base, name).output
    except ValueError:
        if stages:
            raise ValueError(
                f"Backbone {base.name!r} has no block named {name!r}: its blocks are 'stage1' to "
                f"'stage{len(stages)}', bottom to top. Received: layer={name!r}"
            ) from None
        raise


#: KerasHub encoder -> its blocks' outputs and its top, chained once per encoder (see below).
_CHAINS = weakref.WeakKeyDictionary()


def stage_outputs(base) -> dict:
    """``{"stage1": output, ...}``: each block's output (before the final norm)
    of the KerasHub transformer ``base``, by one name in every family.

    DINOv2, DINOv3 and ViT keep their blocks inside one encoder layer, which
    computes every block whatever is asked of it; so the blocks are called in
    a chain on the encoder's own inputs instead: the same layers and weights,
    in the order and with the arguments the encoder gives them, built once
    per encoder so that two stages share their lower blocks. Block ``i``
    then costs ``i`` blocks, not the whole encoder. CLIP's and SigLIP's
    blocks are layers of the image tower's own graph, whose names KerasHub
    derives from the model's (a preset's differ from a configuration's):
    ``"stage{i}"`` names them the same way whatever the weights.
    """
    encoder = _encoder(base)
    if encoder is not None:
        return dict(_chain(encoder)[0])
    blocks = tower_block_layers(base)
    return {f"stage{i}": block._inbound_nodes[0].outputs[0] for i, block in enumerate(blocks, start=1)}


def staged_top(base):
    """``base``'s output, computed from the tensors :func:`stage_outputs` gives:
    a gradient of the top then reaches them (Grad-CAM on an inner block).

    Where an encoder's chained blocks stand in for the encoder, its top (the
    chain's last block, through ViT's final norm) goes through the layers
    that follow the encoder in ``base`` (DINO's final norm) again."""
    encoder = _encoder(base)
    if encoder is None:
        return base.outputs[0]
    top = _chain(encoder)[1]
    for layer in _layers_after(base, encoder._inbound_nodes[0].outputs[0]):
        top = layer(top)
    return top


def _encoder(base):
    """The KerasHub encoder layer in ``base``'s graph that holds its blocks, or ``None``."""
    for layer in base.layers:
        if type(layer).__name__ in BLOCK_CONTAINERS and layer._inbound_nodes:
            return layer
    return None


def _chain(encoder):
    """The encoder's ``call`` on its node's arguments, one block at a time:
    ``({"stage1": block 1's output, ...}, the encoder's top)``."""
    if encoder not in _CHAINS:
        arguments = encoder._inbound_nodes[0].arguments
        options = {key: value for key, value in arguments.kwargs.items() if key != "training"}
        pre, blocks, post = ENCODER_PARTS[type(encoder).__name__]
        x = arguments.args[0]
        if pre:
            x = getattr(encoder, pre)(x)
        stages = {}
        for i, block in enumerate(getattr(encoder, blocks), start=1):
            x = stages[f"stage{i}"] = block(x, **options)
        _CHAINS[encoder] = (stages, getattr(encoder, post)(x) if post else x)
    return _CHAINS[encoder]


def _layers_after(base, tensor):
    """The single-input layers from ``tensor`` to ``base``'s output, in order."""
    layers, current = [], base.outputs[0]
    while current is not tensor:
        layer, node_index, _ = current._keras_history
        inputs = layer._inbound_nodes[node_index].input_tensors
        if len(inputs) != 1:
            raise ValueError(f"{base.name!r}: the layers after its encoder are not a chain ({layer.name!r}).")
        layers.append(layer)
        current = inputs[0]
    return layers[::-1]


def _numbered(prefix, n_features):
    return [f"{prefix}_{i}" for i in range(n_features)]


def _custom_name(backbone, base):
    if isinstance(backbone, keras.Model):
        return backbone.name
    return getattr(backbone, "__name__", None) or base.name


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
    # What callers above derive from this model and keep for its lifetime
    # (skptm._explain's Grad-CAM by layer, skptm._fitted's test-time views);
    # never pickled (see skptm._fitted.export_state).
    traced: dict = field(default_factory=dict, repr=False, compare=False)


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
    _reseed(augment, seed)
    return augment


def _reseed(layer, seed) -> None:
    """Restart every random generator of the user's ``layer`` from ``seed``:
    each fit then draws the same augmentations (training advances them, and
    a fitted estimator's clone copies them advanced)."""
    import numpy as np

    layers = [layer, *layer._flatten_layers(include_self=False)] if isinstance(layer, keras.layers.Layer) else []
    generators = [generator for each in layers for generator in getattr(each, "_seed_generators", ())]
    for index, generator in enumerate(dict.fromkeys(generators)):
        state = generator.state
        state.assign(np.array([seed + 101 + index, 0], dtype=keras.backend.standardize_dtype(state.dtype)))
