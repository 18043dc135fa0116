"""ZeroShotClassifier on a small CLIP preset written here: both towers from a
small configuration, and a tokenizer from a vocabulary the test writes, saved
with KerasHub's save_to_preset and loaded through the public API."""

import string

import numpy as np
import pytest
import sklearn.exceptions
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline

import skptm
from skptm import ZeroShotClassifier

keras_hub = pytest.importorskip("keras_hub")


def clip_vocabulary():
    letters = list(string.ascii_lowercase) + list(".,'")
    vocabulary = {c: i for i, c in enumerate(letters)}
    vocabulary.update({c + "</w>": len(letters) + i for i, c in enumerate(letters)})
    merges = ["c a", "ca t</w>", "d o", "do g</w>"]
    for merge in merges:
        vocabulary[merge.replace(" ", "")] = len(vocabulary)
    # The end token has the highest id: CLIP's text pooler looks for it so.
    vocabulary["<|startoftext|>"] = len(vocabulary)
    vocabulary["<|endoftext|>"] = len(vocabulary)
    return vocabulary, merges


@pytest.fixture(scope="module")
def clip_preset(tmp_path_factory):
    models = keras_hub.models
    vocabulary, merges = clip_vocabulary()
    block = {"num_layers": 2, "num_heads": 2, "intermediate_dim": 64}
    vision = models.CLIPVisionEncoder(patch_size=32, hidden_dim=32, image_shape=(224, 224, 3), **block)
    text = models.CLIPTextEncoder(
        vocabulary_size=len(vocabulary), embedding_dim=32, hidden_dim=32, max_sequence_length=16, **block
    )
    folder = tmp_path_factory.mktemp("clip")
    models.CLIPBackbone(vision, text, projection_dim=16).save_to_preset(str(folder))
    tokenizer = models.CLIPTokenizer(vocabulary=vocabulary, merges=merges)
    models.CLIPPreprocessor(tokenizer, sequence_length=16).save_to_preset(str(folder))
    keras_hub.layers.ImageConverter(
        image_size=(224, 224),
        scale=[1 / (255 * s) for s in (0.26862954, 0.26130258, 0.27577711)],
        offset=[-m / s for m, s in zip((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))],
    ).save_to_preset(str(folder))
    return folder


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (6, 224, 224, 3)).astype(np.uint8)


def test_zero_shot_equals_the_clip_head_by_hand(clip_preset, images):
    """Prototypes from prompts, softmax of the temperature-scaled cosine: what
    KerasHub's CLIP computes with the same prompts, one template."""
    clf = ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, classes=["cat", "dog"], templates=["{}"])
    probabilities = clf.fit(None).predict_proba(images)
    backbone = keras_hub.models.Backbone.from_preset(str(clip_preset))
    preprocessor = keras_hub.models.CLIPPreprocessor.from_preset(str(clip_preset))
    converter = keras_hub.layers.ImageConverter.from_preset(str(clip_preset))
    tokens = preprocessor({"images": None, "prompts": ["cat", "dog"]})["token_ids"]
    logits = backbone({"images": converter(images.astype("float32")), "token_ids": tokens})["vision_logits"]
    logits = np.asarray(logits)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-5)
    assert clf.calibration_ == "softmax" and list(clf.classes_) == ["cat", "dog"]
    assert clf.predict(images).tolist() == np.asarray(["cat", "dog"])[expected.argmax(1)].tolist()


def test_labelled_images_pull_the_prototypes_towards_them(clip_preset, images):
    y = np.array(["cat", "dog"] * 3)
    text_only = ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset).fit(images, y)
    blended = ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, image_weight=1.0).fit(images, y)
    assert list(text_only.classes_) == ["cat", "dog"]
    assert not np.allclose(text_only.prototypes_, blended.prototypes_)
    np.testing.assert_allclose(np.linalg.norm(blended.prototypes_, axis=1), 1, rtol=1e-5)
    scores = cross_val_score(
        make_pipeline(ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, image_weight=0.5)),
        images,
        y,
        cv=3,
    )
    assert scores.shape == (3,)


def test_bad_uses_are_named(clip_preset):
    with pytest.raises(ValueError, match="no text tower"):
        ZeroShotClassifier("dinov2_small", classes=["a", "b"]).fit(None)
    with pytest.raises(ValueError, match="Name the classes"):
        ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset).fit(None)
    with pytest.raises(ValueError, match="one '\\{\\}'"):
        ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, classes=["a", "b"], templates=["x"]).fit(None)
    with pytest.raises(ValueError, match="not in classes"):
        ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, classes=["cat", "dog"]).fit(
            np.zeros((1, 8, 8, 3), np.uint8), ["bird"]
        )


def test_predict_from_the_command_line_with_classes(clip_preset, tmp_path, capsys):
    from PIL import Image

    from skptm.cli import main

    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)).save(tmp_path / f"img{i}.png")
    out = tmp_path / "labels.csv"
    code = main(
        [
            "predict",
            "--classes",
            "cat,dog",
            "--backbone",
            "clip_vit_base_patch32",
            "--weights",
            str(clip_preset),
            str(tmp_path),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and all(line.split(",")[-3] in ("cat", "dog") for line in lines[1:]), lines
    assert skptm.ZeroShotClassifier is ZeroShotClassifier


@pytest.fixture(scope="module")
def siglip_preset(tmp_path_factory):
    """A small SigLIP preset with a SentencePiece tokenizer trained here on a few captions."""
    import io

    import sentencepiece

    captions = ["a photo of a cat", "a photo of a dog", "itap of a bird", "art of the small cat"] * 20
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(captions),
        model_writer=model,
        vocab_size=13,
        model_type="word",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
    )
    models = keras_hub.models
    tokenizer = models.SigLIPTokenizer(proto=model.getvalue())
    block = {"num_layers": 2, "num_heads": 2, "intermediate_dim": 64}
    vision = models.SigLIPVisionEncoder(patch_size=32, hidden_dim=32, image_shape=(224, 224, 3), **block)
    text = models.SigLIPTextEncoder(
        vocabulary_size=tokenizer.vocabulary_size(), embedding_dim=32, hidden_dim=32, max_sequence_length=16, **block
    )
    folder = tmp_path_factory.mktemp("siglip")
    backbone = models.SigLIPBackbone(vision, text)
    backbone.siglip_head.logit_bias.assign(-2.0)  # as if trained: SigLIP's bias matters
    backbone.save_to_preset(str(folder))
    models.SigLIPPreprocessor(tokenizer, sequence_length=16).save_to_preset(str(folder))
    keras_hub.layers.ImageConverter(image_size=(224, 224), scale=[1 / 127.5] * 3, offset=[-1.0] * 3).save_to_preset(
        str(folder)
    )
    return folder


def test_siglip_scores_are_sigmoids_with_its_bias(siglip_preset, images):
    """SigLIP's probabilities are its authors' independent sigmoids of the
    scaled cosine plus the learnt bias: KerasHub's own logits, one template."""
    clf = ZeroShotClassifier("siglip_base_patch16_224", weights=siglip_preset, classes=["cat", "dog"], templates=["{}"])
    probabilities = clf.fit(None).predict_proba(images)
    backbone = keras_hub.models.Backbone.from_preset(str(siglip_preset))
    preprocessor = keras_hub.models.SigLIPPreprocessor.from_preset(str(siglip_preset))
    converter = keras_hub.layers.ImageConverter.from_preset(str(siglip_preset))
    tokens = preprocessor({"images": None, "prompts": ["cat", "dog"]})["token_ids"]
    logits = np.asarray(backbone({"images": converter(images.astype("float32")), "token_ids": tokens})["vision_logits"])
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits)), rtol=1e-4, atol=1e-5)
    assert clf.calibration_ == "sigmoid" and clf.logit_bias_ != 0.0


def test_labels_keep_their_type_and_two_classes_score_as_one_column(clip_preset, images):
    """Integer labels stay integers in classes_ and predict (their str goes
    into the prompts), so score and cross_val_score compare like with like;
    with two classes, decision_function is one column, as scikit-learn's
    binary classifiers give it, so ROC AUC scoring works."""
    y = np.array([2, 10] * 3)
    clf = ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, image_weight=0.5).fit(images, y)
    assert clf.classes_.tolist() == [2, 10] and set(clf.predict(images).tolist()) <= {2, 10}
    assert 0.0 <= clf.score(images, y) <= 1.0
    scores = clf.decision_function(images)
    full = clf._scores(images)
    assert scores.shape == (len(images),)
    np.testing.assert_allclose(scores, full[:, 1] - full[:, 0])
    assert ((scores > 0) == (clf.predict(images) == 10)).all()
    search = GridSearchCV(clf, {"image_weight": [0.0, 0.5]}, scoring="roc_auc", cv=2, error_score="raise")
    assert np.isfinite(search.fit(images, y).cv_results_["mean_test_score"]).all()
    three = ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, classes=["cat", "dog", "bird"])
    assert three.fit(None).decision_function(images).shape == (len(images), 3)


def test_an_unreadable_image_gets_nan_with_on_error_nan(clip_preset, tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a JPEG")
    paths = [str(good), str(broken), str(good)]
    clf = ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, classes=["cat", "dog"])
    with pytest.raises(skptm.ImageReadError, match=r"index 1 .*broken\.jpg"):
        clf.fit(None).predict(paths)
    clf.set_params(on_error="nan")
    with pytest.warns(skptm.ImageReadWarning, match="broken.jpg"):
        labels = clf.predict(paths)
    assert labels[1] is None and labels[0] in ("cat", "dog")
    with pytest.warns(skptm.ImageReadWarning):
        proba = clf.predict_proba(paths)
    assert np.isnan(proba[1]).all() and np.isfinite(proba[[0, 2]]).all()


def test_fit_checks_images_against_labels(clip_preset, images):
    with pytest.raises(sklearn.exceptions.NotFittedError):
        ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, classes=["cat", "dog"]).predict(images)
    for image_weight in (0.0, 0.5):
        with pytest.raises(ValueError, match="inconsistent numbers of samples"):
            ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, image_weight=image_weight).fit(
                images[:4], ["cat", "dog", "cat"]
            )
    with pytest.raises(ValueError, match="pass the images' labels as y"):
        ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, classes=["cat", "dog"], image_weight=0.5).fit(
            images
        )


@pytest.mark.parametrize(
    ("classes", "y", "match"),
    [
        (["cat", "  "], None, "no name at index 1"),
        (["cat", "cat"], None, "at least two different classes"),
        (None, ["cat", "cat", "cat"], "y has one class, 'cat'"),
        (None, ["cat", None, "dog"], "y has no label at index 1"),
        (["cat", "dog"], ["cat", "cow", "dog"], "not in classes: 'cow'"),
    ],
)
def test_class_names_are_checked(clip_preset, images, classes, y, match):
    clf = ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, classes=classes)
    with pytest.raises(ValueError, match=match):
        clf.fit(None if y is None else images[: len(y)], y)


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("a {} {x}", "has 2 replacement fields"),
        ("a {} {", "is malformed"),
        ("a {0}", "names its field"),
        (3, "is not a string"),
    ],
)
def test_templates_are_checked_and_literal_braces_allowed(clip_preset, template, match):
    clf = ZeroShotClassifier("clip_vit_base_patch32", weights=clip_preset, classes=["cat", "dog"])
    with pytest.raises(ValueError, match=f"template 1 {match}"):
        clf.set_params(templates=["a photo of a {}.", template]).fit(None)
    assert clf.set_params(templates=["a {} {{in braces}}"]).fit(None).classes_.tolist() == ["cat", "dog"]


def test_a_preset_without_the_text_preprocessor_says_what_zero_shot_needs(clip_preset, siglip_preset, tmp_path):
    import shutil

    folder = shutil.copytree(clip_preset, tmp_path / "no_tokenizer")
    for name in ("preprocessor.json", "tokenizer.json"):
        (folder / name).unlink()
    shutil.rmtree(folder / "assets", ignore_errors=True)
    with pytest.raises(FileNotFoundError, match="has no text preprocessor"):
        ZeroShotClassifier("clip_vit_base_patch32", weights=folder, classes=["cat", "dog"]).fit(None)
    with pytest.raises(ValueError, match="holds a SigLIPBackbone, not the CLIPBackbone"):
        ZeroShotClassifier("clip_vit_base_patch32", weights=siglip_preset, classes=["cat", "dog"]).fit(None)
    with pytest.raises(FileNotFoundError) as caught:
        ZeroShotClassifier("clip_vit_base_patch32", weights=tmp_path / "missing", classes=["cat", "dog"]).fit(None)
    assert "weights=None" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("cat,dog", ["cat", "dog"]),
        ("cat, dog ,bird", ["cat", "dog", "bird"]),
        ('"red, white",blue', ["red, white", "blue"]),
    ],
)
def test_class_names_on_the_command_line(text, names):
    from skptm.cli.predict import class_names

    assert class_names(text) == names


@pytest.mark.parametrize(("text", "match"), [("cat,,dog,", "empty name at position 2, 4"), ('"cat,dog', "not a comma")])
def test_bad_class_names_on_the_command_line(text, match):
    from skptm.cli import UserError
    from skptm.cli.predict import class_names

    with pytest.raises(UserError, match=match):
        class_names(text)
