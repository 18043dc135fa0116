"""Test-time augmentation inside the graph: a batch becomes several views of
each image, the network runs on all of them, and their outputs are averaged.

``tta`` names the views: ``None``; ``"flip"`` (the image and its mirror
image); ``"light"`` (those two, and both again cropped to the central 87.5%
and resized back); or a list of view names, each a transform or several
joined by ``+`` (``"crop_center+flip"``). The transforms are deterministic,
so a view is the same whatever the batch, and the engines (TensorFlow,
OpenVINO) run them as part of the network they are given.
"""

from __future__ import annotations

import keras

from .._tta import CROP_FRACTION


@keras.saving.register_keras_serializable(package="skptm")
class ViewStack(keras.layers.Layer):
    """``(batch, height, width, 3)`` to ``(n_views * batch, height, width, 3)``:
    every image in each view, view after view."""

    def __init__(self, views, **kwargs):
        super().__init__(**kwargs)
        self.views = tuple(views)

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        return keras.ops.concatenate([_view(x, view) for view in self.views], axis=0)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] * len(self.views)
        return (batch, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "views": list(self.views)}


@keras.saving.register_keras_serializable(package="skptm")
class MeanOverViews(keras.layers.Layer):
    """``(n_views * batch, ...)`` back to ``(batch, ...)``: the mean over views."""

    def __init__(self, n_views, **kwargs):
        super().__init__(**kwargs)
        self.n_views = int(n_views)

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        x = keras.ops.reshape(x, (self.n_views, -1, *x.shape[1:]))
        return keras.ops.mean(x, axis=0)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.n_views
        return (batch, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "n_views": self.n_views}


def with_views(model, views: tuple[str, ...], name: str | None = None):
    """``model`` run on every view of its input, outputs averaged; ``model``
    itself when there are no views."""
    if not views:
        return model
    inputs = keras.Input(model.inputs[0].shape[1:], name=model.inputs[0].name)
    outputs = MeanOverViews(len(views), name="mean_over_views")(model(ViewStack(views, name="test_time_views")(inputs)))
    return keras.Model(inputs, outputs, name=name or f"{model.name}_tta")


def _view(x, view):
    for transform in view.split("+"):
        x = _transform(x, transform)
    return x


def _transform(x, transform):
    if transform == "identity":
        return x
    if transform == "flip":
        return keras.ops.flip(x, axis=2)
    if transform == "flip_vertical":
        return keras.ops.flip(x, axis=1)
    height, width = x.shape[1], x.shape[2]
    crop_h, crop_w = round(height * CROP_FRACTION), round(width * CROP_FRACTION)
    vertical, horizontal = {
        "crop_center": ("center", "center"),
        "crop_top_left": ("top", "left"),
        "crop_top_right": ("top", "right"),
        "crop_bottom_left": ("bottom", "left"),
        "crop_bottom_right": ("bottom", "right"),
    }[transform]
    top = {"top": 0, "center": (height - crop_h) // 2, "bottom": height - crop_h}[vertical]
    left = {"left": 0, "center": (width - crop_w) // 2, "right": width - crop_w}[horizontal]
    crop = x[:, top : top + crop_h, left : left + crop_w, :]
    return keras.ops.image.resize(crop, (height, width), interpolation="bilinear")
