"""
=====================================================
Where the model looked: Grad-CAM heat maps
=====================================================

A fine-tuned classifier that scores well may still look at the wrong thing:
a watermark, the background, the frame. :func:`skptm.explain` computes
Grad-CAM heat maps (Selvaraju et al., ICCV 2017) of where a fitted
:class:`~skptm.FineTunedClassifier` found the evidence for a class, and
:func:`skptm.plot.explain` draws them over the images. Here a classifier
learns the themes of the sample photos, and the maps show what it used on
photos it did not train on.
"""

# %%
# Fine-tune on views of most photos, keep the others aside
# --------------------------------------------------------
# Views of one photo are near-duplicates, so whole photos are held out:
# the maps below are of photos the model never saw in any view.
#
# ImageNet weights come from Keras's cache, downloaded there once. Where they
# cannot be had (offline, as when these pages are built), the example runs
# on random weights at 64 px with fewer images and epochs, and says so in
# its output and titles: the maps then show the method working on a
# network that learned nothing, not where a pretrained one looks.
import tempfile

import numpy as np
from sklearn.model_selection import GroupShuffleSplit

import skptm
from skptm import FineTunedClassifier
from skptm.datasets import make_sample_views

try:
    skptm.fetch_weights(["mobilenet_v2"], verbose=0)
    WEIGHTS, INPUT_SIZE, VIEWS, EPOCHS, OFFLINE = "imagenet", None, 8, 10, ""
except skptm.WeightsUnavailableError:
    WEIGHTS, INPUT_SIZE, VIEWS, EPOCHS = None, 64, 3, 2
    OFFLINE = "\n(random weights: ImageNet weights could not be had here)"
print(f"weights={WEIGHTS}, input_size={INPUT_SIZE}{OFFLINE}")

workdir = tempfile.TemporaryDirectory(prefix="skptm-views-")
views = make_sample_views(workdir.name, views_per_photo=VIEWS, random_state=0)
train, test = next(
    GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0).split(views.paths, groups=views.groups)
)

clf = FineTunedClassifier(
    "mobilenet_v2",
    weights=WEIGHTS,
    input_size=INPUT_SIZE,
    finetune_epochs=EPOCHS,
    augment="light",
    random_state=0,
)
clf.fit(views.paths[train], np.asarray(views.target_names)[views.target[train]])
print(f"Held-out accuracy: {clf.score(views.paths[test], np.asarray(views.target_names)[views.target[test]]):.2f}")

# %%
# The heat maps
# -------------
# One map per image, at the image's own size, in [0, 1]: bright where the
# gradients of the predicted class's score weigh the last convolutional
# stage's activations most. Each title is the class explained and its
# predicted probability.
import matplotlib.pyplot as plt

import skptm.plot

# One view of each held-out photo.
firsts = np.unique(views.groups[test], return_index=True)[1]
shown = views.paths[test][firsts][:6]
maps = skptm.explain(clf, shown)
print([heat_map.shape for heat_map in maps])
fig = skptm.plot.explain(clf, shown, ncols=3, thumbnail_size=160, title="Where the classifier looked" + OFFLINE)
plt.show()

workdir.cleanup()

# %%
# Reading the maps
# ----------------
# The map is coarse (the last stage of a 224 px network is 7 x 7 cells) and
# shows evidence, not proof: a bright region is where the class's score was
# most sensitive. Check that it falls on the subject (the cell, the rocket,
# the grass) and not on a border or a caption; when it falls on the wrong
# thing, more varied training images or cropping that thing away usually
# help more than a deeper fine-tuning. ``layer=`` picks an earlier stage for
# a finer map; ``target=`` explains another class than the predicted one.
