"""skptm._io: atomic writes, content hashes, least-recently-used eviction."""

import os
import time

import pytest

from skptm._io import atomic_path, atomic_write_bytes, content_hash, evict_least_recently_used, mark_used


def test_atomic_write_replaces_whole_files_only(tmp_path):
    path = tmp_path / "sub" / "entry.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            file.write(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["entry.bin"]  # no temporary left


def test_atomic_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_content_hash_delimits_its_parts():
    assert content_hash(["ab", "c"]) != content_hash(["a", "bc"])
    assert content_hash(["a", b"b"]) == content_hash([b"a", "b"])
    assert len(content_hash(["x"], length=12)) == 12


def test_eviction_drops_the_least_recently_used_groups(tmp_path):
    groups = []
    for i in range(4):
        files = [tmp_path / f"{i}.xml", tmp_path / f"{i}.bin"]
        for file in files:
            file.write_bytes(b"x" * 100)
            os.utime(file, (1000 + i, 1000 + i))  # used in order 0, 1, 2, 3
        groups.append(files)
    mark_used(groups[0][0])  # group 0 read just now: the most recent
    assert groups[0][0].stat().st_mtime == 1000  # reading never changes the modification time
    freed = evict_least_recently_used(groups, max_bytes=450)
    assert freed == 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.bin", "0.xml", "3.bin", "3.xml"]
    assert evict_least_recently_used(groups, max_bytes=10_000) == 0
    assert time.time() - groups[0][0].stat().st_atime < 60
