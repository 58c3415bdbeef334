"""The PyTorch side of bench/epoch.sh: one epoch of ResNet-20 on the CIFAR-10
JPEGs with the reproduction's recipe (RandomCrop 32 pad 4, flip, CIFAR-10
normalisation, batch 128, SGD lr 0.1 momentum 0.9 weight decay 5e-4), data
loading included: torchvision's ImageFolder + DataLoader(num_workers=WORKERS),
the way a PyTorch user writes it. Prints one JSON line.

    /usr/bin/python3 bench/torch_epoch.py --data DIR/train --mode channels_last
"""
import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T

from torch_ref import build, MODES


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="ImageFolder directory of the training JPEGs")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: the whole epoch)")
    ap.add_argument("--mode", default="nchw", choices=MODES[:2])
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    ds = torchvision.datasets.ImageFolder(a.data, transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                                     drop_last=True, persistent_workers=False)
    model, _ = build("resnet20")
    cl = a.mode == "channels_last"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    steps, seen, correct = 0, 0, 0
    start = time.perf_counter()
    for x, y in dl:
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        seen += len(y)
        correct += (out.argmax(1) == y).sum().item()
        if a.max_steps and steps >= a.max_steps:
            break
    total = time.perf_counter() - start
    print(json.dumps({
        "framework": "pytorch-" + ".".join(torch.__version__.split(".")[:2]),
        "recipe": "resnet20 sgd crop-flip",
        "mode": a.mode,
        "steps": steps,
        "images": seen,
        "epoch_time_s": total,
        "img_per_s": seen / total,
        "train_acc": correct / seen,
        "workers": a.workers,
        "threads": torch.get_num_threads(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
