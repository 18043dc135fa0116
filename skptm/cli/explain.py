"""``skptm explain``: where a saved classifier looked in each image (Grad-CAM),
one overlay PNG per image (:func:`skptm.explain`, :func:`skptm.plot.overlay`)."""

from __future__ import annotations

import sys
from pathlib import Path

from .._io import check_writable_folder
from ..datasets import IMAGE_EXTENSIONS
from ..exceptions import ImageReadError
from . import UserError, start_tensorflow
from ._arguments import HelpFormatter, add_batch_options, add_on_error_option, examples
from ._common import collect, listing, load_classifier, print_table, require, set_command_options


def add_parser(subparsers):
    """Add ``explain`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "explain",
        help="where a trained model looked in each image (Grad-CAM)",
        description=(
            "Load a model written by 'skptm train' (or skptm.save) and write, for every image, "
            "DIR/<name>.png: the image at its own size with its Grad-CAM heat map overlaid "
            "(bright: where the evidence for the class lies), then print each image's class, "
            "probability and file. Grad-CAM weighs the backbone's last feature map by the "
            "gradient of the class's score: coarse (32 times coarser than the network's input "
            "for most backbones), and evidence, not proof. Needs skops and matplotlib: "
            'pip install "skptm[skops,plot]". In Python: skptm.explain, skptm.plot.explain.'
        ),
        epilog=examples(
            "skptm explain model.skops photos/cat_01.jpg photos/cat_02.jpg -o heat_maps",
            "skptm explain model.skops new_photos/ -o heat_maps --target dog",
        ),
        formatter_class=HelpFormatter,
    )
    command.add_argument("model", metavar="MODEL", help="a model file written by 'skptm train'")
    command.add_argument(
        "images",
        nargs="+",
        metavar="IMAGES",
        help=f"image files ({' '.join(IMAGE_EXTENSIONS)}), folders (searched recursively) or "
        "text files of image paths, one a line",
    )
    command.add_argument(
        "-o",
        "--output",
        dest="output_dir",
        metavar="DIR",
        required=True,
        help="folder to write into (created if needed)",
    )
    command.add_argument(
        "--target",
        metavar="CLASS",
        default=None,
        help="explain this class in every image (default: each image's predicted class)",
    )
    command.add_argument(
        "--layer",
        metavar="NAME",
        default=None,
        help="the backbone layer whose feature map is used (default: the backbone's output)",
    )
    add_batch_options(command)
    add_on_error_option(command, nan="gets no heat map")
    return command


def run(args, parser):
    """Explain the images with ``args.model``; write one overlay per image."""
    require("skops", "reading models", 'pip install "skptm[skops]"')
    require("matplotlib", "drawing heat maps", 'pip install "skptm[plot]"')
    if not Path(args.model).is_file():
        raise FileNotFoundError(2, "No such model file", str(args.model))
    paths = _image_paths(args.images)
    if paths is None:
        return 2
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"the output {str(output_dir)!r} exists and is not a folder")
    check_writable_folder(output_dir)

    start_tensorflow()
    from PIL import Image

    from .._explain import grad_cam, unreadable_items
    from ..plot import overlay

    model = load_classifier(args.model)
    set_command_options(model, args)
    target = None if args.target is None else _class(args.target, model.classes_)
    failed = []
    try:
        result = grad_cam(model, paths, target=target, layer=args.layer)
    except ImageReadError:
        if args.on_error == "raise":
            raise
        # Found all at once (decoding only), then the rest explained in one more pass.
        failed = unreadable_items(model, paths)
        skipped = {failure.index for failure in failed}
        paths = [path for i, path in enumerate(paths) if i not in skipped]
        if not paths:
            raise
        result = grad_cam(model, paths, target=target, layer=args.layer)
    if failed:
        print(
            f"skptm explain: {len(failed)} of {len(paths) + len(failed)} images could not be read; no heat "
            f"map for them: {listing([failure.path for failure in failed])}",
            file=sys.stderr,
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path, name, heat_map, label, probability in zip(
        paths, output_names(paths), result.maps, result.targets, result.scores, strict=True
    ):
        written = output_dir / name
        Image.fromarray(overlay(path, heat_map)).save(written)
        rows.append((path, label, f"{probability:.3f}", written))
    print_table(("image", "class", "probability", "heat map"), rows, right=(2,))
    return 0


def _image_paths(sources):
    """The image paths ``sources`` name: image files as they are, folders and
    lists through :func:`~skptm.cli._common.collect`; ``None`` when one holds none."""
    paths = []
    for source in sources:
        if Path(source).is_file() and source.lower().endswith(IMAGE_EXTENSIONS):
            paths.append(source)
            continue
        found = collect("explain", source)
        if found is None:
            return None
        paths.extend(found)
    return paths


def _class(text, classes):
    """The class of ``classes`` written ``text`` (labels may be numbers)."""
    for label in classes.tolist():
        if str(label) == text:
            return label
    raise UserError(f"--target {text!r} is not a class of this model; its classes: {', '.join(map(str, classes))}")


def output_names(paths):
    """One PNG file name per path: its stem, numbered where stems repeat.

    Examples
    --------
    >>> output_names(["a/cat.jpg", "b/cat.png", "dog.jpg", "cat-2.jpg"])
    ['cat.png', 'cat-2.png', 'dog.png', 'cat-2-2.png']
    """
    names, used = [], set()
    for path in paths:
        stem, number = Path(path).stem, 1
        name = f"{stem}.png"
        while name in used:
            number += 1
            name = f"{stem}-{number}.png"
        used.add(name)
        names.append(name)
    return names
