"""What a fine-tuning fit costs: seconds per 1,000 images, phase by phase.

``FineTunedClassifier`` with its defaults (the default backbone at its
native input size, ``unfreeze=8``, batch 32) fits camera-sized JPEG files:
phase 1 (decode, features of the frozen network, the head solved by
scikit-learn), then phase 2's epochs (forward and backward passes through
the unfrozen top layers; the first epoch also traces the training step),
once without augmentation and once with ``augment="light"``; then
``predict`` on the same files, plain and with test-time views
(``tta="flip"``, ``"light"``; the first call of each traces its network). Random weights (speed does not depend on
their values). Prints each phase per 1,000 images and the estimate for a
default fit (phase 1, then ``finetune_epochs=10``); ``--save`` writes the
table to ``docs/figures/finetune_cost.json``.

    python benchmarks/finetune_cost.py                  # efficientnet_b0, 224 px, 256 JPEGs, 3 epochs
    python benchmarks/finetune_cost.py --backbone resnet50 --images 128
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from _figures import machine, save_figure
from _photos import write_labelled_jpegs

from skptm import FineTunedClassifier


class PhaseTimes(keras.callbacks.Callback):
    """When each of phase 2's epochs starts, and its seconds.

    skptm trains with a shallow copy of each callback (a fitted estimator's
    parameters never hold training state), so results go into lists the
    copy shares.
    """

    def __init__(self):
        super().__init__()
        self.starts = []
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.starts.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self.starts[-1])


def timed_fit(args, paths, y, augment):
    times = PhaseTimes()
    model = FineTunedClassifier(
        args.backbone,
        weights=None,
        input_size=args.size,
        finetune_epochs=args.epochs,
        augment=augment,
        callbacks=[times],
        random_state=0,
    )
    start = time.perf_counter()
    model.fit(paths, y)
    total = time.perf_counter() - start
    return model, times.starts[0] - start, times.epochs, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=None, help="input size (default: the network's native size)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--save", action="store_true", help="write docs/figures/finetune_cost.json")
    args = parser.parse_args()
    per_k = 1000 / args.images
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        paths, y = write_labelled_jpegs(folder, args.images)
        # An untimed small fit builds the network and warms the process up.
        FineTunedClassifier(args.backbone, weights=None, input_size=args.size, finetune_epochs=1, random_state=0).fit(
            paths[:32], y[:32]
        )
        for augment in (None, "light"):
            model, phase1, epochs, total = timed_fit(args, paths, y, augment)
            predict = {}
            for tta in (None, "flip", "light"):
                start = time.perf_counter()
                model.set_params(tta=tta).predict(paths)
                predict[tta] = time.perf_counter() - start
            later = float(np.median(epochs[1:]))
            default_fit = phase1 + epochs[0] + 9 * later
            print(
                f"augment={augment!r}: phase 1 {phase1:.1f} s, epochs {np.round(epochs, 1)} s, fit {total:.1f} s, "
                f"predict {predict}"
            )
            rows.append(
                [
                    f"`augment={augment!r}`",
                    f"{phase1 * per_k:.0f} s",
                    f"{epochs[0] * per_k:.0f} s",
                    f"{later * per_k:.0f} s",
                    f"{default_fit * per_k / 60:.1f} min",
                    *(f"{predict[tta] * per_k:.0f} s" for tta in (None, "flip", "light")),
                ]
            )
    from skptm._backbones import get_backbone_spec

    size = f"{args.size} px" if args.size else f"{get_backbone_spec(args.backbone).input_size} px (native)"
    conditions = (
        f"FineTunedClassifier({args.backbone!r}) with its defaults (unfreeze=8, batch 32), input size {size}, "
        f"random weights, {args.images} JPEG files of 1920×1280 in 2 classes, {args.epochs} epochs timed; "
        "seconds per 1,000 images, scaled from the measured run; the default fit is phase 1 plus "
        "the first epoch plus 9 later ones (finetune_epochs=10); each predict column includes tracing its network"
    )
    print(machine(), "|", conditions)
    columns = [
        "",
        "phase 1 (features, head)",
        "first epoch (traces)",
        "each later epoch",
        "default fit",
        "`predict`",
        '`predict`, `tta="flip"`',
        '`predict`, `tta="light"`',
    ]
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(row))
    if args.save:
        save_figure("finetune_cost", conditions=conditions, columns=columns, rows=rows)


if __name__ == "__main__":
    main()
