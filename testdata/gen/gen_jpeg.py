"""Fixtures for data's JPEG path (data/decode_test.go), made by torchvision
0.14 + PIL, which decodes with libjpeg-turbo:

- fixtures/jpeg/*.jpg: a few JPEGs made from CIFAR-10 photos upscaled with
  noise (4:2:0, 4:4:4, greyscale, odd sizes), so that the test needs no data set;
- fixtures/jpeg/NAME_eval.png: Resize(128) + CenterCrop(112) of NAME.jpg;
- fixtures/jpeg/NAME_cropK.png: resized_crop to 112×112 of the box given in
  pipeline.json, mirrored when its flip is set;
- pipeline.json: those boxes, and RandomResizedCrop.get_params's boxes for
  given sequences of uniform draws (torch's random calls replaced by a replay),
  so that Go can check that the same draws give the same boxes.

The PNGs hold PIL's 8-bit output before ToTensor/Normalize, which are exact
table look-ups on both sides.

Run from the repository root with Debian's python (torch 1.13, torchvision
0.14, PIL 9.4):
  /usr/bin/python3 testdata/gen/gen_jpeg.py /work/shared/datasets/cifar10-jpeg.tar.gz
"""
import io
import json
import math
import os
import sys
import tarfile

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "jpeg")
SIZE, RESIZE = 112, 128


def cifar_photos(archive, n):
    out = []
    with tarfile.open(archive) as tf:
        for m in tf:
            if m.isfile() and m.name.endswith(".jpg") and "/train/" in m.name:
                out.append(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB"))
                if len(out) == n:
                    break
    return out


def make_images(archive):
    rs = np.random.RandomState(14)
    photos = cifar_photos(archive, 4)
    specs = [  # name, size, mode, JPEG options
        ("c420", (320, 240), "RGB", dict(quality=90)),
        ("c444", (240, 320), "RGB", dict(quality=95, subsampling=0)),
        ("grey", (300, 200), "L", dict(quality=90)),
        ("odd", (333, 251), "RGB", dict(quality=85)),
    ]
    names = []
    for (name, size, mode, opts), photo in zip(specs, photos):
        img = photo.resize(size, Image.BICUBIC)
        a = np.asarray(img).astype(np.float32) + rs.normal(0, 6, (size[1], size[0], 3))
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert(mode)
        img.save(os.path.join(OUT, name + ".jpg"), "JPEG", **opts)
        names.append(name)
    return names


class Replay:
    """Stands in for torch.empty / torch.randint inside get_params: each call
    consumes the next draw u in [0, 1)."""

    def __init__(self, draws):
        self.draws, self.k = draws, 0

    def next(self):
        u = self.draws[self.k]
        self.k += 1
        return u

    def empty(self, *size):
        replay = self

        class Box:
            def uniform_(self, a, b):
                a, b = float(a), float(b)
                u = torch.tensor([replay.next()], dtype=torch.float32)
                return u * (b - a) + a

        return Box()

    def randint(self, lo, hi, size):
        return torch.tensor([lo + int(math.floor(self.next() * (hi - lo)))])


def geometry_cases():
    rs = np.random.RandomState(7)
    cases = []
    sizes = [(500, 375), (375, 500), (320, 240), (64, 64), (1000, 60), (60, 1000), (333, 251), (7, 2)]
    for w, h in sizes:
        for _ in range(20):
            draws = [float(x) for x in rs.random_sample(22)]
            r = Replay(draws)
            real_empty, real_randint = torch.empty, torch.randint
            torch.empty, torch.randint = r.empty, r.randint
            try:
                i, j, hh, ww = T.RandomResizedCrop.get_params(Image.new("RGB", (w, h)), [0.08, 1.0], [3 / 4, 4 / 3])
            finally:
                torch.empty, torch.randint = real_empty, real_randint
            cases.append(dict(w=w, h=h, draws=draws, box=[j, i, j + ww, i + hh]))
    return cases


def main():
    archive = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/datasets/cifar10-jpeg.tar.gz"
    os.makedirs(OUT, exist_ok=True)
    names = make_images(archive)
    torch.manual_seed(0)
    crops = {}
    for name in names:
        img = Image.open(os.path.join(OUT, name + ".jpg")).convert("RGB")
        ev = F.center_crop(F.resize(img, RESIZE, interpolation=T.InterpolationMode.BILINEAR), SIZE)
        ev.save(os.path.join(OUT, name + "_eval.png"))
        boxes = []
        for k in range(4):
            i, j, h, w = T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
            flip = k % 2 == 1
            out = F.resized_crop(img, i, j, h, w, [SIZE, SIZE], T.InterpolationMode.BILINEAR)
            if flip:
                out = F.hflip(out)
            out.save(os.path.join(OUT, "%s_crop%d.png" % (name, k)))
            boxes.append(dict(box=[j, i, j + w, i + h], flip=flip))
        crops[name] = boxes
    with open(os.path.join(OUT, "pipeline.json"), "w") as f:
        json.dump(dict(size=SIZE, resize=RESIZE, crops=crops, geometry=geometry_cases()), f)
        f.write("\n")


if __name__ == "__main__":
    main()
