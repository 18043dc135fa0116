"""Faults during long work: prompt errors, released threads, Ctrl-C."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skptm import FineTunedClassifier, ImageReadError, ImageReadWarning, PretrainedFeatureTransformer
from skptm._images import ImageReader
from skptm.networks import FeatureNetwork

from .conftest import LIGHT, pattern


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    """1,000 paths of small JPEGs, the one at 900 unreadable."""
    root = tmp_path_factory.mktemp("thousand")
    good = root / "good.jpg"
    Image.fromarray(pattern(40, 30)).save(good, quality=90)
    bad = root / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:50])
    paths = [good] * 1000
    paths[900] = bad
    return paths


def make(**params):
    return PretrainedFeatureTransformer(
        **{"backbone": LIGHT, "weights": None, "input_size": 32, "batch_size": 16, **params}
    )


def reader_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("skptm-")]


def count_decodes(monkeypatch):
    decodes = []
    decode = ImageReader.decode
    monkeypatch.setattr(ImageReader, "decode", lambda self, item: decodes.append(1) or decode(self, item))
    return decodes


def test_an_error_at_item_900_is_reported_promptly_and_releases_the_threads(thousand, monkeypatch):
    extractor = make()
    extractor.transform(thousand[:16])  # build the network outside the count
    decodes = count_decodes(monkeypatch)
    with pytest.raises(ImageReadError, match="index 900") as caught:
        extractor.transform(thousand)
    assert caught.value.path == str(thousand[900])
    assert len(decodes) <= 900 + 2 * 16  # the failing batch and at most one read ahead
    deadline = time.monotonic() + 5
    while reader_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reader_threads() == []


def test_with_on_error_nan_the_whole_input_is_read_and_all_failures_reported(thousand):
    paths = list(thousand)
    paths[10] = Path(str(thousand[900]))
    with pytest.warns(ImageReadWarning, match=r"2 of 1000 images.*\b10 \(.*900 \(") as caught:
        features = make(on_error="nan").transform(paths)
    assert len(caught) == 1
    assert np.isnan(features[[10, 900]]).all()
    assert np.isfinite(np.delete(features, [10, 900], axis=0)).all()


def interrupt_at_call(monkeypatch, k):
    """Ctrl-C in the main thread while the network runs its ``k``-th batch."""
    calls = []
    predict = FeatureNetwork.predict

    def interrupted(self, batch):
        calls.append(1)
        if len(calls) == k:
            raise KeyboardInterrupt
        return predict(self, batch)

    monkeypatch.setattr(FeatureNetwork, "predict", interrupted)


def test_ctrl_c_during_transform_with_a_cache_leaves_a_usable_estimator_and_whole_entries(
    thousand, tmp_path, monkeypatch
):
    paths = [thousand[0]] * 8 + [tmp_path / f"{i}.png" for i in range(40)]
    for i, path in enumerate(paths[8:]):
        Image.fromarray(np.full((20, 30, 3), i * 5, np.uint8)).save(path)
    cache = tmp_path / "cache"
    extractor = make(cache=cache)
    expected = make().transform(paths)
    with monkeypatch.context() as patch:
        interrupt_at_call(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            extractor.transform(paths)
    entries = [p for p in cache.rglob("*") if p.is_file()]
    assert not [p for p in entries if p.name.endswith(".tmp")]
    assert 0 < len(entries) < 41  # what the first batch stored, whole
    assert reader_threads() == [] or not any(t.is_alive() for t in reader_threads())
    np.testing.assert_array_equal(extractor.transform(paths), expected)  # usable, entries sound


def test_ctrl_c_during_fit_leaves_the_previous_fit(colours, monkeypatch):
    X, y = colours
    clf = FineTunedClassifier(LIGHT, weights=None, input_size=32, unfreeze=1, finetune_epochs=1, random_state=0)
    clf.fit(X, y)
    before = clf.predict_proba(X)
    model = clf.model_
    with monkeypatch.context() as patch:
        interrupt_at_call(patch, 1)  # during phase 1's feature extraction
        with pytest.raises(KeyboardInterrupt):
            clf.fit(X[::-1], y[::-1])
    assert clf.model_ is model
    np.testing.assert_array_equal(clf.predict_proba(X), before)
