"""The command line, run through ``main([...])`` in this process, plus
subprocesses that check TensorFlow's start-up chatter stays off stderr and
what commands do offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import skptm
from skptm import PretrainedFeatureTransformer
from skptm._writers import paths_sidecar
from skptm.cli import main

from .conftest import LIGHT, pattern
from .test_offline import NO_NETWORK

OPTIONS = ["--weights", "none", "--input-size", "32", "--backbone", LIGHT, "-q"]

#: Lines TensorFlow writes to stderr as it starts, which the CLI must hide.
CHATTER = (
    "oneDNN custom operations",
    "cuda",
    "absl::InitializeLog",
    "cpu_feature_guard",
    "To enable the following instructions",
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three real images, one in a sub-folder, and a file that is not one."""
    root = tmp_path_factory.mktemp("cli_images")
    (root / "nested" / "deeper").mkdir(parents=True)
    Image.fromarray(pattern()).save(root / "b.jpg", quality=95)
    Image.fromarray(pattern(40, 30)[::-1]).save(root / "nested" / "a.png")
    Image.fromarray(pattern(50, 50)).convert("L").save(root / "nested" / "deeper" / "c.JPEG")
    (root / "notes.txt").write_text("not an image, and not collected")
    return root


@pytest.fixture(scope="module")
def expected(folder):
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".txt")
    transformer = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=32)
    return [str(p) for p in paths], transformer.transform([str(p) for p in paths]), transformer


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_embed_folder(folder, expected, tmp_path, capsys, suffix):
    paths, features, transformer = expected
    out = tmp_path / f"features{suffix}"
    code, _, err = run_cli(capsys, "embed", folder, "-o", out, *OPTIONS)
    assert code == 0, err
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), features)
        assert paths_sidecar(out).read_text().splitlines() == paths
        return
    import pandas as pd

    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(frame.columns) == ["path", *transformer.get_feature_names_out()]
    assert frame["path"].tolist() == paths
    values = frame.drop(columns="path").to_numpy()
    if suffix == ".csv":  # 9 significant digits round-trip float32
        np.testing.assert_array_equal(values.astype(np.float32), features)
    else:
        np.testing.assert_array_equal(values, features)


def test_embed_list_of_paths(folder, expected, tmp_path, capsys):
    paths, features, _ = expected
    listing = folder / "list.txt"
    relative = [os.path.relpath(p, folder) for p in reversed(paths)]
    listing.write_text("# images, newest first\n\n" + "\n".join(relative[:2]) + f"\n{paths[0]}\n")
    out = tmp_path / "f.npy"
    code, _, err = run_cli(capsys, "embed", listing, "-o", out, *OPTIONS)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(out), features[::-1])
    listing.unlink()


def test_embed_user_errors(folder, tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    code, _, err = run_cli(capsys, "embed", tmp_path / "empty", "-o", tmp_path / "f.npy", *OPTIONS)
    assert code == 2 and "no images found" in err and "Traceback" not in err

    code, _, err = run_cli(capsys, "embed", folder, "-o", tmp_path / "f.xlsx", *OPTIONS)
    assert code == 2 and ".npy, .csv, .parquet" in err

    code, _, err = run_cli(capsys, "embed", tmp_path / "missing", "-o", tmp_path / "f.npy", *OPTIONS)
    assert code == 1 and "missing" in err and "Traceback" not in err

    code, _, err = run_cli(capsys, "embed", folder, "-o", tmp_path / "f.npy", *OPTIONS[:4], "--backbone", "resnet_50x")
    assert code == 1 and "Unknown backbone 'resnet_50x'" in err

    code, _, err = run_cli(capsys, "embed", folder, "-o", tmp_path / "f.npy", "--input-size", "big")
    assert code == 2 and "224x192" in err
    assert not list(tmp_path.glob("f.*"))


def test_embed_unreadable_file(folder, expected, tmp_path, capsys):
    bad = tmp_path / "images" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_text("this is text, not a JPEG")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{expected[0][0]}\nimages/broken.jpg\n")

    code, _, err = run_cli(capsys, "embed", listing, "-o", tmp_path / "f.npy", *OPTIONS, "--on-error", "raise")
    assert code == 1 and str(bad) in err and "--on-error nan" in err and "Traceback" not in err

    out = tmp_path / "f.csv"
    code, _, err = run_cli(capsys, "embed", listing, "-o", out, *OPTIONS)  # default: nan
    assert code == 0 and f"1 of 2 images could not be read; their rows are NaN: {bad}" in err
    rows = np.genfromtxt(out, delimiter=",", skip_header=1)[:, 1:]
    assert np.isfinite(rows[0]).all() and np.isnan(rows[1]).all()


def test_backbones_and_help(capsys):
    code, out, _ = run_cli(capsys, "backbones")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["name", "keras"]
    n_networks = len(skptm.list_backbones())
    assert len(lines) == 2 + n_networks
    assert lines[2 + 2].split() == [
        "resnet50",
        "ResNet50",
        "224",
        "caffe",
        "2048",
        "keras.applications",
        "Apache-2.0",
        "stretch/bilinear",
    ]
    assert any(
        line.split()[:2] == ["dinov2_small", "DINOV2Backbone"] and line.split()[-1] == "center_crop/bicubic"
        for line in lines
    )
    code, out, _ = run_cli(capsys, "backbones", "--engines")
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert code == 0 and len(rows) == n_networks
    # Nothing measured on this machine (the suite's cache folder is new): TensorFlow float32.
    assert "tensorflow float32" in rows["convnext_tiny"] and "not measured" in rows["convnext_tiny"]
    commands = ["embed", "backbones", "fetch-weights", "cluster", "train", "predict", "calibrate", "cache"]
    for command in ([], *([name] for name in commands)):
        code, out, _ = run_cli(capsys, *command, "--help")
        assert code == 0 and "usage: skptm" in out
        if command[:1] in (["cluster"], ["train"], ["predict"], ["calibrate"]):
            assert f"\n  skptm {command[0]} " in out  # an example in the epilog
    assert run_cli(capsys)[0] == 2
    assert run_cli(capsys, "fetch-weights")[0] == 2  # neither names nor --all
    code, _, err = run_cli(capsys, "fetch-weights", "resnet_50x")
    assert code == 1 and "Did you mean 'resnet50'" in err


def quiet_env(**extra):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, **extra}


def assert_no_chatter(stderr):
    noisy = [line for line in stderr.splitlines() if any(word in line for word in CHATTER)]
    assert not noisy, stderr


def test_offline_fetch_and_embed(folder, tmp_path):
    """All three need ImageNet weights: a clear paragraph, exit code 1, no traceback."""
    env = quiet_env(**NO_NETWORK, KERAS_HOME=str(tmp_path / "keras_home"))
    script = """if True:
        import sys
        from skptm.cli import main
        print("CODES", main(["fetch-weights", "resnet50", "-q"]),
              main(["embed", sys.argv[1], "-o", sys.argv[2], "-b", "mobilenet_v2", "-s", "96", "-q"]),
              main(["calibrate", "mobilenet_v2", "-s", "96", "-q"]))
    """
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path / "f.npy")],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert "CODES 1 1 1" in out.stdout, out.stdout + out.stderr
    fetch, embed, calibrate = out.stderr.strip().split("\n")[-3:]  # one line (paragraph) each
    assert fetch.startswith("skptm fetch-weights: error: Could not get the ImageNet weights of 'resnet50'")
    assert embed.startswith("skptm embed: error: Could not get the ImageNet weights of 'mobilenet_v2'")
    assert calibrate.startswith("skptm calibrate: error: Could not get the ImageNet weights of 'mobilenet_v2'")
    for message in (embed, calibrate):
        assert "offline" in message and "skptm fetch-weights NAME" in message
        assert "--weights PATH" in message and "'--weights none' uses random weights" in message
    # fetch-weights has no --weights option: its hint is where to run it.
    assert "offline" in fetch and "run this command on a machine with internet access" in fetch
    assert "--weights" not in fetch
    assert "Traceback" not in out.stderr
    assert_no_chatter(out.stderr)
    assert not (tmp_path / "f.npy").exists()


@pytest.mark.exhaustive  # slow (a real process pool or a fresh process): in the second tier, which .ci/run also runs
def test_no_tensorflow_chatter(folder, tmp_path):
    """Two real processes without TF_CPP_MIN_LOG_LEVEL: stderr shows no start-up noise."""
    out = subprocess.run(
        [sys.executable, "-m", "skptm", "backbones"],
        check=False,
        capture_output=True,
        text=True,
        env=quiet_env(),
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.count("\n") == 2 + len(skptm.list_backbones()) and out.stderr == ""

    script = Path(sys.executable).with_name("skptm")
    # The console script where skptm is installed, else the module.
    command = [str(script)] if script.exists() else [sys.executable, "-m", "skptm"]
    out = subprocess.run(
        [
            *command,
            "embed",
            str(folder),
            "-o",
            str(tmp_path / "f.npy"),
            "--weights",
            "none",
            "--input-size",
            "32",
            "--backbone",
            LIGHT,
        ],
        check=False,
        capture_output=True,
        text=True,
        env=quiet_env(),
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert np.load(tmp_path / "f.npy").shape == (3, 1280)
    assert "images/s" in out.stderr  # the progress bar is there
    assert_no_chatter(out.stderr)


# -- cluster ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory):
    """Nine small noisy images in three colour families, some in a sub-folder."""
    root = tmp_path_factory.mktemp("cli_colours")
    (root / "more").mkdir()
    rng = np.random.default_rng(0)
    for family, colour in enumerate(((220, 30, 30), (30, 30, 220), (30, 200, 30))):
        for i in range(3):
            image = np.clip(np.array(colour) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            folder = root / "more" if i == 2 else root
            Image.fromarray(image).save(folder / f"c{family}_{i}.png")
    return root


def read_csv(path):
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def assert_picture(path):
    with Image.open(path) as image:
        assert image.width >= 200 and image.height >= 150
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 5  # not blank


def test_cluster_writes_its_outputs(colour_images, tmp_path, capsys, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import skptm.plot

    sheets = []  # what each contact sheet was drawn from (the real montage draws it)
    real_montage = skptm.plot.montage

    def recording_montage(images, labels=None, **kwargs):
        sheets.append((list(images), list(labels)))
        return real_montage(images, labels=labels, **kwargs)

    monkeypatch.setattr(skptm.plot, "montage", recording_montage)
    out = tmp_path / "clusters"
    code, stdout, err = run_cli(capsys, "cluster", colour_images, "-k", 3, "-o", out, *OPTIONS, "--max-per-sheet", 2)
    assert code == 0, err
    paths = [str(p) for p in sorted(colour_images.rglob("*.png"))]
    rows = read_csv(out / "clusters.csv")
    assert [row["path"] for row in rows] == paths
    clusters = [int(row["cluster"]) for row in rows]
    distances = {row["path"]: float(row["distance"]) for row in rows}
    assert set(clusters) == {0, 1, 2} and min(distances.values()) >= 0
    sizes = [clusters.count(c) for c in range(3)]
    assert sizes == sorted(sizes, reverse=True)  # cluster 0 the largest

    assert sorted(p.name for p in out.iterdir()) == [
        "cluster_00.png",
        "cluster_01.png",
        "cluster_02.png",
        "clusters.csv",
        "overview.png",
    ]
    for name in ("cluster_00.png", "cluster_01.png", "cluster_02.png", "overview.png"):
        assert_picture(out / name)
    assert len(sheets) == 3
    for cluster, (shown, captions) in enumerate(sheets):
        members = sorted((distances[p], p) for p, c in zip(paths, clusters) if c == cluster)
        assert len(shown) == min(2, len(members))  # --max-per-sheet
        assert [distances[p] for p in shown] == [d for d, _ in members[: len(shown)]]  # nearest first
        for path, caption in zip(shown, captions):
            assert caption.split()[-1] == f"{distances[path]:.3f}"
    lines = stdout.splitlines()
    assert lines[0].split() == ["cluster", "size", "nearest", "to", "the", "centre"]
    assert [line.split()[:2] for line in lines[2:5]] == [[str(c), str(s)] for c, s in enumerate(sizes)]
    assert "random weights" in stdout and str(out / "overview.png") in stdout


def test_cluster_user_errors(colour_images, folder, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "cluster", colour_images, "-k", 10, "-o", out, *OPTIONS)
    assert code == 1 and "more clusters than there are images (9)" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "cluster", colour_images, "-k", 1, "-o", out, *OPTIONS)
    assert code == 2 and "-k/--clusters: expected an integer of at least 2, got '1'" in err  # a usage error
    (tmp_path / "file").write_text("")
    code, _, err = run_cli(capsys, "cluster", colour_images, "-k", 2, "-o", tmp_path / "file", *OPTIONS)
    assert code == 1 and "is a file" in err

    broken = tmp_path / "broken.png"
    broken.write_text("not a PNG")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / 'b.jpg'}\n{broken}\n")
    code, _, err = run_cli(capsys, "cluster", listing, "-k", 2, "-o", out, *OPTIONS)
    assert code == 1 and "more clusters than there are readable images (1)" in err
    assert f"1 of 2 images could not be read and are left out of the clusters: {broken}" in err

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    code, _, err = run_cli(capsys, "cluster", colour_images, "-k", 2, "-o", out, *OPTIONS)
    assert code == 1 and 'pip install "skptm[plot]"' in err
    assert not out.exists()


def test_cluster_offline(folder, tmp_path):
    """--if-offline fail: the weights paragraph, exit 1; random-weights: a
    notice, then the outputs, on random weights and labelled so."""
    env = quiet_env(**NO_NETWORK, KERAS_HOME=str(tmp_path / "keras_home"))
    script = """if True:
        import sys
        from skptm.cli import main
        options = ["-k", "2", "-b", "mobilenet_v2", "-s", "96", "-q"]
        fail = main(["cluster", sys.argv[1], "-o", sys.argv[2], *options])
        print("END OF FAIL", file=sys.stderr)
        fallback = main(["cluster", sys.argv[1], "-o", sys.argv[3], *options, "--if-offline", "random-weights"])
        print("CODES", fail, fallback)
    """
    failed, fell_back = tmp_path / "failed", tmp_path / "fell_back"
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(failed), str(fell_back)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert "CODES 1 0" in out.stdout, out.stdout + out.stderr
    fail, fallback = out.stderr.split("END OF FAIL\n")
    message = fail.strip().split("\n")[-1]
    assert message.startswith("skptm cluster: error: Could not get the ImageNet weights of 'mobilenet_v2'")
    assert "offline" in message and "skptm fetch-weights NAME" in message
    assert not failed.exists()

    notice = [line for line in fallback.splitlines() if line.startswith("skptm cluster: notice:")]
    assert len(notice) == 2, fallback
    assert "Could not get the ImageNet weights of 'mobilenet_v2'" in notice[0]
    assert "KERAS_HOME" in notice[0] and "skptm fetch-weights NAME" in notice[0]
    assert "falling back to random weights" in notice[1] and "not what the images show" in notice[1]
    assert "random weights \N{EM DASH} not image content" in out.stdout
    assert {p.name for p in fell_back.iterdir()} == {"clusters.csv", "cluster_00.png", "cluster_01.png", "overview.png"}
    assert len(read_csv(fell_back / "clusters.csv")) == 3
    assert "Traceback" not in out.stderr
    assert_no_chatter(out.stderr)


# -- train and predict ------------------------------------------------------------------


def write_classes(root, counts):
    """A folder of class sub-folders of small images, one colour per class."""
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    rng = np.random.default_rng(1)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            image = np.clip(np.array(colours[name]) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(root / name / (f"{i}.png" if i % 2 else f"{i}.jpg"))
    return root


TRAIN = ["-b", LIGHT, "-w", "none", "-s", "32", "--unfreeze", "2", "--finetune-epochs", "1", "-q"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``skptm train`` on 2 classes x 6 images: (class folder, model, exit code, stdout)."""
    import contextlib
    import io

    root = write_classes(tmp_path_factory.mktemp("cli_classes"), {"red": 6, "blue": 6})
    model = root.parent / "model.skops"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["train", str(root), "-o", str(model), *TRAIN])
    assert code == 0, stderr.getvalue()
    return root, model, stdout.getvalue()


def test_train(trained, capsys):
    pytest.importorskip("skops")
    import skptm

    root, model, out = trained
    lines = out.splitlines()
    assert lines[0].split() == ["class", "images", "train", "test"]
    assert lines[1].split()[:2] == ["blue", "6"] and lines[2].split()[:2] == ["red", "6"]  # sorted
    assert sum(int(line.split()[3]) for line in lines[1:3]) == 3  # 0.2 of 12, rounded up
    accuracy = next(line for line in lines if line.startswith("accuracy"))
    assert float(accuracy.split()[1]) >= 0.9  # red against blue: easy even on random weights
    assert "balanced accuracy" in out and "precision" in out and str(model) in out
    clf = skptm.load(model)
    assert isinstance(clf, skptm.FineTunedClassifier) and list(clf.classes_) == ["blue", "red"]

    before = model.read_bytes()
    code, _, err = run_cli(capsys, "train", root, "-o", model, *TRAIN)
    assert code == 1 and "exists; pass --force" in err and model.read_bytes() == before


def test_train_force_and_user_errors(trained, tmp_path, capsys, monkeypatch):
    root, model, _ = trained
    copy = tmp_path / "model.skops"
    copy.write_bytes(model.read_bytes())
    code, out, err = run_cli(capsys, "train", root, "-o", copy, *TRAIN[:6], "--unfreeze", "0", "--force", "-q")
    assert code == 0 and "accuracy" in out, err

    small = write_classes(tmp_path / "small", {"red": 4, "green": 1})
    code, _, err = run_cli(capsys, "train", small, "-o", tmp_path / "m.skops", *TRAIN)
    assert code == 1 and "class 'green' has 1 image" in err and "Traceback" not in err
    single = write_classes(tmp_path / "single", {"red": 4})
    code, _, err = run_cli(capsys, "train", single, "-o", tmp_path / "m.skops", *TRAIN)
    assert code == 1 and "at least 2 class sub-folders" in err
    code, _, err = run_cli(capsys, "train", tmp_path / "missing", "-o", tmp_path / "m.skops", *TRAIN)
    assert code == 1 and "is not a folder" in err

    monkeypatch.setitem(sys.modules, "skops", None)  # as if it were not installed
    for command in (["train", root, "-o", tmp_path / "m.skops", *TRAIN], ["predict", model, root, "-o", "p.csv"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1 and 'pip install "skptm[skops]"' in err
    assert not (tmp_path / "m.skops").exists()


def test_train_with_an_unreadable_image(tmp_path, capsys):
    """In the held-out split, it is named and left out of the scores, and the
    model is saved; in the training split, the error names its path."""
    pytest.importorskip("skops")
    from skptm._finetuned_base import holdout_split
    from skptm.datasets import load_image_folder

    root = write_classes(tmp_path / "classes", {"red": 6, "blue": 6})
    broken = root / "red" / "broken.jpg"
    broken.write_text("this is text, not a JPEG")

    def split_of(seed):
        data = load_image_folder(root, random_state=seed)
        y = np.asarray(data.target_names)[data.target]
        train, test = holdout_split(len(y), 0.2, seed, stratify=y)
        return "test" if str(broken) in set(data.paths[test]) else "train"

    seeds = {split_of(seed): seed for seed in range(40)}
    code, out, err = run_cli(capsys, "train", root, "-o", tmp_path / "m.skops", *TRAIN, "--seed", seeds["test"])
    assert code == 0, err
    assert "1 of 3 held-out images could not be read and are not scored" in err and str(broken) in err
    assert "held-out test split (2 images" in out and (tmp_path / "m.skops").is_file()
    code, _, err = run_cli(capsys, "train", root, "-o", tmp_path / "n.skops", *TRAIN, "--seed", seeds["train"])
    assert code == 1 and str(broken) in err and "training cannot use an unreadable image" in err
    assert "on_error" not in err and "Traceback" not in err and not (tmp_path / "n.skops").exists()


def test_predict(trained, tmp_path, capsys):
    pytest.importorskip("skops")
    root, model, _ = trained
    broken = tmp_path / "broken.jpg"
    broken.write_text("this is text, not a JPEG")
    images = [str(p) for p in sorted(root.rglob("*.*"))]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([*images, str(broken)]) + "\n")
    out = tmp_path / "predictions.csv"

    code, _, err = run_cli(capsys, "predict", model, listing, "-o", out, "--on-error", "raise", "-q")
    assert code == 1 and str(broken) in err and "--on-error nan" in err and "Traceback" not in err

    code, _, err = run_cli(capsys, "predict", model, listing, "-o", out, "--on-error", "nan", "--batch-size", 4)
    assert code == 0, err
    assert f"1 of {len(images) + 1} images could not be read" in err and str(broken) in err
    rows = read_csv(out)
    assert list(rows[0]) == ["path", "label", "proba_blue", "proba_red"]
    assert [row["path"] for row in rows] == [*images, str(broken)]
    proba = np.array([[float(row["proba_blue"]), float(row["proba_red"])] for row in rows])
    np.testing.assert_allclose(proba[:-1].sum(axis=1), 1, atol=1e-6)
    assert {row["label"] for row in rows[:-1]} <= {"blue", "red"}
    assert rows[-1]["label"] == "" and np.isnan(proba[-1]).all()


def test_predict_with_a_saved_pipeline_and_refusing_a_model_of_tables(trained, tmp_path, capsys):
    """A Pipeline that starts with the transformer takes the command's options
    (--on-error, --batch-size); a classifier of tables is refused by name."""
    pytest.importorskip("skops")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    import skptm

    root, _, _ = trained
    images = sorted(str(p) for p in root.rglob("*.*"))
    labels = [Path(p).parent.name for p in images]
    pipe = make_pipeline(PretrainedFeatureTransformer(LIGHT, weights=None, input_size=32), LogisticRegression())
    skptm.save(pipe.fit(images, labels), tmp_path / "pipe.skops")
    broken = tmp_path / "broken.jpg"
    broken.write_text("this is text, not a JPEG")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([*images, str(broken)]) + "\n")
    out = tmp_path / "p.csv"
    code, _, err = run_cli(capsys, "predict", tmp_path / "pipe.skops", listing, "-o", out, "--batch-size", 3, "-q")
    assert code == 0, err
    assert f"1 of {len(images) + 1} images could not be read" in err and read_csv(out)[-1]["label"] == ""

    table = LogisticRegression().fit(np.arange(8.0).reshape(4, 2), [0, 1, 0, 1])
    skptm.save(table, tmp_path / "table.skops")
    code, _, err = run_cli(capsys, "predict", tmp_path / "table.skops", listing, "-o", out, "-q")
    assert code == 1 and "does not take images" in err and "Traceback" not in err


def test_predict_bad_model(folder, tmp_path, capsys):
    pytest.importorskip("skops")
    garbage = tmp_path / "model.skops"
    garbage.write_text("not a model")
    code, _, err = run_cli(capsys, "predict", garbage, folder, "-o", tmp_path / "p.csv")
    assert code == 1 and "cannot load a model from" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "predict", tmp_path / "missing.skops", folder, "-o", tmp_path / "p.csv")
    assert code == 1 and "No such model file" in err and "missing.skops" in err
    assert not (tmp_path / "p.csv").exists()


# -- calibrate and cache ----------------------------------------------------------------


def test_calibrate_measures_once(tmp_path, capsys, monkeypatch):
    """One line per network; a second run reads the stored measurement and measures nothing."""
    from skptm.engines import calibration
    from skptm.engines.decision import best_measured

    monkeypatch.setenv("SKPTM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibration, "ROUNDS", 2)  # what is printed does not depend on how long it measured
    monkeypatch.setattr(calibration, "ROUND_SECONDS", 0.05)
    calibrate = ["calibrate", LIGHT, "--weights", "none", "--input-size", "32", "-q"]
    code, out, err = run_cli(capsys, *calibrate)
    assert code == 0, err
    (stored,) = tmp_path.glob("calibration/*/*.json")
    entry = json.loads(stored.read_text())
    (line,) = out.splitlines()
    assert line.startswith(f"{LIGHT} 32x32 (measured {entry['measured_at']}): ")
    for config, rate in entry["rates"].items():
        low_high = f"({rate['low']:.0f}\N{EN DASH}{rate['high']:.0f})"
        assert f"{config} {rate['median']:.0f} images/s {low_high} cosine {entry['cosine'][config]:.6f}" in line
    for engine, seconds in entry["conversion_seconds"].items():
        assert f"{engine} {seconds:.1f} s" in line
    for precision in ("float32", "auto"):
        choice = best_measured(entry, "auto", precision)
        assert f"{choice.label} for precision={precision} ({choice.reason})" in line

    before = (stored.read_bytes(), stored.stat().st_mtime_ns)
    code, again, err = run_cli(capsys, *calibrate)
    assert code == 0 and again == out, err
    assert (stored.read_bytes(), stored.stat().st_mtime_ns) == before
    assert list(tmp_path.glob("calibration/*/*.json")) == [stored]

    assert run_cli(capsys, "calibrate", "--weights", "none")[0] == 2  # neither names nor --all
    code, _, err = run_cli(capsys, "calibrate", "resnet_50x")
    assert code == 1 and "Did you mean 'resnet50'" in err


def test_cache_sizes_and_clear(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SKPTM_CACHE_DIR", str(tmp_path))
    (tmp_path / "calibration" / "machine").mkdir(parents=True)
    (tmp_path / "calibration" / "machine" / "net.json").write_bytes(b"x" * 3072)
    (tmp_path / "openvino").mkdir()
    (tmp_path / "openvino" / "model.bin").write_bytes(b"x" * 10)

    def sizes():
        code, out, _ = run_cli(capsys, "cache")
        lines = out.splitlines()
        assert code == 0 and lines[0] == f"skptm's disk caches in {tmp_path}:"
        assert lines[1].split() == ["folder", "size", "limit", "holds"]
        return {line.split()[0]: " ".join(line.split()[1:3]) for line in lines[3:]}

    assert sizes() == {"openvino": "10 B", "calibration": "3.0 KiB"}
    code, out, _ = run_cli(capsys, "cache", "--clear", "calibration")
    assert code == 0 and out == "freed 3.0 KiB (calibration)\n"
    assert not (tmp_path / "calibration").exists() and (tmp_path / "openvino" / "model.bin").exists()
    code, out, _ = run_cli(capsys, "cache", "--clear")
    assert code == 0 and out == "freed 10 B (openvino, calibration)\n"
    assert sizes() == {"openvino": "0 B", "calibration": "0 B"}
    assert not (tmp_path / "openvino").exists()
    assert run_cli(capsys, "cache", "--clear", "features")[0] == 2


@pytest.mark.skipif(sys.platform == "win32", reason="file names are text on Windows")
def test_a_file_name_that_is_not_utf8_is_named_before_any_work(tmp_path, capsys):
    folder = tmp_path / "latin"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "ok.png")
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes on a UTF-8 file system
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(os.path.join(os.fsdecode(bytes(folder)), name))
    code, _, err = run_cli(capsys, "embed", folder, "-o", tmp_path / "f.npy", *TRAIN[:6])
    assert code == 1 and "1 file name is not valid UTF-8" in err and "caf\ufffd.png" in err
    assert "Rename it" in err and not (tmp_path / "f.npy").exists()


def test_a_file_name_with_a_line_break_is_named_before_any_work(tmp_path, capsys):
    """The .npy output's path list has one path a line: such a name would
    shift every row after it."""
    folder = tmp_path / "names"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "ok.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "two\nlines.png")
    code, _, err = run_cli(capsys, "embed", folder, "-o", tmp_path / "f.npy", *TRAIN[:6])
    assert code == 1 and "1 file name holds a line break" in err and "two\\nlines.png" in err
    assert not (tmp_path / "f.npy").exists()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs a folder nobody can write in: Linux's /proc")
@pytest.mark.parametrize("command", ["embed", "train", "cluster"])
def test_an_output_that_cannot_be_written_is_said_before_any_work(folder, tmp_path, capsys, command):
    """/proc takes no new file, even from root (whom permissions do not stop):
    the command says so at once, not after computing everything."""
    output = {"embed": "/proc/features.npy", "train": "/proc/model.skops", "cluster": "/proc/clusters"}[command]
    arguments = {"embed": OPTIONS, "train": TRAIN, "cluster": ["-k", "2", *OPTIONS]}[command]
    if command == "train":
        pytest.importorskip("skops")
    if command == "cluster":
        pytest.importorskip("matplotlib")
    code, _, err = run_cli(capsys, command, folder, "-o", output, *arguments)
    assert code == 1 and "Cannot write in the folder '/proc'" in err, err


def test_a_missing_optional_extra_is_one_line_not_a_traceback(folder, tmp_path):
    script = (
        "import sys; sys.modules['openvino'] = None\n"  # as if it were not installed
        "from skptm.cli import main\n"
        f"sys.exit(main(['embed', {str(folder)!r}, '-o', {str(tmp_path / 'f.npy')!r}, "
        f"*{[str(a) for a in OPTIONS]!r}, '--engine', 'openvino']))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "skptm embed: error:" in out.stderr and "pip install" in out.stderr
    assert "Traceback" not in out.stderr
