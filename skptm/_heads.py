"""The new head on pooled features, and the linear probe that fits it.

Phase 1 of fine-tuning trains the head on features computed once, so it can
be brought to convergence for almost nothing (linear probing, the "LP" of
LP-FT; Kumar et al., ICLR 2022). A linear head is solved by scikit-learn
itself on standardised features: multinomial ``LogisticRegression`` for
classes, ``RidgeCV`` for numbers. Its coefficients are copied into the Keras
head, whose first layer standardises with the same statistics, so the Keras
model computes exactly what the scikit-learn model does. A head with hidden
layers trains with Adam on the same standardised features until its loss
stops improving.
"""

from __future__ import annotations

import keras
import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.preprocessing import StandardScaler

from .networks.layers import FixedAffine

#: L2 penalties RidgeCV chooses from by efficient leave-one-out (on
#: standardised features: from almost none to very strong).
RIDGE_ALPHAS = tuple(np.logspace(-3, 5, 17))

#: Inverse L2 strength of the logistic probe: scikit-learn's default, on
#: standardised features (see the user guide's table for the measurements).
LOGISTIC_C = 1.0

#: Epochs without improvement before a hidden-layer head stops training.
HEAD_PATIENCE = 10


def build_head(n_features, hidden_units, dropout, n_outputs, activation, seed):
    """Standardisation, ``hidden_units`` ReLU layers, dropout, output layer."""
    layers = [keras.Input((n_features,)), FixedAffine(n_features, name="head_standardize")]
    for i, units in enumerate(hidden_units):
        layers.append(keras.layers.Dense(units, activation="relu", name=f"head_dense_{i}"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout, seed=seed, name="head_dropout"))
    layers.append(keras.layers.Dense(n_outputs, activation=activation, name="head_output"))
    return keras.Sequential(layers, name="head")


def pre_activation(head, features):
    """What ``head`` computes on ``features`` before its output activation, in
    inference mode (no dropout): a classifier's logits (before the softmax), a
    regressor's standardised outputs."""
    *body, output = head.layers  # the output layer last (build_head)
    x = features
    for layer in body:
        x = layer(x, training=False)
    return keras.ops.matmul(x, output.kernel) + output.bias


def set_standardization(head, features, sample_weight) -> None:
    """Set the head's entrance to standardise like ``StandardScaler`` on ``features``."""
    scaler = StandardScaler().fit(features, sample_weight=sample_weight)
    layer = head.get_layer("head_standardize")
    layer.set_weights([(1.0 / scaler.scale_).astype(np.float32), (-scaler.mean_ / scaler.scale_).astype(np.float32)])


def standardized(head, features) -> np.ndarray:
    """``features`` as the head's first layer sees them (float64)."""
    scale, offset = head.get_layer("head_standardize").get_weights()
    return features.astype(np.float64) * scale + offset


def fit_linear_probe(head, features, targets, sample_weight, *, classification, seed) -> None:
    """Solve a linear head with scikit-learn and copy it into ``head``'s output layer.

    ``targets`` are class indices ``0..n_outputs-1`` for a classification
    head, standardised values ``(n, n_outputs)`` otherwise.
    """
    z = standardized(head, features)
    output = head.get_layer("head_output")
    n_outputs = output.units
    if classification:
        probe = LogisticRegression(C=LOGISTIC_C, max_iter=2000, random_state=seed)
        probe.fit(z, targets, sample_weight=sample_weight)
        coef, intercept = probe.coef_, probe.intercept_
        if len(probe.classes_) == 2:  # one logit difference: softmax([0, t]) = sigmoid(t)
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.array([0.0, intercept[0]])
        kernel = np.zeros((z.shape[1], n_outputs))
        # A class absent from the training part gets a logit far below the others.
        bias = np.full(n_outputs, intercept.min() - 30.0)
        kernel[:, probe.classes_] = coef.T
        bias[probe.classes_] = intercept
    else:
        probe = RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True)
        probe.fit(z, targets, sample_weight=sample_weight)
        kernel = probe.coef_.reshape(n_outputs, -1).T
        bias = np.reshape(probe.intercept_, n_outputs)
    output.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
