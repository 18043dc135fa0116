"""skptm._disk_caches: the size of skptm's own disk caches, and clearing them.

Tested, with ``$SKPTM_CACHE_DIR`` pointed at a folder under ``tmp_path``
holding files of known sizes (nested too):

- :func:`~skptm.disk_cache_usage` reports the root, the bytes of ``openvino/``
  and ``calibration/`` (nothing else under the root), what each holds, and
  the OpenVINO bound (its default, and ``$SKPTM_OPENVINO_CACHE_MB``); it
  creates nothing;
- :func:`~skptm.clear_disk_caches` deletes the named folders only (or both),
  returns the bytes freed, leaves the rest of the root alone, refuses an
  unknown name before deleting anything, and returns 0 for a missing folder.
"""

import os
import sys

import pytest

from skptm import clear_disk_caches, disk_cache_usage
from skptm._disk_caches import FOLDERS

MB = 2**20

#: Files (relative to the cache root) and their sizes in bytes.
OPENVINO_FILES = {
    "openvino/model_a.xml": 1_234,
    "openvino/model_a.bin": 40_000,
    "openvino/compiled/blob_1": 5_555,
    "openvino/compiled/deeper/still/blob_2": 321,
    "openvino/empty": 0,
}
CALIBRATION_FILES = {
    "calibration/engines.json": 777,
    "calibration/precision/mobilenet_v2.json": 2_048,
}
#: Files under the root that are not skptm's own caches: never counted nor cleared.
OTHER_FILES = {
    "features/user_cache.npy": 9_999,
    "loose.txt": 13,
}


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty (not yet created) cache root, and no OpenVINO bound set."""
    folder = tmp_path / "skptm-cache"
    monkeypatch.setenv("SKPTM_CACHE_DIR", str(folder))
    monkeypatch.delenv("SKPTM_OPENVINO_CACHE_MB", raising=False)
    return folder


def _fill(root, files):
    for name, size in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def _snapshot(root, files):
    return {name: (root / name).read_bytes() for name in files}


@pytest.fixture
def filled(root):
    _fill(root, {**OPENVINO_FILES, **CALIBRATION_FILES, **OTHER_FILES})
    return root


# --- disk_cache_usage ----------------------------------------------------------------------------


def test_usage_reports_the_root_and_each_folders_bytes(filled):
    usage = disk_cache_usage()
    assert usage["root"] == str(filled)
    assert sorted(usage["folders"]) == ["calibration", "openvino"]
    assert usage["folders"]["openvino"]["bytes"] == sum(OPENVINO_FILES.values()) == 47_110
    assert usage["folders"]["calibration"]["bytes"] == sum(CALIBRATION_FILES.values()) == 2_825


def test_usage_says_what_each_folder_holds(root):
    folders = disk_cache_usage()["folders"]
    assert {name: entry["holds"] for name, entry in folders.items()} == FOLDERS
    assert all(entry["holds"] for entry in folders.values())


def test_usage_follows_new_files(filled):
    before = disk_cache_usage()["folders"]["calibration"]["bytes"]
    _fill(filled, {"calibration/new/deep/file": 1_000})
    assert disk_cache_usage()["folders"]["calibration"]["bytes"] == before + 1_000


def test_usage_of_a_missing_root_is_zero_and_creates_nothing(root):
    usage = disk_cache_usage()
    assert usage["root"] == str(root)
    assert [entry["bytes"] for entry in usage["folders"].values()] == [0, 0]
    assert not root.exists()


def test_usage_root_falls_back_to_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SKPTM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _fill(tmp_path / "xdg" / "skptm", {"openvino/m.bin": 300})
    usage = disk_cache_usage()
    assert usage["root"] == str(tmp_path / "xdg" / "skptm")
    assert usage["folders"]["openvino"]["bytes"] == 300


def test_openvino_limit_defaults_to_2048_megabytes_and_calibration_has_none(root):
    folders = disk_cache_usage()["folders"]
    assert folders["openvino"]["limit_bytes"] == 2048 * MB
    assert folders["calibration"]["limit_bytes"] is None


@pytest.mark.parametrize(("value", "expected"), [("100", 100 * MB), ("1.5", 1_572_864), ("0", 0)])
def test_openvino_limit_follows_its_environment_variable(root, monkeypatch, value, expected):
    monkeypatch.setenv("SKPTM_OPENVINO_CACHE_MB", value)
    folders = disk_cache_usage()["folders"]
    assert folders["openvino"]["limit_bytes"] == expected
    assert folders["calibration"]["limit_bytes"] is None


@pytest.mark.parametrize("value", ["", "lots"])
def test_openvino_limit_ignores_an_empty_or_unreadable_value(root, monkeypatch, value):
    monkeypatch.setenv("SKPTM_OPENVINO_CACHE_MB", value)
    assert disk_cache_usage()["folders"]["openvino"]["limit_bytes"] == 2048 * MB


def test_usage_does_not_import_tensorflow_or_openvino(filled):
    if any(module in sys.modules for module in ("tensorflow", "openvino")):
        pytest.skip("another test in this process imported them already")
    disk_cache_usage()
    assert "tensorflow" not in sys.modules
    assert "openvino" not in sys.modules


# --- clear_disk_caches ---------------------------------------------------------------------------


def test_clearing_calibration_frees_its_bytes_and_leaves_openvino_intact(filled):
    kept = _snapshot(filled, {**OPENVINO_FILES, **OTHER_FILES})
    assert clear_disk_caches(["calibration"]) == sum(CALIBRATION_FILES.values())
    assert not (filled / "calibration").exists()
    assert _snapshot(filled, {**OPENVINO_FILES, **OTHER_FILES}) == kept
    folders = disk_cache_usage()["folders"]
    assert folders["calibration"]["bytes"] == 0
    assert folders["openvino"]["bytes"] == sum(OPENVINO_FILES.values())


def test_clearing_openvino_frees_its_bytes_and_leaves_calibration_intact(filled):
    kept = _snapshot(filled, {**CALIBRATION_FILES, **OTHER_FILES})
    assert clear_disk_caches(["openvino"]) == sum(OPENVINO_FILES.values())
    assert not (filled / "openvino").exists()
    assert _snapshot(filled, {**CALIBRATION_FILES, **OTHER_FILES}) == kept


def test_clearing_all_returns_the_sum_and_leaves_other_files(filled):
    kept = _snapshot(filled, OTHER_FILES)
    assert clear_disk_caches() == sum(OPENVINO_FILES.values()) + sum(CALIBRATION_FILES.values())
    assert sorted(p.name for p in filled.iterdir()) == ["features", "loose.txt"]
    assert _snapshot(filled, OTHER_FILES) == kept
    assert [entry["bytes"] for entry in disk_cache_usage()["folders"].values()] == [0, 0]


def test_clearing_both_by_name_equals_clearing_all(filled):
    assert clear_disk_caches(("openvino", "calibration")) == 47_110 + 2_825
    assert not (filled / "openvino").exists() and not (filled / "calibration").exists()


def test_clearing_twice_frees_nothing_the_second_time(filled):
    assert clear_disk_caches() > 0
    assert clear_disk_caches() == 0


def test_unknown_folder_raises_naming_it_before_deleting_anything(filled):
    kept = _snapshot(filled, {**OPENVINO_FILES, **CALIBRATION_FILES, **OTHER_FILES})
    # "openvino" comes first: an implementation deleting as it validates would clear it.
    with pytest.raises(ValueError, match="features") as raised:
        clear_disk_caches(["openvino", "features"])
    assert "openvino" not in str(raised.value).split(";")[0]  # only the unknown name is blamed
    assert _snapshot(filled, {**OPENVINO_FILES, **CALIBRATION_FILES, **OTHER_FILES}) == kept


def test_unknown_folder_error_lists_the_known_ones(root):
    with pytest.raises(ValueError, match=r"nonsense.*'calibration', 'openvino'"):
        clear_disk_caches(["nonsense"])


def test_clearing_a_missing_folder_returns_zero(root):
    _fill(root, CALIBRATION_FILES)
    assert clear_disk_caches(["openvino"]) == 0
    assert disk_cache_usage()["folders"]["calibration"]["bytes"] == sum(CALIBRATION_FILES.values())


def test_clearing_a_missing_root_returns_zero_and_creates_nothing(root):
    assert clear_disk_caches() == 0
    assert not root.exists()


def test_clearing_an_empty_list_deletes_nothing(filled):
    assert clear_disk_caches([]) == 0
    assert disk_cache_usage()["folders"]["openvino"]["bytes"] == sum(OPENVINO_FILES.values())


def test_a_single_name_may_be_given_as_a_string(filled):
    calibration = disk_cache_usage()["folders"]["calibration"]["bytes"]
    assert clear_disk_caches("calibration") == calibration
    assert disk_cache_usage()["folders"]["openvino"]["bytes"] > 0
