"""Fixtures for the training recipe (issue 15): mixup and CutMix with soft
targets, timm's SoftTargetCrossEntropy, and torch's clip_grad_norm_.

timm is not installable here; its Mixup (batch mode), rand_bbox,
cutmix_bbox_and_lam, mixup_target and SoftTargetCrossEntropy are transcribed
below from timm/data/mixup.py and timm/loss/cross_entropy.py, with the random
draws (λ, the box's centre) passed in so that Go can replay them.

Run with Debian's /usr/bin/python3.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from common import save


def rand_bbox(img_shape, lam, cy, cx, margin=0.0):
    # timm's rand_bbox with np.random.randint's draws given.
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    yl = np.clip(cy - cut_h // 2, 0, img_h)
    yh = np.clip(cy + cut_h // 2, 0, img_h)
    xl = np.clip(cx - cut_w // 2, 0, img_w)
    xh = np.clip(cx + cut_w // 2, 0, img_w)
    return yl, yh, xl, xh


def cutmix_bbox_and_lam(img_shape, lam, cy, cx, correct_lam=True):
    yl, yu, xl, xu = rand_bbox(img_shape, lam, cy, cx)
    if correct_lam:
        bbox_area = (yu - yl) * (xu - xl)
        lam = 1.0 - bbox_area / float(img_shape[-2] * img_shape[-1])
    return (yl, yu, xl, xu), lam


def one_hot(x, num_classes, on_value=1.0, off_value=0.0):
    x = x.long().view(-1, 1)
    return torch.full((x.size()[0], num_classes), off_value).scatter_(1, x, on_value)


def mixup_target(target, num_classes, lam=1.0, smoothing=0.0):
    off_value = smoothing / num_classes
    on_value = 1.0 - smoothing + off_value
    y1 = one_hot(target, num_classes, on_value=on_value, off_value=off_value)
    y2 = one_hot(target.flip(0), num_classes, on_value=on_value, off_value=off_value)
    return y1 * lam + y2 * (1.0 - lam)


def mix_batch(x, lam, use_cutmix, cy=0, cx=0):
    # timm's Mixup._mix_batch, λ and the box's centre given.
    if lam == 1.0:
        return 1.0, None
    box = None
    if use_cutmix:
        (yl, yh, xl, xh), lam = cutmix_bbox_and_lam(x.shape, lam, cy, cx)
        x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
        box = (yl, yh, xl, xh)
    else:
        x_flipped = x.flip(0).mul_(1.0 - lam)
        x.mul_(lam).add_(x_flipped)
    return lam, box


def soft_target_cross_entropy(x, target):
    loss = torch.sum(-target * F.log_softmax(x, dim=-1), dim=-1)
    return loss.mean()


OPS = ["Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
       "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"]


def augment(out, g):
    """torchvision's RandAugment / TrivialAugmentWide operations on uint8
    images for given magnitudes, their magnitude tables, and the
    distribution of RandomErasing's boxes."""
    import torchvision
    from torchvision.transforms import InterpolationMode, RandomErasing
    from torchvision.transforms import autoaugment as aa

    h, w = 20, 24
    for c in (3, 1):
        img = torch.randint(0, 256, (c, h, w), generator=g, dtype=torch.uint8)
        # A low-contrast copy, so that AutoContrast and Equalize have work.
        img[:, : h // 2] = img[:, : h // 2] // 4 + 100
        out["aug%d.img" % c] = img
        for k, op in enumerate(OPS):
            for s, mag in enumerate((0.27, -0.6, 9.0, 3.0, 170.0)):
                m = mag
                if op in ("TranslateX", "TranslateY"):
                    m = mag * 10
                elif op == "Rotate":
                    m = mag * 50
                elif op == "Posterize":
                    m = float(int(abs(mag)) % 8 + 1)
                elif op == "Solarize":
                    m = abs(mag) * 100 % 256
                m = float(torch.tensor(m, dtype=torch.float32))
                res = aa._apply_op(img.clone(), op, m, interpolation=InterpolationMode.NEAREST, fill=None)
                out["aug%d.%s.%d" % (c, op, s)] = res
                out["aug%d.%s.%d.mag" % (c, op, s)] = torch.tensor([m], dtype=torch.float64)

    # Magnitude tables (31 bins) as torchvision states them.
    ra = aa.RandAugment()._augmentation_space(31, (h, w))
    ta = aa.TrivialAugmentWide()._augmentation_space(31)
    for name, space in (("ra", ra), ("ta", ta)):
        for op in OPS:
            mags, signed = space[op]
            v = mags.to(torch.float64) if mags.ndim > 0 else torch.zeros(31, dtype=torch.float64)
            out["space.%s.%s" % (name, op)] = v
            out["space.%s.%s.signed" % (name, op)] = torch.tensor([float(signed)], dtype=torch.float64)

    # RandomErasing's boxes on a 3x32x40 image: means and variances of
    # (top, left, height, width, erased at all) over many draws.
    torch.manual_seed(0)
    x = torch.zeros(3, 32, 40)
    n = 40000
    vals = torch.zeros(n, 5, dtype=torch.float64)
    for k in range(n):
        i, j, eh, ew, _ = RandomErasing.get_params(x, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=[0.0])
        vals[k] = torch.tensor([i, j, eh, ew, float(eh < 32)], dtype=torch.float64)
    out["erase.mean"] = vals.mean(0)
    out["erase.var"] = vals.var(0)
    out["erase.n"] = torch.tensor([float(n)], dtype=torch.float64)


class RASampler:
    """DeiT's samplers.RASampler (facebookresearch/deit), transcribed; the
    epoch's permutation is passed in (torch.randperm's is not Go's)."""

    def __init__(self, n, num_replicas, rank, num_repeats=3):
        self.n, self.num_replicas, self.rank, self.num_repeats = n, num_replicas, rank, num_repeats
        self.num_samples = int(math.ceil(n * num_repeats / num_replicas))
        self.total_size = self.num_samples * num_replicas
        self.num_selected_samples = int(math.floor(n // 256 * 256 / num_replicas))

    def indices(self, perm):
        indices = torch.repeat_interleave(perm, repeats=self.num_repeats, dim=0).tolist()
        padding_size = self.total_size - len(indices)
        if padding_size > 0:
            indices += indices[:padding_size]
        assert len(indices) == self.total_size
        indices = indices[self.rank:self.total_size:self.num_replicas]
        assert len(indices) == self.num_samples
        return indices[: self.num_selected_samples]


def rasampler(out):
    """Every rank's indices for a few sizes, with the copy number of each
    entry (its position in the repeated list modulo the repeats)."""
    for n, world, k in ((600, 2, 3), (700, 3, 3), (1000, 4, 2), (513, 1, 3), (300, 8, 4)):
        perm = torch.arange(n)
        for r in range(world):
            s = RASampler(n, world, r, k)
            idx = s.indices(perm)
            # Positions through the same steps give the copy numbers.
            pos = list(range(n * k))
            pos += pos[: s.total_size - len(pos)]
            pos = pos[r : s.total_size : world][: s.num_selected_samples]
            key = "ra.%d.%d.%d.%d" % (n, world, k, r)
            out[key] = torch.tensor(idx, dtype=torch.int64)
            out[key + ".copy"] = torch.tensor([p % k for p in pos], dtype=torch.int64)


def main():
    g = torch.Generator().manual_seed(15)
    out = {}
    classes = 5
    # Even and odd batches: timm asserts an even one; an odd one's middle
    # sample pairs with itself under flip(0).
    cases = [
        # name, n, lam, cutmix, cy, cx, smoothing
        ("mixup", 6, 0.3, False, 0, 0, 0.1),
        ("cutmix", 6, 0.6, True, 3, 7, 0.0),
        ("cutmix_edge", 5, 0.25, True, 7, 0, 0.1),
    ]
    for name, n, lam, cut, cy, cx, smooth in cases:
        x = torch.randn(n, 3, 8, 10, generator=g)
        y = torch.randint(0, classes, (n,), generator=g)
        xm = x.clone()
        lam2, box = mix_batch(xm, lam, cut, cy, cx)
        t = mixup_target(y, classes, lam2, smooth)
        out[name + ".x"] = x
        out[name + ".y"] = y
        out[name + ".x_mixed"] = xm
        out[name + ".targets"] = t
        # The draws as Go replays them: λ drawn, box centre, smoothing; and
        # λ after CutMix's correction and the box, for checking.
        out[name + ".draw"] = torch.tensor([lam, float(cut), cy, cx, smooth, lam2], dtype=torch.float64)
        if box is not None:
            out[name + ".box"] = torch.tensor(box, dtype=torch.int64)

    # SoftTargetCrossEntropy: loss and gradient on mixed targets.
    logits = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (7,), generator=g)
    t = mixup_target(y, 5, 0.35, 0.1).double()
    loss = soft_target_cross_entropy(logits, t)
    loss.backward()
    out["soft.logits"] = logits.detach()
    out["soft.targets"] = t
    out["soft.loss"] = loss.detach().reshape(1)
    out["soft.grad"] = logits.grad

    # clip_grad_norm_ over three tensors, clipped and not.
    for name, max_norm in (("clip", 0.5), ("noclip", 1e3)):
        ps = [torch.nn.Parameter(torch.zeros(s)) for s in ((4, 3), (3,), (2, 2, 5))]
        for i, p in enumerate(ps):
            p.grad = torch.randn(p.shape, generator=g)
            out["%s.grad%d" % (name, i)] = p.grad.clone()
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        for i, p in enumerate(ps):
            out["%s.clipped%d" % (name, i)] = p.grad.clone()
        out[name + ".norm"] = torch.tensor([float(total), max_norm], dtype=torch.float64)
    augment(out, g)
    rasampler(out)
    save("recipe", out, {"torch": torch.__version__})


if __name__ == "__main__":
    main()
