"""
=====================================================
Choosing the backbone and the unfreeze depth
=====================================================

:class:`~skptm.FineTunedClassifier` is a scikit-learn estimator, so
:class:`~sklearn.model_selection.GridSearchCV` can choose its parameters:
here which pretrained network to start from (``backbone``) and how many of
its top layers to fine-tune (``unfreeze``; ``0`` keeps the network frozen
and fits only the linear head, a linear probe). The folds are grouped by
source photo.
"""

# %%
# The data: views of the sample photos
# ------------------------------------
# Random crops of the sixteen sample photos (some mirrored), written as JPEG
# files in one folder per theme (:func:`skptm.datasets.make_sample_views`). Views of one photo
# are near-duplicates, so they share a group and never straddle a training
# and a test fold.
#
# ImageNet weights come from Keras's cache, downloaded there once. Where they
# cannot be had (offline, as when these pages are built), the example runs
# on random weights at 64 px with fewer images and epochs, and says so in its output
# and titles: it then shows the pipeline working, not what a pretrained
# network sees in the photos.
import tempfile

import skptm
from skptm.datasets import make_sample_views

try:
    skptm.fetch_weights(["mobilenet_v3_small", "mobilenet_v2"], verbose=0)
    WEIGHTS, INPUT_SIZE, VIEWS, EPOCHS, OFFLINE = "imagenet", None, 8, 10, ""
except skptm.WeightsUnavailableError:
    WEIGHTS, INPUT_SIZE, VIEWS, EPOCHS = None, 64, 3, 2
    OFFLINE = "\n(random weights: ImageNet weights could not be had here)"
print(f"weights={WEIGHTS}, input_size={INPUT_SIZE}{OFFLINE}")

workdir = tempfile.TemporaryDirectory(prefix="skptm-views-")
views = make_sample_views(workdir.name, views_per_photo=VIEWS, random_state=0)
# With your own photos, one sub-folder per class:
# views = skptm.load_image_folder("my_photos/")
groups = views.groups
print(views.DESCR)

# %%
# The search
# ----------
# Two light networks and two depths: ``unfreeze=0`` (the linear probe) and
# ``unfreeze=8`` (skptm's default). Every candidate is fitted once per fold,
# so the grid's cost multiplies quickly: keep it small, and widen it where
# the first results point. ``backbone`` names come from
# ``skptm.list_backbones()``.
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

from skptm import FineTunedClassifier

param_grid = {"backbone": ["mobilenet_v3_small", "mobilenet_v2"], "unfreeze": [0, 8]}
search = GridSearchCV(
    FineTunedClassifier(
        weights=WEIGHTS,
        input_size=INPUT_SIZE,
        finetune_epochs=EPOCHS,
        augment="light",
        random_state=0,
    ),
    param_grid,
    cv=StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=0),
)
search.fit(views.paths, views.target, groups=groups)
print(f"Best: {search.best_params_}, mean accuracy {search.best_score_:.3f}")

# %%
# The results
# -----------
# ``cv_results_`` holds every candidate's scores and times; pandas (an
# optional dependency) shows it as a table.
columns = ["param_backbone", "param_unfreeze", "mean_test_score", "std_test_score", "mean_fit_time"]
try:
    import pandas as pd
except ImportError:
    for row in zip(*(search.cv_results_[column] for column in columns)):
        print(*row)
else:
    print(pd.DataFrame(search.cv_results_)[columns].to_string(index=False))

# %%
# The mean test accuracy of each candidate, as a grid.
import matplotlib.pyplot as plt
import numpy as np

backbones, depths = param_grid["backbone"], param_grid["unfreeze"]
scores = np.empty((len(backbones), len(depths)))
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True):
    scores[backbones.index(params["backbone"]), depths.index(params["unfreeze"])] = score

fig, ax = plt.subplots(figsize=(6.5, 4))
image = ax.imshow(scores, vmin=0, vmax=1, cmap="viridis")
for (row, column), score in np.ndenumerate(scores):
    ax.text(column, row, f"{score:.2f}", ha="center", va="center", color="white" if score < 0.6 else "black")
ax.set_xticks(range(len(depths)), [f"unfreeze={depth}" for depth in depths])
ax.set_yticks(range(len(backbones)), backbones)
ax.set_title("Mean test accuracy (grouped 2-fold CV)" + OFFLINE, fontsize=10)
fig.colorbar(image, ax=ax)
fig.tight_layout()
plt.show()

workdir.cleanup()

# %%
# What you see, and what to try
# -----------------------------
# With ImageNet weights, the scores compare what each network's features
# and each depth of fine-tuning bring to these four themes. With so few
# photos per fold, differences of a few points are noise: read
# ``std_test_score`` before choosing. With random weights (the quick mode of
# the documentation build) the scores only show that the search runs.
#
# The refitted ``search.best_estimator_`` predicts directly
# (``search.predict(paths)``). Next, try ``finetune_learning_rate`` or
# ``augment`` in the grid, a heavier network such as ``efficientnet_b0``,
# or ``cache="features/"`` so that the frozen features of each image are
# computed once per backbone across the folds.
