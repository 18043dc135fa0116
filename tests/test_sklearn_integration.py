"""The transformer inside real scikit-learn meta-estimators."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skptm import PretrainedFeatureTransformer

from .conftest import LIGHT, LIGHT_2, SIZE


def extractor(**params):
    return PretrainedFeatureTransformer(
        **{"backbone": LIGHT, "weights": None, "input_size": SIZE, "batch_size": 8, **params}
    )


def test_pipeline_to_logistic_regression(image_set, tmp_path):
    X, y = image_set
    pipe = make_pipeline(extractor(), StandardScaler(), LogisticRegression(max_iter=1000))
    pipe.fit(X[:16], y[:16])
    assert pipe.score(X[16:], y[16:]) >= 0.75  # two colour classes, even on random weights
    assert pipe.predict(list(X[16:])).shape == (8,)


def test_pipeline_to_kmeans(image_set):
    X, y = image_set
    pipe = make_pipeline(extractor(), StandardScaler(), KMeans(n_clusters=2, n_init=5, random_state=0))
    labels = pipe.fit_predict(X)
    assert labels.shape == (len(X),)
    assert adjusted_rand_score(y, labels) > 0.5


@pytest.mark.parametrize(
    "n_jobs",
    [1, pytest.param(2, marks=pytest.mark.exhaustive)],  # worker processes: slow, in the second tier (.ci/run)
    ids=["in-process", "worker-processes"],
)
def test_cross_val_score(image_set, n_jobs):
    X, y = image_set
    pipe = make_pipeline(extractor(), StandardScaler(), LogisticRegression(max_iter=1000))
    scores = cross_val_score(pipe, X, y, cv=2, n_jobs=n_jobs)
    assert scores.shape == (2,)
    assert scores.mean() >= 0.75


def test_grid_search_over_backbone_and_pooling(image_set):
    X, y = image_set
    pipe = make_pipeline(extractor(), LogisticRegression(max_iter=1000))
    search = GridSearchCV(
        pipe,
        {
            "pretrainedfeaturetransformer__backbone": [LIGHT, LIGHT_2],
            "pretrainedfeaturetransformer__pooling": ["avg", "max"],
        },
        cv=2,
    )
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.predict(X[:3]).shape == (3,)
