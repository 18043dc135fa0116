"""Options shared by the commands, their choices (taken from the estimators),
and the one mapping from parsed options to a library call's parameters."""

from __future__ import annotations

import argparse
import inspect

from sklearn.utils._param_validation import StrOptions

from .._transformer import PretrainedFeatureTransformer
from ..datasets import IMAGE_EXTENSIONS
from ..engines import ENGINE_CHOICES, PRECISION_CHOICES
from ._types import NONE, input_size, positive_int, weights

#: Options named otherwise than the parameter they set.
_RENAMED = {"verbose": "quiet", "random_state": "seed"}

SOURCE_HELP = (
    f"a folder (searched recursively for {' '.join(IMAGE_EXTENSIONS)} files) or a text file of image "
    "paths, one a line (blank lines and # comments skipped; relative paths are taken from the text "
    "file's folder)"
)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that a paragraph with indented lines (the
    examples of an epilog) is kept as it is, not re-wrapped."""

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for paragraph in text.split("\n\n"):
            if "\n  " in paragraph:
                paragraphs.append("\n".join(indent + line for line in paragraph.splitlines()))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)


def examples(*lines):
    """An epilog listing example command lines."""
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {line}" for line in lines)


def choices(estimator, parameter):
    """The string options of an estimator's ``parameter``, as its
    ``_parameter_constraints`` state them, plus ``none`` where it takes ``None``.

    Examples
    --------
    >>> choices(PretrainedFeatureTransformer, "pooling")
    ['avg', 'cls', 'cls+avg', 'max', 'none']
    """
    constraints = estimator._parameter_constraints[parameter]
    options = sorted(next(c.options for c in constraints if isinstance(c, StrOptions)))
    return options + [NONE] * (None in constraints)


def params_for(target, args):
    """The parameters of ``target`` that the parsed options set.

    An option sets the parameter of its name (``--batch-size`` sets
    ``batch_size``), ``-q`` sets ``verbose`` and ``--seed`` ``random_state``;
    the choice ``none`` is ``None``. Parameters without an option are left
    out, so they keep their defaults.

    Parameters
    ----------
    target : class, function or estimator
        An estimator class or a function (its signature's parameters), or an
        estimator made elsewhere, e.g. loaded from a file (its ``get_params``).
    args : argparse.Namespace
        The parsed options.

    Returns
    -------
    params : dict
        Keyword arguments for ``target`` (or for its ``set_params``).
    """
    if isinstance(target, type) or not hasattr(target, "get_params"):
        names = inspect.signature(target).parameters
    else:  # an estimator made elsewhere (loaded from a file): the parameters it has
        names = target.get_params(deep=False)
    options = vars(args)
    params = {}
    for name in names:
        option = _RENAMED.get(name, name)
        if option not in options:
            continue
        value = options[option]
        if name == "verbose":
            value = 0 if value else 1
        params[name] = None if value == NONE else value
    return params


# -- option groups ----------------------------------------------------------------------


def add_network_options(command, backbone="resnet50"):
    """The options of the network every command but ``predict`` builds."""
    command.add_argument(
        "-b", "--backbone", default=backbone, help="network name, see 'skptm backbones' (default: %(default)s)"
    )
    command.add_argument(
        "-w",
        "--weights",
        type=weights,
        default="imagenet",
        help="'imagenet' (default), 'none' for random weights, or the path "
        "of a weights file of the same architecture without its top",
    )
    add_input_size_option(
        command, "resize images to SIZE (224, or 224x192 for height x width); default: the network's own size"
    )
    command.add_argument(
        "--resize",
        choices=choices(PretrainedFeatureTransformer, "resize"),
        default="auto",
        help="how images reach the input size (default: %(default)s, the network's own: stretch for the "
        "keras.applications networks, each KerasHub preset's converter's for the transformers)",
    )
    add_batch_options(command)
    command.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="float32",
        help="what the network computes in (default: %(default)s)",
    )
    command.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help="what runs the network: auto (default) takes another engine only where it was "
        "measured faster on this machine ('skptm calibrate'); OpenVINO needs "
        'pip install "skptm[openvino]"',
    )
    command.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="keep features per image in DIR, so that images seen before are not computed again",
    )


def add_batch_options(command):
    """``--batch-size`` and ``--n-jobs``."""
    command.add_argument(
        "--batch-size", type=positive_int, default=32, metavar="N", help="images per batch (default: %(default)s)"
    )
    command.add_argument(
        "-j",
        "--n-jobs",
        type=int,
        default=None,
        metavar="N",
        help="threads decoding images (default: one per core, up to 8)",
    )


def add_on_error_option(command, nan="gives it a row of NaN"):
    """``--on-error``: what an unreadable image does (``nan``: what the
    command then does with it, in words)."""
    command.add_argument(
        "--on-error",
        choices=choices(PretrainedFeatureTransformer, "on_error"),
        default="nan",
        help=f"an unreadable image: 'nan' (default) {nan} and names it on stderr at the end; "
        "'raise' stops with an error naming it (exit code 1)",
    )


def add_backbone_names(command, all_help):
    """``NAME ...`` or ``--all``: the networks a command works on."""
    command.add_argument("names", nargs="*", metavar="NAME", help="network names (see 'skptm backbones')")
    command.add_argument("--all", action="store_true", help=all_help)


def backbone_names(args, parser):
    """The names ``args`` gives, each checked before TensorFlow starts; ``None`` for ``--all``."""
    if bool(args.names) == args.all:
        parser.error("give backbone names, or --all (not both).")
    from .._backbones import get_backbone_spec

    for name in args.names:
        get_backbone_spec(name)
    return None if args.all else args.names


def add_if_offline_option(command):
    """``--if-offline``: what a command does when the ImageNet weights cannot be had."""
    command.add_argument(
        "--if-offline",
        choices=["fail", "random-weights"],
        default="fail",
        help="with --weights imagenet, when the ImageNet weights are neither in "
        "Keras's cache nor downloadable: 'fail' (default) stops with exit "
        "code 1; 'random-weights' says so and goes on with random weights, "
        "the results labelled as such (they show the pipeline working, not "
        "what the images show)",
    )


def add_input_size_option(command, help):
    """``-s/--input-size SIZE``: ``224``, or ``224x192`` for height x width."""
    command.add_argument("-s", "--input-size", type=input_size, default=None, metavar="SIZE", help=help)


def add_quiet_option(command, what="no progress bar"):
    """``-q``: no progress bars."""
    command.add_argument("-q", "--quiet", action="store_true", help=what)


def add_feature_options(command):
    """The options of ``embed`` and ``cluster``: the feature extractor's."""
    add_network_options(command)
    command.add_argument(
        "--pooling",
        choices=choices(PretrainedFeatureTransformer, "pooling"),
        default="avg",
        help="how a feature map becomes a vector (default: %(default)s; none flattens)",
    )
    command.add_argument(
        "--layer",
        action="append",
        default=None,
        metavar="NAME",
        help="extract from this inner layer instead of the top; repeat to concatenate several",
    )
    add_on_error_option(command)
    add_quiet_option(command)
