"""
=====================================================
A t-SNE map of a photo collection
=====================================================

A map puts similar images close together, which is a quick way to see what
a network's features notice in a collection. The sixteen sample photos are
turned into feature vectors by :class:`~skptm.PretrainedFeatureTransformer`,
laid out in 2-D by scikit-learn's :class:`~sklearn.manifold.TSNE` and drawn
as thumbnails by :func:`skptm.plot.embedding`, beside a PCA map of the same
features.
"""

# %%
# Features of the collection
# --------------------------
# ImageNet weights come from Keras's cache, downloaded there once. Where they
# cannot be had (offline, as when these pages are built), the example runs
# on random weights at 64 px, and says so in its output
# and titles: it then shows the pipeline working, not what a pretrained
# network sees in the photos.

import skptm
from skptm import PretrainedFeatureTransformer
from skptm.datasets import load_sample_photos

try:
    skptm.fetch_weights(["efficientnet_b0"], verbose=0)
    WEIGHTS, INPUT_SIZE, OFFLINE = "imagenet", None, ""
except skptm.WeightsUnavailableError:
    WEIGHTS, INPUT_SIZE = None, 64
    OFFLINE = "\n(random weights: ImageNet weights could not be had here)"
print(f"weights={WEIGHTS}, input_size={INPUT_SIZE}{OFFLINE}")

photos = load_sample_photos()
# With your own photos, a flat folder will do (no labels are needed):
# paths = sorted(pathlib.Path("my_photos").glob("*.jpg"))
extractor = PretrainedFeatureTransformer("efficientnet_b0", weights=WEIGHTS, input_size=INPUT_SIZE)
features = extractor.transform(photos.paths)

# %%
# The t-SNE layout
# ----------------
# t-SNE's ``perplexity`` is roughly the number of neighbours each point
# attends to, and must be smaller than the number of images: scikit-learn's
# default of 30 fails on sixteen. About a third of the collection, at most
# 30, is a reasonable start. ``trustworthiness`` (1 is best) says how well
# the map keeps each image's nearest neighbours in feature space.
from sklearn.manifold import TSNE, trustworthiness

perplexity = min(30.0, (len(features) - 1) / 3)
coordinates = TSNE(perplexity=perplexity, init="pca", random_state=0).fit_transform(features)
print(f"perplexity {perplexity:.1f}, trustworthiness {trustworthiness(features, coordinates, n_neighbors=3):.2f}")

# %%
# The maps
# --------
# A PCA of the same features, for comparison: it keeps the directions of
# largest variance, where t-SNE keeps neighbourhoods.
# :func:`skptm.plot.embedding` takes 2-D coordinates as they are (given
# the features, it computes a PCA or t-SNE itself with ``method=``). Each
# thumbnail is captioned with its theme, to read the map against it.
import matplotlib.pyplot as plt
from sklearn.decomposition import PCA

import skptm.plot

maps = {
    f"t-SNE, perplexity {perplexity:.0f}": coordinates,
    "PCA": PCA(n_components=2).fit_transform(features),
}
themes = [photos.target_names[label] for label in photos.target]
fig, axes = plt.subplots(1, 2, figsize=(12, 6))
for ax, (name, xy) in zip(axes, maps.items(), strict=True):
    skptm.plot.embedding(xy, photos.paths, thumbnail_size=56, ax=ax)
    ax.margins(0.15)  # room for the thumbnails at the edges
    for theme, (x, y) in zip(themes, xy, strict=True):
        ax.annotate(theme, (x, y), xytext=(0, -34), textcoords="offset points", ha="center", fontsize=7)
    ax.set_title(name)
fig.suptitle("The sixteen sample photos, mapped by their EfficientNetB0 features" + OFFLINE)
fig.tight_layout()
plt.show()

# %%
# What you see, and what to try
# -----------------------------
# With ImageNet weights, photos of a theme should gather: the ground
# textures together, the microscopy images together, the space photos
# nearby, the varied everyday photos spread between them. t-SNE keeps
# neighbourhoods but not distances between groups; PCA keeps the main
# directions but crowds the rest. With random weights (the quick mode of the
# documentation build) the maps follow colour and brightness only.
#
# On a collection of thousands, compute the features once (``cache=`` or
# ``skptm embed``), draw a sample of the thumbnails, and try UMAP (the
# ``umap-learn`` package) for a layout that keeps more of the global
# structure.
