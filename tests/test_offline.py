"""Offline and air-gapped use: fetch_weights, damaged cache files, unpickling
without the base weights. Each case runs the real Keras download path in a
fresh process with its own KERAS_HOME and no way out to the network (a proxy
on a closed loopback port)."""

import os
import pickle
import re
import subprocess
import sys
import textwrap

import pytest

import skptm
from skptm import FineTunedClassifier

from .conftest import LIGHT

NO_NETWORK = dict.fromkeys(("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"), "http://127.0.0.1:9")


def run_offline(script, keras_home, *args):
    env = {**os.environ, **NO_NETWORK, "KERAS_HOME": str(keras_home)}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert "MESSAGE:" in out.stdout, out.stdout + out.stderr
    return out.stdout.split("MESSAGE:", 1)[-1]


@pytest.fixture(scope="module")
def pickled_imagenet_classifier(colours, tmp_path_factory):
    """A fitted classifier whose parameters say weights="imagenet" (trained
    here on random weights, then relabelled: what matters is what unpickling
    does on a machine without the ImageNet file)."""
    X, y = colours
    clf = FineTunedClassifier(LIGHT, weights=None, input_size=32, unfreeze=0, random_state=0).fit(X, y)
    state = clf.__getstate__()
    state["weights"] = "imagenet"
    state["_build_params"] = {**state["_build_params"], "weights": "imagenet"}  # what unpickling builds
    relabelled = FineTunedClassifier.__new__(FineTunedClassifier)
    relabelled.__dict__.update(state)
    path = tmp_path_factory.mktemp("model") / "clf.pkl"
    path.write_bytes(pickle.dumps(relabelled))
    return path


def test_offline_paths_give_clear_errors(tmp_path, pickled_imagenet_classifier):
    keras_home = tmp_path / "keras_home"
    (keras_home / "models").mkdir(parents=True)
    damaged = keras_home / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    damaged.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 200)  # an interrupted download
    script = """
        import pickle, sys
        import skptm
        from skptm import PretrainedFeatureTransformer, WeightsUnavailableError
        messages = []
        for attempt in (
            lambda: PretrainedFeatureTransformer("mobilenet_v2", input_size=128).fit(None),
            lambda: PretrainedFeatureTransformer("mobilenet_v2", input_size=96).fit(None),
            lambda: skptm.fetch_weights(["resnet50"], verbose=0),
            lambda: pickle.loads(open(sys.argv[1], "rb").read()),
        ):
            try:
                attempt()
                messages.append("NO ERROR")
            except WeightsUnavailableError as exc:
                messages.append(str(exc))
        print("MESSAGE:" + "\\n---\\n".join(messages))
    """
    missing_message, damaged_message, fetch_message, unpickle_message = run_offline(
        script, keras_home, pickled_imagenet_classifier
    ).split("\n---\n")
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128_no_top.h5" in missing_message
    assert os.path.join(str(keras_home), "models") in missing_message
    assert "KERAS_HOME" in missing_message and "weights='<path" in missing_message
    assert str(damaged) in damaged_message
    assert "partial or corrupt" in damaged_message and "Delete it" in damaged_message
    assert "skptm.fetch_weights(['mobilenet_v2'])" in damaged_message
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in fetch_message
    assert "offline" in fetch_message
    assert re.search(r"'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_\d+_no_top.h5'", unpickle_message)
    assert "offline" in unpickle_message and "KERAS_HOME" in unpickle_message


def test_fetch_weights_checks_every_name_before_downloading():
    with pytest.raises(ValueError, match="resnet_50x"):
        skptm.fetch_weights(["mobilenet_v2", "resnet_50x"])
