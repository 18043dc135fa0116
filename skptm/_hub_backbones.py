"""The KerasHub part of the backbone registry: vision transformers by preset name.

A table, like :mod:`skptm._backbones`, and the one import of KerasHub with
its install hint; importing this module imports neither Keras nor KerasHub. Each entry names a KerasHub preset (``weights="imagenet"``
loads its pretrained weights through KerasHub) and keeps the architecture's
configuration, so that ``weights=None`` builds the same network offline,
randomly initialised, without downloading anything.

The configurations are those of the original checkpoints as KerasHub's
converters map them (``keras_hub/src/utils/transformers/convert_*.py``).
"""

from __future__ import annotations

import importlib
import json
import os

from .exceptions import WeightsUnavailableError

INSTALL_HINT = "pip install 'skptm[hub]'"


def import_keras_hub():
    """The ``keras_hub`` module, or an ``ImportError`` that says how to install it."""
    try:
        return importlib.import_module("keras_hub")
    except ImportError as exc:
        raise ImportError(
            "The KerasHub backbones (DINOv2, DINOv3, ViT, SigLIP, CLIP) need the keras-hub "
            f"package, an optional extra of skptm: {INSTALL_HINT}"
        ) from exc


#: What each architecture family is, for the listing and the docs.
HUB_ARCHITECTURES = {
    "dinov2": "DINOv2 (Meta, 2023): self-supervised ViT; class token, registers optional",
    "dinov3": "DINOv3 (Meta, 2025): self-supervised ViT with rotary position embeddings and 4 registers",
    "vit": "ViT (Google, 2020): supervised on ImageNet-21k, fine-tuned on ImageNet-1k",
    "siglip": "SigLIP / SigLIP 2 (Google): image tower of an image-text model; attention-pooled embedding",
    "clip": "CLIP (OpenAI, 2021): image tower of an image-text model; projected class-token embedding",
}

#: How each family's KerasHub presets resize an image to the input size, as
#: KerasHub's converters of the original checkpoints set their image
#: converters (``tools/checkpoint_conversion/convert_*_checkpoints.py``):
#: ``(resize, interpolation)`` in skptm's terms. ``"center_crop"`` is the
#: converters' ``crop_to_aspect_ratio=True`` (the largest centred crop of the
#: target's shape, then resized); ``"stretch"``, ``crop_to_aspect_ratio=False``.
HUB_RESIZING = {
    "dinov2": ("center_crop", "bicubic"),
    "dinov3": ("stretch", "bilinear"),
    "vit": ("center_crop", "bilinear"),
    "siglip": ("stretch", "bicubic"),
    "clip": ("center_crop", "bicubic"),
}

#: KerasHub's (TensorFlow's) interpolation names -> Pillow's filter in skptm's terms.
_INTERPOLATION_NAMES = {"lanczos3": "lanczos", "lanczos5": "lanczos", "area": "box"}
#: The filters of ``skptm._images.INTERPOLATIONS``, named here because this
#: module imports nothing of skptm but its exceptions (the test suite checks
#: that they agree).
_PILLOW_FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")

#: The KerasHub class of each family's preset, and of its image tower when
#: the preset holds an image-text model.
HUB_CLASSES = {
    "dinov2": "DINOV2Backbone",
    "dinov3": "DINOV3Backbone",
    "vit": "ViTBackbone",
    "siglip": "SigLIPVisionEncoder",
    "clip": "CLIPVisionEncoder",
}


def _dinov2(size, registers):
    width, depth, heads = {"small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}[size]
    return {
        "patch_size": 14,
        "num_layers": depth,
        "hidden_dim": width,
        "num_heads": heads,
        "intermediate_dim": 4 * width,
        "layer_scale_init_value": 1.0,
        "num_register_tokens": 4 if registers else 0,
        "use_mask_token": True,
        "use_swiglu_ffn": False,
        "position_embedding_shape": (518, 518),
        # The checkpoints with registers interpolate their position
        # embeddings with antialiasing (KerasHub's converter does the same).
        "antialias_in_interpolation": registers,
    }


def _dinov3(width, depth, heads):
    return {
        "patch_size": 16,
        "num_layers": depth,
        "hidden_dim": width,
        "num_heads": heads,
        "intermediate_dim": 4 * width,
        "layer_scale_init_value": 1.0,
        "num_register_tokens": 4,
        "use_key_bias": False,
        "rope_theta": 100.0,
    }


def _vision_tower(patch, width, depth, heads, intermediate, **extra):
    return {
        "patch_size": patch,
        "hidden_dim": width,
        "num_layers": depth,
        "num_heads": heads,
        "intermediate_dim": intermediate,
        **extra,
    }


#: One row per preset: (name = KerasHub preset, family, preprocessing family,
#: native input size, feature size, licence of the weights, configuration).
HUB_TABLE = (
    ("dinov2_small", "dinov2", "torch", 224, 384, "Apache-2.0", _dinov2("small", False)),
    ("dinov2_base", "dinov2", "torch", 224, 768, "Apache-2.0", _dinov2("base", False)),
    ("dinov2_large", "dinov2", "torch", 224, 1024, "Apache-2.0", _dinov2("large", False)),
    ("dinov2_with_registers_small", "dinov2", "torch", 224, 384, "Apache-2.0", _dinov2("small", True)),
    ("dinov2_with_registers_base", "dinov2", "torch", 224, 768, "Apache-2.0", _dinov2("base", True)),
    ("dinov2_with_registers_large", "dinov2", "torch", 224, 1024, "Apache-2.0", _dinov2("large", True)),
    ("dinov3_vit_small_lvd1689m", "dinov3", "torch", 224, 384, "DINOv3 License", _dinov3(384, 12, 6)),
    ("dinov3_vit_base_lvd1689m", "dinov3", "torch", 224, 768, "DINOv3 License", _dinov3(768, 12, 12)),
    (
        "vit_base_patch16_224_imagenet",
        "vit",
        "tf",
        224,
        768,
        "Apache-2.0",
        {"patch_size": 16, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "mlp_dim": 3072},
    ),
    ("siglip_base_patch16_224", "siglip", "tf", 224, 768, "Apache-2.0", _vision_tower(16, 768, 12, 12, 3072)),
    ("siglip2_base_patch16_224", "siglip", "tf", 224, 768, "Apache-2.0", _vision_tower(16, 768, 12, 12, 3072)),
    ("siglip_so400m_patch14_224", "siglip", "tf", 224, 1152, "Apache-2.0", _vision_tower(14, 1152, 27, 16, 4304)),
    ("siglip2_so400m_patch14_224", "siglip", "tf", 224, 1152, "Apache-2.0", _vision_tower(14, 1152, 27, 16, 4304)),
    (
        "clip_vit_base_patch32",
        "clip",
        "clip",
        224,
        512,
        "MIT",
        _vision_tower(32, 768, 12, 12, 3072, projection_dim=512),
    ),
    (
        "clip_vit_base_patch16",
        "clip",
        "clip",
        224,
        512,
        "MIT",
        _vision_tower(16, 768, 12, 12, 3072, projection_dim=512),
    ),
)


#: The KerasHub class of a preset's backbone -> skptm's family.
PRESET_FAMILIES = {
    "DINOV2Backbone": "dinov2",
    "DINOV3Backbone": "dinov3",
    "ViTBackbone": "vit",
    "SigLIPBackbone": "siglip",
    "CLIPBackbone": "clip",
}

#: Handles of KerasHub presets on model hubs (``hf://org/model``, ...).
HANDLE_SCHEMES = ("hf://", "kaggle://", "modelscope://", "gs://")


def is_preset_reference(name) -> bool:
    """Whether ``name`` names a KerasHub preset outside the registry: a
    model-hub handle or a local preset directory."""
    return isinstance(name, str) and (
        name.startswith(HANDLE_SCHEMES) or os.path.isfile(os.path.join(name, "config.json"))
    )


def preset_description(preset) -> dict:
    """What the registry needs to know about a KerasHub preset (handle or
    folder), read from its ``config.json`` and ``image_converter.json``.

    Returns
    -------
    description : dict
        ``name`` (its last path part), ``keras_name``, ``family``,
        ``input_size``, ``feature_size``, ``config`` (of the image tower),
        ``scale_offset`` (its image converter's, or ``None``) and
        ``resizing`` (its image converter's ``(resize, interpolation)``; the
        family's without one).
    """
    config = _preset_json(preset, "config.json")
    family = PRESET_FAMILIES.get(config.get("class_name"))
    if family is None and "model_type" in config and "class_name" not in config:
        raise ValueError(transformers_checkpoint_message(preset, config["model_type"]))
    if family is None:
        held = (
            f"a {config['class_name']}" if config.get("class_name") else "no backbone (config.json has no class_name)"
        )
        raise ValueError(
            f"The KerasHub preset {preset!r} holds {held}; skptm takes the presets "
            f"of {', '.join(sorted(PRESET_FAMILIES))}. Received: backbone={preset!r}"
        )
    outer = config["config"]
    tower = dict(outer["vision_encoder"]["config"] if family in ("siglip", "clip") else outer)
    if family == "clip":
        tower["projection_dim"] = outer["projection_dim"]
    converter = _preset_json(preset, "image_converter.json", missing_ok=True)
    scale_offset, resizing = None, HUB_RESIZING[family]
    if converter is not None:
        scale_offset = (converter["config"].get("scale"), converter["config"].get("offset"))
        resizing = converter_resizing(converter["config"], family)
    return {
        "name": os.path.basename(os.path.normpath(preset.split("://", 1)[-1])),
        "keras_name": HUB_CLASSES[family],
        "family": family,
        "input_size": int(tower["image_shape"][0]),
        "feature_size": int(outer["projection_dim"] if family == "clip" else tower["hidden_dim"]),
        "config": tower,
        "scale_offset": scale_offset,
        "resizing": resizing,
    }


#: Hugging Face transformers model types that KerasHub converts to a family
#: of the registry -> a registry name of that family.
TRANSFORMERS_MODEL_TYPES = {
    "dinov2": "dinov2_small",
    "dinov2_with_registers": "dinov2_with_registers_small",
    "dinov3_vit": "dinov3_vit_small_lvd1689m",
    "vit": "vit_base_patch16_224_imagenet",
}


def transformers_checkpoint_message(preset, model_type) -> str:
    """What to do with a Hugging Face transformers checkpoint (``config.json``
    with a ``model_type``, weights in safetensors) given where skptm reads a
    KerasHub preset."""
    found = (
        f"The preset {preset!r} is a Hugging Face transformers checkpoint (model_type "
        f"{model_type!r}), not a KerasHub preset: skptm reads KerasHub's format."
    )
    example = TRANSFORMERS_MODEL_TYPES.get(model_type)
    if example is None:
        return (
            f"{found} KerasHub converts the transformers checkpoints of DINOv2, DINOv3 and ViT only; "
            "take a KerasHub preset of the model instead (skptm.list_backbones() lists the registry's)."
        )
    return (
        f"{found} KerasHub converts it once (pip install safetensors, then "
        f"keras_hub.models.Backbone.from_preset({preset!r}).save_to_preset('<folder>')); then pass "
        f"the registry name of its architecture and the folder: backbone={example!r}, "
        "weights='<folder>' (the family's image scaling applies)."
    )


def converter_resizing(config, family) -> tuple:
    """``(resize, interpolation)`` of a KerasHub image converter's config, in
    skptm's terms (an interpolation Pillow lacks: the family's)."""
    if config.get("pad_to_aspect_ratio"):
        resize = "pad"
    elif config.get("crop_to_aspect_ratio", True):  # KerasHub's default
        resize = "center_crop"
    else:
        resize = "stretch"
    interpolation = config.get("interpolation", "bilinear")
    interpolation = _INTERPOLATION_NAMES.get(interpolation, interpolation)
    if interpolation not in _PILLOW_FILTERS:
        interpolation = HUB_RESIZING[family][1]
    return resize, interpolation


def _preset_json(preset, filename, missing_ok=False):
    if not preset.startswith(HANDLE_SCHEMES):
        path = os.path.join(preset, filename)
        if not os.path.isfile(path):
            if missing_ok:
                return None
            raise FileNotFoundError(f"The KerasHub preset directory {preset!r} has no {filename}.")
        with open(path, encoding="utf-8") as file:
            try:
                return json.load(file)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"The KerasHub preset directory {preset!r} has a {filename} that is not valid JSON "
                    f"({exc}): a damaged or partial copy? Copy the preset again, or write it with "
                    "keras_hub's save_to_preset."
                ) from exc
    preset_utils = importlib.import_module("keras_hub.src.utils.preset_utils") if import_keras_hub() else None
    try:
        return preset_utils.load_json(preset, filename)
    except Exception as exc:
        if is_download_failure(exc):
            raise WeightsUnavailableError(offline_message(preset, preset, exc)) from exc
        if missing_ok and isinstance(exc, FileNotFoundError):
            return None
        raise


#: Links of an exception's chain that mean the network could not be reached.
_NETWORK_ERROR_NAMES = (
    "ConnectError",
    "ConnectionError",
    "ProxyError",
    "Timeout",
    "MaxRetryError",
    "NameResolutionError",
    "LocalEntryNotFoundError",
    "OfflineModeIsEnabled",
    "gaierror",
)


def is_download_failure(exc) -> bool:
    """Whether ``exc`` (or what caused it) is a model hub that could not be reached."""
    link, seen = exc, set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, (ConnectionError, TimeoutError)):
            return True
        if any(name in type(link).__name__ for name in _NETWORK_ERROR_NAMES):
            return True
        if any(marker in str(link) for marker in ("Max retries", "Temporary failure in name resolution")):
            return True
        link = link.__cause__ or link.__context__
    return False


def preset_cache(source="") -> tuple:
    """``(folder, how to move it)``: where KerasHub's download of ``source`` is
    cached (a registry preset or ``kaggle://``: kagglehub's cache; ``hf://``:
    Hugging Face's; ``modelscope://``: ModelScope's)."""
    home = os.path.expanduser("~")
    if str(source).startswith("hf://"):
        folder = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME") or os.path.join(home, ".cache", "huggingface"), "hub"
        )
        return folder, "set by HF_HUB_CACHE or HF_HOME, default ~/.cache/huggingface/hub"
    if str(source).startswith("modelscope://"):
        folder = os.environ.get("MODELSCOPE_CACHE") or os.path.join(home, ".cache", "modelscope", "hub")
        return folder, "set by MODELSCOPE_CACHE, default ~/.cache/modelscope/hub"
    folder = os.environ.get("KAGGLEHUB_CACHE") or os.path.join(home, ".cache", "kagglehub")
    return folder, "set by the KAGGLEHUB_CACHE environment variable, default ~/.cache/kagglehub"


def offline_message(name, source, exc) -> str:
    """The one paragraph that says the preset ``source`` of backbone ``name``
    could not be downloaded, where KerasHub looked for it, and the two ways out."""
    cache, how = preset_cache(source)
    hf_offline = (
        " (Hugging Face retries for half a minute first; HF_HUB_OFFLINE=1 skips that.)"
        if str(source).startswith("hf://")
        else ""
    )
    return (
        f"Could not get the pretrained weights of {name!r}: KerasHub looked for the preset "
        f"{source!r} in its cache {cache!r} ({how}) and could not download it, so this machine "
        "seems to be offline. Two ways out: (1) run skptm.fetch_weights"
        f"([{source!r}]) once on a machine with internet access and copy its cache folder "
        f"into {cache!r}; or (2) pass weights='<folder>', a local KerasHub preset directory of "
        f"this architecture (the folder holding config.json and model.weights.h5).{hf_offline} "
        f"Cause: {one_line(exc)}"
    )


def one_line(exc) -> str:
    """The first line of ``exc``'s message, ending with a full stop."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."
