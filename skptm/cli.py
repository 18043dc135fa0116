"""The ``skptm`` command line: ``embed``, ``cluster``, ``train``, ``predict``,
``backbones``, ``fetch-weights``.

Run ``skptm --help`` (or ``python -m skptm --help``) and ``skptm COMMAND
--help``. ``embed`` writes one feature vector per image; ``cluster`` groups
images by their features with k-means and draws a contact sheet per cluster
and a map of all of them; ``train`` fine-tunes a classifier on a folder of
class sub-folders, reports its scores on a held-out split and saves it as a
skops file; ``predict`` applies such a file to images and writes their class
probabilities. User errors (a missing file, a bad option, unreadable images
with ``--on-error raise``, ImageNet weights that cannot be had offline, a
missing optional dependency) end with a message on stderr and exit code 1 (2
for usage errors, as argparse does); anything unexpected still shows its
traceback.

TensorFlow's start-up chatter (oneDNN, CUDA probing, CPU instruction notes)
is kept off the terminal by :func:`main` alone, when it runs: importing
:mod:`skptm` or this module changes nothing in the process.
"""

from __future__ import annotations

import argparse
import math
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

#: Commands with an ``--on-error`` option.
_ON_ERROR_COMMANDS = ("embed", "cluster", "predict")

#: What the outputs of a run on random weights say about themselves.
_RANDOM_NOTE = "random weights \N{EM DASH} not image content"


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
        print(f"skptm {args.command}: error: {_message(exc, args.command)}", file=sys.stderr)
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


def _message(exc, command=None):
    """The one-paragraph message of user error ``exc`` raised by ``command``."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    message = str(exc)
    if type(exc).__name__ == "ImageReadError":
        if command in _ON_ERROR_COMMANDS:
            message += " (On the command line: --on-error nan.)"
        elif command == "train":
            message += " (Training cannot use an unreadable image: fix or remove that file.)"
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


# -- shared by the commands that read images ---------------------------------------------


def _collect(command, source):
    """The image paths of ``source`` (see :func:`collect_images`).

    Returns
    -------
    paths : list of Path or None
        ``None`` when there are none, after saying so on stderr (the caller
        exits with code 2, as ``embed`` always has).
    """
    paths = collect_images(source)
    if paths:
        return paths
    print(
        f"skptm {command}: error: no images found in {source!r} (looked for "
        f"{', '.join(sorted(IMAGE_SUFFIXES))} files"
        + (", recursively)." if Path(source).is_dir() else ", one path per line)."),
        file=sys.stderr,
    )
    return None


def _feature_transformer(args):
    """The :class:`~skptm.PretrainedFeatureTransformer` the feature options in
    ``args`` describe (see :func:`_add_feature_options`)."""
    from . import PretrainedFeatureTransformer

    return PretrainedFeatureTransformer(
        backbone=args.backbone,
        weights=args.weights,
        input_size=args.input_size,
        pooling=None if args.pooling == "none" else args.pooling,
        layer=args.layer,
        resize=args.resize,
        batch_size=args.batch_size,
        precision=args.precision,
        engine=args.engine,
        cache=args.cache,
        n_jobs=args.n_jobs,
        on_error=args.on_error,
        verbose=0 if args.quiet else 1,
    )


def _compute(compute, items):
    """Run ``compute(items)`` (rows of NaN for unreadable items) and find those items.

    The :class:`~skptm.ImageReadWarning` it emits is dropped, since the
    command names the failed items itself; other warnings pass as they were.

    Returns
    -------
    rows : ndarray of shape (len(items), n)
    failed : list of str
        The items whose rows are NaN, in order.
    """
    import warnings

    import numpy as np

    from . import ImageReadWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ImageReadWarning)
        rows = compute(items)
    for w in caught:
        if not issubclass(w.category, ImageReadWarning):  # others as they were
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    failed = [item for item, bad in zip(items, np.isnan(rows).all(axis=1)) if bad]
    return rows, failed


def _listing(items, limit=5):
    """``a, b, c, d, e, and 3 more``."""
    return ", ".join(map(str, items[:limit])) + (f", and {len(items) - limit} more" if len(items) > limit else "")


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
    paths = _collect("embed", args.source)
    if paths is None:
        return 2

    _start_tensorflow()
    transformer = _feature_transformer(args)
    items = [str(path) for path in paths]
    features, failed = _compute(transformer.transform, items)
    names = [str(name) for name in transformer.get_feature_names_out()]
    _write(output, suffix, items, names, features)
    if failed:
        print(
            f"skptm embed: {len(failed)} of {len(items)} images could not be read; their rows "
            f"are NaN: {_listing(failed)}",
            file=sys.stderr,
        )
    if not args.quiet:
        print(f"skptm embed: wrote {len(items)} x {features.shape[1]} features to {output}",
              file=sys.stderr)
    return 0


def collect_images(source):
    """The image paths ``embed``, ``cluster`` and ``predict`` read from ``source``.

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


# -- cluster ------------------------------------------------------------------------------


def _cluster(args, parser):
    """``skptm cluster``: k-means on the images' features, a contact sheet per
    cluster, a map of all of them, and ``clusters.csv``."""
    k = args.clusters
    if k < 2:
        raise UserError(f"-k must be at least 2 (clusters to find); got {k}.")
    _check_matplotlib("cluster")
    folder = Path(args.output)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"the output must be a folder; {str(folder)!r} is a file.")
    paths = _collect("cluster", args.source)
    if paths is None:
        return 2
    if k > len(paths):
        raise UserError(f"-k {k} asks for more clusters than there are images ({len(paths)}) in {args.source!r}.")

    _start_tensorflow()
    import numpy as np

    transformer = _feature_transformer(args)
    random_weights = _build_network(transformer, args.if_offline, "cluster")
    items = [str(path) for path in paths]
    features, failed = _compute(transformer.transform, items)
    readable = np.flatnonzero(~np.isnan(features).all(axis=1))
    if failed:
        print(f"skptm cluster: {len(failed)} of {len(items)} images could not be read and are left "
              f"out of the clusters: {_listing(failed)}", file=sys.stderr)
    if k > len(readable):
        raise UserError(f"-k {k} asks for more clusters than there are readable images ({len(readable)}).")

    # L2-normalised rather than standardised: the direction of a pooled CNN
    # feature vector carries what the image shows (nearest neighbours go by
    # cosine similarity), its length mostly contrast and size; and
    # standardising would blow up the many near-constant (mostly zero after
    # ReLU) features into noise as loud as the informative ones. On unit
    # vectors, Euclidean k-means is k-means on cosine distance.
    unit = _l2_normalise(features[readable])
    labels, distances = _kmeans(unit, k, args.seed)

    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "clusters.csv"
    _write_clusters_csv(table, items, readable, labels, distances)
    chosen = [items[i] for i in readable]
    sheets = _write_sheets(folder, chosen, labels, distances, k, args.max_per_sheet, random_weights)
    overview = _write_overview(folder / "overview.png", unit, chosen, labels, k, args.map, args.seed,
                               random_weights)
    _print_cluster_summary(chosen, labels, distances, k, random_weights, [table, *sheets, overview])
    return 0


def _check_matplotlib(command):
    """A :class:`UserError` naming the extra to install when matplotlib is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise UserError(f'{command} draws its pictures with matplotlib, which is not installed: '
                        f'pip install "skptm[plot]"')


def _build_network(transformer, if_offline, command):
    """Build ``transformer``'s network before any image is decoded.

    With ``if_offline="random-weights"`` and ImageNet weights that cannot be
    had (offline and not in Keras's cache), say so on stderr and fall back to
    random weights; otherwise the error goes to :func:`main`.

    Returns
    -------
    random_weights : bool
        Whether the network has random weights (asked for, or fallen back to).
    """
    from ._networks import WeightsUnavailableError

    try:
        transformer.fit(None)  # builds (or fetches from the cache) the network only
    except WeightsUnavailableError as exc:
        if if_offline != "random-weights" or transformer.weights != "imagenet":
            raise
        print(f"skptm {command}: notice: {_message(exc, command)}", file=sys.stderr)
        print(f"skptm {command}: notice: falling back to random weights (--if-offline random-weights): "
              "the results show the pipeline working, not what the images show.", file=sys.stderr)
        transformer.set_params(weights=None).fit(None)
    return transformer.weights is None


def _l2_normalise(features):
    """Rows scaled to unit length (all-zero rows left as they are)."""
    import numpy as np

    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def _kmeans(features, k, seed):
    """k-means labels, renumbered by size (cluster 0 the largest), and each
    row's distance to its cluster's centre."""
    import numpy as np
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(features)
    distances = model.transform(features)[np.arange(len(features)), model.labels_]
    sizes = np.bincount(model.labels_, minlength=k)
    order = np.argsort(-sizes, kind="stable")  # old label of new cluster 0, 1, ...
    renumber = np.empty(k, dtype=int)
    renumber[order] = np.arange(k)
    return renumber[model.labels_], distances


def _members(labels, distances, cluster):
    """Indices of ``cluster``'s rows, nearest to its centre first."""
    import numpy as np

    members = np.flatnonzero(labels == cluster)
    return members[np.argsort(distances[members], kind="stable")]


def _write_clusters_csv(table, items, readable, labels, distances):
    """``path,cluster,distance``, one row per item in input order (unreadable
    items: empty cluster and distance)."""
    import csv

    rows = {int(i): (int(label), f"{distance:.6f}") for i, label, distance in zip(readable, labels, distances)}
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "cluster", "distance"])
        for index, item in enumerate(items):
            writer.writerow([item, *rows.get(index, ("", ""))])


def _pyplot():
    """matplotlib's pyplot, on the file-only Agg backend unless pyplot was
    already imported (no window, no display needed)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(name, width=16):
    """A file name cut to ``width`` characters, keeping its suffix."""
    if len(name) <= width:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix) > 5:
        return name[: width - 1] + "\N{HORIZONTAL ELLIPSIS}"
    return stem[: width - len(suffix) - 2] + "\N{HORIZONTAL ELLIPSIS}." + suffix


def _write_sheets(folder, items, labels, distances, k, max_per_sheet, random_weights):
    """One contact sheet per non-empty cluster, ``cluster_00.png``...: its
    images nearest to the centre first, each captioned with its file name
    and distance. Returns the paths written."""
    plt = _pyplot()
    from . import plot

    digits = max(2, len(str(k - 1)))
    written = []
    for cluster in range(k):
        members = _members(labels, distances, cluster)
        if not len(members):
            continue
        shown = members[:max_per_sheet]
        title = f"cluster {cluster}: {len(members)} image{'' if len(members) == 1 else 's'}"
        if len(members) > len(shown):
            title += f" ({len(shown)} shown, {len(members) - len(shown)} left out)"
        title += "\nnearest to its centre first"
        if random_weights:
            title += f"\n{_RANDOM_NOTE}"
        captions = [f"{_short(Path(items[i]).name)} {distances[i]:.3f}" for i in shown]  # one line: no overlap
        ncols = max(3, math.ceil(math.sqrt(len(shown))))  # wide enough for the title
        fig = plot.montage([items[i] for i in shown], labels=captions, ncols=ncols, title=title)
        width, height = fig.get_size_inches()  # room for the title's lines and the captions
        fig.set_size_inches(width, height + 0.25 * title.count("\n") + 0.15 * math.ceil(len(shown) / ncols))
        fig.tight_layout()
        path = folder / f"cluster_{cluster:0{digits}d}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


#: Fewer images than this are mapped with PCA: t-SNE's perplexity must stay
#: below the number of images, and a t-SNE map of a handful shows nothing.
_MIN_TSNE_IMAGES = 5


def _map_coordinates(features, method, seed):
    """2-D coordinates of the rows, and a description of how they were made.

    t-SNE (perplexity as :func:`skptm.plot.embedding` picks it, always below
    the number of images) or PCA; PCA, with a note on stderr, for a set too
    small for t-SNE.
    """
    if method == "tsne" and len(features) >= _MIN_TSNE_IMAGES:
        from sklearn.manifold import TSNE

        perplexity = max(1.0, min(30.0, (len(features) - 1) / 3))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        return tsne.fit_transform(features), f"t-SNE, perplexity {perplexity:.3g}"
    from sklearn.decomposition import PCA

    if method == "tsne":
        print(f"skptm cluster: note: {len(features)} images are too few for a t-SNE map (it needs "
              f"{_MIN_TSNE_IMAGES}); overview.png uses PCA.", file=sys.stderr)
    return PCA(n_components=2, random_state=seed).fit_transform(features), "PCA"


def _write_overview(path, features, items, labels, k, method, seed, random_weights):
    """``overview.png``: every image's thumbnail on a 2-D map of the
    features, with a badge in its cluster's colour. Returns ``path``."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    from . import plot

    coordinates, how = _map_coordinates(features, method, seed)
    fig = plot.embedding(coordinates, items, random_state=seed)
    ax = fig.axes[0]
    colours = plt.get_cmap("tab20" if k > 10 else "tab10")
    for (x, y), cluster in zip(coordinates, labels):
        ax.annotate(str(cluster), (x, y), xytext=(-17, -17), textcoords="offset points", ha="center",
                    va="center", fontsize=7, zorder=5,
                    bbox={"boxstyle": "round,pad=0.2", "fc": colours(cluster % colours.N), "ec": "none"})
    if k <= 20:
        ax.legend(handles=[Patch(color=colours(c % colours.N), label=f"cluster {c}") for c in range(k)],
                  fontsize=7, loc="best")
    title = f"{len(items)} images in {k} clusters ({how})"
    ax.set_title(title + (f"\n{_RANDOM_NOTE}" if random_weights else ""))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _print_cluster_summary(items, labels, distances, k, random_weights, written):
    """The table of clusters (size, three images nearest the centre) and the
    files written, on stdout."""
    rows = []
    for cluster in range(k):
        members = _members(labels, distances, cluster)
        examples = ", ".join(Path(items[i]).name for i in members[:3])
        rows.append((str(cluster), str(len(members)), examples))
    header = ("cluster", "size", "nearest to the centre")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(2)]
    for row in (header, ("-" * widths[0], "-" * widths[1], "-" * len(header[2])), *rows):
        print(f"{row[0].rjust(widths[0])}  {row[1].rjust(widths[1])}  {row[2]}".rstrip())
    if random_weights:
        print(f"({_RANDOM_NOTE}: these clusters show the pipeline working, not what the images show)")
    print("wrote:")
    for path in written:
        print(f"  {path}")


# -- train --------------------------------------------------------------------------------


def _train(args, parser):
    """``skptm train``: fine-tune a classifier on a folder of class
    sub-folders, score it on a held-out split, save it as a skops file."""
    model_path = Path(args.output)
    _check_skops("train")
    if model_path.is_dir():
        raise UserError(f"the output must be a file; {str(model_path)!r} is a folder.")
    if model_path.exists() and not args.force:
        raise UserError(f"{str(model_path)!r} exists; pass --force to overwrite it.")
    if not model_path.parent.is_dir():
        raise UserError(f"the output's folder does not exist: {str(model_path.parent)!r}")
    import numpy as np

    from . import load_image_folder

    data = load_image_folder(args.source, random_state=args.seed)
    y = np.asarray(data.target_names)[data.target]
    _check_classes(data, args.test_size)
    train, test = _stratified_split(y, args.test_size, args.seed)
    _print_class_counts(data.target_names, y, train, test)

    _start_tensorflow()
    model = _classifier(args).fit(data.paths[train], y[train])
    proba = model.predict_proba(data.paths[test])
    _print_scores(y[test], model.classes_[np.argmax(proba, axis=1)], model.classes_, args.test_size)
    from ._persistence import save

    save(model, model_path)
    print(f"wrote {model_path} (use it with: skptm predict {model_path} IMAGES -o predictions.csv)")
    return 0


def _check_skops(command):
    """A :class:`UserError` naming the extra to install when skops is missing."""
    import importlib.util

    if importlib.util.find_spec("skops") is None:
        raise UserError(f'{command} reads and writes models with skops, which is not installed: '
                        f'pip install "skptm[skops]"')


def _check_classes(data, test_size):
    """A :class:`UserError` naming a class too small for a stratified split."""
    import numpy as np

    names = data.target_names
    if len(names) < 2:
        raise UserError(f"training needs at least 2 class sub-folders; found {names}.")
    counts = np.bincount(data.target, minlength=len(names))
    for name, count in zip(names, counts):
        if count < 2:
            raise UserError(
                f"class {name!r} has {count} image{'' if count == 1 else 's'}: holding out a stratified "
                f"test split (--test-size {test_size:g}) needs at least 2 images per class. Add images "
                "to its folder, or remove the folder."
            )


def _stratified_split(y, test_size, seed):
    """Indices ``(train, test)`` of a split stratified by class."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=seed)
    except ValueError as exc:
        raise UserError(
            f"cannot hold out --test-size {test_size:g} of {len(y)} images stratified by class: {exc} "
            "Use a larger --test-size, or more images per class."
        ) from None


def _print_class_counts(names, y, train, test):
    """Images per class: total, trained on, held out."""
    header = ("class", "images", "train", "test")
    rows = [(name, str((y == name).sum()), str((y[train] == name).sum()), str((y[test] == name).sum()))
            for name in names]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]
    for row in (header, *rows):
        print("  ".join([row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:]))]))
    print()


def _unfreeze_value(value):
    """``--unfreeze``: a count, ``all``, or a layer name."""
    return int(value) if value.isdigit() else value


def _classifier(args):
    """The :class:`~skptm.FineTunedClassifier` the options in ``args`` describe."""
    from . import FineTunedClassifier

    return FineTunedClassifier(
        backbone=args.backbone,
        weights=args.weights,
        input_size=args.input_size,
        resize=args.resize,
        unfreeze=args.unfreeze,
        head_epochs=args.head_epochs,
        finetune_epochs=args.finetune_epochs,
        augment=None if args.augment == "none" else args.augment,
        batch_size=args.batch_size,
        precision=args.precision,
        engine=args.engine,
        cache=args.cache,
        n_jobs=args.n_jobs,
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
    )


def _print_scores(y_true, y_pred, classes, test_size):
    """Accuracy, balanced accuracy and the classification report of the held-out split."""
    import warnings

    from sklearn import metrics

    missing = [c for c in classes if c not in set(y_true)]
    print(f"held-out test split ({len(y_true)} images, --test-size {test_size:g}):")
    print(f"accuracy           {metrics.accuracy_score(y_true, y_pred):.3f}")
    with warnings.catch_warnings():  # said below, in words
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        print(f"balanced accuracy  {metrics.balanced_accuracy_score(y_true, y_pred):.3f}")
    print()
    print(metrics.classification_report(y_true, y_pred, labels=list(classes), zero_division=0))
    if missing:
        print(f"note: no test image of class {_listing([repr(str(c)) for c in missing])}, so its "
              "scores are not measured: use a larger --test-size, or more images.")


# -- predict ------------------------------------------------------------------------------


def _predict(args, parser):
    """``skptm predict``: a saved classifier's labels and class probabilities
    for every image, as CSV."""
    output = Path(args.output)
    _check_skops("predict")
    if not output.parent.is_dir():
        raise UserError(f"the output's folder does not exist: {str(output.parent)!r}")
    if not Path(args.model).is_file():
        raise FileNotFoundError(2, "No such model file", str(args.model))
    paths = _collect("predict", args.source)
    if paths is None:
        return 2

    _start_tensorflow()
    import numpy as np

    model = _load_classifier(args.model)
    _set_present(model, on_error=args.on_error, batch_size=args.batch_size, n_jobs=args.n_jobs,
                 verbose=0 if args.quiet else 1)
    items = [str(path) for path in paths]
    proba, failed = _compute(model.predict_proba, items)
    classes = np.asarray(model.classes_)
    labels = [None if bad else classes[i] for bad, i in
              zip(np.isnan(proba).all(axis=1), np.argmax(np.nan_to_num(proba, nan=-1.0), axis=1))]
    _write_predictions(output, items, labels, classes, proba)
    if failed:
        print(f"skptm predict: {len(failed)} of {len(items)} images could not be read; their label is "
              f"empty and their probabilities NaN: {_listing(failed)}", file=sys.stderr)
    if not args.quiet:
        counts = ", ".join(f"{c}: {sum(label == c for label in labels)}" for c in classes)
        print(f"skptm predict: wrote {len(items)} predictions ({counts}) to {output}", file=sys.stderr)
    return 0


def _load_classifier(path):
    """The classifier in skops file ``path``, or a :class:`UserError` saying
    why it cannot be used."""
    from ._networks import WeightsUnavailableError
    from ._persistence import load

    try:
        model = load(path)
    except (WeightsUnavailableError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # skops raises many kinds of error on a foreign file
        raise UserError(
            f"cannot load a model from {str(path)!r}: {type(exc).__name__}: {exc} (write one with "
            "'skptm train' or skptm.save)."
        ) from exc
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise UserError(f"{str(path)!r} holds a {type(model).__name__}, not a fitted classifier.")
    return model


def _set_present(estimator, **params):
    """Set those of ``params`` that ``estimator`` has (a pipeline has none of them)."""
    known = estimator.get_params(deep=False)
    estimator.set_params(**{name: value for name, value in params.items() if name in known})


def _write_predictions(output, items, labels, classes, proba):
    """``path,label,proba_<class>...``, one row per item (empty label, NaN
    probabilities where an item could not be read)."""
    import csv

    with open(output, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", *(f"proba_{c}" for c in classes)])
        for item, label, row in zip(items, labels, proba):
            writer.writerow([item, "" if label is None else label, *(f"{p:.9g}" for p in row)])


# -- backbones ----------------------------------------------------------------------------


def _backbones(args, parser):
    from ._backbones import list_backbones

    header = ("name", "keras name", "input size", "preprocessing", "features")
    rows = [
        (b["name"], b["keras_name"], str(b["input_size"]), b["preprocessing"], str(b["feature_size"]))
        for b in list_backbones()
    ]
    right = (False, False, True, False, True)
    if args.engines:
        _start_tensorflow()  # "auto" asks TensorFlow whether there is a GPU
        header += ("engine=auto", "with precision=auto")
        rows = [(*row, *_engine_choices(row[0])) for row in rows]
        right += (False, False)
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(row):
        cells = [cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(row, widths, right)]
        return "  ".join(cells).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    return 0


def _engine_choices(name):
    """What ``engine="auto"`` runs ``name`` with here, for precision float32
    and auto, with the measured speed-up over TensorFlow float32."""
    from ._engine_table import IMAGES_PER_SECOND
    from ._engines import resolve_engine

    rates = IMAGES_PER_SECOND.get(name, {})
    cells = []
    for precision in ("float32", "auto"):
        engine, chosen = resolve_engine("auto", precision, name)
        label = f"{engine} {chosen}"
        if f"{engine}/{chosen}" in rates and rates.get("tensorflow/float32"):
            label += f" ({rates[f'{engine}/{chosen}'] / rates['tensorflow/float32']:.1f}x)"
        cells.append(label)
    return cells


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


class _HelpFormatter(argparse.HelpFormatter):
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


def _examples(*lines):
    """An epilog listing example command lines."""
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {line}" for line in lines)


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


def _fraction(value):
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0.0 < number < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, such as 0.2, got {value!r}")
    return number


def _non_negative_int(value):
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}")
    return number


_SOURCE_HELP = (
    "a folder (searched recursively for .jpg .jpeg .png .bmp .gif .tif .tiff .webp files) or a "
    "text file of image paths, one a line (blank lines and # comments skipped; relative paths are "
    "taken from the text file's folder)"
)


def _add_network_options(command, backbone="resnet50"):
    """The options of the network every command but ``predict`` builds."""
    command.add_argument("-b", "--backbone", default=backbone,
                         help=f"network name, see 'skptm backbones' (default: {backbone})")
    command.add_argument("-w", "--weights", type=_weights, default="imagenet",
                         help="'imagenet' (default), 'none' for random weights, or the path "
                              "of a weights file of the same architecture without its top")
    command.add_argument("-s", "--input-size", type=_input_size, default=None, metavar="SIZE",
                         help="resize images to SIZE (224, or 224x192 for height x width); "
                              "default: the network's own size")
    command.add_argument("--resize", choices=["stretch", "center_crop", "pad"], default="stretch",
                         help="how images reach the input size (default: stretch)")
    _add_batch_options(command)
    command.add_argument("--precision", choices=["float32", "bfloat16", "float16", "auto"],
                         default="float32", help="what the network computes in (default: float32)")
    command.add_argument("--engine", choices=["auto", "tensorflow", "openvino"], default="auto",
                         help="what runs the network: auto (default) takes OpenVINO where it was measured "
                              "faster for this network and is installed (pip install \"skptm[openvino]\")")
    command.add_argument("--cache", metavar="DIR", default=None,
                         help="keep features per image in DIR, so that images seen before are "
                              "not computed again")


def _add_batch_options(command):
    """``--batch-size`` and ``--n-jobs``."""
    command.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                         help="images per batch (default: 32)")
    command.add_argument("-j", "--n-jobs", type=int, default=None, metavar="N",
                         help="threads decoding images (default: one per core, up to 8)")


def _add_on_error_option(command):
    command.add_argument("--on-error", choices=["nan", "raise"], default="nan",
                         help="an unreadable image: 'nan' (default) gives it a row of NaN and "
                              "names it on stderr at the end; 'raise' stops with an error "
                              "naming it (exit code 1)")


def _add_feature_options(command):
    """The options of ``embed`` and ``cluster``: those of the transformer
    :func:`_feature_transformer` builds."""
    _add_network_options(command)
    command.add_argument("--pooling", choices=["avg", "max", "none"], default="avg",
                         help="how a feature map becomes a vector (default: avg; none flattens)")
    command.add_argument("--layer", action="append", default=None, metavar="NAME",
                         help="extract from this inner layer instead of the top; repeat to "
                              "concatenate several")
    _add_on_error_option(command)
    command.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


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
        epilog=_examples("skptm embed photos/ -o features.parquet --backbone resnet50"),
        formatter_class=_HelpFormatter,
    )
    embed.add_argument("source", metavar="SRC", help=_SOURCE_HELP)
    embed.add_argument("-o", "--output", metavar="OUT", required=True,
                       help="where to write: a .npy, .csv or .parquet file")
    _add_feature_options(embed)
    embed.set_defaults(run=_embed)

    cluster = commands.add_parser(
        "cluster",
        help="group images by their features (k-means), with contact sheets",
        description=(
            "Compute every image's features as 'embed' does, L2-normalise them and group "
            "them with k-means. Writes into DIR (created if needed): clusters.csv (path, "
            "cluster, distance to the cluster's centre; one row per image in input order, "
            "cluster 0 the largest), cluster_00.png, cluster_01.png, ... (a contact sheet "
            "per cluster, nearest to its centre first) and overview.png (every image on a "
            "2-D map, badged with its cluster), then prints a summary. Needs matplotlib: "
            'pip install "skptm[plot]".'
        ),
        epilog=_examples("skptm cluster photos/ -k 4 -o clusters",
                         "skptm cluster skptm/datasets/photos -k 4 -o clusters --if-offline random-weights"),
        formatter_class=_HelpFormatter,
    )
    cluster.add_argument("source", metavar="SRC", help=_SOURCE_HELP)
    cluster.add_argument("-k", "--clusters", type=int, required=True, metavar="N",
                         help="number of clusters (at least 2, at most the number of images)")
    cluster.add_argument("-o", "--output", metavar="DIR", required=True,
                         help="folder to write into (created if needed)")
    _add_feature_options(cluster)
    cluster.add_argument("--map", choices=["tsne", "pca"], default="tsne",
                         help="how overview.png places the images (default: tsne; PCA for fewer "
                              f"than {_MIN_TSNE_IMAGES} images)")
    cluster.add_argument("--max-per-sheet", type=_positive_int, default=48, metavar="N",
                         help="images per contact sheet at most, nearest to the centre first (default: 48)")
    cluster.add_argument("--seed", type=int, default=0, help="seeds k-means and t-SNE (default: 0)")
    cluster.add_argument("--if-offline", choices=["fail", "random-weights"], default="fail",
                         help="with --weights imagenet, when the ImageNet weights are neither in "
                              "Keras's cache nor downloadable: 'fail' (default) stops with exit "
                              "code 1; 'random-weights' says so and goes on with random weights, "
                              "its outputs labelled as such (they show the pipeline working, not "
                              "what the images show)")
    cluster.set_defaults(run=_cluster)

    train = commands.add_parser(
        "train",
        help="fine-tune a classifier on a folder of class sub-folders",
        description=(
            "Fine-tune a pretrained network as a classifier (skptm.FineTunedClassifier) on "
            "SRC, a folder holding one sub-folder of images per class. A stratified "
            "--test-size share of the images is held out: the model is trained on the rest "
            "and scored on it (accuracy, balanced accuracy, per-class report). The model is "
            "saved as a pickle-free skops file (needs skops: pip install \"skptm[skops]\"); "
            "'skptm predict' and skptm.load read it. It holds what training changed: the "
            "base weights come from --weights where it is loaded."
        ),
        epilog=_examples("skptm train photos/ -o model.skops --backbone efficientnet_b0 --augment light"),
        formatter_class=_HelpFormatter,
    )
    train.add_argument("source", metavar="SRC", help="a folder holding one sub-folder of images per class")
    train.add_argument("-o", "--output", metavar="MODEL", required=True,
                       help="the model file to write, e.g. model.skops")
    train.add_argument("--force", action="store_true", help="overwrite MODEL if it exists")
    _add_network_options(train, backbone="efficientnet_b0")
    train.add_argument("--unfreeze", type=_unfreeze_value, default=8, metavar="N",
                       help="backbone layers to fine-tune: a count of the top layers with weights, "
                            "'all', or the name of the lowest layer to train; 0 trains the head "
                            "only (default: 8)")
    train.add_argument("--head-epochs", type=_non_negative_int, default=200, metavar="N",
                       help="at most N epochs for a head with hidden layers (phase 1); the default "
                            "linear head is solved exactly; 0 skips phase 1 (default: 200)")
    train.add_argument("--finetune-epochs", type=_non_negative_int, default=10, metavar="N",
                       help="epochs of fine-tuning (phase 2); 0 skips it (default: 10)")
    train.add_argument("--augment", choices=["none", "light"], default="none",
                       help="data augmentation while fine-tuning: 'light' flips, rotates, zooms "
                            "and changes contrast a little (default: none)")
    train.add_argument("--test-size", type=_fraction, default=0.2, metavar="FRACTION",
                       help="share of the images held out to score the model (default: 0.2)")
    train.add_argument("--seed", type=int, default=0,
                       help="seeds the split, the initialisation and the training (default: 0)")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=_train)

    predict = commands.add_parser(
        "predict",
        help="apply a trained model to images, write labels and probabilities",
        description=(
            "Load a model written by 'skptm train' (or skptm.save) and write, for every "
            "image, its predicted label and one probability per class, as CSV: "
            "path,label,proba_<class>..., one row per image in input order. Needs skops: "
            'pip install "skptm[skops]".'
        ),
        epilog=_examples("skptm predict model.skops new_photos/ -o predictions.csv"),
        formatter_class=_HelpFormatter,
    )
    predict.add_argument("model", metavar="MODEL", help="a model file written by 'skptm train'")
    predict.add_argument("source", metavar="SRC", help=_SOURCE_HELP)
    predict.add_argument("-o", "--output", metavar="OUT", required=True, help="the CSV file to write")
    _add_batch_options(predict)
    _add_on_error_option(predict)
    predict.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(run=_predict)

    backbones = commands.add_parser(
        "backbones", help="list the available networks",
        description="List every network skptm knows, with its native input size, "
                    "preprocessing family and pooled feature size.",
    )
    backbones.add_argument("--engines", action="store_true",
                           help="add what engine='auto' runs each network with on this machine, and its "
                                "measured speed-up over TensorFlow float32 (needs TensorFlow; OpenVINO "
                                "counts only where installed)")
    backbones.set_defaults(run=_backbones)

    fetch = commands.add_parser(
        "fetch-weights", help="download ImageNet weights into Keras's cache",
        description="Download the ImageNet weights of the named networks into Keras's "
                    "cache ($KERAS_HOME/models, default ~/.keras/models) and print that "
                    "folder: run it where there is internet access, then copy the folder "
                    "to machines without.",
        epilog=_examples("skptm fetch-weights resnet50 mobilenet_v2"),
        formatter_class=_HelpFormatter,
    )
    fetch.add_argument("names", nargs="*", metavar="NAME", help="network names (see 'skptm backbones')")
    fetch.add_argument("--all", action="store_true", help="every network (several GB)")
    fetch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(run=_fetch_weights)

    parser._subparsers_by_name.update(
        {"embed": embed, "cluster": cluster, "train": train, "predict": predict,
         "backbones": backbones, "fetch-weights": fetch}
    )
    return parser
