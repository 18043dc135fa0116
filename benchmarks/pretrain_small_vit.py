"""Pre-train a small DINOv2-architecture ViT here, and write it as a KerasHub preset.

No pretrained vision transformer can be downloaded on the machines skptm is
developed on, and a transformer with random weights says nothing about
whether fine-tuning beats the linear probe (the convolutional networks'
random-weight rows show that: both are near chance's features). This
script gives ``benchmarks/finetune_quality.py`` a transformer that learned
something from photographs, as HED's trunk does for VGG16: KerasHub's
``DINOV2Backbone`` in a small configuration (patch 8, 48 px, 4 blocks,
width 128), trained from random weights to tell apart random patches of
skptm's 16 sample photographs (``skptm.datasets.load_sample_photos``; 16
classes, random exposure, noise and flips), on the class token. scikit-
learn's two sample photographs and its digits, the tasks
``finetune_quality.py`` measures, are not among them.

The folder is a KerasHub preset (its ``config.json``, weights and DINOv2's
image converter), so skptm takes it as ``backbone=`` or ``weights=``:

    python benchmarks/pretrain_small_vit.py                   # ~/.cache/skptm-benchmarks/small_vit_photos
    python benchmarks/finetune_quality.py --backbone ~/.cache/skptm-benchmarks/small_vit_photos --weights imagenet
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

FOLDER = Path.home() / ".cache" / "skptm-benchmarks" / "small_vit_photos"
SIZE = 48


def patches(photos, n, rng, patch=64):
    """``n`` random patches (``patch`` px, resized to ``SIZE``) of ``photos``,
    with a random exposure, sensor noise and a flip each: (images, photo index)."""
    import tensorflow as tf

    labels = rng.integers(0, len(photos), n)
    crops = []
    for label in labels:
        photo = photos[label]
        top = rng.integers(0, photo.shape[0] - patch)
        left = rng.integers(0, photo.shape[1] - patch)
        crop = photo[top : top + patch, left : left + patch].astype(np.float32)
        crop = crop * rng.uniform(0.6, 1.4) + rng.normal(0, 12, crop.shape)
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    images = tf.image.resize(np.stack(crops).clip(0, 255), (SIZE, SIZE)).numpy()
    scale, offset = dinov2_scale_offset()
    return images * scale + offset, labels


def dinov2_scale_offset():
    """DINOv2's image converter, as skptm checks it: ImageNet's mean and std."""
    from skptm._backbones import get_backbone_spec
    from skptm.networks.hub import family_scale_offset

    scale, offset = family_scale_offset(get_backbone_spec("dinov2_small").preprocessing)
    return np.asarray(scale, np.float32), np.asarray(offset, np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FOLDER)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--per-epoch", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    import keras_hub
    from PIL import Image

    from skptm.datasets import load_sample_photos

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    photos = []
    for path in load_sample_photos().paths:
        with Image.open(path) as image:
            photo = image.convert("RGB")
            photo.thumbnail((400, 400))  # patches of a few objects, not of texture alone
            photos.append(np.asarray(photo))
    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=8,
        num_layers=4,
        hidden_dim=128,
        num_heads=4,
        intermediate_dim=512,
        image_shape=(SIZE, SIZE, 3),
        position_embedding_shape=(SIZE, SIZE, 3),
    )
    inputs = keras.Input((SIZE, SIZE, 3))
    tokens = backbone(inputs)
    cls = keras.layers.LayerNormalization()(tokens[:, 0])
    outputs = keras.layers.Dense(len(photos))(cls)
    model = keras.Model(inputs, outputs)
    steps = args.epochs * args.per_epoch // 64
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=1e-3, warmup_steps=steps // 10)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    held_out = patches(photos, 1000, np.random.default_rng(args.seed + 1000))
    start = time.perf_counter()
    for epoch in range(args.epochs):
        X, y = patches(photos, args.per_epoch, rng)
        history = model.fit(X, y, batch_size=64, epochs=1, verbose=0)
        loss, accuracy = model.evaluate(*held_out, batch_size=256, verbose=0)
        print(
            f"epoch {epoch + 1}/{args.epochs}: train loss {history.history['loss'][0]:.3f}, "
            f"held-out accuracy {accuracy:.3f} (chance {1 / len(photos):.3f}), {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    backbone.save_to_preset(str(args.out))
    scale, offset = dinov2_scale_offset()
    converter = keras_hub.layers.ImageConverter(
        image_size=(SIZE, SIZE), scale=[float(v) for v in scale], offset=[float(v) for v in offset]
    )
    converter.save_to_preset(str(args.out))
    print(f"wrote the preset to {args.out}")


if __name__ == "__main__":
    main()
