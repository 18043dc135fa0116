"""scikit-learn's own estimator checks, on a configuration that takes 2-D data.

scikit-learn silently skips every check of an estimator whose tags say it
takes no 2-D input, which is the truth for image backbones. So the checks run
on a small custom Keras backbone over tabular features, which goes through
the same estimator, cache and batch code as images do.
"""

import keras
from sklearn.utils.estimator_checks import estimator_checks_generator, parametrize_with_checks

from skptm import PretrainedFeatureTransformer


def tabular_backbone():
    """A tiny network on tables of any width: each column through a shared
    Dense layer, then averaged, so the output width is fixed (8)."""
    inputs = keras.Input((None,))
    x = keras.layers.Reshape((-1, 1))(inputs)
    x = keras.layers.Dense(8, activation="tanh")(x)
    outputs = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, outputs, name="tabular")


ESTIMATORS = [PretrainedFeatureTransformer(backbone=tabular_backbone, batch_size=16)]

#: Every check expected to fail, with the reason. Keep this the only place.
EXPECTED_FAILED_CHECKS = {
    "PretrainedFeatureTransformer": {},
}

def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_the_checks_are_not_skipped():
    # With the skip trap, scikit-learn yields only a handful of checks.
    for estimator in ESTIMATORS:
        checks = list(
            estimator_checks_generator(
                estimator, expected_failed_checks=_expected_failed_checks(estimator)
            )
        )
        assert len(checks) >= 40, f"only {len(checks)} checks for {estimator}"


def test_image_configuration_is_honest_about_its_input():
    tags = PretrainedFeatureTransformer("resnet50").__sklearn_tags__()
    assert not tags.input_tags.two_d_array and tags.input_tags.three_d_array
    assert not tags.requires_fit
