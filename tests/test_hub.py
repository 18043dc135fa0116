"""KerasHub's vision transformers through skptm's estimators.

Each test loads a local KerasHub preset directory, written here by KerasHub's
own ``save_to_preset`` from a small, randomly initialised configuration of
the registry's architecture (with the family's image converter), through the
public API (``weights=<folder>``): the same loading code as a downloaded
preset. Features are compared with what a KerasHub user computes by hand.
"""

import json
import os
import pickle
import subprocess
import sys

import keras
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

import skptm
from skptm import FineTunedClassifier, PretrainedFeatureTransformer
from skptm._backbones import backbone_specs, get_backbone_spec
from skptm._hub_backbones import _PILLOW_FILTERS
from skptm._images import INTERPOLATIONS
from skptm.networks import staged_top
from skptm.networks.hub import family_scale_offset

from .conftest import runs_in

keras_hub = pytest.importorskip("keras_hub")

WIDTH = 32
#: registry name -> (input size of the small preset, its KerasHub backbone)
SMALL = {
    "dinov2_with_registers_small": 56,
    "dinov3_vit_small_lvd1689m": 64,
    "vit_base_patch16_224_imagenet": 224,
    "siglip_base_patch16_224": 224,
    "clip_vit_base_patch32": 224,
}


def small_backbone(name, size):
    """A small configuration of ``name``'s architecture (two blocks, width 32)."""
    models = keras_hub.models
    block = {"num_layers": 2, "num_heads": 2}
    if name.startswith("dinov2"):
        return models.DINOV2Backbone(
            patch_size=14,
            hidden_dim=WIDTH,
            intermediate_dim=64,
            num_register_tokens=4,
            image_shape=(size, size, 3),
            position_embedding_shape=(518, 518),
            **block,
        )
    if name.startswith("dinov3"):
        return models.DINOV3Backbone(
            patch_size=16, hidden_dim=WIDTH, intermediate_dim=64, image_shape=(size, size, 3), **block
        )
    if name.startswith("vit"):
        return models.ViTBackbone(image_shape=(size, size, 3), patch_size=32, hidden_dim=WIDTH, mlp_dim=64, **block)
    text = {"vocabulary_size": 50, "embedding_dim": WIDTH, "hidden_dim": WIDTH, "intermediate_dim": 64, **block}
    if name.startswith("siglip"):
        vision = models.SigLIPVisionEncoder(
            patch_size=32, hidden_dim=WIDTH, intermediate_dim=64, image_shape=(size, size, 3), **block
        )
        return models.SigLIPBackbone(vision, models.SigLIPTextEncoder(max_sequence_length=8, **text))
    vision = models.CLIPVisionEncoder(
        patch_size=32, hidden_dim=WIDTH, intermediate_dim=64, image_shape=(size, size, 3), **block
    )
    return models.CLIPBackbone(vision, models.CLIPTextEncoder(max_sequence_length=8, **text), projection_dim=16)


def write_preset(folder, name, size, scale=None, offset=None, **converter_options):
    spec = get_backbone_spec(name)
    backbone = small_backbone(name, size)
    backbone.save_to_preset(str(folder))
    default_scale, default_offset = family_scale_offset(spec.preprocessing)
    converter = keras_hub.layers.ImageConverter(
        image_size=(size, size),
        scale=list(default_scale if scale is None else scale),
        offset=list(default_offset if offset is None else offset),
        **converter_options,
    )
    converter.save_to_preset(str(folder))
    return backbone, converter


@pytest.fixture(scope="session")
def presets(tmp_path_factory):
    folders = {}
    for name, size in SMALL.items():
        folder = tmp_path_factory.mktemp(name)
        write_preset(folder, name, size)
        folders[name] = folder
    return folders


@pytest.fixture(scope="session")
def photos():
    """Real photos (four of the package's sample photos, one per theme), as paths."""
    return list(skptm.datasets.load_sample_photos().paths[::4])


def test_registry_lists_the_transformers_with_size_and_licence():
    rows = {row["name"]: row for row in skptm.list_backbones() if row["source"] == "keras_hub"}
    for name in (
        "dinov2_small",
        "dinov2_base",
        "dinov2_large",
        "dinov2_with_registers_small",
        "dinov2_with_registers_base",
        "dinov2_with_registers_large",
        "dinov3_vit_small_lvd1689m",
        "dinov3_vit_base_lvd1689m",
        "siglip_base_patch16_224",
        "siglip2_so400m_patch14_224",
        "clip_vit_base_patch32",
        "clip_vit_base_patch16",
        "vit_base_patch16_224_imagenet",
    ):
        assert rows[name]["input_size"] == 224 and rows[name]["licence"]
    assert rows["dinov2_base"]["feature_size"] == 768 and rows["clip_vit_base_patch16"]["feature_size"] == 512
    assert rows["dinov3_vit_small_lvd1689m"]["licence"] == "DINOv3 License"
    assert len([row for row in skptm.list_backbones() if row["source"] == "keras.applications"]) == 40


@pytest.mark.parametrize("name", SMALL)
def test_features_equal_keras_hub_by_hand_on_real_photos(name, presets, photos):
    """Preprocessing inside the network equals the preset's own image converter,
    and the pooled features equal the backbone's output pooled by hand."""
    size = SMALL[name]
    folder = presets[name]
    pooling = "cls+avg" if get_backbone_spec(name).prefix_tokens else "avg"
    ours = PretrainedFeatureTransformer(name, weights=folder, input_size=size, pooling=pooling, batch_size=2)
    features = ours.fit_transform(np.stack([_resized(p, size) for p in photos]))

    images = np.stack([_resized(p, size) for p in photos])
    converter = keras_hub.layers.ImageConverter.from_preset(str(folder))
    backbone = keras_hub.models.Backbone.from_preset(str(folder))
    scaled = converter(images.astype("float32"))
    if name.startswith(("clip", "siglip")):
        expected = backbone.get_vision_embeddings(scaled)
    else:
        tokens = np.asarray(backbone(scaled if name.startswith("vit") else {backbone.inputs[0].name: scaled}))
        prefix = get_backbone_spec(name).prefix_tokens
        expected = np.concatenate([tokens[:, 0], tokens[:, prefix:].mean(axis=1)], axis=1)
    expected = np.asarray(expected)
    assert features.shape == expected.shape
    relative = np.abs(features - expected).max() / np.abs(expected).max()
    assert relative <= 1e-5, relative


def assert_normalised(maps):
    """Each map peaks at 1, or is all zeros where no position raises the score
    (the small random presets leave some images without evidence)."""
    assert all(m.max() == pytest.approx(1) or not m.any() for m in maps)
    assert any(m.max() == pytest.approx(1) for m in maps)


def _resized(path, size):
    """The photo stretched to size (bilinear): at the input size, the reader resamples nothing."""
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def test_auto_resizing_is_each_presets_own(presets, photos, tmp_path):
    """``resize="auto"`` and ``interpolation="auto"`` resize as each family's
    KerasHub presets do (their image converters), the 40 networks as
    ``keras.utils.load_img``; a preset named by folder as its own converter."""
    rows = {row["name"]: (row["resize"], row["interpolation"]) for row in skptm.list_backbones()}
    assert rows["resnet50"] == ("stretch", "bilinear")
    assert rows["dinov2_small"] == rows["clip_vit_base_patch16"] == ("center_crop", "bicubic")
    assert rows["dinov3_vit_base_lvd1689m"] == ("stretch", "bilinear")
    assert rows["siglip2_so400m_patch14_224"] == ("stretch", "bicubic")
    assert rows["vit_base_patch16_224_imagenet"] == ("center_crop", "bilinear")

    name, folder = "dinov2_with_registers_small", presets["dinov2_with_registers_small"]
    wide = photos[:2]  # 451x300 and 384x303: a crop and a stretch differ
    auto = PretrainedFeatureTransformer(name, weights=folder, input_size=56).fit_transform(wide)
    explicit = PretrainedFeatureTransformer(
        name, weights=folder, input_size=56, resize="center_crop", interpolation="bicubic"
    ).fit_transform(wide)
    stretched = PretrainedFeatureTransformer(
        name, weights=folder, input_size=56, resize="stretch", interpolation="bilinear"
    ).fit_transform(wide)
    np.testing.assert_array_equal(auto, explicit)
    assert not np.allclose(auto, stretched, rtol=1e-3)

    assert set(_PILLOW_FILTERS) == set(INTERPOLATIONS)  # what a converter's filter must map to
    assert get_backbone_spec(str(folder)).resizing == ("center_crop", "bilinear")  # KerasHub's defaults
    own = tmp_path / "stretching_preset"
    write_preset(own, name, 56, crop_to_aspect_ratio=False, interpolation="lanczos3")
    assert get_backbone_spec(str(own)).resizing == ("stretch", "lanczos")


@pytest.mark.exhaustive  # two fresh processes: the second tier keeps the unit tier's time
def test_random_weights_are_the_same_in_every_process():
    script = (
        "import numpy as np, skptm; X = np.full((1, 56, 56, 3), 100, np.uint8); "
        "print(skptm.PretrainedFeatureTransformer('dinov2_small', weights=None, input_size=56)"
        ".fit_transform(X)[0, :4].tolist())"
    )
    processes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [process.communicate(timeout=180)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert outputs[0] == outputs[1] and outputs[0].strip()


def test_input_sizes_round_to_the_patch_size_for_dino_and_are_fixed_for_the_others():
    dino = PretrainedFeatureTransformer("dinov2_small", weights=None, input_size=60)
    assert dino._network().input_size == (56, 56)  # nearest multiple of 14
    with pytest.raises(ValueError, match="native input size"):
        PretrainedFeatureTransformer("clip_vit_base_patch32", weights=None, input_size=96).fit(None)


def test_names_pooling_and_layers(presets, photos):
    folder = presets["dinov2_with_registers_small"]
    kwargs = {"weights": folder, "input_size": 56}
    cls = PretrainedFeatureTransformer("dinov2_with_registers_small", pooling="cls", **kwargs).fit(photos)
    both = PretrainedFeatureTransformer("dinov2_with_registers_small", pooling="cls+avg", **kwargs).fit(photos)
    names = both.get_feature_names_out()
    assert (
        names[0] == "dinov2_with_registers_small_cls_0" and names[-1] == f"dinov2_with_registers_small_avg_{WIDTH - 1}"
    )
    np.testing.assert_array_equal(both.transform(photos)[:, :WIDTH], cls.transform(photos))
    stage = PretrainedFeatureTransformer("dinov2_with_registers_small", layer="stage1", **kwargs).fit(photos)
    assert stage.transform(photos).shape == (len(photos), WIDTH)
    assert stage.get_feature_names_out()[0] == "dinov2_with_registers_small_stage1_avg_0"
    with pytest.raises(ValueError, match="'stage1' to 'stage2'"):
        PretrainedFeatureTransformer("dinov2_with_registers_small", layer="block9", **kwargs).fit(photos).transform(
            photos
        )
    clip = PretrainedFeatureTransformer("clip_vit_base_patch32", weights=presets["clip_vit_base_patch32"])
    assert clip.fit(photos).get_feature_names_out()[0] == "clip_vit_base_patch32_embedding_0"
    with pytest.raises(ValueError, match="class token"):
        PretrainedFeatureTransformer("mobilenet_v3_small", weights=None, input_size=32, pooling="cls").fit(
            photos
        ).transform(photos)


def small_dino(presets, **params):
    """A classifier on the small DINOv2 preset with registers, at its 56 px."""
    weights = presets["dinov2_with_registers_small"]
    return FineTunedClassifier("dinov2_with_registers_small", weights=weights, input_size=56, random_state=0, **params)


@pytest.fixture(scope="module")
def two_themes(photos):
    """Eight views of the sample photos, labelled by photo."""
    rng = np.random.default_rng(0)
    X = np.stack([_resized(p, 56) for p in photos[:2] for _ in range(8)]).astype(np.float32)
    X += rng.normal(0, 8, X.shape)
    return X.clip(0, 255).astype(np.uint8), np.repeat([0, 1], 8)


def test_fine_tuning_unfreezes_the_top_blocks_and_the_final_norm(presets, two_themes):
    X, y = two_themes
    clf = small_dino(presets, unfreeze=1, head_epochs=3, finetune_epochs=1, validation_fraction=None).fit(X, y)
    unfrozen = clf.unfrozen_layers_
    # The top block (of two) inside the encoder layer, and the final norm.
    assert len(unfrozen) == 2 and unfrozen[0].endswith("encoder/layers_1") and unfrozen[1].endswith("layernorm")
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-6)


def test_grid_search_over_backbones_of_both_families(presets, two_themes):
    X, y = two_themes
    pipe = make_pipeline(
        PretrainedFeatureTransformer("mobilenet_v3_small", weights=None, input_size=56), LogisticRegression()
    )
    grid = GridSearchCV(
        pipe,
        [
            {"pretrainedfeaturetransformer__backbone": ["mobilenet_v3_small"]},
            {
                "pretrainedfeaturetransformer__backbone": ["dinov2_with_registers_small"],
                "pretrainedfeaturetransformer__weights": [presets["dinov2_with_registers_small"]],
            },
        ],
        cv=2,
    ).fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 2
    assert clone(grid.best_estimator_).get_params()["pretrainedfeaturetransformer__backbone"]


def test_a_preset_of_another_architecture_or_scaling_is_refused(presets, tmp_path):
    with pytest.raises(ValueError, match="CLIPBackbone, not the DINOV2Backbone"):
        PretrainedFeatureTransformer("dinov2_small", weights=presets["clip_vit_base_patch32"], input_size=56).fit(None)
    write_preset(tmp_path, "dinov2_small", 56, scale=[1 / 255] * 3, offset=[0.0] * 3)
    with pytest.raises(ValueError, match="image converter"):
        PretrainedFeatureTransformer("dinov2_small", weights=tmp_path, input_size=56).fit(None)
    with pytest.raises(FileNotFoundError, match="KerasHub preset directory"):
        PretrainedFeatureTransformer("dinov2_small", weights=tmp_path / "missing", input_size=56).fit(None)


@pytest.mark.exhaustive  # a fresh process
def test_without_keras_hub_the_error_says_how_to_install_it():
    script = (
        "import sys; sys.modules['keras_hub'] = None\n"
        "import skptm\n"
        "try:\n"
        "    skptm.PretrainedFeatureTransformer('dinov2_small', weights=None).fit(None)\n"
        "except ImportError as exc:\n"
        "    print('MESSAGE:' + str(exc))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "pip install 'skptm[hub]'" in out.stdout.split("MESSAGE:", 1)[-1]


def test_offline_the_error_names_the_cache_and_the_way_out(tmp_path, photos):
    """A registry preset and a ``kaggle://`` handle through kagglehub's cache,
    an ``hf://`` handle through Hugging Face's (in offline mode: its retries
    take half a minute), for the transformer and the zero-shot classifier."""
    env = {
        **os.environ,
        **dict.fromkeys(("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"), "http://127.0.0.1:9"),
        "KAGGLEHUB_CACHE": str(tmp_path / "kaggle"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
    }
    script = (
        "import skptm\n"
        "for make in (\n"
        "    lambda: skptm.PretrainedFeatureTransformer('dinov2_small'),\n"
        "    lambda: skptm.PretrainedFeatureTransformer('kaggle://keras/dinov2/keras/dinov2_small'),\n"
        "    lambda: skptm.PretrainedFeatureTransformer('hf://google/siglip-base-patch16-224'),\n"
        "    lambda: skptm.ZeroShotClassifier('siglip_base_patch16_224', classes=['cat', 'dog']),\n"
        "):\n"
        "    try:\n"
        "        make().fit(None)\n"
        "    except skptm.WeightsUnavailableError as exc:\n"
        "        print('MESSAGE:' + str(exc))\n"
        "from skptm.cli import main\n"
        f"print('CODE', main(['predict', '--classes', 'cat,dog', {os.path.dirname(photos[0])!r}, '-o', {str(tmp_path / 'p.csv')!r}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180)
    assert "CODE 1" in out.stdout and "skptm predict: error: Could not get the pretrained weights" in out.stderr
    assert "with --classes, '--weights FOLDER'" in out.stderr and "--weights none" not in out.stderr
    messages = out.stdout.split("MESSAGE:")[1:]
    assert len(messages) == 4, out.stdout + out.stderr
    registry, kaggle, hugging_face, zero_shot = messages
    assert str(tmp_path / "kaggle") in registry and "KAGGLEHUB_CACHE" in registry
    assert "skptm.fetch_weights(['dinov2_small'])" in registry and "weights='<folder>'" in registry
    assert str(tmp_path / "kaggle") in kaggle and "kaggle://keras/dinov2/keras/dinov2_small" in kaggle
    assert str(tmp_path / "hf" / "hub") in hugging_face and "HF_HOME" in hugging_face
    assert "skptm.fetch_weights(['hf://google/siglip-base-patch16-224'])" in hugging_face
    assert "siglip_base_patch16_224" in zero_shot and "KAGGLEHUB_CACHE" in zero_shot


def _copy_of(folder, tmp_path, name="copy"):
    import shutil

    return shutil.copytree(folder, tmp_path / name)


def test_a_damaged_local_preset_says_which_file_and_is_not_called_offline(presets, tmp_path):
    """A preset directory copied in part or corrupted: the error names the
    folder and the file, and does not send the user to fetch weights."""
    name = "dinov2_with_registers_small"
    no_weights = _copy_of(presets[name], tmp_path, "no_weights")
    (no_weights / "model.weights.h5").unlink()
    truncated = _copy_of(presets[name], tmp_path, "truncated")
    data = (truncated / "model.weights.h5").read_bytes()
    (truncated / "model.weights.h5").write_bytes(data[: len(data) // 3])
    bad_json = _copy_of(presets[name], tmp_path, "bad_json")
    (bad_json / "config.json").write_text("{'not': json")
    for folder, error, match in (
        (no_weights, FileNotFoundError, "has a config.json but no weights"),
        (truncated, OSError, "missing or damaged"),
        (bad_json, OSError, "missing or damaged"),
    ):
        for as_backbone in (False, True):
            backbone, weights = (str(folder), "imagenet") if as_backbone else (name, folder)
            if as_backbone and folder == bad_json:
                error, match = ValueError, "config.json that is not valid JSON"
            with pytest.raises(error, match=match) as caught:
                PretrainedFeatureTransformer(backbone, weights=weights, input_size=56).fit(None)
            assert not isinstance(caught.value, skptm.WeightsUnavailableError)
            assert str(folder) in str(caught.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        PretrainedFeatureTransformer(str(empty)).fit(None)


def test_a_preset_without_an_image_converter_is_taken_by_its_registry_name(presets, tmp_path):
    """As backbone, a preset without image_converter.json cannot say how to
    scale images; the error gives the way out, and the way out works."""
    folder = _copy_of(presets["dinov2_with_registers_small"], tmp_path)
    (folder / "image_converter.json").unlink()
    with pytest.raises(ValueError, match="no image_converter.json") as caught:
        PretrainedFeatureTransformer(str(folder), input_size=56).fit(None)
    assert f"weights={str(folder)!r}" in str(caught.value)
    features = PretrainedFeatureTransformer("dinov2_small", weights=folder, input_size=56).fit_transform(
        np.zeros((1, 56, 56, 3), np.uint8)
    )
    assert features.shape == (1, WIDTH)


def test_a_transformers_checkpoint_gets_the_way_to_convert_it(tmp_path):
    """A Hugging Face transformers checkpoint is not a KerasHub preset: as
    backbone or as weights, the error names its model type and gives
    KerasHub's conversion and the registry name to pass with it."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "dinov2_with_registers", "hidden_size": 384}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    for params in ({"backbone": str(tmp_path)}, {"backbone": "dinov2_small", "weights": tmp_path}):
        with pytest.raises(ValueError, match="transformers checkpoint") as caught:
            PretrainedFeatureTransformer(**params).fit(None)
        message = str(caught.value)
        assert "'dinov2_with_registers'" in message and "save_to_preset" in message
        assert "backbone='dinov2_with_registers_small'" in message
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ValueError, match="DINOv2, DINOv3 and ViT only"):
        PretrainedFeatureTransformer(str(tmp_path)).fit(None)


def test_a_fixed_size_preset_runs_at_its_own_size_by_registry_name(tmp_path, photos):
    """A ViT preset saved at 64 px (its position embeddings fixed to it) runs
    at 64 px with input_size=None, by folder or by registry name."""
    write_preset(tmp_path, "vit_base_patch16_224_imagenet", 64)
    images = np.stack([_resized(p, 64) for p in photos])
    by_name = PretrainedFeatureTransformer("vit_base_patch16_224_imagenet", weights=tmp_path)
    by_folder = PretrainedFeatureTransformer(str(tmp_path))
    np.testing.assert_array_equal(by_name.fit_transform(images), by_folder.fit_transform(images))
    assert by_name._network().input_size == (64, 64)


def test_a_preset_folder_under_a_registry_name_runs_as_its_own_config_says(presets, photos, tmp_path):
    """Under a registry name, a folder's registers are still left out of the
    patch tokens' mean, and its own patch size rounds the input size: the
    features equal the folder's as a backbone, whatever the registry's
    configuration (no registers, patch 14, width 384) says."""
    registers = str(presets["dinov2_with_registers_small"])
    images = np.stack([_resized(p, 56) for p in photos])
    expected = PretrainedFeatureTransformer("dinov2_with_registers_small", weights=registers, input_size=56)
    under_other_name = PretrainedFeatureTransformer("dinov2_small", weights=registers, input_size=56)
    np.testing.assert_array_equal(under_other_name.fit_transform(images), expected.fit_transform(images))
    assert len(under_other_name.get_feature_names_out()) == WIDTH

    patch8 = tmp_path / "patch8"
    keras_hub.models.DINOV2Backbone(
        patch_size=8,
        hidden_dim=WIDTH,
        intermediate_dim=64,
        num_layers=1,
        num_heads=2,
        image_shape=(48, 48, 3),
        position_embedding_shape=(518, 518),
    ).save_to_preset(str(patch8))
    scale, offset = family_scale_offset("torch")
    keras_hub.layers.ImageConverter(image_size=(48, 48), scale=list(scale), offset=list(offset)).save_to_preset(
        str(patch8)
    )
    images = np.stack([_resized(p, 48) for p in photos])
    by_name = PretrainedFeatureTransformer("dinov2_small", weights=patch8, input_size=48)
    by_folder = PretrainedFeatureTransformer(str(patch8), input_size=48)
    np.testing.assert_array_equal(by_name.fit_transform(images), by_folder.fit_transform(images))
    assert by_name._network().input_size == (48, 48)


@pytest.mark.exhaustive
@pytest.mark.parametrize("spec", [s for s in backbone_specs() if s.is_hub], ids=lambda s: s.name)
def test_every_transformer_of_the_registry_builds_with_its_feature_size(spec):
    from skptm.networks import clear_network_cache

    network = PretrainedFeatureTransformer(spec.name, weights=None)._network()
    assert network.n_features == spec.feature_size and network.input_size == (spec.input_size,) * 2
    clear_network_cache()


def test_layer_decay_slows_the_lower_blocks(presets, two_themes):
    """With layer-wise decay, the final norm learns at the full rate, the top
    block at ``d`` times it and the block below at ``d**2``: the lower the
    block, the less it moves."""
    from skptm._layer_decay import learning_rate_multipliers
    from skptm._unfreeze import layer_at

    X, y = two_themes
    params = {
        "weights": presets["dinov2_with_registers_small"],
        "input_size": 56,
        "unfreeze": 2,
        "head_epochs": 3,
        "finetune_epochs": 2,
        "finetune_learning_rate": 1e-2,
        # Four steps an epoch: the warm-up starts at a rate of 0, so with one
        # step an epoch the first epoch would not move, and keeping the best
        # epoch by training loss could keep exactly the starting weights.
        "batch_size": 4,
        "validation_fraction": None,
        "random_state": 0,
    }
    before = PretrainedFeatureTransformer("dinov2_with_registers_small", weights=params["weights"], input_size=56)
    base = before._network().base
    clf = FineTunedClassifier("dinov2_with_registers_small", layer_decay=1e-3, **params).fit(X, y)
    top, lower, norm = (clf.unfrozen_layers_[i] for i in (1, 0, 2))
    multipliers = learning_rate_multipliers(clf._trained.base, clf._trained.unfrozen, 0.5)
    factors = {
        path: {multipliers[id(v)] for v in layer_at(clf._trained.base, path).weights} for path in (top, lower, norm)
    }
    assert factors == {norm: {1.0}, top: {0.5}, lower: {0.25}}

    def moved(path):
        trained = layer_at(clf._trained.base, path).get_weights()
        original = layer_at(base, path).get_weights()
        return max(np.abs(a - b).max() for a, b in zip(trained, original, strict=True))

    assert moved(norm) > 1e-3
    assert moved(lower) < 1e-5 * moved(norm) + 1e-7
    assert moved(top) < moved(norm)


def test_unfreeze_names_a_transformer_block_as_layer_does(presets):
    """``unfreeze="stage{i}"`` trains block i and everything above it, in
    every family; a block it lacks, or another name, gets the block names."""
    from skptm._unfreeze import select_unfrozen

    for name, size in SMALL.items():
        base = (
            PretrainedFeatureTransformer(
                name, weights=presets[name], input_size=size if name.startswith("dino") else None
            )
            ._network()
            .base
        )
        assert select_unfrozen(base, "stage2") == select_unfrozen(base, 1), name
        assert select_unfrozen(base, "stage1") == select_unfrozen(base, 2), name
        with pytest.raises(ValueError, match="'stage1' to 'stage2'.*Received: unfreeze='stage3'"):
            select_unfrozen(base, "stage3")
        with pytest.raises(ValueError, match="'stage1' to 'stage2'"):
            select_unfrozen(base, "block_2")


def test_layer_decay_puts_everything_below_the_blocks_one_step_down(presets):
    """Above the top block: the full rate; block k from the top: ``d**k``;
    below the lowest block (the embeddings, and CLIP's norm before the
    blocks), one step further: ``d**(blocks + 1)``, in every family."""
    from skptm._layer_decay import learning_rate_multipliers
    from skptm._unfreeze import is_block, leaf_layers, select_unfrozen

    for name, size in SMALL.items():
        base = (
            PretrainedFeatureTransformer(
                name, weights=presets[name], input_size=size if name.startswith("dino") else None
            )
            ._network()
            .base
        )
        unfrozen = select_unfrozen(base, "all")
        multipliers = learning_rate_multipliers(base, unfrozen, 0.5)
        leaves = [layer for path, layer in leaf_layers(base) if path in set(unfrozen)]
        blocks = [i for i, layer in enumerate(leaves) if is_block(layer)]
        expected = [
            0.5 ** (len(blocks) + 1)
            if i < blocks[0]
            else 0.5 ** (len(blocks) - blocks.index(i))
            if i in blocks
            else 1.0
            for i in range(len(leaves))
        ]
        found = [{multipliers[id(v)] for v in layer.weights} for layer in leaves]
        assert found == [{factor} for factor in expected], name


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n.startswith("dinov2") else pytest.mark.exhaustive) for n in SMALL]
)
def test_openvino_runs_the_transformers_as_tensorflow_does(name, presets, photos):
    pytest.importorskip("openvino")
    size = SMALL[name]
    images = np.stack([_resized(p, size) for p in photos])
    for layer in (None, ["stage1", "stage2"]):  # the top, and blocks called in a chain
        features = {
            engine: PretrainedFeatureTransformer(
                name, weights=presets[name], input_size=size, layer=layer, engine=engine, precision="float32"
            ).fit_transform(images)
            for engine in ("tensorflow", "openvino")
        }
        a, b = features["tensorflow"], features["openvino"]
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() >= 0.99999, (layer, cosine)


@runs_in("bfloat16")
def test_a_fine_tuned_transformer_saves_slim_with_skops(presets, two_themes, tmp_path):
    pytest.importorskip("skops")
    X, y = two_themes
    clf = small_dino(presets, unfreeze=1, head_epochs=3, finetune_epochs=1, precision="bfloat16").fit(X, y)
    path = tmp_path / "model.skops"
    skptm.save(clf, path)
    restored = skptm.load(path)
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-6)
    # Slim: the unfrozen block, the final norm and the head, not the backbone.
    backbone_bytes = sum(w.nbytes for w in clf._trained.base.get_weights())
    assert path.stat().st_size < backbone_bytes


def test_a_local_preset_directory_is_a_backbone(presets, photos):
    """Any KerasHub preset of a known family, by folder (or hub handle): its
    architecture, size and scaling read from its own files."""
    for name in ("dinov2_with_registers_small", "clip_vit_base_patch32"):
        folder = str(presets[name])
        size = SMALL[name]
        images = np.stack([_resized(p, size) for p in photos])
        by_folder = PretrainedFeatureTransformer(folder, input_size=size if name.startswith("dino") else None)
        by_name = PretrainedFeatureTransformer(
            name, weights=folder, input_size=size if name.startswith("dino") else None
        )
        np.testing.assert_array_equal(by_folder.fit_transform(images), by_name.fit_transform(images))
        assert by_folder.get_feature_names_out()[0].startswith(os.path.basename(folder))
    random = PretrainedFeatureTransformer(str(presets["clip_vit_base_patch32"]), weights=None).fit_transform(images)
    assert random.shape == (len(photos), 16)


def test_the_head_with_unfreeze_0_is_the_linear_probe_on_the_same_features(presets, two_themes):
    """LP-FT's first phase on a transformer is scikit-learn's probe on the
    transformer's features, value for value."""
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from skptm._heads import LOGISTIC_C

    X, y = two_themes
    kwargs = {"weights": presets["dinov2_with_registers_small"], "input_size": 56, "pooling": "cls+avg"}
    probe = make_pipeline(
        PretrainedFeatureTransformer("dinov2_with_registers_small", **kwargs),
        FunctionTransformer(lambda features: features.astype(np.float64)),
        StandardScaler(),
        LogisticRegression(C=LOGISTIC_C, max_iter=2000),
    ).fit(X[::2], y[::2])
    clf = FineTunedClassifier("dinov2_with_registers_small", unfreeze=0, random_state=0, **kwargs).fit(X[::2], y[::2])
    np.testing.assert_allclose(clf.predict_proba(X[1::2]), probe.predict_proba(X[1::2]), rtol=0, atol=1e-5)


def test_the_feature_cache_keeps_transformer_features(presets, photos, tmp_path):
    kwargs = {"weights": presets["dinov2_with_registers_small"], "input_size": 56, "cache": tmp_path}
    first = PretrainedFeatureTransformer("dinov2_with_registers_small", **kwargs).fit_transform(photos)
    assert any(tmp_path.rglob("*")), "nothing was cached"
    second = PretrainedFeatureTransformer("dinov2_with_registers_small", **kwargs).fit_transform(photos)
    np.testing.assert_array_equal(first, second)
    other = PretrainedFeatureTransformer("dinov2_with_registers_small", pooling="cls", **kwargs).fit_transform(photos)
    assert other.shape[1] == WIDTH  # another configuration, not the cached entries


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n.startswith("dinov2") else pytest.mark.exhaustive) for n in SMALL]
)
@runs_in("bfloat16")
def test_bfloat16_copies_of_every_family(name, presets, photos):
    """A reduced-precision copy is rebuilt layer by layer (KerasHub's layers
    included, ViT's embedding through skptm._compat.layer_config)."""
    size = SMALL[name]
    images = np.stack([_resized(p, size) for p in photos])
    features = {
        precision: PretrainedFeatureTransformer(
            name, weights=presets[name], input_size=size, engine="tensorflow", precision=precision
        ).fit_transform(images)
        for precision in ("float32", "bfloat16")
    }
    a, b = features["float32"], features["bfloat16"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99, cosine


def test_unfreezing_everything_warns_about_nothing(presets, two_themes):
    """The DINO embedding's mask token (masked-image pre-training only) is not
    trained: Keras would warn that no gradient reaches it."""
    import warnings

    X, y = two_themes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small_dino(presets, unfreeze="all", head_epochs=2, finetune_epochs=1).fit(X, y)
    assert not [w for w in caught if "Gradients do not exist" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.parametrize(
    ("name", "block_class"),
    [
        ("vit_base_patch16_224_imagenet", "ViTEncoderBlock"),
        ("dinov2_with_registers_small", "DINOV2Layer"),
        ("dinov3_vit_small_lvd1689m", "DINOV3Layer"),
    ],
)
def test_the_blocks_inside_an_encoder_are_layers_by_their_stage_names(name, block_class, presets, photos):
    """DINOv2, DINOv3 and ViT keep their blocks inside one encoder layer:
    ``layer="stage{i}"`` is block i's output as KerasHub computes it (ViT's by
    its blocks called in turn on the patch embedding, the DINO models' their
    ``pyramid_outputs``), and costs only the blocks up to it."""
    size, folder = SMALL[name], presets[name]
    prefix = get_backbone_spec(name).prefix_tokens
    images = np.stack([_resized(p, size) for p in photos])
    scaled = keras_hub.layers.ImageConverter.from_preset(str(folder))(images.astype("float32"))
    backbone = keras_hub.models.Backbone.from_preset(str(folder))
    if name.startswith("vit"):
        x = backbone.get_layer("vit_patching_and_embedding")(scaled)
        by_hand = []
        for block in backbone.get_layer("vit_encoder").encoder_layers:
            x = block(x)
            by_hand.append(np.asarray(x, np.float64))
    else:
        pyramid = keras.Model(backbone.inputs, [backbone.pyramid_outputs[f"stage{i}"] for i in (1, 2)])
        by_hand = [np.asarray(tokens, np.float64) for tokens in pyramid(scaled)]

    both = PretrainedFeatureTransformer(
        name, weights=folder, input_size=size, layer=["stage1", "stage2"], pooling="cls+avg"
    )
    features = both.fit_transform(images)
    for i, tokens in enumerate(by_hand):
        expected = np.concatenate([tokens[:, 0], tokens[:, prefix:].mean(axis=1)], axis=1)
        np.testing.assert_allclose(features[:, i * 2 * WIDTH : (i + 1) * 2 * WIDTH], expected, rtol=1e-4, atol=1e-5)
    assert both.get_feature_names_out()[2 * WIDTH] == f"{name}_stage2_cls_0"
    extractor = both._network().model.get_layer("layers")
    assert sum(type(layer).__name__ == block_class for layer in extractor.layers) == 2
    lower = PretrainedFeatureTransformer(name, weights=folder, input_size=size, layer="stage1").fit(images)
    assert sum(type(layer).__name__ == block_class for layer in lower._network().model.get_layer("layers").layers) == 1
    with pytest.raises(ValueError, match="'stage1' to 'stage2'"):
        PretrainedFeatureTransformer(name, weights=folder, input_size=size, layer="stage3").fit(images).transform(
            images
        )

    clf = FineTunedClassifier(name, weights=folder, input_size=size, pooling="cls", unfreeze=0, random_state=0)
    clf.fit(np.concatenate([images, images[:, ::-1]]), [0, 1, 2, 3] * 2)
    with pytest.raises(ValueError, match=r"layer= for an earlier block \('stage1'"):
        skptm.explain(clf, images[:1])
    maps = skptm.explain(clf, images, layer="stage1")
    assert [m.shape for m in maps] == [(size, size)] * len(images)
    assert_normalised(maps)
    # Grad-CAM's top runs through the chained blocks, and equals the backbone's own.
    base = clf._trained.base
    chained = keras.Model(base.inputs, staged_top(base))
    np.testing.assert_allclose(chained(scaled), base(scaled), rtol=1e-5, atol=1e-5)


def test_clip_and_siglip_blocks_are_layers_pooled_as_tokens(presets, photos):
    """``layer="stage{i}"`` names CLIP's and SigLIP's blocks too (their layer
    names differ between a preset and a configuration), and their tokens are
    pooled as a transformer's: CLIP's class token first, SigLIP without one."""
    for name, prefix in (("clip_vit_base_patch32", 1), ("siglip_base_patch16_224", 0)):
        folder = presets[name]
        images = np.stack([_resized(p, SMALL[name]) for p in photos])
        vision = keras_hub.models.Backbone.from_preset(str(folder)).vision_encoder
        first = [layer for layer in vision.layers if "encoder_block" in layer.name][0]
        scaled = keras_hub.layers.ImageConverter.from_preset(str(folder))(images.astype("float32"))
        tokens = np.asarray(keras.Model(vision.inputs, first.output)(scaled), np.float64)
        features = PretrainedFeatureTransformer(name, weights=folder, layer="stage1").fit_transform(images)
        np.testing.assert_allclose(features, tokens[:, prefix:].mean(axis=1), rtol=1e-4, atol=1e-5)
        random = PretrainedFeatureTransformer(name, weights=None, layer="stage1").fit(images)
        assert random.get_feature_names_out()[0] == f"{name}_stage1_avg_0"
    with pytest.raises(ValueError, match="class token.*have none"):
        PretrainedFeatureTransformer(name, weights=folder, layer="stage1", pooling="cls").fit(images).transform(images)
    with pytest.raises(ValueError, match="pooling=None flattens.*KerasHub states 50 where the network computes 49"):
        PretrainedFeatureTransformer(name, weights=folder, layer="stage1", pooling=None).fit(images).transform(images)


# -- Grad-CAM on the patch grid ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "grid"),
    [("dinov2_with_registers_small", 4), ("dinov3_vit_small_lvd1689m", 4), ("vit_base_patch16_224_imagenet", 7)],
)
def test_grad_cam_of_a_transformer_equals_grad_cam_by_hand(name, grid, presets, photos):
    """Grad-CAM of a linear head on the mean of the patch tokens, in closed
    form: the gradient of the centred logit is the same for every patch
    token, so the map is the ReLU of each patch token against the head's
    centred column, on the patch grid (class token and registers left out)."""
    from PIL import Image

    size, folder = SMALL[name], presets[name]
    images = np.stack([_resized(p, size) for p in photos])
    clf = FineTunedClassifier(name, weights=folder, input_size=size, unfreeze=0, random_state=0)
    clf.fit(np.concatenate([images, images[:, ::-1]]), [0, 1, 2, 3] * 2)

    scaled = keras_hub.layers.ImageConverter.from_preset(str(folder))(images.astype("float32"))
    tokens = np.asarray(clf._network.base(scaled), dtype=np.float64)[:, get_backbone_spec(name).prefix_tokens :]
    scale, _ = clf._trained.head.get_layer("head_standardize").get_weights()
    kernel, _ = clf._trained.head.get_layer("head_output").get_weights()
    centred = kernel - kernel.mean(axis=1, keepdims=True)
    columns = np.searchsorted(clf.classes_, clf.predict(images))
    maps = skptm.explain(clf, images)
    for patches, column, actual in zip(tokens, columns, maps, strict=True):
        coarse = np.maximum(patches @ (centred[:, column] * scale), 0).reshape(grid, grid).astype(np.float32)
        heat = np.asarray(Image.fromarray(coarse, "F").resize((size, size), Image.Resampling.BILINEAR))
        expected = heat / heat.max() if heat.max() > 0 else heat
        assert actual.shape == (size, size)
        np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_grad_cam_of_the_class_token_looks_through_an_earlier_block(presets, two_themes):
    """The class token of the last block's output is fed by no patch token of
    that output: explain says so and names an earlier block, which works."""
    X, y = two_themes
    clf = small_dino(presets, pooling="cls", unfreeze=0).fit(X, y)
    with pytest.raises(ValueError, match=r"pooling='cls'.*layer= for an earlier block \('stage1'"):
        skptm.explain(clf, X[:2])
    maps = skptm.explain(clf, X[:4], layer="stage1")
    assert [m.shape for m in maps] == [(56, 56)] * 4
    assert all(np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 for m in maps)
    assert any(m.max() == pytest.approx(1) for m in maps)
    with pytest.raises(ValueError, match=r"no layer named 'stage9'.*'stage2', 'stage1'"):
        skptm.explain(clf, X[:2], layer="stage9")


@pytest.mark.parametrize(
    ("name", "block", "prefix"),
    [("siglip_base_patch16_224", 1, 0), ("clip_vit_base_patch32", 0, 1)],
)
def test_grad_cam_of_an_image_embedding_equals_grad_cam_by_hand(name, block, prefix, presets, photos):
    """CLIP and SigLIP pool an embedding from their blocks' tokens: Grad-CAM maps
    by default the deepest block whose patch tokens reach it (SigLIP's last,
    CLIP's last but one: CLIP's embedding is its last block's class token),
    computed here by hand on KerasHub's own model and the fitted head."""
    import tensorflow as tf
    from PIL import Image

    size, folder = SMALL[name], presets[name]
    images = np.stack([_resized(p, size) for p in photos])
    clf = FineTunedClassifier(name, weights=folder, unfreeze=0, random_state=0)
    clf.fit(np.concatenate([images, images[:, ::-1]]), [0, 1, 2, 3] * 2)

    backbone = keras_hub.models.Backbone.from_preset(str(folder))
    vision = backbone.vision_encoder
    embedding = vision.outputs[0]
    if name.startswith("clip"):
        embedding = backbone.vision_projection(backbone.vision_pooler(embedding))
    blocks = [layer for layer in vision.layers if "encoder_block" in layer.name]
    by_hand = keras.Model(vision.inputs, [blocks[block].output, embedding])
    scale, offset = clf._trained.head.get_layer("head_standardize").get_weights()
    kernel, bias = clf._trained.head.get_layer("head_output").get_weights()
    scaled = tf.constant(keras_hub.layers.ImageConverter.from_preset(str(folder))(images.astype("float32")))
    columns = np.searchsorted(clf.classes_, clf.predict(images))
    with tf.GradientTape() as tape:
        tokens, pooled = by_hand(scaled)
        logits = (pooled * scale + offset) @ kernel + bias
        centred = logits - tf.reduce_mean(logits, axis=1, keepdims=True)
        score = tf.reduce_sum(tf.gather(centred, columns, axis=1, batch_dims=1))
    gradients = tape.gradient(score, tokens).numpy()[:, prefix:]
    patches = tokens.numpy()[:, prefix:]
    grid = int(round(patches.shape[1] ** 0.5))
    maps = skptm.explain(clf, images)
    for grad, patch, actual in zip(gradients, patches, maps, strict=True):
        coarse = np.maximum(patch @ grad.mean(axis=0), 0).reshape(grid, grid).astype(np.float32)
        heat = np.asarray(Image.fromarray(coarse, "F").resize((size, size), Image.Resampling.BILINEAR))
        expected = heat / heat.max() if heat.max() > 0 else heat
        np.testing.assert_allclose(actual, expected, atol=1e-4)
    assert_normalised(maps)
    if name.startswith("clip"):
        with pytest.raises(ValueError, match=r"class token.*layer='stage1' \(the default\)"):
            skptm.explain(clf, images[:1], layer="stage2")


@pytest.mark.parametrize("name", ["vit_base_patch16_224_imagenet", "siglip_base_patch16_224", "clip_vit_base_patch32"])
def test_each_image_text_and_vit_family_fine_tunes_and_round_trips(name, presets, two_themes):
    """The families whose blocks do not sit in a DINO encoder: fine-tuned (the
    backbone copied privately, its top block trained), pickled, reloaded."""
    from PIL import Image

    X, y = two_themes
    size = SMALL[name]
    X = np.stack([np.asarray(Image.fromarray(x).resize((size, size))) for x in X])
    clf = FineTunedClassifier(
        name,
        weights=presets[name],
        unfreeze=1,
        head_epochs=2,
        finetune_epochs=1,
        validation_fraction=None,
        batch_size=8,
        random_state=0,
    ).fit(X, y)
    assert clf.unfrozen_layers_
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-6)
