"""Layer-wise learning-rate decay for phase 2: lower layers learn more slowly.

The recipe of BEiT and of DINOv2's and most ViT fine-tuning code: with decay
``d``, the head and whatever sits above the top unfrozen block (the final
norm, a projection) learn at the full rate, the top block at ``d`` times it,
the next at ``d**2``, and so on down; everything below the lowest block
(the embeddings) one step below it. In a convolutional network, each
weighted layer counts as a block.
"""

from __future__ import annotations

import keras

from ._unfreeze import is_block, leaf_layers


def learning_rate_multipliers(base, unfrozen, decay) -> dict:
    """``{id(variable): multiplier}`` for the variables of the unfrozen layers.

    Parameters
    ----------
    base : keras.Model
        The backbone.
    unfrozen : tuple of str
        Paths of the unfrozen leaf layers (:func:`skptm._unfreeze.select_unfrozen`).
    decay : float in (0, 1]
        The factor per block, from the top down.
    """
    chosen = set(unfrozen)
    leaves = [(path, layer) for path, layer in leaf_layers(base) if path in chosen]
    transformer = any(is_block(layer) for _, layer in leaves)
    multipliers, depth, below_blocks = {}, 0, False
    for _, layer in reversed(leaves):  # from the top down
        if is_block(layer) or not transformer:
            depth += 1
        elif depth and not below_blocks:
            # Below the lowest block (the embeddings, and CLIP's norm before
            # the blocks): all of it one step further down.
            depth, below_blocks = depth + 1, True
        for variable in layer.weights:
            multipliers[id(variable)] = decay**depth
    return multipliers


@keras.saving.register_keras_serializable(package="skptm")
class LayerDecayAdam(keras.optimizers.Adam):
    """Adam whose learning rate is multiplied per variable.

    Parameters
    ----------
    learning_rate : float or schedule
    multipliers : dict
        ``{id(variable): factor}`` (:func:`learning_rate_multipliers`);
        variables not in it learn at the full rate.
    """

    def __init__(self, learning_rate, multipliers=None, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self._multipliers = dict(multipliers or {})
        self._by_index = []

    def build(self, variables):
        super().build(variables)
        self._by_index = [self._multipliers.get(id(variable), 1.0) for variable in variables]

    def update_step(self, gradient, variable, learning_rate):
        factor = self._by_index[self._get_variable_index(variable)]
        if factor != 1.0:
            learning_rate = keras.ops.multiply(learning_rate, factor)
        return super().update_step(gradient, variable, learning_rate)
