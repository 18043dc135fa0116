"""Feature extraction from JPEG files: skptm against the straightforward Keras loop.

The baseline is what a careful user writes by hand: ``keras.utils.load_img``
per file (full decode, then resize), ``preprocess_input``, ``model.predict``
per batch. skptm decodes on threads while the network runs, and decodes large
JPEGs at reduced size (draft mode). Both use the same network and weights;
the script prints images per second for each and the ratio, measured in one
run, and checks that the features agree.

    python benchmarks/transform_throughput.py                  # 192 photos of 1600x1200
    python benchmarks/transform_throughput.py --backbone resnet50 --photo 640
"""

import argparse
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from skptm import PretrainedFeatureTransformer
from skptm._backbones import get_backbone_spec


def write_photos(folder, n, width, height):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    paths = []
    for i in range(n):
        image = Image.fromarray(np.roll(base, i, axis=1)).resize((width, height), Image.Resampling.BILINEAR)
        paths.append(Path(folder) / f"{i}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def keras_loop(paths, model, preprocess_input, size, batch_size):
    features = []
    for start in range(0, len(paths), batch_size):
        batch = np.stack(
            [
                keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size), interpolation="bilinear"))
                for p in paths[start : start + batch_size]
            ]
        )
        features.append(model.predict(preprocess_input(batch), verbose=0))
    return np.concatenate(features)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--photo", type=int, default=1600, help="photo width; height is 3/4 of it")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    spec = get_backbone_spec(args.backbone)
    size = spec.input_size
    module = keras.applications.imagenet_utils
    preprocess = {
        "caffe": lambda x: module.preprocess_input(x, mode="caffe"),
        "tf": lambda x: module.preprocess_input(x, mode="tf"),
        "torch": lambda x: module.preprocess_input(x, mode="torch"),
        "none": lambda x: x,
    }[spec.preprocessing]

    with tempfile.TemporaryDirectory() as folder:
        paths = write_photos(folder, args.images, args.photo, args.photo * 3 // 4)
        extractor = PretrainedFeatureTransformer(args.backbone, weights=None, batch_size=args.batch_size)
        network = extractor._network()
        plain = keras.Model(network.base.inputs, keras.layers.GlobalAveragePooling2D()(network.base.outputs[0]))
        extractor.transform(paths[: args.batch_size])  # warm up both paths
        keras_loop(paths[: args.batch_size], plain, preprocess, size, args.batch_size)

        start = time.perf_counter()
        baseline = keras_loop(paths, plain, preprocess, size, args.batch_size)
        baseline_time = time.perf_counter() - start
        start = time.perf_counter()
        ours = extractor.transform(paths)
        ours_time = time.perf_counter() - start

    agreement = np.linalg.norm(ours - baseline) / np.linalg.norm(baseline)
    print(f"{args.backbone}, {args.images} JPEGs of {args.photo}x{args.photo * 3 // 4} to {size} px")
    print(f"  keras loop : {args.images / baseline_time:7.1f} images/s")
    print(f"  skptm      : {args.images / ours_time:7.1f} images/s")
    print(
        f"  speed-up   : {baseline_time / ours_time:7.2f}x   (relative feature difference "
        f"{agreement:.3f}: draft decoding resamples differently)"
    )


if __name__ == "__main__":
    main()
