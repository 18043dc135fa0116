"""
=====================================================
Which approach suits these images: ``skptm.compare``
=====================================================

Before choosing between feature extraction and fine-tuning, ask the data.
:func:`skptm.compare` cross-validates, on the same folds, a baseline with no
pretrained network (a logistic regression on the raw pixels, shrunk to
16 x 16), a linear probe on each of a few networks, and fine-tuning at two
depths on the best of them, then says in plain words which approach the
numbers favour. Here it runs on views of the sample photos, grouped by the
photo they were cut from.
"""

# %%
# The data: views of the sample photos
# ------------------------------------
# :func:`skptm.datasets.make_sample_views` cuts each of the sixteen sample
# photos into a few random crops (some mirrored) that keep its theme, and
# writes them as JPEG files in one folder per theme; ``views.groups`` names
# the photo each view came from, so that views of one photo stay in one
# fold.
#
# ImageNet weights come from Keras's cache, downloaded there once. Where they
# cannot be had (offline, as when these pages are built), the example runs
# on random weights at 64 px with fewer images and epochs, and says so in
# its output and titles: it then shows the comparison working, not what a
# pretrained network sees in the photos.
import tempfile

import skptm
from skptm.datasets import make_sample_views

BACKBONES = ["mobilenet_v3_small", "efficientnet_b0"]
try:
    skptm.fetch_weights(BACKBONES, verbose=0)
    WEIGHTS, INPUT_SIZE, VIEWS, EPOCHS, OFFLINE = "imagenet", None, 8, 10, ""
except skptm.WeightsUnavailableError:
    WEIGHTS, INPUT_SIZE, VIEWS, EPOCHS = None, 64, 3, 2
    OFFLINE = "\n(random weights: ImageNet weights could not be had here)"
print(f"weights={WEIGHTS}, input_size={INPUT_SIZE}{OFFLINE}")

workdir = tempfile.TemporaryDirectory(prefix="skptm-views-")
views = make_sample_views(workdir.name, views_per_photo=VIEWS, random_state=0)
# With your own photos, one sub-folder per class:
# views = skptm.load_image_folder("my_photos/")

# %%
# The comparison
# --------------
# ``time_budget`` bounds the whole run: approaches run cheapest first, and
# those that would start after the budget is spent are listed as skipped,
# never silently dropped. ``random_state`` fixes the folds, so a second run
# gives the same table.
result = skptm.compare(
    views.paths,
    views.target,
    groups=views.groups,
    backbones=BACKBONES,
    cv=3,
    weights=WEIGHTS,
    input_size=INPUT_SIZE,
    finetune_epochs=EPOCHS,
    time_budget=600,
    random_state=0,
    verbose=0,
)
print(result)

# %%
# The same table as a picture: each approach's mean score over the folds,
# with its spread and the time it took; the dotted line is the raw-pixel
# baseline, which a pretrained network has to beat to be worth its cost.
import matplotlib.pyplot as plt

fig = result.plot()
fig.axes[0].set_title("Cross-validated accuracy by approach" + OFFLINE, fontsize=10)
plt.show()

workdir.cleanup()

# %%
# Reading it
# ----------
# The recommendation follows from the table: the cheapest approach that no
# other beats by more than the folds' spread. When the best linear probe
# barely beats the raw pixels, the images look unlike what the network
# learned from, and fine-tuning (or more data) is where to look; when
# fine-tuning does not beat the probe beyond the spread, the probe is the
# better buy. With random weights, as in an offline build of these pages,
# the scores only show the comparison at work.
