"""PyTorch reference fixtures for the CNN layers of package nn (nn/*_test.go).

Each fixture file holds several cases, keys prefixed "CASE/":
  x, r          input and the cotangent r of L = sum(r * y)
  y, dx         output and dL/dx
  grad.NAME     dL/dNAME for every trainable state_dict entry
  after.NAME    buffers after the step (BatchNorm running statistics)
  tap           the MAC statistic a-bar of Linear and Conv2d (training mode):
                the mean of the input rows (F.unfold patches for a conv),
                with a trailing 1 when the layer has a bias
and metadata "CASE" = JSON of the case's configuration and its state_dict
names in order. Layers sit inside a wrapper module under the attribute
"layer" (blocks: "block"), so their names carry that prefix, and take
common.hash_init(model, SEED), which nn.HashInit reproduces in Go.

Run with Debian's /usr/bin/python3 (see common.py).
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SEED = 7


class Wrap(nn.Module):
    def __init__(self, attr, mod):
        super().__init__()
        self.attr = attr
        self.add_module(attr, mod)

    def forward(self, x):
        return getattr(self, self.attr)(x)


# --- blocks, written out as torchvision and xternalz/WideResNet-pytorch have them


class BasicBlock(nn.Module):
    def __init__(self, inp, out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inp != out:
            self.downsample = nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x if self.downsample is None else self.downsample(x)
        return self.relu(out + sc)


class Bottleneck(nn.Module):
    def __init__(self, inp, width, stride):
        super().__init__()
        out = width * 4
        self.conv1 = nn.Conv2d(inp, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or inp != out:
            self.downsample = nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        sc = x if self.downsample is None else self.downsample(x)
        return self.relu(out + sc)


class WideBlock(nn.Module):
    def __init__(self, inp, out, stride, drop_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inp)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.droprate = drop_rate
        self.equal = inp == out
        self.convShortcut = None if self.equal else nn.Conv2d(inp, out, 1, stride, 0, bias=False)

    def forward(self, x):
        if not self.equal:
            x = self.relu1(self.bn1(x))
            out = x
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        return (x if self.equal else self.convShortcut(x)) + out


# --- one case: run forward and backward, collect tensors


def run_case(store, meta, case, model, x, cfg, train=True, tap=None):
    common.hash_init(model, SEED)
    model.train(train)
    names = list(model.state_dict().keys())
    x = x.clone().requires_grad_(True)
    y = model(x)
    r = torch.randn(y.shape)
    y.backward(r)
    store[case + "/x"] = x.detach()
    store[case + "/r"] = r
    store[case + "/y"] = y.detach()
    store[case + "/dx"] = x.grad
    for name, p in model.named_parameters():
        store[case + "/grad." + name] = p.grad
    for name, b in model.named_buffers():
        store[case + "/after." + name] = b.detach().clone()
    if tap is not None:
        store[case + "/tap"] = tap(x.detach())
    meta[case] = json.dumps({"cfg": cfg, "names": names, "train": train})


def linear_tap(bias):
    def f(x):
        a = x.reshape(-1, x.shape[-1]).mean(0)
        return torch.cat([a, torch.ones(1)]) if bias else a
    return f


def conv_tap(cfg):
    def f(x):
        cols = F.unfold(x, cfg["Kernel"], dilation=cfg.get("Dilation", 1) or 1,
                        padding=cfg.get("Padding", 0), stride=cfg.get("Stride", 1) or 1)
        a = cols.mean(dim=(0, 2))
        return torch.cat([a, torch.ones(1)]) if cfg.get("Bias") else a
    return f


def gen_linear():
    store, meta = {}, {}
    for case, shape, out, bias in [
        ("2d_bias", (4, 5), 3, True),
        ("2d_nobias", (4, 5), 3, False),
        ("3d_bias", (2, 3, 5), 4, True),
        ("3d_nobias", (2, 3, 6), 2, False),
    ]:
        cfg = {"In": shape[-1], "Out": out, "Bias": bias}
        model = Wrap("layer", nn.Linear(shape[-1], out, bias=bias))
        run_case(store, meta, case, model, torch.randn(shape), cfg, tap=linear_tap(bias))
    common.save("layers_cnn_linear", store, meta)


def gen_conv():
    store, meta = {}, {}
    for case, shape, cfg in [
        ("basic", (2, 3, 5, 5), dict(In=3, Out=4, Kernel=3, Padding=1, Bias=True)),
        ("stride2_nobias", (2, 4, 7, 9), dict(In=4, Out=6, Kernel=3, Stride=2, Padding=1)),
        ("dilation2", (2, 3, 7, 9), dict(In=3, Out=5, Kernel=3, Padding=2, Dilation=2, Bias=True)),
        ("groups2", (2, 4, 6, 5), dict(In=4, Out=6, Kernel=3, Padding=1, Groups=2, Bias=True)),
        ("depthwise", (3, 4, 7, 7), dict(In=4, Out=8, Kernel=3, Stride=2, Padding=1, Groups=4)),
        ("k1_stride2", (2, 5, 7, 9), dict(In=5, Out=3, Kernel=1, Stride=2)),
        ("k1_direct_groups2", (2, 6, 5, 7), dict(In=6, Out=4, Kernel=1, Groups=2, Bias=True)),
        ("k5_nopad", (2, 2, 9, 7), dict(In=2, Out=3, Kernel=5, Bias=True)),
    ]:
        conv = nn.Conv2d(cfg["In"], cfg["Out"], cfg["Kernel"], stride=cfg.get("Stride", 1),
                         padding=cfg.get("Padding", 0), dilation=cfg.get("Dilation", 1),
                         groups=cfg.get("Groups", 1), bias=cfg.get("Bias", False))
        run_case(store, meta, case, Wrap("layer", conv), torch.randn(shape), cfg, tap=conv_tap(cfg))
    common.save("layers_cnn_conv", store, meta)


def gen_batchnorm():
    store, meta = {}, {}
    for case, shape, train in [
        ("train", (3, 4, 5, 3), True),
        ("train_1x1", (6, 5, 1, 1), True),
        ("eval", (3, 4, 5, 3), False),
    ]:
        model = Wrap("layer", nn.BatchNorm2d(shape[1]))
        # An offset and scale per channel, so the batch statistics are not
        # those of a standard normal.
        x = torch.randn(shape) * 1.5 + 0.3
        run_case(store, meta, case, model, x, {"C": shape[1]}, train=train)
    common.save("layers_cnn_batchnorm", store, meta)


def gen_pool():
    store, meta = {}, {}
    for case, shape, kind, k, s, p in [
        ("max_k3s2p1", (2, 3, 7, 9), "max", 3, 2, 1),
        ("max_k2s2", (2, 2, 5, 5), "max", 2, 2, 0),
        ("max_k3s1p1", (1, 2, 4, 6), "max", 3, 1, 1),
        ("avg_k3s2p1", (2, 3, 7, 9), "avg", 3, 2, 1),
        ("avg_k2s2", (2, 2, 5, 6), "avg", 2, 2, 0),
        ("avg_k3s1p1", (1, 2, 4, 5), "avg", 3, 1, 1),
        ("gap", (2, 3, 3, 5), "gap", 0, 0, 0),
        ("relu", (2, 3, 4, 5), "relu", 0, 0, 0),
    ]:
        if kind == "max":
            mod = nn.MaxPool2d(k, s, p)
        elif kind == "avg":
            mod = nn.AvgPool2d(k, s, p, count_include_pad=True)
        elif kind == "gap":
            mod = nn.AdaptiveAvgPool2d(1)
        else:
            mod = nn.ReLU()
        cfg = {"Kind": kind, "Kernel": k, "Stride": s, "Padding": p}
        run_case(store, meta, case, Wrap("layer", mod), torch.randn(shape), cfg)
    common.save("layers_cnn_pool", store, meta)


def gen_blocks():
    store, meta = {}, {}
    for case, shape, kind, inp, out, stride, train in [
        ("basic_identity", (2, 4, 6, 6), "basic", 4, 4, 1, True),
        ("basic_downsample", (2, 4, 7, 7), "basic", 4, 8, 2, True),
        ("basic_downsample_eval", (2, 4, 7, 7), "basic", 4, 8, 2, False),
        ("bottleneck_identity", (2, 8, 5, 5), "bottleneck", 8, 2, 1, True),
        ("bottleneck_downsample", (2, 4, 7, 6), "bottleneck", 4, 2, 2, True),
        ("wide_identity", (2, 4, 6, 6), "wide", 4, 4, 1, True),
        ("wide_shortcut", (2, 4, 7, 7), "wide", 4, 8, 2, True),
    ]:
        if kind == "basic":
            block = BasicBlock(inp, out, stride)
        elif kind == "bottleneck":
            block = Bottleneck(inp, out, stride)
        else:
            block = WideBlock(inp, out, stride, 0.0)
        cfg = {"Kind": kind, "In": inp, "Out": out, "Stride": stride}
        run_case(store, meta, case, Wrap("block", block), torch.randn(shape), cfg, train=train)
    # A small network through Sequential and Flatten: conv, ReLU, BN, max
    # pool, flatten, linear. (ReLU before BN: a conv bias straight before a
    # training-mode BN has a gradient of exactly zero, which only rounding
    # noise would be compared on.)
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 3 * 2, 5))
    run_case(store, meta, "sequential", seq, torch.randn(2, 3, 6, 5), {"Kind": "sequential"})
    common.save("layers_cnn_blocks", store, meta)


def gen_loss():
    store, meta = {}, {}
    for case, rows, classes, smoothing in [
        ("plain", 6, 5, 0.0),
        ("smoothing", 6, 5, 0.1),
        ("smoothing_wide", 4, 11, 0.25),
    ]:
        logits = (torch.randn(rows, classes) * 2).requires_grad_(True)
        labels = torch.randint(0, classes, (rows,))
        loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        loss.backward()
        correct = (logits.argmax(1) == labels).sum()
        store[case + "/logits"] = logits.detach()
        store[case + "/labels"] = labels
        store[case + "/loss"] = loss.detach().reshape(1)
        store[case + "/dlogits"] = logits.grad
        store[case + "/correct"] = correct.reshape(1)
        meta[case] = json.dumps({"smoothing": smoothing})
    common.save("layers_cnn_loss", store, meta)


def main():
    torch.manual_seed(20240611)
    gen_linear()
    gen_conv()
    gen_batchnorm()
    gen_pool()
    gen_blocks()
    gen_loss()


if __name__ == "__main__":
    main()
