"""The registry: every keras.applications network by name, checked against Keras."""

import keras
import pytest

import skptm
from skptm._backbones import backbone_specs, get_backbone_spec
from skptm.networks import clear_network_cache, get_feature_network

KERAS_CONSTRUCTORS = sorted(
    name for name in dir(keras.applications) if name[0].isupper() and callable(getattr(keras.applications, name))
)


def test_every_keras_application_is_registered():
    registered = sorted(spec.keras_name for spec in backbone_specs())
    assert len(registered) == 40
    assert registered == KERAS_CONSTRUCTORS


def test_list_backbones_describes_each():
    rows = skptm.list_backbones()
    assert len(rows) == 40
    assert {tuple(sorted(row)) for row in rows} == {
        ("feature_size", "input_size", "keras_name", "name", "preprocessing")
    }
    by_name = {row["name"]: row for row in rows}
    assert by_name["resnet50"] == {
        "name": "resnet50",
        "keras_name": "ResNet50",
        "input_size": 224,
        "preprocessing": "caffe",
        "feature_size": 2048,
    }
    assert by_name["inception_v3"]["input_size"] == 299
    assert by_name["densenet121"]["preprocessing"] == "torch"
    assert by_name["efficientnet_b3"]["preprocessing"] == "none"
    assert {row["preprocessing"] for row in rows} == {"caffe", "tf", "torch", "none"}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet50", "ResNet50"),
        ("ResNet50", "ResNet50"),
        ("RESNET50", "ResNet50"),
        ("mobilenet_v3_small", "MobileNetV3Small"),
        ("MobileNetV3Small", "MobileNetV3Small"),
        ("efficientnet-b0", "EfficientNetB0"),
        ("efficientnet_v2_s", "EfficientNetV2S"),
        ("inception_resnet_v2", "InceptionResNetV2"),
        ("convnext_xlarge", "ConvNeXtXLarge"),
        ("nasnet_mobile", "NASNetMobile"),
    ],
)
def test_names_are_case_insensitive_and_accept_both_styles(name, expected):
    assert get_backbone_spec(name).keras_name == expected


def test_unknown_name_lists_the_closest():
    with pytest.raises(ValueError, match="Unknown backbone 'resnet5'.*'resnet50'"):
        get_backbone_spec("resnet5")
    with pytest.raises(ValueError, match="mobilenet_v3_small"):
        get_backbone_spec("mobilenet_v3_smal")
    with pytest.raises(ValueError, match="list_backbones"):
        get_backbone_spec("alexnet")


@pytest.mark.parametrize("spec", backbone_specs(), ids=lambda spec: spec.name)
def test_registry_matches_what_keras_builds(spec):
    """Every registered network, as Keras builds it (random weights, small
    input), has the feature size the registry states (one test per network,
    so that the workers share the 2-3 minutes the 40 builds take on 2 cores)."""
    model = spec.constructor()(include_top=False, weights=None, input_shape=(75, 75, 3))
    assert model.output_shape[-1] == spec.feature_size


def test_feature_networks_take_their_size_from_the_registry():
    network = get_feature_network("mobilenet_v3_small", weights=None, input_size=75)
    assert network.n_features == get_backbone_spec("mobilenet_v3_small").feature_size
    clear_network_cache()
