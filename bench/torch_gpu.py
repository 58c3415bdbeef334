"""PyTorch on the GPU, for scripts/gpu-check.sh: training-step throughput of
the models internal/gpucheck's TestThroughput times in macdist, the same way,
and the ratios of the two.

    python3 bench/torch_gpu.py --ours runs/gpucheck.jsonl
    python3 bench/torch_gpu.py --nccl-check

A step is forward, cross-entropy loss, backward and an SGD step (momentum 0.9,
weight decay 5e-4) on one synthetic batch kept on the GPU, fp32 with TF32 off
(torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
False), eager, cuDNN with its defaults (benchmark off), as macdist's step.
Each step ends with loss.item() and a synchronisation. The models follow
nn/models layer for layer:

  resnet50   torchvision's ResNet-50 v1.5 (stride on the 3x3 convolution of
             each bottleneck), 224 px, 1000 classes
  vit-tiny   DeiT-Tiny: timm's ViT, 16 px patches, 192 wide, 12 blocks, 3
             heads, MLP ratio 4, class token, LayerNorm eps 1e-6, 224 px

It prints one JSON line per model with the keys of macdist's (framework,
model, batch, steps, step_ms, img_per_s, fwd_ms, bwd_ms, opt_ms, peak_gib,
top, ...), then, given --ours (a file of macdist's JSON lines), one line per
model with the ratio of images per second, macdist over PyTorch.

--nccl-check instead runs a 1-rank NCCL all-reduce through
torch.distributed, to tell a broken NCCL environment from a bug of ours.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

TARGET = 0.80  # the target: macdist at least 80% of PyTorch


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        out = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for stage, n in enumerate((3, 4, 6, 3)):
            width = 64 << stage
            blocks = []
            for i in range(n):
                blocks.append(Bottleneck(cin, width, 2 if i == 0 and stage > 0 else 1))
                cin = width * 4
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        # Explicit softmax attention, as macdist computes it (no fused
        # scaled_dot_product_attention kernel).
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, size=224, patch=16, dim=192, depth=12, heads=3, mlp_ratio=4.0, classes=1000):
        super().__init__()
        g = size // patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, g * g + 1, dim) * 0.02)
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


MODELS = {"resnet50": ResNet50, "vit-tiny": ViT}


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def top_ops(model, x, y, opt, dev, n=6):
    """The kernels of one step by self device time (CPU time on the CPU),
    as 'name share%'."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
    with profile(activities=acts) as prof:
        step(model, x, y, opt)
        sync(dev)
    rows = []
    for e in prof.key_averages():
        if dev == "cuda":
            t = getattr(e, "self_device_time_total", None)
            if t is None:
                t = getattr(e, "self_cuda_time_total", 0)
        else:
            t = e.self_cpu_time_total
        if t > 0:
            rows.append((t, e.key))
    rows.sort(reverse=True)
    total = sum(t for t, _ in rows) or 1
    key = "self_cuda_time_total" if dev == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=15), file=sys.stderr)
    return ", ".join("%s %.0f%%" % (k[:40], 100 * t / total) for t, k in rows[:n])


def step(model, x, y, opt):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def bench(name, batch, steps, warmup, budget, profile_top, dev="cuda"):
    torch.manual_seed(0)
    model = MODELS[name]().to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 224, 224, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(warmup):
        step(model, x, y, opt).item()
    sync(dev)
    per = (time.perf_counter() - t0) / max(warmup, 1)
    if per * steps > budget:
        steps = max(2, int(budget / per))
    times = []
    start = time.perf_counter()
    for _ in range(steps):
        t1 = time.perf_counter()
        loss = step(model, x, y, opt).item()
        sync(dev)
        times.append(time.perf_counter() - t1)
    total = time.perf_counter() - start
    assert math.isfinite(loss), f"loss {loss}"

    # One step in phases, each up to a synchronisation, as macdist's.
    sync(dev)
    t = time.perf_counter()
    opt.zero_grad()
    l = F.cross_entropy(model(x), y)
    l.item()
    sync(dev)
    fwd = time.perf_counter() - t
    t = time.perf_counter()
    l.backward()
    sync(dev)
    bwd = time.perf_counter() - t
    t = time.perf_counter()
    opt.step()
    sync(dev)
    optt = time.perf_counter() - t

    top = top_ops(model, x, y, opt, dev) if profile_top else ""
    if dev == "cuda":
        device = "%s (torch %s, CUDA %s, cuDNN %s)" % (
            torch.cuda.get_device_name(0), torch.__version__, torch.version.cuda, torch.backends.cudnn.version())
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        device, peak = "cpu (torch %s)" % torch.__version__, 0.0
    r = {
        "framework": "pytorch-" + ".".join(torch.__version__.split(".")[:2]),
        "model": name,
        "batch": batch,
        "steps": steps,
        "warmup": warmup,
        "step_ms": round(total * 1000 / steps, 3),
        "median_step_ms": round(statistics.median(times) * 1000, 3),
        "img_per_s": round(batch * steps / total, 1),
        "loss": loss,
        "fwd_ms": round(fwd * 1000, 3),
        "bwd_ms": round(bwd * 1000, 3),
        "opt_ms": round(optt * 1000, 3),
        "device": device,
        "params": sum(p.numel() for p in model.parameters()),
        "peak_gib": round(peak, 2),
        "tf32": False,
        "top": top,
    }
    del model, opt, x, y
    if dev == "cuda":
        torch.cuda.empty_cache()
    return r


def nccl_check():
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    t = time.perf_counter()
    dist.init_process_group("nccl", rank=0, world_size=1)
    a = torch.arange(1 << 20, dtype=torch.float32, device="cuda")
    b = a.clone()
    dist.all_reduce(b)
    torch.cuda.synchronize()
    ok = torch.equal(a, b)
    dist.destroy_process_group()
    print(json.dumps({"check": "torch_nccl", "ok": ok, "nccl": ".".join(map(str, torch.cuda.nccl.version())),
                      "seconds": round(time.perf_counter() - t, 2)}))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,vit-tiny")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--budget", type=float, default=20, help="timed seconds per model at most")
    ap.add_argument("--ours", help="macdist's JSON lines (internal/gpucheck TestThroughput), for the ratios")
    ap.add_argument("--no-profile", action="store_true", help="skip the torch.profiler step")
    ap.add_argument("--nccl-check", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu only to try this script without a GPU")
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no GPU", "torch": torch.__version__}))
        return 2
    if a.nccl_check:
        return nccl_check()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    theirs = {}
    for name in a.models.split(","):
        r = bench(name, a.batch, a.steps, a.warmup, a.budget, not a.no_profile, a.device)
        theirs[name] = r
        print(json.dumps(r), flush=True)

    if not a.ours:
        return 0
    ours = {}
    with open(a.ours) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                d = json.loads(line)
                if d.get("framework") == "macdist":
                    ours[d["model"]] = d
    for name, t in theirs.items():
        o = ours.get(name)
        if o is None:
            print(json.dumps({"check": "ratio", "model": name, "error": "no macdist result"}))
            continue
        ratio = o["img_per_s"] / t["img_per_s"]
        print(json.dumps({"check": "ratio", "model": name, "batch": t["batch"], "macdist_img_per_s": o["img_per_s"],
                          "pytorch_img_per_s": t["img_per_s"], "ratio": round(ratio, 3), "target": TARGET,
                          "macdist_fwd_bwd_opt_ms": [o.get("fwd_ms"), o.get("bwd_ms"), o.get("opt_ms")],
                          "pytorch_fwd_bwd_opt_ms": [t["fwd_ms"], t["bwd_ms"], t["opt_ms"]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
