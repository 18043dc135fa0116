"""Two small helpers every on-disk store of skptm shares: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterable


@contextlib.contextmanager
def atomic_path(path, *, suffix=""):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Readers (other threads, other processes) see either the old file or the
    complete new one, never a partial write; on an exception the temporary
    file is removed and ``path`` is left as it was. ``suffix`` is kept on the
    temporary name for writers that choose a format by extension.
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    os.makedirs(folder, exist_ok=True)
    # Created by this call alone (O_EXCL), with the permissions the user's
    # umask gives an ordinary new file (mkstemp's would be owner-only).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = os.path.join(folder, f".tmp-{name}.{uuid.uuid4().hex[:12]}{suffix}")
        try:
            os.close(os.open(temporary, flags, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(data)


def content_hash(parts: Iterable, *, length: int = 32, delimited: bool = True) -> str:
    """A hex SHA-256 of ``parts``, cut to ``length``: skptm's one content hash.

    Parameters
    ----------
    parts : iterable of str, bytes or buffer
        Read one at a time, so a generator can stream a large file or a
        network's weights through it.
    length : int, default=32
        Hex digits kept (64: all of them).
    delimited : bool, default=True
        Whether each part ends with a zero byte, so that ``("ab", "c")`` and
        ``("a", "bc")`` differ; ``False`` hashes the parts as one stream (the
        chunks of one file).
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        if delimited:
            digest.update(b"\0")
    return digest.hexdigest()[:length]


def cache_root():
    """skptm's own cache folder: ``$SKPTM_CACHE_DIR``, else ``$XDG_CACHE_HOME/skptm``,
    else ``~/.cache/skptm``. Deleting it is always safe (it only costs time)."""
    from pathlib import Path

    root = os.environ.get("SKPTM_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skptm"


def folder_size(folder) -> int:
    """Bytes of the regular files under ``folder`` (0 if it does not exist)."""
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def evict_least_recently_used(groups, max_bytes: int) -> int:
    """Delete the least recently used groups of files until the rest fit in ``max_bytes``.

    ``groups`` is an iterable of lists of paths that live and die together
    (a model's ``.xml`` and ``.bin``); a group's last use is its newest
    access time, which readers set explicitly (:func:`mark_used`), so it holds
    on file systems mounted ``noatime`` too. Returns the bytes freed.
    """
    sized = []
    for paths in groups:
        size, used = 0, 0.0
        for path in paths:
            with contextlib.suppress(OSError):
                stat = os.stat(path)
                size += stat.st_size
                used = max(used, stat.st_atime, stat.st_mtime)
        sized.append((used, size, paths))
    total = sum(size for _, size, _ in sized)
    freed = 0
    for _, size, paths in sorted(sized, key=lambda entry: entry[0]):
        if total - freed <= max_bytes:
            break
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        freed += size
    return freed


def mark_used(path) -> None:
    """Set ``path``'s access time to now (its modification time is kept)."""
    import time

    with contextlib.suppress(OSError):
        os.utime(path, ns=(time.time_ns(), os.stat(path).st_mtime_ns))


def check_writable_folder(folder) -> None:
    """Raise ``PermissionError`` (an ``OSError``) naming ``folder`` unless a file
    can be created in it, or, where it does not exist yet, in the nearest folder
    above it: outputs are checked before the work that makes them, not after.

    A file is created and removed: permission bits do not stop root, and an
    immutable or read-only-mounted folder shows only when written to.
    """
    folder = os.path.abspath(os.fspath(folder))
    existing = folder
    while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".skptm-write-check-"):
            pass
    except OSError as exc:
        raise PermissionError(
            exc.errno,
            f"Cannot write in the folder {existing!r} ({exc.strerror or exc}), so the output could not be saved: "
            "choose another place, or make it writable",
        ) from None
