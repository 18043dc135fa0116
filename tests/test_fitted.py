"""What a fitted model computes (skptm/_fitted.py): an untrained backbone runs
the shared feature network and the head, equal to the whole model."""

import collections

import keras
import numpy as np

from skptm.networks import get_feature_network

from .conftest import LIGHT, assert_same_up_to_batching
from .test_finetune import classifier


def test_a_probe_predicts_as_its_whole_model_without_tracing_it(colours, monkeypatch):
    """unfreeze=0 leaves the backbone as the cache has it: predictions come from
    the shared feature network and the head, equal to the whole model's."""
    X, y = colours
    clf = classifier(backbone=LIGHT, weights=None, unfreeze=0).fit(X, y)
    traced = collections.Counter()
    predict_step = keras.Model.predict_step

    def counting_predict_step(self, data):
        traced[self.name] += 1
        return predict_step(self, data)

    monkeypatch.setattr(keras.Model, "predict_step", counting_predict_step)
    proba = clf.predict_proba(X)
    features = clf.transform(X)
    assert traced["skptm_finetuned"] == traced["skptm_finetuned_features"] == 0
    assert_same_up_to_batching(proba, clf.model_.predict(X, verbose=0), probabilities=True)
    assert_same_up_to_batching(
        features, get_feature_network(LIGHT, weights=None, input_size=32).model.predict(X, verbose=0)
    )


def test_a_probe_equals_standard_scaler_and_logistic_regression_on_the_transformers_features(colours):
    """unfreeze=0: the estimator is the linear probe a user would build, value for value."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skptm import FineTunedClassifier, PretrainedFeatureTransformer

    X, y = colours
    common = {"weights": None, "input_size": 32, "engine": "tensorflow"}
    probe = FineTunedClassifier(LIGHT, unfreeze=0, validation_fraction=None, random_state=0, **common).fit(X, y)
    by_hand = make_pipeline(
        PretrainedFeatureTransformer(LIGHT, **common), StandardScaler(), LogisticRegression(max_iter=2000)
    ).fit(X, y)
    np.testing.assert_allclose(probe.predict_proba(X), by_hand.predict_proba(X), rtol=0, atol=1e-6)
    assert list(probe.classes_) == list(by_hand.classes_)
