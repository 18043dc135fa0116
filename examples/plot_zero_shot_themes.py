"""
======================================================
Zero-shot classification of the sample photos by theme
======================================================

:class:`~skptm.ZeroShotClassifier` classifies images into classes given by
name, with the two towers of an image-text model (CLIP here; SigLIP works
the same way): each class name, put into a few prompts, becomes a text
embedding, and each image goes to the class whose embedding is nearest its
own. No training image is needed (``pip install -e ".[hub]"``).
"""

# %%
# The photos and the class names
# ------------------------------
# The sixteen sample photos, in four themes. The class names are written as
# a caption would say them; the prompt templates (CLIP's ensemble by
# default) put each into a sentence.
import skptm
from skptm.datasets import load_sample_photos

photos = load_sample_photos()
captions = {
    "everyday": "an everyday object or scene",
    "ground": "a ground texture",
    "microscopy": "a microscope image",
    "space": "a photo from space",
}
print(photos.target_names)

# %%
# Fit without images, predict the themes
# --------------------------------------
# CLIP's weights and its tokenizer come with the KerasHub preset, downloaded
# once into KerasHub's cache. Random weights cannot name anything, so where
# the preset cannot be had (offline, as when these pages are built), the
# example says so and shows the photos only.
import matplotlib.pyplot as plt
import numpy as np

import skptm.plot
from skptm import ZeroShotClassifier

try:
    skptm.fetch_weights(["clip_vit_base_patch32"], verbose=0)
except skptm.WeightsUnavailableError:
    print("The CLIP preset could not be had here (offline): zero-shot classification needs its trained towers.")
    skptm.plot.montage(
        photos.paths,
        [photos.target_names[t] for t in photos.target],
        ncols=8,
        thumbnail_size=96,
        title="The sample photos, by theme (the CLIP preset could not be had here)",
    )
    plt.show()
else:
    clf = ZeroShotClassifier("clip_vit_base_patch32", classes=list(captions.values())).fit(None)
    predicted = clf.predict(photos.paths)
    truth = np.asarray([captions[photos.target_names[t]] for t in photos.target])
    print(f"zero-shot accuracy: {np.mean(predicted == truth):.3f}")
    skptm.plot.montage(photos.paths, list(predicted), ncols=8, thumbnail_size=96, title="CLIP's zero-shot themes")
    plt.show()

# %%
# Going further
# -------------
# * ``predict_proba`` gives a softmax over the classes for CLIP, and an
#   independent sigmoid per class for SigLIP, as their authors calibrate them.
# * With a few labelled images, ``fit(X, y)`` with ``image_weight=0.5``
#   blends each class's mean image embedding into its prototype.
# * On the command line: ``skptm predict --classes cat,dog photos/ -o out.csv``.
