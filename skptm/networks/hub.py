"""KerasHub's vision transformers as skptm backbones (``pip install 'skptm[hub]'``).

A KerasHub backbone becomes what every skptm backbone is: a functional
``keras.Model`` from an image batch (already scaled by skptm's preprocessing
layer) to the network's output, built in one of three ways:

* ``weights="imagenet"``: the registry's preset, through KerasHub's own
  ``from_preset`` (its download and cache; offline, a clear error);
* ``weights="<folder>"``: a local preset directory (``save_to_preset``, or a
  preset downloaded elsewhere and copied here);
* ``weights=None``: the registry's configuration, randomly initialised with
  fixed seeds (no download).

The output is the token sequence, ``(batch, tokens, width)``, for DINOv2,
DINOv3 and ViT (skptm's pooling takes the class token, the patch tokens'
mean, or both), and the image embedding, ``(batch, width)``, for the image
towers of CLIP (class token, final norm, projection) and SigLIP (attention
pooling), as their authors compute it.

The functional graph is KerasHub's own (the model is re-rooted at its image
input, not rebuilt), so features equal KerasHub's to the last bit.
"""

from __future__ import annotations

import importlib
import json
import os
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import keras
import numpy as np

from .._compat import all_layers
from .._hub_backbones import (
    HANDLE_SCHEMES,
    is_download_failure,
    offline_message,
    one_line,
    transformers_checkpoint_message,
)
from .._hub_backbones import import_keras_hub as keras_hub
from ..exceptions import WeightsUnavailableError

#: Architectures whose position embeddings KerasHub interpolates to any input
#: size; the others run at their preset's native size only.
RESIZABLE = ("dinov2", "dinov3")

#: KerasHub's transformer block classes: what ``unfreeze=N`` counts.
BLOCK_CLASSES = ("DINOV2Layer", "DINOV3Layer", "ViTEncoderBlock", "CLIPEncoderLayer", "SigLIPEncoderLayer")

#: KerasHub layers that hold a backbone's blocks (and, for ViT, its final norm)
#: inside one layer: their sublayers are what phase 2 trains or leaves.
BLOCK_CONTAINERS = ("DINOV2Encoder", "DINOV3Encoder", "ViTEncoder")

#: What each container's ``call`` does, by attribute: ``(layer before the
#: blocks, the list of blocks, layer after them)``; ``layer=`` calls them in
#: a chain to reach block ``i`` without the blocks above it.
ENCODER_PARTS = {
    "DINOV2Encoder": (None, "layers", None),
    "DINOV3Encoder": (None, "layers", None),
    "ViTEncoder": ("dropout", "encoder_layers", "layer_norm"),
}

#: Image towers whose output is an embedding pooled from their blocks' tokens:
#: block class -> (tokens before the patches in a block's output, how many
#: blocks from the top the deepest is whose patch tokens reach the embedding).
#: CLIP pools the last block's class token (after a per-token LayerNorm), which
#: that block's patch tokens do not feed: the block below it is the deepest.
#: SigLIP's attention pooling reads every token of its last block.
EMBEDDING_TOWERS = {"CLIPEncoderLayer": (1, 2), "SigLIPEncoderLayer": (0, 1)}


def hub_class(name):
    """The KerasHub class ``name`` (``"DINOV2Backbone"``, ``"CLIPVisionEncoder"``, ...)."""
    return getattr(keras_hub().models, name)


def hub_input_size(spec, input_size, weights=None):
    """The ``(height, width)`` a KerasHub backbone runs at for ``input_size``.

    DINOv2 and DINOv3 take any size: their position embeddings are
    interpolated to it, as their authors do; a size that is not a multiple of
    the patch size is rounded to the nearest multiple (at least one patch),
    which is what the image is then resized to. The others (ViT, SigLIP,
    CLIP) were trained at one size and run at it: the registry's, or that of
    the local preset directory given as ``weights``.
    """
    native = (spec.input_size, spec.input_size)
    if spec.architecture not in RESIZABLE and weights not in (None, "imagenet"):
        native = (_preset_size(weights) or spec.input_size,) * 2
    if input_size is None:
        return native
    height, width = input_size
    if spec.architecture not in RESIZABLE:
        if (height, width) != native:
            raise ValueError(
                f"Backbone {spec.name!r} runs at its native input size {native}: its position "
                f"embeddings are fixed. Leave input_size=None. Received: input_size={input_size}"
            )
        return native
    if height != width:
        raise ValueError(f"Backbone {spec.name!r} (KerasHub) takes square images. Received: input_size={input_size}")
    patch = spec.patch_size
    side = max(patch, int(round(height / patch)) * patch)
    return (side, side)


def _preset_size(folder):
    """The image size a local preset directory was saved at, or ``None``
    where it cannot be read (the loading then says why)."""
    from .._hub_backbones import preset_description

    try:
        return preset_description(os.fspath(folder))["input_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_hub_base(spec, weights, input_size):
    """The image tower of ``spec`` with its weights, as a functional model.

    Parameters
    ----------
    spec : BackboneSpec
        A KerasHub entry of the registry.
    weights : "imagenet", None or path
        The preset's pretrained weights, a random initialisation, or a local
        preset directory.
    input_size : (int, int) or None
        Already passed through :func:`hub_input_size`.
    """
    size = hub_input_size(spec, input_size, weights)
    if weights is None:
        tower = _image_tower(spec, _from_config(spec, size))
        reinitialize_hub_weights(tower, spec.name)
        return tower
    return _image_tower(spec, _from_preset(spec, preset_source(spec, weights), size))


def _from_config(spec, size):
    config = {key: value for key, value in spec.config.items() if key not in ("name", "trainable", "dtype")}
    projection_dim = config.pop("projection_dim", None)
    config["image_shape"] = (*size, 3)
    model = hub_class(spec.keras_name)(**config, name=spec.name)
    if projection_dim is not None:
        model = _CLIPImageTower(model, projection_dim)
    return model


def _from_preset(spec, source, size):
    hub = keras_hub()
    kwargs = {"image_shape": (*size, 3)} if spec.architecture in RESIZABLE else {}
    with preset_loading_errors(spec, source):
        backbone = hub.models.Backbone.from_preset(source, **kwargs)
    _check_preset(spec, source, backbone)
    if spec.architecture == "clip":
        vision = backbone.vision_encoder
        return _CLIPImageTower(vision, backbone.vision_projection.units, backbone)
    if spec.architecture == "siglip":
        return backbone.vision_encoder
    return backbone


def preset_source(spec, weights, *, random_weights_ok=True):
    """What KerasHub loads for ``weights``: the registry's preset or the
    handle named as backbone (``"imagenet"``), or a local preset directory,
    checked to hold a configuration and weights."""
    if weights != "imagenet":
        return _check_preset_directory(weights, spec, random_weights_ok=random_weights_ok)
    source = spec.source_preset
    if is_local_preset(source):
        return _check_preset_directory(source, spec, random_weights_ok=random_weights_ok)
    return source


def is_local_preset(source) -> bool:
    """Whether KerasHub reads ``source`` from a folder here, not from a model hub."""
    return os.path.isdir(source) and not str(source).startswith(HANDLE_SCHEMES)


@contextmanager
def preset_loading_errors(spec, source):
    """Turn KerasHub's failures to load ``source`` into errors that say what to do:
    offline, a :class:`~skptm.WeightsUnavailableError` naming the cache; a
    damaged local preset directory, an ``OSError`` naming it."""
    try:
        yield
    except Exception as exc:
        if is_local_preset(source):
            if isinstance(exc, (OSError, ValueError)):
                error = FileNotFoundError if isinstance(exc, FileNotFoundError) else OSError
                raise error(
                    f"Could not load the KerasHub preset directory {source!r} for backbone {spec.name!r}: "
                    f"{one_line(exc)} A file in it is missing or damaged (an interrupted copy?): copy the "
                    "preset again, or write it with keras_hub's save_to_preset."
                ) from exc
        elif is_download_failure(exc):
            raise WeightsUnavailableError(offline_message(spec.name, source, exc)) from exc
        raise


#: The KerasHub class of each family's presets.
PRESET_CLASSES = {
    "dinov2": "DINOV2Backbone",
    "dinov3": "DINOV3Backbone",
    "vit": "ViTBackbone",
    "siglip": "SigLIPBackbone",
    "clip": "CLIPBackbone",
}


def family_scale_offset(family):
    """``(scale, offset)`` per channel with which skptm's preprocessing family
    maps 0-255 RGB: KerasHub's image converters compute ``x * scale + offset``."""
    from .._backbones import FAMILY_AFFINE

    return tuple(np.asarray(values, np.float64) for values in FAMILY_AFFINE[family])


def _check_preset(spec, source, backbone):
    """The preset is of ``spec``'s architecture, and its own image converter
    (where it ships one) scales images as the family skptm applies."""
    expected = PRESET_CLASSES[spec.architecture]
    if type(backbone).__name__ != expected:
        raise ValueError(
            f"The KerasHub preset {source!r} holds a {type(backbone).__name__}, not the "
            f"{expected} of backbone {spec.name!r}. Pass the registry name of its architecture "
            "(skptm.list_backbones()) as backbone."
        )
    try:
        converter = keras_hub().layers.ImageConverter.from_preset(source)
    except Exception:  # noqa: BLE001 - a preset without an image converter
        return
    scale, offset = family_scale_offset(spec.preprocessing)
    theirs = [np.broadcast_to(np.asarray(v, np.float64), (3,)) for v in (converter.scale, converter.offset)]
    if not (np.allclose(theirs[0], scale, rtol=1e-5) and np.allclose(theirs[1], offset, rtol=1e-5, atol=1e-6)):
        raise ValueError(
            f"The image converter of preset {source!r} scales images by {theirs[0].tolist()} and "
            f"offsets them by {theirs[1].tolist()}, not as the {spec.preprocessing!r} family of "
            f"backbone {spec.name!r}: skptm's preprocessing would not match the weights. Pass the "
            "preset itself as backbone (skptm then reads its converter), or report the mismatch."
        )


class _CLIPImageTower:
    """CLIP's vision encoder with its pooler and projection (the image embedding)."""

    def __init__(self, vision, projection_dim, backbone=None):
        self.vision = vision
        if backbone is not None:
            self.pooler, self.projection = backbone.vision_pooler, backbone.vision_projection
        else:
            keras_hub()
            # CLIP's pooler (the class token) is not exported by KerasHub.
            layers = importlib.import_module("keras_hub.src.models.clip.clip_layers")
            self.pooler = layers.CLIPVisionPooler(name="vision_pooler")
            self.projection = keras.layers.Dense(projection_dim, use_bias=False, name="vision_projection")


def _image_tower(spec, model):
    """Re-root KerasHub's functional graph at its image input (no dict input,
    no rebuilt layers): ``image -> tokens`` or ``image -> embedding``."""
    if isinstance(model, _CLIPImageTower):
        vision = model.vision
        embedding = model.projection(model.pooler(vision.outputs[0]))
        return keras.Model(vision.inputs[0], embedding, name=spec.name)
    return keras.Model(model.inputs[0], model.outputs[0], name=spec.name)


def _check_preset_directory(weights, spec, *, random_weights_ok=True):
    path = os.fspath(weights)
    random_weights = ", weights=None for a random initialisation," if random_weights_ok else ""
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(
            f"{path!r} is not a KerasHub preset directory (a folder with config.json and "
            f"model.weights.h5) for backbone {spec.name!r}. Pass weights='imagenet' for the "
            f"preset {spec.name!r}{random_weights} or a folder written by keras_hub's "
            "save_to_preset (or a downloaded preset copied here)."
        )
    if not any(os.path.isfile(os.path.join(path, name)) for name in PRESET_WEIGHTS_FILES):
        model_type = _transformers_model_type(path)
        if model_type is not None:
            raise ValueError(transformers_checkpoint_message(path, model_type))
        raise FileNotFoundError(
            f"The KerasHub preset directory {path!r} has a config.json but no weights "
            f"({' or '.join(PRESET_WEIGHTS_FILES)}): copy the whole preset, or write it with "
            "keras_hub's save_to_preset."
        )
    return path


def _transformers_model_type(folder):
    """The ``model_type`` of a Hugging Face transformers checkpoint in ``folder``, else ``None``."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError):
        return None
    if isinstance(config, dict) and "class_name" not in config:
        return config.get("model_type")
    return None


#: A preset's weights: one file, or an index of sharded files.
PRESET_WEIGHTS_FILES = ("model.weights.h5", "model.weights.json")


def reinitialize_hub_weights(model, name, std=0.02) -> None:
    """Give every randomly initialised weight of a KerasHub model a value drawn
    from a seed fixed by its path, so that ``weights=None`` is the same
    network in every process.

    Layers with a standard initializer are redrawn by
    :func:`~skptm.networks.weights.reinitialize_random_weights`; the
    transformers' own weights (class token, registers, position embeddings)
    are drawn from a truncated normal of standard deviation ``std``, as
    their authors initialise them. Constant weights keep their value.
    """
    from .weights import RANDOM_WEIGHTS_SEED, reinitialize_random_weights

    before = {id(v): keras.ops.convert_to_numpy(v) for v in model.weights}
    reinitialize_random_weights(model, RANDOM_WEIGHTS_SEED)
    for index, layer in enumerate(all_layers(model)):
        for variable in layer._trainable_variables + layer._non_trainable_variables:
            value = keras.ops.convert_to_numpy(variable)
            if not np.array_equal(value, before.get(id(variable), value)) or value.size < 2:
                continue  # redrawn above, or a scalar
            if np.all(value == value.flat[0]):
                continue  # a constant initialisation (zeros, ones, layer scale)
            seed = zlib.crc32(f"{RANDOM_WEIGHTS_SEED}/{name}/{index}/{variable.path}".encode())
            fresh = keras.random.truncated_normal(tuple(variable.shape), stddev=std, seed=seed)
            variable.assign(keras.ops.cast(fresh, variable.dtype))


#: The KerasHub preprocessor (tokenizer and packing) of each image-text family.
TEXT_PREPROCESSORS = {"clip": "CLIPPreprocessor", "siglip": "SigLIPPreprocessor"}


@dataclass(frozen=True)
class TextTower:
    """An image-text model's text side: prompts to embeddings, and its logit calibration."""

    embed: Callable  # list of str -> (n, embedding size) array
    logit_scale: float
    logit_bias: float
    calibration: str  # "softmax" (CLIP) or "sigmoid" (SigLIP)


def text_tower(name, weights) -> TextTower:
    """The text tower of the image-text backbone ``name`` (CLIP or SigLIP), with
    its preset's tokenizer, and the temperature (and bias) of its image-text head."""
    from .._backbones import get_backbone_spec

    spec = get_backbone_spec(name)
    if spec.architecture not in TEXT_PREPROCESSORS:
        image_text = sorted(s for s in TEXT_PREPROCESSORS)
        raise ValueError(
            f"Zero-shot classification needs an image-text backbone ({', '.join(image_text)} families of "
            f"skptm.list_backbones()); {spec.name!r} has no text tower. Received: backbone={name!r}"
        )
    if weights is None:
        raise ValueError(
            "Zero-shot classification needs trained towers: random weights name nothing. Pass "
            "weights='imagenet' (the preset) or a local preset directory. Received: weights=None"
        )
    hub = keras_hub()
    source = preset_source(spec, weights, random_weights_ok=False)
    with preset_loading_errors(spec, source):
        backbone = hub.models.Backbone.from_preset(source)
    _check_preset(spec, source, backbone)
    preprocessor_class = TEXT_PREPROCESSORS[spec.architecture]
    try:
        with preset_loading_errors(spec, source):
            preprocessor = getattr(hub.models, preprocessor_class).from_preset(source)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"The KerasHub preset {source!r} has no text preprocessor (its tokenizer): zero-shot "
            f"classification needs one to turn the prompts into tokens. Save it into the preset with "
            f"keras_hub.models.{preprocessor_class}(tokenizer).save_to_preset(folder), or copy the "
            f"whole preset. Cause: {one_line(exc)}"
        ) from exc
    head = backbone.clip_head if spec.architecture == "clip" else backbone.siglip_head
    scale = float(np.exp(keras.ops.convert_to_numpy(head.logit_scale)))
    bias = float(keras.ops.convert_to_numpy(head.logit_bias)) if spec.architecture == "siglip" else 0.0

    def embed(prompts):
        packed = preprocessor({"images": None, "prompts": list(prompts)})
        packed = packed[0] if isinstance(packed, tuple) else packed
        return keras.ops.convert_to_numpy(backbone.get_text_embeddings(packed["token_ids"]))

    calibration = "softmax" if spec.architecture == "clip" else "sigmoid"
    return TextTower(embed, scale, bias, calibration)


@dataclass(frozen=True)
class TowerBlocks:
    """The blocks of a CLIP or SigLIP image tower, for Grad-CAM.

    Attributes
    ----------
    names : tuple of str
        The blocks by skptm's names for them, ``"stage1"`` (bottom) to the depth.
    prefix_tokens : int
        Tokens before the patches in a block's output (CLIP's class token).
    deepest : str
        The deepest block whose patch tokens reach the embedding.
    patch_size : int
        Pixels per patch side: the grid is the input size divided by it
        (KerasHub 0.32 gives SigLIP's tokens a symbolic length one too
        many, counting a class token SigLIP does not have).
    """

    names: tuple
    prefix_tokens: int
    deepest: str
    patch_size: int

    def grid(self, input_size) -> tuple:
        """``(rows, columns)`` of the patches over ``input_size`` ``(height, width)``."""
        height, width = input_size
        return height // self.patch_size, width // self.patch_size


def tower_blocks(base):
    """The :class:`TowerBlocks` of ``base`` if it is a CLIP or SigLIP image
    tower (an embedding pooled from its blocks' tokens), else ``None``."""
    blocks = tower_block_layers(base)
    if not blocks:
        return None
    prefix_tokens, from_top = EMBEDDING_TOWERS[type(blocks[0]).__name__]
    names = tuple(f"stage{i}" for i in range(1, len(blocks) + 1))
    (patch_size,) = {layer.patch_size for layer in base.layers if type(layer).__name__.endswith("VisionEmbedding")}
    return TowerBlocks(names, prefix_tokens, names[max(0, len(names) - from_top)], int(patch_size))


def tower_block_layers(base) -> list:
    """The blocks of a CLIP or SigLIP image tower ``base``, bottom to top
    (layers of its own graph, named by KerasHub after the model: their names
    differ between a preset and a configuration)."""
    return [layer for layer in base.layers if type(layer).__name__ in EMBEDDING_TOWERS]
