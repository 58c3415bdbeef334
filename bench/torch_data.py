"""The torchvision + PIL counterpart of `macdist bench data`: the same
transforms through DataLoader(num_workers=N) on the train split of an
ImageFolder tree, one warm-up epoch then one timed epoch (with fresh
workers, as DataLoader starts them for each epoch by default), printing one JSON
line with the same keys.

  /usr/bin/python3 bench/torch_data.py --data PATH --workers 2 [--image-size 224] [--eval] [--batch 64]
"""
import argparse
import json
import os
import resource
import time

import torch
import torchvision
import torchvision.transforms as T


def cpu_seconds():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="ImageFolder root (train/ is timed)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--eval", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    s = args.image_size
    if args.eval:
        resize = round(s * 256 / 224) if s >= 128 else s
        tf = T.Compose([T.Resize(resize), T.CenterCrop(s), T.ToTensor(), norm])
    else:
        tf = T.Compose([T.RandomResizedCrop(s), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    ds = torchvision.datasets.ImageFolder(os.path.join(args.data, "train"), tf)
    def loader():
        return torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True)

    # A first epoch warms up the page cache. The timed one gets fresh
    # workers, which exit with it: their CPU time reaches RUSAGE_CHILDREN
    # only when they are reaped, so it is read after the epoch has ended.
    for _ in loader():
        pass
    t0, c0 = time.perf_counter(), cpu_seconds()
    n = 0
    for x, y in loader():
        n += x.shape[0]
    secs = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    cores = max(1, min(args.workers or 1, os.cpu_count()))
    print(json.dumps(dict(
        framework="torchvision", decoder="PIL " + __import__("PIL").__version__, transforms="eval" if args.eval else "train",
        image_size=s, workers=args.workers, cores=cores, batch=args.batch, images=n, seconds=secs,
        images_per_s=n / secs, images_per_s_per_core=n / secs / cores, cpu_s=cpu, images_per_cpu_s=n / cpu,
        read_share=None, decode_share=None, resize_share=None)))


if __name__ == "__main__":
    main()
