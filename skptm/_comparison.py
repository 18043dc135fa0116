"""What :func:`skptm.compare` found: one row per approach, and the
recommendation that follows from the rows' numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: The kinds of approach, cheapest first: the order they run in, and the order
#: of preference when their scores are within the folds' spread of each other.
PIXELS = "raw pixels"
PROBE = "linear probe"
FINETUNING = "fine-tuning"
APPROACHES = (PIXELS, PROBE, FINETUNING)

#: Why an approach is skipped when the time budget is spent.
TIME_BUDGET = "time budget"

#: The columns of :meth:`ComparisonResult.to_frame`, in order.
COLUMNS = ("approach", "backbone", "unfreeze", "mean", "std", "seconds", "skipped")


@dataclass(frozen=True)
class ApproachScore:
    """One row of a comparison: an approach and its scores over the folds.

    Parameters
    ----------
    approach : {"raw pixels", "linear probe", "fine-tuning"}
        What was trained: a linear model on downscaled pixels, a linear
        model on a frozen network's features, or a fine-tuned network.
    backbone : str or None
        The network (``None`` for raw pixels, and for fine-tuning skipped
        before a linear probe chose its network).
    unfreeze : int, str or None
        The layers fine-tuning trained (``None`` for the other approaches).
    scores : tuple of float
        The score on each fold's test split, in fold order; empty when the
        approach was skipped.
    seconds : float or None
        Wall-clock time of all its folds (training, scoring and the
        features they computed); ``None`` when skipped.
    skipped : str or None
        Why the approach did not run (e.g. ``"time budget"``); ``None`` when
        it ran.

    Examples
    --------
    >>> from skptm import ApproachScore
    >>> row = ApproachScore("linear probe", "mobilenet_v2", scores=[0.8, 0.9], seconds=12.0)
    >>> row.label, round(row.mean, 3), round(row.std, 3)
    ('linear probe on mobilenet_v2', 0.85, 0.05)
    """

    approach: str
    backbone: str | None = None
    unfreeze: int | str | None = None
    scores: tuple = ()
    seconds: float | None = None
    skipped: str | None = None

    def __post_init__(self):
        if self.approach not in APPROACHES:
            raise ValueError(f"approach must be one of {APPROACHES}. Received: approach={self.approach!r}")
        if (self.skipped is None) == (len(self.scores) == 0):
            raise ValueError(
                "An approach either ran (scores, and skipped=None) or was skipped (no scores, and a reason). "
                f"Received: scores={self.scores!r}, skipped={self.skipped!r}"
            )
        object.__setattr__(self, "scores", tuple(float(score) for score in self.scores))

    @property
    def ran(self) -> bool:
        """Whether the approach ran (it has scores)."""
        return self.skipped is None

    @property
    def mean(self) -> float:
        """Mean score over the folds (NaN when skipped)."""
        return float(np.mean(self.scores)) if self.scores else math.nan

    @property
    def std(self) -> float:
        """Standard deviation of the scores over the folds, as scikit-learn's
        ``cv_results_`` report it (``ddof=0``; NaN when skipped)."""
        return float(np.std(self.scores)) if self.scores else math.nan

    @property
    def label(self) -> str:
        """The approach in words: ``"linear probe on mobilenet_v2"``."""
        return approach_label(self.approach, self.backbone, self.unfreeze)


def approach_label(approach, backbone=None, unfreeze=None) -> str:
    """An approach in words: ``"raw pixels"``, ``"linear probe on mobilenet_v2"``,
    ``"fine-tuning mobilenet_v2 (unfreeze=8)"``."""
    if approach == PIXELS:
        return PIXELS
    if approach == PROBE:
        return f"{PROBE} on {backbone}"
    on = f" {backbone}" if backbone else ""
    return f"{FINETUNING}{on} (unfreeze={unfreeze!r})"


@dataclass(frozen=True)
class ComparisonResult:
    """Scores of every approach :func:`skptm.compare` tried, on the same folds.

    Printing it shows the table and the recommendation.

    Parameters
    ----------
    table : tuple of ApproachScore
        One row per approach, in the order they ran: raw pixels, the linear
        probes, then fine-tuning; skipped ones included.
    scoring : str, default="accuracy"
        The score's name (greater is better).
    n_splits : int, default=5
        Cross-validation folds.
    task : {"classification", "regression"}, default="classification"
    random_weights : bool, default=False
        Whether the networks had random weights (``weights=None``): their
        scores then show the pipeline working, not what pretrained features
        can do, and the recommendation says so.
    time_budget : float or None, default=None
        The time budget in seconds, if one was given.
    seconds : float or None, default=None
        Wall-clock time of the whole comparison.
    network_options : dict, default={}
        The networks' options that are not the estimators' defaults
        (``input_size``, a weights file): the recommended code passes them,
        so that it builds what was scored.
    finetune_options : dict, default={}
        The fine-tuning estimators' options that are not their defaults
        (``finetune_epochs``, ``batch_size``, ``finetune_params``): the
        recommended fine-tuning code passes them too.

    Attributes
    ----------
    recommendation : str
        A paragraph that follows from the table's numbers (see
        :func:`skptm.compare` for the rules).

    Examples
    --------
    >>> from skptm import ApproachScore, ComparisonResult
    >>> result = ComparisonResult(
    ...     table=[
    ...         ApproachScore("raw pixels", scores=[0.60, 0.70], seconds=2.0),
    ...         ApproachScore("linear probe", "mobilenet_v2", scores=[0.85, 0.89], seconds=30.0),
    ...     ],
    ...     n_splits=2,
    ... )
    >>> print(result.format_table())
    approach      backbone      unfreeze  accuracy    std  seconds
    ------------  ------------  --------  --------  -----  -------
    raw pixels                               0.650  0.050      2.0
    linear probe  mobilenet_v2               0.870  0.020     30.0
    >>> result.recommended.label
    'linear probe on mobilenet_v2'
    """

    table: tuple
    scoring: str = "accuracy"
    n_splits: int = 5
    task: str = "classification"
    random_weights: bool = False
    time_budget: float | None = None
    seconds: float | None = None
    network_options: dict = field(default_factory=dict)
    finetune_options: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "table", tuple(self.table))
        if not any(row.approach == PIXELS and row.ran for row in self.table):
            raise ValueError(
                "A comparison needs the raw-pixel baseline's scores: every other row is measured against it."
            )

    # -- reading the numbers ------------------------------------------------------------

    @property
    def baseline(self) -> ApproachScore:
        """The raw-pixel row."""
        return next(row for row in self.table if row.approach == PIXELS and row.ran)

    @property
    def best(self) -> ApproachScore:
        """The row with the highest mean score (the cheapest kind first on a tie)."""
        return _highest(row for row in self.table if row.ran)

    @property
    def best_probe(self) -> ApproachScore | None:
        """The linear probe with the highest mean score, or ``None`` if none ran."""
        return _highest(row for row in self.table if row.approach == PROBE and row.ran)

    @property
    def best_finetuned(self) -> ApproachScore | None:
        """The fine-tuned network with the highest mean score, or ``None`` if none ran."""
        return _highest(row for row in self.table if row.approach == FINETUNING and row.ran)

    @property
    def recommended(self) -> ApproachScore:
        """The highest-scoring row of the cheapest kind of approach whose
        highest-scoring row is within the folds' spread of the best
        (:func:`beats` says when it is not). A kind is judged by its best
        row: a noisy, lower-scoring row never makes its kind look close."""
        best = self.best
        leaders = (_highest(row for row in self.table if row.ran and row.approach == kind) for kind in APPROACHES)
        return next(row for row in leaders if row is not None and not beats(best, row))

    @property
    def skipped(self) -> tuple:
        """The rows that did not run."""
        return tuple(row for row in self.table if not row.ran)

    @property
    def recommendation(self) -> str:
        return _recommend(self)

    # -- showing it ---------------------------------------------------------------------

    def to_frame(self):
        """The table as a pandas DataFrame, one row per approach.

        Columns: ``approach``, ``backbone``, ``unfreeze``, ``mean``,
        ``std``, ``seconds``, ``skipped`` (NaN scores and seconds for
        skipped rows). Needs pandas.

        Returns
        -------
        frame : pandas.DataFrame
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                'ComparisonResult.to_frame needs pandas: pip install "skptm[pandas]"; '
                "result.table holds the same rows without it."
            ) from exc
        rows = [(r.approach, r.backbone, r.unfreeze, r.mean, r.std, r.seconds, r.skipped) for r in self.table]
        columns = {name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)}
        text = ("approach", "backbone", "unfreeze", "skipped")  # None stays None; depths stay ints or names
        return pd.DataFrame(
            {name: pd.Series(values, dtype=object if name in text else float) for name, values in columns.items()}
        )

    def plot(self, *, ax=None):
        """A horizontal bar per approach: mean score ± standard deviation, with times.

        See :func:`skptm.plot.compare`. Needs matplotlib.

        Returns
        -------
        fig : matplotlib.figure.Figure
        """
        from . import plot

        return plot.compare(self, ax=ax)

    def format_table(self) -> str:
        """The table as text, one line per approach (what ``skptm compare`` prints)."""
        header = ("approach", "backbone", "unfreeze", self.scoring, "std", "seconds")
        rows = []
        for row in self.table:
            names = (row.approach, row.backbone or "", "" if row.unfreeze is None else str(row.unfreeze))
            if row.ran:
                seconds = "" if row.seconds is None else f"{row.seconds:.1f}"
                rows.append((*names, f"{row.mean:.3f}", f"{row.std:.3f}", seconds))
            else:
                rows.append((*names, f"skipped ({row.skipped})", "", ""))
        widths = [max(len(line[i]) for line in (header, *rows)) for i in range(len(header))]
        right = {3, 4, 5}

        def line(cells):
            text = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
            return "  ".join(text).rstrip()

        return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])

    def __str__(self):
        return f"{self.format_table()}\n\n{self.recommendation}"


def _highest(rows):
    """The row with the highest mean; the first of them on a tie (rows come cheapest first)."""
    best = None
    for row in rows:
        if best is None or row.mean > best.mean:
            best = row
    return best


def spread(a: ApproachScore, b: ApproachScore) -> float:
    """The folds' spread of two rows: the larger of their standard deviations."""
    return max(a.std, b.std)


def beats(a: ApproachScore, b: ApproachScore) -> bool:
    """Whether ``a`` scored higher than ``b`` beyond the folds' spread: its mean
    exceeds ``b``'s by more than the larger of their standard deviations."""
    return a.mean - b.mean > spread(a, b)


# -- the recommendation -------------------------------------------------------------------


def _recommend(result: ComparisonResult) -> str:
    """The paragraph, one sentence per finding, each from the table's numbers."""
    best, baseline, probe = result.best, result.baseline, result.best_probe
    sentences = [
        f"Best: {best.label}, {result.scoring} {best.mean:.3f} \N{PLUS-MINUS SIGN} {best.std:.3f} "
        f"over {len(best.scores)} folds in {_seconds(best)}."
    ]
    if result.random_weights:
        sentences.append(
            "The networks had random weights (weights=None): these scores show the pipeline working, "
            "not what pretrained features can do."
        )
    if probe is None:
        sentences.append("No linear probe ran, so whether a pretrained network helps was not measured.")
    else:
        sentences.append(_probe_against_pixels(probe, baseline, result.random_weights))
        sentences.append(_finetuning_against_probe(result, probe))
    sentences.append(_recommended(result))
    reasons = {}
    for row in result.skipped:
        reasons.setdefault(row.skipped, []).append(row.label)
    for reason, labels in reasons.items():
        budget = f" of {result.time_budget:g} s" if reason == TIME_BUDGET and result.time_budget is not None else ""
        again = " Run again with a larger time_budget to score them." if reason == TIME_BUDGET else ""
        sentences.append(f"Skipped for the {reason}{budget}, so not scored: {'; '.join(labels)}.{again}")
    return " ".join(sentences)


def _seconds(row):
    return "an unknown time" if row.seconds is None else f"{row.seconds:.0f} s"


def _difference(a, b):
    """``by 0.120 (0.870 against 0.750; the folds' spread is 0.040)``: ``a`` above ``b``."""
    return f"by {a.mean - b.mean:.3f} ({_against(a, b)})"


def _against(a, b):
    return f"{a.mean:.3f} against {b.mean:.3f}; the folds' spread is {spread(a, b):.3f}"


def _probe_against_pixels(probe, baseline, random_weights):
    if random_weights:  # random features say nothing of how far the images are from the training set
        verb = "beats" if beats(probe, baseline) else "does not beat"
        return f"The {probe.label} {verb} raw pixels beyond the folds' spread ({_against(probe, baseline)})."
    if beats(probe, baseline):
        return f"The network's features help: the {probe.label} beats raw pixels {_difference(probe, baseline)}."
    unlike = "Your images look unlike the network's training images:"
    if beats(baseline, probe):
        return f"{unlike} raw pixels beat the {probe.label} {_difference(baseline, probe)}."
    verdict = "barely beats" if probe.mean >= baseline.mean else "does not beat"
    return f"{unlike} the linear probe {verdict} raw pixels ({probe.label}: {_against(probe, baseline)})."


def _finetuning_against_probe(result, probe):
    rows = [row for row in result.table if row.approach == FINETUNING]
    if not rows:
        return "Fine-tuning was not tried (unfreeze=())."
    finetuned = result.best_finetuned
    if finetuned is None:
        return "Fine-tuning did not run, so whether it pays is not known."
    # The probe fine-tuning started from: the one on the same network.
    same = _highest(
        row for row in result.table if row.approach == PROBE and row.ran and row.backbone == finetuned.backbone
    )
    probe = same or probe
    if beats(finetuned, probe):
        return (
            f"Fine-tuning pays: {finetuned.label} beats the {probe.label} {_difference(finetuned, probe)}, "
            f"for {_seconds(finetuned)} against {_seconds(probe)}."
        )
    return (
        f"Fine-tuning did not beat the {probe.label} beyond the folds' spread (best: {finetuned.label}, "
        f"{_against(finetuned, probe)}): it is not worth its cost here."
    )


def _recommended(result):
    row = result.recommended
    regression = result.task == "regression"
    # Results pickled before these fields existed lack them.
    options = "".join(f", {name}={value!r}" for name, value in getattr(result, "network_options", {}).items())
    if row.approach == PIXELS:
        others = [r for r in result.table if r.ran and r.approach != PIXELS]
        if not others:
            return "Recommended: nothing yet; only raw pixels were scored."
        if result.random_weights:
            return (
                "Recommended: nothing from these scores: with random weights the networks' features say "
                "nothing of your images, so that no approach beats raw pixels beyond the folds' spread means "
                "nothing here. Run again with the pretrained weights (weights='imagenet', or --weights "
                "imagenet on the command line; skptm.fetch_weights or skptm fetch-weights fills the cache "
                "on a machine with internet access)."
            )
        return (
            "Recommended: raw pixels, as no pretrained approach here beats them beyond the folds' spread: "
            "a linear model on pixels may be all this task needs, or the networks need adapting to these "
            "images (fine-tuning deeper with a larger unfreeze, a larger input_size, more images; see "
            "'What ImageNet features are bad at' in the user guide)."
        )
    caution = (
        " These scores came from random weights (weights=None); the code builds the pretrained "
        "network, which was not scored: run compare again with its weights before relying on it."
        if result.random_weights
        else ""
    )
    if row.approach == PROBE:
        # The probe compare scored: RidgeCV over RIDGE_ALPHAS, LogisticRegression at its default C.
        model = "RidgeCV(alphas=np.logspace(-3, 5, 17))" if regression else "LogisticRegression(max_iter=2000)"
        return (
            f"Recommended: the {row.label}, the cheapest approach within the folds' spread of the best: "
            f'make_pipeline(PretrainedFeatureTransformer("{row.backbone}"{options}), StandardScaler(), {model}).'
            f"{caution}"
        )
    estimator = "FineTunedRegressor" if regression else "FineTunedClassifier"
    options += "".join(f", {name}={value!r}" for name, value in getattr(result, "finetune_options", {}).items())
    return (
        f"Recommended: {row.label}, which beats every cheaper approach beyond the folds' spread: "
        f'{estimator}("{row.backbone}", unfreeze={row.unfreeze!r}{options}).{caution}'
    )
