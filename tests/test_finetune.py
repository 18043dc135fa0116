"""FineTunedClassifier and FineTunedRegressor: the recipe, labels, safety, pickles."""

import collections
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import keras
import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from skptm import FineTunedClassifier, FineTunedRegressor, ImageReadError
from skptm._unfreeze import select_unfrozen
from skptm.networks import get_feature_network

from .conftest import LIGHT, LIGHT_2
from .test_common import tabular_backbone


def small_cnn():
    """A small image backbone whose random features separate colours well."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(x)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_b")(x)
    x = keras.layers.BatchNormalization(name="bn_b")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv_c")(x)
    return keras.Model(inputs, x, name="small_cnn")


def classifier(**params):
    return FineTunedClassifier(
        **{
            "backbone": small_cnn,
            "input_size": 32,
            "learning_rate": 0.02,
            "head_epochs": 8,
            "unfreeze": 2,
            "finetune_epochs": 2,
            "finetune_learning_rate": 1e-3,
            "batch_size": 8,
            "random_state": 0,
            **params,
        }
    )


@pytest.fixture(scope="module")
def fitted(colours):
    X, y = colours
    return classifier(validation_fraction=0.25).fit(X, y)


def test_is_a_classifier_and_learns(fitted, colours):
    X, y = colours
    assert is_classifier(FineTunedClassifier())
    assert list(fitted.classes_) == ["blue", "red"]
    assert fitted.score(X, y) >= 0.9
    proba = fitted.predict_proba(X)
    assert proba.shape == (24, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(fitted.predict(X), fitted.classes_[proba.argmax(axis=1)])


def test_history_and_epochs(fitted):
    assert set(fitted.history_) == {"head", "finetune"}
    for phase in ("head", "finetune"):
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(fitted.history_[phase])
        assert len(fitted.history_[phase]["loss"]) == fitted.n_epochs_[phase]
    # The linear head is solved exactly: one entry, the converged probe.
    assert fitted.n_epochs_ == {"head": 1, "finetune": 2}


def test_phase_two_trains_exactly_the_unfrozen_layers(fitted):
    """Frozen layers (BatchNormalization included) are bit-identical after fit."""
    assert fitted.unfrozen_layers_ == ["conv_b", "conv_c"]
    original = get_feature_network(small_cnn, input_size=32).base
    trained = fitted._trained.base
    for layer in (layer for layer in original.layers if layer.weights):
        before = layer.get_weights()
        after = trained.get_layer(layer.name).get_weights()
        if layer.name in fitted.unfrozen_layers_:
            assert any(not np.array_equal(a, b) for a, b in zip(before, after)), layer.name
        else:
            for a, b in zip(before, after):
                np.testing.assert_array_equal(a, b, err_msg=layer.name)


def test_mobilenet_bn_statistics_do_not_move(colours):
    X, y = colours
    clf = FineTunedClassifier(
        LIGHT, weights=None, input_size=32, head_epochs=1, unfreeze=3, finetune_epochs=1, random_state=0, batch_size=12
    ).fit(X, y)
    base = clf._trained.base
    original = get_feature_network(LIGHT, weights=None, input_size=32).base
    assert clf.unfrozen_layers_ == ["block_16_depthwise", "block_16_project", "Conv_1"]
    bn = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and all(not layer.trainable for layer in bn)
    for layer in bn:  # moving mean and variance included
        for a, b in zip(original.get_layer(layer.name).get_weights(), layer.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_unfreeze_forms():
    base = get_feature_network(LIGHT, weights=None, input_size=32).base
    weighted = [
        layer.name for layer in base.layers if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert select_unfrozen(base, 0) == ()
    assert select_unfrozen(base, 2) == tuple(weighted[-2:])
    assert select_unfrozen(base, 10_000) == tuple(weighted)
    assert select_unfrozen(base, len(weighted) + 1) == tuple(weighted)
    assert select_unfrozen(base, "all") == tuple(weighted)
    assert select_unfrozen(base, "block_16_expand") == (
        "block_16_expand",
        "block_16_depthwise",
        "block_16_project",
        "Conv_1",
    )
    with pytest.raises(ValueError, match="no layer named 'block_16_expnd'"):
        select_unfrozen(base, "block_16_expnd")


def test_callers_model_is_neither_changed_nor_shared(colours):
    X, y = colours
    model = small_cnn()
    weights = [w.copy() for w in model.get_weights()]
    clf = classifier(backbone=model, unfreeze=0, head_epochs=1).fit(X, y)
    assert model.trainable and all(layer.trainable for layer in model.layers)
    assert clf._trained.base is not model
    model.set_weights([w + 1 for w in weights])  # the user changes their model later
    for a, b in zip(clf._trained.base.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


def test_unfreeze_zero_or_no_epochs_skip_phase_two(colours):
    X, y = colours
    for params in ({"unfreeze": 0}, {"finetune_epochs": 0}):
        clf = classifier(head_epochs=2, **params).fit(X, y)
        assert clf.n_epochs_["finetune"] == 0 and clf.unfrozen_layers_ == []


@pytest.mark.parametrize(
    "labels",
    [np.array([3, 7] * 12), np.array([True, False] * 12), np.array(["a", "b", "c"] * 8)],
    ids=["ints", "bools", "three-strings"],
)
def test_label_types(colours, labels):
    X, _ = colours
    clf = classifier(head_epochs=2, unfreeze=0).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, np.unique(labels))
    assert set(clf.predict(X)) <= set(labels.tolist())
    assert clf.predict_proba(X).shape == (24, len(np.unique(labels)))


def test_class_weight_and_sample_weight_are_honoured(colours):
    X, y = colours
    only_red = classifier(unfreeze=0, class_weight={"red": 1.0, "blue": 0.0}).fit(X, y)
    assert (only_red.predict(X) == "red").all()
    weights = (y == "blue").astype(float)
    only_blue = classifier(unfreeze=0).fit(X, y, sample_weight=weights)
    assert (only_blue.predict(X) == "blue").all()


def test_balanced_class_weight_raises_the_recall_of_a_rare_class():
    """A rare class on hard, overlapping data: 'balanced' predicts it more
    often and finds more of it."""
    rng = np.random.default_rng(1)
    y = np.array(["rare"] * 12 + ["common"] * 108)
    X = rng.integers(0, 200, (120, 32, 32, 3)).astype(np.uint8)
    X[y == "rare", :, :, 0] += 12  # a faint colour cast under heavy noise
    plain = classifier(unfreeze=0).fit(X, y)
    balanced = classifier(unfreeze=0, class_weight="balanced").fit(X, y)
    recall = [(model.predict(X[y == "rare"]) == "rare").mean() for model in (plain, balanced)]
    assert (balanced.predict(X) == "rare").sum() > (plain.predict(X) == "rare").sum()
    assert recall[1] > recall[0]


def test_files_are_read_once_per_fit_within_the_budget(colours, tmp_path, monkeypatch):
    from PIL import Image

    import skptm._batches as batches
    from skptm._images import ImageReader

    X, y = colours
    paths = []
    for i, image in enumerate(X):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    reads = []
    decode = ImageReader.decode
    monkeypatch.setattr(ImageReader, "decode", lambda self, item: reads.append(item) or decode(self, item))
    in_memory = classifier(unfreeze=1, finetune_epochs=3).fit(paths, y)
    assert sorted(reads) == sorted(paths)  # each file once, for both phases
    reads.clear()
    monkeypatch.setattr(batches, "DECODED_IMAGES_BUDGET", 0)
    streamed = classifier(unfreeze=1, finetune_epochs=3).fit(paths, y)
    assert len(reads) >= 4 * len(paths)  # over budget: phase 1, then every epoch (Keras peeks too)
    np.testing.assert_array_equal(in_memory.predict_proba(X), streamed.predict_proba(X))
    assert streamed.score(paths, y) >= 0.9


def test_augmentation_only_while_training(colours):
    X, y = colours
    clf = classifier(augment="light", head_epochs=2, finetune_epochs=1).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))
    custom = keras.layers.RandomFlip("horizontal", seed=1)
    assert classifier(augment=custom, head_epochs=1, unfreeze=0).fit(X, y).predict(X).shape == (24,)


class WeightsPerEpoch(keras.callbacks.Callback):
    """Records the trainable weights, by path, at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append({v.path: keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables})


def test_early_stopping_restores_the_best_weights_and_stops(colours):
    X, y = colours
    recorder = WeightsPerEpoch()
    # A learning rate this high makes the training loss jump around.
    clf = classifier(
        unfreeze=2,
        finetune_epochs=30,
        finetune_learning_rate=0.5,
        early_stopping=True,
        patience=2,
        callbacks=[recorder],
    ).fit(X, y)
    losses = clf.history_["finetune"]["loss"]
    best = int(np.argmin(losses))
    assert clf.n_epochs_["finetune"] == len(losses) == best + 3 < 30  # stopped after `patience` epochs
    layers = [clf._trained.base.get_layer(name) for name in clf.unfrozen_layers_]
    layers.append(clf._trained.head.get_layer("head_output"))
    final = {w.path: keras.ops.convert_to_numpy(w) for layer in layers for w in layer.weights}
    assert set(final) == set(recorder.epochs[best])
    for path, value in final.items():
        np.testing.assert_array_equal(value, recorder.epochs[best][path], err_msg=path)
    assert not np.array_equal(final["conv_c/kernel"], recorder.epochs[-1]["conv_c/kernel"])


class Sabotage(keras.callbacks.Callback):
    """Scrambles every trainable weight after each training step."""

    def on_train_batch_end(self, batch, logs=None):
        for variable in self.model.trainable_variables:
            noise = np.random.default_rng(batch).normal(0, 3, variable.shape).astype("float32")
            variable.assign(variable + noise)


def test_phase_two_never_worsens_the_validation_loss(colours):
    """However badly phase 2 goes, the head-only model is a candidate and
    wins: predictions equal those of unfreeze=0."""
    X, y = colours
    params = {"validation_fraction": 0.25, "dropout": 0.0}
    head_only = classifier(unfreeze=0, **params).fit(X, y)
    wrecked = classifier(unfreeze=2, finetune_epochs=2, callbacks=[Sabotage()], **params).fit(X, y)
    assert min(wrecked.history_["finetune"]["val_loss"]) > head_only.history_["head"]["val_loss"][0]
    np.testing.assert_allclose(wrecked.predict_proba(X), head_only.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_global_state_is_left_alone(colours):
    """NumPy's global RNG and Keras's dtype policy are untouched. (Keras draws
    layer seeds from Python's ``random``, as any library may; skptm never
    reseeds or rewinds it: see test_networks.)"""
    X, y = colours
    np.random.seed(5)
    policy = keras.config.dtype_policy().name
    expected_np = np.random.random()
    np.random.seed(5)
    classifier(head_epochs=1, finetune_epochs=1).fit(X, y)
    assert np.random.random() == expected_np
    assert keras.config.dtype_policy().name == policy


@pytest.fixture(scope="module")
def in_a_fresh_process(fitted, colours, tmp_path_factory):
    """What a fresh process computes: ``fitted`` unpickled, then a new fit.

    One process for both (each start imports TensorFlow): the pickle is
    loaded first, while nothing is cached there yet.
    """
    X, y = colours
    folder = tmp_path_factory.mktemp("fresh")
    joblib.dump(fitted, folder / "clf.joblib")
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    script = textwrap.dedent(
        f"""
        import joblib, numpy as np, sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_finetune import classifier
        folder = {str(folder)!r}
        X, y = np.load(folder + "/X.npy"), np.load(folder + "/y.npy")
        np.save(folder + "/unpickled.npy", joblib.load(folder + "/clf.joblib").predict_proba(X))
        np.save(folder + "/refitted.npy", classifier(validation_fraction=0.25).fit(X, y).predict_proba(X))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return {name: np.load(folder / f"{name}.npy") for name in ("unpickled", "refitted")}


def test_same_random_state_same_predictions_in_a_fresh_process(in_a_fresh_process, fitted, colours):
    X, _ = colours
    np.testing.assert_allclose(in_a_fresh_process["refitted"], fitted.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_pickle_round_trip_in_a_fresh_process(in_a_fresh_process, fitted, colours):
    X, _ = colours
    np.testing.assert_array_equal(in_a_fresh_process["unpickled"], fitted.predict_proba(X))


def test_pickle_holds_only_changed_weights(colours):
    X, y = colours
    clf = FineTunedClassifier(
        LIGHT, weights=None, input_size=32, head_epochs=1, unfreeze=2, finetune_epochs=1, random_state=0
    ).fit(X, y)
    blob = pickle.dumps(clf)
    full = sum(w.size * w.dtype.itemsize for w in clf.model_.get_weights())
    changed = sum(
        w.size * w.dtype.itemsize
        for name in clf.unfrozen_layers_
        for w in clf._trained.base.get_layer(name).get_weights()
    ) + sum(w.nbytes for w in clf._trained.head.get_weights())
    assert len(blob) < changed + 64_000
    assert len(blob) < full / 3
    np.testing.assert_array_equal(pickle.loads(blob).predict_proba(X), clf.predict_proba(X))


def test_unpickling_with_other_base_weights_fails_clearly(colours, tmp_path):
    X, y = colours
    path = tmp_path / "base.weights.h5"
    small_cnn().save_weights(path)
    clf = classifier(weights=path, head_epochs=1, unfreeze=0).fit(X, y)
    blob = pickle.dumps(clf)
    model = small_cnn()
    model.set_weights([w + 1 for w in model.get_weights()])
    model.save_weights(path)  # same path, other weights
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        pickle.loads(blob)


def test_regressor_one_and_two_targets(colours):
    X, y = colours
    redness = X[..., 0].mean(axis=(1, 2)) / 255
    params = {
        "backbone": small_cnn,
        "input_size": 32,
        "learning_rate": 0.02,
        "head_epochs": 30,
        "unfreeze": 1,
        "finetune_epochs": 1,
        "batch_size": 8,
        "random_state": 0,
        "dropout": 0.0,
    }
    reg = FineTunedRegressor(**params).fit(X, redness)
    assert reg.predict(X).shape == (24,)
    assert reg.score(X, redness) > 0.5
    two = np.column_stack([redness, 1 - redness])
    reg2 = FineTunedRegressor(**params).fit(X, two)
    assert reg2.predict(X).shape == (24, 2) and reg2.n_outputs_ == 2


class Interrupt(keras.callbacks.Callback):
    def __init__(self, error):
        super().__init__()
        self.error = error

    def on_train_batch_end(self, batch, logs=None):
        raise self.error


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("callback failed")])
def test_failed_fit_keeps_the_previous_state(fitted, colours, error):
    X, y = colours
    clf = clone(fitted).fit(X, y)
    before = clf.predict_proba(X)
    attributes = set(vars(clf))
    clf.set_params(callbacks=[Interrupt(error)])
    with pytest.raises(type(error)):
        clf.fit(X[:20], y[:20])
    assert set(vars(clf)) == attributes
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_failed_fit_on_a_bad_image_keeps_the_previous_state(fitted, colours, image_dir):
    X, y = colours
    clf = pickle.loads(pickle.dumps(fitted))
    before = clf.predict_proba(X)
    bad = list(X[:5]) + [image_dir / "truncated.jpg"]
    with pytest.raises(ImageReadError, match="index 5"):
        clf.fit(bad, y[:6])
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    fresh = classifier()
    with pytest.raises(ImageReadError):
        fresh.fit(bad, y[:6])
    with pytest.raises(NotFittedError):
        fresh.predict(X)


def test_grid_search_over_the_unfreeze_depth_in_process(colours):
    """The search a user runs first; over registry backbones in worker processes below."""
    X, y = colours
    search = GridSearchCV(classifier(head_epochs=2, finetune_epochs=1), {"unfreeze": [0, 2]}, cv=2).fit(X, y)
    assert [params["unfreeze"] for params in search.cv_results_["params"]] == [0, 2]
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.unfreeze == search.best_params_["unfreeze"]
    assert set(search.predict(X)) <= {"red", "blue"}


@pytest.mark.exhaustive  # slow (a real process pool): in the second tier, which .ci/run also runs
def test_grid_search_over_backbone_and_unfreeze_in_workers(colours):
    X, y = colours
    search = GridSearchCV(
        FineTunedClassifier(
            weights=None, input_size=32, head_epochs=2, finetune_epochs=1, batch_size=12, random_state=0
        ),
        [{"backbone": [LIGHT_2], "unfreeze": [0, 2]}, {"backbone": [LIGHT], "unfreeze": [0]}],
        cv=2,
        n_jobs=2,
    )
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 3
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.predict(X).shape == (24,)
    assert set(search.predict(X)) <= {"red", "blue"}


class RecordTrainable(keras.callbacks.Callback):
    """Records, when each phase starts, which weights the optimiser will train."""

    def __init__(self):
        super().__init__()
        self.phases = []

    def on_train_begin(self, logs=None):
        self.phases.append(sorted({w.path.split("/")[-2] for w in self.model.trainable_weights}))


def test_trainable_weights_in_each_phase(colours):
    X, y = colours
    recorder = RecordTrainable()
    classifier(unfreeze=2, callbacks=[recorder], head_epochs=1, finetune_epochs=1).fit(X, y)
    # The linear head is solved by scikit-learn; Keras trains phase 2 only.
    assert recorder.phases == [["conv_b", "conv_c", "head_output"]]  # never bn_a / bn_b
    recorder = RecordTrainable()
    classifier(hidden_units=(8,), unfreeze=2, callbacks=[recorder], head_epochs=2, finetune_epochs=1).fit(X, y)
    head_phase, finetune_phase = recorder.phases
    assert head_phase == ["head_dense_0", "head_output"]  # the head alone, on precomputed features
    assert finetune_phase == ["conv_b", "conv_c", "head_dense_0", "head_output"]


@pytest.mark.parametrize("validation_fraction", [None, 0.25])
def test_each_fit_traces_its_training_step_once(colours, monkeypatch, validation_fraction):
    """Keras would make the optimiser's slots and the metrics while tracing the
    first step, which TensorFlow then traces again: seconds per fit."""
    X, y = colours
    traced = collections.Counter()
    train_step, test_step = keras.Model.train_step, keras.Model.test_step

    def counting_train_step(self, data):
        traced["train", self.name] += 1
        return train_step(self, data)

    def counting_test_step(self, data):
        traced["test", self.name] += 1
        return test_step(self, data)

    monkeypatch.setattr(keras.Model, "train_step", counting_train_step)
    monkeypatch.setattr(keras.Model, "test_step", counting_test_step)
    clf = classifier(validation_fraction=validation_fraction).fit(X, y)
    assert clf.n_epochs_["finetune"] == 2
    assert traced["train", "skptm_finetuned"] == 1
    assert traced["test", "skptm_finetuned"] == (1 if validation_fraction else 0)


def test_multi_label_targets_are_refused_with_the_alternative(colours):
    X, y = colours
    indicator = np.column_stack([y == "red", y == "blue"]).astype(int)
    with pytest.raises(ValueError, match=r"one label per image; y is multilabel-indicator.*OneVsRestClassifier"):
        classifier().fit(X, indicator)


def test_a_refit_on_images_drops_the_tables_column_count():
    """n_features_in_ and feature_names_in_ describe a table: fitted on one,
    then refitted on images, the estimator no longer has them."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(12, 4)), columns=list("abcd"))
    y = np.array([0, 1] * 6)
    clf = FineTunedClassifier(tabular_backbone, unfreeze=0, head_epochs=2, random_state=0).fit(table, y)
    assert clf.n_features_in_ == 4 and list(clf.feature_names_in_) == list("abcd")
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    clf.set_params(backbone=small_cnn, input_size=32).fit(images, y)
    assert not hasattr(clf, "n_features_in_") and not hasattr(clf, "feature_names_in_")


def test_the_validation_split_error_names_the_class_as_labelled():
    X = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    clf = classifier(validation_fraction=0.25, unfreeze=0, head_epochs=1)
    with pytest.raises(ValueError, match=r"Classes with too few members are: \['rare'\].*change the fraction"):
        clf.fit(X, ["common"] * 15 + ["rare"])


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_a_missing_label_is_named_by_its_index(missing):
    X = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"Input y contains NaN \(or None\) at index 2: every image"):
        classifier().fit(X, ["a", "b", missing, "a"])
    with pytest.raises(ValueError, match="got 1 class: 'a'. Add images of another class"):
        classifier().fit(X, ["a"] * 4)


def test_a_phase_two_that_diverged_in_every_epoch_is_not_kept(colours):
    """Without a hold-out, an all-NaN phase 2 used to stay in the model
    (NaN probabilities, None labels); the head-only model is kept, with a
    warning that names the learning rate."""
    from sklearn.exceptions import ConvergenceWarning

    X, y = colours
    head_only = classifier(finetune_epochs=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="Every epoch diverged.*finetune_learning_rate"):
        diverged = classifier(finetune_learning_rate=1e12, unfreeze="all").fit(X, y)
    assert np.isnan(diverged.history_["finetune"]["loss"]).all()
    np.testing.assert_allclose(diverged.predict_proba(X), head_only.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_a_custom_augmentation_layer_repeats_its_draws_at_each_fit(colours):
    """random_state seeds the user's own augmentation too: fitting twice, or
    a clone of a fitted estimator, gives the same model."""
    X, y = colours
    augment = keras.Sequential([keras.layers.RandomFlip(seed=1), keras.layers.RandomRotation(0.2, seed=2)])
    model = classifier(augment=augment, finetune_epochs=2, finetune_learning_rate=1e-2)
    first = model.fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(model.fit(X, y).predict_proba(X), first)
    np.testing.assert_array_equal(clone(model).fit(X, y).predict_proba(X), first)


def test_transform_with_tta_uses_the_fitted_network(colours):
    """A linear probe's transform with test-time views builds its network
    from the fitted parameters, not from ones set since."""
    X, y = colours
    model = classifier(unfreeze=0, tta="flip").fit(X, y)
    features = model.transform(X[:4])
    model.set_params(pooling="max", input_size=48)
    np.testing.assert_array_equal(model.transform(X[:4]), features)


def test_a_side_of_the_split_weighing_nothing_is_refused(colours):
    X, y = colours
    model = classifier(validation_fraction=0.25)
    from skptm._finetune import derive_seed

    _, held_out = model._split(len(y), np.unique(y, return_inverse=True)[1], derive_seed(0))  # fit's split
    for side in ("validation", "training"):
        weights = np.ones(len(y))
        zeroed = np.zeros(len(y), bool)
        zeroed[held_out] = True
        weights[zeroed if side == "validation" else ~zeroed] = 0.0
        with pytest.raises(ValueError, match=f"zero for every image on the {side} side"):
            model.fit(X, y, sample_weight=weights)
        assert not hasattr(model, "model_")


def test_a_class_held_out_whole_is_refused():
    from skptm._finetuned_base import holdout_split

    # scikit-learn's stratified split of 22 at 0.8 holds both images of 'z' out.
    labels = np.array(["a"] * 11 + ["b"] * 9 + ["z"] * 2)
    with pytest.raises(ValueError, match="class 'z' would be held out whole, with none left to train on"):
        holdout_split(len(labels), 0.8, 0, stratify=labels)
