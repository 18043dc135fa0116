"""FineTunedRegressor: a pretrained network adapted to predict numbers."""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array

from ._finetuned_base import PARAMETERS_DOC, BaseFineTuned


class FineTunedRegressor(RegressorMixin, BaseFineTuned):
    __doc__ = f"""Fine-tune a pretrained image network as a regressor.

    The same two-phase recipe as :class:`~skptm.FineTunedClassifier`, with a
    linear output layer: phase 1 fits ``RidgeCV`` (its penalty chosen by
    leave-one-out) on standardised features, phase 2 trains on mean squared
    error. Targets are standardised for training, on any scale, and mapped
    back in ``predict``. Targets may be 1-D or 2-D (several outputs);
    ``score`` is R².

    Parameters
    ----------
    {PARAMETERS_DOC}
    Attributes
    ----------
    n_outputs_ : int
        Number of targets.
    model_ : keras.Model
        The fine-tuned network: raw RGB in 0-255 to predictions, in the
        targets' units (float32). It holds its own copy of the backbone.
    unfrozen_layers_ : list of str
        The backbone layers trained in phase 2.
    history_ : dict
        Per-epoch ``loss`` (and ``val_loss``) for ``"head"`` and
        ``"finetune"``: mean squared error on the standardised targets.
    n_epochs_ : dict
        Epochs each phase ran.
    engine_ : str
        The engine ``predict``, ``predict_proba`` and ``transform`` run on
        with ``engine="auto"``, fixed by ``fit`` so that predictions never
        depend on earlier calls (see the engine decision in the performance
        guide).
    precision_ : str
        What those predictions compute in.

    Examples
    --------
    >>> import numpy as np
    >>> from skptm import FineTunedRegressor
    >>> X = np.random.default_rng(0).integers(0, 256, (8, 48, 48, 3), dtype=np.uint8)
    >>> reg = FineTunedRegressor("mobilenet_v2", weights=None, input_size=48,
    ...                          head_epochs=2, unfreeze=0, random_state=0)
    >>> reg.fit(X, X.mean(axis=(1, 2, 3))).predict(X[:3]).shape
    (3,)
    """

    _stratify_split = False

    def _prepare_targets(self, y, n):
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D; got shape {y.shape}.")
        if len(y) != n:
            raise ValueError(f"X has {n} items but y has {len(y)} targets.")
        targets = y.reshape(n, -1)
        scaler = StandardScaler().fit(targets)  # a constant target gets scale 1
        standardized = scaler.transform(targets).astype(np.float32)
        return (
            standardized,
            {
                "n_outputs_": targets.shape[1],
                "_n_outputs": targets.shape[1],
                "_y_ndim": y.ndim,
                "_target_affine": (scaler.scale_, scaler.mean_),
            },
            None,
        )

    def _task(self, fitted):
        from ._finetune import Task

        return Task(
            n_outputs=fitted["_n_outputs"],
            activation=None,
            loss="mean_squared_error",
            metrics=(),
            classification=False,
            output_affine=fitted["_target_affine"],
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : images

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        return self._in_targets_units(self._outputs(X))  # checks that the estimator is fitted

    def score(self, X, y, sample_weight=None):
        """R² of ``predict(X)`` against ``y``.

        Every image is needed, whatever ``on_error`` says: an unreadable one
        raises an :class:`~skptm.ImageReadError` naming its index and path.

        Parameters
        ----------
        X : images
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        from sklearn.metrics import r2_score

        predicted = self._in_targets_units(self._outputs_of_every_image(X))
        return float(r2_score(y, predicted, sample_weight=sample_weight))

    def _in_targets_units(self, outputs):
        scale, offset = self._target_affine
        outputs = outputs * scale + offset  # back to the targets' units, in float64
        return outputs.ravel() if self._y_ndim == 1 else outputs
