"""The one two-phase training core behind FineTunedClassifier and FineTunedRegressor.

Linear probing, then fine-tuning (LP-FT; Kumar et al., "Fine-Tuning can
Distort Pretrained Features and Underperform Out-of-Distribution", ICLR 2022):

1. **Head phase (linear probe).** The backbone is frozen, so its pooled
   features are computed once, by the transformer's extraction loop. The new
   head is brought to convergence on them: a linear head is solved by
   scikit-learn on standardised features (:mod:`skptm._heads`); a head with
   hidden layers trains with Adam until its loss stops improving.
2. **Fine-tuning phase.** Starting from that converged head, the model is
   recompiled at a lower learning rate and the top ``unfreeze`` layers of the
   backbone train with the head, on image batches streamed from the source
   (augmented, if asked). Since the gradients reaching the backbone come from
   a head that already fits, they adapt the pretrained features instead of
   scrambling them. With a validation split the weights with the lowest
   validation loss are kept, the head-only model included: fine-tuning never
   leaves the model worse on held-out data than phase 1 did.

BatchNormalization layers are never unfrozen and always run in inference
mode (the backbone is called with ``training=False``), so their moving
statistics are never touched.

Training always happens on a private copy of the backbone; the cached
network is never modified, and the estimator's fitted attributes are only
assigned once both phases have finished (see ``BaseFineTuned.fit``).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import keras
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._batches import ItemSource, decode_once, default_n_threads
from ._features import extract_features, make_source
from ._heads import HEAD_PATIENCE, build_head, fit_linear_probe, set_standardization
from ._layer_decay import LayerDecayAdam, learning_rate_multipliers
from ._unfreeze import select_unfrozen, set_trainable
from .engines import get_engine, prepare
from .engines.decision import choose
from .networks import (
    FeatureNetwork,
    TrainedModel,
    assemble,
    get_feature_network,
    quiet_retracing_warnings,
    reinitialize_random_weights,
)
from .networks.precision import dtype_policy_scope


@dataclass(frozen=True)
class Task:
    """What the estimator asks of the training core.

    ``output_affine`` is ``(scale, offset)`` for a regressor trained on
    standardised targets: the model it returns maps back to the targets'
    units. ``None`` for a classifier.
    """

    n_outputs: int
    activation: str | None
    loss: str
    metrics: tuple
    classification: bool
    output_affine: tuple | None = None


# -- data ----------------------------------------------------------------------------------


class StreamedBatches(keras.utils.PyDataset):
    """Training batches read from a source, reshuffled every epoch by our own RNG."""

    def __init__(self, source, indices, targets, weights, batch_size, *, shuffle, seed, pool):
        super().__init__()
        self.source = source
        self.indices = np.asarray(indices)
        self.targets = targets
        self.weights = weights
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.pool = pool
        self.order = self._new_order()
        # Items read one by one (files, PIL images, lists) give uint8 batches
        # unless one is 16-bit or float; a stacked array's batches share a dtype.
        self.mixed_dtypes = type(source) is ItemSource

    def _new_order(self):
        positions = np.arange(len(self.indices))
        return self.rng.permutation(positions) if self.shuffle else positions

    def __len__(self):
        return -(-len(self.indices) // self.batch_size)

    def __getitem__(self, i):
        positions = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        rows = self.indices[positions]
        if isinstance(self.source, np.ndarray):  # precomputed features
            x = self.source[rows]
        else:  # images, through the same reading as transform's
            batch = self.source.submit(self.pool, rows)()
            batch.raise_first_failure()
            x = batch.data
            if self.mixed_dtypes:  # Keras fixes the input dtype from the first batch
                x = x.astype(np.float32, copy=False)
        return x, self.targets[rows], self.weights[rows]

    def on_epoch_end(self):
        self.order = self._new_order()


class KeepBest(keras.callbacks.Callback):
    """Keep the trainable weights with the lowest ``monitor``, and restore them.

    With a ``baseline`` (the head-only model's validation loss), the starting
    weights are a candidate too, so training can only improve the monitored
    loss. With ``patience``, training stops after that many epochs without
    improvement. If every epoch diverged (its loss NaN or infinite), the
    starting weights are restored, with a ``ConvergenceWarning`` naming
    ``learning_rate_name``, whatever the baseline.
    """

    def __init__(self, monitor, baseline=None, patience=None, learning_rate_name="finetune_learning_rate"):
        super().__init__()
        self.monitor = monitor
        self.baseline = baseline
        self.patience = patience
        self.learning_rate_name = learning_rate_name

    def _snapshot(self):
        return [v.numpy() for v in self.model.trainable_variables]  # convert_to_numpy warns on NumPy 2

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.best_epoch = None
        self.finite_epochs = self.seen_epochs = 0
        self.best = np.inf if self.baseline is None else self.baseline
        self.start_weights = self._snapshot()
        self.best_weights = None if self.baseline is None else self.start_weights

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        self.seen_epochs += value is not None
        if value is not None and np.isfinite(value):
            self.finite_epochs += 1
            self.start_weights = None  # not needed as a fallback any more: free it
        if value is not None and np.isfinite(value) and value < self.best:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_weights = self._snapshot()
            return
        self.wait += 1
        if self.patience is not None and self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.seen_epochs and not self.finite_epochs:
            warnings.warn(
                f"Every epoch diverged ({self.monitor} NaN or infinite), so the weights from before "
                f"them are kept. Lower {self.learning_rate_name}.",
                ConvergenceWarning,
                stacklevel=2,
            )
            self.best_weights = self.start_weights
        if self.best_weights is not None:
            for variable, value in zip(self.model.trainable_variables, self.best_weights, strict=True):
                variable.assign(value)


# -- the two phases ------------------------------------------------------------------------


def train(params, X, targets, sample_weight, *, task: Task, validation_split, callbacks):
    """Run both phases and return ``(TrainedModel, history, n_epochs, network)``.

    ``params`` is the estimator's parameter dict; ``targets`` are class
    indices, or standardised values for a regressor (``task.output_affine``
    maps back). ``validation_split`` is a function ``(n_samples, seed) ->
    (train_idx, val_idx or None)``.
    """
    seed = derive_seed(params["random_state"])
    network = feature_network(params)
    source = make_source(network, X, resize=params["resize"], interpolation=params["interpolation"])
    n = len(source)
    if n != len(targets):
        raise ValueError(f"X has {n} items but y has {len(targets)}.")
    # The head phase computes features as the transformer with the same
    # parameters does (same engine and precision), so their feature cache
    # entries are shared; phase 2 trains the Keras network itself.
    probe_network = head_phase_network(params, network, n)
    train_idx, val_idx = validation_split(n, seed)
    _check_weights_on_each_side(sample_weight, train_idx, val_idx, params)
    unfrozen = select_unfrozen(network.base, params["unfreeze"]) if params["finetune_epochs"] else ()
    trained = new_model(network, params, task, seed)
    trained.unfrozen = unfrozen
    if unfrozen:  # read files once per fit, not once per epoch
        source = decode_once(source, params["batch_size"], params["n_jobs"])
    with ThreadPoolExecutor(default_n_threads(params["n_jobs"]), thread_name_prefix="skptm-train") as pool:
        session = _Session(params, task, network, targets, sample_weight, train_idx, val_idx, seed, pool, callbacks)
        features = extract_features(
            probe_network,
            source,
            batch_size=params["batch_size"],
            n_jobs=params["n_jobs"],
            verbose=params["verbose"],
            cache=params["cache"],
        )
        _fit_head(session, trained.head, features)
        if unfrozen:
            _fine_tune(session, trained, source, features)
        else:
            session.history["finetune"], session.n_epochs["finetune"] = {}, 0
    return trained, session.history, session.n_epochs, network


def new_model(network, params, task, seed) -> TrainedModel:
    """The model to train: a new head, seeded per weight, on a private copy of
    ``network``'s backbone, assembled from ``network``'s own blueprint.

    The head computes in float32 whatever policy the user set (the backbone
    copy keeps the precision it was built in).
    """
    with dtype_policy_scope("float32"):
        head = build_head(
            network.n_features, params["hidden_units"], params["dropout"], task.n_outputs, task.activation, seed
        )
    reinitialize_random_weights(head, seed)  # seeded per weight, not from global random
    blueprint = dataclasses.replace(
        network.blueprint, head=head, augment=params["augment"], seed=seed, output_affine=task.output_affine
    )
    return assemble(blueprint)


#: The metric objects each metric name of a :class:`Task` stands for.
_METRICS = {"accuracy": lambda: keras.metrics.SparseCategoricalAccuracy(name="accuracy")}


def metric_objects(names) -> list:
    """New metric objects for ``names``, for one ``compile``.

    Keras makes the metrics named by a string, and the optimiser's slots,
    while tracing the first training or test step; TensorFlow traces a
    function that created variables a second time. Made (and the optimiser
    built) before, each step is traced once: a fit of a small network costs
    seconds less.
    """
    return [_METRICS[name]() for name in names]


@dataclass
class _Session:
    """What both phases of one fit share: data, split, seed, the decoding pool,
    the user's callbacks, and the history they fill."""

    params: dict
    task: Task
    network: FeatureNetwork
    targets: np.ndarray
    sample_weight: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray | None
    seed: int
    pool: ThreadPoolExecutor
    callbacks: list | None
    history: dict = field(default_factory=dict)
    n_epochs: dict = field(default_factory=dict)

    @property
    def monitor(self) -> str:
        return "val_loss" if self.val_idx is not None else "loss"

    def batches(self, inputs, indices, shuffle):
        return StreamedBatches(
            inputs,
            indices,
            self.targets,
            self.sample_weight,
            self.params["batch_size"],
            shuffle=shuffle,
            seed=self.seed,
            pool=self.pool,
        )

    def evaluate(self, model, inputs, indices) -> dict:
        with quiet_retracing_warnings():
            return model.evaluate(self.batches(inputs, indices, False), verbose=0, return_dict=True)

    def fit(self, name, trainee, inputs, epochs, learning_rate, keep_best, multipliers=None) -> None:
        """Compile ``trainee`` and train it on ``inputs``; record phase ``name``.

        ``multipliers``: ``{id(variable): factor}`` of the learning rate
        (layer-wise decay), or ``None``.
        """
        optimizer = LayerDecayAdam(learning_rate, multipliers) if multipliers else keras.optimizers.Adam(learning_rate)
        if self.network.precision == "float16":  # float16 gradients underflow without it
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        trainee.compile(optimizer=optimizer, loss=self.task.loss, metrics=metric_objects(self.task.metrics))
        optimizer.build(trainee.trainable_variables)  # see metric_objects
        # Keras attaches the model to every callback: give it copies, so that
        # the user's callbacks (an estimator parameter) never hold a trained
        # model. State they record in shared lists stays visible.
        phase_callbacks = [copy.copy(callback) for callback in self.callbacks or ()]
        phase_callbacks.append(keep_best)
        validation = self.batches(inputs, self.val_idx, False) if self.val_idx is not None else None
        with quiet_retracing_warnings():
            result = trainee.fit(
                self.batches(inputs, self.train_idx, True),
                validation_data=validation,
                epochs=epochs,
                shuffle=False,
                callbacks=phase_callbacks,
                verbose=2 if self.params["verbose"] >= 2 else 0,
            )
        self.history[name] = _as_floats(result.history)
        self.n_epochs[name] = len(result.history.get("loss", []))


def _check_weights_on_each_side(sample_weight, train_idx, val_idx, params) -> None:
    """A side of the validation split whose images all weigh zero would learn
    nothing, or choose the epoch kept on a loss of 0: say so before any work."""
    for side, indices, consequence in (
        ("training", train_idx, "nothing would be learned"),
        ("validation", val_idx, "its loss, which chooses the epoch kept, would be 0 for every epoch"),
    ):
        if indices is not None and len(indices) and not np.any(np.asarray(sample_weight)[indices] > 0):
            raise ValueError(
                f"The sample weights are zero for every image on the {side} side of the validation split "
                f"(validation_fraction={params['validation_fraction']!r}): {consequence}. Give some of them "
                "weight, or choose another random_state or validation_fraction."
            )


def _fit_head(session: _Session, head, features) -> None:
    """Phase 1: the head on features computed once (solved exactly when linear)."""
    params, train_idx, val_idx = session.params, session.train_idx, session.val_idx
    set_standardization(head, features[train_idx], session.sample_weight[train_idx])
    if not params["head_epochs"]:
        session.history["head"], session.n_epochs["head"] = {}, 0
    elif params["hidden_units"]:
        keep_best = KeepBest(session.monitor, patience=HEAD_PATIENCE, learning_rate_name="learning_rate")
        session.fit("head", head, features, params["head_epochs"], params["learning_rate"], keep_best)
    else:
        fit_linear_probe(
            head,
            features[train_idx],
            session.targets[train_idx],
            session.sample_weight[train_idx],
            classification=session.task.classification,
            seed=session.seed,
        )
        head.compile(loss=session.task.loss, metrics=metric_objects(session.task.metrics))
        history = {key: [float(value)] for key, value in session.evaluate(head, features, train_idx).items()}
        if val_idx is not None:
            validation = session.evaluate(head, features, val_idx)
            history.update({f"val_{key}": [float(value)] for key, value in validation.items()})
        session.history["head"], session.n_epochs["head"] = history, 1


def _fine_tune(session: _Session, trained: TrainedModel, source, features) -> None:
    """Phase 2: unfreeze the top layers, recompile, train at a lower rate,
    keeping the best weights (the head-only model included) by validation loss."""
    params = session.params
    baseline = None
    if session.val_idx is not None:  # the head-only model is a candidate
        trained.head.compile(loss=session.task.loss)
        baseline = session.evaluate(trained.head, features, session.val_idx)["loss"]
    keep_best = KeepBest(
        session.monitor, baseline=baseline, patience=params["patience"] if params["early_stopping"] else None
    )
    set_trainable(trained.base, trained.unfrozen)
    steps_per_epoch = -(-len(session.train_idx) // params["batch_size"])
    schedule = warmup_cosine(params["finetune_learning_rate"], params["finetune_epochs"], steps_per_epoch)
    decay = params.get("layer_decay")
    multipliers = learning_rate_multipliers(trained.base, trained.unfrozen, decay) if decay else None
    session.fit("finetune", trained.trainee, source, params["finetune_epochs"], schedule, keep_best, multipliers)
    set_trainable(trained.base, ())


def warmup_cosine(learning_rate, epochs, steps_per_epoch):
    """Phase 2's learning rate: a linear warm-up from 0 over the first epoch,
    then a cosine decay to 0 by the last.

    Adam's first full-size steps from a converged head, before its moment
    estimates settle, knock the head and the backbone off their optimum.
    Measured (the user guide's table): against a constant rate, it helps far
    from photos and keeps fine-tuning from hurting a network that learned
    nothing, where a constant rate cost 1.3 to 1.8 points (MobileNetV2 with
    random weights, 48 px: the user guide's schedule table).
    """
    total = epochs * steps_per_epoch
    warmup = min(steps_per_epoch, total - 1)
    return keras.optimizers.schedules.CosineDecay(
        0.0, max(1, total - warmup), warmup_target=learning_rate, warmup_steps=warmup
    )


def _as_floats(history):
    return {key: [float(value) for value in values] for key, values in history.items()}


def training_precision(params) -> str:
    """What the Keras network trains in: the precision the TensorFlow engine
    is decided to run for these parameters."""
    return choose(
        "tensorflow", params["precision"], params["backbone"], params["input_size"], weights=params["weights"]
    ).precision


def feature_network(params, tta=None) -> FeatureNetwork:
    """The cached Keras feature network (pooled backbone) training starts from;
    with ``tta``, the same network averaging over those test-time views."""
    return get_feature_network(
        params["backbone"],
        weights=params["weights"],
        input_size=params["input_size"],
        pooling=params["pooling"],
        preprocessing=params["preprocessing"],
        precision=training_precision(params),
        tta=tta,
    )


def head_phase_network(params, network: FeatureNetwork, n_items: int) -> FeatureNetwork:
    """The network the head phase computes features with: what a
    :class:`~skptm.PretrainedFeatureTransformer` with these parameters runs."""
    if not network.takes_images:
        return network
    choice = choose(
        params["engine"],
        params["precision"],
        params["backbone"],
        params["input_size"],
        weights=params["weights"],
        n_items=n_items,
    )
    built = get_feature_network(
        params["backbone"],
        weights=params["weights"],
        input_size=params["input_size"],
        pooling=params["pooling"],
        preprocessing=params["preprocessing"],
        precision=get_engine(choice.engine).network_precision(choice.precision),
    )
    return prepare(built, choice.engine, choice.precision)


def derive_seed(random_state) -> int:
    """One integer seed for every random part of a fit, from ``random_state``."""
    return int(check_random_state(random_state).randint(0, 2**31 - 1))
