"""``python -m skptm``: the command line (see :mod:`skptm.cli`)."""

from .cli import main

if __name__ == "__main__":  # not when pytest's doctest collection imports this file
    raise SystemExit(main())
