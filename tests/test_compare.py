"""skptm.compare: raw pixels, linear probes and fine-tuning on the same folds,
on the sample photos and on digits (far from photos), and its command."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from PIL import Image

import skptm
from skptm import ApproachScore, ComparisonResult
from skptm import plot as skplot
from skptm._compare import CANDIDATES, default_backbones
from skptm._heads import RIDGE_ALPHAS
from skptm.cli import main
from skptm.datasets import load_sample_photos

from .conftest import LIGHT_2

#: The registry's quickest network to fine-tune: its graph is the simplest to trace.
QUICK = "mobilenet"

PARAMS = {"weights": None, "input_size": 32, "cv": 2, "finetune_epochs": 1, "random_state": 0, "verbose": 0}


def entries(cache):
    """Feature cache entries per network configuration: {configuration: count}."""
    return {
        folder.name: sum(1 for path in folder.rglob("*") if path.is_file())
        for folder in cache.glob("v*/*")
        if folder.is_dir()
    }


def scores(result):
    return [row.scores for row in result.table]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The sixteen sample photos, compared with one probe and one depth of fine-tuning."""
    data = load_sample_photos()
    cache = tmp_path_factory.mktemp("compare_cache")
    result = skptm.compare(data.paths, data.target, backbones=[QUICK], unfreeze=(1,), cache=cache, **PARAMS)
    return data, cache, result


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Forty handwritten digits (0 to 3) upscaled to 32 px, as PNG files in
    one folder per digit: images far from photos. Returns the folder, the
    paths, the labels and each image's share of ink (a number to predict)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    data = load_digits(n_class=4)
    paths, labels, ink = [], [], []
    for k, (image, label) in enumerate(zip(data.images[:40], data.target[:40])):
        pixels = (image * (255 / 16)).astype(np.uint8)
        (root / str(label)).mkdir(exist_ok=True)
        path = root / str(label) / f"{k}.png"
        Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR).save(path)
        paths.append(str(path))
        labels.append(int(label))
        ink.append(float(pixels.mean() / 255))
    return root, paths, np.array(labels), np.array(ink)


# -- running it -----------------------------------------------------------------------------


def test_every_approach_on_the_photos(photos):
    data, _, result = photos
    assert [(row.approach, row.backbone, row.unfreeze) for row in result.table] == [
        ("raw pixels", None, None),
        ("linear probe", QUICK, None),
        ("fine-tuning", QUICK, 1),  # on the best probe's network
    ]
    for row in result.table:
        assert row.ran and len(row.scores) == 2
        assert all(0.0 <= score <= 1.0 for score in row.scores)
        assert math.isfinite(row.mean) and math.isfinite(row.std) and row.seconds > 0
    assert (result.scoring, result.n_splits, result.task) == ("accuracy", 2, "classification")
    text = str(result)
    assert text.splitlines()[0].split() == ["approach", "backbone", "unfreeze", "accuracy", "std", "seconds"]
    assert result.recommendation in text and "random weights" in result.recommendation
    # What the recommended code needs to build what was scored.
    assert result.network_options == {"input_size": 32}
    assert result.finetune_options == {"finetune_epochs": 1}


def test_each_image_featurised_once_per_network(photos):
    """The probe's folds and fine-tuning's phase 1 read one set of cache entries."""
    data, cache, _ = photos
    assert list(entries(cache).values()) == [len(data.paths)]


def test_far_from_photos_reproducible(digits, tmp_path):
    """Same random_state, same folds and scores; one cache entry per image and network."""
    _, paths, labels, _ = digits
    params = {**PARAMS, "backbones": [QUICK, LIGHT_2], "unfreeze": ()}
    first = skptm.compare(paths, labels, cache=tmp_path / "a", **params)
    again = skptm.compare(paths, labels, cache=tmp_path / "b", **params)
    assert [row.label for row in first.table] == [
        "raw pixels",
        f"linear probe on {QUICK}",
        f"linear probe on {LIGHT_2}",
    ]
    assert all(np.isfinite(row.scores).all() for row in first.table)
    assert scores(first) == scores(again)
    assert sorted(entries(tmp_path / "a").values()) == [len(paths), len(paths)]
    assert "Fine-tuning was not tried" in first.recommendation


def test_regression_targets(digits):
    """Non-integer numbers are predicted (RidgeCV, FineTunedRegressor), scored by R²;
    any folds scikit-learn takes work, here one split."""
    _, paths, _, ink = digits
    split = [(np.arange(0, 40, 2), np.arange(1, 40, 2))]
    result = skptm.compare(paths, ink, backbones=[QUICK], unfreeze=(1,), **{**PARAMS, "cv": split})
    assert (result.task, result.scoring, result.n_splits) == ("regression", "r2", 1)
    assert [row.approach for row in result.table] == ["raw pixels", "linear probe", "fine-tuning"]
    assert all(row.ran and np.isfinite(row.scores).all() for row in result.table)
    assert result.baseline.mean > 0.5  # ink is a sum of pixels: a linear model of them gets most of it


def test_time_budget_skips_and_says_so(digits):
    _, paths, labels, _ = digits
    result = skptm.compare(paths, labels, backbones=[QUICK], unfreeze=(1,), time_budget=1e-6, **PARAMS)
    assert [(row.approach, row.skipped) for row in result.table] == [
        ("raw pixels", None),  # always: every other row is measured against it
        ("linear probe", "time budget"),
        ("fine-tuning", "time budget"),
    ]
    assert result.format_table().count("skipped (time budget)") == 2
    assert "Skipped for the time budget of 1e-06 s, so not scored: linear probe on mobilenet; fine-tuning" in (
        result.recommendation
    )
    assert "larger time_budget" in result.recommendation


def test_bad_image_named_and_user_errors(digits, tmp_path):
    _, paths, labels, _ = digits
    broken = tmp_path / "broken.png"
    broken.write_text("not a PNG")
    with pytest.raises(skptm.ImageReadError) as caught:
        skptm.compare([*paths[:5], str(broken), *paths[5:12]], labels[:13], backbones=[QUICK], unfreeze=(), **PARAMS)
    assert (caught.value.index, caught.value.path) == (5, str(broken))
    # compare has no on_error: the message does not offer it.
    assert "on_error" not in str(caught.value) and "compare scores every approach on every image" in str(caught.value)

    # Checked before any network is built or image read.
    with pytest.raises(ValueError, match="unfreeze=0 is the linear probe"):
        skptm.compare(paths, labels, backbones=[QUICK], unfreeze=(0, 8), **PARAMS)
    with pytest.raises(ValueError, match="finetune_params cannot set cache"):
        skptm.compare(paths, labels, backbones=[QUICK], finetune_params={"cache": "x"}, **PARAMS)
    with pytest.raises(ValueError, match="FineTunedClassifier does not have: learning_rat"):
        skptm.compare(paths, labels, backbones=[QUICK], finetune_params={"learning_rat": 1e-3}, **PARAMS)
    with pytest.raises(ValueError, match="'mobilenet_v2'"):  # the closest names
        skptm.compare(paths, labels, backbones=["mobilenet_v"], **PARAMS)
    with pytest.raises(ValueError, match="multilabel-indicator"):
        skptm.compare(paths, np.eye(40, 3, dtype=int), backbones=[QUICK], **PARAMS)
    with pytest.raises(ValueError, match="time_budget"):
        skptm.compare(paths, labels, time_budget=0, **PARAMS)
    with pytest.raises(ValueError, match="accurcy"):
        skptm.compare(paths, labels, scoring="accurcy", **PARAMS)


def test_folds_keep_groups_together_and_classes_in_proportion():
    from skptm._compare import _splits

    y = np.repeat([0, 1], 12)
    groups = np.arange(24) // 2  # pairs of near-duplicates
    splits = _splits(3, 24, y, groups, True, 0)
    assert len(splits) == 3 and sorted(np.concatenate([test for _, test in splits])) == list(range(24))
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert np.bincount(y[test]).tolist() == [4, 4]
    assert [test.tolist() for _, test in splits] == [test.tolist() for _, test in _splits(3, 24, y, groups, True, 0)]


def test_default_backbones_from_what_is_known(tmp_path, monkeypatch):
    """Three light networks of different families; one measured here as the
    fastest comes first."""
    from skptm.engines import calibration
    from skptm.engines.decision import expected_rate

    monkeypatch.setenv("SKPTM_CACHE_DIR", str(tmp_path))  # nothing measured here yet
    families = dict(CANDIDATES)
    chosen = default_backbones(32)
    assert len(chosen) == 3 and len({families[name] for name in chosen}) == 3

    rates = {"median": 1e6, "low": 1e6, "high": 1e6}
    calibration.save(
        {
            "format": calibration.FORMAT_VERSION,
            "backbone": "densenet121",
            "size_class": calibration.size_class((32, 32)),
            "rates": {"tensorflow/float32": rates},
            "cosine": {"tensorflow/float32": 1.0},
        }
    )
    assert expected_rate("densenet121", 32) == (1e6, "measured here")
    assert default_backbones(32)[0] == "densenet121"


# -- the recommendation, from numbers given by hand ------------------------------------------


def row(approach, scores=(), backbone="mobilenet_v2", unfreeze=None, seconds=10.0, skipped=None):
    backbone = None if approach == "raw pixels" else backbone
    return ApproachScore(approach, backbone, unfreeze, scores, None if skipped else seconds, skipped)


def result_of(*rows, **kwargs):
    return ComparisonResult(table=rows, n_splits=2, **kwargs)


def test_probe_within_the_spread_of_pixels():
    result = result_of(row("raw pixels", (0.60, 0.70)), row("linear probe", (0.62, 0.74)))
    text = result.recommendation
    assert "Your images look unlike the network's training images: the linear probe barely beats raw pixels" in text
    assert "0.680 against 0.650; the folds' spread is 0.060" in text
    assert result.recommended.approach == "raw pixels"
    assert "Recommended: raw pixels, as no pretrained approach here beats them beyond the folds' spread" in text

    below = result_of(row("raw pixels", (0.80, 0.82)), row("linear probe", (0.60, 0.62)))
    assert "raw pixels beat the linear probe on mobilenet_v2 by 0.200" in below.recommendation

    random = result_of(row("raw pixels", (0.60, 0.70)), row("linear probe", (0.62, 0.74)), random_weights=True)
    assert "unlike" not in random.recommendation and "random weights" in random.recommendation
    # Random features say nothing of the images: no verdict on them, no advice to adapt the network.
    assert "Recommended: nothing from these scores" in random.recommendation
    assert "fine-tuning deeper" not in random.recommendation


def test_the_recommended_code_builds_what_was_scored():
    """A non-default input size or weights file goes into the recommended code."""
    options = {"network_options": {"input_size": 64, "weights": "/models/mine.weights.h5"}}
    probe = result_of(row("raw pixels", (0.50, 0.52)), row("linear probe", (0.80, 0.82)), **options)
    assert (
        "PretrainedFeatureTransformer(\"mobilenet_v2\", input_size=64, weights='/models/mine.weights.h5')"
        in probe.recommendation
    )
    tuned = result_of(
        row("raw pixels", (0.50, 0.52)),
        row("linear probe", (0.70, 0.72)),
        row("fine-tuning", (0.90, 0.92), unfreeze=8),
        **options,
    )
    assert 'FineTunedClassifier("mobilenet_v2", unfreeze=8, input_size=64, weights=' in tuned.recommendation

    # The fine-tuning settings that were scored go into its code too.
    settings = {"finetune_options": {"finetune_epochs": 3, "augment": "light"}}
    tuned = result_of(
        row("raw pixels", (0.50, 0.52)),
        row("linear probe", (0.70, 0.72)),
        row("fine-tuning", (0.90, 0.92), unfreeze=8),
        **settings,
    )
    assert "FineTunedClassifier(\"mobilenet_v2\", unfreeze=8, finetune_epochs=3, augment='light')" in (
        tuned.recommendation
    )
    # Random weights: the code builds the pretrained network, which was not scored, and says so.
    random = result_of(row("raw pixels", (0.50, 0.52)), row("linear probe", (0.80, 0.82)), random_weights=True)
    assert "PretrainedFeatureTransformer" in random.recommendation
    assert "the code builds the pretrained network, which was not scored" in random.recommendation


def test_probe_recommended_when_fine_tuning_is_within_the_spread():
    result = result_of(
        row("raw pixels", (0.50, 0.52)),
        row("linear probe", (0.80, 0.84)),
        row("linear probe", (0.70, 0.72), backbone="efficientnet_b0"),
        row("fine-tuning", (0.80, 0.88), unfreeze=8, seconds=100.0),
    )
    text = result.recommendation
    assert "The network's features help: the linear probe on mobilenet_v2 beats raw pixels by 0.310" in text
    assert "Fine-tuning did not beat the linear probe on mobilenet_v2 beyond the folds' spread" in text
    assert result.best.approach == "fine-tuning" and result.recommended.backbone == "mobilenet_v2"
    assert 'PretrainedFeatureTransformer("mobilenet_v2"), StandardScaler(), LogisticRegression' in text


def test_fine_tuning_recommended_when_it_beats_the_probe():
    result = result_of(
        row("raw pixels", (0.50, 0.50)),
        row("linear probe", (0.70, 0.72)),
        row("fine-tuning", (0.90, 0.92), unfreeze=8, seconds=100.0),
        row("fine-tuning", (0.85, 0.87), unfreeze=20, seconds=150.0),
    )
    text = result.recommendation
    assert text.startswith("Best: fine-tuning mobilenet_v2 (unfreeze=8), accuracy 0.910 ± 0.010 over 2 folds in 100 s.")
    assert (
        "Fine-tuning pays: fine-tuning mobilenet_v2 (unfreeze=8) beats the linear probe on mobilenet_v2 by 0.200"
        in text
    )
    assert 'FineTunedClassifier("mobilenet_v2", unfreeze=8)' in text

    regression = result_of(
        row("raw pixels", (0.10, 0.20)), row("linear probe", (0.70, 0.72)), task="regression", scoring="r2"
    )
    # The probe compare scored: RidgeCV over the head's alphas.
    assert "RidgeCV(alphas=np.logspace(-3, 5, 17))" in regression.recommendation
    assert "r2 0.710" in regression.recommendation
    np.testing.assert_array_equal(np.logspace(-3, 5, 17), RIDGE_ALPHAS)


def test_a_noisy_lower_probe_does_not_make_probes_look_close():
    """The best probe is beaten by fine-tuning; a worse probe with a wide
    spread is "close" to the best only by its noise: fine-tuning is
    recommended, as the text says it pays, not the worse probe."""
    result = result_of(
        row("raw pixels", (0.484, 0.516)),
        row("linear probe", (0.792, 0.808)),
        row("linear probe", (0.458, 0.908), backbone="efficientnet_b0"),
        row("fine-tuning", (0.892, 0.908), unfreeze=8),
    )
    assert result.recommended.approach == "fine-tuning"
    assert "Fine-tuning pays" in result.recommendation
    assert "Recommended: fine-tuning mobilenet_v2 (unfreeze=8)" in result.recommendation


def test_skipped_approaches_are_named():
    result = result_of(
        row("raw pixels", (0.50, 0.52)),
        row("linear probe", (0.80, 0.84)),
        row("fine-tuning", unfreeze=8, skipped="time budget"),
        row("fine-tuning", unfreeze=20, skipped="time budget"),
        time_budget=30,
    )
    text = result.recommendation
    assert "Fine-tuning did not run, so whether it pays is not known." in text
    assert (
        "Skipped for the time budget of 30 s, so not scored: fine-tuning mobilenet_v2 (unfreeze=8); "
        "fine-tuning mobilenet_v2 (unfreeze=20)." in text
    )
    frame = result.to_frame()
    assert list(frame.columns) == ["approach", "backbone", "unfreeze", "mean", "std", "seconds", "skipped"]
    assert frame["mean"].isna().tolist() == [False, False, True, True]
    assert frame["skipped"].tolist() == [None, None, "time budget", "time budget"]
    assert frame["unfreeze"].tolist() == [None, None, 8, 20]


def test_results_that_cannot_be():
    with pytest.raises(ValueError, match="either ran"):
        ApproachScore("linear probe", "mobilenet_v2", scores=(0.5,), skipped="time budget")
    with pytest.raises(ValueError, match="approach must be one of"):
        ApproachScore("probe", "mobilenet_v2", scores=(0.5,))
    with pytest.raises(ValueError, match="raw-pixel baseline"):
        result_of(row("linear probe", (0.5, 0.6)))


def test_plot(tmp_path):
    result = result_of(
        row("raw pixels", (0.50, 0.52), seconds=1.0),
        row("linear probe", (0.80, 0.84)),
        row("fine-tuning", (0.82, 0.90), unfreeze=8, seconds=100.0),
        row("fine-tuning", unfreeze=20, skipped="time budget"),
    )
    fig = skplot.compare(result)
    assert isinstance(fig, matplotlib.figure.Figure)
    labels = [label.get_text() for label in fig.axes[0].get_yticklabels()]
    assert labels == [r.label for r in result.table]
    numbers = [label.get_text() for label in fig.axes[1].get_yticklabels()]  # right of the bars
    assert "0.860 ± 0.040, 100 s" in numbers and "skipped (time budget)" in numbers
    fig.savefig(tmp_path / "compare.png", dpi=60)
    matplotlib.pyplot.close(fig)
    assert isinstance(result.plot(), matplotlib.figure.Figure)
    matplotlib.pyplot.close("all")
    with Image.open(tmp_path / "compare.png") as picture:
        assert np.asarray(picture.convert("L")).std() > 5  # not blank


# -- the command ------------------------------------------------------------------------------


def test_command_help(capsys):
    assert main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: skptm compare" in out and "\n  skptm compare photos/ " in out  # an example
    assert main(["--help"]) == 0 and "compare" in capsys.readouterr().out


def test_command_prints_the_table_and_writes_the_chart(digits, tmp_path, capsys):
    root, paths, _, _ = digits
    options = ["--backbones", QUICK, "--no-finetune", "--cv", "2", "-w", "none", "-s", "32", "-q"]
    code = main(["compare", str(root), *options, "-o", str(tmp_path / "report.png")])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["approach", "backbone", "unfreeze", "accuracy", "std", "seconds"]
    assert lines[2].startswith("raw pixels") and lines[3].split()[:3] == ["linear", "probe", QUICK]
    assert all(math.isfinite(float(line.split()[-3])) for line in lines[2:4])
    assert any(line.startswith("Best: ") and "random weights" in line for line in lines)
    assert lines[-1] == f"wrote {tmp_path / 'report.png'}"
    with Image.open(tmp_path / "report.png") as picture:
        assert picture.width >= 400 and np.asarray(picture.convert("L")).std() > 5

    code = main(["compare", str(root), *options, "--time-budget", "0"])
    assert code == 2 and "expected a positive number" in capsys.readouterr().err
    code = main(["compare", str(root), "--backbones", "mobilenet_v", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "skptm compare: error:" in err and "'mobilenet_v2'" in err


def test_a_result_pickled_before_the_options_fields_still_recommends():
    result = result_of(row("raw pixels", (0.50, 0.52)), row("linear probe", (0.80, 0.82)))
    for name in ("network_options", "finetune_options"):
        object.__delattr__(result, name)  # as an older pickle holds it
    assert 'PretrainedFeatureTransformer("mobilenet_v2")' in result.recommendation
