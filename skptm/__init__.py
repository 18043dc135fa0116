"""skptm: pretrained image networks as scikit-learn estimators.

Importing skptm does not import TensorFlow or Keras, and changes nothing in
the process; networks are built on first use.
"""

from ._backbones import list_backbones
from ._classifier import FineTunedClassifier
from ._clustering import cluster_images
from ._compare import compare
from ._comparison import ApproachScore, ComparisonResult
from ._disk_caches import clear_disk_caches, disk_cache_usage
from ._explain import explain
from ._regressor import FineTunedRegressor
from ._transformer import PretrainedFeatureTransformer
from ._zeroshot import ZeroShotClassifier
from .datasets import load_image_folder
from .exceptions import (
    CalibrationWarning,
    FeatureCacheWarning,
    ImageReadError,
    ImageReadWarning,
    OpenVINOCacheWarning,
    WeightsUnavailableError,
)

__version__ = "0.1.0"


def __getattr__(name):
    # Names that need Keras are imported on first access, keeping
    # ``import skptm`` free of TensorFlow.
    if name in ("clear_network_cache", "fetch_weights", "network_cache_info"):
        from . import networks

        return {
            "clear_network_cache": networks.clear_network_cache,
            "fetch_weights": networks.fetch_weights,
            "network_cache_info": networks.cache_info,
        }[name]
    if name == "calibrate":
        from .engines.calibration import calibrate

        return calibrate
    if name in ("plot", "dask"):
        # Submodules with optional dependencies (matplotlib, dask), loaded on
        # first use so that ``import skptm`` then ``skptm.plot.montage(...)`` works.
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name in ("save", "load"):
        # skops is optional and imported on use, by these functions.
        from . import _persistence

        return getattr(_persistence, name)
    raise AttributeError(f"module 'skptm' has no attribute {name!r}")


__all__ = [
    "ApproachScore",
    "CalibrationWarning",
    "ComparisonResult",
    "FeatureCacheWarning",
    "FineTunedClassifier",
    "FineTunedRegressor",
    "ImageReadError",
    "ImageReadWarning",
    "OpenVINOCacheWarning",
    "PretrainedFeatureTransformer",
    "WeightsUnavailableError",
    "ZeroShotClassifier",
    "calibrate",
    "clear_disk_caches",
    "clear_network_cache",
    "cluster_images",
    "compare",
    "fetch_weights",
    "disk_cache_usage",
    "explain",
    "list_backbones",
    "load",
    "load_image_folder",
    "network_cache_info",
    "save",
]
