"""Phase 2 from JPEG files against plain ``model.fit`` on arrays in memory.

The baseline is the best case a Keras user has: the same network (the
``keras.applications`` backbone, average pooling, a Dense head), the same top
layers unfrozen, BatchNormalization frozen, Adam, the same batch size, and
the images already decoded and resized, as a uint8 array in memory, given to
``model.fit``. skptm's ``FineTunedClassifier`` gets the JPEG paths: it
decodes them (once per fit, kept within its in-memory budget), solves the
head, and trains phase 2. Both record the time of every epoch; the step rate
is the median over epochs after the first (which traces the step function).
Side by side in one process; prints both rates and the ratio, and the first
epochs (which trace the step function) side by side.

    python benchmarks/finetune_step_rate.py                         # mobilenet_v2, 128 px, 256 JPEGs of 1920x1280
    python benchmarks/finetune_step_rate.py --backbone resnet50 --size 224 --images 128
"""

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from _photos import write_labelled_jpegs

from skptm import FineTunedClassifier
from skptm._backbones import get_backbone_spec
from skptm._images import ImageReader
from skptm._unfreeze import select_unfrozen, set_trainable


class EpochTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def plain_keras_fit(spec, size, images, y, unfreeze, epochs, batch_size):
    keras.utils.set_random_seed(0)
    base = spec.constructor()(include_top=False, weights=None, input_shape=(size, size, 3))
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.applications.imagenet_utils.preprocess_input(keras.ops.cast(inputs, "float32"), mode=spec.preprocessing)
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    set_trainable(base, select_unfrozen(base, unfreeze))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    times = EpochTimes()
    model.fit(images, y, batch_size=batch_size, epochs=epochs, callbacks=[times], verbose=0)
    return times.seconds


def skptm_fit(name, size, paths, y, unfreeze, epochs, batch_size):
    times = EpochTimes()
    FineTunedClassifier(
        name,
        weights=None,
        input_size=size,
        unfreeze=unfreeze,
        finetune_epochs=epochs,
        batch_size=batch_size,
        callbacks=[times],
        random_state=0,
    ).fit(paths, y)
    return times.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--unfreeze", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    spec = get_backbone_spec(args.backbone)
    steps = -(-args.images // args.batch_size)
    with tempfile.TemporaryDirectory() as folder:
        paths, y = write_labelled_jpegs(folder, args.images)
        reader = ImageReader((args.size, args.size))
        images = np.stack([reader(path) for path in paths])  # the baseline's head start: decoded, resized
        skptm_fit(args.backbone, args.size, paths[:16], y[:16], args.unfreeze, 1, args.batch_size)  # build, cache
        ours = skptm_fit(args.backbone, args.size, paths, y, args.unfreeze, args.epochs, args.batch_size)
        plain = plain_keras_fit(spec, args.size, images, y, args.unfreeze, args.epochs, args.batch_size)
    print("epoch seconds: skptm", np.round(ours, 2), "plain", np.round(plain, 2))
    runs = (("ours", ours), ("plain", plain))
    rate = {key: steps / np.median(seconds[1:]) for key, seconds in runs}
    best = {key: steps / np.min(seconds[1:]) for key, seconds in runs}
    print(
        f"{spec.name}, {args.size} px, {args.images} images, batch {args.batch_size}, top {args.unfreeze} "
        f"layers unfrozen, {args.epochs} epochs; {platform.machine()}, {os.cpu_count()} cores"
    )
    print("                                          median epoch   best epoch")
    print(f"  plain model.fit, uint8 arrays in memory : {rate['plain']:6.2f} steps/s {best['plain']:8.2f} steps/s")
    print(f"  skptm phase 2, JPEG files on disk       : {rate['ours']:6.2f} steps/s {best['ours']:8.2f} steps/s")
    print(
        f"  ratio                                   : {rate['ours'] / rate['plain']:6.2f}x "
        f"{best['ours'] / best['plain']:13.2f}x"
    )
    # The first epoch traces the training step: plain model.fit traces it
    # twice (Keras makes the optimiser's slots and metrics inside the first
    # trace), skptm once.
    print(
        f"  first epoch (traces the step)           : plain {plain[0]:.2f} s, skptm {ours[0]:.2f} s, "
        f"ratio {ours[0] / plain[0]:.2f}x"
    )


if __name__ == "__main__":
    main()
