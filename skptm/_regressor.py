"""FineTunedRegressor: a pretrained network adapted to predict numbers."""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_array

from ._finetuned_base import PARAMETERS_DOC, BaseFineTuned


class FineTunedRegressor(RegressorMixin, BaseFineTuned):
    __doc__ = f"""Fine-tune a pretrained image network as a regressor.

    The same two-phase recipe as :class:`~skptm.FineTunedClassifier`, with a
    linear output layer trained on mean squared error. Targets may be 1-D or
    2-D (several outputs); ``score`` is R².

    Parameters
    ----------
    {PARAMETERS_DOC}
    Attributes
    ----------
    n_outputs_ : int
        Number of targets.
    model_ : keras.Model
        The fine-tuned network: raw RGB in 0-255 to predictions.
    unfrozen_layers_ : list of str
        The backbone layers trained in phase 2.
    history_ : dict
        Per-epoch ``loss`` (and ``val_loss``) for ``"head"`` and ``"finetune"``.
    n_epochs_ : dict
        Epochs each phase ran.

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

    _output_activation = None
    _loss = "mean_squared_error"
    _metrics = []
    _stratify_split = False

    def _prepare_targets(self, y, n):
        y = check_array(y, ensure_2d=False, dtype=np.float32, input_name="y")
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D; got shape {y.shape}.")
        if len(y) != n:
            raise ValueError(f"X has {n} items but y has {len(y)} targets.")
        targets = y.reshape(n, -1)
        return targets, {
            "n_outputs_": targets.shape[1],
            "_n_outputs": targets.shape[1],
            "_y_ndim": y.ndim,
        }, None

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
        outputs = self._outputs(X)
        return outputs.ravel() if self._y_ndim == 1 else outputs
