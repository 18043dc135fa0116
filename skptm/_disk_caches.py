"""What skptm keeps on disk on its own, how large it is, and how to clear it.

skptm fills two folders under its cache directory (:func:`skptm._io.cache_root`:
``$SKPTM_CACHE_DIR``, else ``$XDG_CACHE_HOME/skptm``, else ``~/.cache/skptm``)
without being asked: ``openvino/`` (converted models and OpenVINO's compiled
blobs, bounded, least recently used evicted first) and ``calibration/``
(this machine's engine measurements, a few kilobytes). Feature caches are
the user's own folders (``cache=``) and are not touched here.
"""

from __future__ import annotations

import shutil

from ._io import cache_root, folder_size

#: The folders skptm fills on its own, and what each holds.
FOLDERS = {
    "openvino": "models converted to OpenVINO, and OpenVINO's compiled blobs",
    "calibration": "this machine's engine and precision measurements",
}


def disk_cache_usage() -> dict:
    """The cache directory, and the bytes each of its folders holds.

    Returns
    -------
    usage : dict
        ``{"root": str, "folders": {name: {"bytes": int, "holds": str,
        "limit_bytes": int or None}}}``.

    Examples
    --------
    >>> from skptm import disk_cache_usage
    >>> sorted(disk_cache_usage()["folders"])
    ['calibration', 'openvino']
    """
    from .engines.openvino import cache_limit_bytes

    root = cache_root()
    return {
        "root": str(root),
        "folders": {
            name: {
                "bytes": folder_size(root / name),
                "holds": holds,
                "limit_bytes": cache_limit_bytes() if name == "openvino" else None,
            }
            for name, holds in FOLDERS.items()
        },
    }


def clear_disk_caches(folders=None) -> int:
    """Delete skptm's own disk caches (all, or the named ``folders``); returns bytes freed.

    Always safe: converted models are converted again, and measurements made
    again, when next needed. Measurements this process already acted on stay
    in force until it ends.

    Parameters
    ----------
    folders : str, list of {"openvino", "calibration"} or None, default=None
        ``None`` clears both.
    """
    names = list(FOLDERS) if folders is None else [folders] if isinstance(folders, str) else list(folders)
    unknown = sorted(set(names) - set(FOLDERS))
    if unknown:
        raise ValueError(f"Unknown cache folders {unknown}; skptm's are {sorted(FOLDERS)}.")
    freed = 0
    for name in names:
        folder = cache_root() / name
        before = folder_size(folder)
        shutil.rmtree(folder, ignore_errors=True)
        freed += before - folder_size(folder)  # what rmtree could not remove stays counted
    return freed
