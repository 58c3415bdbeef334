"""Writes an ImageNet-like ImageFolder tree for `bench/data.sh`: CIFAR-10
photos upscaled to about 500×375 (ImageNet's median) with noise, so that the
JPEGs weigh about 70 KB like ImageNet's, in OUT/train/CLASS/ and OUT/val/CLASS/.
Generated at bench time and never committed; nothing in macdist reads it.

  /usr/bin/python3 bench/gen_imagenet_like.py CIFAR10_JPEG_TAR_GZ OUT [--train 2000] [--val 200]
"""
import argparse
import io
import os
import tarfile

import numpy as np
from PIL import Image

# ImageNet's images are mostly landscape 500×375 or 500×333, some portrait.
SIZES = [(500, 375), (500, 375), (500, 333), (375, 500), (500, 400)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src", help="cifar10-jpeg.tar.gz (CIFAR-10 as CLASS/NNNN.jpg)")
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--quality", type=int, default=92)
    args = ap.parse_args()
    rs = np.random.RandomState(0)
    want = {"train": args.train, "val": args.val}
    done = {"train": 0, "val": 0}
    per_class = {}  # (split, class) -> count: ten classes, equally filled
    total = 0
    with tarfile.open(args.src) as tf:
        for m in tf:
            if not (m.isfile() and m.name.endswith(".jpg")):
                continue
            parts = m.name.split("/")
            split = "val" if "test" in parts else "train"
            if done[split] >= want[split]:
                if all(done[s] >= want[s] for s in want):
                    break
                continue
            cls = parts[-2]
            if per_class.get((split, cls), 0) >= (want[split] + 9) // 10:
                continue
            per_class[(split, cls)] = per_class.get((split, cls), 0) + 1
            img = Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB")
            w, h = SIZES[rs.randint(len(SIZES))]
            big = np.asarray(img.resize((w, h), Image.BICUBIC)).astype(np.float32)
            # Noise at two scales stands in for the detail a real photo has
            # and an upscaled thumbnail lacks, for the encoder's sake.
            coarse = np.asarray(Image.fromarray(rs.normal(128, 40, (h // 4, w // 4, 3)).clip(0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)).astype(np.float32) - 128
            big += 0.5 * coarse + rs.normal(0, 7, big.shape)
            d = os.path.join(args.out, split, cls)
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, "%05d.jpg" % done[split])
            Image.fromarray(big.clip(0, 255).astype(np.uint8)).save(path, "JPEG", quality=args.quality)
            total += os.path.getsize(path)
            done[split] += 1
    n = sum(done.values())
    print("gen: %d train + %d val JPEGs in %s, %.1f KB on average" % (done["train"], done["val"], args.out, total / max(n, 1) / 1024))


if __name__ == "__main__":
    main()
