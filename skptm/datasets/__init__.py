"""Image collections on disk as scikit-learn datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch, check_random_state

#: The folder of sample photos shipped with skptm (one sub-folder per theme).
SAMPLE_PHOTOS = Path(__file__).resolve().parent / "photos"

#: File name extensions read as images (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def load_image_folder(
    path,
    *,
    categories=None,
    extensions=IMAGE_EXTENSIONS,
    shuffle=True,
    random_state=0,
    follow_links=False,
):
    """Load a folder of class sub-folders as image paths and labels.

    The layout ``keras.utils.image_dataset_from_directory`` and
    ``sklearn.datasets.load_files`` expect: one sub-folder per class,
    holding that class's images (at any depth below it)::

        photos/
            cats/  001.jpg  002.png ...
            dogs/  a.jpg  more/b.jpg ...

    The result goes straight into ``fit``, ``cross_val_score`` or
    ``GridSearchCV``; images are not decoded here.

    Parameters
    ----------
    path : str or path
        The folder holding one sub-folder per class.
    categories : list of str or None, default=None
        Only these sub-folders, in this order (class ``i`` is
        ``categories[i]``); ``None`` takes every sub-folder, sorted by name.
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        File name endings read as images (case-insensitive); other files,
        and hidden files and folders, are skipped.
    shuffle : bool, default=True
        Shuffle the images, as ``load_files`` does (an order by class would
        leave classes out of unshuffled folds); ``False`` keeps them sorted
        by class, then path.
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffle.
    follow_links : bool, default=False
        Follow symbolic links to folders inside the class folders (a class
        folder that is itself a link is always read).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        paths : ndarray of str objects, shape (n_images,)
            Absolute paths of the images.
        target : ndarray of int, shape (n_images,)
            Class index of each image.
        target_names : list of str
            The class names (sub-folder names), in index order.
        DESCR : str
            The folder and the number of images of each class.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a folder, or a name in ``categories`` is not a
        sub-folder of it.
    PermissionError
        If a folder below it cannot be listed (its images would be left out).
    ValueError
        If no image is found, or ``categories`` names a folder twice.

    Examples
    --------
    >>> from skptm import load_image_folder
    >>> photos = load_image_folder("photos/")  # doctest: +SKIP
    >>> photos.target_names  # doctest: +SKIP
    ['cats', 'dogs']
    >>> cross_val_score(pipeline, photos.paths, photos.target)  # doctest: +SKIP
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{os.fspath(path)!r} is not a folder: pass a folder holding one sub-folder per class.")
    found = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if categories is None:
        categories = found
    else:
        repeated = sorted({name for name in categories if list(categories).count(name) > 1})
        if repeated:
            raise ValueError(
                f"categories names {repeated[0]!r} more than once: each class folder is one class. "
                f"Received: categories={list(categories)!r}"
            )
        missing = [name for name in categories if name not in found]
        if missing:
            raise FileNotFoundError(
                f"No sub-folder {missing[0]!r} in {os.fspath(path)!r}; its class folders are: {found}."
            )
    endings = tuple(ending.lower() for ending in extensions)
    paths, target = [], []
    for index, name in enumerate(categories):
        images = collect_images(root / name, extensions=endings, follow_links=follow_links)
        images = [Path(os.path.abspath(image)) for image in images]  # a linked file keeps its own path
        paths.extend(images)
        target.extend([index] * len(images))
    if not paths:
        raise ValueError(
            f"No images in the class sub-folders of {os.fspath(path)!r} (looked for files ending in "
            f"{', '.join(endings)}; sub-folders: {found})."
        )
    paths = np.array([str(p) for p in paths], dtype=object)
    target = np.array(target, dtype=int)
    if shuffle:
        order = check_random_state(random_state).permutation(len(paths))
        paths, target = paths[order], target[order]
    counts = np.bincount(target, minlength=len(categories))
    description = "\n".join(
        [f"Images in {root.resolve()}: {len(paths)} in {len(categories)} classes."]
        + [f"- {name}: {count}" for name, count in zip(categories, counts, strict=True)]
    )
    return Bunch(paths=paths, target=target, target_names=list(categories), DESCR=description)


def load_sample_photos():
    """Load the sixteen real photos shipped with skptm, by theme.

    Public-domain and openly licensed photographs (``LICENSES.md`` beside
    them lists each source and licence), at most 480 px, in four themes:
    ``everyday`` (a cat, a coffee cup, coins, a flower, a temple, two
    portraits, a photographer), ``ground`` (brick, grass, gravel),
    ``microscopy`` (stained tissue, a cell, a retina) and ``space`` (an
    astronaut, a rocket launch, the Hubble deep field). Enough to see
    clustering, an embedding map or a classifier at work without a download.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        As :func:`load_image_folder` returns, unshuffled (sorted by theme,
        then file name); ``DESCR`` adds the licences.

    Examples
    --------
    >>> from skptm.datasets import load_sample_photos
    >>> photos = load_sample_photos()
    >>> photos.target_names
    ['everyday', 'ground', 'microscopy', 'space']
    >>> len(photos.paths)
    16
    """
    photos = load_image_folder(SAMPLE_PHOTOS, shuffle=False)
    photos.DESCR += "\n\n" + (SAMPLE_PHOTOS / "LICENSES.md").read_text(encoding="utf-8")
    return photos


def make_sample_views(folder, *, views_per_photo=8, random_state=None):
    """Write random views of the sample photos as labelled JPEG files.

    Sixteen photos are few to learn from. Each view keeps 60-90% of its
    photo's width and height at a random place and is mirrored half of the
    time: it shows the same subject, so it keeps the photo's theme. The
    files are written as ``folder/<theme>/<photo>_<k>.jpg`` (the layout
    :func:`skptm.load_image_folder` reads) and read back.

    Views of one photo are near-duplicates: keep them in one
    cross-validation fold with ``groups`` (e.g. ``GroupKFold``), or the
    score measures memory rather than learning.

    Parameters
    ----------
    folder : str or path
        Where to write the views; created if missing.
    views_per_photo : int, default=8
        Views written per photo.
    random_state : int, RandomState instance or None, default=None
        Where the views are cut and which are mirrored.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        As :func:`load_image_folder` returns (unshuffled), plus ``groups``:
        for each view, the name of the photo it was cut from.

    Examples
    --------
    >>> import tempfile
    >>> from skptm.datasets import make_sample_views
    >>> views = make_sample_views(tempfile.mkdtemp(), views_per_photo=2, random_state=0)
    >>> len(views.paths), len(set(views.groups))
    (32, 16)
    """
    from PIL import Image, ImageOps

    if not isinstance(views_per_photo, int | np.integer) or views_per_photo < 1:
        raise ValueError(f"views_per_photo must be a positive int, got {views_per_photo!r}")
    rng = check_random_state(random_state)
    folder = Path(folder)
    photos = load_sample_photos()
    for path, label in zip(photos.paths, photos.target, strict=True):
        theme = folder / photos.target_names[label]
        theme.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
        width, height = image.size
        for k in range(views_per_photo):
            w, h = (int(side * rng.uniform(0.6, 0.9)) for side in (width, height))
            left, top = rng.randint(0, width - w + 1), rng.randint(0, height - h + 1)
            view = image.crop((left, top, left + w, top + h))
            if rng.random_sample() < 0.5:
                view = ImageOps.mirror(view)
            view.save(theme / f"{Path(path).stem}_{k}.jpg", quality=90)
    views = load_image_folder(folder, shuffle=False)
    views.groups = np.array([Path(path).stem.rsplit("_", 1)[0] for path in views.paths])
    return views


def collect_images(source, *, extensions=IMAGE_EXTENSIONS, follow_links=False):
    """The image files of a folder, or the paths a text file lists.

    Used by :func:`load_image_folder` for each class folder, and by the
    ``skptm`` commands for their ``SRC`` argument.

    Parameters
    ----------
    source : str or path
        A folder, searched recursively for files whose name ends in one of
        ``extensions`` (hidden files and folders skipped), or a UTF-8 text
        file of image paths, one a line (blank lines and lines starting
        with ``#`` skipped; relative paths are taken from the text file's
        own folder).
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        File name endings collected from a folder (case-insensitive).
    follow_links : bool, default=False
        Follow symbolic links to folders.

    Returns
    -------
    paths : list of Path
        A folder's images sorted by path; a text file's in its order. Paths
        are as found (relative where ``source`` is), not resolved.

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist.
    PermissionError
        If a folder below ``source`` cannot be listed (its images would be
        left out).
    ValueError
        If ``source`` is a file that is not UTF-8 text.

    Examples
    --------
    >>> from skptm.datasets import SAMPLE_PHOTOS, collect_images
    >>> [path.name for path in collect_images(SAMPLE_PHOTOS / "ground")]
    ['brick_wall.jpg', 'grass.jpg', 'gravel.jpg']
    """
    source = Path(source)
    if source.is_dir():
        endings = tuple(ending.lower() for ending in extensions)
        return sorted(_images_below(source, endings, follow_links))
    if not source.exists():
        raise FileNotFoundError(2, "No such file or folder", os.fspath(source))
    try:
        # utf-8-sig: a list saved "UTF-8 with BOM" (Windows editors) keeps its first path.
        lines = source.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{os.fspath(source)!r} is not a folder, and not UTF-8 text ({exc.reason} at byte {exc.start}): "
            "pass a folder of images, or a list of image paths saved as UTF-8, one a line."
        ) from None
    paths = []
    for line in map(str.strip, lines):
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        paths.append(path if path.is_absolute() else source.parent / path)
    return paths


def _images_below(folder, endings, follow_links):
    def unreadable(error):
        raise PermissionError(
            error.errno,
            f"Cannot list the folder {error.filename!r} ({error.strerror}), so its images would be left "
            "out: give this user read access to it, or move it out of the folder read",
            error.filename,
        ) from error

    for directory, subdirectories, files in os.walk(folder, onerror=unreadable, followlinks=follow_links):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(endings):
                yield Path(directory, name)
