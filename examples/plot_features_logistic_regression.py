"""
=====================================================
Pretrained features and a logistic regression
=====================================================

A pretrained network turns every image into a feature vector, and a plain
scikit-learn classifier learns the classes from those vectors. Here
:class:`~skptm.PretrainedFeatureTransformer` and a
:class:`~sklearn.linear_model.LogisticRegression` sit in one
:class:`~sklearn.pipeline.Pipeline`, cross-validated on views of the sample
photos with their source photo as the group, and compared with a
majority-class baseline.
"""

# %%
# The data: views of the sample photos, as files
# ----------------------------------------------
# :func:`skptm.datasets.load_sample_photos` has sixteen real photos in four
# themes (everyday 7, ground 3, microscopy 3, space 3). Sixteen images are
# few to learn from, so each photo is cut into a few random crops (some
# mirrored), which keep its theme (:func:`skptm.datasets.make_sample_views`). They are written
# as JPEG files in one folder per class and read back with
# :func:`skptm.load_image_folder`, as your own folder would be.
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
    skptm.fetch_weights(["efficientnet_b0"], verbose=0)
    WEIGHTS, INPUT_SIZE, VIEWS, OFFLINE = "imagenet", None, 8, ""
except skptm.WeightsUnavailableError:
    WEIGHTS, INPUT_SIZE, VIEWS = None, 64, 3
    OFFLINE = "\n(random weights: ImageNet weights could not be had here)"
print(f"weights={WEIGHTS}, input_size={INPUT_SIZE}{OFFLINE}")

workdir = tempfile.TemporaryDirectory(prefix="skptm-views-")
views = make_sample_views(workdir.name, views_per_photo=VIEWS, random_state=0)
# With your own photos, one sub-folder per class:
# views = skptm.load_image_folder("my_photos/")
print(views.DESCR)

# %%
# A few of the views, each captioned with the photo it was cut from:
import matplotlib.pyplot as plt

import skptm.plot

groups = views.groups
skptm.plot.montage(views.paths[:12], groups[:12], ncols=6, thumbnail_size=96, title="Views of the sample photos")
plt.show()

# %%
# Views of one photo are near-duplicates: if some were in the training folds
# and others in the test fold, the classifier could recognise the photo
# rather than its theme, and the score would measure that leak. The source
# photo is therefore the *group*: all views of a photo stay in one fold.
# :class:`~sklearn.model_selection.StratifiedGroupKFold` also keeps the
# themes' proportions about equal across folds.
from sklearn.model_selection import StratifiedGroupKFold

cv = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=0)

# %%
# The pipeline and its cross-validated predictions
# ------------------------------------------------
# The transformer learns nothing in ``fit``, so it can sit inside the
# pipeline without leaking anything between folds. Each network applies its
# own preprocessing: pass raw images or paths, never ``preprocess_input``.
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skptm import PretrainedFeatureTransformer

pipe = make_pipeline(
    PretrainedFeatureTransformer("efficientnet_b0", weights=WEIGHTS, input_size=INPUT_SIZE),
    StandardScaler(),
    LogisticRegression(max_iter=1000),
)
predicted = cross_val_predict(pipe, views.paths, views.target, groups=groups, cv=cv)
accuracy = accuracy_score(views.target, predicted)
print(f"Pipeline, out-of-fold accuracy: {accuracy:.3f}")

# %%
# A baseline
# ----------
# Everyday photos are the most frequent theme (7 of 16): always predicting
# it scores about 0.44. A model is only useful above that line.
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import cross_val_score

baseline = cross_val_score(
    DummyClassifier(strategy="most_frequent"), views.paths, views.target, groups=groups, cv=cv
).mean()
print(f"Majority-class baseline, mean accuracy: {baseline:.3f}")

# %%
# Where the errors go
# -------------------
# Rows are the true themes, columns the predicted ones, counted over the
# out-of-fold predictions (every view is predicted once, by the model that
# did not see its photo).
from sklearn.metrics import ConfusionMatrixDisplay

display = ConfusionMatrixDisplay.from_predictions(
    views.target, predicted, display_labels=views.target_names, colorbar=False
)
display.ax_.set_title(
    f"EfficientNetB0 features + logistic regression\naccuracy {accuracy:.2f}, baseline {baseline:.2f}" + OFFLINE,
    fontsize=10,
)
plt.tight_layout()
plt.show()

workdir.cleanup()

# %%
# What you see, and what to try
# -----------------------------
# With ImageNet weights the features describe what the photos show, so the
# diagonal should dominate and the accuracy stand well above the baseline.
# With random weights (the quick mode of the documentation build) the
# network only passes on colour and texture statistics: the figure shows
# that the pipeline runs, not what a pretrained network can do.
#
# To go further:
#
# * cross-validate with :class:`~sklearn.model_selection.StratifiedKFold`,
#   which ignores the groups: whatever the score gains there is the leak,
#   not skill;
# * try another ``backbone`` (``skptm.list_backbones()`` lists them), or
#   ``cache="features/"`` so that each image is computed once across folds
#   and grid searches;
# * use :class:`~skptm.FineTunedClassifier` when your images look unlike
#   ImageNet's (see the fine-tuning examples).
