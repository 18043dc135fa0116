"""skptm: pretrained image networks as scikit-learn estimators.

Importing skptm does not import TensorFlow or Keras, and changes nothing in
the process; networks are built on first use.
"""

from ._backbones import list_backbones
from ._batches import ImageReadError
from ._classifier import FineTunedClassifier
from ._feature_cache import FeatureCacheWarning
from ._features import ImageReadWarning
from ._openvino import OpenVINOCacheWarning
from ._regressor import FineTunedRegressor
from ._transformer import PretrainedFeatureTransformer
from .datasets import load_image_folder

__version__ = "0.1.0"


def __getattr__(name):
    # Names that need Keras are imported on first access, keeping
    # ``import skptm`` free of TensorFlow.
    if name in ("WeightsUnavailableError", "clear_network_cache", "fetch_weights", "network_cache_info"):
        from . import _networks

        return {
            "WeightsUnavailableError": _networks.WeightsUnavailableError,
            "clear_network_cache": _networks.clear_network_cache,
            "fetch_weights": _networks.fetch_weights,
            "network_cache_info": _networks.cache_info,
        }[name]
    if name in ("save", "load"):
        # skops is optional and imported on use, by these functions.
        from . import _persistence

        return getattr(_persistence, name)
    raise AttributeError(f"module 'skptm' has no attribute {name!r}")


__all__ = [
    "FeatureCacheWarning",
    "FineTunedClassifier",
    "FineTunedRegressor",
    "ImageReadError",
    "ImageReadWarning",
    "OpenVINOCacheWarning",
    "PretrainedFeatureTransformer",
    "WeightsUnavailableError",
    "clear_network_cache",
    "fetch_weights",
    "list_backbones",
    "load",
    "load_image_folder",
    "network_cache_info",
    "save",
]
