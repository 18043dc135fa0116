"""skops persistence: round trips in a fresh process, trust by name, no pickle
inside, the base-weights fingerprint, atomic writes."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import skptm
import skptm._persistence
from skptm import FineTunedClassifier, FineTunedRegressor, PretrainedFeatureTransformer
from skptm._unfreeze import layer_at

from .conftest import LIGHT, assert_same_up_to_batching

SIZE = 32
FINETUNED = {
    "backbone": LIGHT,
    "weights": None,
    "input_size": SIZE,
    "head_epochs": 20,
    "unfreeze": 2,
    "finetune_epochs": 1,
    "batch_size": 8,
    "random_state": 0,
}

#: skops nodes that rebuild plain data: no pickle, no reduce, no callables
#: (TypeNode names the built-in type of dict keys).
DATA_NODES = {"ObjectNode", "DictNode", "ListNode", "TupleNode", "JsonNode", "NdArrayNode", "TypeNode"}


def _double(X):
    return 2 * X


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (12, SIZE, SIZE, 3), dtype=np.uint8)
    X[::2, ..., 0] = 250  # a learnable difference: red or not
    return X, np.array(["red", "other"] * 6)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, images):
    """The three estimators, fitted, saved with skptm.save, with their outputs."""
    X, y = images
    root = tmp_path_factory.mktemp("saved")
    pipe = make_pipeline(
        PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE), StandardScaler(), LogisticRegression()
    ).fit(X, y)
    clf = FineTunedClassifier(**FINETUNED).fit(X, y)
    reg = FineTunedRegressor(**FINETUNED).fit(X, (y == "red").astype(float))
    estimators = {"pipe": pipe, "clf": clf, "reg": reg}
    for name, estimator in estimators.items():
        skptm.save(estimator, root / f"{name}.skops")
    expected = {
        "X": X,
        "pipe_features": pipe[0].transform(X),
        "pipe_proba": pipe.predict_proba(X),
        "pipe_labels": pipe.predict(X),
        "clf_proba": clf.predict_proba(X),
        "clf_labels": clf.predict(X),
        "clf_features": clf.transform(X),
        "reg_values": reg.predict(X),
    }
    np.savez(root / "expected.npz", **expected)
    return root, estimators


def schema(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("schema.json"))


def nodes(tree):
    """Every node of a skops schema, depth first."""
    if isinstance(tree, dict):
        if "__loader__" in tree:
            yield tree
        for value in tree.values():
            yield from nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from nodes(value)


@pytest.mark.exhaustive  # slow (a real process pool or a fresh process): in the second tier, which .ci/run also runs
def test_round_trip_in_a_fresh_process(saved):
    root, _ = saved
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import skptm

        root = sys.argv[1]
        expected = np.load(f"{root}/expected.npz")
        X = expected["X"]
        pipe, clf, reg = (skptm.load(f"{root}/{name}.skops") for name in ("pipe", "clf", "reg"))
        np.testing.assert_array_equal(pipe[0].transform(X), expected["pipe_features"])
        np.testing.assert_array_equal(pipe.predict_proba(X), expected["pipe_proba"])
        np.testing.assert_array_equal(pipe.predict(X), expected["pipe_labels"])
        np.testing.assert_array_equal(clf.predict_proba(X), expected["clf_proba"])
        np.testing.assert_array_equal(clf.predict(X), expected["clf_labels"])
        np.testing.assert_array_equal(clf.transform(X), expected["clf_features"])
        np.testing.assert_array_equal(reg.predict(X), expected["reg_values"])
        print("round trip ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "round trip ok" in result.stdout


def test_only_skptm_types_are_untrusted(saved):
    root, _ = saved
    assert skops.io.get_untrusted_types(file=root / "pipe.skops") == ["skptm._transformer.PretrainedFeatureTransformer"]
    assert skops.io.get_untrusted_types(file=root / "clf.skops") == ["skptm._classifier.FineTunedClassifier"]
    assert skops.io.get_untrusted_types(file=root / "reg.skops") == ["skptm._regressor.FineTunedRegressor"]
    # Trusting them by name is all a user needs.
    loaded = skops.io.load(root / "clf.skops", trusted=["skptm._classifier.FineTunedClassifier"])
    assert isinstance(loaded, FineTunedClassifier)


@pytest.mark.parametrize("name", ["pipe", "clf", "reg"])
def test_file_holds_no_pickle(saved, name):
    root, estimators = saved
    path = root / f"{name}.skops"
    tree = schema(path)
    loaders = {node["__loader__"] for node in nodes(tree)}
    assert loaders <= DATA_NODES, loaders - DATA_NODES
    assert all(node["type"] == "numpy" for node in nodes(tree) if node["__loader__"] == "NdArrayNode")
    assert all(node["__module__"] == "builtins" for node in nodes(tree) if node["__loader__"] == "TypeNode")
    assert {node["__module__"].split(".")[0] for node in nodes(tree) if node["__loader__"] == "ObjectNode"} <= {
        "skptm",
        "sklearn",
    }
    with zipfile.ZipFile(path) as archive:
        members = archive.namelist()
        assert all(member == "schema.json" or member.endswith(".npy") for member in members), members
        arrays = [np.load(archive.open(member), allow_pickle=False) for member in members if member.endswith(".npy")]
    assert all(array.dtype != object for array in arrays)
    if name != "pipe":  # the trained weights are among the plain arrays
        trained = estimators[name]._trained
        expected = trained.head.get_weights() + [
            weight for path in trained.unfrozen for weight in layer_at(trained.base, path).get_weights()
        ]
        assert len(expected) >= 4
        for weight in expected:
            assert any(array.shape == weight.shape and np.array_equal(array, weight) for array in arrays)


def test_tampered_fingerprint_is_refused(saved, tmp_path):
    root, _ = saved
    tree = schema(root / "clf.skops")
    fingerprint = tree["content"]["content"]["_trained_state"]["content"]["base_fingerprint"]
    fingerprint["content"] = json.dumps("0" * 64)
    tampered = tmp_path / "tampered.skops"
    with zipfile.ZipFile(root / "clf.skops") as source, zipfile.ZipFile(tampered, "w") as target:
        for member in source.namelist():
            data = json.dumps(tree).encode() if member == "schema.json" else source.read(member)
            target.writestr(member, data)
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        skptm.load(tampered)


def test_other_base_weights_are_refused(images, tmp_path):
    import keras

    X, y = images
    weights = tmp_path / "base.weights.h5"
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    base.save_weights(weights)
    clf = FineTunedClassifier(LIGHT, weights=str(weights), input_size=SIZE, unfreeze=0, random_state=0).fit(X, y)
    skptm.save(clf, tmp_path / "clf.skops")
    assert isinstance(skptm.load(tmp_path / "clf.skops"), FineTunedClassifier)

    base.set_weights([w + 1 for w in base.get_weights()])
    base.save_weights(weights)  # same path, other weights
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        skptm.load(tmp_path / "clf.skops")


def test_parameters_changed_after_fit_do_not_change_what_is_saved(saved, tmp_path):
    """set_params changes the next fit, not the fitted model: a round trip
    (skops or pickle) rebuilds the model the estimator was fitted as."""
    import pickle

    root, _ = saved
    expected = np.load(root / "expected.npz")
    clf = skptm.load(root / "clf.skops")
    clf.set_params(backbone="mobilenet_v3_small", input_size=48, unfreeze=0, hidden_units=(8,), dropout=0.5)
    np.testing.assert_allclose(clf.predict_proba(expected["X"]), expected["clf_proba"], rtol=0, atol=1e-6)
    skptm.save(clf, tmp_path / "changed.skops")
    for again in (skptm.load(tmp_path / "changed.skops"), pickle.loads(pickle.dumps(clf))):
        np.testing.assert_allclose(again.predict_proba(expected["X"]), expected["clf_proba"], rtol=0, atol=1e-6)
        assert again.get_params()["backbone"] == "mobilenet_v3_small"  # the parameters stay as set


def test_save_is_atomic(saved, tmp_path, monkeypatch):
    _, estimators = saved
    path = tmp_path / "model.skops"
    skptm.save(estimators["clf"], path)
    before = path.read_bytes()

    def interrupted(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(skptm._persistence.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        skptm.save(estimators["reg"], path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.skops"]
    assert isinstance(skptm.load(path), FineTunedClassifier)


def test_unstorable_parameter_fails_clearly_and_keeps_the_old_file(tmp_path):
    import keras

    path = tmp_path / "model.skops"
    skptm.save(PretrainedFeatureTransformer(LIGHT), path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="Cannot save FineTunedClassifier with skops.*Keras objects"):
        skptm.save(FineTunedClassifier(LIGHT, augment=keras.layers.RandomFlip()), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.skops"]


def test_other_untrusted_types_are_refused_by_name(tmp_path):
    path = tmp_path / "pipe.skops"
    pipe = make_pipeline(PretrainedFeatureTransformer(LIGHT), FunctionTransformer(_double))
    skptm.save(pipe, path)
    name = f"{__name__}._double"
    assert name in skops.io.get_untrusted_types(file=path)
    with pytest.raises(TypeError, match=rf"not trusted: \['{name}'\].*trusted=\['{name}'\]"):
        skptm.load(path)
    loaded = skptm.load(path, trusted=[name])
    assert loaded[1].func is _double
    with pytest.raises(TypeError, match="no way to trust everything"):
        skptm.load(path, trusted=True)


def test_path_parameters_are_trusted(tmp_path):
    path = tmp_path / "transformer.skops"
    skptm.save(PretrainedFeatureTransformer(LIGHT, weights=tmp_path / "w.weights.h5"), path)
    assert skptm.load(path).weights == tmp_path / "w.weights.h5"


def test_missing_skops_gives_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "skops", None)
    monkeypatch.setitem(sys.modules, "skops.io", None)
    with pytest.raises(ImportError, match=r'pip install "skptm\[skops\]"'):
        skptm.save(PretrainedFeatureTransformer(LIGHT), tmp_path / "x.skops")
    with pytest.raises(ImportError, match=r'pip install "skptm\[skops\]"'):
        skptm.load(tmp_path / "x.skops")


def test_import_skptm_does_not_import_skops():
    code = "import sys, skptm; skptm.save, skptm.load; print(sorted({'skops', 'tensorflow'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_files_written_by_skptm_0_1_0_still_load_and_predict_the_same():
    """A classifier fitted and saved by skptm 0.1.0 (engine="auto", before
    engine_ existed), as a pickle and as a skops file."""
    import pickle
    from pathlib import Path

    import skptm

    folder = Path(__file__).parent / "data" / "skptm-0.1.0"
    expected = np.load(folder / "expected.npz")
    with open(folder / "classifier.pkl", "rb") as file:
        pickled = pickle.load(file)
    loaded = skptm.load(folder / "classifier.skops")
    for estimator in (pickled, loaded):
        assert estimator.engine == "auto" and not hasattr(estimator, "engine_")
        # Written with all cores; the test may run on a share of them (within the bound).
        assert_same_up_to_batching(estimator.predict_proba(expected["X"]), expected["proba"], probabilities=True)
