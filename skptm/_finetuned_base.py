"""BaseFineTuned: parameters, transactional fit and slim pickles, shared by both
fine-tuning estimators. The training itself lives in :mod:`skptm._finetune`."""

from __future__ import annotations

import os
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._backbones import PREPROCESSING_FAMILIES
from ._doc_links import DocLinkMixin
from ._images import AUTO, INTERPOLATIONS, RESIZE_POLICIES
from ._validation import N_JOBS, check_parameter_values
from .engines import ENGINE_CHOICES, PRECISION_CHOICES
from .exceptions import ImageReadError

#: The parameters a fitted model is built from (its network and head): a
#: pickle rebuilds it from their values at fit time.
BUILD_PARAMS = (
    "backbone",
    "weights",
    "input_size",
    "pooling",
    "preprocessing",
    "precision",
    "engine",
    "hidden_units",
    "dropout",
    "augment",
)

#: Shared by the two estimators' docstrings.
PARAMETERS_DOC = """
    backbone : str, keras.Model or callable, default="efficientnet_b0"
        The pretrained network: a name from :func:`skptm.list_backbones`,
        a ``keras.Model`` or a callable returning one (see
        :class:`~skptm.PretrainedFeatureTransformer`).

    weights : "imagenet", None or path, default="imagenet"
        The backbone's starting weights, as for the transformer.

    input_size : int, (int, int) or None, default=None
        Image size; ``None`` is the backbone's native size.

    resize : {"auto", "stretch", "center_crop", "pad"}, default="auto"
        How images are brought to ``input_size``; ``"auto"`` is the
        backbone's own, as for the transformer.

    interpolation : str, default="auto"
        Resampling filter; ``"auto"`` is the backbone's own.

    preprocessing : {"caffe", "tf", "torch", "none"} or None, default=None
        Override the backbone's preprocessing family.

    pooling : {"avg", "max", "cls", "cls+avg"}, default="avg"
        Global pooling of the backbone's feature map before the head; for a
        vision transformer, of its patch tokens (``"cls"``: the class token,
        ``"cls+avg"``: both), as in :class:`PretrainedFeatureTransformer`.

    hidden_units : tuple of int, default=()
        Sizes of hidden ``Dense`` (ReLU) layers in the head; ``()`` for a
        linear head.

    dropout : float, default=0.2
        Dropout rate before the output layer (training only).

    learning_rate : float, default=1e-3
        Adam's learning rate for a head with ``hidden_units`` in phase 1. A
        linear head (the default) is solved exactly by scikit-learn and does
        not use it.

    head_epochs : int, default=200
        Phase 1 trains the head on the backbone's features, computed once, to
        convergence: a linear head is solved by scikit-learn on standardised
        features (``LogisticRegression`` / ``RidgeCV``); a head with
        ``hidden_units`` trains with Adam for at most ``head_epochs`` epochs,
        stopping once its loss (validation loss with a hold-out) has not
        improved for 10 epochs. ``0`` skips phase 1: the head starts from its
        random initialisation.

    unfreeze : int, "all" or str, default=8
        Backbone layers trained in phase 2: the top N layers that carry
        weights (BatchNormalization not counted, and never unfrozen),
        ``"all"``, or the name of the lowest layer to unfreeze. In a KerasHub
        transformer, N counts blocks (the top N, with the final norm and
        anything above them), and ``"stage{i}"`` names block ``i`` (1 at
        the bottom). ``0`` skips phase 2.

    finetune_learning_rate : float, default=1e-4
        Adam's peak learning rate in phase 2, for the unfrozen layers and the
        head: reached by a linear warm-up over the first epoch, then decayed
        to 0 along a cosine by the last epoch. Low, so that the pretrained
        weights are adapted, not overwritten (1e-3 scrambled them in our
        measurements; see the user guide).

    finetune_epochs : int, default=10
        Maximum epochs of phase 2; ``0`` skips it.

    layer_decay : float in (0, 1] or None, default=None
        Layer-wise learning-rate decay in phase 2: the head and the layers
        above the top unfrozen block learn at ``finetune_learning_rate``, the
        top block at ``layer_decay`` times it, the next at its square, and so
        on down (the fine-tuning recipe of BEiT and DINOv2; 0.65 to 0.9 are
        usual for vision transformers). A block is a transformer block for
        the KerasHub backbones, a weighted layer otherwise. ``None``: every
        unfrozen layer at the same rate.

    augment : None, "light" or keras layer, default=None
        Data augmentation, applied only while fine-tuning (phase 2; phase 1
        fits the head on the un-augmented features): ``"light"`` is a
        horizontal flip, a small rotation, zoom and contrast change; a Keras
        layer or ``Sequential`` of your own works too (its random generators
        restart from ``random_state`` at each fit, so that fits repeat).

    tta : None, "flip", "light" or list of str, default=None
        Test-time augmentation for :meth:`predict`, :meth:`predict_proba`
        and :meth:`transform` (never for ``fit``): each image is also seen
        as other views, and the outputs are averaged (probabilities, or
        features). ``"flip"``: the image and its mirror image (twice the
        cost of a prediction); ``"light"``: those two, and both again
        cropped to the central 87.5% (four times); or a list of views, each
        a transform of ``"identity"``, ``"flip"``, ``"flip_vertical"``,
        ``"crop_center"``, ``"crop_top_left"``, ``"crop_top_right"``,
        ``"crop_bottom_left"``, ``"crop_bottom_right"`` or several joined by
        ``+``. The views are part of the network, so every engine runs them.
        It can be set after fitting (``set_params(tta="flip")``), or
        searched over with ``GridSearchCV``. Whether it helps is for your
        data to say: the user guide shows what it did on ours.

    validation_fraction : float or None, default=None
        Fraction of the training data held out (stratified for
        classification). Phase 2 then keeps the weights with the lowest
        validation loss, the head-only model of phase 1 included, so
        fine-tuning never leaves the validation loss worse than phase 1
        did; ``history_`` reports validation metrics. ``None`` holds out
        nothing: phase 2 keeps the weights of its epoch with the lowest
        training loss (usually the last, as the learning rate decays; an
        epoch that diverged is not kept).

    early_stopping : bool, default=False
        Stop phase 2 when the validation loss (or, without a hold-out, the
        training loss) has not improved for ``patience`` epochs, and restore
        the best weights.

    patience : int, default=3
        Epochs without improvement before phase 2 stops.

    batch_size : int, default=32
        Images per training step and per prediction batch (a last partial
        prediction batch is padded to 8, 16, 32, ... rows, so results do not
        depend on batching).

    precision : {"float32", "bfloat16", "float16", "auto"}, default="float32"
        What the backbone computes in, for both training phases and for
        prediction: ``"bfloat16"`` is Keras's ``mixed_bfloat16`` policy
        (weights and the head stay float32), ``"float16"`` is for GPUs (with
        loss scaling), ``"auto"`` as for the transformer.

    engine : {"auto", "tensorflow", "openvino"}, default="auto"
        What runs ``predict``, ``predict_proba`` and ``transform`` (training
        is always TensorFlow's): as for the transformer, with the fitted
        model converted to OpenVINO on its first use (seconds, once per
        fitted model and process). ``"auto"`` takes OpenVINO where the
        measured table says it is faster for this network, the model was
        trained in float32, and the images to predict are enough to pay for
        the conversion (or it was converted already): it never makes a small
        ``score`` in a cross-validation slower.

    cache : str, path or None, default=None
        A feature cache directory, as for the transformer: phase 1 reads the
        backbone's features of images seen before (by an earlier fit, or by
        the transformer with the same network and ``engine="tensorflow"``:
        training runs on TensorFlow, and entries are kept per engine)
        instead of computing them.

    callbacks : list of keras.callbacks.Callback or None, default=None
        Extra Keras callbacks, run in every phase that Keras trains (phase 2,
        and phase 1 for a head with ``hidden_units``). Each phase gets a
        shallow copy of each callback, so the objects you pass never hold a
        trained model after ``fit`` (nor inside a clone or a pickle); what
        they record in their own lists or dicts stays visible to you.

    n_jobs : int or None, default=None
        Image-decoding threads, as for the transformer: a count, ``-1`` for
        all cores, ``-2`` for all but one; ``0`` is invalid. ``None`` takes
        the ``n_jobs`` of an active ``joblib.parallel_config(n_jobs=...)``,
        and otherwise means one thread per core, up to 8, not joblib's one
        job (decoding threads release the GIL and keep the network fed; see
        :class:`~skptm.PretrainedFeatureTransformer`).

    on_error : {"raise", "nan"}, default="raise"
        What an unreadable image does in ``predict``, ``predict_proba`` and
        ``transform``, as for the transformer: ``"raise"`` raises
        :class:`~skptm.ImageReadError` naming its index and path; ``"nan"``
        gives it a row of NaN (``predict``: NaN for a regressor, ``None``
        for a classifier) and one :class:`~skptm.ImageReadWarning` listing
        every failed item. ``fit`` always raises: it cannot learn from an
        image it cannot read.

    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, dropout, shuffling, the validation
        split and augmentation. The same data and ``random_state`` give the
        same predictions in a fresh process. No global seed is changed.

    verbose : int, default=0
        ``1``: progress bars while extracting features and predicting;
        ``2``: also one line per epoch.
"""


def holdout_split(n, fraction, seed, *, stratify=None):
    """Indices of the samples to train on and of those held out.

    The split the fine-tuning estimators make for ``validation_fraction``,
    also used by ``skptm train`` for its test split.

    Parameters
    ----------
    n : int
        Number of samples.
    fraction : float or None
        Share held out; ``None`` holds out nothing.
    seed : int, RandomState instance or None
        Seeds the split.
    stratify : array-like of shape (n,) or None, default=None
        Class of each sample, to hold out the same share of every class.

    Returns
    -------
    train : ndarray of int
    held_out : ndarray of int, or None when ``fraction`` is None

    Raises
    ------
    ValueError
        If the split is impossible (e.g. a class too small to be stratified);
        scikit-learn's own error is its ``__cause__``.

    Examples
    --------
    >>> train, held_out = holdout_split(10, 0.2, 0, stratify=[0, 1] * 5)
    >>> len(train), len(held_out)
    (8, 2)
    """
    if fraction is None:
        return np.arange(n), None
    from sklearn.model_selection import train_test_split

    try:
        train, held_out = train_test_split(np.arange(n), test_size=fraction, stratify=stratify, random_state=seed)
        if stratify is not None:
            # scikit-learn keeps each class's share overall, not one image of
            # each on both sides: a large fraction can hold a small class out whole.
            labels = np.asarray(stratify, dtype=object)
            trained_on = set(labels[train])
            missing = [label for label in dict.fromkeys(labels[held_out]) if label not in trained_on]
            if missing:
                raise ValueError(f"class {missing[0]!r} would be held out whole, with none left to train on.")
        return train, held_out
    except ValueError as exc:
        cause = str(exc).rstrip()
        cause += "" if cause.endswith(".") else "."
        raise ValueError(
            f"Cannot hold out validation_fraction={fraction} of {n} "
            f"samples{' stratified by class' if stratify is not None else ''}: {cause} Both sides of the "
            f"split need {'every class' if stratify is not None else 'samples'}: change the fraction, "
            "add data, or pass validation_fraction=None."
        ) from exc


def labels_of(classes, scores):
    """The class of highest score in each row of ``scores``; a row of NaN (an
    unreadable image, with ``on_error="nan"``) gets ``None`` (NaN for float
    class labels), in an object array."""
    failed = np.isnan(scores).any(axis=1)
    labels = classes[np.argmax(np.nan_to_num(scores, nan=0.0), axis=1)]
    if failed.any():
        labels = labels.astype(float if classes.dtype.kind == "f" else object)
        labels[failed] = np.nan if labels.dtype.kind == "f" else None
    return labels


class BaseFineTuned(DocLinkMixin, TransformerMixin, BaseEstimator):
    """Shared machinery of FineTunedClassifier and FineTunedRegressor.

    Subclasses define ``_prepare_targets(y, n) -> (targets, fitted
    attributes, per-sample class weights or None)``, ``_task(fitted) ->
    Task`` (what the training core needs to know), ``_stratify_split`` and
    the prediction methods.
    """

    _parameter_constraints: dict = {
        "backbone": [str, callable],
        "weights": [StrOptions({"imagenet"}), str, os.PathLike, None],
        "input_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        "resize": [StrOptions({AUTO, *RESIZE_POLICIES})],
        "interpolation": [StrOptions({AUTO, *INTERPOLATIONS})],
        "preprocessing": [StrOptions(set(PREPROCESSING_FAMILIES)), None],
        "pooling": [StrOptions({"avg", "max", "cls", "cls+avg"})],
        "hidden_units": [tuple, list],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "head_epochs": [Interval(Integral, 0, None, closed="left")],
        "unfreeze": [Interval(Integral, 0, None, closed="left"), str],
        "finetune_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "layer_decay": [Interval(Real, 0, 1, closed="right"), None],
        "finetune_epochs": [Interval(Integral, 0, None, closed="left")],
        "augment": [StrOptions({"light"}), callable, None],
        "tta": [str, list, tuple, None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "early_stopping": ["boolean"],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "precision": [StrOptions(set(PRECISION_CHOICES))],
        "engine": [StrOptions(set(ENGINE_CHOICES))],
        "cache": [str, os.PathLike, None],
        "callbacks": [list, None],
        "n_jobs": N_JOBS,
        "on_error": [StrOptions({"raise", "nan"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

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
        callbacks=None,
        n_jobs=None,
        on_error="raise",
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.resize = resize
        self.interpolation = interpolation
        self.preprocessing = preprocessing
        self.pooling = pooling
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.head_epochs = head_epochs
        self.unfreeze = unfreeze
        self.finetune_learning_rate = finetune_learning_rate
        self.finetune_epochs = finetune_epochs
        self.layer_decay = layer_decay
        self.augment = augment
        self.tta = tta
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.batch_size = batch_size
        self.precision = precision
        self.engine = engine
        self.cache = cache
        self.callbacks = callbacks
        self.n_jobs = n_jobs
        self.on_error = on_error
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting ---------------------------------------------------------------------

    def _validate_params(self):
        super()._validate_params()
        check_parameter_values(self)  # what the constraints cannot express

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the head, then fine-tune the top layers.

        The fit is transactional: if it fails part-way (an unreadable image,
        ``KeyboardInterrupt``, an exception from a callback), a previously
        fitted estimator keeps its fitted state and an unfitted one stays
        unfitted.

        Parameters
        ----------
        X : images, or array of shape (n_samples, n_columns) for a tabular
            custom backbone
            Any form :class:`~skptm.PretrainedFeatureTransformer` accepts.
            Files are streamed from disk batch by batch.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the loss.

        Returns
        -------
        self
        """
        from ._features import make_source
        from ._finetune import feature_network, train
        from ._fitted import inference_choice

        previous = dict(self.__dict__)
        params = self.get_params()
        try:
            network = feature_network(params)
            if network.takes_images:
                n = len(make_source(network, X))  # checks the input form; decodes nothing
            else:
                X, y = validate_data(self, X, y, dtype=np.float32, multi_output=True, y_numeric=False)
                n = X.shape[0]
            targets, fitted, class_factor = self._prepare_targets(y, n)
            # The split stratifies by the labels themselves, so that its errors name them.
            strata = fitted["classes_"][targets] if "classes_" in fitted else targets
            weights = _check_sample_weight(sample_weight, range(n), dtype=np.float32, ensure_non_negative=True)
            if class_factor is not None:
                weights = weights * class_factor.astype(np.float32)
            if not weights.any():
                raise ValueError("The sample weights are zero for every sample: there is nothing to learn from.")
            # Decided before training, so that an impossible choice fails first.
            choice = inference_choice(self.get_params(), network, n)
            trained, history, n_epochs, network = train(
                self.get_params(),
                X,
                targets,
                weights,
                task=self._task(fitted),
                validation_split=lambda n_items, seed: self._split(n_items, strata, seed),
                callbacks=self.callbacks,
            )
        except BaseException as exc:
            self.__dict__.clear()
            self.__dict__.update(previous)
            if isinstance(exc, ImageReadError) and not exc.training:
                raise exc.as_needed_by("fit") from exc.__cause__
            raise
        self.__dict__.update(fitted)
        if network.takes_images:  # a table fitted before: its column count no longer applies
            for name in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(name, None)
        self._trained, self._network = trained, network
        # What rebuilds this model after unpickling, whatever set_params changes later.
        self._build_params = {name: params[name] for name in BUILD_PARAMS}
        self.model_ = trained.model
        self.unfrozen_layers_ = list(trained.unfrozen)
        self.history_ = history
        self.n_epochs_ = n_epochs
        self.engine_, self.precision_ = choice.engine, choice.precision
        return self

    def _split(self, n, targets, seed):
        return holdout_split(n, self.validation_fraction, seed, stratify=targets if self._stratify_split else None)

    # -- predicting ------------------------------------------------------------------

    def _check_input(self, X):
        check_is_fitted(self, "model_")
        if not self._network.takes_images:
            X = validate_data(self, X, dtype=np.float32, reset=False)
        return X

    def _outputs(self, X, on_error=None):
        """What the trained model's loss sees: probabilities, or standardised targets
        (``on_error``: the estimator's unless given)."""
        from ._fitted import predict_outputs

        X = self._check_input(X)
        on_error = self.on_error if on_error is None else on_error
        return predict_outputs(self._trained, self._network, X, self.get_params(), self._inference_choice(), on_error)

    def _outputs_of_every_image(self, X):
        """:meth:`_outputs` for ``score``, which needs every image whatever
        ``on_error`` says: an unreadable one raises, named."""
        try:
            return self._outputs(X, on_error="raise")
        except ImageReadError as exc:
            raise exc.as_needed_by("score") from exc.__cause__

    def _inference_choice(self):
        """``engine="auto"``: the choice fixed by ``fit`` (``engine_``, ``precision_``);
        an engine named after fitting (``set_params(engine="openvino")``): that one."""
        from .engines.decision import choose_for_fitted, fitted_choice

        if self.engine == "auto":
            if not hasattr(self, "engine_"):  # fitted by skptm 0.1.0, which chose per call: TensorFlow
                return fitted_choice("tensorflow", self._network.precision)
            return fitted_choice(self.engine_, self.precision_)
        return choose_for_fitted(
            self.engine,
            self.precision,
            self.backbone,
            self.input_size,
            trained_precision=self._network.precision,
            n_items=0,
        )

    def transform(self, X):
        """The pooled features of the fine-tuned backbone: what the head sees.

        The same kind of features as :class:`~skptm.PretrainedFeatureTransformer`
        gives, from the adapted network, for ``KMeans``, t-SNE or nearest
        neighbours.

        Parameters
        ----------
        X : images
            Any form the transformer accepts. The training augmentation
            (``augment``) is never applied; the test-time views (``tta``) are.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features), float32
        """
        from ._fitted import transform_features

        X = self._check_input(X)
        # The network as fit built it: parameters set since then build nothing here.
        params = {**self.get_params(), **getattr(self, "_build_params", {})}
        return transform_features(
            self._trained, self._network, X, params, self._inference_choice(), on_error=self.on_error
        )

    def get_feature_names_out(self, input_features=None):
        """Names of the features :meth:`transform` returns, as the transformer's.

        Parameters
        ----------
        input_features : None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "model_")
        return np.asarray(self._network.feature_names, dtype=object)

    # -- pickling: parameters + the weights training changed ---------------------------

    def __getstate__(self):
        from ._fitted import export_state

        state = dict(super().__getstate__())  # may be self.__dict__ itself
        if "_trained" in state:
            state["_trained_state"] = export_state(state.pop("_trained"), state.pop("_network"))
            state.pop("model_", None)
        return state

    def __setstate__(self, state):
        state.setdefault("tta", None)  # pickled before tta existed
        state.setdefault("layer_decay", None)  # pickled before layer_decay existed
        trained_state = state.pop("_trained_state", None)
        super().__setstate__(state)
        if trained_state is not None:
            from ._fitted import import_state

            params = {**self.get_params(), **state.get("_build_params", {})}  # older pickles: the current ones
            self._trained, self._network = import_state(trained_state, params, self._task(state))
            self.model_ = self._trained.model

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        takes_table = self._takes_table()
        tags.input_tags.two_d_array = takes_table
        tags.input_tags.three_d_array = not takes_table
        tags.transformer_tags.preserves_dtype = ["float32"] if takes_table else []
        tags.non_deterministic = self.random_state is None
        return tags

    def _takes_table(self):
        from .networks import backbone_takes_table

        return backbone_takes_table(self.backbone, weights=self.weights, input_size=self.input_size)
