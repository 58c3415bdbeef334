"""PyTorch reference for `macdist bench`: the same models, batch and step, timed
the same way, printing one JSON line with the same keys.

    /usr/bin/python3 bench/torch_ref.py --model resnet20 --batch 128 --steps 10

Uses Debian's python3-torch (1.13, CPU) with 2 threads, as macdist on this
machine. A step is forward, cross-entropy loss, backward and zero_grad; no
optimizer, as in internal/benchmark. The models follow nn/models layer for
layer (testdata/gen/gen_models.py is the parity reference; this file only
needs the same arithmetic, not the same weights):

  lenet5          conv1 (pad 2), ReLU, max pool, conv2, ReLU, max pool, fc1, fc2, fc3
  resnet20 … 110  CIFAR ResNet-(6n+2), torchvision BasicBlocks, 1×1 conv + BN shortcuts
  resnet50        torchvision's resnet50 (ImageNet, 224 px by default)
  vit-tiny-cifar  timm ViT: 4 px patches, class token, pre-norm blocks (LayerNorm eps
                  1e-6, qkv bias, erf GELU, MLP ratio 4), norm, head on the class token
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    def __init__(self, in_ch, size, classes):
        super().__init__()
        s = (size // 2 - 4) // 2
        self.conv1 = nn.Conv2d(in_ch, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * s * s, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.downsample is None else self.downsample(x)
        return F.relu(out + short)


class CifarResNet(nn.Module):
    def __init__(self, depth, in_ch, classes):
        super().__init__()
        assert depth >= 8 and (depth - 2) % 6 == 0, f"depth {depth}, want 6n+2"
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_ch, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for stage, width in enumerate((16, 32, 64)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(cin, width, 2 if i == 0 and stage > 0 else 1))
                cin = width
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


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
    def __init__(self, in_ch, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    def __init__(self, in_ch, size, classes, depth, dim, heads, patch, mlp_ratio):
        super().__init__()
        g = size // patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, g * g + 1, dim) * 0.02)
        self.patch_embed = PatchEmbed(in_ch, dim, patch)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# The same defaults as nn/models' zoo.
DEFAULTS = {
    "lenet5": dict(in_ch=1, size=28, classes=10),
    "resnet20": dict(in_ch=3, size=32, classes=10, depth=20),
    "resnet32": dict(in_ch=3, size=32, classes=10, depth=32),
    "resnet56": dict(in_ch=3, size=32, classes=10, depth=56),
    "resnet110": dict(in_ch=3, size=32, classes=10, depth=110),
    "resnet50": dict(in_ch=3, size=224, classes=1000),
    "vit-tiny-cifar": dict(in_ch=3, size=32, classes=10, depth=12, dim=192, heads=3, patch=4, mlp_ratio=4.0),
}


def build(name, size=0, depth=0, classes=0):
    c = dict(DEFAULTS[name])
    if size:
        c["size"] = size
    if depth:
        c["depth"] = depth
    if classes:
        c["classes"] = classes
    if name == "resnet50":
        import torchvision
        m = torchvision.models.resnet50(num_classes=c["classes"])
    elif name == "lenet5":
        m = LeNet5(c["in_ch"], c["size"], c["classes"])
    elif name.startswith("resnet"):
        m = CifarResNet(c["depth"], c["in_ch"], c["classes"])
    else:
        m = ViT(c["in_ch"], c["size"], c["classes"], c["depth"], c["dim"], c["heads"], c["patch"], c["mlp_ratio"])
    return m, (c["in_ch"], c["size"], c["size"])


def blas_name():
    """Which BLAS library torch's matmul loaded: Debian's torch links the
    libblas.so.3 alternative, so read it off the process's mappings."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1].rsplit("/", 1)[-1] for line in f if ".so" in line}
    except OSError:
        return "unknown"
    for lib in sorted(libs):
        if lib.startswith(("libopenblas", "libblis", "libmkl")):
            return lib.split(".so")[0].removeprefix("lib")
    return "libblas" if any(l.startswith("libblas") for l in libs) else "unknown"


MODES = ("nchw", "channels_last", "channels_last_bf16")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(DEFAULTS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=0)
    ap.add_argument("--depth", type=int, default=0)
    ap.add_argument("--classes", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", default="nchw", choices=MODES,
                    help="memory format and precision: NCHW float32 (the default), channels_last float32, "
                         "or channels_last under torch.autocast('cpu', torch.bfloat16)")
    ap.add_argument("--lockstep", action="store_true",
                    help="pace the timed steps from standard input, as `macdist bench --lockstep` (bench/lockstep.py)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, chw = build(a.model, a.image_size, a.depth, a.classes)
    model.train()
    x = torch.randn(a.batch, *chw)
    classes = model(x[:1]).shape[1]
    y = torch.randint(0, classes, (a.batch,))
    if a.mode != "nchw":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    bf16 = a.mode == "channels_last_bf16"

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        model.zero_grad(set_to_none=False)  # fill with zeros, as nn.ZeroGrad does
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    if a.lockstep:
        print("ready", flush=True)
    start = time.perf_counter()
    for _ in range(a.steps):
        if a.lockstep and not sys.stdin.readline():
            sys.exit("torch_ref: lockstep: the input ended before the steps")
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
        if a.lockstep:
            print(f"step_ms {times[-1] * 1000:.3f}", flush=True)
    total = sum(times) if a.lockstep else time.perf_counter() - start
    assert math.isfinite(loss), f"loss {loss}"
    print(json.dumps({
        "framework": "pytorch-" + ".".join(torch.__version__.split(".")[:2]),
        "model": a.model,
        "batch": a.batch,
        "steps": a.steps,
        "warmup": a.warmup,
        "step_ms": total * 1000 / a.steps,
        "median_step_ms": statistics.median(times) * 1000,
        "img_per_s": a.batch * a.steps / total,
        "loss": loss,
        "blas": blas_name(),
        "mode": a.mode,
        "dnn_isa": "",
        "device": f"cpu (torch {torch.__version__}, mkldnn {torch.backends.mkldnn.is_available()})",
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        # Linux reports the peak resident set in KiB.
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
