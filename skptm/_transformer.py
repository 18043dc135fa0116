"""PretrainedFeatureTransformer: images in, feature vectors out."""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from ._backbones import PREPROCESSING_FAMILIES
from ._doc_links import DocLinkMixin
from ._images import AUTO, INTERPOLATIONS, RESIZE_POLICIES
from ._validation import N_JOBS, check_parameter_values
from .engines import ENGINE_CHOICES, PRECISION_CHOICES


class PretrainedFeatureTransformer(DocLinkMixin, TransformerMixin, BaseEstimator):
    """Turn images into feature vectors with a pretrained network.

    ``fit`` learns nothing: ``transform`` runs the images through a network
    of ``keras.applications`` (or your own Keras model) with its weights left
    as they are, and returns one feature vector per image. The features feed
    a classifier, ``KMeans``, t-SNE/UMAP or a nearest-neighbour index.

    Images go in as they are: skptm decodes, orients, converts and resizes
    them, and each network applies its own preprocessing inside its graph,
    so never call ``preprocess_input`` yourself.

    Parameters
    ----------
    backbone : str, keras.Model or callable, default="resnet50"
        The network. A name from :func:`skptm.list_backbones`
        (case-insensitive; ``"resnet50"``, ``"ResNet50"`` and
        ``"mobilenet_v3_small"`` all work), a ``keras.Model`` taking images
        ``(batch, height, width, 3)``, or a callable with no arguments that
        returns one (picklable when it is a module-level function). A custom
        model taking rows of a table ``(batch, n_columns)`` makes the
        transformer accept 2-D arrays instead of images.

    weights : "imagenet", None or path, default="imagenet"
        ``"imagenet"``: the pretrained weights, downloaded once into Keras's
        cache (``~/.keras/models``, or ``$KERAS_HOME/models``); for a
        KerasHub backbone, its preset's weights, through KerasHub's cache.
        ``None``: random initialisation, the same in every process. A path:
        a weights file of the same architecture without its classification
        top (``.weights.h5``, ``.h5`` or ``.keras``); for a KerasHub
        backbone, a local preset directory. For a custom backbone,
        ``"imagenet"`` and ``None`` both mean its weights as they are.

    pooling : {"avg", "max", "cls", "cls+avg"} or None, default="avg"
        How a feature map becomes a vector: global average or max pooling,
        or ``None`` for the flattened map (large: height x width x channels).
        For a vision transformer (DINOv2, DINOv3, ViT), ``"avg"`` and
        ``"max"`` pool the patch tokens, ``"cls"`` takes the class token and
        ``"cls+avg"`` both side by side (DINOv2's linear-probe feature,
        twice the width). CLIP and SigLIP give their image embedding
        whatever the pooling.

    layer : str, list of str or None, default=None
        Extract from this inner layer of the backbone instead of its top;
        with a list, the pooled features of every named layer are
        concatenated in order. Earlier layers give more generic features.
        For a KerasHub transformer, ``"stage{i}"`` is the output of its
        ``i``-th block (1 to its depth), in every family.

    input_size : int, (int, int) or None, default=None
        Size ``(height, width)`` the images are resized to; an int is a
        square. ``None`` uses the backbone's native size (e.g. 224).

    resize : {"auto", "stretch", "center_crop", "pad"}, default="auto"
        ``"stretch"`` ignores the aspect ratio, as ``keras.utils.load_img``
        does; ``"center_crop"`` resizes the shorter side and crops the
        centre; ``"pad"`` fits the whole image and fills the borders with
        black. ``"auto"`` is the backbone's own: ``"stretch"`` for the
        ``keras.applications`` networks and custom backbones; for a KerasHub
        transformer, its preset's image converter's (``"center_crop"`` for
        DINOv2, CLIP and ViT, ``"stretch"`` for DINOv3 and SigLIP). Images
        already at ``input_size`` are not resampled.

    interpolation : {"auto", "bilinear", "nearest", "bicubic", "lanczos", \
"box", "hamming"}, default="auto"
        Resampling filter for resizing. ``"auto"`` is the backbone's own:
        ``"bilinear"`` for the ``keras.applications`` networks and custom
        backbones; for a KerasHub transformer, its preset's (``"bicubic"``
        for DINOv2, CLIP and SigLIP, ``"bilinear"`` for DINOv3 and ViT).

    preprocessing : {"caffe", "tf", "torch", "none"} or None, default=None
        Override the backbone's preprocessing family. ``None`` uses the
        registry's for named backbones and ``"none"`` for custom ones.

    tta : None, "flip", "light" or list of str, default=None
        Test-time augmentation: each image is also seen as other views, and
        the features are averaged. ``"flip"``: the image and its mirror
        image (twice the cost); ``"light"``: those two, and both again
        cropped to the central 87.5% (four times); or a list of views, each
        a transform of ``"identity"``, ``"flip"``, ``"flip_vertical"``,
        ``"crop_center"``, ``"crop_top_left"``, ``"crop_top_right"``,
        ``"crop_bottom_left"``, ``"crop_bottom_right"`` or several joined by
        ``+``. The views are part of the network, so every engine runs them,
        and the feature cache keeps their features apart.

    batch_size : int, default=32
        Images decoded and passed through the network at once. Memory grows
        with ``batch_size``, never with the number of images. A last partial
        batch is padded to 8, 16, 32, ... rows (at most ``batch_size``), so
        a few compiled functions serve every call, whatever the number of
        images. A row's features move by at most 1e-5 of its largest
        feature whichever other rows it was computed with (bit-identical on
        the AVX-512 machine we tested, up to 5e-7 on the AVX2 one); the same
        call always gives the same bits.

    precision : {"float32", "bfloat16", "float16", "auto"}, default="float32"
        What the network computes in. ``"bfloat16"`` uses Keras's
        ``mixed_bfloat16`` policy (weights stay float32, layers compute in
        16 bits): faster for some networks on a CPU that computes bfloat16
        natively (AVX-512 BF16, AMX), slower for others; the performance
        guide has the tables, with the machines they were measured on.
        ``"float16"`` is for GPUs.
        ``"auto"`` picks bfloat16 (or float16 on a GPU) only where it was
        measured on this machine (``skptm calibrate``) faster than float32
        for this network, with features within cosine 0.999 of float32's;
        float32 otherwise. Features are float32 in every case, and your own
        Keras dtype policy is left as it is.

    engine : {"auto", "tensorflow", "openvino"}, default="auto"
        What runs the network. ``"openvino"`` converts the same Keras network
        (preprocessing, pooling and layers inside) to OpenVINO in this
        process, once per network, and keeps the converted model on disk for
        other processes (the optional extra ``skptm[openvino]``; nothing is
        downloaded). It computes in ``precision``: float32, or bfloat16 on a
        CPU with native BF16. ``"auto"`` takes the fastest (engine,
        precision) that ``precision`` allows for this network as measured on
        this machine (``skptm calibrate``, or automatically before a first
        job estimated at five minutes or more), where it beat TensorFlow
        beyond the measurement's noise with features within cosine 0.9999
        of TensorFlow float32's; TensorFlow float32 where nothing was
        measured here, without OpenVINO installed, or for a custom backbone.
        The choice is made once per network and process, so results never
        depend on the size or order of calls (see the performance guide).

    cache : str, path or None, default=None
        A directory where features are kept per image, keyed by the image's
        content (file bytes or array values) and everything that determines
        its features (network, weights, size, precision, resizing). An image
        seen before is not run through the network again, in this process or
        another: repeated transforms and the folds and candidates of a grid
        search compute each image's features once. Safe for several
        processes at once; a damaged entry is recomputed (with a warning),
        and an unwritable directory gives a warning and no caching.

    n_jobs : int or None, default=None
        Threads decoding images while the network runs: a count, ``-1`` for
        all cores, ``-2`` for all but one, and so on; ``0`` is invalid.
        ``None`` takes the ``n_jobs`` of an active
        ``joblib.parallel_config(n_jobs=...)``, and otherwise means one
        thread per core, up to 8. This differs from joblib, whose ``None``
        means one job: decoding threads spend their time reading files and
        in Pillow's C code, which release the GIL, so they run alongside
        the network instead of competing with it, and a single thread can
        leave the network waiting for images.

    on_error : {"raise", "nan"}, default="raise"
        What an unreadable image does. ``"raise"`` raises
        :class:`~skptm.ImageReadError` naming its index and path; ``"nan"``
        gives it a row of NaN and emits one :class:`~skptm.ImageReadWarning`
        listing every failed item. The output always has one row per item.

    verbose : int, default=0
        ``1`` shows a progress bar with images per second.

    Attributes
    ----------
    n_features_in_ : int
        Only for a tabular custom backbone: columns seen in ``fit``.

    feature_names_in_ : ndarray of str
        Only for a tabular custom backbone fitted on a DataFrame.

    See Also
    --------
    skptm.list_backbones : Available networks and their feature sizes.

    Notes
    -----
    Accepted inputs ``X``: an array ``(N, H, W, 3)`` of uint8 or floats in
    0-255, grayscale ``(N, H, W)`` or ``(N, H, W, 1)``, ``(N, H, W, 4)``
    with alpha (composited over white); or a list, tuple, 1-D object array
    or pandas Series of file paths, encoded bytes, PIL images or arrays of
    differing sizes. Files are read with Pillow: EXIF orientation applied,
    every colour mode converted to RGB (16-bit scaled, alpha composited over
    white), first frame of animations, large JPEGs decoded at reduced size.

    Networks are built on first use and cached per process: clones (as in
    ``GridSearchCV``), repeated calls and unpickled copies reuse them. A
    pickle holds the parameters only.

    Examples
    --------
    >>> import numpy as np
    >>> from skptm import PretrainedFeatureTransformer
    >>> images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    >>> extractor = PretrainedFeatureTransformer("mobilenet_v2", weights=None, input_size=64)
    >>> extractor.fit_transform(images).shape
    (4, 1280)
    >>> extractor.get_feature_names_out()[:2]
    array(['mobilenet_v2_avg_0', 'mobilenet_v2_avg_1'], dtype=object)
    """

    _parameter_constraints: dict = {
        "backbone": [str, callable],
        "weights": [StrOptions({"imagenet"}), str, os.PathLike, None],
        "pooling": [StrOptions({"avg", "max", "cls", "cls+avg"}), None],
        "layer": [str, list, tuple, None],
        "input_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        "resize": [StrOptions({AUTO, *RESIZE_POLICIES})],
        "interpolation": [StrOptions({AUTO, *INTERPOLATIONS})],
        "preprocessing": [StrOptions(set(PREPROCESSING_FAMILIES)), None],
        "tta": [str, list, tuple, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "precision": [StrOptions(set(PRECISION_CHOICES))],
        "engine": [StrOptions(set(ENGINE_CHOICES))],
        "cache": [str, os.PathLike, None],
        "n_jobs": N_JOBS,
        "on_error": [StrOptions({"raise", "nan"})],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone="resnet50",
        weights="imagenet",
        pooling="avg",
        layer=None,
        input_size=None,
        resize="auto",
        interpolation="auto",
        preprocessing=None,
        tta=None,
        batch_size=32,
        precision="float32",
        engine="auto",
        cache=None,
        n_jobs=None,
        on_error="raise",
        verbose=0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.pooling = pooling
        self.layer = layer
        self.input_size = input_size
        self.resize = resize
        self.interpolation = interpolation
        self.preprocessing = preprocessing
        self.tta = tta
        self.batch_size = batch_size
        self.precision = precision
        self.engine = engine
        self.cache = cache
        self.n_jobs = n_jobs
        self.on_error = on_error
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the parameters and build (or fetch) the network; learn nothing.

        Parameters
        ----------
        X : images or, for a tabular custom backbone, array of shape \
(n_samples, n_columns)
            Only checked for a tabular backbone; see the class's Notes for
            the accepted image forms.
        y : None
            Ignored.

        Returns
        -------
        self : PretrainedFeatureTransformer
        """
        network = self._network(_length(X))
        if not network.takes_images:
            validate_data(self, X, dtype=np.float32, reset=True)
        return self

    def transform(self, X):
        """Compute the features of every item of ``X``.

        ``fit`` is not required: the result is the same with or without it.

        Parameters
        ----------
        X : images or, for a tabular custom backbone, array of shape \
(n_samples, n_columns)
            See the class's Notes for the accepted forms.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features), float32
            One row per item, in order (rows of unreadable items are NaN
            with ``on_error="nan"``).
        """
        from ._features import extract_features, make_source

        self._validate_params()
        network = self._network(_length(X))
        if not network.takes_images:
            X = self._check_table(X, network)
        source = make_source(network, X, resize=self.resize, interpolation=self.interpolation)
        return extract_features(
            network,
            source,
            batch_size=self.batch_size,
            n_jobs=self.n_jobs,
            on_error=self.on_error,
            verbose=self.verbose,
            cache=self.cache,
        )

    def get_feature_names_out(self, input_features=None):
        """Names of the output features, e.g. ``resnet50_avg_0``.

        Parameters
        ----------
        input_features : None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
            ``{backbone}_{pooling}_{i}``, or ``{backbone}_{layer}_{pooling}_{i}``
            when ``layer`` is given (``flat`` for ``pooling=None``); for a
            transformer, ``cls`` (class token) and ``avg`` (patch tokens'
            mean), and ``embedding`` for CLIP's and SigLIP's image embedding.
        """
        self._validate_params()
        named = isinstance(self.backbone, str) and self.layer is None and self.pooling is not None
        # A local KerasHub preset may be of another width than the registry's.
        if named and not (_is_hub_name(self.backbone) and self.weights not in ("imagenet", None)):
            # Known from the registry: no network is built (the HTML
            # representation calls this, and must not start a download).
            from ._backbones import get_backbone_spec
            from .networks.assembly import pooled_feature_names

            spec = get_backbone_spec(self.backbone)
            label = "embedding" if spec.is_hub and not spec.prefix_tokens else self.pooling
            width = spec.feature_size * (2 if label == "cls+avg" else 1)
            if not spec.prefix_tokens and label in ("cls", "cls+avg"):
                return np.asarray(self._network().feature_names, dtype=object)  # raises the pooling error
            return np.asarray(pooled_feature_names(spec.name, label, width), dtype=object)
        return np.asarray(self._network().feature_names, dtype=object)

    def _validate_params(self):
        super()._validate_params()
        check_parameter_values(self)  # what the constraints cannot express

    def __setstate__(self, state):
        state.setdefault("tta", None)  # pickled before tta existed
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        takes_table = self._takes_table()
        tags.input_tags.two_d_array = takes_table
        tags.input_tags.three_d_array = not takes_table
        tags.transformer_tags.preserves_dtype = ["float32"] if takes_table else []
        return tags

    # -- helpers ------------------------------------------------------------

    def _network(self, n_items=None):
        """The network ``transform`` runs: the engine and precision decided once
        per process for these parameters (or recorded by ``fit``)."""
        from .engines import get_engine, prepare
        from .networks import get_feature_network

        choice = self._choice(n_items)
        layers = (self.layer,) if isinstance(self.layer, str) else self.layer
        network = get_feature_network(
            self.backbone,
            weights=self.weights,
            input_size=self.input_size,
            pooling=self.pooling,
            layers=tuple(layers) if layers is not None else None,
            preprocessing=self.preprocessing,
            precision=get_engine(choice.engine).network_precision(choice.precision),
            tta=self.tta,
        )
        if not network.takes_images:
            return network  # a tabular custom backbone: TensorFlow
        return prepare(network, choice.engine, choice.precision)

    def _choice(self, n_items=None):
        from .engines.decision import choose

        return choose(
            self.engine, self.precision, self.backbone, self.input_size, weights=self.weights, n_items=n_items
        )

    def _takes_table(self):
        from .networks import backbone_takes_table

        return backbone_takes_table(self.backbone, weights=self.weights, input_size=self.input_size)

    def _check_table(self, X, network):
        if hasattr(self, "n_features_in_"):
            return validate_data(self, X, dtype=np.float32, reset=False)
        from sklearn.utils.validation import check_array

        X = check_array(X, dtype=np.float32)
        expected = network.n_input_features
        if expected is not None and X.shape[1] != expected:
            raise ValueError(f"X has {X.shape[1]} features, but the backbone takes {expected} columns.")
        return X


def _length(X):
    """The number of items in ``X``, where it has one (a job's size, for the engine decision)."""
    try:
        return len(X)
    except TypeError:
        return None


def _is_hub_name(name):
    from ._backbones import get_backbone_spec

    return get_backbone_spec(name).is_hub
