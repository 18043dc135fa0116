"""Which backbone layers phase 2 trains, through nested models.

A backbone may hold models inside it (``Sequential([ResNet50(...)])``, a
functional model that calls another). Layers are therefore addressed by
*path*: the names from the backbone down to the layer, joined by ``/``
(``"resnet50/conv5_block3_3_conv"``); for a layer at the top level the path
is its name. Only *leaf* layers (layers that are not models themselves) are
counted, unfrozen and stored in slim pickles, at any depth.

A KerasHub transformer keeps its blocks inside one encoder layer
(DINOv2, DINOv3, ViT); for these, the blocks are the leaves, so that phase 2
can train the top blocks and leave the others. ``unfreeze=N`` then counts
transformer blocks: the top N, with every weighted layer above them (the
final norm, CLIP's projection, SigLIP's attention pooling).
"""

from __future__ import annotations

import difflib
import re

import keras

from .networks.hub import BLOCK_CLASSES, BLOCK_CONTAINERS

#: Weights of KerasHub's DINO embeddings that only masked-image pre-training
#: uses: no gradient reaches them, and Keras would warn about each, every fit.
_UNUSED_IN_INFERENCE = ("mask_token",)


def leaf_layers(model, prefix=""):
    """``(path, layer)`` for every layer of ``model`` that is not a model, in order."""
    for layer in _children(model):
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model) or type(layer).__name__ in BLOCK_CONTAINERS:
            yield from leaf_layers(layer, path + "/")
        else:
            yield path, layer


def _children(layer):
    if isinstance(layer, keras.Model):
        return layer.layers
    return layer._flatten_layers(include_self=False, recursive=False)


def is_block(layer) -> bool:
    """Whether ``layer`` is one of KerasHub's transformer blocks."""
    return type(layer).__name__ in BLOCK_CLASSES


def layer_at(model, path):
    """The leaf layer of ``model`` at ``path``."""
    for candidate, layer in leaf_layers(model):
        if candidate == path:
            return layer
    raise ValueError(f"Model {model.name!r} has no layer at path {path!r}.")


def _is_trainable_candidate(layer) -> bool:
    return bool(layer.weights) and not isinstance(layer, keras.layers.BatchNormalization)


def select_unfrozen(base, unfreeze) -> tuple:
    """Paths of the backbone layers to train in phase 2.

    ``unfreeze``: an int N (the top N leaf layers that carry weights, not
    counting BatchNormalization; in a KerasHub transformer, the top N blocks
    and the layers above them), ``"all"``, or the name (or path) of the
    lowest layer to unfreeze: it and every weighted layer above it. The name
    of a nested model stands for its first layer; in a transformer,
    ``"stage{i}"`` names block ``i`` (1 at the bottom), as ``layer=`` does.
    """
    leaves = list(leaf_layers(base))
    candidates = [(i, path) for i, (path, layer) in enumerate(leaves) if _is_trainable_candidate(layer)]
    blocks = [i for i, (_, layer) in enumerate(leaves) if is_block(layer)]
    if unfreeze == "all":
        return tuple(path for _, path in candidates)
    if isinstance(unfreeze, str):
        lowest = _stage_position(blocks, unfreeze, base) if blocks else None
        if lowest is None:
            lowest = _position(leaves, unfreeze, base, len(blocks))
        return tuple(path for i, path in candidates if i >= lowest)
    if not unfreeze:
        return ()
    if blocks:
        lowest = blocks[max(0, len(blocks) - unfreeze)]
        return tuple(path for i, path in candidates if i >= lowest)
    return tuple(path for _, path in candidates[max(0, len(candidates) - unfreeze) :])


def _stage_position(blocks, name, base):
    """The leaf position of block ``"stage{i}"`` of a transformer; ``None``
    where ``name`` is no stage name (then it names a layer)."""
    match = re.fullmatch(r"stage(\d+)", name)
    if match is None:
        return None
    number = int(match.group(1))
    if not 1 <= number <= len(blocks):
        raise ValueError(
            f"Backbone {base.name!r} has no block named {name!r}: its blocks are 'stage1' to "
            f"'stage{len(blocks)}', bottom to top. Received: unfreeze={name!r}"
        )
    return blocks[number - 1]


def _position(leaves, name, base, n_blocks=0) -> int:
    for i, (path, layer) in enumerate(leaves):
        # A leaf by path or name; a nested model, at any depth, by its path or
        # name: its first leaf is the first whose path passes through it.
        if name in (path, layer.name) or path.startswith(name + "/") or f"/{name}/" in f"/{path}":
            return i
    names = [path for path, _ in leaves] + [layer.name for _, layer in leaves]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    hint = f" Closest: {', '.join(map(repr, dict.fromkeys(close)))}." if close else ""
    where = (
        f"Its transformer blocks are 'stage1' to 'stage{n_blocks}', bottom to top (unfreeze='stage{n_blocks}' "
        "trains the top block and what is above it), or pass the number of top blocks."
        if n_blocks
        else "See [layer.name for layer in model.layers]."
    )
    raise ValueError(f"Backbone {base.name!r} has no layer named {name!r}.{hint} {where} Received: unfreeze={name!r}")


def set_trainable(base, paths) -> None:
    """Make exactly the leaf layers at ``paths`` trainable, at any depth.

    Keras propagates ``trainable`` from a model to everything inside it, so
    the whole backbone is switched on first and every leaf not chosen is
    switched off again; nested models stay trainable containers.
    BatchNormalization is never among ``paths`` (see :func:`select_unfrozen`).
    """
    chosen = set(paths)
    base.trainable = True
    for path, layer in leaf_layers(base):
        layer.trainable = path in chosen
        if layer.trainable:
            for variable in layer.weights:
                if variable.path.endswith(_UNUSED_IN_INFERENCE):
                    variable.trainable = False
    if not chosen:
        base.trainable = False
