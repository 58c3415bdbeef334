"""Is MAC's blow-up at small batches on synthetic data the algorithm or our port?

`macdist train --model lenet5 --data synthetic:1x28x28:10:2048 --batch 16
--optimizer mac` (lr 0.1, cosine over 2 epochs) learns fast, then its loss
explodes around step 50 and training stops on non-finite gradients; SGD at
the same settings stays finite (and learns nothing). This runs the same
experiment with the independent PyTorch reference of shared/MAC.md
(ref_optim.MAC, from which the optimizer fixtures come) on data of the same
law (x = μ_y + ε, both uniform with unit variance per pixel, 10 classes,
2048 samples), for several seeds and batch sizes, and prints where each run
became non-finite.

    /usr/bin/python3 testdata/gen/check_mac_small_batch.py

Measured (PyTorch 1.13, CPU): MAC at batch 16 becomes non-finite at steps
57, 51 and 54 (seeds 0, 1, 2), its loss rising from step 42 on, before the
preconditioner's refresh at step 50; at batch 32, 64 and 128 it finishes;
SGD finishes everywhere. macdist on its own synthetic data of that law
(`--seed 0..2`, `--epochs 2`) gives the same picture: batch 16 stops at
steps 51, 52 and 59; batch 32, 64 and 128 finish (test accuracy 0.995–1.0,
0.998–1.0, 0.73–0.82). So the blow-up belongs to MAC's rule with these
hyperparameters (lr 0.1 with batch 16 on unnormalised data of variance 2),
not to macdist. Nothing is written.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_models import LeNet5  # noqa: E402
from ref_optim import MAC, SGDStep  # noqa: E402

N, CLASSES, EPOCHS, LR = 2048, 10, 2, 0.1


def run(opt_name, batch, seed):
    """Returns the first step with a non-finite loss, or None."""
    g = torch.Generator().manual_seed(seed)
    s3 = math.sqrt(3)
    mu = (torch.rand(CLASSES, 1, 28, 28, generator=g) * 2 - 1) * s3
    y = torch.randint(0, CLASSES, (N,), generator=g)
    x = mu[y] + (torch.rand(N, 1, 28, 28, generator=g) * 2 - 1) * s3
    torch.manual_seed(seed)
    model = LeNet5(1, 28, CLASSES)
    if opt_name == "mac":
        opt = MAC(model)
        opt.first_layer_covariance([x[i:i + 256] for i in range(0, N, 256)])
    else:
        opt = SGDStep(model.parameters(), 0.9, 5e-4)
    steps = N // batch
    total, k = EPOCHS * steps, 0
    for _ in range(EPOCHS):
        perm = torch.randperm(N, generator=g)
        for b in range(steps):
            idx = perm[b * batch:(b + 1) * batch]
            lr = 0.5 * LR * (1 + math.cos(math.pi * k / total))
            if opt_name == "mac":
                opt.begin_step()
            model.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                return k
            loss.backward()
            if opt_name == "mac":
                opt.step(lr)
            else:
                opt.apply(lr)
            k += 1
    return None


def main():
    torch.set_num_threads(1)
    for batch in (16, 32, 64, 128):
        for opt_name in ("mac", "sgd"):
            for seed in (0, 1, 2):
                step = run(opt_name, batch, seed)
                print(f"{opt_name:4s} batch {batch:3d} seed {seed}: " +
                      ("finished" if step is None else f"non-finite loss at step {step}"), flush=True)


if __name__ == "__main__":
    main()
