"""Building any backbone with its weights: ``keras.applications`` networks
(:mod:`.weights`) and KerasHub's transformers (:mod:`.hub`), and fetching
pretrained weights ahead of time."""

from __future__ import annotations

import os

from .._backbones import get_backbone_spec
from .._compat import keras_home
from .hub import build_hub_base
from .precision import dtype_policy_scope
from .weights import build_base


def build_backbone(backbone, spec, weights, input_size):
    """The backbone with its weights: a registry entry (``spec``) of either
    source, or a custom model or callable (``spec=None``)."""
    if spec is not None and spec.is_hub:
        return build_hub_base(spec, weights, input_size)
    return build_base(backbone, spec, weights, input_size)


def fetch_weights(names=None, *, verbose=1) -> str:
    """Download pretrained weights into Keras's (and KerasHub's) cache ahead of time.

    For a cluster without internet access or a container build: run this
    where there is a network, then ship the cache folder (``~/.keras/models``,
    or ``$KERAS_HOME/models``; for KerasHub backbones, KerasHub's preset
    cache, ``~/.cache/kagglehub`` or ``$KAGGLEHUB_CACHE``, and for ``hf://``
    handles Hugging Face's, ``~/.cache/huggingface/hub``) with the machines
    or the image. The files come through Keras's and KerasHub's own
    downloads, which check each file where they can, and are the very files
    ``weights="imagenet"`` then reads.

    Parameters
    ----------
    names : str, list of str or None, default=None
        Backbone names (see :func:`skptm.list_backbones`); ``None`` fetches
        every network of the registry that can be built here (the KerasHub
        ones only with ``skptm[hub]`` installed): many GB.
    verbose : int, default=1
        ``1`` shows a progress bar over the networks.

    Returns
    -------
    folder : str
        Keras's weights cache folder, which now holds the files
        (KerasHub's presets are in KerasHub's cache).

    Raises
    ------
    WeightsUnavailableError
        Offline, or with a damaged file in the cache (named in the message).

    Notes
    -----
    Weights without their classification top are fetched at each network's
    native input size. MobileNet and MobileNetV2 have a separate file per
    input size: for another size, run one ``transform`` at that size where
    there is a network (Keras downloads that file into the same cache), or
    copy it. MobileNetV3 has one file for every size.

    Examples
    --------
    >>> import skptm
    >>> skptm.fetch_weights(["resnet50", "mobilenet_v2"])  # doctest: +SKIP
    '/home/me/.keras/models'
    """
    from tqdm.auto import tqdm

    from .._backbones import available_backbones

    if names is None:
        names = available_backbones()
    elif isinstance(names, str):
        names = [names]
    specs = [get_backbone_spec(name) for name in names]  # every name checked before any download
    with tqdm(specs, unit=" networks", disable=not verbose) as progress:
        for spec in progress:
            progress.set_postfix_str(spec.name)
            with dtype_policy_scope("float32"):
                build_backbone(spec.name, spec, "imagenet", None)
    return os.path.join(keras_home(), "models")
