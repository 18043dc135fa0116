"""Every invalid value of every parameter is refused before any work starts.

One table lists invalid values for every parameter of every estimator; a
parameter without an entry fails :func:`test_every_parameter_has_invalid_values`.
Each value must raise scikit-learn's ``InvalidParameterError`` (a ``ValueError``
and a ``TypeError`` whose message says what the parameter accepts) from
``fit`` (and ``transform``) on real image files, without building a network
or decoding a single file.

Checked later, on purpose, because they need the network or the data:

* a layer name that is well-formed but not in the backbone (``layer="conv9"``,
  ``unfreeze="conv9"``): only the built network knows its layers; the error
  then names the closest layer names;
* a callable ``backbone`` that does not return a ``keras.Model``, and a
  weights file of another architecture: only building tells;
* ``class_weight`` keys that are not classes, and a ``validation_fraction``
  too small to hold out a sample of each class: they depend on ``y``.
"""

import math

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

import skptm
from skptm import FineTunedClassifier, FineTunedRegressor, PretrainedFeatureTransformer
from skptm._images import ImageReader

from .conftest import LIGHT

#: Valid small settings; each case changes one parameter of these.
TRANSFORMER = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=32, batch_size=4)
FINE_TUNING = {
    "backbone": LIGHT,
    "weights": None,
    "input_size": 32,
    "head_epochs": 1,
    "unfreeze": 0,
    "finetune_epochs": 0,
    "batch_size": 4,
    "random_state": 0,
}
ESTIMATORS = {
    "PretrainedFeatureTransformer": TRANSFORMER,
    "FineTunedClassifier": FineTunedClassifier(**FINE_TUNING),
    "FineTunedRegressor": FineTunedRegressor(**FINE_TUNING),
}

#: Parameters every estimator has, and values none of them accepts.
COMMON = {
    "backbone": [5, None, ["resnet50"], "resnet_fifty", ""],
    "weights": [5, b"imagenet", ["imagenet"]],
    "input_size": [0, -32, 1.5, "224", (0, 5), (5, 0), (32,), (1, 2, 3), ("a", 32), (32.0, 32), [32, None], True],
    "resize": ["fit", "STRETCH", None, 1],
    "interpolation": ["cubic", None, 2],
    "preprocessing": ["caffee", "", 1],
    "batch_size": [0, -1, 1.5, "32", None],
    "precision": ["int8", "float64", "mixed_bfloat16", None],
    "engine": ["onnx", "OpenVINO", "cpu", None, 1],
    "cache": [3, b"cache", ["cache"]],
    "n_jobs": [0, 1.5, "all", "-1"],
    "on_error": ["skip", "NaN", None],
    "verbose": [-1, 0.5, "yes"],
    "tta": ["mirror", "", 1, [], ["identity", "rotate"], ["crop_center+spin"], [3], {"flip"}],
}
FINE_TUNED = {
    **COMMON,
    "pooling": ["sum", None, 1],
    "hidden_units": [5, None, "64", (0,), (-1,), ("a",), (1.5,), (64, 0), (True,)],
    "dropout": [1.0, 1.5, -0.1, math.nan, "0.2"],
    "learning_rate": [0, -1e-3, math.inf, math.nan, "fast"],
    "head_epochs": [-1, 1.5, None],
    "unfreeze": [-1, 1.5, None, ""],
    "finetune_learning_rate": [0, -1e-4, math.inf, math.nan],
    "finetune_epochs": [-1, 2.5, None],
    "layer_decay": [0, -0.5, 1.5, math.nan, "0.75"],
    "augment": [5, "heavy", ["light"]],
    "validation_fraction": [0, 0.0, 1, 1.0, 1.5, -0.1, math.nan, "0.2"],
    "early_stopping": ["yes", 1, None],
    "patience": [0, -1, 1.5, None],
    "callbacks": [5, "x", ["x"], [None], [print]],
    "random_state": ["a", -1, 1.5, 2**32],
}
INVALID = {
    "PretrainedFeatureTransformer": {
        **COMMON,
        "pooling": ["sum", "", 1],
        "layer": [
            5,
            [5],
            [],
            (),
            [""],
            "",
            ("block_1_expand", 3),
            {"block_1_expand"},
            ["block_1_expand", "block_1_expand"],
        ],
    },
    "FineTunedClassifier": {
        **FINE_TUNED,
        "class_weight": ["auto", 5, [1.0, 2.0], {0: -1.0}, {0: "a"}, {0: math.nan}, {0: math.inf}],
    },
    "FineTunedRegressor": FINE_TUNED,
}

#: Invalid values that raise another error than InvalidParameterError, with why.
#: Still raised before any network is built or file decoded.
OTHER_ERRORS = {
    # A missing weights file has always been a FileNotFoundError naming the
    # path and the valid choices ('imagenet', None, an existing file); it is
    # raised before the network is built.
    "weights": (FileNotFoundError, ["no_such_file.weights.h5"]),
}

CASES = [
    pytest.param(name, param, value, id=f"{name}-{param}-{value!r}")
    for name, table in INVALID.items()
    for param, values in table.items()
    for value in values
] + [
    pytest.param(name, param, value, id=f"{name}-{param}-{value!r}")
    for name in INVALID
    for param, (_, values) in OTHER_ERRORS.items()
    for value in values
]


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("validation")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = root / f"image_{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def decodes(monkeypatch):
    """Counts the files ImageReader decodes."""
    calls = []
    decode = ImageReader.decode

    def counting(self, item):
        calls.append(item)
        return decode(self, item)

    monkeypatch.setattr(ImageReader, "decode", counting)
    return calls


def _network_counters():
    info = skptm.network_cache_info()
    return {key: info[key] for key in ("hits", "misses", "base_builds")}


def _work(estimator, paths):
    """What each estimator is asked to do: fit (and transform) on image files."""
    if isinstance(estimator, PretrainedFeatureTransformer):
        return [lambda: estimator.fit(paths), lambda: estimator.transform(paths)]
    y = [0, 1] * (len(paths) // 2) if isinstance(estimator, FineTunedClassifier) else np.linspace(0, 1, len(paths))
    return [lambda: estimator.fit(paths, y)]


def test_every_parameter_has_invalid_values():
    for name, estimator in ESTIMATORS.items():
        covered = set(INVALID[name]) | set(OTHER_ERRORS)
        assert set(estimator.get_params()) <= covered, (
            f"{name}: no invalid values listed for {sorted(set(estimator.get_params()) - covered)}"
        )
        assert covered <= set(estimator.get_params()), sorted(covered - set(estimator.get_params()))


@pytest.mark.parametrize("name, param, value", CASES)
def test_invalid_parameter_is_refused_before_any_work(name, param, value, image_files, decodes):
    estimator = clone(ESTIMATORS[name]).set_params(**{param: value})
    expected = OTHER_ERRORS[param][0] if value in OTHER_ERRORS.get(param, (None, ()))[1] else InvalidParameterError
    before = _network_counters()
    for work in _work(estimator, image_files):
        with pytest.raises(expected) as caught:
            work()
        message = str(caught.value)
        assert param in message, message  # names the parameter ...
        if expected is InvalidParameterError:  # ... and what it accepts
            assert "must be" in message or "list_backbones()" in message, message
    assert decodes == [], "a file was decoded before the parameters were checked"
    assert _network_counters() == before, "a network was built or looked up before the parameters were checked"


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_valid_parameters_do_the_work(name, image_files, decodes):
    # The control for the test above: the same calls with valid parameters
    # decode the files and use a network, so its "nothing happened" is real.
    before = _network_counters()
    for work in _work(clone(ESTIMATORS[name]), image_files):
        work()
    assert len(decodes) >= len(image_files)
    after = _network_counters()
    assert after["hits"] + after["misses"] > before["hits"] + before["misses"]


def test_unknown_backbone_names_the_closest():
    with pytest.raises(InvalidParameterError, match="Did you mean .*'resnet50'"):
        clone(TRANSFORMER).set_params(backbone="resnet_fifty").fit(None)


@pytest.mark.parametrize("value", [1, 2, 8, -1, -2, None])
def test_valid_n_jobs(value):
    import joblib

    from skptm._batches import default_n_threads
    from skptm._threads import process_share

    clone(TRANSFORMER).set_params(n_jobs=value)._validate_params()  # accepted
    cores = joblib.cpu_count()
    expected = {None: min(8, process_share() or cores), -1: cores, -2: max(1, cores - 1)}.get(value, value)
    assert default_n_threads(value) == expected


def test_n_jobs_counts_decoding_threads_as_joblib_does():
    import joblib

    from skptm._batches import default_n_threads
    from skptm._threads import process_share

    cores = joblib.cpu_count()
    assert default_n_threads(None) == max(1, min(8, process_share() or cores))  # documented: not joblib's 1
    assert default_n_threads(-1) == cores
    assert default_n_threads(-2) == max(1, cores - 1)
    assert default_n_threads(3) == 3
    with joblib.parallel_config(n_jobs=3):
        assert default_n_threads(None) == 3  # an active parallel_config is honoured
        assert default_n_threads(2) == 2  # an explicit n_jobs wins
