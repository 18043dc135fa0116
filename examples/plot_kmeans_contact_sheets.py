"""
=====================================================
Clustering photos with KMeans, with contact sheets
=====================================================

No labels needed: :class:`~skptm.PretrainedFeatureTransformer` turns the
sixteen sample photos into feature vectors, :class:`~sklearn.cluster.KMeans`
groups them, and :func:`skptm.plot.montage` draws one contact sheet per
cluster, the photo nearest to the cluster's centre first. The photos' themes
are known here, so the adjusted Rand index says how far the clusters follow
them.
"""

# %%
# Features of the photos
# ----------------------
# ``fit`` of the transformer learns nothing, so ``transform`` alone is
# enough. The vectors are scaled to unit length, so that KMeans compares
# their directions (a cosine similarity) rather than their magnitudes, which
# vary with contrast and detail more than with content.
#
# ImageNet weights come from Keras's cache, downloaded there once. Where they
# cannot be had (offline, as when these pages are built), the example runs
# on random weights at 64 px, and says so in its output
# and titles: it then shows the pipeline working, not what a pretrained
# network sees in the photos.
from sklearn.preprocessing import normalize

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
features = normalize(extractor.transform(photos.paths))
print(f"{features.shape[0]} photos, {features.shape[1]} features each")

# %%
# Four clusters
# -------------
# ``KMeans.transform`` gives each photo's distance to every centre; sorting
# a cluster's members by their distance to its own centre puts its most
# typical photo first.
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

kmeans = KMeans(n_clusters=4, n_init=10, random_state=0).fit(features)
distances = kmeans.transform(features)
ari = adjusted_rand_score(photos.target, kmeans.labels_)
print(f"Adjusted Rand index against the themes: {ari:.2f} (1: the themes exactly, 0: chance)")

# %%
# One contact sheet per cluster
# -----------------------------
# Each caption is the photo's theme and its distance to the centre.
import matplotlib.pyplot as plt

import skptm.plot

for cluster in range(kmeans.n_clusters):
    members = np.flatnonzero(kmeans.labels_ == cluster)
    members = members[np.argsort(distances[members, cluster])]
    captions = [f"{photos.target_names[photos.target[i]]} {distances[i, cluster]:.2f}" for i in members]
    skptm.plot.montage(
        photos.paths[members],
        captions,
        ncols=max(4, len(members)),
        thumbnail_size=96,
        title=f"Cluster {cluster}: {len(members)} photo(s), nearest to the centre first" + OFFLINE,
    )
plt.show()

# %%
# What you see, and what to try
# -----------------------------
# With ImageNet weights, the clusters should mostly follow the themes: the
# network has learned what separates a brick wall from a rocket launch, and
# the adjusted Rand index rises towards 1. The everyday theme is the least
# uniform (a cat, coins, portraits...) and the likeliest to split or to
# borrow a photo. With random weights (the quick mode of the documentation
# build) the clusters follow colour and brightness: the sheets show the
# pipeline, not image content.
#
# Try ``n_clusters`` other than 4, another backbone, or
# ``layer=`` an inner layer of the network (lower layers see textures,
# higher ones objects); with many images,
# :class:`~sklearn.cluster.MiniBatchKMeans` scales better.
