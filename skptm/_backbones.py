"""The backbone registry: every network of ``keras.applications``, and the
vision transformers of KerasHub (:mod:`skptm._hub_backbones`), by name.

This module is a table and a lookup. It imports neither Keras nor
TensorFlow, so ``import skptm``, ``list_backbones()`` and name validation
stay cheap; the networks themselves are built by :mod:`skptm.networks`.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace

from ._hub_backbones import (
    HUB_CLASSES,
    HUB_RESIZING,
    HUB_TABLE,
    import_keras_hub,
    is_preset_reference,
    preset_description,
)

#: How images reach the input size when the estimators' ``resize`` and
#: ``interpolation`` are ``"auto"`` and the network has no resizing of its
#: own: stretched, bilinear, as ``keras.utils.load_img`` does (the 40
#: ``keras.applications`` networks, custom backbones).
DEFAULT_RESIZING = ("stretch", "bilinear")

#: How each family of networks expects its input to be scaled. Every network
#: skptm builds takes raw RGB in 0-255 and applies its family's step inside.
PREPROCESSING_FAMILIES = {
    "caffe": "RGB to BGR, then subtract the ImageNet mean per channel (no scaling)",
    "tf": "scale to [-1, 1]",
    "torch": "scale to [0, 1], then normalise with the ImageNet mean and std",
    "clip": "scale to [0, 1], then normalise with CLIP's mean and std (OpenAI's image statistics)",
    "none": "the network includes its own preprocessing; feed raw 0-255 RGB",
}

#: Where a backbone comes from.
KERAS_APPLICATIONS = "keras.applications"
KERAS_HUB = "keras_hub"


@dataclass(frozen=True)
class BackboneSpec:
    """What skptm needs to know about one registered network.

    Attributes
    ----------
    name : str
        The snake-case name, e.g. ``"mobilenet_v3_small"``; for a KerasHub
        backbone, its preset name (``"dinov2_small"``).
    keras_name : str
        The constructor's name in ``keras.applications`` (``"MobileNetV3Small"``),
        or the KerasHub class of the image tower (``"DINOV2Backbone"``).
    preprocessing : {"caffe", "tf", "torch", "clip", "none"}
        The preprocessing family of the network's pretrained weights.
    input_size : int
        The native (square) input size in pixels.
    feature_size : int
        The length of the pooled feature vector (for CLIP and SigLIP, the
        image embedding).
    source : {"keras.applications", "keras_hub"}
        Where the network comes from.
    licence : str
        The licence of the pretrained weights.
    architecture : str or None
        KerasHub family (``"dinov2"``, ``"dinov3"``, ``"vit"``, ``"siglip"``,
        ``"clip"``); ``None`` for ``keras.applications``.
    config : dict
        KerasHub constructor arguments of the architecture, for
        ``weights=None`` (built offline, randomly initialised).
    preset : str or None
        The KerasHub handle or folder the user named, for a preset outside
        the registry.
    resizing : tuple of str
        ``(resize, interpolation)`` that ``"auto"`` stands for: the
        preset's image converter's for a KerasHub backbone, else
        :data:`DEFAULT_RESIZING`.
    """

    name: str
    keras_name: str
    preprocessing: str
    input_size: int
    feature_size: int
    source: str = KERAS_APPLICATIONS
    licence: str = "Apache-2.0"
    architecture: str | None = None
    config: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    preset: str | None = None
    resizing: tuple = DEFAULT_RESIZING

    @property
    def source_preset(self) -> str:
        """What KerasHub loads for ``weights="imagenet"``: the registry's preset
        name, or the handle or folder the user named."""
        return self.preset or self.name

    @property
    def is_hub(self) -> bool:
        """Whether the network comes from KerasHub (``pip install 'skptm[hub]'``)."""
        return self.source == KERAS_HUB

    @property
    def patch_size(self) -> int | None:
        """A transformer's patch size in pixels; ``None`` for a convolutional network."""
        return self.config.get("patch_size")

    @property
    def prefix_tokens(self) -> int:
        """Tokens before the patch tokens in a transformer's output: the class
        token and any registers (``0`` where the output is one embedding:
        CLIP, SigLIP, and the convolutional networks)."""
        if self.architecture in ("dinov2", "dinov3"):
            return 1 + self.config.get("num_register_tokens", 0)
        if self.architecture == "vit":
            return 1
        return 0

    def constructor(self):
        """Return the Keras constructor (imports Keras on first use)."""
        if self.is_hub:
            return getattr(import_keras_hub().models, self.keras_name)
        import keras

        return getattr(keras.applications, self.keras_name)


def _spec(keras_name, name, preprocessing, input_size, feature_size):
    return BackboneSpec(name, keras_name, preprocessing, input_size, feature_size)


_SPECS = (
    _spec("VGG16", "vgg16", "caffe", 224, 512),
    _spec("VGG19", "vgg19", "caffe", 224, 512),
    _spec("ResNet50", "resnet50", "caffe", 224, 2048),
    _spec("ResNet101", "resnet101", "caffe", 224, 2048),
    _spec("ResNet152", "resnet152", "caffe", 224, 2048),
    _spec("ResNet50V2", "resnet50_v2", "tf", 224, 2048),
    _spec("ResNet101V2", "resnet101_v2", "tf", 224, 2048),
    _spec("ResNet152V2", "resnet152_v2", "tf", 224, 2048),
    _spec("MobileNet", "mobilenet", "tf", 224, 1024),
    _spec("MobileNetV2", "mobilenet_v2", "tf", 224, 1280),
    _spec("MobileNetV3Small", "mobilenet_v3_small", "none", 224, 576),
    _spec("MobileNetV3Large", "mobilenet_v3_large", "none", 224, 960),
    _spec("EfficientNetB0", "efficientnet_b0", "none", 224, 1280),
    _spec("EfficientNetB1", "efficientnet_b1", "none", 240, 1280),
    _spec("EfficientNetB2", "efficientnet_b2", "none", 260, 1408),
    _spec("EfficientNetB3", "efficientnet_b3", "none", 300, 1536),
    _spec("EfficientNetB4", "efficientnet_b4", "none", 380, 1792),
    _spec("EfficientNetB5", "efficientnet_b5", "none", 456, 2048),
    _spec("EfficientNetB6", "efficientnet_b6", "none", 528, 2304),
    _spec("EfficientNetB7", "efficientnet_b7", "none", 600, 2560),
    _spec("EfficientNetV2B0", "efficientnet_v2_b0", "none", 224, 1280),
    _spec("EfficientNetV2B1", "efficientnet_v2_b1", "none", 240, 1280),
    _spec("EfficientNetV2B2", "efficientnet_v2_b2", "none", 260, 1408),
    _spec("EfficientNetV2B3", "efficientnet_v2_b3", "none", 300, 1536),
    _spec("EfficientNetV2S", "efficientnet_v2_s", "none", 384, 1280),
    _spec("EfficientNetV2M", "efficientnet_v2_m", "none", 480, 1280),
    _spec("EfficientNetV2L", "efficientnet_v2_l", "none", 480, 1280),
    _spec("ConvNeXtTiny", "convnext_tiny", "none", 224, 768),
    _spec("ConvNeXtSmall", "convnext_small", "none", 224, 768),
    _spec("ConvNeXtBase", "convnext_base", "none", 224, 1024),
    _spec("ConvNeXtLarge", "convnext_large", "none", 224, 1536),
    _spec("ConvNeXtXLarge", "convnext_xlarge", "none", 224, 2048),
    _spec("DenseNet121", "densenet121", "torch", 224, 1024),
    _spec("DenseNet169", "densenet169", "torch", 224, 1664),
    _spec("DenseNet201", "densenet201", "torch", 224, 1920),
    _spec("Xception", "xception", "tf", 299, 2048),
    _spec("InceptionV3", "inception_v3", "tf", 299, 2048),
    _spec("InceptionResNetV2", "inception_resnet_v2", "tf", 299, 1536),
    _spec("NASNetMobile", "nasnet_mobile", "tf", 224, 1056),
    _spec("NASNetLarge", "nasnet_large", "tf", 331, 4032),
) + tuple(
    BackboneSpec(
        name,
        HUB_CLASSES[family],
        preprocessing,
        size,
        features,
        KERAS_HUB,
        licence,
        family,
        config,
        resizing=HUB_RESIZING[family],
    )
    for name, family, preprocessing, size, features, licence, config in HUB_TABLE
)


def _normalize(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


_BY_KEY = {_normalize(spec.keras_name): spec for spec in _SPECS if not spec.is_hub}
_BY_KEY.update({_normalize(spec.name): spec for spec in _SPECS})


def get_backbone_spec(name: str) -> BackboneSpec:
    """Look up a backbone by name.

    Names are case-insensitive and ignore ``_`` and ``-``, so
    ``"resnet50"``, ``"ResNet50"``, ``"mobilenet_v3_small"`` and
    ``"MobileNetV3Small"`` all work.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the closest known names.
    """
    if not isinstance(name, str):
        raise TypeError(f"A backbone name must be a string. Received: backbone={name!r}")
    if is_preset_reference(name):
        return _preset_spec(name)
    if os.path.isdir(name):
        raise FileNotFoundError(
            f"The folder {name!r} is not a KerasHub preset directory: it has no config.json. Pass "
            "the folder keras_hub's save_to_preset wrote (or a downloaded preset copied here), or "
            f"a name of skptm.list_backbones(). Received: backbone={name!r}"
        )
    spec = _BY_KEY.get(_normalize(name))
    if spec is None:
        candidates = {spec.name: spec for spec in _SPECS}
        candidates.update({spec.keras_name: spec for spec in _SPECS if not spec.is_hub})
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
        close += difflib.get_close_matches(_normalize(name), _BY_KEY, n=5, cutoff=0.5)
        suggestions = list(dict.fromkeys(_BY_KEY[_normalize(c)].name for c in close))
        hint = f" Did you mean {', '.join(repr(s) for s in suggestions[:5])}?" if suggestions else ""
        raise ValueError(
            f"Unknown backbone {name!r}.{hint} skptm.list_backbones() lists all "
            f"{len(_SPECS)} names; a keras.Model, or a callable returning one, "
            f"is accepted too. Received: backbone={name!r}"
        )
    return spec


def with_weights_folder(spec, weights):
    """``spec`` as the local preset directory ``weights`` builds it.

    A registry name given a folder as ``weights`` runs the folder's
    architecture: its patch size, its registers (never pooled as patches)
    and its width, which may differ from the registry's (a DINOv2 with
    registers, or one of patch 8, under ``"dinov2_small"``). Anything else
    (``"imagenet"``, ``None``, a convolutional network, a folder that cannot
    be read: the loading then says why) returns ``spec`` unchanged.
    """
    if spec is None or not spec.is_hub or weights is None or isinstance(weights, str) and weights == "imagenet":
        return spec
    try:
        description = preset_description(os.fspath(weights))
    except (OSError, ValueError, KeyError, TypeError):
        return spec
    if description["family"] != spec.architecture:
        return spec  # the loading names the mismatch
    return replace(spec, config=description["config"], feature_size=description["feature_size"])


def _preset_spec(preset) -> BackboneSpec:
    """The registry entry of a KerasHub preset named by handle or folder."""
    description = preset_description(preset)
    family = description["family"]
    preprocessing = _family_of(description["scale_offset"])
    if preprocessing is None:
        found = (
            "has no image_converter.json"
            if description["scale_offset"] is None
            else f"has an image converter that scales images as no family skptm knows ({description['scale_offset']})"
        )
        raise ValueError(
            f"The KerasHub preset {preset!r} {found}: skptm cannot put its preprocessing inside the "
            f"network. If it is a {family} checkpoint preprocessed as the registry's, pass the registry "
            f"name as backbone and the preset as weights (e.g. backbone={_family_example(family)!r}, "
            f"weights={preset!r}). Received: backbone={preset!r}"
        )
    return BackboneSpec(
        description["name"],
        description["keras_name"],
        preprocessing,
        description["input_size"],
        description["feature_size"],
        KERAS_HUB,
        "the preset's own (see its model card)",
        family,
        description["config"],
        preset=preset,
        resizing=description["resizing"],
    )


#: Per-channel RGB mean and standard deviation (on [0, 1]) of the families
#: that normalise: ImageNet's for "torch", OpenAI's training set's for "clip".
FAMILY_MEAN_STD = {
    "torch": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}

#: Per-channel (scale, offset) of each family on 0-255 input: x * scale + offset,
#: as KerasHub's image converters state it.
FAMILY_AFFINE = {
    "tf": ((1 / 127.5,) * 3, (-1.0,) * 3),
    **{
        family: (tuple(1 / (255 * s) for s in std), tuple(-m / s for m, s in zip(mean, std, strict=True)))
        for family, (mean, std) in FAMILY_MEAN_STD.items()
    },
}


def _family_example(family) -> str:
    """A registry name of the KerasHub ``family`` (``"dinov2_small"`` for ``"dinov2"``)."""
    return next(spec.name for spec in _SPECS if spec.is_hub and spec.architecture == family)


def _family_of(scale_offset):
    if scale_offset is None or None in scale_offset:
        return None
    scale, offset = ([float(v)] * 3 if not isinstance(v, list) else [float(x) for x in v] for v in scale_offset)
    for family, (theirs_scale, theirs_offset) in FAMILY_AFFINE.items():
        if all(abs(a - b) <= 1e-5 * abs(b) for a, b in zip(scale, theirs_scale, strict=True)) and all(
            abs(a - b) <= 1e-5 * abs(b) + 1e-6 for a, b in zip(offset, theirs_offset, strict=True)
        ):
            return family
    return None


def available_backbones() -> list[str]:
    """Names of the registered networks this environment can build: all 40 of
    ``keras.applications``, and KerasHub's where keras-hub is installed."""
    import importlib.util

    hub = importlib.util.find_spec("keras_hub") is not None
    return [spec.name for spec in _SPECS if hub or not spec.is_hub]


def backbone_specs() -> tuple[BackboneSpec, ...]:
    """All registered backbones, in the table's order."""
    return _SPECS


def list_backbones():
    """List every available backbone with its input size and feature size.

    Returns
    -------
    backbones : list of dict
        One dict per network: the 40 of ``keras.applications``, then the
        vision transformers of KerasHub (``pip install 'skptm[hub]'``). Keys:
        ``"name"`` (the snake-case name; for KerasHub, the preset),
        ``"keras_name"`` (the Keras constructor or KerasHub class),
        ``"input_size"`` (native square input size in pixels),
        ``"preprocessing"`` (family: ``"caffe"``, ``"tf"``, ``"torch"``,
        ``"clip"`` or ``"none"``), ``"feature_size"`` (length of the pooled
        feature vector), ``"source"`` (``"keras.applications"`` or
        ``"keras_hub"``), ``"licence"`` (of the pretrained weights), and
        ``"resize"`` and ``"interpolation"`` (how ``"auto"`` brings images
        to the input size for it). Pass the list to ``pandas.DataFrame`` for
        a table.

    Examples
    --------
    >>> from skptm import list_backbones
    >>> [b for b in list_backbones() if b["name"] == "resnet50"]
    [{'name': 'resnet50', 'keras_name': 'ResNet50', 'input_size': 224, \
'preprocessing': 'caffe', 'feature_size': 2048, 'source': 'keras.applications', \
'licence': 'Apache-2.0', 'resize': 'stretch', 'interpolation': 'bilinear'}]
    """
    return [
        {
            "name": spec.name,
            "keras_name": spec.keras_name,
            "input_size": spec.input_size,
            "preprocessing": spec.preprocessing,
            "feature_size": spec.feature_size,
            "source": spec.source,
            "licence": spec.licence,
            "resize": spec.resizing[0],
            "interpolation": spec.resizing[1],
        }
        for spec in _SPECS
    ]


def feature_names(prefix, pooling_label, n_features):
    """``{prefix}_{pooling label}_{i}``: the one pattern of skptm's feature names."""
    return [f"{prefix}_{pooling_label}_{i}" for i in range(n_features)]
