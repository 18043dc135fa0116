"""precision=: reduced-precision networks, the user's dtype policy, "auto"."""

import pickle

import keras
import numpy as np
import pytest

from skptm import FineTunedClassifier, PretrainedFeatureTransformer

from .conftest import LIGHT, SIZE, runs_in


def make(**params):
    # TensorFlow's precisions are what this file tests; tests/test_openvino.py has OpenVINO's.
    defaults = {"backbone": LIGHT, "weights": None, "input_size": SIZE, "engine": "tensorflow"}
    return PretrainedFeatureTransformer(**{**defaults, **params})


def cosine(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def small_convnet():
    """A tiny functional backbone with activations of ordinary magnitude
    (random MobileNetV2 features are ~1e-13, below float16's range)."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", kernel_initializer="he_normal")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", kernel_initializer="he_normal")(x)
    return keras.Model(inputs, x, name="small_convnet")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8)


@runs_in("bfloat16")
def test_bfloat16_features_are_float32_and_close(images):
    full = make().transform(images)
    reduced = make(precision="bfloat16").transform(images)
    assert reduced.dtype == np.float32
    assert not np.array_equal(full, reduced)  # really computed in bfloat16
    assert cosine(full, reduced).min() > 0.999


@runs_in("float16")
def test_float16_features_are_close():
    X = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    full = make(backbone=small_convnet).transform(X)
    half = make(backbone=small_convnet, precision="float16").transform(X)
    assert cosine(full, half).min() > 0.999


def test_precisions_never_share_a_network(images):
    from skptm.networks import get_feature_network

    networks = {
        p: get_feature_network(LIGHT, weights=None, input_size=SIZE, precision=p) for p in ("float32", "bfloat16")
    }
    assert networks["float32"].base is not networks["bfloat16"].base
    assert networks["bfloat16"].base.layers[1].compute_dtype == "bfloat16"
    assert networks["float32"].base.layers[1].compute_dtype == "float32"
    weights = [
        np.array_equal(a, b)
        for a, b in zip(networks["float32"].base.get_weights(), networks["bfloat16"].base.get_weights())
    ]
    assert all(weights)  # the same weights, loaded once


@pytest.mark.parametrize("user_policy", ["mixed_float16", "mixed_bfloat16"])
def test_users_dtype_policy_is_neither_used_nor_changed(images, user_policy):
    from skptm.networks import clear_network_cache

    expected = make().transform(images)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(user_policy)
    try:
        clear_network_cache()  # built anew while the user's policy is set
        np.testing.assert_array_equal(make().transform(images), expected)
        assert keras.config.dtype_policy().name == user_policy
    finally:
        keras.config.set_dtype_policy(previous)


def test_auto_without_a_measurement_is_float32(images, tmp_path, monkeypatch):
    """precision="auto" picks a reduced precision only where it was measured here
    (tests/test_engines.py covers the rules with measurements)."""
    from skptm.engines import decision

    monkeypatch.setenv("SKPTM_CACHE_DIR", str(tmp_path))
    decision.clear()
    try:
        extractor = make(precision="auto")
        assert extractor._network().precision == "float32"
        np.testing.assert_array_equal(extractor.transform(images), make(precision="float32").transform(images))
    finally:
        decision.clear()


@runs_in("bfloat16")
def test_finetuning_in_bfloat16(colours):
    X, y = colours
    params = {
        "backbone": LIGHT,
        "weights": None,
        "input_size": 32,
        "unfreeze": 2,
        "finetune_epochs": 2,
        "random_state": 0,
        "batch_size": 8,
    }
    clf = FineTunedClassifier(precision="bfloat16", **params).fit(X, y)
    base = clf._trained.base
    assert {layer.compute_dtype for layer in base.layers[1:]} == {"bfloat16"}
    assert clf._trained.head.layers[-1].compute_dtype == "float32"
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert clf.score(X, y) == 1.0
    assert clf.n_epochs_["finetune"] == 2
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), proba)


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision"):
        make(precision="int8").transform(np.zeros((1, SIZE, SIZE, 3), np.uint8))
