"""load_image_folder: a folder of class sub-folders as paths and labels."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skptm import PretrainedFeatureTransformer, load_image_folder

from .conftest import LIGHT


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    layout = {"red": ["a.jpg", "b.PNG", "nested/c.jpg", "d.jpeg"], "blue": ["1.png", "2.bmp", "3.webp", "4.jpg"]}
    for name, files in layout.items():
        for file in files:
            path = root / name / file
            path.parent.mkdir(parents=True, exist_ok=True)
            image = rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
            image[..., 0 if name == "red" else 2] += 190
            Image.fromarray(image).save(path)
    (root / "red" / "notes.txt").write_text("not an image")
    (root / "red" / ".hidden.jpg").write_bytes(b"")
    (root / ".cache").mkdir()
    (root / "stray.jpg").write_bytes((root / "red" / "a.jpg").read_bytes())  # not in a class folder
    (root / "empty").mkdir()
    return root


def test_bunch_like_load_files(folder):
    data = load_image_folder(folder, shuffle=False)
    assert data.target_names == ["blue", "empty", "red"]
    assert len(data.paths) == len(data.target) == 8
    assert data.paths.dtype == object and all(p.startswith("/") for p in data.paths)
    assert [p.rsplit("/", 1)[-1] for p in data.paths[data.target == 2]] == ["a.jpg", "b.PNG", "d.jpeg", "c.jpg"]
    assert "red: 4" in data.DESCR and "empty: 0" in data.DESCR


def test_categories_and_shuffle(folder):
    data = load_image_folder(folder, categories=["red", "blue"], random_state=1)
    assert data.target_names == ["red", "blue"]
    assert sorted(data.target.tolist()) == [0] * 4 + [1] * 4
    assert data.target.tolist() != sorted(data.target.tolist())  # shuffled
    again = load_image_folder(folder, categories=["red", "blue"], random_state=1)
    np.testing.assert_array_equal(again.paths, data.paths)


def test_goes_straight_into_cross_validation(folder):
    data = load_image_folder(folder, categories=["red", "blue"])
    pipeline = make_pipeline(PretrainedFeatureTransformer(LIGHT, weights=None, input_size=32), LogisticRegression())
    scores = cross_val_score(pipeline, data.paths, data.target, cv=2)
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_clear_errors(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_image_folder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="No sub-folder 'green'.*'blue'"):
        load_image_folder(folder, categories=["green"])
    with pytest.raises(ValueError, match="No images"):
        load_image_folder(folder, categories=["empty"])


def test_sample_photos_are_real_licensed_images():
    from PIL import Image

    from skptm.datasets import SAMPLE_PHOTOS, load_sample_photos

    photos = load_sample_photos()
    assert photos.target_names == ["everyday", "ground", "microscopy", "space"]
    licences = (SAMPLE_PHOTOS / "LICENSES.md").read_text(encoding="utf-8")
    for path in photos.paths:
        relative = Path(path).relative_to(SAMPLE_PHOTOS).as_posix()
        assert f"| {relative} |" in licences, f"{relative} has no licence line"
        with Image.open(path) as image:
            assert max(image.size) <= 480 and min(image.size) >= 256
    assert licences.count(".jpg |") == len(photos.paths)
    assert "CC BY 2.0" in photos.DESCR


def test_sample_views_keep_their_photo_theme_and_group(tmp_path):
    from sklearn.model_selection import GroupKFold

    from skptm.datasets import load_sample_photos, make_sample_views

    photos = load_sample_photos()
    theme_of = {Path(path).stem: photos.target_names[label] for path, label in zip(photos.paths, photos.target)}
    views = make_sample_views(tmp_path / "a", views_per_photo=2, random_state=0)
    assert len(views.paths) == 2 * len(photos.paths) and views.target_names == photos.target_names
    assert sorted(set(views.groups)) == sorted(theme_of)
    for path, label, group in zip(views.paths, views.target, views.groups):
        assert views.target_names[label] == theme_of[group]
        with Image.open(path) as image:
            assert image.format == "JPEG"
    for train, test in GroupKFold(4).split(views.paths, views.target, views.groups):
        assert not set(views.groups[train]) & set(views.groups[test])
    again = make_sample_views(tmp_path / "b", views_per_photo=2, random_state=0)
    assert [Path(p).read_bytes() for p in again.paths] == [Path(p).read_bytes() for p in views.paths]
    with pytest.raises(ValueError, match="views_per_photo"):
        make_sample_views(tmp_path / "c", views_per_photo=0)


def test_repeated_categories_are_refused(folder):
    with pytest.raises(ValueError, match="categories names 'red' more than once"):
        load_image_folder(folder, categories=["red", "blue", "red"])


def test_a_folder_that_cannot_be_listed_is_named_not_skipped(folder, monkeypatch):
    """Its images would be silently missing from the classes: an error names
    it. (The OS's refusal is simulated: the suite may run as root, whom
    permissions do not stop.)"""
    import os

    locked = folder / "red" / "nested"
    scandir = os.scandir

    def refusing(path="."):
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    with pytest.raises(PermissionError, match="Cannot list the folder .*nested.*would be left out"):
        load_image_folder(folder)


def test_a_list_of_paths_with_a_byte_order_mark_or_not_utf8(folder, tmp_path):
    from skptm.datasets import collect_images

    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / 'red' / 'a.jpg'}\n{folder / 'blue' / '1.png'}\n", encoding="utf-8-sig")
    assert [path.name for path in collect_images(listing)] == ["a.jpg", "1.png"]
    listing.write_bytes(f"{folder / 'red' / 'a.jpg'}\ncaf\xe9.jpg\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8 text.*saved as UTF-8"):
        collect_images(listing)


def test_a_linked_image_keeps_its_own_path(folder, tmp_path):
    root = tmp_path / "linked"
    (root / "red").mkdir(parents=True)
    (root / "red" / "link.jpg").symlink_to(folder / "red" / "a.jpg")
    data = load_image_folder(root)
    assert list(data.paths) == [str(root / "red" / "link.jpg")]
