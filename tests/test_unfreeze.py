"""skptm._unfreeze: layer paths through nested models, which layers to unfreeze, and setting them trainable."""

import keras
import numpy as np
import pytest

from skptm._unfreeze import layer_at, leaf_layers, select_unfrozen, set_trainable

#: Every leaf of :func:`nested_base`, in order.
LEAVES = [
    "pixels",
    "rescale",
    "inner/inner_pixels",
    "inner/conv_a",
    "inner/bn_a",
    "inner/relu_a",
    "inner/block/block_conv",
    "inner/block/block_bn",
    "inner/conv_b",
    "pool",
    "dense",
]
#: The leaves that carry weights and are not BatchNormalization.
CANDIDATES = ("inner/conv_a", "inner/block/block_conv", "inner/conv_b", "dense")


def nested_base():
    """A functional model holding a functional model that holds a Sequential one."""
    block = keras.Sequential(
        [
            keras.Input((6, 6, 4)),
            keras.layers.Conv2D(4, 1, name="block_conv"),
            keras.layers.BatchNormalization(name="block_bn"),
        ],
        name="block",
    )
    inner_inputs = keras.Input((8, 8, 3), name="inner_pixels")
    x = keras.layers.Conv2D(4, 3, name="conv_a")(inner_inputs)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.Conv2D(5, 3, name="conv_b")(block(x))
    inner = keras.Model(inner_inputs, x, name="inner")
    inputs = keras.Input((8, 8, 3), name="pixels")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(inner(keras.layers.Rescaling(1 / 255, name="rescale")(inputs)))
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(x), name="nested")


@pytest.fixture
def base():
    return nested_base()


def test_leaf_layers_are_named_by_their_path_through_every_nested_model(base):
    leaves = list(leaf_layers(base))
    assert [path for path, _ in leaves] == LEAVES
    assert not any(isinstance(layer, keras.Model) for _, layer in leaves)
    inner = base.get_layer("inner")
    assert dict(leaves)["inner/block/block_bn"] is inner.get_layer("block").get_layer("block_bn")
    assert [path for path, _ in leaf_layers(inner, "x/")][:2] == ["x/inner_pixels", "x/conv_a"]


def test_layer_at_finds_a_leaf_at_any_depth_by_its_full_path(base):
    inner = base.get_layer("inner")
    assert layer_at(base, "dense") is base.get_layer("dense")
    assert layer_at(base, "inner/conv_b") is inner.get_layer("conv_b")
    assert layer_at(base, "inner/block/block_conv") is inner.get_layer("block").get_layer("block_conv")
    for path in ("block_conv", "inner", "inner/block", "inner/missing"):  # a bare name, models, no such layer
        with pytest.raises(ValueError, match=f"Model 'nested' has no layer at path '{path}'"):
            layer_at(base, path)


@pytest.mark.parametrize(
    "unfreeze, expected",
    [
        (0, ()),
        (None, ()),
        (1, ("dense",)),
        (2, ("inner/conv_b", "dense")),
        (4, CANDIDATES),
        (50, CANDIDATES),  # more than there are: all of them, no error
        ("all", CANDIDATES),
    ],
)
def test_a_count_unfreezes_the_top_weighted_layers_never_batch_normalization(base, unfreeze, expected):
    assert select_unfrozen(base, unfreeze) == expected


@pytest.mark.parametrize(
    "unfreeze, expected",
    [
        ("conv_b", ("inner/conv_b", "dense")),
        ("inner/conv_b", ("inner/conv_b", "dense")),
        ("dense", ("dense",)),
        ("bn_a", ("inner/block/block_conv", "inner/conv_b", "dense")),  # a BN layer counts from its place
        ("block_bn", ("inner/conv_b", "dense")),
        ("inner/block", ("inner/block/block_conv", "inner/conv_b", "dense")),  # a nested model: from its first layer
        ("block", ("inner/block/block_conv", "inner/conv_b", "dense")),  # its bare name, two levels down
        ("inner", CANDIDATES),
        ("rescale", CANDIDATES),
        ("pixels", CANDIDATES),
    ],
)
def test_a_layer_name_unfreezes_it_and_every_weighted_layer_above(base, unfreeze, expected):
    assert select_unfrozen(base, unfreeze) == expected


def test_an_unknown_layer_name_is_an_error_suggesting_close_names(base):
    with pytest.raises(ValueError, match=r"Backbone 'nested' has no layer named 'conv_c'\. Closest: .*'conv_b'"):
        select_unfrozen(base, "conv_c")
    with pytest.raises(ValueError, match=r"no layer named 'xyzzy'\. See"):
        select_unfrozen(base, "xyzzy")


def test_a_registry_network_unfreezes_its_top_convolutions():
    from skptm.networks import get_feature_network

    base = get_feature_network("mobilenet_v2", weights=None, input_size=32).base
    convolutions = [
        layer.name for layer in base.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
    ]
    assert select_unfrozen(base, 3) == ("block_16_depthwise", "block_16_project", "Conv_1") == tuple(convolutions[-3:])
    assert select_unfrozen(base, "all") == tuple(convolutions)
    assert select_unfrozen(base, "block_16_project") == ("block_16_project", "Conv_1")


def trainable_ids(model):
    return sorted(id(weight) for weight in model.trainable_weights)


def test_set_trainable_makes_exactly_those_leaves_trainable_at_any_depth(base):
    chosen = ("inner/block/block_conv", "dense")
    base.trainable = False  # Keras propagates this to every layer inside
    set_trainable(base, chosen)
    for path, layer in leaf_layers(base):
        assert layer.trainable == (path in chosen), path
    assert trainable_ids(base) == sorted(id(w) for path in chosen for w in layer_at(base, path).weights)
    inner = base.get_layer("inner")
    assert base.trainable and inner.trainable and inner.get_layer("block").trainable  # containers stay on

    set_trainable(base, ())
    assert not base.trainable and base.trainable_weights == []
    assert not any(layer.trainable for _, layer in leaf_layers(base))

    set_trainable(base, CANDIDATES)
    assert trainable_ids(base) == sorted(id(w) for path in CANDIDATES for w in layer_at(base, path).weights)
    assert not layer_at(base, "inner/bn_a").trainable and not layer_at(base, "inner/block/block_bn").trainable


def test_training_moves_only_the_unfrozen_layers(base):
    chosen = select_unfrozen(base, 2)
    set_trainable(base, chosen)
    before = {path: [w.copy() for w in layer.get_weights()] for path, layer in leaf_layers(base) if layer.weights}
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (16, 8, 8, 3)).astype(np.float32), rng.integers(0, 2, 16)
    base.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    base.fit(X, y, epochs=1, batch_size=8, verbose=0)
    for path, weights in before.items():
        changed = any(not np.array_equal(a, b) for a, b in zip(weights, layer_at(base, path).get_weights()))
        assert changed == (path in chosen), path  # BatchNormalization's statistics included
