"""FineTunedClassifier: a pretrained network adapted to your classes."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d

from ._finetuned_base import PARAMETERS_DOC, BaseFineTuned, labels_of
from ._validation import listing, unlabelled


class FineTunedClassifier(ClassifierMixin, BaseFineTuned):
    __doc__ = f"""Fine-tune a pretrained image network as a classifier.

    ``fit`` is a linear probe, then fine-tuning (LP-FT): phase 1 computes
    the frozen backbone's pooled features once and fits the new head to
    convergence on them (multinomial ``LogisticRegression`` on standardised
    features for a linear head, copied into the Keras head); phase 2 starts
    from that head, unfreezes the top ``unfreeze`` layers and trains them
    with the head at ``finetune_learning_rate`` on the images. With a
    validation split, the best weights by validation loss are kept, the
    head-only model included. BatchNormalization layers stay frozen, in
    inference mode, throughout.

    The output layer is a softmax over ``classes_`` for every number of
    classes, two included, trained with (weighted) cross-entropy.

    Parameters
    ----------
    {PARAMETERS_DOC}
    class_weight : "balanced", dict or None, default=None
        Weights of the classes in the loss, multiplied with
        ``sample_weight``; ``"balanced"`` weighs classes inversely to their
        frequency.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted class labels.
    model_ : keras.Model
        The fine-tuned network: raw RGB in 0-255 to class probabilities. It
        holds its own copy of the backbone: training or changing it never
        changes what other estimators compute.
    unfrozen_layers_ : list of str
        The backbone layers trained in phase 2.
    history_ : dict
        ``{{"head": {{...}}, "finetune": {{...}}}}``: per-epoch ``loss`` and
        ``accuracy`` (and ``val_loss``, ``val_accuracy`` with a hold-out).
        A linear head is solved exactly and has one entry: the converged
        probe.
    n_epochs_ : dict
        Epochs each phase ran: ``{{"head": int, "finetune": int}}``.
    engine_ : str
        The engine ``predict``, ``predict_proba`` and ``transform`` run on
        with ``engine="auto"``, fixed by ``fit`` so that predictions never
        depend on earlier calls (see the engine decision in the performance
        guide).
    precision_ : str
        What those predictions compute in.
    n_features_in_ : int
        Only for a tabular custom backbone.

    Examples
    --------
    >>> import numpy as np
    >>> from skptm import FineTunedClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (8, 48, 48, 3), dtype=np.uint8)
    >>> y = ["cat", "dog"] * 4
    >>> clf = FineTunedClassifier("mobilenet_v2", weights=None, input_size=48,
    ...                           head_epochs=2, unfreeze=2, finetune_epochs=1,
    ...                           random_state=0).fit(X, y)
    >>> clf.classes_
    array(['cat', 'dog'], dtype='<U3')
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.transform(X[:2]).shape  # the fine-tuned backbone's pooled features
    (2, 1280)
    """

    _parameter_constraints: dict = {
        **BaseFineTuned._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    _stratify_split = True

    def __init__(
        self,
        backbone="efficientnet_b0",
        weights="imagenet",
        input_size=None,
        resize="auto",
        interpolation="auto",
        preprocessing=None,
        pooling="avg",
        hidden_units=(),
        dropout=0.2,
        learning_rate=1e-3,
        head_epochs=200,
        unfreeze=8,
        finetune_learning_rate=1e-4,
        finetune_epochs=10,
        layer_decay=None,
        augment=None,
        tta=None,
        validation_fraction=None,
        early_stopping=False,
        patience=3,
        batch_size=32,
        precision="float32",
        engine="auto",
        cache=None,
        class_weight=None,
        callbacks=None,
        n_jobs=None,
        on_error="raise",
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            backbone=backbone,
            weights=weights,
            input_size=input_size,
            resize=resize,
            interpolation=interpolation,
            preprocessing=preprocessing,
            pooling=pooling,
            hidden_units=hidden_units,
            dropout=dropout,
            learning_rate=learning_rate,
            head_epochs=head_epochs,
            unfreeze=unfreeze,
            finetune_learning_rate=finetune_learning_rate,
            finetune_epochs=finetune_epochs,
            layer_decay=layer_decay,
            augment=augment,
            tta=tta,
            validation_fraction=validation_fraction,
            early_stopping=early_stopping,
            patience=patience,
            batch_size=batch_size,
            precision=precision,
            engine=engine,
            cache=cache,
            callbacks=callbacks,
            n_jobs=n_jobs,
            on_error=on_error,
            random_state=random_state,
            verbose=verbose,
        )
        self.class_weight = class_weight

    def _prepare_targets(self, y, n):
        missing = unlabelled(y)
        if missing:
            raise ValueError(
                f"Input y contains NaN (or None) at index {listing(missing)}: every image in fit needs its "
                "class. Label those images, or drop them."
            )
        kind = type_of_target(y)
        if kind in ("multilabel-indicator", "multiclass-multioutput"):
            raise ValueError(
                f"FineTunedClassifier takes one label per image; y is {kind} with shape "
                f"{np.shape(y)}. For several labels per image, fit a multi-label model on the "
                "transformer's features: make_pipeline(PretrainedFeatureTransformer(...), "
                "StandardScaler(), OneVsRestClassifier(LogisticRegression())) (the user guide's "
                "multi-label recipe), or fit one FineTunedClassifier per label."
            )
        y = column_or_1d(y, warn=True)
        if len(y) != n:
            raise ValueError(f"X has {n} items but y has {len(y)} labels.")
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"FineTunedClassifier needs at least 2 classes in y; got 1 class: {encoder.classes_.tolist()[0]!r}. "
                "Add images of another class (load_image_folder: one sub-folder per class)."
            )
        encoded = encoder.transform(y).astype(np.int32)
        class_factor = None
        if self.class_weight is not None:
            if isinstance(self.class_weight, dict):
                unknown = set(self.class_weight) - set(encoder.classes_.tolist())
                if unknown:
                    raise ValueError(f"class_weight names classes that are not in y: {sorted(map(str, unknown))}.")
            class_factor = compute_sample_weight(self.class_weight, y)
        return encoded, {"classes_": encoder.classes_, "_n_outputs": len(encoder.classes_)}, class_factor

    def _task(self, fitted):
        from ._finetune import Task

        return Task(
            n_outputs=fitted["_n_outputs"],
            activation="softmax",
            loss="sparse_categorical_crossentropy",
            metrics=("accuracy",),
            classification=True,
        )

    def predict_proba(self, X):
        """Class probabilities, one row per image, columns in ``classes_`` order.

        Parameters
        ----------
        X : images
            Any form the transformer accepts. The training augmentation
            (``augment``) is never applied; the test-time views (``tta``) are.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to 1.
        """
        proba = self._outputs(X)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Predicted class labels (from ``classes_``).

        Parameters
        ----------
        X : images

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            With ``on_error="nan"``, an unreadable image's label is ``None``
            (NaN for float class labels), in an object array.
        """
        scores = self._outputs(X)  # checks fitted first, before classes_ is read
        return labels_of(self.classes_, scores)

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against ``y``.

        Every image is needed, whatever ``on_error`` says: an unreadable one
        raises an :class:`~skptm.ImageReadError` naming its index and path.

        Parameters
        ----------
        X : images
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        from sklearn.metrics import accuracy_score

        labels = self.classes_[np.argmax(self._outputs_of_every_image(X), axis=1)]
        return float(accuracy_score(y, labels, sample_weight=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags
