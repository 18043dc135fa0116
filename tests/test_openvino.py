"""engine="openvino": the same features as TensorFlow, converted once, cached on disk."""

import os
import pickle
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("openvino", reason="the test extra installs OpenVINO")

from skptm import FineTunedClassifier, PretrainedFeatureTransformer, _engines, _openvino  # noqa: E402
from skptm._engine_table import IMAGES_PER_SECOND  # noqa: E402

from .conftest import LIGHT, SIZE  # noqa: E402


def cosine(a, b):
    return np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (12, SIZE, SIZE, 3), dtype=np.uint8)


def features(engine, X, precision="float32", **params):
    params = {"weights": None, "input_size": SIZE, **params}
    backbone = params.pop("backbone", LIGHT)
    return PretrainedFeatureTransformer(backbone, engine=engine, precision=precision, **params).transform(X)


# -- the same features --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backbone",
    [
        "mobilenet_v2",  # preprocessing "tf" (-1..1)
        "resnet50",  # "caffe" (BGR, mean subtracted)
        "densenet121",  # "torch" (0..1, ImageNet mean and std)
        "efficientnet_b0",  # "none": rescaling inside the Keras network
    ],
)
def test_same_features_for_every_preprocessing_family(backbone, images):
    reference = features("tensorflow", images, backbone=backbone, input_size=32)
    converted = features("openvino", images, backbone=backbone, input_size=32)
    assert converted.shape == reference.shape and converted.dtype == np.float32
    assert cosine(reference, converted).min() >= 0.99999


@pytest.mark.parametrize(
    "params",
    [{"pooling": "max"}, {"pooling": None}, {"layer": ["block_6_expand_relu", "out_relu"]}],
    ids=["max", "flat", "layers"],
)
def test_same_features_for_layers_and_pooling(params, images):
    reference = features("tensorflow", images, **params)
    converted = features("openvino", images, **params)
    assert converted.shape == reference.shape
    assert cosine(reference, converted).min() >= 0.99999


def test_bfloat16_is_close(images):
    reference = features("tensorflow", images)
    assert cosine(reference, features("openvino", images, precision="bfloat16")).min() >= 0.999


def test_one_row_per_item_in_order_nan_for_unreadable(tmp_path, images):
    paths = []
    for i, image in enumerate(images[:5]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a JPEG")
    mixed = [paths[3], broken, paths[0], paths[4]]
    transformer = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, engine="openvino",
                                               on_error="nan")
    with pytest.warns(UserWarning, match="broken.jpg"):
        out = transformer.transform(mixed)
    whole = transformer.transform(paths)
    assert out.shape == (4, whole.shape[1])
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[[0, 2, 3]], whole[[3, 0, 4]], rtol=1e-5, atol=1e-6)


def test_fine_tuned_inference(images):
    y = np.arange(len(images)) % 2
    clf = FineTunedClassifier(LIGHT, weights=None, input_size=SIZE, head_epochs=2, unfreeze=1,
                              finetune_epochs=1, random_state=0, engine="tensorflow").fit(images, y)
    size = len(pickle.dumps(clf))
    reference_proba, reference_features = clf.predict_proba(images), clf.transform(images)
    clf.set_params(engine="openvino")
    np.testing.assert_allclose(clf.predict_proba(images), reference_proba, atol=1e-5)
    assert cosine(clf.transform(images), reference_features).min() >= 0.99999
    np.testing.assert_array_equal(clf.predict(images), reference_proba.argmax(axis=1))
    clf.set_params(engine="tensorflow")
    assert len(pickle.dumps(clf)) == size  # nothing OpenVINO travels with it
    assert "openvino" not in pickle.dumps(clf).decode("latin-1").lower()


def test_auto_does_not_convert_a_fitted_model_for_a_small_call(images):
    y = np.arange(len(images)) % 2
    clf = FineTunedClassifier(LIGHT, weights=None, input_size=SIZE, head_epochs=2, unfreeze=0,
                              random_state=0, engine="auto").fit(images, y)
    before = _openvino.cache_info()["conversions"]
    clf.predict(images)
    assert _openvino.cache_info()["conversions"] == before


def test_a_model_trained_in_bfloat16_is_not_converted(images):
    y = np.arange(len(images)) % 2
    clf = FineTunedClassifier(LIGHT, weights=None, input_size=SIZE, head_epochs=1, unfreeze=0,
                              random_state=0, precision="bfloat16", engine="openvino").fit(images, y)
    with pytest.raises(ValueError, match="trained in float32"):
        clf.predict(images)


def test_threads_share_one_compiled_model(images):
    transformer = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, engine="openvino")
    expected = transformer.transform(images)
    results = [None] * 4

    def run(i):
        results[i] = transformer.transform(images)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_pickles_and_clones_stay_small(images):
    transformer = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, engine="openvino")
    size = len(pickle.dumps(transformer))
    transformer.transform(images)
    assert len(pickle.dumps(transformer)) == size < 1000


# -- the disk cache and other processes ----------------------------------------------------------


SECOND_PROCESS = """
import sys, time, numpy as np
from skptm import PretrainedFeatureTransformer, _openvino
X = np.load(sys.argv[1])
start = time.perf_counter()
out = PretrainedFeatureTransformer("{backbone}", weights=None, input_size={size}, engine="openvino").transform(X)
print(time.perf_counter() - start, _openvino.cache_info()["conversions"], _openvino.cache_info()["disk_hits"])
np.save(sys.argv[2], out)
"""


def run_process(tmp_path, cache, images, backbone=LIGHT, size=SIZE):
    np.save(tmp_path / "x.npy", images)
    script = textwrap.dedent(SECOND_PROCESS.format(backbone=backbone, size=size))
    env = {**os.environ, "SKPTM_CACHE_DIR": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.npy"), str(tmp_path / "out.npy")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seconds, conversions, hits = out.stdout.split()[-3:]
    return float(seconds), int(conversions), int(hits), np.load(tmp_path / "out.npy")


def test_a_second_process_reads_the_converted_model(tmp_path, images):
    cache = tmp_path / "cache"
    _, conversions, hits, first = run_process(tmp_path, cache, images)
    assert (conversions, hits) == (1, 0)
    assert list((cache / "openvino").glob("*.xml")) and not list((cache / "openvino").glob("*.tmp*"))
    _, conversions, hits, second = run_process(tmp_path, cache, images)
    assert (conversions, hits) == (0, 1)
    np.testing.assert_array_equal(first, second)


def test_a_damaged_entry_is_converted_again(tmp_path, images, monkeypatch):
    cache = tmp_path / "cache"
    run_process(tmp_path, cache, images)
    for binary in (cache / "openvino").glob("*.bin"):
        binary.write_bytes(binary.read_bytes()[:100])
    for compiled in (cache / "openvino").rglob("*.blob"):
        compiled.unlink()
    monkeypatch.setenv("SKPTM_CACHE_DIR", str(cache))
    transformer = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE + 8, engine="openvino")
    transformer.transform(images[:2])  # another network: converted and stored beside the damaged one
    _openvino._compiled.clear()
    reference = features("tensorflow", images)
    with pytest.warns(_openvino.OpenVINOCacheWarning, match="could not be read"):
        out = features("openvino", images)
    assert cosine(reference, out).min() >= 0.99999
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _openvino._compiled.clear()
        features("openvino", images)  # the entry was replaced by a good one


def test_an_unwritable_cache_only_warns(tmp_path, images, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SKPTM_CACHE_DIR", str(blocked))
    with pytest.warns(_openvino.OpenVINOCacheWarning, match="SKPTM_CACHE_DIR"):
        out = features("openvino", images, input_size=SIZE - 8)
    assert np.isfinite(out).all()


# -- without OpenVINO, and the choice of "auto" --------------------------------------------------


def test_without_openvino(tmp_path):
    script = textwrap.dedent("""
        import sys
        sys.modules["openvino"] = None  # as if it were not installed
        import numpy as np
        from skptm import PretrainedFeatureTransformer
        X = np.zeros((2, 32, 32, 3), np.uint8)
        auto = PretrainedFeatureTransformer("mobilenet_v2", weights=None, input_size=32)
        assert auto._network().engine == "tensorflow"
        auto.transform(X)
        try:
            PretrainedFeatureTransformer("mobilenet_v2", weights=None, input_size=32, engine="openvino").transform(X)
        except ImportError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'pip install "skptm[openvino]"' in out.stdout


@pytest.mark.parametrize("name", sorted(IMAGES_PER_SECOND))
def test_auto_takes_openvino_only_where_measured_faster(name):
    from skptm._precision import resolve_precision

    rates = IMAGES_PER_SECOND[name]
    for precision in ("float32", "bfloat16", "auto"):
        engine, chosen = _engines.resolve_engine("auto", precision, name)
        tensorflow_precision = resolve_precision(precision, name)
        if engine == "openvino":
            assert precision in (chosen, "auto")
            assert rates[f"openvino/{chosen}"] >= 1.1 * rates[f"tensorflow/{tensorflow_precision}"]
        else:
            assert chosen == tensorflow_precision


def test_auto_never_picks_bfloat16_without_native_support(monkeypatch):
    monkeypatch.setattr(_engines, "cpu_has_bfloat16", lambda: False)
    monkeypatch.setattr("skptm._precision.cpu_has_bfloat16", lambda: False)
    for name in IMAGES_PER_SECOND:
        assert _engines.resolve_engine("auto", "auto", name)[1] == "float32"
        assert _engines.resolve_engine("openvino", "auto", name) == ("openvino", "float32")


def test_auto_takes_tensorflow_for_custom_backbones():
    import keras

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs)))
    assert _engines.resolve_engine("auto", "float32", model) == ("tensorflow", "float32")


def test_grid_search_workers_read_the_converted_model(tmp_path, images, monkeypatch):
    """loky workers (other processes) read the model the parent converted."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    monkeypatch.setenv("SKPTM_CACHE_DIR", str(tmp_path))  # inherited by the workers
    _openvino._compiled.clear()
    y = np.arange(len(images)) % 2
    pipe = make_pipeline(
        PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, engine="openvino"),
        LogisticRegression(max_iter=200),
    )
    in_process = cross_val_score(pipe, images, y, cv=2)
    [converted] = (tmp_path / "openvino").glob("*.xml")
    written = converted.stat().st_mtime_ns
    in_workers = cross_val_score(pipe, images, y, cv=2, n_jobs=2)
    np.testing.assert_array_equal(in_workers, in_process)
    assert converted.stat().st_mtime_ns == written  # read, not converted and stored again
