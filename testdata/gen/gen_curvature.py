"""Fixtures for nn's curvature taps (nn/curvature.go, KFACTapped): for a few
Linear and Conv2d layers, an input, the output gradient of a batch-mean loss,
and the statistics the taps must record, computed here in float64 from their
definitions with F.unfold:

    A = (1/R) Σ a aᵀ,  G = (1/R) Σ (B·g)(B·g)ᵀ,  ḡ = Eva's get_vector_g (a torch.mean),

and, to pin down the factor scaling the KFAC optimizer derives from them,
kfac-pytorch's (alecwangcq/KFAC-Pytorch, batch_averaged=True) convolution
factors: patches divided by the positions P, A = aᵀa/B; gradients times B·P,
G = gᵀg/R. A Linear over tokens is treated as a 1×1 convolution over its N
tokens. Run with Debian's /usr/bin/python3.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

CASES = [
    # name, kind, input shape, config
    ("linear2d_bias", "linear", [4, 5], dict(In=5, Out=3, Bias=True)),
    ("linear3d_nobias", "linear", [2, 3, 4], dict(In=4, Out=5, Bias=False)),
    ("conv3x3_s2_pad_bias", "conv", [3, 2, 7, 6], dict(In=2, Out=4, Kernel=3, Stride=2, Padding=1, Bias=True)),
    ("conv1x1_direct_bias", "conv", [2, 3, 4, 5], dict(In=3, Out=6, Kernel=1, Bias=True)),
    ("conv3x3_dil2_nobias", "conv", [2, 2, 8, 7], dict(In=2, Out=3, Kernel=3, Padding=2, Dilation=2, Bias=False)),
]


def run(name, kind, shape, cfg, out):
    # Rounded to float32 first, so that Go, fed the float32 values, sees
    # exactly the numbers the float64 statistics are computed from.
    x = torch.randn(*shape).double()
    B = shape[0]
    if kind == "linear":
        w = torch.randn(cfg["Out"], cfg["In"], dtype=torch.float64) / cfg["In"] ** 0.5
    else:
        k = cfg["Kernel"]
        w = torch.randn(cfg["Out"], cfg["In"], k, k, dtype=torch.float64) / (cfg["In"] * k * k) ** 0.5
    b = torch.randn(cfg["Out"], dtype=torch.float64) if cfg["Bias"] else None
    wq = w.clone().requires_grad_()
    if kind == "linear":
        y = F.linear(x, wq, b)
    else:
        y = F.conv2d(x, wq, b, stride=cfg.get("Stride", 1), padding=cfg.get("Padding", 0),
                     dilation=cfg.get("Dilation", 1))
    y.retain_grad()
    r = torch.randn(*y.shape, dtype=torch.float64)
    loss = (y * r).sum() / B  # a mean over the batch, as a classification loss
    loss.backward()
    g = y.grad.float().double()
    if kind == "linear":
        rows = x.reshape(-1, cfg["In"])
        grows = g.reshape(-1, cfg["Out"])
        gbar = torch.mean(g, list(range(g.dim()))[0:-1])  # Eva's get_vector_g
    else:
        p = F.unfold(x, cfg["Kernel"], dilation=cfg.get("Dilation", 1), padding=cfg.get("Padding", 0),
                     stride=cfg.get("Stride", 1))  # [B, C·k·k, P]
        rows = p.transpose(1, 2).reshape(-1, p.shape[1])
        grows = g.permute(0, 2, 3, 1).reshape(-1, cfg["Out"])
        gbar = torch.mean(g, [0, 2, 3])  # Eva's get_vector_g
    if cfg["Bias"]:
        rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], 1)
    R = rows.shape[0]
    P = R // B
    A = rows.T @ rows / R
    G = (B * grows).T @ (B * grows) / R
    ka = rows / P
    kA = ka.T @ (ka / B)
    kg = grows * B * P
    kG = kg.T @ (kg / R)
    out.update({name + "/x": x.float(), name + "/weight": w.float(), name + "/dy": g.float(),
                name + "/A": A, name + "/G": G, name + "/gbar": gbar, name + "/kfac_A": kA, name + "/kfac_G": kG})
    if b is not None:
        out[name + "/bias"] = b.float()
    return dict(kind=kind, shape=shape, cfg=cfg, positions=P)


def main():
    torch.manual_seed(0)
    out, meta = {}, {}
    for c in CASES:
        meta[c[0]] = json.dumps(run(*c, out), sort_keys=True)
    path = save("layers_curvature", out, meta)
    print("layers_curvature: %d cases, %d bytes" % (len(CASES), os.path.getsize(path)))


if __name__ == "__main__":
    main()
