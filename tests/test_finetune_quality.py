"""Linear probe, then fine-tune: at least as good as the linear model on the same
features; and fitted models that are safe to use, pickle and clone."""

import gc
import pickle

import keras
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import skptm.networks as networks
import skptm.networks.fingerprints as fingerprints
from skptm import FineTunedRegressor, PretrainedFeatureTransformer

from .conftest import assert_same_up_to_batching
from .test_finetune import classifier, small_cnn


def faint_colours(n, seed=0):
    """Two classes that differ by a faint colour cast under heavy noise and a
    random brightness: learnable, but not perfectly."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.integers(0, 200, (n, 32, 32, 3)).astype(np.int16)
    X += rng.integers(0, 40, (n, 1, 1, 1))
    X[y == 0, :, :, 0] += 6
    X[y == 1, :, :, 2] += 6
    return X.clip(0, 255).astype(np.uint8), y


def extractor():
    return PretrainedFeatureTransformer(small_cnn, input_size=32, batch_size=8)


@pytest.mark.parametrize("per_class", [20, 100])
def test_head_is_as_good_as_logistic_regression_on_the_same_features(per_class):
    X, y = faint_colours(2 * per_class + 200, seed=per_class)
    ours, theirs = [], []
    for split in range(3):
        train, test = train_test_split(np.arange(len(y)), train_size=2 * per_class, stratify=y, random_state=split)
        pipe = make_pipeline(extractor(), StandardScaler(), LogisticRegression())
        theirs.append(pipe.fit(X[train], y[train]).score(X[test], y[test]))
        ours.append(classifier(unfreeze=0).fit(X[train], y[train]).score(X[test], y[test]))
    assert np.mean(theirs) > 0.6  # the features carry the signal
    assert np.mean(ours) >= np.mean(theirs) - 0.01


def test_head_with_unfreeze_0_is_standard_scaler_and_logistic_regression_value_for_value():
    """The linear probe is scikit-learn's, on the transformer's features: the
    probabilities equal the plain pipeline's (float32 head arithmetic aside)."""
    from skptm._heads import LOGISTIC_C

    X, y = faint_colours(90, seed=5)
    train, test = np.arange(60), np.arange(60, 90)
    # In float64, as skptm solves the probe (in float32, scikit-learn's own rounding
    # moves lbfgs's optimum by up to 1e-4).
    as_float64 = FunctionTransformer(lambda features: features.astype(np.float64))
    pipe = make_pipeline(extractor(), as_float64, StandardScaler(), LogisticRegression(C=LOGISTIC_C, max_iter=2000))
    expected = pipe.fit(X[train], y[train]).predict_proba(X[test])
    clf = classifier(unfreeze=0, validation_fraction=None).fit(X[train], y[train])
    np.testing.assert_allclose(clf.predict_proba(X[test]), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("centre, spread", [(0.0, 1e-3), (1e4, 1e3)])
def test_regressor_head_is_as_good_as_ridge_on_any_target_scale(centre, spread):
    rng = np.random.default_rng(3)
    redness = rng.uniform(0, 1, 240)
    X = rng.integers(0, 150, (240, 32, 32, 3)).astype(np.float32)
    X[..., 0] += 100 * redness[:, None, None]
    y = centre + spread * (redness - 0.5) / 0.3
    train, test = np.arange(160), np.arange(160, 240)
    ridge = make_pipeline(extractor(), StandardScaler(), RidgeCV()).fit(X[train], y[train])
    reg = FineTunedRegressor(small_cnn, input_size=32, unfreeze=0, random_state=0).fit(X[train], y[train])
    theirs, ours = ridge.score(X[test], y[test]), reg.score(X[test], y[test])
    assert theirs > 0.5
    assert ours >= 0.95 * theirs
    predictions = reg.predict(X[test])
    assert abs(predictions.mean() - centre) < spread and 0.5 * spread < predictions.std() < 2 * spread


def test_regressor_model_predicts_in_the_targets_units(colours):
    X, _ = colours
    y = 1e4 + 1e3 * X[..., 0].mean(axis=(1, 2)) / 255
    reg = FineTunedRegressor(small_cnn, input_size=32, unfreeze=1, finetune_epochs=1, random_state=0).fit(X, y)
    np.testing.assert_allclose(reg.model_.predict(X, verbose=0).ravel(), reg.predict(X), rtol=1e-5)


# -- transform ------------------------------------------------------------------------------


def test_transform_gives_the_fine_tuned_backbones_features(colours):
    X, y = colours
    head_only = classifier(unfreeze=0).fit(X, y)
    np.testing.assert_allclose(head_only.transform(X), extractor().transform(X), rtol=1e-5, atol=1e-6)
    tuned = classifier(unfreeze=2, finetune_learning_rate=1e-2).fit(X, y)
    features = tuned.transform(X)
    assert features.shape == (24, 16) and features.dtype == np.float32
    assert not np.allclose(features, extractor().transform(X))
    np.testing.assert_array_equal(tuned.get_feature_names_out(), extractor().get_feature_names_out())
    # What the head sees: the head on these features gives predict_proba.
    proba = tuned._trained.head.predict(features, verbose=0)
    np.testing.assert_allclose(proba, tuned.predict_proba(X), rtol=1e-4, atol=1e-6)


# -- callbacks --------------------------------------------------------------------------------


class CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(epoch)


def test_callbacks_never_hold_the_trained_model(colours):
    X, y = colours
    counter, stopper = CountEpochs(), keras.callbacks.EarlyStopping(monitor="loss", restore_best_weights=True)
    with_callbacks = classifier(unfreeze=2, finetune_epochs=2, callbacks=[counter, stopper]).fit(X, y)
    without = classifier(unfreeze=2, finetune_epochs=2).fit(X, y)
    assert counter.ends == [0, 1]  # what the callback records stays visible
    for callback in with_callbacks.callbacks:
        assert callback.model is None
        assert getattr(callback, "best_weights", None) is None
    for callback in clone(with_callbacks).callbacks:
        assert callback.model is None
    assert len(pickle.dumps(with_callbacks)) < len(pickle.dumps(without)) + 4_000


# -- nested backbones ---------------------------------------------------------------------------


def nested_cnn():
    """A backbone holding a model inside it, plus a layer of its own on top."""
    inner = small_cnn()
    inputs = keras.Input((None, None, 3))
    x = inner(inputs)
    outputs = keras.layers.Conv2D(12, 1, activation="relu", name="conv_top")(x)
    return keras.Model(inputs, outputs, name="nested_cnn")


def test_unfreeze_counts_layers_through_nested_models(colours):
    X, y = colours
    clf = classifier(backbone=nested_cnn, unfreeze=3, finetune_learning_rate=1e-2).fit(X, y)
    assert clf.unfrozen_layers_ == ["small_cnn/conv_b", "small_cnn/conv_c", "conv_top"]
    from skptm._unfreeze import layer_at, leaf_layers

    original = networks.get_feature_network(nested_cnn, input_size=32).base
    trained = clf._trained.base
    for path, layer in leaf_layers(original):
        if not layer.weights:
            continue
        before, after = layer.get_weights(), layer_at(trained, path).get_weights()
        changed = any(not np.array_equal(a, b) for a, b in zip(before, after))
        assert changed == (path in clf.unfrozen_layers_), path
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer_at(trained, path).trainable
    state = clf.__getstate__()["_trained_state"]
    assert sorted(state["unfrozen_weights"]) == sorted(clf.unfrozen_layers_)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), clf.predict_proba(X))


# -- caching custom backbones -------------------------------------------------------------------


class SeededCNN:
    """A callable backbone without __eq__: instances are told apart by identity."""

    def __init__(self, width):
        self.width = width

    def __call__(self):
        inputs = keras.Input((None, None, 3))
        outputs = keras.layers.Conv2D(self.width, 3, name="conv")(inputs)
        return keras.Model(inputs, outputs)


class UnhashableCNN(SeededCNN):
    __hash__ = None

    def __eq__(self, other):
        return self is other


@pytest.mark.parametrize("kind", [SeededCNN, UnhashableCNN])
def test_callable_backbones_never_reuse_another_callables_network(kind):
    first = PretrainedFeatureTransformer(kind(5), input_size=16)
    assert first.get_feature_names_out().shape == (5,)
    copy = clone(first)  # a deep copy of the callable: rebuilt, or shared, never wrong
    assert copy.get_feature_names_out().shape == (5,)
    widths = []
    for width in (3, 7, 9):  # new callables, whose ids may reuse freed ones
        del first, copy
        gc.collect()
        first = PretrainedFeatureTransformer(kind(width), input_size=16)
        copy = clone(first)
        widths.append((first.get_feature_names_out().shape[0], copy.get_feature_names_out().shape[0]))
    assert widths == [(3, 3), (7, 7), (9, 9)]


def test_a_model_backbone_is_hashed_once_per_model_object(colours, monkeypatch):
    X, _ = colours
    calls = []
    original = fingerprints._hash_model
    monkeypatch.setattr(fingerprints, "_hash_model", lambda model: calls.append(1) or original(model))
    transformer = PretrainedFeatureTransformer(small_cnn(), input_size=32)
    transformer.fit(X)
    transformer.transform(X)
    transformer.transform(X[:3])
    transformer.get_feature_names_out()
    transformer.__sklearn_tags__()
    assert len(calls) == 1
    clone(transformer).transform(X[:2])  # a clone holds a deep copy: hashed once more
    assert len(calls) == 2


# -- model_ is the estimator's own ----------------------------------------------------------------


def test_training_model_by_hand_never_changes_other_estimators(colours):
    X, y = colours
    transformer = extractor()
    before = transformer.transform(X)
    for unfreeze in (0, 2):
        clf = classifier(unfreeze=unfreeze).fit(X, y)
        clf.model_.trainable = True
        clf.model_.compile(optimizer=keras.optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
        clf.model_.fit(X, (y == "red").astype(int), epochs=1, verbose=0)
        np.testing.assert_array_equal(transformer.transform(X), before)
        np.testing.assert_array_equal(classifier(unfreeze=0).fit(X, y).transform(X), before)


# -- batching does not change results ----------------------------------------------------------------


def test_predictions_do_not_depend_on_batching(colours):
    X, y = colours
    clf = classifier(unfreeze=2, batch_size=8).fit(X, y)
    whole = clf.predict_proba(X)
    rows = np.vstack([clf.predict_proba(X[i : i + 1]) for i in range(len(X))])
    reversed_order = clf.predict_proba(X[::-1])[::-1]
    # Bit for bit on some CPUs (AVX-512), within BATCHING_RTOL on every CPU.
    assert_same_up_to_batching(rows, whole, probabilities=True)
    assert_same_up_to_batching(reversed_order, whole, probabilities=True)
    assert_same_up_to_batching(clf.transform(X[5:9]), clf.transform(X)[5:9])
    np.testing.assert_array_equal(clf.predict_proba(X), whole)  # the same call: the same bits
