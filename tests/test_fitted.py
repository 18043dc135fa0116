"""What a fitted model computes (skptm/_fitted.py): an untrained backbone runs
the shared feature network and the head, equal to the whole model."""

import collections

import keras

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
