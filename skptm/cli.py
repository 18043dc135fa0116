"""The ``skptm`` command line: ``embed``, ``backbones``, ``fetch-weights``.

Run ``skptm --help`` (or ``python -m skptm --help``) and ``skptm COMMAND
--help``. User errors (a missing file, a bad option, unreadable images with
``--on-error raise``, ImageNet weights that cannot be had offline) end with a
message on stderr and exit code 1 (2 for usage errors, as argparse does);
anything unexpected still shows its traceback.

TensorFlow's start-up chatter (oneDNN, CUDA probing, CPU instruction notes)
is kept off the terminal by :func:`main` alone, when it runs: importing
:mod:`skptm` or this module changes nothing in the process.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

#: File suffixes ``embed`` collects from a folder (compared in lower case).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

#: Output formats of ``embed``, by suffix.
OUTPUT_SUFFIXES = (".npy", ".csv", ".parquet")

#: Lines TensorFlow's C++ side writes to stderr while it starts: absl's
#: preamble, info and warning log lines, and CUDA probing on machines without
#: a GPU. Anything else written while TensorFlow starts is passed through.
_CHATTER = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} "
    r"|E\d{4} .*(cuInit|cuda|CUDA|cuDNN|cuFFT|cuBLAS|Unable to register)"
    r"|To enable the following instructions"
    r"|This TensorFlow binary is optimized)"
)

_EPILOG = "Run 'skptm COMMAND --help' for a command's options."


class UserError(Exception):
    """An error the user can fix: printed without a traceback, exit code 1."""


# -- entry point ------------------------------------------------------------------------


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    code : int
        The exit status: 0 on success, 1 for a user error (message on
        stderr), 2 for a usage error.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args, parser)
    except SystemExit as exc:  # a usage error found after parsing
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("skptm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. 'skptm backbones | head'
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 1
    except (UserError, ValueError, TypeError, OSError) as exc:
        if not _is_user_error(exc):
            raise
        print(f"skptm {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 1


def _is_user_error(exc):
    if isinstance(exc, (UserError, ValueError, FileNotFoundError, PermissionError,
                        IsADirectoryError, NotADirectoryError)):
        return True
    networks = sys.modules.get("skptm._networks")  # only raised once it is imported
    if networks is not None and isinstance(exc, networks.WeightsUnavailableError):
        return True
    from sklearn.utils._param_validation import InvalidParameterError

    return isinstance(exc, InvalidParameterError)


def _message(exc):
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    message = str(exc)
    if type(exc).__name__ == "ImageReadError":
        message += " (On the command line: --on-error nan.)"
    networks = sys.modules.get("skptm._networks")
    if networks is not None and isinstance(exc, networks.WeightsUnavailableError):
        message = message.rstrip()
        message += ("" if message.endswith(".") else ".") + (
            " On the command line: 'skptm fetch-weights NAME' fills the cache on a machine "
            "with internet access; '--weights PATH' uses a weights file of your own; "
            "'--weights none' uses random weights."
        )
    return message


# -- TensorFlow start-up -----------------------------------------------------------------


def _start_tensorflow():
    """Import TensorFlow and Keras with their start-up chatter filtered out.

    TensorFlow's C++ libraries write to file descriptor 2 while they load,
    before Python's logging or ``TF_CPP_MIN_LOG_LEVEL`` can act on all of it.
    This runs only inside :func:`main`: it redirects descriptor 2 to a file
    while TensorFlow starts, then writes every line that is not known chatter
    back to stderr. ``TF_CPP_MIN_LOG_LEVEL`` (default here ``2``) keeps later
    info and warning lines quiet; set it to ``0`` to see everything.
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    if level == "0":
        import keras
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    import tempfile

    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as captured:
        saved = os.dup(2)
        try:
            os.dup2(captured.fileno(), 2)
            try:
                import keras  # noqa: F401
                import tensorflow as tf

                tf.config.list_physical_devices()  # probes CUDA now, not mid-progress-bar
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", "replace")
    kept = [line for line in text.splitlines() if line.strip() and not _CHATTER.match(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


# -- embed ------------------------------------------------------------------------------


def _embed(args, parser):
    output = Path(args.output)
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        parser.error_in(
            "embed",
            f"cannot write {str(output)!r}: the output's suffix must be one of "
            f"{', '.join(OUTPUT_SUFFIXES)}.",
        )
    if suffix == ".parquet":
        _check_parquet()
    if not output.parent.is_dir():
        raise UserError(f"the output's folder does not exist: {str(output.parent)!r}")
    paths = collect_images(args.source)
    if not paths:
        print(
            f"skptm embed: error: no images found in {args.source!r} (looked for "
            f"{', '.join(sorted(IMAGE_SUFFIXES))} files"
            + (", recursively)." if Path(args.source).is_dir() else ", one path per line)."),
            file=sys.stderr,
        )
        return 2

    _start_tensorflow()
    import warnings

    import numpy as np

    from . import ImageReadWarning, PretrainedFeatureTransformer

    transformer = PretrainedFeatureTransformer(
        backbone=args.backbone,
        weights=args.weights,
        input_size=args.input_size,
        pooling=None if args.pooling == "none" else args.pooling,
        layer=args.layer,
        resize=args.resize,
        batch_size=args.batch_size,
        precision=args.precision,
        cache=args.cache,
        n_jobs=args.n_jobs,
        on_error=args.on_error,
        verbose=0 if args.quiet else 1,
    )
    items = [str(path) for path in paths]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ImageReadWarning)
        features = transformer.transform(items)
    for w in caught:
        if not issubclass(w.category, ImageReadWarning):  # others as they were
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    names = [str(name) for name in transformer.get_feature_names_out()]
    failed = [item for item, row in zip(items, np.isnan(features).all(axis=1)) if row]
    _write(output, suffix, items, names, features)
    if failed:
        shown = ", ".join(failed[:5]) + (f", and {len(failed) - 5} more" if len(failed) > 5 else "")
        print(
            f"skptm embed: {len(failed)} of {len(items)} images could not be read; their rows "
            f"are NaN: {shown}",
            file=sys.stderr,
        )
    if not args.quiet:
        print(f"skptm embed: wrote {len(items)} x {features.shape[1]} features to {output}",
              file=sys.stderr)
    return 0


def collect_images(source):
    """The image paths ``embed`` reads from ``source``.

    A folder is searched recursively for files with an image suffix, in
    sorted order; any other file is read as a list of paths, one a line
    (blank lines and lines starting with ``#`` skipped, relative paths taken
    from the list's own folder).
    """
    source = Path(source)
    if source.is_dir():
        return sorted(
            path for path in source.rglob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        )
    if not source.exists():
        raise FileNotFoundError(2, "No such file or folder", str(source))
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(
            f"{str(source)!r} is neither a folder nor a text file of image paths."
        ) from None
    paths = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        paths.append(path if path.is_absolute() else source.parent / path)
    return paths


def _check_parquet():
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"writing .parquet needs pandas and pyarrow ({exc.name} is missing): "
            "pip install pandas pyarrow, or write .npy or .csv instead."
        ) from None


def _write(output, suffix, items, names, features):
    if suffix == ".npy":
        import numpy as np

        np.save(output, features)
        sidecar = paths_sidecar(output)
        sidecar.write_text("".join(f"{item}\n" for item in items), encoding="utf-8")
    elif suffix == ".csv":
        import csv

        with open(output, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", *names])
            for item, row in zip(items, features):
                writer.writerow([item, *(f"{value:.9g}" for value in row)])
    else:
        import pandas as pd

        frame = pd.DataFrame(features, columns=names)
        frame.insert(0, "path", items)
        frame.to_parquet(output, index=False)


def paths_sidecar(output):
    """The text file next to an ``.npy`` output naming its rows' images:
    ``features.npy`` -> ``features.paths.txt``."""
    output = Path(output)
    return output.with_name(output.stem + ".paths.txt")


# -- backbones ----------------------------------------------------------------------------


def _backbones(args, parser):
    from ._backbones import list_backbones

    header = ("name", "keras name", "input size", "preprocessing", "features")
    rows = [
        (b["name"], b["keras_name"], str(b["input_size"]), b["preprocessing"], str(b["feature_size"]))
        for b in list_backbones()
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    right = (False, False, True, False, True)

    def line(row):
        cells = [cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(row, widths, right)]
        return "  ".join(cells).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    return 0


# -- fetch-weights ------------------------------------------------------------------------


def _fetch_weights(args, parser):
    if bool(args.names) == args.all:
        parser.error_in("fetch-weights", "give backbone names, or --all (not both).")
    from ._backbones import get_backbone_spec

    for name in args.names:  # checked before TensorFlow starts
        get_backbone_spec(name)
    _start_tensorflow()
    from ._networks import fetch_weights

    folder = fetch_weights(None if args.all else args.names, verbose=0 if args.quiet else 1)
    print(folder)
    return 0


# -- parser -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error_in(self, command, message):
        """A usage error of subcommand ``command``: message, exit code 2."""
        self._subparsers_by_name[command].error(message)


def _weights(value):
    return None if value.lower() == "none" else value


def _input_size(value):
    parts = re.split(r"[x,]", value.lower())
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 224 or 224x192 (height x width), got {value!r}"
        ) from None
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 224 or 224x192 (height x width), got {value!r}"
        )
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def _positive_int(value):
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _parser():
    from . import __version__

    parser = _Parser(
        prog="skptm",
        description="Pretrained Keras image networks from the command line.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"skptm {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser._subparsers_by_name = {}

    embed = commands.add_parser(
        "embed",
        help="compute a feature vector for every image",
        description=(
            "Compute one feature vector per image with a pretrained network and write "
            "them, one row per image, with its path. A .npy output holds the features "
            "only; their images' paths go, one a line in the same order, to a text file "
            "beside it (features.npy -> features.paths.txt). A .csv output has a 'path' "
            "column, then one column per feature; .parquet the same (needs pandas and "
            "pyarrow)."
        ),
    )
    embed.add_argument(
        "source", metavar="SRC",
        help="a folder (searched recursively for .jpg .jpeg .png .bmp .gif .tif .tiff .webp "
             "files) or a text file of image paths, one a line (blank lines and # comments "
             "skipped; relative paths are taken from the text file's folder)",
    )
    embed.add_argument("-o", "--output", metavar="OUT", required=True,
                       help="where to write: a .npy, .csv or .parquet file")
    embed.add_argument("-b", "--backbone", default="resnet50",
                       help="network name, see 'skptm backbones' (default: resnet50)")
    embed.add_argument("-w", "--weights", type=_weights, default="imagenet",
                       help="'imagenet' (default), 'none' for random weights, or the path "
                            "of a weights file of the same architecture without its top")
    embed.add_argument("-s", "--input-size", type=_input_size, default=None, metavar="SIZE",
                       help="resize images to SIZE (224, or 224x192 for height x width); "
                            "default: the network's own size")
    embed.add_argument("--pooling", choices=["avg", "max", "none"], default="avg",
                       help="how a feature map becomes a vector (default: avg; none flattens)")
    embed.add_argument("--layer", action="append", default=None, metavar="NAME",
                       help="extract from this inner layer instead of the top; repeat to "
                            "concatenate several")
    embed.add_argument("--resize", choices=["stretch", "center_crop", "pad"], default="stretch",
                       help="how images reach the input size (default: stretch)")
    embed.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                       help="images per batch (default: 32)")
    embed.add_argument("--precision", choices=["float32", "bfloat16", "float16", "auto"],
                       default="float32", help="what the network computes in (default: float32)")
    embed.add_argument("--cache", metavar="DIR", default=None,
                       help="keep features per image in DIR, so that images seen before are "
                            "not computed again")
    embed.add_argument("-j", "--n-jobs", type=int, default=None, metavar="N",
                       help="threads decoding images (default: one per core, up to 8)")
    embed.add_argument("--on-error", choices=["nan", "raise"], default="nan",
                       help="an unreadable image: 'nan' (default) gives it a row of NaN and "
                            "names it on stderr at the end; 'raise' stops with an error "
                            "naming it (exit code 1)")
    embed.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    embed.set_defaults(run=_embed)

    backbones = commands.add_parser(
        "backbones", help="list the available networks",
        description="List every network skptm knows, with its native input size, "
                    "preprocessing family and pooled feature size.",
    )
    backbones.set_defaults(run=_backbones)

    fetch = commands.add_parser(
        "fetch-weights", help="download ImageNet weights into Keras's cache",
        description="Download the ImageNet weights of the named networks into Keras's "
                    "cache ($KERAS_HOME/models, default ~/.keras/models) and print that "
                    "folder: run it where there is internet access, then copy the folder "
                    "to machines without.",
    )
    fetch.add_argument("names", nargs="*", metavar="NAME", help="network names (see 'skptm backbones')")
    fetch.add_argument("--all", action="store_true", help="every network (several GB)")
    fetch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(run=_fetch_weights)

    parser._subparsers_by_name.update(
        {"embed": embed, "backbones": backbones, "fetch-weights": fetch}
    )
    return parser
