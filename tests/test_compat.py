"""skptm._compat: what skptm relies on in Keras beyond its public API.

Each test fails when a Keras release changes the behaviour skptm reads, so
that the change shows here first.
"""

import os
import warnings

import keras
import pytest

from skptm._compat import PARTIAL_LOAD_MESSAGE, all_layers, downloaded_file_name, is_download_failure, keras_home


def test_keras_home_is_where_keras_caches_downloads(tmp_path):
    home = keras_home()
    assert os.path.isabs(home)
    expected = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    assert home == expected or not os.access(os.path.expanduser("~"), os.W_OK)


def test_a_failed_download_is_recognised_with_its_file_name(tmp_path):
    with pytest.raises(Exception) as caught:
        keras.utils.get_file("weights_x.h5", "http://127.0.0.1:9/some/weights_x.h5", cache_dir=str(tmp_path))
    assert is_download_failure(caught.value), str(caught.value)
    assert downloaded_file_name(caught.value) == "weights_x.h5"


def test_a_partial_weights_load_is_reported_in_words_we_recognise(tmp_path):
    small = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a")])
    large = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(2, name="b")])
    path = str(tmp_path / "small.weights.h5")
    small.save_weights(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            large.load_weights(path)
        except Exception as exc:  # Keras may raise instead of warning: skptm handles both
            message = str(exc)
        else:
            message = " ".join(str(w.message) for w in caught)
    assert PARTIAL_LOAD_MESSAGE.search(message), message


def test_all_layers_reaches_into_nested_models():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="inner_dense")], name="inner")
    inputs = keras.Input((3,))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="outer_dense")(inner(inputs)))
    names = [layer.name for layer in all_layers(outer)]
    assert "inner" in names and "inner_dense" in names and "outer_dense" in names
    assert names.index("inner") < names.index("inner_dense")


def test_the_layer_configs_we_repair_still_need_it():
    """KerasHub's ViT embedding cannot be rebuilt from its own config; when a
    release fixes that, this test says CONFIG_KEYS_REFUSED can go."""
    keras_hub = pytest.importorskip("keras_hub")
    from skptm._compat import layer_config

    vit = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=16, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8
    )
    embedding = vit.get_layer("vit_patching_and_embedding")
    with pytest.raises((TypeError, ValueError), match="num_patches|num_positions|Unrecognized"):
        type(embedding).from_config(embedding.get_config())
    type(embedding).from_config(layer_config(embedding))
