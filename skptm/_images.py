"""One item to one RGB array: decoding, orientation, colour modes, resizing.

Everything here works on a single image and knows nothing about batches or
networks. An item is a file path (``str`` or ``os.PathLike``), encoded bytes,
a ``PIL.Image.Image`` or a NumPy array; :class:`ImageReader` turns any of
them into an ``(height, width, 3)`` array of RGB values in 0-255, ready for
a network whose preprocessing lives inside it.

Conventions, documented once here and referred to by the estimators:

* **Orientation**: the EXIF orientation tag is applied, so a photo taken
  with the camera on its side comes out upright.
* **Colour modes**: grayscale, palette, CMYK, YCbCr and LAB images are
  converted to RGB by Pillow; 16-bit images (``I;16``, ``I``) are scaled
  from 0-65535 to 0-255 rather than clipped.
* **Alpha**: images with transparency (RGBA, LA, PA, palette or RGB with a
  transparency key) and ``(H, W, 4)`` arrays are composited over a white
  background, so transparent pixels become white whatever colour they
  happened to store.
* **Animations**: the first frame of an animated GIF, PNG or WebP is used.
* **Large JPEGs** are decoded at reduced size (Pillow's draft mode, a DCT
  scale of 1/2, 1/4 or 1/8) whenever the reduced image is still at least the
  target size, which avoids decoding camera-sized photos in full.
"""

from __future__ import annotations

import io
import os
import re
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

RESIZE_POLICIES = ("stretch", "center_crop", "pad")

#: The estimators' default ``resize`` and ``interpolation``: the backbone's
#: own (stretch and bilinear for the ``keras.applications`` networks; each
#: KerasHub preset's image converter's for the transformers).
AUTO = "auto"

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # width and height swap
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_WHITE = 255.0


#: Locks for loading a caller's PIL images, striped by object: PIL reads a
#: lazily opened image's file on its first ``load()``, which is not safe from
#: two threads at once (one object may appear many times in ``X``).
_LOAD_LOCKS = tuple(threading.Lock() for _ in range(64))


def loaded(image: Image.Image) -> Image.Image:
    """``image`` with its pixels loaded (a no-op once loaded), safe from any thread."""
    with _LOAD_LOCKS[id(image) % len(_LOAD_LOCKS)]:
        image.load()
    return image


def describe_item(item) -> str | None:
    """The path of an item, for error messages, or ``None`` if it has none."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    if isinstance(item, Image.Image):
        return getattr(item, "filename", None) or None
    return None


def oriented_size(item) -> tuple[int, int]:
    """``(height, width)`` of an item as :meth:`ImageReader.decode` orients it,
    before any resizing: an array's own shape, a file's from its header (EXIF
    orientation applied, no pixels decoded).

    Examples
    --------
    >>> import numpy as np
    >>> oriented_size(np.zeros((30, 40, 3), np.uint8))
    (30, 40)
    """
    if isinstance(item, (list, tuple)):
        item = np.asarray(item)
    if isinstance(item, np.ndarray):
        return tuple(int(s) for s in item.shape[:2])
    if isinstance(item, (bytes, bytearray, memoryview)):
        item = io.BytesIO(item)
    if isinstance(item, Image.Image):
        return _header_size(item)
    with Image.open(item) as image:
        return _header_size(image)


def _header_size(image):
    if image.format == "TIFF":
        # Pillow turns a TIFF itself as it loads it, and reports the turned
        # size before then: only the loaded image's size and tag agree.
        loaded(image)
    return _oriented(image.size, image.getexif().get(_EXIF_ORIENTATION, 1))


def _oriented(pil_size, orientation):
    width, height = pil_size
    return (width, height) if orientation in _TRANSPOSING_ORIENTATIONS else (height, width)


@dataclass(frozen=True)
class ImageReader:
    """Turn one item into an RGB array of a fixed size.

    Parameters
    ----------
    size : tuple of int
        Target ``(height, width)``.
    resize : {"stretch", "center_crop", "pad"}
        ``"stretch"`` resizes to the target ignoring the aspect ratio (as
        ``keras.utils.load_img`` does); ``"center_crop"`` resizes the shorter
        side to the target and crops the centre; ``"pad"`` fits the whole
        image inside the target and fills the borders with black
        (letterboxing).
    interpolation : str
        Resampling filter, one of :data:`INTERPOLATIONS`.

    Returns arrays of dtype ``uint8`` when the source is 8-bit (or an
    array of whole values in 0-255, of any dtype) and ``float32`` otherwise
    (16-bit files, float arrays with fractions, partly transparent float
    arrays), always with values in 0-255. Arrays already at the target size
    are not resampled.
    """

    size: tuple[int, int]
    resize: str = "stretch"
    interpolation: str = "bilinear"

    def __call__(self, item) -> np.ndarray:
        if isinstance(item, (list, tuple)):  # e.g. an image passed through .tolist()
            item = np.asarray(item)
        if isinstance(item, np.ndarray):
            return self.from_array(item)
        return self._resize_rgb(self.decode(item))

    def decode(self, item):
        """Open, orient and convert an item to RGB, at its own size.

        Returns a PIL ``RGB`` image, or a float32 array for sources with more
        than 8 bits. JPEG files are decoded in draft mode, at the smallest
        DCT scale that still covers this reader's target size. A caller's PIL
        image is never modified (draft mode would change how it loads).
        """
        if isinstance(item, str) and _URL.match(item):
            raise ValueError(
                f"{item!r} is a URL; skptm reads local files only. Download it first "
                "(e.g. urllib.request.urlretrieve(url, path)) and pass the file's path"
            )
        if isinstance(item, (str, os.PathLike)):
            with Image.open(item) as image:
                return self._oriented_rgb(image, opened_here=True)
        if isinstance(item, (bytes, bytearray, memoryview)):
            with Image.open(io.BytesIO(item)) as image:
                return self._oriented_rgb(image, opened_here=True)
        if isinstance(item, Image.Image):
            return self._oriented_rgb(loaded(item), opened_here=False)
        raise TypeError(
            f"unsupported item of type {type(item).__name__}: expected a file path "
            "(str or pathlib.Path), encoded image bytes, a PIL image or a NumPy "
            "array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        )

    def _oriented_rgb(self, image: Image.Image, *, opened_here: bool):
        if image.width == 0 or image.height == 0:  # PIL resizes it to black
            raise ValueError(f"the image is empty (size {image.width}x{image.height})")
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        if opened_here and image.format == "JPEG":
            self._draft(image, orientation)
        return _pil_to_rgb(ImageOps.exif_transpose(image))

    def _draft(self, image: Image.Image, orientation: int) -> None:
        height, width = self.size
        if orientation in _TRANSPOSING_ORIENTATIONS:
            height, width = width, height
        # draft() keeps both sides >= the requested size, which is enough for
        # every resize policy; it only changes how the JPEG is decoded.
        image.draft(image.mode, (width, height))

    def _resize_rgb(self, rgb) -> np.ndarray:
        if isinstance(rgb, np.ndarray):
            return self._resize_float(rgb)
        return np.asarray(self._resize_pil(rgb))

    # -- arrays -------------------------------------------------------------

    def from_array(self, array: np.ndarray) -> np.ndarray:
        """Validate, convert to RGB and resize one image array (not modified)."""
        rgb = array_to_rgb(array)
        if rgb.shape[:2] == tuple(self.size):
            return rgb
        if rgb.dtype != np.uint8:
            # Whole values (an int64 array, keras's img_to_array) resize as the
            # same picture in 8 bits does: the same features as its file.
            exact = rgb.astype(np.uint8)
            if np.array_equal(exact, rgb):
                rgb = exact
        if rgb.dtype == np.uint8:
            return self._resize_rgb(Image.fromarray(rgb, "RGB"))
        return self._resize_rgb(rgb)

    # -- resizing ----------------------------------------------------------

    def placement(self, size):
        """Where an image of ``size`` ``(height, width)`` lands in this reader's
        output: ``(kept, target)``, the region of the image the resize policy
        keeps and the region of the output it fills, each ``(left, top, right,
        bottom)`` in pixels (``kept`` in floats for ``"center_crop"``).

        Examples
        --------
        >>> ImageReader((100, 100), resize="pad").placement((50, 100))
        ((0, 0, 100, 50), (0, 25, 100, 75))
        """
        height, width = self.size
        h, w = size
        if self.resize == "center_crop":
            return _center_box((w, h), (width, height)), (0, 0, width, height)
        if self.resize == "pad":
            scaled_w, scaled_h = _fit_inside((w, h), (width, height))
            left, top = (width - scaled_w) // 2, (height - scaled_h) // 2
            return (0, 0, w, h), (left, top, left + scaled_w, top + scaled_h)
        return (0, 0, w, h), (0, 0, width, height)

    def _resize_pil(self, image: Image.Image) -> Image.Image:
        height, width = self.size
        if image.size == (width, height):
            return image
        resample = INTERPOLATIONS[self.interpolation]
        kept, (left, top, right, bottom) = self.placement((image.height, image.width))
        if self.resize != "pad":
            return image.resize((width, height), resample, box=kept)
        canvas = Image.new(image.mode, (width, height), 0)
        canvas.paste(image.resize((right - left, bottom - top), resample), (left, top))
        return canvas

    def _resize_float(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.shape[:2] == tuple(self.size):
            return rgb.astype(np.float32, copy=False)
        channels = [
            np.asarray(self._resize_pil(Image.fromarray(np.ascontiguousarray(rgb[..., c]), "F"))) for c in range(3)
        ]
        return np.stack(channels, axis=-1)


def _center_box(source_size, target_size):
    """The centred region of ``source_size`` with the target's aspect ratio."""
    (w, h), (tw, th) = source_size, target_size
    scale = max(tw / w, th / h)
    crop_w, crop_h = tw / scale, th / scale
    left, top = (w - crop_w) / 2, (h - crop_h) / 2
    return (left, top, left + crop_w, top + crop_h)


def _fit_inside(source_size, target_size):
    (w, h), (tw, th) = source_size, target_size
    scale = min(tw / w, th / h)
    return max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))


def _pil_to_rgb(image: Image.Image):
    """A PIL image as RGB: a PIL ``RGB`` image, or a float32 array for 16-bit."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        raw = np.asarray(image, dtype=np.float32)
        if not np.isfinite(raw).all():  # a float image (e.g. TIFF) may hold NaN
            raise ValueError("the image contains NaN or infinite values")
        values = raw / 257.0 if image.mode != "F" else raw  # 65535 -> 255
        gray = np.clip(values, 0.0, 255.0)
        key = image.info.get("transparency")
        if isinstance(key, (int, float)) and image.mode != "F":  # a grey transparency key: over white
            gray = np.where(raw == key, _WHITE, gray).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = (image.convert("LA") if image.mode == "La" else image).convert("RGBA")  # La: no direct way
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """One image array as ``(H, W, 3)`` RGB in 0-255, never modifying the input.

    Accepts ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` and ``(H, W, 4)``;
    dtypes ``uint8`` (returned as is when already RGB), ``uint16`` (scaled
    from 0-65535), ``bool`` and any integer or float dtype with values in
    0-255. Alpha is composited over white (for ``uint8``, by Pillow, as
    for an RGBA file).
    """
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"an image array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"the image array is empty (shape {array.shape})")
    values = _as_0_255(array)
    channels = values.shape[-1]
    if channels == 1:
        return np.repeat(values, 3, axis=-1)
    if channels == 4 and values.dtype == np.uint8:  # as an RGBA file is: Pillow's compositing
        rgba = Image.fromarray(np.ascontiguousarray(values), "RGBA")
        return np.asarray(
            Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        )
    if channels == 4:
        alpha = values[..., 3:].astype(np.float32) / 255.0
        return values[..., :3] * alpha + _WHITE * (1.0 - alpha)
    return values


def _as_0_255(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 257.0
    if array.dtype == np.bool_:
        return array.astype(np.float32) * 255.0
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"an image array must be numeric; got dtype {array.dtype}")
    values = array.astype(np.float32)
    check_value_range(values)
    return values


def check_value_range(values: np.ndarray) -> None:
    """Raise ``ValueError`` unless every value is finite and within 0-255."""
    if not np.isfinite(values).all():
        raise ValueError("the image array contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 255.0:
        raise ValueError(
            f"image values must lie in [0, 255] (raw RGB, before any preprocessing); "
            f"got values in [{low:g}, {high:g}]. skptm applies each network's own "
            "preprocessing itself: pass the images unscaled"
        )
