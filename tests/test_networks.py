"""Network building: preprocessing equivalence, weights, caching, custom models."""

import os
import random
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from PIL import Image

import skptm
from skptm import PretrainedFeatureTransformer
from skptm._backbones import get_backbone_spec
from skptm.networks import cache_info, get_feature_network

from .conftest import LIGHT, SIZE

# One light network per preprocessing family, with its keras.applications module.
FAMILIES = {
    "caffe": ("vgg16", keras.applications.vgg16),
    "tf": ("mobilenet_v2", keras.applications.mobilenet_v2),
    "torch": ("densenet121", keras.applications.densenet),
    "none": ("efficientnet_b0", keras.applications.efficientnet),
}


def save_random_weights(name, path, seed):
    """Weights of a randomly initialised network, as a user would save them."""
    constructor = get_backbone_spec(name).constructor()
    state = random.getstate()
    random.seed(seed)
    try:
        model = constructor(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    finally:
        random.setstate(state)
    model.save_weights(path)
    return path


@pytest.fixture(scope="module")
def png_paths(tmp_path_factory):
    """PNG files at another size than the network's, with varied content."""
    root = tmp_path_factory.mktemp("png")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(6):
        image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
        image[:, : 10 * (i + 1)] //= 3  # different structure per image
        path = root / f"{i}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_features_equal_plain_keras_with_preprocess_input(family, png_paths, tmp_path):
    name, module = FAMILIES[family]
    assert get_backbone_spec(name).preprocessing == family
    # What a careful user computes by hand with plain Keras: the network with
    # global average pooling (what pooling="avg" adds), whose weights skptm loads.
    base = get_backbone_spec(name).constructor()(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    weights = tmp_path / f"{name}.weights.h5"
    base.save_weights(weights)
    plain = keras.Model(base.input, keras.layers.GlobalAveragePooling2D()(base.output))
    pixels = np.stack(
        [
            keras.utils.img_to_array(keras.utils.load_img(p, target_size=(SIZE, SIZE), interpolation="bilinear"))
            for p in png_paths
        ]
    )
    # Called eagerly: a reference needs no compiled function (tracing one costs seconds).
    expected = keras.ops.convert_to_numpy(plain(module.preprocess_input(pixels.copy()), training=False))

    extractor = PretrainedFeatureTransformer(name, weights=weights, input_size=SIZE, batch_size=4)
    features = extractor.transform(png_paths)

    assert features.shape == expected.shape == (6, get_backbone_spec(name).feature_size)
    assert expected.std() > 0
    relative = np.linalg.norm(features - expected) / np.linalg.norm(expected)
    assert relative <= 1e-4, relative
    if family != "none":  # the comparison is sensitive to the preprocessing
        unpreprocessed = keras.ops.convert_to_numpy(plain(pixels, training=False))
        assert np.linalg.norm(features - unpreprocessed) / np.linalg.norm(unpreprocessed) > 1e-2


@pytest.mark.exhaustive  # slow (processes): in the second tier, which .ci/run also runs
def test_random_weights_are_the_same_in_every_process():
    script = textwrap.dedent(
        f"""
        import numpy as np
        from skptm import PretrainedFeatureTransformer
        X = np.full((1, {SIZE}, {SIZE}, 3), 128, np.uint8)
        print(repr(PretrainedFeatureTransformer("{LIGHT}", weights=None, input_size={SIZE}).transform(X)[0, :5].tolist()))
        """
    )
    here = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE).transform(
        np.full((1, SIZE, SIZE, 3), 128, np.uint8)
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    np.testing.assert_allclose(eval(out.stdout.strip().splitlines()[-1]), here[0, :5], rtol=1e-5)


def test_weights_file_that_does_not_exist(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        PretrainedFeatureTransformer(LIGHT, weights=missing, input_size=SIZE).fit(None)


def test_weights_file_of_another_architecture(tmp_path):
    path = save_random_weights("mobilenet", tmp_path / "mobilenet.weights.h5", seed=1)
    with pytest.raises(ValueError, match=r"mobilenet\.weights\.h5.*does not fit backbone 'vgg16'"):
        PretrainedFeatureTransformer("vgg16", weights=path, input_size=SIZE).fit(None)


def test_second_construction_reuses_the_network():
    from sklearn.base import clone

    X = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    first = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, pooling="max")
    first.transform(X)
    before = cache_info()
    network = first._network()
    clone(first).fit(X).transform(X)
    PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, pooling="max").transform(X)
    after = cache_info()
    assert after["base_builds"] == before["base_builds"]
    assert after["misses"] == before["misses"]
    assert clone(first)._network() is network
    # Another pooling is a cheap wrapper around the same base network.
    avg = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, pooling="avg")
    assert avg._network().base is network.base
    assert cache_info()["base_builds"] == before["base_builds"]


def test_rewritten_weights_file_is_reloaded(tmp_path):
    path = tmp_path / "w.weights.h5"
    X = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    save_random_weights(LIGHT, path, seed=1)
    a = PretrainedFeatureTransformer(LIGHT, weights=path, input_size=SIZE).transform(X)
    os.remove(path)
    save_random_weights(LIGHT, path, seed=2)
    os.utime(path, ns=(1, 1))  # a different identity even on a coarse clock
    b = PretrainedFeatureTransformer(LIGHT, weights=path, input_size=SIZE).transform(X)
    assert np.linalg.norm(a - b) > 0.1 * np.linalg.norm(a)


def test_weights_copied_over_with_the_old_times_are_reloaded(tmp_path):
    """A copy that keeps the replaced file's times (cp -p, rsync, tar) and size
    is another file all the same: its change time says so."""
    path, other = tmp_path / "w.weights.h5", tmp_path / "other.weights.h5"
    X = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    save_random_weights(LIGHT, path, seed=1)
    save_random_weights(LIGHT, other, seed=2)
    a = PretrainedFeatureTransformer(LIGHT, weights=path, input_size=SIZE).transform(X)
    times = os.stat(path)
    assert os.stat(other).st_size == times.st_size
    path.write_bytes(other.read_bytes())  # in place: the same inode
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    b = PretrainedFeatureTransformer(LIGHT, weights=path, input_size=SIZE).transform(X)
    c = PretrainedFeatureTransformer(LIGHT, weights=other, input_size=SIZE).transform(X)
    np.testing.assert_array_equal(b, c)
    assert np.linalg.norm(a - b) > 0.1 * np.linalg.norm(a)


def tiny_image_model():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    return keras.Model(inputs, x, name="tiny")


def test_custom_model_and_callable_backbones():
    X = np.random.default_rng(0).integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    model = tiny_image_model()
    by_model = PretrainedFeatureTransformer(model, input_size=16, preprocessing="tf")
    features = by_model.fit_transform(X)
    assert features.shape == (3, 4)
    assert list(by_model.get_feature_names_out()) == [f"tiny_avg_{i}" for i in range(4)]
    resized = np.stack([np.asarray(Image.fromarray(x).resize((16, 16), Image.Resampling.BILINEAR)) for x in X])
    expected = model.predict(resized.astype("float32") / 127.5 - 1, verbose=0).mean(axis=(1, 2))
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-6)

    by_callable = PretrainedFeatureTransformer(tiny_image_model, input_size=16)
    assert by_callable.fit_transform(X).shape == (3, 4)
    assert by_callable.get_feature_names_out()[0] == "tiny_image_model_avg_0"


def test_clones_with_a_model_backbone_share_one_network():
    from sklearn.base import clone

    X = np.zeros((2, 16, 16, 3), np.uint8)
    transformer = PretrainedFeatureTransformer(tiny_image_model(), input_size=16)
    transformer.transform(X)
    before = cache_info()["base_builds"]
    for _ in range(3):
        clone(transformer).transform(X)  # clone deep-copies the model
    assert cache_info()["base_builds"] == before


def test_builds_and_fits_never_reseed_pythons_random(monkeypatch, colours):
    """Reseeding the global ``random`` would change it under other threads."""
    from skptm import FineTunedClassifier
    from skptm.networks import clear_network_cache

    seeds = []
    monkeypatch.setattr(random, "seed", lambda *args, **kwargs: seeds.append(args))
    clear_network_cache()
    X, y = colours
    PretrainedFeatureTransformer(LIGHT, weights=None, input_size=32).transform(X[:2])
    FineTunedClassifier(
        LIGHT, weights=None, input_size=32, hidden_units=(4,), head_epochs=1, finetune_epochs=1, random_state=0
    ).fit(X, y)
    assert seeds == []


def test_custom_backbone_needs_an_input_size():
    with pytest.raises(ValueError, match="input_size"):
        PretrainedFeatureTransformer(tiny_image_model).fit(None)


def test_callable_must_return_a_model():
    with pytest.raises(TypeError, match="must return a keras.Model"):
        PretrainedFeatureTransformer(lambda: "no", input_size=16).fit(None)


def test_unknown_layer_lists_close_names():
    with pytest.raises(ValueError, match="no layer named 'block_3_expnd'.*'block_3_expand'"):
        PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, layer="block_3_expnd").fit(None)


def test_public_cache_helpers():
    get_feature_network(LIGHT, weights=None, input_size=40)
    assert skptm.network_cache_info()["backbones"] >= 1
    skptm.clear_network_cache()
    info = skptm.network_cache_info()
    assert (info["backbones"], info["networks"]) == (0, 0)
    get_feature_network(LIGHT, weights=None, input_size=40)
    assert skptm.network_cache_info()["base_builds"] == info["base_builds"] + 1  # built again


def test_random_weights_do_not_depend_on_other_threads_drawing_from_random():
    """Dask's event loop draws from Python's global ``random`` while a worker
    builds; weights=None must still give the same network in every process."""
    import random
    import threading

    from skptm.networks import clear_network_cache, fingerprint, get_feature_network

    def build():
        clear_network_cache()
        return fingerprint(get_feature_network("mobilenet_v3_small", weights=None, input_size=32).base)

    quiet = build()
    stop = threading.Event()

    def draw():
        while not stop.is_set():
            random.randint(0, 10)

    thread = threading.Thread(target=draw)
    thread.start()
    try:
        busy = [build(), build()]
    finally:
        stop.set()
        thread.join()
    assert busy == [quiet, quiet]


def test_four_threads_on_a_first_call_build_once_and_agree():
    from concurrent.futures import ThreadPoolExecutor

    from skptm.networks import cache_info, clear_network_cache

    X = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    clear_network_cache()
    serial = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=40).transform(X)
    clear_network_cache()
    before = cache_info()["base_builds"]
    extractor = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=40)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: extractor.transform(X), range(4)))
    assert cache_info()["base_builds"] == before + 1
    for result in results:
        np.testing.assert_array_equal(result, serial)


def test_building_one_network_never_blocks_cache_hits_of_another():
    import threading
    import time

    from skptm.networks import get_feature_network

    get_feature_network(LIGHT, weights=None, input_size=32)  # cached
    started, release = threading.Event(), threading.Event()

    def slow_backbone():
        started.set()
        release.wait(timeout=30)  # still building until the cache hit below returned (or blocked 30 s)
        return tiny_image_model()

    builder = threading.Thread(target=lambda: get_feature_network(slow_backbone, input_size=16))
    builder.start()
    started.wait()
    start = time.perf_counter()
    get_feature_network(LIGHT, weights=None, input_size=32)
    waited = time.perf_counter() - start
    release.set()
    builder.join()
    assert waited < 1.0


def test_image_data_format_is_part_of_the_network_key():
    from skptm.networks import get_feature_network

    first = get_feature_network(LIGHT, weights=None, input_size=32)
    keras.config.set_image_data_format("channels_first")
    try:
        from skptm.networks.cache import _base_key

        key = _base_key(LIGHT, get_backbone_spec(LIGHT), None, 32)
    finally:
        keras.config.set_image_data_format("channels_last")
    assert key != _base_key(LIGHT, get_backbone_spec(LIGHT), None, 32)
    assert get_feature_network(LIGHT, weights=None, input_size=32) is first
