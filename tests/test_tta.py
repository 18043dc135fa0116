"""Test-time augmentation (``tta=``): the views inside the network, averaged.

Each check compares with what a user would compute by hand: the model on
the flipped or cropped images, averaged.
"""

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from skptm import FineTunedClassifier, FineTunedRegressor, PretrainedFeatureTransformer

from .conftest import LIGHT, assert_same_up_to_batching

SIZE = 32


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8)
    X[:4, :, : SIZE // 2, 0] = 250  # class 0: a red left half
    return X, np.array([0] * 4 + [1] * 4)


def flipped(X):
    return np.ascontiguousarray(X[:, :, ::-1])


def transformer(**params):
    return PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, engine="tensorflow", **params)


def test_flip_averages_the_image_and_its_mirror(images):
    X, _ = images
    plain = transformer()
    expected = (plain.transform(X) + plain.transform(flipped(X))) / 2
    assert_same_up_to_batching(transformer(tta="flip").transform(X), expected)


def test_a_view_is_the_same_whatever_the_batch(images):
    X, _ = images
    model = transformer(tta="light")
    together = model.transform(X)
    alone = np.concatenate([model.transform(X[i : i + 1]) for i in range(3)])
    assert_same_up_to_batching(alone, together[:3])
    np.testing.assert_array_equal(model.transform(X), together)


def test_feature_cache_keeps_views_apart(images, tmp_path):
    X, _ = images
    plain = transformer(cache=tmp_path).transform(X)
    with_flip = transformer(cache=tmp_path, tta="flip").transform(X)
    assert np.abs(plain - with_flip).max() > 1e-3 * np.abs(plain).max()
    np.testing.assert_array_equal(transformer(cache=tmp_path, tta="flip").transform(X), with_flip)
    from skptm._feature_cache import FORMAT_VERSION

    assert len(list((tmp_path / f"v{FORMAT_VERSION}").iterdir())) == 2  # one configuration each


@pytest.fixture(scope="module")
def classifiers(images):
    X, y = images
    common = {"backbone": LIGHT, "weights": None, "input_size": SIZE, "head_epochs": 20, "random_state": 0}
    return {
        "probe": FineTunedClassifier(**common, unfreeze=0).fit(X, y),
        "tuned": FineTunedClassifier(**common, unfreeze=1, finetune_epochs=1).fit(X, y),
    }


@pytest.mark.parametrize("kind", ["probe", "tuned"])
def test_classifier_averages_probabilities_over_views(classifiers, images, kind):
    X, _ = images
    model = classifiers[kind]
    expected = (model.predict_proba(X) + model.predict_proba(flipped(X))) / 2
    features = (model.transform(X) + model.transform(flipped(X))) / 2
    model.set_params(tta="flip")  # no refit: tta acts at prediction time only
    try:
        assert_same_up_to_batching(model.predict_proba(X), expected, probabilities=True)
        np.testing.assert_array_equal(model.predict(X), model.classes_[expected.argmax(axis=1)])
        assert_same_up_to_batching(model.transform(X), features)
    finally:
        model.set_params(tta=None)


def test_regressor_averages_in_the_targets_units(images):
    X, _ = images
    y = X.reshape(len(X), -1).mean(axis=1) * 10.0 + 500.0
    model = FineTunedRegressor(LIGHT, weights=None, input_size=SIZE, unfreeze=0, random_state=0)
    model.fit(X, y)
    expected = (model.predict(X) + model.predict(flipped(X))) / 2
    model.set_params(tta="flip")
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-5)


def test_estimators_pickled_before_tta_existed_load_without_it():
    import pickle

    for estimator in (transformer(), FineTunedClassifier(LIGHT, weights=None)):
        state = estimator.__getstate__()
        state.pop("tta")
        restored = type(estimator).__new__(type(estimator))
        restored.__setstate__(pickle.loads(pickle.dumps(state)))
        assert restored.get_params()["tta"] is None


@pytest.mark.parametrize("tta", ["mirror", [], ["identity", "rotate"], [3]])
def test_unknown_views_are_refused_with_the_valid_ones(images, tta):
    X, _ = images
    with pytest.raises(InvalidParameterError, match="tta"):
        transformer(tta=tta).transform(X)


def test_openvino_runs_the_views_too(images):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (the test extra has it)")
    X, _ = images
    expected = transformer(tta="flip").transform(X)
    converted = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, engine="openvino", tta="flip")
    found = converted.transform(X)
    cosine = (found * expected).sum(axis=1) / np.linalg.norm(found, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.99999
