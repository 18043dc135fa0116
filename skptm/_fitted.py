"""What a fitted fine-tuned model computes, and what its pickle holds.

* Predictions and features run through the transformer's extraction loop,
  with the engine and precision the model fixed at the end of ``fit``
  (:func:`inference_choice`). A model whose backbone was not trained (no
  layer unfrozen) runs the shared feature network, already traced or
  converted in this process, and then its head. With test-time views
  (``tta``), the model runs on every view and averages its outputs
  (probabilities, standardised targets or features).
* A pickle holds only the weights training changed, and the base weights'
  fingerprint (:func:`export_state`, :func:`import_state`).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from ._features import extract_features, make_source, predict_padded
from ._finetune import Task, feature_network, new_model
from ._tta import parse_tta
from ._unfreeze import layer_at
from .engines import prepare
from .engines.decision import Choice
from .networks import FeatureNetwork, TrainedModel, fingerprint
from .networks.views import with_views


def inference_choice(params, network: FeatureNetwork, n_items: int) -> Choice:
    """The engine and precision a model fitted on ``n_items`` items predicts with,
    fixed at the end of ``fit`` (see :func:`skptm.engines.decision.choose_for_fitted`)."""
    from .engines.decision import choose_for_fitted

    if not network.takes_images:
        return Choice("tensorflow", network.precision, "tabular backbone")
    return choose_for_fitted(
        params["engine"],
        params["precision"],
        params["backbone"],
        params["input_size"],
        trained_precision=network.precision,
        n_items=n_items,
    )


def _runner(model, network: FeatureNetwork, feature_names) -> FeatureNetwork:
    return dataclasses.replace(network, model=model, feature_names=tuple(feature_names))


def predict_outputs(trained: TrainedModel, network: FeatureNetwork, X, params, choice: Choice, on_error="raise"):
    """What the loss sees for ``X`` (probabilities, or standardised targets), by
    the transformer's extraction loop; the regressor maps them back in float64.

    A model whose backbone was not trained (no layer unfrozen: a linear probe,
    or ``finetune_epochs=0``) computes its features with the shared feature
    network, which this process has already traced (or converted), then its
    head: the same arithmetic as the whole model, without tracing or
    converting a new network for each fitted estimator.
    """
    views = parse_tta(params.get("tta"))
    if not trained.unfrozen and not views:
        return _head_outputs(trained.head, _run(network, X, params, choice, on_error), params["batch_size"])
    names = [f"out_{i}" for i in range(trained.trainee.outputs[0].shape[-1])]
    model = _with_views(trained, "trainee", views)
    return _run(_runner(model, network, names), X, params, choice, on_error).astype(np.float64)


def transform_features(trained: TrainedModel, network: FeatureNetwork, X, params, choice: Choice, on_error="raise"):
    """The pooled features of the fine-tuned backbone: what the head sees."""
    if not trained.unfrozen:  # the shared network's own features (see predict_outputs)
        if params.get("tta") is not None:  # the cached network with those views
            network = feature_network(params, tta=params["tta"])
        return _run(network, X, params, choice, on_error)
    views = parse_tta(params.get("tta"))
    model = _with_views(trained, "features", views)
    return _run(_runner(model, network, network.feature_names), X, params, choice, on_error)


def _with_views(trained: TrainedModel, part: str, views):
    """``trained``'s ``part`` model on test-time ``views``: one wrapper per fitted
    model, part and views, so that repeated calls reuse what was traced or converted."""
    model = getattr(trained, part)
    if not views:
        return model
    key = ("views", part, views)
    if key not in trained.traced:
        trained.traced[key] = with_views(model, views)
    return trained.traced[key]


class _EagerHead:
    """The head as :func:`~skptm._features.predict_padded` calls a network:
    eagerly (a few matrix products, no function to trace)."""

    def __init__(self, head):
        self.head = head

    def predict(self, batch):
        return keras.ops.convert_to_numpy(self.head(batch, training=False))


def _head_outputs(head, features, batch_size) -> np.ndarray:
    """``head`` on precomputed features, in the padded batches the whole model
    would see (so rows move no more than :data:`~skptm._features.BATCHING_RTOL`
    between calls); rows of NaN (unreadable images) stay NaN."""
    runner = _EagerHead(head)
    outputs = [
        predict_padded(runner, features[start : start + batch_size], batch_size)
        for start in range(0, len(features), batch_size)
    ]
    return np.concatenate(outputs).astype(np.float64) if outputs else np.empty((0, head.outputs[0].shape[-1]))


def _run(runner, X, params, choice, on_error):
    source = make_source(runner, X, resize=params["resize"], interpolation=params["interpolation"])
    if runner.takes_images:
        runner = prepare(runner, choice.engine, choice.precision)
    return extract_features(
        runner,
        source,
        batch_size=params["batch_size"],
        n_jobs=params["n_jobs"],
        on_error=on_error,
        verbose=params["verbose"],
    )


# -- slim pickles ------------------------------------------------------------------------------


def export_state(trained: TrainedModel, network: FeatureNetwork) -> dict:
    """What a pickle needs: the weights training changed, and the base's fingerprint."""
    return {
        "head": trained.head.get_weights(),
        "unfrozen": trained.unfrozen,
        "unfrozen_weights": {path: layer_at(trained.base, path).get_weights() for path in trained.unfrozen},
        "base_fingerprint": fingerprint(network.base),
    }


def import_state(state: dict, params, task: Task) -> tuple[TrainedModel, FeatureNetwork]:
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
    trained = new_model(network, params, task, seed=0)
    trained.head.set_weights(state["head"])
    for path, weights in state["unfrozen_weights"].items():
        layer_at(trained.base, path).set_weights(weights)
    trained.unfrozen = tuple(state["unfrozen"])
    return trained, network
