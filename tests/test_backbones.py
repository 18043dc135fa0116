"""The registry: every keras.applications network by name, checked against Keras."""

import keras
import pytest

import skptm
from skptm._backbones import backbone_specs, get_backbone_spec
from skptm.networks import clear_network_cache, get_feature_network

KERAS_CONSTRUCTORS = sorted(
    name for name in dir(keras.applications) if name[0].isupper() and callable(getattr(keras.applications, name))
)


def keras_applications():
    return [spec for spec in backbone_specs() if not spec.is_hub]


def test_every_keras_application_is_registered():
    registered = sorted(spec.keras_name for spec in keras_applications())
    assert len(registered) == 40
    assert registered == KERAS_CONSTRUCTORS


def test_list_backbones_describes_each():
    rows = [row for row in skptm.list_backbones() if row["source"] == "keras.applications"]
    assert len(rows) == 40
    assert {tuple(sorted(row)) for row in skptm.list_backbones()} == {
        (
            "feature_size",
            "input_size",
            "interpolation",
            "keras_name",
            "licence",
            "name",
            "preprocessing",
            "resize",
            "source",
        )
    }
    by_name = {row["name"]: row for row in rows}
    assert by_name["resnet50"] == {
        "name": "resnet50",
        "keras_name": "ResNet50",
        "input_size": 224,
        "preprocessing": "caffe",
        "feature_size": 2048,
        "source": "keras.applications",
        "licence": "Apache-2.0",
        "resize": "stretch",
        "interpolation": "bilinear",
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


#: The lightest network of each ``keras.applications`` family, built in the
#: unit tests; the other variants of a family differ from it in depth and
#: width only. All 40 are built by the exhaustive check (``-m exhaustive``,
#: which ``.ci/run`` runs after the unit tests: some 3 minutes of two cores).
LIGHTEST_OF_EACH_FAMILY = {
    "vgg16",
    "vgg19",
    "resnet50",
    "resnet50_v2",
    "inception_v3",
    "inception_resnet_v2",
    "xception",
    "mobilenet",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "densenet121",
    "nasnet_mobile",
    "efficientnet_b0",
    "efficientnet_v2_b0",
    "convnext_tiny",
}


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(spec, id=spec.name, marks=() if spec.name in LIGHTEST_OF_EACH_FAMILY else pytest.mark.exhaustive)
        for spec in keras_applications()
    ],
)
def test_registry_matches_what_keras_builds(spec):
    """Every registered network, as Keras builds it (random weights, small
    input), has the feature size the registry states (one test per network,
    so that the workers share the builds)."""
    model = spec.constructor()(include_top=False, weights=None, input_shape=(75, 75, 3))
    assert model.output_shape[-1] == spec.feature_size


def test_the_unit_tests_build_one_network_of_every_family():
    def family(spec):
        return spec.constructor().__module__

    lightest = [spec for spec in keras_applications() if spec.name in LIGHTEST_OF_EACH_FAMILY]
    assert len(lightest) == len(LIGHTEST_OF_EACH_FAMILY)
    assert sorted(map(family, lightest)) == sorted({family(spec) for spec in keras_applications()})


def test_feature_networks_take_their_size_from_the_registry():
    network = get_feature_network("mobilenet_v3_small", weights=None, input_size=75)
    assert network.n_features == get_backbone_spec("mobilenet_v3_small").feature_size
    clear_network_cache()
