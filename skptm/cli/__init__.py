"""The ``skptm`` command line: ``embed``, ``cluster``, ``compare``, ``train``, ``predict``,
``explain``, ``backbones``, ``fetch-weights``, ``calibrate``, ``cache``.

Run ``skptm --help`` (or ``python -m skptm --help``) and ``skptm COMMAND
--help``. Each command is one module of this package, with
``add_parser(subparsers)`` and ``run(args, parser)``: it parses, calls a
library function a notebook can call as well, and prints. User errors (a
missing file, a bad option, unreadable images with ``--on-error raise``,
ImageNet weights that cannot be had offline, a missing optional dependency)
end with a message on stderr and exit code 1 (2 for usage errors, as
argparse does); anything unexpected still shows its traceback.

TensorFlow's start-up chatter (oneDNN, CUDA probing, CPU instruction notes)
is kept off the terminal by :func:`start_tensorflow`, which the commands call
only inside :func:`main`: importing :mod:`skptm` or this package changes
nothing in the process.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from ..exceptions import ImageReadError, WeightsUnavailableError

#: The commands, as 'skptm --help' lists them: each a module of this package.
COMMANDS = (
    "embed",
    "cluster",
    "compare",
    "train",
    "predict",
    "explain",
    "backbones",
    "fetch_weights",
    "calibrate",
    "cache",
)

#: Commands with an ``--on-error`` option.
_ON_ERROR_COMMANDS = ("embed", "cluster", "predict")

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


class UserError(Exception):
    """An error the user can fix: printed without a traceback, exit code 1."""


#: Errors that are the user's to fix: one message, exit code 1. ``ValueError``
#: covers a bad parameter (scikit-learn's ``InvalidParameterError``) and an
#: unreadable image (:class:`~skptm.ImageReadError`); the ``OSError``
#: subclasses are files that are missing or cannot be used, and ImageNet
#: weights that cannot be had offline.
USER_ERRORS = (
    UserError,
    ValueError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    WeightsUnavailableError,
)


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    code : int
        The exit status: 0 on success, 1 for a user error (message on
        stderr), 2 for a usage error.

    Examples
    --------
    >>> main(["backbones"])  # doctest: +ELLIPSIS
    name  ...
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args, args.command_parser)
    except SystemExit as exc:  # a usage error found after parsing
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("skptm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. 'skptm backbones | head'
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 1
    except USER_ERRORS as exc:
        print(f"skptm {args.command}: error: {user_message(exc, args.command)}", file=sys.stderr)
        return 1
    except ImportError as exc:
        if "pip install" not in str(exc):
            raise  # a broken installation, not a missing extra: the traceback helps
        # An optional extra this run needs (openvino, keras-hub, ...): its install hint.
        print(f"skptm {args.command}: error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The ``skptm`` parser, with one sub-parser per module of :data:`COMMANDS`."""
    from .. import __version__
    from ._arguments import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="skptm",
        description="Pretrained Keras image networks from the command line.",
        epilog="Run 'skptm COMMAND --help' for a command's options.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"skptm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        # Imported here, not at the top: the commands import this module's names.
        module = importlib.import_module(f"{__name__}.{name}")
        command = module.add_parser(subparsers)
        command.set_defaults(run=module.run, command_parser=command)
    return parser


def user_message(exc, command=None) -> str:
    """The one-paragraph message of user error ``exc`` raised by ``command``."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    message = str(exc)
    if isinstance(exc, ImageReadError) and command in _ON_ERROR_COMMANDS and exc.needed_by is None:
        message += " (On the command line: --on-error nan.)"
    if isinstance(exc, WeightsUnavailableError):
        message = message.rstrip()
        message += ("" if message.endswith(".") else ".") + _offline_hint(command)
    return message


#: Commands whose ``--weights`` takes a weights file or ``none``.
_WEIGHTS_OPTION_COMMANDS = ("embed", "cluster", "compare", "train", "calibrate")


def _offline_hint(command) -> str:
    """What the command line offers when weights cannot be had, by command."""
    fetch = "'skptm fetch-weights NAME' fills the cache on a machine with internet access"
    if command in _WEIGHTS_OPTION_COMMANDS:
        return (
            f" On the command line: {fetch}; '--weights PATH' uses a weights file of your own; "
            "'--weights none' uses random weights."
        )
    if command == "predict":
        return (
            f" On the command line: {fetch}; with --classes, '--weights FOLDER' uses a local KerasHub "
            "preset (zero-shot needs trained towers: random weights name nothing)."
        )
    if command == "fetch-weights":
        return (
            " On the command line: run this command on a machine with internet access, then copy "
            "the cache folder named above to this one."
        )
    return f" On the command line: {fetch}."


def start_tensorflow():
    """Import TensorFlow and Keras with their start-up chatter filtered out.

    TensorFlow's C++ libraries write to file descriptor 2 while they load,
    before Python's logging or ``TF_CPP_MIN_LOG_LEVEL`` can act on all of it.
    Commands call this inside :func:`main` only: it redirects descriptor 2
    to a file while TensorFlow starts, then writes every line that is not
    known chatter back to stderr. ``TF_CPP_MIN_LOG_LEVEL`` (default here
    ``2``) keeps later info and warning lines quiet; ``0`` shows everything.
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
