"""PyTorch autocast fixtures for macdist's bf16 mixed precision (--precision bf16).

Each layer case runs forward and backward under
torch.autocast("cpu", dtype=torch.bfloat16), as a PyTorch user trains in
bf16, and stores, keys prefixed "CASE/":
  x, r                    input and the cotangent r of L = sum(r * y)
  param.NAME              the layer's float32 parameters
  y, dx, grad.NAME        autocast's output, dL/dx and dL/dNAME (float32
                          copies: autocast's conv and linear outputs, and so
                          their gradients, are bf16)
  f32.y, f32.dx, f32.grad.NAME   the same without autocast, in float32
with metadata "CASE" = JSON of the layer and its configuration. Autocast's
bf16 differs from float32 by bf16's rounding (8 significant bits, a relative
2^-9 per rounding); the f32.* tensors let the Go test show that its bf16
path is nearer autocast's than float32 is, not only within a tolerance.

models_bf16_lenet5 and models_bf16_resnet8 are one training-mode step of
LeNet-5 and of a CIFAR ResNet-8 (gen_models.py's, hash_init) on a batch of 8
under autocast: logits, loss and every parameter's gradient, with the
relative error of the float32 step against them in the metadata (f32_err).

Run with Debian's /usr/bin/python3 (PyTorch 1.13: CPU autocast with bf16).
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fnv1a64, hash_init, save  # noqa: E402
from gen_models import build  # noqa: E402

SEED = 7


class Wrap(nn.Module):
    def __init__(self, mod):
        super().__init__()
        self.layer = mod

    def forward(self, x):
        return self.layer(x)


class Attention(nn.Module):
    """timm's Attention, as in gen_layers_vit.py; under autocast its matmuls are bf16."""

    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.float().softmax(dim=-1)  # macdist's softmax is float32; autocast's matmul recasts it
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


# (case, kind, configuration, input shape)
CASES = [
    ("conv_3x3_pad_bias", "conv", dict(In=3, Out=8, Kernel=3, Stride=1, Padding=1, Groups=1, Bias=True), [2, 3, 10, 10]),
    ("conv_lenet1", "conv", dict(In=1, Out=6, Kernel=5, Stride=1, Padding=0, Groups=1, Bias=True), [4, 1, 12, 12]),
    ("conv_16x32_stride2", "conv", dict(In=16, Out=32, Kernel=3, Stride=2, Padding=1, Groups=1, Bias=False), [2, 16, 9, 9]),
    ("conv_groups2", "conv", dict(In=8, Out=8, Kernel=3, Stride=1, Padding=1, Groups=2, Bias=True), [2, 8, 7, 7]),
    ("conv_1x1_32", "conv", dict(In=32, Out=16, Kernel=1, Stride=1, Padding=0, Groups=1, Bias=False), [2, 32, 6, 6]),
    ("linear_bias", "linear", dict(In=40, Out=12, Bias=True), [6, 40]),
    ("linear_3d_nobias", "linear", dict(In=64, Out=10, Bias=False), [2, 5, 64]),
    ("attn_d16_h2_n9", "attention", dict(Dim=16, Heads=2, QKVBias=True), [2, 9, 16]),
]


def make(kind, c):
    if kind == "conv":
        return nn.Conv2d(c["In"], c["Out"], c["Kernel"], stride=c["Stride"], padding=c["Padding"],
                         groups=c["Groups"], bias=c["Bias"])
    if kind == "linear":
        return nn.Linear(c["In"], c["Out"], bias=c["Bias"])
    return Attention(c["Dim"], c["Heads"], c["QKVBias"])


def run(model, x, r, autocast):
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = model(x)
    (y.float() * r).sum().backward()
    return y.detach().float(), x.grad.detach().float(), {n: p.grad.detach().float().clone() for n, p in model.named_parameters()}


def gen_layers():
    out, meta = {}, {}
    for name, kind, cfg, shape in CASES:
        torch.manual_seed(fnv1a64(name) % (1 << 31))
        model = Wrap(make(kind, cfg))
        x = torch.randn(shape)
        with torch.no_grad():
            y = model(x)
        r = torch.randn(y.shape)
        for n, p in model.named_parameters():
            out[name + "/param." + n] = p.detach()
        out[name + "/x"], out[name + "/r"] = x, r
        for prefix, ac in (("", True), ("f32.", False)):
            y, dx, grads = run(model, x, r, ac)
            out[name + "/" + prefix + "y"], out[name + "/" + prefix + "dx"] = y, dx
            for n, g in grads.items():
                out[name + "/" + prefix + "grad." + n] = g
        meta[name] = json.dumps({"kind": kind, "cfg": cfg})
    path = save("layers_bf16", out, meta)
    print("layers_bf16: %d cases, %d bytes" % (len(CASES), os.path.getsize(path)))


# (fixture suffix, Go model name, gen_models.build kind, Config, batch)
MODEL_CASES = [
    ("lenet5", "lenet5", "lenet5", dict(InChannels=1, ImageSize=28, Classes=10), 8),
    # Two stages of 16 and 32 channels: the blocked layout, batch norm and
    # the residual sums around bf16 convolutions.
    ("resnet8", "resnet20", "cifar-resnet", dict(InChannels=3, ImageSize=16, Classes=10, Depth=8), 8),
]


def rel_l2(got, want):
    """||got-want|| / ||want||, the Go test's measure for a model's tensors."""
    scale = want.double().norm().item()
    d = (got.double() - want.double()).norm().item()
    return d / scale if scale else d


def gen_model(suffix, go_name, kind, opts, batch):
    torch.manual_seed(fnv1a64("bf16_" + suffix) % (1 << 31))
    model = build(kind, opts)
    hash_init(model, SEED)
    model.train()
    state = {n: t.clone() for n, t in model.state_dict().items()}
    x = torch.randn(batch, opts["InChannels"], opts["ImageSize"], opts["ImageSize"])
    labels = torch.randint(0, opts["Classes"], (batch,))
    res = {}
    for ac in (True, False):
        model.load_state_dict(state)  # the same running statistics for both steps
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=ac):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        res[ac] = {"logits": logits.detach().float(), "loss": loss.detach().reshape(1)}
        for n, p in model.named_parameters():
            res[ac]["grad." + n] = p.grad.detach().float().clone()
    out = {"input": x, "labels": labels.to(torch.int64), **res[True]}
    # How far float32 is from autocast, per tensor (relative L2): the Go
    # test's scale of how much two bf16 implementations may differ.
    f32_err = {k: float("%.3g" % rel_l2(res[False][k], v)) for k, v in res[True].items()}
    path = save("models_bf16_" + suffix, out, {"model": go_name, "config": json.dumps(opts, sort_keys=True),
                                               "seed": SEED, "f32_err": json.dumps(f32_err, sort_keys=True)})
    print("models_bf16_%s: %d bytes, loss %.5f (fp32 %.5f)" % (suffix, os.path.getsize(path), res[True]["loss"].item(),
                                                              res[False]["loss"].item()))


if __name__ == "__main__":
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    gen_layers()
    for case in MODEL_CASES:
        gen_model(*case)
