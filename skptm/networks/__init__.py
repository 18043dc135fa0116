"""Every network skptm runs, assembled in one place and cached per process.

* :mod:`.layers`: the layers around a backbone (preprocessing, pooling);
* :mod:`.weights`: building a ``keras.applications`` backbone with its
  weights, offline messages; :mod:`.hub`: KerasHub's transformers;
  :mod:`.building`: either, and ``fetch_weights``;
* :mod:`.fingerprints`: content keys of weights and models;
* :mod:`.assembly`: :func:`~.assembly.assemble`, the one function that builds
  a network from a :class:`Blueprint`: a feature network, or the fine-tuning
  model (augmentation, preprocessing, backbone, pooling, head, target scale);
* :mod:`.cache`: the process-wide cache (:data:`~.cache.NETWORKS`);
* :mod:`.description`: :class:`Blueprint` (what to build) and
  :class:`FeatureNetwork` (what callers get).

Engines (:mod:`skptm.engines`) run these networks; estimators ask for them
here and never assemble one themselves.
"""

from .assembly import (
    LIGHT_AUGMENTATION,
    TrainedModel,
    as_size,
    assemble,
    describe,
    feature_names,
    make_augmentation,
    stage_outputs,
    staged_top,
)
from .building import build_backbone, fetch_weights
from .cache import NETWORKS, backbone_takes_table, cache_info, clear_network_cache, get_feature_network
from .description import Blueprint, FeatureNetwork
from .fingerprints import base_fingerprint, fingerprint, model_identity
from .hub import TowerBlocks, tower_blocks
from .layers import (
    FixedAffine,
    ImagePreprocessing,
    TokenPooling,
    get_layer,
    global_pool,
    quiet_retracing_warnings,
    set_affine,
)
from .weights import RANDOM_WEIGHTS_SEED, private_copy, reinitialize_random_weights

__all__ = [
    "LIGHT_AUGMENTATION",
    "NETWORKS",
    "FixedAffine",
    "TrainedModel",
    "assemble",
    "Blueprint",
    "describe",
    "make_augmentation",
    "set_affine",
    "RANDOM_WEIGHTS_SEED",
    "build_backbone",
    "FeatureNetwork",
    "ImagePreprocessing",
    "as_size",
    "backbone_takes_table",
    "base_fingerprint",
    "cache_info",
    "clear_network_cache",
    "feature_names",
    "fetch_weights",
    "fingerprint",
    "get_feature_network",
    "get_layer",
    "global_pool",
    "model_identity",
    "private_copy",
    "quiet_retracing_warnings",
    "reinitialize_random_weights",
    "stage_outputs",
    "staged_top",
    "TokenPooling",
    "TowerBlocks",
    "tower_blocks",
]
