"""Shared settings of the gallery examples: realistic by default, quick for CI.

This is not an example: sphinx-gallery only runs files named ``plot_*.py``.
Every example imports it with ``import _quick``, which works both when
sphinx-gallery runs the example (it runs each example from this folder and
adds the folder to ``sys.path``) and for ``python examples/plot_x.py``
(Python puts the script's folder first on ``sys.path``).

By default the examples run as you would: ImageNet weights (downloaded once
into Keras's cache; offline, ``skptm.WeightsUnavailableError`` says which
file is missing and where it belongs), each network at its own input size
(224 px for most), all epochs and more images.

With the environment variable ``SKPTM_EXAMPLES_QUICK=1`` (what the
documentation build sets; any value but ``0`` or empty) they use randomly
initialised networks (``weights=None``: no download) at 64 px, two
fine-tuning epochs and fewer images, so each runs in seconds. The results then show that the pipeline
runs, not what the network sees in the photos; every example says so in
its printed output and in its figure titles.

What it holds: the switch (``QUICK``) and what it sets (``WEIGHTS``,
``INPUT_SIZE``, ``EPOCHS``, ``VIEWS_PER_PHOTO``); ``banner()`` and
``title()`` for the printed output and figure titles; and
:func:`write_views` with :func:`source_photo`, which turn the sixteen sample
photos into a larger labelled set of image files, with the photo each file
came from as its cross-validation group.
"""

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: True when ``SKPTM_EXAMPLES_QUICK`` is set to anything but ``""`` or ``"0"``.
QUICK = os.environ.get("SKPTM_EXAMPLES_QUICK", "0") not in ("", "0")

#: ``weights`` for every estimator: ImageNet, or a random initialisation.
WEIGHTS = None if QUICK else "imagenet"

#: ``input_size`` for every estimator: ``None`` is the network's own size.
INPUT_SIZE = 64 if QUICK else None

#: ``finetune_epochs`` for the fine-tuning examples (10 is skptm's default).
EPOCHS = 2 if QUICK else 10

#: Views (random crops, some mirrored) written per sample photo.
VIEWS_PER_PHOTO = 3 if QUICK else 8

#: What quick results mean; empty in the realistic mode.
NOTE = "random weights: shows the pipeline, not image content" if QUICK else ""


def banner():
    """One line saying which mode runs, for the example's printed output."""
    if QUICK:
        return (
            f"Quick mode (SKPTM_EXAMPLES_QUICK=1): weights=None, {INPUT_SIZE} px inputs, "
            f"fewer images and epochs; {NOTE}."
        )
    return (
        "ImageNet weights at each network's own input size "
        "(set SKPTM_EXAMPLES_QUICK=1 for a quick run with random weights)."
    )


def title(text):
    """A figure title, marked in quick mode."""
    return f"{text}\n({NOTE})" if QUICK else text


def write_views(photos, folder, views_per_photo=VIEWS_PER_PHOTO, seed=0):
    """Write random crops of each photo as JPEG files, one sub-folder per class.

    Each view keeps 60-90% of the photo's width and height at a random
    place and is mirrored half of the time: it shows the same subject, so
    it keeps the photo's label. Files are named ``<photo>_<k>.jpg`` under
    ``folder/<class name>/``, the layout :func:`skptm.load_image_folder`
    reads.

    Views of one photo are near-duplicates: keep them in the same
    cross-validation fold (``groups=``), or the score measures memory.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    for path, label in zip(photos.paths, photos.target, strict=True):
        class_folder = folder / photos.target_names[label]
        class_folder.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
        width, height = image.size
        for k in range(views_per_photo):
            w, h = (int(side * rng.uniform(0.6, 0.9)) for side in (width, height))
            left, top = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
            view = image.crop((left, top, left + w, top + h))
            if rng.random() < 0.5:
                view = ImageOps.mirror(view)
            view.save(class_folder / f"{Path(path).stem}_{k}.jpg", quality=90)
    return folder


def source_photo(path):
    """The photo a view was cut from (its file name without ``_<k>``): the group."""
    return Path(path).stem.rsplit("_", 1)[0]
