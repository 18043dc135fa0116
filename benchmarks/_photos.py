"""Camera-sized JPEGs for the benchmarks, written to a folder."""

from pathlib import Path

import numpy as np
from PIL import Image


def write_labelled_jpegs(folder, n, size=(1920, 1280), detail=(240, 160), seed=0):
    """``n`` JPEGs of ``size`` (width, height) in two classes that differ in colour.

    Each is random noise at ``detail`` resolution, upscaled: decoding costs
    what a photo of that size costs, and no two files are equal (the
    feature cache keys files by content). Returns ``(paths, labels)``.
    """
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for i in range(n):
        image = rng.integers(0, 200, (detail[1], detail[0], 3), dtype=np.uint8)
        image[..., i % 2 * 2] += 50
        path = Path(folder) / f"{i:04d}.jpg"
        Image.fromarray(image).resize(size, Image.Resampling.BILINEAR).save(path, quality=90)
        paths.append(str(path))
        labels.append(i % 2)
    return paths, np.array(labels)
