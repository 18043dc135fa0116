"""What an inner block of a vision transformer costs against the whole network,
side by side in one run.

For each KerasHub backbone (``weights=None``: the architecture, no download),
``PretrainedFeatureTransformer.transform`` of ``--images`` random images at
224 px with TensorFlow float32, at the top (``layer=None``) and at block
``--stage`` (``layer="stage6"``). DINOv2, DINOv3 and ViT keep their blocks in
one encoder layer; skptm calls the blocks one by one so that block ``i``
costs ``i`` blocks: the ratio should be close to ``stage / depth``.

Every setting runs ``--rounds`` times, interleaved, and the best round counts.

    python benchmarks/inner_block_cost.py
    python benchmarks/inner_block_cost.py --backbones dinov2_small --stage 3
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from _figures import machine, versions

from skptm import PretrainedFeatureTransformer
from skptm._backbones import get_backbone_spec


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbones", nargs="+", default=["dinov2_small", "dinov3_vit_small_lvd1689m", "vit_base_patch16_224_imagenet"]
    )
    parser.add_argument("--stage", type=int, default=6)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    images = np.random.default_rng(0).integers(0, 256, (args.images, 224, 224, 3), dtype=np.uint8)
    print(f"{machine()}; {versions()}; TensorFlow float32, 224 px, batch 16, {args.images} images")
    for name in args.backbones:
        depth = get_backbone_spec(name).config["num_layers"]
        layers = {"top": None, f"stage{args.stage}": f"stage{args.stage}"}
        transformers = {
            label: PretrainedFeatureTransformer(
                name, weights=None, layer=layer, engine="tensorflow", precision="float32", batch_size=16
            ).fit(images)
            for label, layer in layers.items()
        }
        for transformer in transformers.values():
            transformer.transform(images[:16])  # build and trace outside the timing
        best = dict.fromkeys(transformers, float("inf"))
        for _ in range(args.rounds):
            for label, transformer in transformers.items():
                start = time.perf_counter()
                transformer.transform(images)
                best[label] = min(best[label], time.perf_counter() - start)
        ratio = best[f"stage{args.stage}"] / best["top"]
        print(
            f"{name}: top {args.images / best['top']:.1f} img/s, stage{args.stage} of {depth} "
            f"{args.images / best[f'stage{args.stage}']:.1f} img/s; time ratio {ratio:.2f} "
            f"(blocks {args.stage / depth:.2f})"
        )


if __name__ == "__main__":
    main()
