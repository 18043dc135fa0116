"""What ``tta=`` (test-time augmentation) may name, and its check.

Keras-free, so that parameter validation can use it; the views themselves
are layers in :mod:`skptm.networks.views`.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The fraction of each side a crop keeps (ImageNet's 224 of 256).
CROP_FRACTION = 0.875

#: The transforms a view is made of.
TRANSFORMS = (
    "identity",
    "flip",
    "flip_vertical",
    "crop_center",
    "crop_top_left",
    "crop_top_right",
    "crop_bottom_left",
    "crop_bottom_right",
)

#: The named sets of views ``tta`` accepts.
PRESETS = {
    "flip": ("identity", "flip"),
    "light": ("identity", "flip", "crop_center", "crop_center+flip"),
}


def parse_tta(tta, parameter="tta") -> tuple[str, ...]:
    """The views ``tta`` names, checked: ``()`` for ``None``.

    Raises
    ------
    ValueError
        An unknown preset or transform, or an empty list, named with the
        accepted values.
    """
    if tta is None:
        return ()
    if isinstance(tta, str):
        if tta not in PRESETS:
            raise ValueError(
                f"{parameter} must be None, one of {sorted(PRESETS)} or a list of views made of "
                f"{list(TRANSFORMS)} (joined by '+'). Received: {parameter}={tta!r}"
            )
        return PRESETS[tta]
    if not isinstance(tta, Sequence) or not tta or not all(isinstance(view, str) for view in tta):
        raise ValueError(
            f"{parameter} must be None, a preset name or a non-empty list of view names. Received: {tta!r}"
        )
    for view in tta:
        unknown = [part for part in view.split("+") if part not in TRANSFORMS]
        if unknown:
            raise ValueError(
                f"Unknown transform {unknown[0]!r} in view {view!r} of {parameter}; the transforms are "
                f"{list(TRANSFORMS)}, joined by '+'."
            )
    return tuple(tta)
