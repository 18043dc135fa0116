"""``skptm cache``: how much skptm keeps on disk on its own, and clearing it
(:func:`skptm.disk_cache_usage`, :func:`skptm.clear_disk_caches`)."""

from __future__ import annotations

from .._disk_caches import FOLDERS, clear_disk_caches, disk_cache_usage
from ._common import print_table


def add_parser(subparsers):
    """Add ``cache`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "cache",
        help="show or clear skptm's disk caches",
        description="Show the folders skptm fills on its own under its cache directory "
        "($SKPTM_CACHE_DIR, else $XDG_CACHE_HOME/skptm, else ~/.cache/skptm), and their sizes; "
        "--clear deletes them (always safe: what they hold is made again when needed).",
    )
    command.add_argument(
        "--clear",
        nargs="?",
        const=tuple(FOLDERS),
        choices=tuple(FOLDERS),
        metavar="FOLDER",
        help=f"delete one folder ({' or '.join(FOLDERS)}), or both without a name",
    )
    return command


def run(args, parser):
    """Print the caches' sizes, or clear them and print what was freed."""
    if args.clear is not None:
        folders = [args.clear] if isinstance(args.clear, str) else list(args.clear)
        freed = clear_disk_caches(folders)
        print(f"freed {human_size(freed)} ({', '.join(folders)})")
        return 0
    usage = disk_cache_usage()
    print(f"skptm's disk caches in {usage['root']}:")
    rows = [
        (
            name,
            human_size(folder["bytes"]),
            "-" if folder["limit_bytes"] is None else human_size(folder["limit_bytes"]),
            folder["holds"],
        )
        for name, folder in usage["folders"].items()
    ]
    print_table(("folder", "size", "limit", "holds"), rows, right=(1, 2))
    return 0


def human_size(n_bytes):
    """``n_bytes`` in B, KiB, MiB or GiB.

    Examples
    --------
    >>> human_size(0), human_size(1536), human_size(5 * 2**30)
    ('0 B', '1.5 KiB', '5.0 GiB')
    """
    size, unit = float(n_bytes), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            break
        size /= 1024
    return f"{n_bytes} B" if unit == "B" else f"{size:.1f} {unit}"
