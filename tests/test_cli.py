"""The command line, run through ``main([...])`` in this process, plus two
subprocesses that check TensorFlow's start-up chatter stays off stderr."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skptm import PretrainedFeatureTransformer
from skptm.cli import main, paths_sidecar

from .conftest import LIGHT, pattern
from .test_offline import NO_NETWORK

OPTIONS = ["--weights", "none", "--input-size", "32", "--backbone", LIGHT, "-q"]

#: Lines TensorFlow writes to stderr as it starts, which the CLI must hide.
CHATTER = ("oneDNN custom operations", "cuda", "absl::InitializeLog", "cpu_feature_guard",
           "To enable the following instructions")


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
    assert len(lines) == 2 + 40
    assert lines[2 + 2].split() == ["resnet50", "ResNet50", "224", "caffe", "2048"]
    for command in ([], ["embed"], ["backbones"], ["fetch-weights"]):
        code, out, _ = run_cli(capsys, *command, "--help")
        assert code == 0 and "usage: skptm" in out
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
    """Both need ImageNet weights: a clear paragraph, exit code 1, no traceback."""
    env = quiet_env(**NO_NETWORK, KERAS_HOME=str(tmp_path / "keras_home"))
    script = """if True:
        import sys
        from skptm.cli import main
        print("CODES", main(["fetch-weights", "resnet50", "-q"]),
              main(["embed", sys.argv[1], "-o", sys.argv[2], "-b", "mobilenet_v2", "-s", "96", "-q"]))
    """
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path / "f.npy")],
        check=False, capture_output=True, text=True, env=env, timeout=180,
    )
    assert "CODES 1 1" in out.stdout, out.stdout + out.stderr
    fetch, embed = out.stderr.strip().split("\n")[-2:]  # one line (paragraph) each
    assert fetch.startswith("skptm fetch-weights: error: Could not get the ImageNet weights of 'resnet50'")
    assert embed.startswith("skptm embed: error: Could not get the ImageNet weights of 'mobilenet_v2'")
    for message in (fetch, embed):
        assert "offline" in message and "skptm fetch-weights NAME" in message
        assert "--weights PATH" in message
    assert "Traceback" not in out.stderr
    assert_no_chatter(out.stderr)
    assert not (tmp_path / "f.npy").exists()


def test_no_tensorflow_chatter(folder, tmp_path):
    """Two real processes without TF_CPP_MIN_LOG_LEVEL: stderr shows no start-up noise."""
    out = subprocess.run([sys.executable, "-m", "skptm", "backbones"],
                         check=False, capture_output=True, text=True, env=quiet_env(), timeout=120)
    assert out.returncode == 0 and out.stdout.count("\n") == 42 and out.stderr == ""

    script = Path(sys.executable).with_name("skptm")
    # The console script where skptm is installed, else the module.
    command = [str(script)] if script.exists() else [sys.executable, "-m", "skptm"]
    out = subprocess.run(
        [*command, "embed", str(folder), "-o", str(tmp_path / "f.npy"),
         "--weights", "none", "--input-size", "32", "--backbone", LIGHT],
        check=False, capture_output=True, text=True, env=quiet_env(), timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert np.load(tmp_path / "f.npy").shape == (3, 1280)
    assert "images/s" in out.stderr  # the progress bar is there
    assert_no_chatter(out.stderr)
