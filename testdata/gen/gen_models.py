"""Fixtures for package nn/models: every model of the zoo written in plain
PyTorch with the state_dict layout of its original (torchvision's ResNets,
akamaster's CIFAR ResNets with torchvision-style blocks, xternalz's
WideResNet, timm's ViT), initialised with hash_init so that Go builds the same
weights without storing them, and run for one training-mode step on a batch of
two: input, labels, logits, loss and the gradient of the cross-entropy loss
with respect to every parameter.

Small models store full gradients. Large ones store four numbers per
parameter: the sum, the sum of absolute values, the sum of squares and the
projection on hash_uniform(name, 99, n)*2-1, a pseudo-random ±1 direction
that Go computes too, so that one wrong element cannot hide in a sum.

The reference values come from a float64 copy of the model (see run_case),
and the metadata records how far float32 strays from them on the same input
(f32_spread), which the Go test uses to size its tolerance for the deep
models. models_resnet20 also stores the BatchNorm running statistics after
the step, and models_lenet5 the hash-initialised conv1.weight.

FULL_CASES add full-size forward passes (swin_t at 224 px, evaluation mode,
one hash_uniform image): only the logits are stored.

Pass fixture suffixes (mlp, resnet50, ...) as arguments to regenerate only
those.

Run with Debian's /usr/bin/python3. The first models were written out by hand;
the later ones come from Debian's torchvision 0.14 where it has them
(resnet34, resnet101, resnet152, swin_t), and from a transcription of timm's
code otherwise (timm is not installable here).
"""
import copy
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fnv1a64, hash_init, hash_uniform, save  # noqa: E402

# Models with more parameters than this get summaries, not full gradients.
FULL_GRAD_LIMIT = 250_000
# Cases whose full gradients would add little to what another case covers.
FORCE_SUMMARY = {"lenet5-rgb20"}
PROJ_SEED = 99
# Float32 runs with nudged weights and input, and the relative size of a nudge.
NUDGES = 4
NUDGE = 2.0 ** -23


# ----------------------------------------------------------------- MLP, LeNet-5

class MLP(nn.Module):
    def __init__(self, in_c, size, classes, hidden):
        super().__init__()
        self.fc1 = nn.Linear(in_c * size * size, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    def __init__(self, in_c, size, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        s = (size // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * s * s, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


# ------------------------------------------------- ResNets (torchvision layout)

def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False)


def conv1x1(i, o, stride=1):
    return nn.Conv2d(i, o, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(out + idt)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3×3 conv."""
    expansion = 4

    def __init__(self, inplanes, width, stride=1):
        super().__init__()
        out = width * 4
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(out + idt)


class ResNet(nn.Module):
    """torchvision.models.ResNet (resnet18: BasicBlock [2,2,2,2]; resnet50: Bottleneck [3,4,6,3])."""

    def __init__(self, block, layers, in_c, classes):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_c, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, classes)

    def _make_layer(self, block, planes, n, stride):
        blocks = []
        for i in range(n):
            blocks.append(block(self.inplanes, planes, stride if i == 0 else 1))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet-(6n+2) as akamaster's implementation, with
    torchvision's BasicBlock (1×1 conv + BN projection shortcuts) and fc."""

    def __init__(self, depth, in_c, classes):
        super().__init__()
        assert (depth - 2) % 6 == 0
        n = (depth - 2) // 6
        self.conv1 = conv3x3(in_c, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.inplanes = 16
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, classes)

    def _make_layer(self, planes, n, stride):
        blocks = []
        for i in range(n):
            blocks.append(BasicBlock(self.inplanes, planes, stride if i == 0 else 1))
            self.inplanes = planes
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ------------------------------------------------------- WideResNet (xternalz)

class WideBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, drop_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.droprate = drop_rate
        self.equalInOut = in_planes == out_planes
        self.convShortcut = None
        if not self.equalInOut:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
            out = x
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        return (x if self.equalInOut else self.convShortcut(x)) + out


class NetworkBlock(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride, drop_rate):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
            for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, widen, in_c, classes, drop_rate=0.0):
        super().__init__()
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        assert (depth - 4) % 6 == 0
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_c, ch[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(ch[3], classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = self.relu(self.bn1(x))
        # xternalz pools with avg_pool2d(x, 8), which is global for 32 px;
        # global pooling keeps other image sizes meaningful.
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ----------------------------------------------------------------- ViT (timm)

class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias=True):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, in_c, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(in_c, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    def __init__(self, in_c, size, classes, dim, depth, heads, patch, mlp_ratio):
        super().__init__()
        self.patch_embed = PatchEmbed(in_c, dim, patch)
        n = (size // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# -------------------------------------------------------------------- cases

def build(kind, o):
    """o: the Go Config of the case as a dict (only the fields the model reads)."""
    c, s, k = o["InChannels"], o["ImageSize"], o["Classes"]
    if kind == "mlp":
        return MLP(c, s, k, o["Width"])
    if kind == "lenet5":
        return LeNet5(c, s, k)
    if kind == "cifar-resnet":
        return CifarResNet(o["Depth"], c, k)
    if kind == "resnet18":
        return ResNet(BasicBlock, [2, 2, 2, 2], c, k)
    if kind == "resnet50":
        return ResNet(Bottleneck, [3, 4, 6, 3], c, k)
    if kind in ("resnet34", "resnet101", "resnet152"):
        import torchvision
        m = getattr(torchvision.models, kind)(num_classes=k)
        if c != 3:
            m.conv1 = nn.Conv2d(c, 64, 7, stride=2, padding=3, bias=False)
        return m
    if kind == "swin":
        from torchvision.models.swin_transformer import SwinTransformer
        m = SwinTransformer(patch_size=[o["Patch"]] * 2, embed_dim=o["Dim"], depths=o["Stages"],
                            num_heads=[o["Heads"] << i for i in range(len(o["Stages"]))],
                            window_size=[o["Window"]] * 2, mlp_ratio=o["MLPRatio"], stochastic_depth_prob=0.0,
                            num_classes=k)
        if c != 3:
            m.features[0][0] = nn.Conv2d(c, o["Dim"], o["Patch"], stride=o["Patch"])
        return m
    if kind == "wrn":
        return WideResNet(o["Depth"], o["Width"], c, k, o.get("DropRate", 0.0))
    if kind == "vit":
        return ViT(c, s, k, o["Dim"], o["Depth"], o["Heads"], o["Patch"], o["MLPRatio"])
    raise ValueError(kind)


# (fixture suffix, Go model name, builder kind, Config overrides of the Go Default)
CASES = [
    ("mlp", "mlp", "mlp", dict(InChannels=1, ImageSize=28, Classes=10, Width=32)),
    ("lenet5", "lenet5", "lenet5", dict(InChannels=1, ImageSize=28, Classes=10)),
    # Three input channels at 20 px, to exercise the size arithmetic of fc1.
    ("lenet5-rgb20", "lenet5", "lenet5", dict(InChannels=3, ImageSize=20, Classes=7)),
    # resnet8 (n = 1) stores full gradients; resnet20's 272k would take 1.1 MB.
    ("resnet8", "resnet20", "cifar-resnet", dict(InChannels=3, ImageSize=32, Classes=10, Depth=8)),
    ("resnet20", "resnet20", "cifar-resnet", dict(InChannels=3, ImageSize=32, Classes=10, Depth=20)),
    ("resnet32", "resnet32", "cifar-resnet", dict(InChannels=3, ImageSize=32, Classes=10, Depth=32)),
    ("resnet56", "resnet56", "cifar-resnet", dict(InChannels=3, ImageSize=32, Classes=10, Depth=56)),
    ("resnet110", "resnet110", "cifar-resnet", dict(InChannels=3, ImageSize=32, Classes=10, Depth=110)),
    # 64 px rather than 32 so that layer4's BatchNorms see 2×2 maps: with 1×1
    # maps and a batch of two, every normalised value is ±1 and the gradient
    # behind it is rounding noise.
    ("resnet18", "resnet18", "resnet18", dict(InChannels=3, ImageSize=64, Classes=10)),
    ("resnet50", "resnet50", "resnet50", dict(InChannels=3, ImageSize=64, Classes=10)),
    ("resnet34", "resnet34", "resnet34", dict(InChannels=3, ImageSize=64, Classes=10)),
    ("resnet101", "resnet101", "resnet101", dict(InChannels=3, ImageSize=64, Classes=10)),
    ("resnet152", "resnet152", "resnet152", dict(InChannels=3, ImageSize=64, Classes=10)),
    ("wrn10-1", "wrn28-10", "wrn", dict(InChannels=3, ImageSize=16, Classes=10, Depth=10, Width=1)),
    ("wrn28-10", "wrn28-10", "wrn", dict(InChannels=3, ImageSize=32, Classes=10, Depth=28, Width=10)),
    ("vit-micro", "vit-tiny-cifar", "vit", dict(InChannels=3, ImageSize=16, Classes=10, Dim=32, Depth=2, Heads=2,
                                                   Patch=4, MLPRatio=4.0)),
    ("vit-tiny", "vit-tiny", "vit", dict(InChannels=3, ImageSize=32, Classes=10, Dim=192, Depth=12, Heads=3,
                                          Patch=16, MLPRatio=4.0)),
    ("vit-tiny-cifar", "vit-tiny-cifar", "vit", dict(InChannels=3, ImageSize=32, Classes=10, Dim=192, Depth=2,
                                                      Heads=3, Patch=4, MLPRatio=4.0)),
    # DeiT-Small and -Base at full width and heads, fewer blocks, 32 px.
    ("deit-small", "deit-small", "vit", dict(InChannels=3, ImageSize=32, Classes=10, Dim=384, Depth=2, Heads=6,
                                              Patch=16, MLPRatio=4.0)),
    # torchvision's SwinTransformer at 32 px with 1 px patches and 4 × 4
    # windows: stages at 32, 16, 8 and 4 px, so the first three shift their
    # odd blocks (masks included) and the last, one window wide, does not.
    ("swin-micro", "swin-tiny", "swin", dict(InChannels=3, ImageSize=32, Classes=10, Dim=16, Heads=2, Patch=1,
                                              MLPRatio=4.0, Stages=[2, 2, 2, 2], Window=4)),
    ("deit-base", "deit-base", "vit", dict(InChannels=3, ImageSize=32, Classes=10, Dim=768, Depth=1, Heads=12,
                                            Patch=16, MLPRatio=4.0)),
]

SEED = 7
BATCH = 2


def step(model, x, labels):
    """One training-mode forward and backward: logits, loss and every parameter's gradient."""
    logits = model(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    return logits.detach(), loss.detach().reshape(1), {n: p.grad.detach() for n, p in model.named_parameters()}


def summarize(name, g):
    """Sum, sum of |g|, sum of squares and ±1 projection of a gradient, in float64."""
    g = g.double().reshape(-1)
    r = torch.from_numpy(hash_uniform(name, PROJ_SEED, g.numel()) * 2 - 1)
    return torch.tensor([g.sum().item(), g.abs().sum().item(), (g * g).sum().item(), (g * r).sum().item()],
                        dtype=torch.float64)


def rel_err(got, want):
    """fixture.RelErr: max|got−want| / max|want|."""
    got, want = got.double(), want.double()
    scale = want.abs().max().item()
    d = (got - want).abs().max().item()
    return d / scale if scale else d


def summary_err(got, want):
    """The Go test's measure of a summary's error: the sum against the sum of |g|,
    the sum of squares relatively, the projection against the norm."""
    norm = math.sqrt(want[2].item()) or 1.0
    return max(abs(got[0] - want[0]).item() / (want[1].item() or 1.0),
               abs(got[2] - want[2]).item() / norm ** 2,
               abs(got[3] - want[3]).item() / norm)


def run_case(suffix, go_name, kind, opts):
    torch.manual_seed(fnv1a64(suffix) % (1 << 31))
    model = build(kind, opts)
    hash_init(model, SEED)
    model.train()
    sd = model.state_dict()
    names = list(sd.keys())
    shapes = [list(t.shape) for t in sd.values()]
    init_conv1 = sd["conv1.weight"].clone() if "conv1.weight" in sd else None
    # The reference runs in float64: deep networks at a batch of two are so
    # ill-conditioned that two float32 implementations disagree far beyond
    # rounding (ReLU inputs within rounding of zero switch sides), so a
    # float32 reference would hold PyTorch's own errors. PyTorch's float32
    # run is kept only to record how far it strays from the reference.
    model64 = copy.deepcopy(model).double()

    c, s, k = opts["InChannels"], opts["ImageSize"], opts["Classes"]
    x = torch.randn(BATCH, c, s, s)
    labels = torch.randint(0, k, (BATCH,))
    logits, loss, grads = step(model64, x.double(), labels)
    total = sum(g.numel() for g in grads.values())
    full = total < FULL_GRAD_LIMIT and suffix not in FORCE_SUMMARY

    def errors(logits32, loss32, grads32):
        if full:
            ge = max(rel_err(grads32[n], g) for n, g in grads.items())
        else:
            ge = max(summary_err(summarize(n, grads32[n]), summarize(n, g)) for n, g in grads.items())
        return {"logits": rel_err(logits32, logits), "loss": rel_err(loss32, loss), "grads": ge}

    # How far float32 can stray on this input: PyTorch's float32 run, and
    # runs whose weights and input are nudged by an ulp at random, which
    # moves every rounding as another implementation's summation order
    # would. The Go test widens its tolerance to a few times the worst.
    torch_err = errors(*step(model, x, labels))
    spread = dict(torch_err)
    gen = torch.Generator().manual_seed(fnv1a64(suffix + "/nudge") % (1 << 31))
    for _ in range(NUDGES):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(1 + NUDGE * torch.randint(-1, 2, p.shape, generator=gen).float())
        xn = x * (1 + NUDGE * torch.randint(-1, 2, x.shape, generator=gen).float())
        spread = {q: max(v, e) for (q, v), e in zip(spread.items(), errors(*step(m, xn, labels)).values())}

    out = {"input": x, "labels": labels.to(torch.int64), "logits": logits, "loss": loss}
    meta_extra = {}
    for name, g in grads.items():
        if full:
            out["grad." + name] = g
        else:
            out["gsum." + name] = summarize(name, g)
    if suffix == "resnet20":
        for name, t in model64.state_dict().items():
            if name.endswith("running_mean") or name.endswith("running_var"):
                out["state." + name] = t
    if suffix == "swin-micro":
        # The full swin_t's state_dict, names and shapes, for the Go model
        # at its defaults.
        import torchvision
        tv = torchvision.models.swin_t().state_dict()
        meta_extra["full_state_dict"] = json.dumps([[n, list(t.shape)] for n, t in tv.items()],
                                                   separators=(",", ":"))
    if suffix == "lenet5":
        # HashInit must reproduce the weights bit for bit; one tensor shows it.
        out["init.conv1.weight"] = init_conv1
    meta = {
        "model": go_name,
        "config": json.dumps(opts, sort_keys=True),
        "seed": SEED,
        "grads": "full" if full else "summary",
        "params": total,
        "state_dict": json.dumps([[n, sh] for n, sh in zip(names, shapes)], separators=(",", ":")),
        "torch_f32_err": json.dumps({q: float("%.3g" % v) for q, v in torch_err.items()}, sort_keys=True),
        "f32_spread": json.dumps({q: float("%.3g" % v) for q, v in spread.items()}, sort_keys=True),
        **meta_extra,
    }
    path = save("models_" + suffix, out, meta)
    print("%-16s %-8s %10d params  %7d bytes  loss %.5f  float32 spread: logits %.1e loss %.1e grads %.1e" % (
        suffix, meta["grads"], total, os.path.getsize(path), loss.item(), spread["logits"], spread["loss"],
        spread["grads"]), flush=True)


# Full-size forward passes: the model at its defaults, hash-initialised,
# on one hash_uniform image (Go draws the same), in evaluation mode; only the
# logits are stored.
FULL_CASES = [
    ("swin-tiny-full", "swin-tiny", "swin_t"),
]


def run_full(suffix, go_name, tv_name):
    import torchvision
    model = getattr(torchvision.models, tv_name)()
    hash_init(model, SEED)
    model.eval()
    x = torch.from_numpy((hash_uniform("x", SEED, 3 * 224 * 224) * 2 - 1).astype("float32")).reshape(1, 3, 224, 224)
    with torch.no_grad():
        logits = model.double()(x.double())
    path = save("models_" + suffix, {"logits": logits}, {"model": go_name, "seed": SEED})
    print("%-16s full-size forward  %7d bytes" % (suffix, os.path.getsize(path)), flush=True)


def main():
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    only = set(sys.argv[1:])
    for suffix, go_name, kind, opts in CASES:
        if only and suffix not in only:
            continue
        run_case(suffix, go_name, kind, opts)
    for suffix, go_name, tv_name in FULL_CASES:
        if not only or suffix in only:
            run_full(suffix, go_name, tv_name)


if __name__ == "__main__":
    main()
