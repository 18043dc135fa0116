"""The one two-phase training core behind FineTunedClassifier and FineTunedRegressor.

The recipe is the Keras transfer-learning guide's, done right:

1. **Head phase.** The whole backbone is frozen and a new head (optional
   hidden ``Dense`` layers, ``Dropout``, output layer) is trained with Adam.
   Without augmentation the frozen backbone gives the same output every
   epoch, so the pooled features are computed once, by the transformer's
   extraction loop, and the head trains on them: epochs cost nothing.
2. **Fine-tuning phase.** The model is recompiled with a lower learning rate
   and the top ``unfreeze`` layers of the backbone train with the head, on
   image batches streamed from disk.

BatchNormalization layers are never unfrozen and always run in inference
mode (the backbone is called with ``training=False``), so their moving
statistics are never touched.

Training always happens on a private copy of the backbone; the cached
network is never modified, and the estimator's fitted attributes are only
assigned once both phases have finished (see ``BaseFineTuned.fit``).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from ._batches import ArraySource, TableSource
from ._features import extract_features, make_source
from ._networks import (
    FeatureNetwork,
    ImagePreprocessing,
    fingerprint,
    get_feature_network,
    get_layer,
    global_pool,
    quiet_retracing_warnings,
    seeded_python_random,
)

LIGHT_AUGMENTATION = "light"


# -- the model ------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A fine-tuned model and the names needed to rebuild or slim it down."""

    model: object  # keras.Model: raw input -> outputs
    base: object  # the private backbone copy inside ``model``
    head: object  # keras.Sequential on pooled features
    unfrozen: tuple  # names of the backbone layers trained in phase 2


def build_model(network: FeatureNetwork, pooling, head, augment, seed, *, copy_base):
    """A trainable model: [augment] -> preprocessing -> backbone -> pool -> head.

    With ``copy_base`` the backbone is a private copy of ``network.base``
    (same weights), to be unfrozen and trained without touching the
    per-process cache. Without it, the cached backbone is shared: it is
    frozen, so training the head leaves it as it is, and no copy is paid for.
    """
    if copy_base:
        base = keras.models.clone_model(network.base)
        base.set_weights(network.base.get_weights())
    else:
        base = network.base
    base.trainable = False
    if network.takes_images:
        inputs = keras.Input((*network.input_size, 3), name="rgb_0_255")
        x = inputs
        augmentation = make_augmentation(augment, seed)
        if augmentation is not None:
            x = augmentation(x)
        if network.preprocessing != "none":
            x = ImagePreprocessing(network.preprocessing, name="preprocessing")(x)
        x, _ = global_pool(base(x, training=False), pooling)
    else:
        inputs = keras.Input((network.n_input_features,), name="table")
        x = base(inputs, training=False)
    model = keras.Model(inputs, head(x), name="skptm_finetuned")
    return base, model


def build_head(n_features, hidden_units, dropout, n_outputs, activation, seed):
    layers = [keras.Input((n_features,))]
    for i, units in enumerate(hidden_units):
        layers.append(keras.layers.Dense(units, activation="relu", name=f"head_dense_{i}"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout, seed=seed, name="head_dropout"))
    layers.append(keras.layers.Dense(n_outputs, activation=activation, name="head_output"))
    return keras.Sequential(layers, name="head")


def make_augmentation(augment, seed):
    """``None``, the ``"light"`` preset, or the user's Keras layer."""
    if augment is None:
        return None
    if isinstance(augment, str):
        if augment != LIGHT_AUGMENTATION:
            raise ValueError(f"augment must be None, 'light' or a Keras layer. Received: augment={augment!r}")
        return keras.Sequential(
            [
                keras.layers.RandomFlip("horizontal", seed=seed),
                keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 1),
                keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 2),
                keras.layers.RandomContrast(0.1, value_range=(0, 255), seed=seed + 3),
            ],
            name="augmentation",
        )
    return augment


def select_unfrozen(base, unfreeze) -> tuple:
    """Names of the backbone layers to train in phase 2.

    ``unfreeze``: an int N (the top N layers that carry weights, not counting
    BatchNormalization), ``"all"``, or the name of the lowest layer to
    unfreeze (it and every weighted layer above it).
    """
    candidates = [
        layer
        for layer in base.layers
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    if isinstance(unfreeze, str) and unfreeze != "all":
        lowest = base.layers.index(get_layer(base, unfreeze, parameter="unfreeze"))
        position = {layer.name: i for i, layer in enumerate(base.layers)}
        return tuple(layer.name for layer in candidates if position[layer.name] >= lowest)
    if unfreeze == "all":
        return tuple(layer.name for layer in candidates)
    return tuple(layer.name for layer in candidates[max(0, len(candidates) - unfreeze) :]) if unfreeze else ()


def set_trainable(base, names) -> None:
    """Make exactly ``names`` trainable in ``base``; BatchNormalization stays frozen."""
    base.trainable = bool(names)
    chosen = set(names)
    for layer in base.layers:
        layer.trainable = layer.name in chosen


# -- data ----------------------------------------------------------------------------------


def read_rows(source, indices, pool=None) -> np.ndarray:
    """The decoded inputs of ``source`` at ``indices``; an unreadable one raises."""
    if isinstance(source, TableSource):
        return np.asarray(source.items[indices], dtype=np.float32)
    if isinstance(source, ArraySource):
        stack = source.read_stack(source.items[indices])
        if stack is not None:
            return stack
    data = np.empty((len(indices), *source.reader.size, 3), dtype=np.float32)
    slots = range(len(indices))
    if pool is not None:
        failures = list(pool.map(lambda k: source.read_into(indices[k], data[k]), slots))
    else:
        failures = [source.read_into(indices[k], data[k]) for k in slots]
    for failure in failures:
        if failure is not None:
            raise failure.error() from failure.cause
    return data


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
        else:
            x = read_rows(self.source, rows, self.pool)
        return x, self.targets[rows], self.weights[rows]

    def on_epoch_end(self):
        self.order = self._new_order()


# -- the two phases ------------------------------------------------------------------------


def train(
    params,
    X,
    targets,
    sample_weight,
    *,
    n_outputs,
    activation,
    loss,
    metrics,
    validation_split,
    callbacks,
):
    """Run both phases and return ``(TrainedModel, history, n_epochs, network)``.

    ``params`` is the estimator's parameter dict. ``validation_split`` is a
    function ``(n_samples, rng_seed) -> (train_idx, val_idx or None)``.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ._batches import default_n_threads

    seed = _seed(params["random_state"])
    network = feature_network(params)
    source = make_source(network, X, resize=params["resize"], interpolation=params["interpolation"])
    n = len(source)
    if n != len(targets):
        raise ValueError(f"X has {n} items but y has {len(targets)}.")
    train_idx, val_idx = validation_split(n, seed)
    history, n_epochs = {}, {}

    unfrozen = select_unfrozen(network.base, params["unfreeze"]) if params["finetune_epochs"] else ()
    with seeded_python_random(seed):  # Keras draws default initializer seeds from it
        head = build_head(
            network.n_features, params["hidden_units"], params["dropout"], n_outputs, activation, seed
        )
        base, model = build_model(
            network, params["pooling"], head, params["augment"], seed, copy_base=bool(unfrozen)
        )
    batch_size = params["batch_size"]

    with ThreadPoolExecutor(default_n_threads(params["n_jobs"]), thread_name_prefix="skptm-train") as pool:

        def data(inputs, indices, shuffle):
            return StreamedBatches(
                inputs, indices, targets, sample_weight, batch_size,
                shuffle=shuffle, seed=seed, pool=pool,
            )

        def fit_phase(name, trainee, inputs, epochs, learning_rate):
            trainee.compile(
                optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics
            )
            validation = data(inputs, val_idx, False) if val_idx is not None else None
            phase_callbacks = list(callbacks or [])
            if params["early_stopping"]:
                phase_callbacks.append(
                    keras.callbacks.EarlyStopping(
                        monitor="val_loss" if validation is not None else "loss",
                        patience=params["patience"],
                        restore_best_weights=True,
                    )
                )
            with quiet_retracing_warnings():
                result = trainee.fit(
                    data(inputs, train_idx, True),
                    validation_data=validation,
                    epochs=epochs,
                    shuffle=False,
                    callbacks=phase_callbacks,
                    verbose=2 if params["verbose"] >= 2 else 0,
                )
            history[name] = {key: [float(v) for v in values] for key, values in result.history.items()}
            n_epochs[name] = len(result.history.get("loss", []))

        # Phase 1: head on a frozen backbone.
        if params["head_epochs"]:
            if params["augment"] is None:
                features = extract_features(
                    network, source, batch_size=batch_size, n_jobs=params["n_jobs"],
                    verbose=params["verbose"],
                )
                fit_phase("head", head, features, params["head_epochs"], params["learning_rate"])
            else:
                fit_phase("head", model, source, params["head_epochs"], params["learning_rate"])
        else:
            history["head"], n_epochs["head"] = {}, 0

        # Phase 2: unfreeze the top layers, recompile, train at a lower rate.
        if unfrozen:
            set_trainable(base, unfrozen)
            fit_phase(
                "finetune", model, source, params["finetune_epochs"], params["finetune_learning_rate"]
            )
            set_trainable(base, ())
        else:
            history["finetune"], n_epochs["finetune"] = {}, 0

    return TrainedModel(model, base, head, unfrozen), history, n_epochs, network


def feature_network(params) -> FeatureNetwork:
    """The cached feature network (pooled backbone) for an estimator's parameters."""
    return get_feature_network(
        params["backbone"],
        weights=params["weights"],
        input_size=params["input_size"],
        pooling=params["pooling"],
        preprocessing=params["preprocessing"],
    )


def _seed(random_state):
    if random_state is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    return int(random_state)


def predict_outputs(trained: TrainedModel, network: FeatureNetwork, X, params):
    """Run the trained model over ``X`` with the transformer's extraction loop."""
    runner = FeatureNetwork(
        trained.model,
        trained.base,
        network.takes_images,
        network.input_size,
        network.n_input_features,
        tuple(f"out_{i}" for i in range(trained.model.outputs[0].shape[-1])),
        network.preprocessing,
    )
    source = make_source(runner, X, resize=params["resize"], interpolation=params["interpolation"])
    return extract_features(
        runner, source, batch_size=params["batch_size"], n_jobs=params["n_jobs"], verbose=params["verbose"]
    ).astype(np.float64)


# -- slim pickles ------------------------------------------------------------------------------


def export_state(trained: TrainedModel, network: FeatureNetwork) -> dict:
    """What a pickle needs: the weights training changed, and the base's fingerprint."""
    base_layers = {name: trained.base.get_layer(name).get_weights() for name in trained.unfrozen}
    return {
        "head": trained.head.get_weights(),
        "unfrozen": trained.unfrozen,
        "unfrozen_weights": base_layers,
        "base_fingerprint": fingerprint(network.base),
    }


def import_state(state: dict, params, n_outputs, activation) -> tuple[TrainedModel, FeatureNetwork]:
    """Rebuild a trained model from :func:`export_state` output and parameters."""
    network = feature_network(params)
    found = fingerprint(network.base)
    if found != state["base_fingerprint"]:
        raise ValueError(
            f"The base weights of backbone {params['backbone']!r} (weights="
            f"{params['weights']!r}) in this process differ from those the estimator was "
            "trained on (fingerprint mismatch). Load it where the same weights are "
            "available: the same Keras ImageNet file or the same weights file."
        )
    seed = 0
    with seeded_python_random(seed):
        head = build_head(
            network.n_features, params["hidden_units"], params["dropout"], n_outputs, activation, seed
        )
        base, model = build_model(
            network, params["pooling"], head, params["augment"], seed,
            copy_base=bool(state["unfrozen"]),
        )
    head.set_weights(state["head"])
    for name, weights in state["unfrozen_weights"].items():
        base.get_layer(name).set_weights(weights)
    return TrainedModel(model, base, head, tuple(state["unfrozen"])), network
