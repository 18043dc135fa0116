"""skptm._heads: the head's layers, its standardisation, the scikit-learn linear probe and FixedAffine."""

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.preprocessing import StandardScaler

from skptm._heads import LOGISTIC_C, RIDGE_ALPHAS, build_head, fit_linear_probe, set_standardization, standardized
from skptm.networks.layers import FixedAffine, set_affine

N_FEATURES = 6


def features(n=60, seed=0):
    """Features on very different scales and offsets, as pooled activations are."""
    rng = np.random.default_rng(seed)
    scales = np.array([1e-3, 0.5, 1.0, 20.0, 300.0, 4.0])
    offsets = np.array([0.0, 5.0, -2.0, 100.0, 1e3, 0.1])
    return (rng.normal(size=(n, N_FEATURES)) * scales + offsets).astype(np.float32)


def classes(F, n_classes, seed=0):
    """Noisy classes that depend on the features (not separable: the probe's optimum is finite)."""
    z = StandardScaler().fit_transform(F)
    weights = np.random.default_rng(seed).normal(size=(N_FEATURES, n_classes))
    logits = z @ weights + np.random.default_rng(seed + 1).gumbel(size=(len(F), n_classes)) * 2
    return logits.argmax(axis=1)


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def head_output(head, F):
    return np.asarray(head(F, training=False), dtype=np.float64)


def linear_head(n_outputs, activation):
    return build_head(N_FEATURES, (), 0.0, n_outputs, activation, seed=0)


# -- build_head ------------------------------------------------------------------------------------


def test_a_classification_head_is_standardisation_hidden_relu_layers_dropout_and_softmax():
    head = build_head(N_FEATURES, (5, 4), 0.3, 3, "softmax", seed=0)
    assert [layer.name for layer in head.layers] == [
        "head_standardize",
        "head_dense_0",
        "head_dense_1",
        "head_dropout",
        "head_output",
    ]
    assert isinstance(head.layers[0], FixedAffine) and head.layers[0].units == N_FEATURES
    assert [head.get_layer(f"head_dense_{i}").units for i in (0, 1)] == [5, 4]
    assert head.get_layer("head_dropout").rate == 0.3
    F = features(8)
    (scale, offset), (k0, b0), (k1, b1), (k2, b2) = (layer.get_weights() for layer in head.layers if layer.weights)
    hidden = np.maximum(0, np.maximum(0, (F * scale + offset) @ k0 + b0) @ k1 + b1)
    np.testing.assert_allclose(head_output(head, F), softmax(hidden @ k2 + b2), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(head_output(head, F).sum(axis=1), 1.0, atol=1e-6)


def test_a_regression_head_without_hidden_layers_or_dropout_is_affine():
    head = build_head(N_FEATURES, (), 0.0, 2, None, seed=0)
    assert [layer.name for layer in head.layers] == ["head_standardize", "head_output"]
    rng = np.random.default_rng(1)
    kernel, bias = rng.normal(size=(N_FEATURES, 2)).astype(np.float32), np.array([3.0, -7.0], np.float32)
    head.get_layer("head_output").set_weights([kernel, bias])
    F = features(10)
    np.testing.assert_allclose(head_output(head, F), F.astype(np.float64) @ kernel + bias, rtol=1e-5, atol=1e-3)


# -- set_standardization ---------------------------------------------------------------------------


def test_the_head_standardises_exactly_as_standard_scaler():
    F = features()
    head = linear_head(2, "softmax")
    set_standardization(head, F, None)
    expected = StandardScaler().fit_transform(F.astype(np.float64))
    np.testing.assert_allclose(standardized(head, F), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(head.get_layer("head_standardize")(F), expected, rtol=0, atol=1e-4)
    assert standardized(head, F).dtype == np.float64


def test_sample_weights_standardise_as_repeated_rows():
    F = features(30, seed=2)
    weights = np.random.default_rng(3).integers(1, 4, len(F))
    head = linear_head(2, "softmax")
    set_standardization(head, F, weights)
    repeated = np.repeat(F.astype(np.float64), weights, axis=0)
    mean, std = repeated.mean(axis=0), repeated.std(axis=0)
    np.testing.assert_allclose(standardized(head, F), (F - mean) / std, rtol=0, atol=1e-5)
    scaler = StandardScaler().fit(F, sample_weight=weights)
    np.testing.assert_allclose(standardized(head, F), scaler.transform(F), rtol=0, atol=1e-5)


def test_a_constant_feature_is_centred_not_divided_by_zero():
    F = features(20, seed=4)
    F[:, 2] = 7.5
    head = linear_head(2, "softmax")
    set_standardization(head, F, None)
    z = standardized(head, F)
    assert np.isfinite(z).all()
    np.testing.assert_array_equal(z[:, 2], 0.0)


# -- fit_linear_probe: classes ---------------------------------------------------------------------


def sklearn_probe(F, y, sample_weight=None):
    """StandardScaler then LogisticRegression, in float64 (float32 standardisation alone moves the
    lbfgs optimum by up to 1e-4 on these ill-scaled features)."""
    F = F.astype(np.float64)
    scaler = StandardScaler().fit(F, sample_weight=sample_weight)
    probe = LogisticRegression(C=LOGISTIC_C, max_iter=2000).fit(scaler.transform(F), y, sample_weight=sample_weight)
    return lambda X: probe.predict_proba(scaler.transform(X.astype(np.float64)))


def probe_head(F, y, n_outputs, sample_weight=None):
    head = linear_head(n_outputs, "softmax")
    set_standardization(head, F, sample_weight)
    fit_linear_probe(head, F, y, sample_weight, classification=True, seed=0)
    return head


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_classification_probe_is_logistic_regression_value_for_value(n_classes):
    F, test = features(80, seed=5), features(40, seed=6)
    y = classes(F, n_classes, seed=n_classes)
    assert sorted(set(y)) == list(range(n_classes))
    head = probe_head(F, y, n_classes)
    expected = sklearn_probe(F, y)
    for X in (F, test):
        np.testing.assert_allclose(head_output(head, X), expected(X), rtol=0, atol=1e-6)


def test_sample_weights_reach_the_probe():
    F = features(80, seed=7)
    y = classes(F, 3, seed=7)
    weights = np.random.default_rng(8).uniform(0.2, 3.0, len(F))
    head = probe_head(F, y, 3, sample_weight=weights)
    np.testing.assert_allclose(head_output(head, F), sklearn_probe(F, y, weights)(F), rtol=0, atol=1e-6)
    unweighted = sklearn_probe(F, y)(F)
    assert np.abs(head_output(head, F) - unweighted).max() > 1e-3  # the weights changed something


def test_a_class_absent_from_training_gets_almost_no_probability():
    F = features(80, seed=9)
    y = np.where(classes(F, 2, seed=9) == 0, 0, 2)  # class 1 of 3 never seen
    head = probe_head(F, y, 3)
    probabilities = head_output(head, F)
    assert probabilities[:, 1].max() < 1e-12
    np.testing.assert_allclose(probabilities[:, [0, 2]], sklearn_probe(F, y)(F), rtol=0, atol=1e-6)

    y4 = classes(F, 3, seed=10)
    y4[y4 == 2] = 3  # classes 0, 1 and 3 of 4 seen, 2 not
    head = probe_head(F, y4, 4)
    probabilities = head_output(head, F)
    assert probabilities[:, 2].max() < 1e-12
    np.testing.assert_allclose(probabilities[:, [0, 1, 3]], sklearn_probe(F, y4)(F), rtol=0, atol=1e-6)


# -- fit_linear_probe: numbers ---------------------------------------------------------------------


def test_the_regression_probe_is_ridge_cv_with_an_alpha_per_target():
    F, test = features(70, seed=11), features(30, seed=12)
    z = StandardScaler().fit(F)
    rng = np.random.default_rng(13)
    signal = z.transform(F) @ rng.normal(size=(N_FEATURES, 2))
    targets = signal + rng.normal(size=signal.shape) * np.array([0.01, 30.0])  # little noise, much noise
    targets = (targets - targets.mean(axis=0)) / targets.std(axis=0)
    head = linear_head(2, None)
    set_standardization(head, F, None)
    fit_linear_probe(head, F, targets, None, classification=False, seed=0)
    ridge = RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True).fit(z.transform(F), targets)
    assert ridge.alpha_[0] < ridge.alpha_[1]  # the two targets need different penalties
    for X in (F, test):
        np.testing.assert_allclose(head_output(head, X), ridge.predict(z.transform(X)), rtol=0, atol=2e-5)


def test_a_single_regression_target_of_shape_n_by_1():
    F = features(50, seed=14)
    z = StandardScaler().fit_transform(F)
    target = z[:, :1] * 2 - z[:, 3:4] + np.random.default_rng(15).normal(size=(50, 1)) * 0.1
    head = linear_head(1, None)
    set_standardization(head, F, None)
    weights = np.linspace(0.5, 2.0, 50)
    fit_linear_probe(head, F, target, weights, classification=False, seed=0)
    ridge = RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True).fit(z, target, sample_weight=weights)
    np.testing.assert_allclose(head_output(head, F), ridge.predict(z).reshape(-1, 1), rtol=0, atol=2e-5)


# -- FixedAffine and set_affine -------------------------------------------------------------


def test_fixed_affine_computes_x_times_scale_plus_offset_with_no_trainable_weight():
    layer = FixedAffine(3)
    x = np.array([[1, 2, 3], [0, 10, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(layer(x), x.astype(np.float32))  # built as the identity
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    set_affine(layer, [2.0, -1.0, 0.5], np.array([10.0, 0.0, -3.0]))
    expected = x.astype(np.float32) * np.float32([2.0, -1.0, 0.5]) + np.float32([10.0, 0.0, -3.0])
    result = layer(x)
    assert keras.ops.convert_to_numpy(result).dtype == np.float32
    np.testing.assert_array_equal(result, expected)
    clone = FixedAffine.from_config(layer.get_config())
    assert clone.units == 3 and clone.name == layer.name


def test_training_the_head_never_moves_its_standardisation():
    F = features(32, seed=16)
    y = classes(F, 2, seed=16)
    head = linear_head(2, "softmax")
    set_standardization(head, F, None)
    before = [w.copy() for w in head.get_weights()]
    head.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    head.fit(F, y, epochs=2, batch_size=8, verbose=0)
    after = head.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert not np.array_equal(after[2], before[2])  # the output layer did train


def test_a_saved_head_loads_with_its_fixed_affine_weights(tmp_path):
    F = features(20, seed=17)
    head = linear_head(2, "softmax")
    set_standardization(head, F, None)
    fit_linear_probe(head, F, classes(F, 2, seed=17), None, classification=True, seed=0)
    head.save(tmp_path / "head.keras")
    loaded = keras.saving.load_model(tmp_path / "head.keras")
    assert isinstance(loaded.get_layer("head_standardize"), FixedAffine)
    np.testing.assert_array_equal(head_output(loaded, F), head_output(head, F))
