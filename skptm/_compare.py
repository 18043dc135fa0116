"""Which approach suits these images: raw pixels, linear probes on a few
networks and fine-tuning, cross-validated on the same folds."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from numbers import Integral, Real

import numpy as np
from sklearn.metrics import get_scorer
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    check_cv,
    cross_validate,
)
from sklearn.utils import check_consistent_length, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import column_or_1d

from ._comparison import FINETUNING, PIXELS, PROBE, TIME_BUDGET, ApproachScore, ComparisonResult, approach_label
from ._validation import N_JOBS
from .engines import ENGINE_CHOICES
from .exceptions import ImageReadError

#: Light networks ``backbones=None`` chooses from, each with its family: at most
#: one network of a family is chosen, so that the probes differ in kind.
CANDIDATES = (
    ("mobilenet_v3_small", "MobileNetV3"),
    ("mobilenet_v3_large", "MobileNetV3"),
    ("mobilenet_v2", "MobileNet"),
    ("mobilenet", "MobileNet"),
    ("efficientnet_b0", "EfficientNet"),
    ("efficientnet_v2_b0", "EfficientNet"),
    ("nasnet_mobile", "NASNet"),
    ("densenet121", "DenseNet"),
)

#: What ``backbones=None`` takes where nothing is known of this machine's speed.
DEFAULT_BACKBONES = ("mobilenet_v3_small", "mobilenet_v2", "efficientnet_b0")

#: Side in pixels of the raw-pixel baseline's images (square, RGB).
PIXEL_SIZE = 16

#: Parameters of the fine-tuning estimators that :func:`compare` sets itself.
_SET_BY_COMPARE = frozenset(
    {
        "backbone",
        "weights",
        "input_size",
        "unfreeze",
        "finetune_epochs",
        "batch_size",
        "engine",
        "cache",
        "n_jobs",
        "random_state",
        "verbose",
    }
)


@validate_params(
    {
        "X": "no_validation",
        "y": ["array-like"],
        "backbones": [str, list, tuple, None],
        "unfreeze": [list, tuple],
        "cv": ["cv_object"],
        "groups": ["array-like", None],
        "scoring": [str, callable, None],
        "time_budget": [Interval(Real, 0, None, closed="neither"), None],
        "weights": [StrOptions({"imagenet"}), str, os.PathLike, None],
        "input_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        "finetune_epochs": [Interval(Integral, 1, None, closed="left")],
        "finetune_params": [dict, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "engine": [StrOptions(set(ENGINE_CHOICES))],
        "cache": [str, os.PathLike, None],
        "n_jobs": N_JOBS,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=True,
)
def compare(
    X,
    y,
    *,
    backbones=None,
    unfreeze=(8, 20),
    cv=5,
    groups=None,
    scoring=None,
    time_budget=None,
    weights="imagenet",
    input_size=None,
    finetune_epochs=10,
    finetune_params=None,
    batch_size=32,
    engine="auto",
    cache=None,
    n_jobs=None,
    random_state=None,
    verbose=1,
):
    """Cross-validate the ways of learning from these images, and say which suits them.

    On the same folds, cheapest first:

    1. **raw pixels**: each image shrunk to 16 x 16 RGB by skptm's own
       reader, standardised, into ``LogisticRegression`` (classes) or
       ``RidgeCV`` (numbers). No pretrained network: the reference.
    2. **a linear probe** per network of ``backbones``:
       :class:`~skptm.PretrainedFeatureTransformer`, ``StandardScaler``, and
       the same linear model. Each image is run through each network once:
       the folds share a feature cache.
    3. **fine-tuning** (:class:`~skptm.FineTunedClassifier` or
       :class:`~skptm.FineTunedRegressor`) of the best probe's network, at
       each depth of ``unfreeze``. Its phase 1 reads the probe's cached
       features (where the probe ran on TensorFlow: the cache keeps
       entries per engine).

    Whether ``y`` holds classes or numbers is decided by scikit-learn's
    ``type_of_target``: integers and strings are classes (scored by
    accuracy), non-integer floats are numbers (scored by R²).

    Parameters
    ----------
    X : images
        Any form the estimators take: a list or array of paths (e.g.
        ``load_image_folder(...).paths``), PIL images or arrays, or an
        array ``(n_images, height, width, 3)``.
    y : array-like of shape (n_images,) or (n_images, n_targets)
        Class labels, or numbers to predict.
    backbones : str, list of str or None, default=None
        Networks for the linear probes (names from
        :func:`skptm.list_backbones`). ``None`` takes three light networks
        of different families (:data:`CANDIDATES`), the fastest on this
        machine as far as is known: a measurement made here by ``skptm
        calibrate`` (or :func:`skptm.calibrate`) where there is one, else
        the shipped table's figure for a machine of this instruction set;
        where neither knows any of them, ``mobilenet_v3_small``,
        ``mobilenet_v2`` and ``efficientnet_b0``.
    unfreeze : tuple of (int or str), default=(8, 20)
        The depths fine-tuning tries, each an ``unfreeze`` of the
        fine-tuning estimators: a count of the top layers with weights
        (1 or more), ``"all"``, or the name of the lowest layer to train.
        ``()`` tries no fine-tuning.
    cv : int, cross-validation generator or iterable, default=5
        An int is that many folds, shuffled with ``random_state``:
        stratified by class for classes, and grouped (no group in two
        folds) with ``groups``. Anything else is taken as scikit-learn's
        ``check_cv`` takes it. Every approach is scored on the same folds.
    groups : array-like of shape (n_images,) or None, default=None
        Group of each image, e.g. the photo a view was cut from
        (:func:`skptm.datasets.make_sample_views`): images of one group
        are kept in one fold, so near-duplicates never score each other.
    scoring : str, callable or None, default=None
        A scikit-learn scorer (greater is better); ``None`` is
        ``"accuracy"`` for classes and ``"r2"`` for numbers.
    time_budget : float or None, default=None
        Seconds the whole comparison may take. Approaches run cheapest
        first; one that would start after the budget is spent is skipped,
        and the table and the recommendation list it as skipped. An
        approach that started runs to its end, so the last one may
        overrun. Raw pixels always run. ``None``: no limit.
    weights : "imagenet", None or path, default="imagenet"
        The networks' weights, as for the estimators. ``None`` (random
        weights) shows the pipeline working, not what pretrained features
        can do; the recommendation says so. A weights file fits one
        architecture: pass a single network in ``backbones`` with it.
    input_size : int, (int, int) or None, default=None
        Image size for the networks; ``None`` is each network's native size.
    finetune_epochs : int, default=10
        Epochs of fine-tuning (phase 2) for each depth and fold.
    finetune_params : dict or None, default=None
        Further parameters of the fine-tuning estimators, e.g.
        ``{"augment": "light", "finetune_learning_rate": 3e-5}``. Not those
        that ``compare`` sets itself (``backbone``, ``weights``,
        ``input_size``, ``unfreeze``, ``finetune_epochs``, ``batch_size``,
        ``engine``, ``cache``, ``n_jobs``, ``random_state``, ``verbose``).
    batch_size : int, default=32
        Images per batch, for every network.
    engine : {"auto", "tensorflow", "openvino"}, default="auto"
        What computes the probes' features (fine-tuning always trains on
        TensorFlow), as for :class:`~skptm.PretrainedFeatureTransformer`.
    cache : str, path or None, default=None
        A feature cache directory: features computed here are kept for
        later runs, and those of earlier runs are read. ``None`` uses a
        temporary directory, removed at the end.
    n_jobs : int or None, default=None
        Image-decoding threads, as for the estimators.
    random_state : int, RandomState instance or None, default=None
        Seeds the folds and fine-tuning: the same value gives the same
        folds and the same scores.
    verbose : int, default=1
        ``1`` shows a progress bar over approaches and folds.

    Returns
    -------
    result : :class:`~skptm.ComparisonResult`
        ``result.table``: one :class:`~skptm.ApproachScore` per approach
        (approach, backbone, unfreeze, the scores of each fold with their
        ``mean`` and ``std``, seconds, and why it was skipped, if it was);
        ``result.to_frame()`` as a pandas DataFrame;
        ``result.recommendation``: a paragraph; ``result.plot()``: a bar
        chart; ``print(result)``: the table and the recommendation.

    Raises
    ------
    ImageReadError
        An image that cannot be read, named by its index in ``X`` and its path.
    WeightsUnavailableError
        ImageNet weights that are neither in Keras's cache nor downloadable,
        found before any image is read.

    Notes
    -----
    The recommendation follows from the table's numbers alone. An approach
    *beats* another when its mean score is higher by more than the folds'
    spread: the larger of the two standard deviations over folds.

    - If the best linear probe does not beat raw pixels, the images look
      unlike what the network was trained on (with ImageNet weights,
      everyday photos): its features barely help.
    - Fine-tuning is recommended only if it beats the linear probe on the
      same network (and every cheaper approach).
    - The recommended approach is the cheapest kind (raw pixels, then a
      linear probe, then fine-tuning) whose best-scoring row the best one
      does not beat; that row. Its code passes the options that were
      scored (input size, weights file, fine-tuning settings).
    - Skipped approaches are named, with the reason.

    Examples
    --------
    >>> import skptm
    >>> from skptm.datasets import load_image_folder
    >>> data = load_image_folder("photos/")  # doctest: +SKIP
    >>> result = skptm.compare(data.paths, data.target, time_budget=600, random_state=0)  # doctest: +SKIP
    >>> print(result)  # doctest: +SKIP
    approach      backbone            unfreeze  accuracy    std  seconds
    ...
    >>> result.plot()  # doctest: +SKIP
    """
    from ._backbones import get_backbone_spec

    started = time.perf_counter()
    check_consistent_length(X, y, groups)
    task, y = _task(y)
    classification = task == "classification"
    names = _backbone_names(backbones, input_size, engine)
    for name in names:
        get_backbone_spec(name)  # every name checked before any work
    depths = _check_unfreeze(unfreeze)
    estimator_class = _finetuning_class(classification)
    extra = _check_finetune_params(finetune_params, estimator_class)
    seed = _seed(random_state)
    splits = _splits(cv, len(y), y, groups, classification, seed)
    if isinstance(scoring, str):
        get_scorer(scoring)  # an unknown name fails now, with scikit-learn's list of names
    scoring_name = scoring if isinstance(scoring, str) else getattr(scoring, "__name__", "score")
    if scoring is None:
        scoring = scoring_name = "accuracy" if classification else "r2"

    with contextlib.ExitStack() as stack:
        if cache is None:
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="skptm-compare-"))
        common = {"weights": weights, "input_size": input_size, "batch_size": batch_size, "n_jobs": n_jobs}
        probes = {name: _probe(name, classification, engine=engine, cache=cache, **common) for name in names}

        from tqdm.auto import tqdm

        n_rows = 1 + len(names) + len(depths)
        progress = stack.enter_context(
            tqdm(total=n_rows * len(splits), unit=" folds", desc="skptm.compare", disable=not verbose)
        )
        # Every network built (its weights found, or an offline error) before any image is read.
        build_seconds = {}
        for name, probe in probes.items():
            progress.set_postfix_str(f"building {name}")
            start = time.perf_counter()
            probe[0].fit(X)
            build_seconds[name] = time.perf_counter() - start
        run = _Runner(X, y, splits, scoring, progress, started, time_budget)

        try:
            table = [run.pixels(_linear_model(classification), batch_size=batch_size, n_jobs=n_jobs)]
            for name, probe in probes.items():
                table.append(run(probe, PROBE, backbone=name, extra_seconds=build_seconds[name]))
        except ImageReadError as exc:
            raise (exc if exc.needed_by else exc.as_needed_by("compare")) from exc.__cause__
        best = max((row for row in table[1:] if row.ran), key=lambda row: row.mean, default=None)
        for depth in depths:
            if best is None:
                table.append(run.skip(FINETUNING, None, depth))
                continue
            estimator = estimator_class(
                best.backbone,
                unfreeze=depth,
                finetune_epochs=finetune_epochs,
                engine=engine,
                cache=cache,
                random_state=seed,
                **common,
                **extra,
            )
            table.append(run(estimator, FINETUNING, backbone=best.backbone, unfreeze=depth))

    return ComparisonResult(
        table=tuple(table),
        scoring=scoring_name,
        n_splits=len(splits),
        task=task,
        random_weights=weights is None,
        time_budget=time_budget,
        network_options={
            name: os.fspath(value) if isinstance(value, os.PathLike) else value
            for name, value in (("input_size", input_size), ("weights", weights))
            if value is not None and value != "imagenet"
        },
        finetune_options=_not_default(
            estimator_class, {"finetune_epochs": finetune_epochs, "batch_size": batch_size, **extra}
        ),
        seconds=time.perf_counter() - started,
    )


class _Runner:
    """Runs approaches on the folds, against the clock, updating the progress bar."""

    def __init__(self, X, y, splits, scoring, progress, started, time_budget):
        self.X, self.y, self.splits, self.scoring = X, y, splits, scoring
        self.progress, self.started, self.time_budget = progress, started, time_budget

    def spent(self) -> bool:
        return self.time_budget is not None and time.perf_counter() - self.started >= self.time_budget

    def skip(self, approach, backbone=None, unfreeze=None):
        self.progress.update(len(self.splits))
        return ApproachScore(approach, backbone, unfreeze, skipped=TIME_BUDGET)

    def pixels(self, model, *, batch_size, n_jobs):
        """The raw-pixel baseline: every image decoded once (an unreadable one
        named by its index in ``X``), then a linear model on the folds."""
        self.progress.set_postfix_str(PIXELS)
        start = time.perf_counter()
        features = pixel_features(self.X, batch_size=batch_size, n_jobs=n_jobs)
        scores = self._scores(model, features)
        return ApproachScore(PIXELS, scores=scores, seconds=time.perf_counter() - start)

    def __call__(self, estimator, approach, *, backbone, unfreeze=None, extra_seconds=0.0):
        if self.spent():
            return self.skip(approach, backbone, unfreeze)
        self.progress.set_postfix_str(approach_label(approach, backbone, unfreeze))
        start = time.perf_counter()
        scores = self._scores(estimator, self.X)
        return ApproachScore(
            approach, backbone, unfreeze, scores=scores, seconds=time.perf_counter() - start + extra_seconds
        )

    def _scores(self, estimator, X):
        scores = []
        for split in self.splits:
            # One fold at a time, so that the progress bar moves with each.
            result = cross_validate(estimator, X, self.y, cv=[split], scoring=self.scoring, error_score="raise")
            scores.append(float(result["test_score"][0]))
            self.progress.update(1)
        return scores


def pixel_features(X, *, size=PIXEL_SIZE, batch_size=32, n_jobs=None):
    """Every image of ``X`` shrunk to ``size`` x ``size`` RGB by skptm's reader,
    flattened: float32 ``(n_images, 3 * size * size)`` in 0-255.

    Raises :class:`~skptm.ImageReadError` for the first unreadable image,
    naming its index and path.
    """
    from ._batches import as_source, stream_batches
    from ._images import ImageReader

    source = as_source(X, ImageReader((size, size)))
    features = np.empty((len(source), 3 * size * size), dtype=np.float32)
    for batch in stream_batches(source, batch_size, n_jobs):
        batch.raise_first_failure()
        features[batch.indices.start : batch.indices.stop] = batch.data.reshape(len(batch.data), -1)
    return features


def default_backbones(input_size=None, engine="auto"):
    """The networks ``backbones=None`` takes (see :func:`compare`).

    Each candidate's speed here is what :func:`skptm.engines.decision.expected_rate`
    knows (a measurement made here, else the shipped table for this kind of
    machine); the fastest are taken, one per family. Candidates with no
    figure come after, in :data:`CANDIDATES` order; with no figure at all,
    :data:`DEFAULT_BACKBONES`.

    Examples
    --------
    >>> default_backbones()  # doctest: +SKIP
    ['mobilenet_v3_small', 'mobilenet_v2', 'efficientnet_v2_b0']
    """
    from .engines.decision import expected_rate

    rates = {name: expected_rate(name, input_size, engine=engine) for name, _ in CANDIDATES}
    if all(rate is None for rate in rates.values()):
        return list(DEFAULT_BACKBONES)
    order = sorted(CANDIDATES, key=lambda candidate: -(rates[candidate[0]] or (0.0,))[0])  # stable: ties keep order
    chosen, families = [], set()
    for name, family in order:
        if family not in families and len(chosen) < len(DEFAULT_BACKBONES):
            chosen.append(name)
            families.add(family)
    return chosen


# -- checks and pieces ------------------------------------------------------------------------


def _task(y):
    """``("classification" | "regression", y)`` from scikit-learn's ``type_of_target``."""
    kind = type_of_target(y, input_name="y")
    if kind in ("binary", "multiclass"):
        y = column_or_1d(y, warn=True)
        if len(np.unique(y)) < 2:
            raise ValueError(f"y has a single class ({np.unique(y)[0]!r}): comparing approaches needs at least 2.")
        return "classification", y
    if kind in ("continuous", "continuous-multioutput"):
        return "regression", np.asarray(y, dtype=np.float64)
    raise ValueError(
        f"compare takes one class label or one or more numbers per image; y is {kind!r} with shape "
        f"{np.shape(y)}. For several labels per image, compare one label at a time."
    )


def _backbone_names(backbones, input_size, engine):
    if backbones is None:
        return default_backbones(input_size, engine)
    names = [backbones] if isinstance(backbones, str) else list(backbones)
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError(
            "backbones must name at least one network of skptm.list_backbones(), or be None to let "
            f"compare choose. Received: backbones={backbones!r}"
        )
    return list(dict.fromkeys(names))


def _check_unfreeze(unfreeze):
    depths = list(unfreeze)
    for depth in depths:
        valid = isinstance(depth, str) or (isinstance(depth, Integral) and not isinstance(depth, bool) and depth >= 1)
        if not valid:
            raise ValueError(
                "Each depth of unfreeze must be a count of layers of at least 1, 'all' or a layer name "
                "(unfreeze=0 is the linear probe, which compare runs already); pass unfreeze=() for no "
                f"fine-tuning. Received: unfreeze={unfreeze!r}"
            )
    return list(dict.fromkeys(depths))


def _finetuning_class(classification):
    if classification:
        from ._classifier import FineTunedClassifier

        return FineTunedClassifier
    from ._regressor import FineTunedRegressor

    return FineTunedRegressor


def _check_finetune_params(params, estimator_class):
    params = dict(params or {})
    taken = sorted(_SET_BY_COMPARE & set(params))
    if taken:
        raise ValueError(
            f"finetune_params cannot set {', '.join(taken)}: compare sets them itself (use its own "
            f"parameters, e.g. compare(..., {taken[0]}=...) where it has one). Received: finetune_params={params!r}"
        )
    unknown = sorted(set(params) - set(estimator_class().get_params()))
    if unknown:
        raise ValueError(
            f"finetune_params names parameters {estimator_class.__name__} does not have: {', '.join(unknown)}. "
            f"See help({estimator_class.__name__})."
        )
    return params


def _seed(random_state):
    """An int for every seeded part (one drawn from a RandomState), or ``None``."""
    if random_state is None or isinstance(random_state, Integral):
        return random_state
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _splits(cv, n, y, groups, classification, seed):
    """The folds every approach is scored on, as a list of (train, test) index arrays."""
    if isinstance(cv, Integral):
        if cv < 2:
            raise ValueError(f"cv must be at least 2 folds. Received: cv={cv}")
        if groups is not None:
            splitter = (StratifiedGroupKFold if classification else GroupKFold)(cv, shuffle=True, random_state=seed)
        else:
            splitter = (StratifiedKFold if classification else KFold)(cv, shuffle=True, random_state=seed)
    else:
        splitter = check_cv(cv, y, classifier=classification)
    return list(splitter.split(np.zeros((n, 1)), y, groups))


def _not_default(estimator_class, options) -> dict:
    """The ``options`` whose values are not ``estimator_class``'s defaults."""
    defaults = estimator_class().get_params()
    return {name: value for name, value in options.items() if name not in defaults or value != defaults[name]}


def _linear_model(classification):
    """What the baseline and the probes fit on standardised features: the
    fine-tuning estimators' own linear probe (their phase 1)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if classification:
        from sklearn.linear_model import LogisticRegression

        from ._heads import LOGISTIC_C

        return make_pipeline(StandardScaler(), LogisticRegression(C=LOGISTIC_C, max_iter=2000))
    from sklearn.linear_model import RidgeCV

    from ._heads import RIDGE_ALPHAS

    return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))


def _probe(name, classification, **params):
    """``PretrainedFeatureTransformer -> StandardScaler -> linear model``."""
    from sklearn.pipeline import Pipeline

    from ._transformer import PretrainedFeatureTransformer

    linear = _linear_model(classification)
    return Pipeline([("features", PretrainedFeatureTransformer(name, **params)), *linear.steps])
