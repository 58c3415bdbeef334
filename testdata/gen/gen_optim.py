"""Fixtures for package mac: multi-step training runs of the reference
optimizers (ref_optim.py, and torch.optim for SGD and AdamW) on lenet5 and
a tiny ViT, from hash_init weights, on stored batches. Go replays the same
steps and must end with the same parameters.

12 steps with TCov 2 and TInv 5, so that statistics collection, refreshes
and the first-layer rule are all exercised, and a cosine learning rate from
LR, or from a case's own "lr" hyperparameter (AdamW needs about 1e-3).
Run with Debian's /usr/bin/python3.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import hash_init, hash_uniform, save  # noqa: E402
from gen_models import build  # noqa: E402
import ref_optim  # noqa: E402

STEPS, BATCH, LR, SEED = int(os.environ.get("STEPS", 12)), 8, 0.1, 7

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
}


def cosine(k, lr=LR, steps=STEPS):
    return lr * (1 + math.cos(math.pi * k / steps)) / 2


def batches(opts, steps=STEPS):
    """Step k's batch from hash_uniform, which Go reproduces, so the
    fixtures need not store inputs: x uniform in [-1, 1), labels uniform."""
    c, s, k = opts["InChannels"], opts["ImageSize"], opts["Classes"]
    out = []
    for i in range(steps):
        x = torch.from_numpy((hash_uniform("x.%d" % i, SEED, BATCH * c * s * s) * 2 - 1).astype("float32"))
        y = torch.from_numpy((hash_uniform("y.%d" % i, SEED, BATCH) * k).astype("int64"))
        out.append((x.reshape(BATCH, c, s, s), y))
    return out


def make_optimizer(name, model, hp, data):
    """The optimizer of a case; hp's optional "lr" (the base of the cosine
    schedule, LR when absent) is the runner's, not the optimizer's."""
    lr = hp.get("lr", LR)
    hp = {k: v for k, v in hp.items() if k not in ("lr", "steps")}
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
        o.step(cosine(k, hp.get("lr", LR), steps))
        losses.append(loss.item())
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


def main():
    torch.set_num_threads(2)
    only = set(sys.argv[1:])
    for case in CASES:
        if not only or case[0] in only:
            run(*case)


if __name__ == "__main__":
    main()
