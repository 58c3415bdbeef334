"""Fixtures for package mac: multi-step training runs of the reference
optimizers (ref_optim.py, and torch.optim for SGD and AdamW) on lenet5 and
a tiny ViT, from hash_init weights, on stored batches. Go replays the same
steps and must end with the same parameters.

12 steps with TCov 2 and TInv 5, so that statistics collection, refreshes
and the first-layer rule are all exercised, and a cosine learning rate from
LR, or from a case's own "lr" hyperparameter (AdamW needs about 1e-3).

F64_CASES, the ResNets, run 20 steps in float64 for the reference and
record how far PyTorch's float32 strays from it (run_f64); they store
summaries of the final parameters, not the parameters.
Run with Debian's /usr/bin/python3; NUDGES=n sets the number of nudged
float32 runs behind a float64 case's spread.
"""
import copy
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fnv1a64, hash_init, hash_uniform, save  # noqa: E402
from gen_models import build, rel_err, summarize, summary_err  # noqa: E402
import ref_optim  # noqa: E402

STEPS, BATCH, LR, SEED = int(os.environ.get("STEPS", 12)), 8, 0.1, 7
# 16 px: the ImageNet ResNets' last two stages see maps of 1 × 1, and
# larger images only add ReLU inputs that can fall on the other side of
# zero in float32 (see F64_CASES).
RESNET_PX = 16
# The seed of the ±1 projection in the summaries of final parameters, as
# gen_models.py's.
PROJ_SEED = 99
# Float32 runs with weights and input nudged by an ulp at random (besides
# PyTorch's own float32 run) that size a float64 case's f32_spread.
NUDGES = int(os.environ.get("NUDGES", 1))
NUDGE = 2.0 ** -23

MODELS = {
    "lenet5": ("lenet5", "lenet5", dict(InChannels=1, ImageSize=28, Classes=10)),
    "vit": ("vit-tiny-cifar", "vit", dict(InChannels=3, ImageSize=16, Classes=10, Dim=32, Depth=2, Heads=2,
                                           Patch=4, MLPRatio=4.0)),
    # The models of issue 15 at small sizes: DeiT-Small's code with 2
    # blocks of 48 wide, 6 heads; torchvision's Swin with two stages at
    # 8 and 4 tokens a side and 4 × 4 windows (the first stage's second
    # block shifted and masked).
    "deit-small": ("deit-small", "vit", dict(InChannels=3, ImageSize=32, Classes=10, Dim=48, Depth=2, Heads=6,
                                             Patch=8, MLPRatio=4.0)),
    "deit-base": ("deit-base", "vit", dict(InChannels=3, ImageSize=32, Classes=10, Dim=48, Depth=1, Heads=12,
                                           Patch=8, MLPRatio=4.0)),
    "swin": ("swin-tiny", "swin", dict(InChannels=3, ImageSize=16, Classes=10, Dim=16, Heads=2, Patch=2,
                                       MLPRatio=4.0, Stages=[2, 2], Window=4)),
    # The ResNets of issue 15: resnet20 as the CIFAR representative, and
    # torchvision's own ImageNet ResNets at full width on small images.
    "resnet20": ("resnet20", "cifar-resnet", dict(InChannels=3, ImageSize=RESNET_PX, Classes=10, Depth=20)),
    "resnet34": ("resnet34", "tv", dict(InChannels=3, ImageSize=RESNET_PX, Classes=10)),
    "resnet50": ("resnet50", "tv", dict(InChannels=3, ImageSize=RESNET_PX, Classes=10)),
    "resnet101": ("resnet101", "tv", dict(InChannels=3, ImageSize=RESNET_PX, Classes=10)),
    "resnet152": ("resnet152", "tv", dict(InChannels=3, ImageSize=RESNET_PX, Classes=10)),
}


def cosine(k, lr=LR, steps=STEPS):
    return lr * (1 + math.cos(math.pi * k / steps)) / 2


def batches(opts, steps=STEPS, batch=BATCH, offset=False):
    """Step k's batch from hash_uniform, which Go reproduces, so the
    fixtures need not store inputs: x uniform in [-1, 1), labels uniform.

    With offset, each image's channel c is shifted by its own uniform
    o[c] in [-1, 1) and the sum halved: pixel noise averages out in a deep
    network's pooled features, which become nearly alike across the batch,
    and BatchNorm over maps of 1 × 1 then divides by a standard deviation
    that float32 computes with few correct digits; the offsets, like the
    colour of a real image, survive to the last stage."""
    c, s, k = opts["InChannels"], opts["ImageSize"], opts["Classes"]
    out = []
    for i in range(steps):
        x = hash_uniform("x.%d" % i, SEED, batch * c * s * s) * 2 - 1
        if offset:
            o = hash_uniform("o.%d" % i, SEED, batch * c) * 2 - 1
            x = (x.reshape(batch * c, s * s) + o[:, None]) / 2
        x = torch.from_numpy(x.astype("float32"))
        y = torch.from_numpy((hash_uniform("y.%d" % i, SEED, batch) * k).astype("int64"))
        out.append((x.reshape(batch, c, s, s), y))
    return out


def make_optimizer(name, model, hp, data):
    """The optimizer of a case; hp's optional "lr" (the base of the cosine
    schedule, LR when absent) is the runner's, not the optimizer's."""
    lr = hp.get("lr", LR)
    hp = {k: v for k, v in hp.items() if k not in ("lr", "steps", "batch", "offset", "branch_gamma")}
    if name in ("kfac", "eva", "foof"):
        return {"kfac": ref_optim.KFAC, "eva": ref_optim.Eva, "foof": ref_optim.FOOF}[name](model, **hp)
    if name == "mac":
        o = ref_optim.MAC(model, **hp)
        if hp.get("first_layer_cov"):
            o.first_layer_covariance([x for x, _ in data])
        return o
    if name == "sgd":
        return TorchOpt(torch.optim.SGD(model.parameters(), lr=lr, momentum=hp["momentum"],
                                        weight_decay=hp["wd"], nesterov=hp.get("nesterov", False)))
    if name == "adamw":
        return TorchOpt(torch.optim.AdamW(model.parameters(), lr=lr, betas=(hp["beta1"], hp["beta2"]),
                                          eps=hp["eps"], weight_decay=hp["wd"]))
    raise ValueError(name)


class TorchOpt:
    """A torch.optim optimizer behind the begin_step/step(lr) protocol."""

    def __init__(self, opt):
        self.opt = opt

    def begin_step(self):
        pass

    def step(self, lr):
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()


def check_window_transcription(model, x):
    """ref_optim.window_rows_and_probs must be torchvision's window attention:
    the output it implies (the projection of its context, put back and
    rolled) must be the module's own, in every block of the model."""
    checked = []

    def hook(mod, inp, out):
        xw, _, ctx = ref_optim.window_rows_and_probs(mod, inp[0])
        B, H, W, C = inp[0].shape
        ws = mod.window_size
        pH, pW = H + (ws[0] - H % ws[0]) % ws[0], W + (ws[1] - W % ws[1]) % ws[1]
        y = F.linear(ctx, mod.proj.weight, mod.proj.bias)
        y = y.view(B, pH // ws[0], pW // ws[1], ws[0], ws[1], C).permute(0, 1, 3, 2, 4, 5).reshape(B, pH, pW, C)
        shift = [0 if ws[i] >= (pH, pW)[i] else mod.shift_size[i] for i in range(2)]
        y = torch.roll(y, shifts=tuple(shift), dims=(1, 2))[:, :H, :W]
        assert torch.allclose(y, out, atol=1e-5), "window_rows_and_probs is not torchvision's window attention"
        checked.append(sum(shift))

    hs = [m.register_forward_hook(hook) for m in model.modules() if hasattr(m, "window_size")]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    assert checked and max(checked) > 0, "no shifted window attention was checked"


def train(model, data, opt, hp):
    """Trains model in place, one step per batch of data; the losses."""
    o = make_optimizer(opt, model, hp, data)
    losses = []
    for k, (x, y) in enumerate(data):
        model.zero_grad(set_to_none=False)
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        o.begin_step()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        o.step(cosine(k, hp.get("lr", LR), len(data)))
        losses.append(loss.item())
    return losses


def run(case, model_key, opt, hp):
    go_name, kind, opts = MODELS[model_key]
    torch.manual_seed(0)
    model = build(kind, opts)
    hash_init(model, SEED)
    model.train()
    steps = hp.get("steps", STEPS)
    data = batches(opts, steps)
    if kind == "swin":
        check_window_transcription(model, data[0][0])
    losses = train(model, data, opt, hp)
    out = {}
    for n, p in model.named_parameters():
        if opt in SUBSAMPLED and p.numel() > 8192:
            # Every 7th element of the large lenet5 weights keeps the
            # fixtures small; the updates couple every element of a row,
            # so a wrong one still shows.
            out["final_every7." + n] = p.detach().flatten()[::7]
        else:
            out["final." + n] = p.detach()
    meta = dict(model=go_name, config=json.dumps(opts, sort_keys=True), optimizer=opt,
                hparams=json.dumps(hp, sort_keys=True), steps=steps, lr=hp.get("lr", LR), seed=SEED, losses=json.dumps(losses))
    path = save("optim_" + case, out, meta)
    print("%-22s loss %.4f -> %.4f  %d bytes" % (case, losses[0], losses[-1], os.path.getsize(path)))


def run_f64(case, model_key, opt, hp):
    """A case whose reference runs in float64. Deep ResNets with
    BatchNorm amplify rounding: ReLU inputs within rounding of zero take
    the other side in another summation order, so a float32 reference
    would hold PyTorch's own errors. The float64 run is the reference;
    PyTorch's float32 run, and float32 runs with weights and input nudged
    by an ulp (which move every rounding as another implementation's
    summation order would), record how far float32 strays from it on this
    trajectory (f32_spread, in the Go test's summary metric). The final
    parameters are stored as summaries: the ImageNet ResNets hold tens of
    millions."""
    go_name, kind, opts = MODELS[model_key]
    steps, batch = hp["steps"], hp["batch"]
    if kind == "tv":
        import torchvision
        model = getattr(torchvision.models, go_name)(num_classes=opts["Classes"])
    else:
        model = build(kind, opts)
    hash_init(model, SEED)
    if "branch_gamma" in hp:
        # The last BatchNorm of every residual branch starts at γ/8, as the
        # ImageNet recipes' zero-γ initialisation would start it at 0 (see
        # F64_CASES). A power of two, so float32 and Go scale exactly.
        suffix, scale = hp["branch_gamma"]
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.startswith("layer") and n.endswith(suffix):
                    p.mul_(scale)
    model.train()
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = batches(opts, steps, batch, hp.get("offset", False))
    ref = copy.deepcopy(model).double()
    losses = train(ref, [(x.double(), y) for x, y in data], opt, hp)
    want = {n: p.detach() for n, p in ref.named_parameters()}
    sums = {n: summarize(n, p) for n, p in want.items()}
    # How far the run moves the parameters, in the metric of the test: a
    # replay that skipped the optimizer would be off by this much in its
    # most moved tensor.
    motion = max(summary_err(summarize(n, init[n]), sums[n]) for n in want)

    gen = torch.Generator().manual_seed(fnv1a64(case + "/nudge") % (1 << 31))
    spread, torch_err, torch_full = 0.0, 0.0, 0.0
    for i in range(1 + NUDGES):
        m = copy.deepcopy(model)
        d = data
        if i > 0:
            with torch.no_grad():
                for p in m.parameters():
                    p.mul_(1 + NUDGE * torch.randint(-1, 2, p.shape, generator=gen).float())
            d = [(x * (1 + NUDGE * torch.randint(-1, 2, x.shape, generator=gen).float()), y) for x, y in data]
        train(m, d, opt, hp)
        got = dict(m.named_parameters())
        e = max(summary_err(summarize(n, got[n]), sums[n]) for n in want)
        if i == 0:
            torch_err = e
            torch_full = max(rel_err(got[n], want[n]) for n in want)
        spread = max(spread, e)
        print("  %s float32 run %d: summary error %.2g" % (case, i, e), flush=True)

    out = {"fsum." + n: v for n, v in sums.items()}
    meta = dict(model=go_name, config=json.dumps(opts, sort_keys=True), optimizer=opt,
                hparams=json.dumps(hp, sort_keys=True), steps=steps, batch=batch, lr=hp.get("lr", LR), seed=SEED,
                losses=json.dumps(losses), reference="float64", proj_seed=PROJ_SEED,
                torch_f32_err="%.3g" % torch_err, torch_f32_full_err="%.3g" % torch_full,
                f32_spread="%.3g" % spread, motion="%.3g" % motion)
    path = save("optim_" + case, out, meta)
    print("%-22s loss %.4f -> %.4f  %d bytes  float32: summary %.2g (spread %.2g), full %.2g; motion %.2g" % (
        case, losses[0], losses[-1], os.path.getsize(path), torch_err, spread, torch_full, motion), flush=True)


# Optimizers whose fixtures store large tensors subsampled (read by mac's
# baselines_test.go).
SUBSAMPLED = ("adamw", "kfac", "eva", "foof")

MAC_HP = dict(momentum=0.9, stat_decay=0.95, damping=1.0, wd=5e-4, tcov=2, tinv=5)
KFAC_HP = dict(momentum=0.9, stat_decay=0.95, damping=0.03, wd=5e-4, tcov=2, tinv=5, kl_clip=1e-3)
EVA_HP = dict(momentum=0.9, stat_decay=0.95, damping=0.03, wd=5e-4, tcov=2, kl_clip=1e-3)
FOOF_HP = dict(momentum=0.9, stat_decay=0.95, damping=1.0, wd=5e-4, tcov=2, tinv=5, kl_clip=0.0)

CASES = [
    ("sgd_lenet5", "lenet5", "sgd", dict(momentum=0.9, wd=5e-4)),
    ("sgd_vit_nesterov", "vit", "sgd", dict(momentum=0.9, wd=5e-4, nesterov=True)),
    ("adamw_vit", "vit", "adamw", dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.05)),
    ("adamw_lenet5", "lenet5", "adamw", dict(lr=2e-3, beta1=0.8, beta2=0.99, eps=1e-6, wd=0.01)),
    ("mac_lenet5", "lenet5", "mac", dict(MAC_HP, first_layer_cov=True, attention_v=True)),
    ("mac_lenet5_nofirst", "lenet5", "mac", dict(MAC_HP, first_layer_cov=False, damping=0.5)),
    ("mac_vit", "vit", "mac", dict(MAC_HP, first_layer_cov=True, attention_v=True)),
    ("mac_vit_noattn_decoupled", "vit", "mac", dict(MAC_HP, first_layer_cov=False, attention_v=False,
                                                     decoupled=True, wd=0.05)),
    # 20 steps of the DeiT / Swin recipe's MAC (λ 3, β 0.99, decoupled
    # decay), with statistics every 2 steps and refreshes every 5.
    ("mac_deit-small", "deit-small", "mac", dict(MAC_HP, damping=3.0, stat_decay=0.99, wd=1e-4, decoupled=True,
                                                 first_layer_cov=True, attention_v=True, steps=20)),
    ("mac_swin", "swin", "mac", dict(MAC_HP, damping=3.0, stat_decay=0.99, wd=1e-4, decoupled=True,
                                     first_layer_cov=True, attention_v=True, steps=20)),
    ("mac_deit-base", "deit-base", "mac", dict(MAC_HP, damping=3.0, stat_decay=0.99, wd=1e-4, decoupled=True,
                                               first_layer_cov=True, attention_v=True, steps=20)),
    ("mac_swin_noattn", "swin", "mac", dict(MAC_HP, first_layer_cov=False, attention_v=False, steps=20)),
    ("kfac_lenet5", "lenet5", "kfac", dict(KFAC_HP)),
    ("kfac_vit_decoupled", "vit", "kfac", dict(KFAC_HP, decoupled=True, wd=0.05)),
    ("eva_lenet5", "lenet5", "eva", dict(EVA_HP)),
    ("eva_vit", "vit", "eva", dict(EVA_HP, damping=0.1)),
    ("foof_lenet5", "lenet5", "foof", dict(FOOF_HP)),
    ("foof_vit_klclip", "vit", "foof", dict(FOOF_HP, kl_clip=1e-3, damping=0.5)),
]


# The ResNet-50 / ImageNet recipe's MAC (λ 1, β 0.95, decoupled decay
# 2e-5), 20 steps with statistics every 2 and refreshes every 5, the first
# layer on its full covariance, a batch of 8 at 16 px; float64 references
# (run_f64). The learning rates are far below the recipe's 0.5 (for 1024
# images a step) because float32 cannot follow a faster trajectory:
#
# resnet20 at 3e-4 stays within about 1e-6 of float64 over the 20 steps
# (at 0.003 it strays by 7e-4, at 32 px and 0.01 with a batch of 16 by
# 2e-2, at 32 px and 0.1 by 0.4: each ReLU input that float32 puts on the
# other side of zero moves a gradient by about 1/(batch · positions), and
# the optimizer feeds it back).
#
# The ImageNet ResNets from hash_init are not trainable in float32 at all:
# every residual branch ends in a BatchNorm with γ near 1, and through
# 16 to 50 such blocks the gradient explodes (the early convolutions'
# gradients are 3000 times their weights in resnet50 at 16 px), so
# PyTorch's own float32 gradient strays from float64 by 10% on the first
# step, and its 20-step runs by 0.04 (resnet34), 0.5 (resnet50) and 0.8
# (resnet101) even at lr 1e-4. So do gen_models.py's one-step fixtures
# (7% for resnet50, 29% for resnet152). The ImageNet recipes start those
# γ at zero (torchvision's zero_init_residual); starting them at γ/8
# (branch_gamma) brings resnet50's first gradient within 1.5e-5 of float64
# and its largest ratio to the weights to about 25, while every branch
# still trains from the first step; the 20-step runs then stray by 2e-7
# (resnet34) and 3e-5 (resnet50). resnet101 and resnet152 at γ/8 still
# stray by 9e-4 and 5e-3, at γ/32 by 2e-7 and 5e-7. Offset inputs
# (batches) keep the batch from looking alike to the BatchNorms over maps
# of 1 × 1.
RESNET_HP = dict(MAC_HP, damping=1.0, stat_decay=0.95, wd=2e-5, decoupled=True, first_layer_cov=True,
                 attention_v=False, steps=20, batch=8)
DEEP_HP = dict(RESNET_HP, lr=1e-4, offset=True)

F64_CASES = [
    ("mac_resnet20", "resnet20", "mac", dict(RESNET_HP, lr=3e-4)),
    ("mac_resnet34", "resnet34", "mac", dict(DEEP_HP, branch_gamma=[".bn2.weight", 0.125])),
    ("mac_resnet50", "resnet50", "mac", dict(DEEP_HP, branch_gamma=[".bn3.weight", 0.125])),
    ("mac_resnet101", "resnet101", "mac", dict(DEEP_HP, branch_gamma=[".bn3.weight", 1 / 32])),
    ("mac_resnet152", "resnet152", "mac", dict(DEEP_HP, branch_gamma=[".bn3.weight", 1 / 32])),
]


def main():
    torch.set_num_threads(2)
    only = set(sys.argv[1:])
    for case in CASES:
        if not only or case[0] in only:
            run(*case)
    for case in F64_CASES:
        if not only or case[0] in only:
            run_f64(*case)


if __name__ == "__main__":
    main()
