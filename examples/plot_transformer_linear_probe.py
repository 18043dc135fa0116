"""
=====================================================
A convolutional network and DINOv2: linear probes
=====================================================

The same linear probe (:class:`~skptm.PretrainedFeatureTransformer`, a
:class:`~sklearn.preprocessing.StandardScaler` and a
:class:`~sklearn.linear_model.LogisticRegression` in one pipeline) on two
backbones: ResNet50 from ``keras.applications``, supervised on ImageNet, and
DINOv2-small from KerasHub, self-supervised on 142 million curated images
(``pip install -e ".[hub]"``). The backbone is one parameter: the rest of
the pipeline, the cross-validation and the scores are the same code.
"""

# %%
# The data and the weights
# ------------------------
# Views of the sample photos (random crops, some mirrored, of sixteen photos
# in four themes), written as files and grouped by their source photo, so
# that no photo is in the training and the test folds at once.
#
# Pretrained weights come from Keras's and KerasHub's caches, downloaded
# there once. Where they cannot be had (offline, as when these pages are
# built), both backbones run on random weights at a small size, and the
# example says so: it then shows the code working, not which network sees
# the photos better.
import tempfile

import skptm
from skptm.datasets import make_sample_views

try:
    skptm.fetch_weights(["resnet50", "dinov2_small"], verbose=0)
    WEIGHTS, SIZES, VIEWS, OFFLINE = "imagenet", {"resnet50": None, "dinov2_small": None}, 8, ""
except skptm.WeightsUnavailableError:
    WEIGHTS, SIZES, VIEWS = None, {"resnet50": 64, "dinov2_small": 56}, 3
    OFFLINE = "\n(random weights: ImageNet weights could not be had here, nor DINOv2's)"
print(f"weights={WEIGHTS}, input sizes {SIZES}{OFFLINE}")

workdir = tempfile.TemporaryDirectory(prefix="skptm-views-")
views = make_sample_views(workdir.name, views_per_photo=VIEWS, random_state=0)
print(views.DESCR)

# %%
# One pipeline, two backbones
# ---------------------------
# For DINOv2, ``pooling="cls+avg"`` puts the class token and the mean of the
# patch tokens side by side: the linear-probe feature of DINOv2's authors.
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skptm import PretrainedFeatureTransformer

cv = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=0)
scores = {}
for backbone, pooling in [("resnet50", "avg"), ("dinov2_small", "cls+avg")]:
    pipe = make_pipeline(
        PretrainedFeatureTransformer(backbone, weights=WEIGHTS, input_size=SIZES[backbone], pooling=pooling),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )
    scores[backbone] = cross_val_score(pipe, views.paths, views.target, groups=views.groups, cv=cv)
    print(f"{backbone:>13}: accuracy {scores[backbone].mean():.3f} (folds {scores[backbone].round(3)})")

# %%
# The scores side by side
# -----------------------
# One bar per backbone (the mean over the folds), one dot per fold.
import matplotlib.pyplot as plt
import numpy as np

fig, ax = plt.subplots(figsize=(5, 3))
names = list(scores)
ax.bar(names, [scores[name].mean() for name in names], color=["#7aa6c2", "#d98c5f"])
for i, name in enumerate(names):
    ax.plot(np.full(len(scores[name]), i), scores[name], "k.", markersize=8)
ax.set_ylim(0, 1)
ax.set_ylabel("accuracy (grouped 3-fold)")
ax.set_title("Linear probe on views of the sample photos" + OFFLINE, fontsize=10)
plt.tight_layout()
plt.show()

workdir.cleanup()

# %%
# What to try on your images
# --------------------------
# DINOv2's features transfer well to images far from ImageNet's (medical,
# satellite, product photos); on photos close to ImageNet, a supervised
# network may do as well. Measure on your own images, with
# :func:`skptm.compare` or a grid search over ``backbone``, which may mix
# both families: ``{"features__backbone": ["resnet50", "dinov2_small"]}``.
