"""Scale-out on Dask: a real LocalCluster of two worker processes on loopback.

Results on the cluster must equal ``transform`` in this process, in input
order, for Dask arrays, Bags and DataFrame columns; each worker builds a
network once; joblib's Dask backend runs GridSearchCV to the same result.

The estimators load a weights file this module writes, rather than
``weights=None``: a random initialisation is drawn from Python's global
``random``, which Dask's own threads draw from as well (when they sample
messages for compression), so a worker building a ``weights=None`` network
while it receives data may get other weights than this process.
"""

import pickle
import subprocess
import sys
import warnings

import cloudpickle
import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import joblib
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

import skptm
import skptm.dask
from skptm import FineTunedClassifier, ImageReadError, PretrainedFeatureTransformer

from .conftest import LIGHT

SIZE = 32
N_FEATURES = 1280  # mobilenet_v2, pooled


def assert_same(result, expected):
    """Equal up to float noise, relative to the features' own scale."""
    expected = np.asarray(expected)
    scale = np.nanmax(np.abs(expected))
    np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each, on loopback; closed after the module."""
    with warnings.catch_warnings():
        # Under xdist, another worker's cluster may hold the scheduler's default HTTP port.
        warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
    with cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import keras

    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_32.weights.h5"
    model = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    model.save_weights(path)
    return str(path)


@pytest.fixture(scope="module")
def extractor(weights):
    return PretrainedFeatureTransformer(LIGHT, weights=weights, input_size=SIZE, batch_size=4)


@pytest.fixture(scope="module")
def images():
    """24 distinct images, so that a row in the wrong place is seen."""
    return np.random.default_rng(0).integers(0, 256, (24, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def paths(tmp_path_factory, images):
    """Real JPEG and PNG files, of another size than the network's, in shuffled order."""
    root = tmp_path_factory.mktemp("dask_images")
    written = []
    for i, image in enumerate(images):
        path = root / f"{i:02d}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(image).resize((40, 30)).save(path)
        written.append(str(path))
    order = np.random.default_rng(1).permutation(len(written))
    return [written[i] for i in order]


@pytest.fixture(scope="module")
def path_features(extractor, paths):
    return extractor.transform(paths)


# -- arrays -------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [(5, SIZE, SIZE, 3), (7, SIZE // 2, SIZE, 1)], ids=["rows", "split-on-every-axis"])
def test_array_matches_in_process(client, extractor, images, chunks):
    features = skptm.dask.transform(extractor, da.from_array(images, chunks=chunks))

    assert features.dtype == np.float32
    assert features.chunks == (da.from_array(images, chunks=chunks).chunks[0], (N_FEATURES,))
    assert_same(features.compute(), extractor.transform(images))


def test_grayscale_array_and_array_of_paths(client, extractor, images, paths, path_features):
    gray = images[..., 0]
    assert_same(skptm.dask.transform(extractor, da.from_array(gray, chunks=10)).compute(), extractor.transform(gray))

    column = da.from_array(np.asarray(paths, dtype=object), chunks=7)
    assert_same(skptm.dask.transform(extractor, column).compute(), path_features)


def test_plain_map_blocks_recipe(client, extractor, images):
    """The recipe of docs/dask.md, without skptm.dask."""
    stack = da.from_array(images, chunks=(6, SIZE, SIZE, 3))
    features = stack.map_blocks(
        extractor.transform,
        drop_axis=[2, 3],
        chunks=(stack.chunks[0], (N_FEATURES,)),
        dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
    )
    assert_same(features.compute(), extractor.transform(images))


# -- bags ---------------------------------------------------------------------------------------


def test_bag_of_paths_matches_in_process(client, extractor, paths, path_features):
    bag = db.from_sequence(paths, npartitions=5)
    features = skptm.dask.transform(extractor, bag)

    assert features.chunks[0] == tuple(bag.map_partitions(lambda part: [len(part)]).compute())
    assert features.shape == (len(paths), N_FEATURES)
    assert_same(features.compute(), path_features)


@pytest.mark.exhaustive  # a DINOv2 built in every worker process
def test_a_kerashub_transformer_on_the_cluster(client, paths):
    """A DINOv2 (KerasHub, random weights: the same in every process) on the
    workers gives the features it gives here."""
    pytest.importorskip("keras_hub")
    extractor = PretrainedFeatureTransformer("dinov2_small", weights=None, input_size=28, pooling="cls+avg")
    features = skptm.dask.transform(extractor, db.from_sequence(paths, npartitions=3))
    assert features.shape == (len(paths), 2 * 384)
    assert_same(features.compute(), extractor.transform(paths))


# -- dataframes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "as_input", [lambda frame: frame["path"], lambda frame: frame[["path"]]], ids=["series", "one-column-frame"]
)
def test_dataframe_column_of_paths(client, extractor, paths, path_features, as_input):
    index = pd.Index(np.arange(100, 100 + len(paths)), name="image_id")
    frame = dd.from_pandas(pd.DataFrame({"path": paths}, index=index), npartitions=4)

    features = skptm.dask.transform(extractor, as_input(frame))
    result = features.compute()

    assert features.npartitions == 4
    assert features.divisions == frame.divisions
    assert list(result.columns) == list(extractor.get_feature_names_out())
    pd.testing.assert_index_equal(result.index, index)
    assert_same(result.to_numpy(), path_features)


def test_plain_map_partitions_recipe(client, extractor, paths, path_features):
    """The recipe of docs/dask.md, without skptm.dask."""
    names = list(extractor.get_feature_names_out())
    frame = dd.from_pandas(pd.DataFrame({"path": paths}), npartitions=3)
    features = frame["path"].map_partitions(
        lambda part: pd.DataFrame(extractor.transform(part), index=part.index, columns=names),
        meta=pd.DataFrame(columns=names, dtype=np.float32),
    )
    assert_same(features.compute().to_numpy(), path_features)


def test_multi_column_dataframe_is_refused(extractor, paths):
    frame = dd.from_pandas(pd.DataFrame({"path": paths, "label": 0}), npartitions=2)
    with pytest.raises(ValueError, match="exactly one column"):
        skptm.dask.transform(extractor, frame)


# -- unreadable items -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_missing(paths, tmp_path_factory):
    missing = str(tmp_path_factory.mktemp("gone") / "missing.jpg")
    return [*paths[:9], missing, *paths[10:]], missing


def test_unreadable_path_raises_with_its_place(client, extractor, with_missing):
    items, missing = with_missing
    bag = db.from_sequence(items, npartitions=4)
    with pytest.raises(ImageReadError, match="missing.jpg") as caught:
        skptm.dask.transform(extractor, bag).compute()
    assert (caught.value.index, caught.value.path) == (9, missing)

    frame = dd.from_pandas(pd.DataFrame({"path": items}, index=np.arange(len(items)) * 10), npartitions=4)
    with pytest.raises(ImageReadError, match="missing.jpg") as caught:
        skptm.dask.transform(extractor, frame["path"]).compute()
    assert caught.value.index == 90  # the row's index label


def test_unreadable_path_gives_nan_row(client, extractor, with_missing, path_features):
    items, _ = with_missing
    lenient = PretrainedFeatureTransformer(**{**extractor.get_params(), "on_error": "nan"})
    frame = dd.from_pandas(pd.DataFrame({"path": items}), npartitions=4)

    result = skptm.dask.transform(lenient, frame["path"]).compute().to_numpy()

    assert np.isnan(result[9]).all()
    assert not np.isnan(np.delete(result, 9, axis=0)).any()
    assert_same(np.delete(result, 9, axis=0), np.delete(path_features, 9, axis=0))


def test_the_warning_names_the_place_in_the_whole_input(extractor, with_missing):
    """On a local scheduler the tasks' warnings reach the caller: the failed
    item's index is its place in the whole input (or its index label), not
    its position in its partition."""
    items, missing = with_missing
    lenient = PretrainedFeatureTransformer(**{**extractor.get_params(), "on_error": "nan"})
    series = dd.from_pandas(pd.Series(items, index=np.arange(len(items)) * 10), npartitions=4)
    for data, place in ((db.from_sequence(items, npartitions=4), "9"), (series, "90")):
        with dask.config.set(scheduler="synchronous"), pytest.warns(skptm.ImageReadWarning) as caught:
            skptm.dask.transform(lenient, data).compute()
        [warning] = [w.message for w in caught if isinstance(w.message, skptm.ImageReadWarning)]
        assert f"{place} ({missing})" in str(warning) and warning.failures[0][:2] == (int(place), missing)


# -- what travels, and what each worker builds ------------------------------------------------------


def test_network_built_once_per_worker(client, images):
    # Its own input size, so that its network is new to the workers whatever ran before.
    extractor = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=40, batch_size=4)
    stack = np.resize(images, (24, 40, 40, 3))
    before = client.run(skptm.network_cache_info)

    for address in before:
        for _ in range(2):  # 16 tasks on each worker, in two computations
            # name=False: new keys, so that the scheduler cannot reuse the last results.
            chunks = da.from_array(stack, chunks=(3, 40, 40, 3), name=False)
            client.compute(skptm.dask.transform(extractor, chunks), workers=address).result()

    after = client.run(skptm.network_cache_info)
    assert {
        address: after[address]["base_builds"] - before[address]["base_builds"] for address in after
    } == dict.fromkeys(after, 1)


def test_tasks_carry_no_weights(extractor, images):
    """Each task refers to the estimator's key; the estimator is one key of the graph."""
    features = skptm.dask.transform(extractor, da.from_array(images, chunks=(3, SIZE, SIZE, 3)))
    graph = dict(features.__dask_graph__())
    estimator_keys = [key for key in graph if str(key).startswith("skptm-estimator-")]
    task_sizes = [len(cloudpickle.dumps(graph[key])) for key in graph if "skptm-transform" in str(key)]

    assert len(estimator_keys) == 1
    assert len(task_sizes) == 8
    assert max(task_sizes) < 2_000
    assert len(pickle.dumps(extractor)) < 1_000


# -- fine-tuned estimators ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier(weights, images):
    y = np.arange(len(images)) % 2
    return FineTunedClassifier(
        LIGHT, weights=weights, input_size=SIZE, unfreeze=1, finetune_epochs=1, batch_size=8, random_state=0
    ).fit(images, y)


@pytest.mark.exhaustive  # slow (fine-tuning, then a model in every worker): in the second tier, which .ci/run also runs
def test_fine_tuned_classifier_features_on_the_cluster(client, classifier, images):
    features = skptm.dask.transform(classifier, da.from_array(images, chunks=(6, SIZE, SIZE, 3)))
    graph = dict(features.__dask_graph__())

    assert max(len(cloudpickle.dumps(graph[key])) for key in graph if "skptm-transform" in str(key)) < 2_000
    assert_same(features.compute(), classifier.transform(images))


@pytest.mark.exhaustive  # slow (fine-tuning, then a model in every worker): in the second tier, which .ci/run also runs
def test_estimator_that_cannot_be_restored_fails_its_tasks(client, classifier, images, tmp_path):
    """A worker whose weights differ from training reports why; it does not hang."""
    import keras

    other = tmp_path / "other.weights.h5"
    keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3)).save_weights(other)
    # As if fitted on a file at that path whose contents the workers no longer have.
    moved = pickle.loads(pickle.dumps(classifier)).set_params(weights=str(other))
    moved._build_params = {**moved._build_params, "weights": str(other)}
    features = skptm.dask.transform(moved, da.from_array(images, chunks=(12, SIZE, SIZE, 3)))

    with pytest.raises(ValueError, match="fingerprint mismatch"):
        client.compute(features).result(timeout=120)


# -- GridSearchCV on joblib's Dask backend ---------------------------------------------------------


@pytest.mark.exhaustive  # slow (fine-tuning, then a model in every worker): in the second tier, which .ci/run also runs
def test_grid_search_with_joblib_dask_backend(client, extractor, images):
    y = (images[..., 0].mean(axis=(1, 2)) > images[..., 2].mean(axis=(1, 2))).astype(int)
    pipe = make_pipeline(extractor, LogisticRegression(max_iter=500))
    grid = {"pretrainedfeaturetransformer__pooling": ["avg", "max"], "logisticregression__C": [0.01, 1e6]}

    local = GridSearchCV(pipe, grid, cv=2).fit(images, y)
    with joblib.parallel_config(backend="dask"):
        distributed = GridSearchCV(pipe, grid, cv=2, n_jobs=-1).fit(images, y)

    assert distributed.best_params_ == local.best_params_
    for name in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_allclose(distributed.cv_results_[name], local.cv_results_[name])


# -- input checks and imports ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "X", [np.zeros((2, SIZE, SIZE, 3), np.uint8), ["a.jpg"], pd.Series(["a.jpg"])], ids=["ndarray", "list", "pandas"]
)
def test_non_dask_input_is_refused(extractor, X):
    with pytest.raises(TypeError, match="dask Array of images.*estimator.transform"):
        skptm.dask.transform(extractor, X)


def test_estimator_without_transform_is_refused(images):
    with pytest.raises(TypeError, match="transform method"):
        skptm.dask.transform(LogisticRegression(), da.from_array(images))


def test_works_on_dask_local_scheduler_too(extractor, images):
    features = skptm.dask.transform(extractor, da.from_array(images, chunks=(8, SIZE, SIZE, 3)))
    with dask.config.set(scheduler="threads"):
        assert_same(features.compute(), extractor.transform(images))


def test_import_skptm_imports_neither_dask_nor_tensorflow():
    code = "import skptm, sys; print(sorted({'dask', 'distributed', 'tensorflow', 'keras'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_dask_gives_the_install_hint():
    code = "import sys; sys.modules['dask'] = None; import skptm.dask"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert out.returncode != 0
    assert 'pip install "skptm[dask]"' in out.stderr
