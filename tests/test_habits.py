"""The habits the code keeps: ruff's lint and format, and the import layers.

Run here so that the README's test command (and CI) fails on a violation;
`.pre-commit-config.yaml` runs the same checks before each commit.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*command):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def tool(name):
    """The tool installed beside this Python (the test extra installs both)."""
    path = Path(sys.executable).with_name(name)
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_ruff_lint():
    result = run(tool("ruff"), "check", "skptm", "tests", "benchmarks", "examples", "docs/conf.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = run(tool("ruff"), "format", "--check", "skptm", "tests", "benchmarks", "examples", "docs/conf.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers():
    result = run(tool("lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
