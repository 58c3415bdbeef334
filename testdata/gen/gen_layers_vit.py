"""Fixtures for the transformer layers of package nn (gelu.go, layernorm.go,
attention.go, patchembed.go, tokens.go, vitblock.go): fixtures layers_vit_*.

timm is not installed, so its modules (Attention, PatchEmbed, Block and the
class-token/position-embedding step of VisionTransformer) are written here in
plain PyTorch with timm's state_dict names and arithmetic.

Every case stores the input x, the parameters under their state_dict names
(param.<name>), a random r, the output y, and, for L = sum(r * y), dx and every
parameter gradient (grad.<name>). Parameters start from PyTorch's defaults
under torch.manual_seed, with norm and embedding parameters redrawn at unit
scale so that their gradients are not degenerate. The reference runs in
float64 and is stored as float32, so the Go side is compared against a
reference whose own rounding is negligible.

Attention cases also store MAC's attention statistics (shared/MAC.md):
tap.xbar, each token's input averaged over the batch with a trailing 1 when
qkv has a bias, and tap.tbar, the softmax averaged over batch, heads and
queries.

Run with Debian's /usr/bin/python3.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402


class Attention(nn.Module):
    """timm.models.vision_transformer.Attention (no qk norm, no dropout)."""

    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.last_attn = None

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        self.last_attn = attn.detach()
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class PatchEmbed(nn.Module):
    """timm.layers.PatchEmbed with flatten, no norm, no image-size check."""

    def __init__(self, in_c, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(in_c, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TokenEmbed(nn.Module):
    """VisionTransformer._pos_embed with a class token and no dropout."""

    def __init__(self, tokens, dim):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, dim))

    def forward(self, x):
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """timm.models.vision_transformer.Block, qkv_bias=True, no layer scale."""

    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TakeToken(nn.Module):
    def __init__(self, index):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x[:, self.index]


def redraw(model):
    """Unit-scale norm and embedding parameters: PyTorch's ones and zeros
    would leave LayerNorm's affine part and the embeddings untested."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.5 * torch.randn_like(m.weight))
                m.bias.copy_(0.5 * torch.randn_like(m.bias))
            if isinstance(m, TokenEmbed):
                m.cls_token.normal_()
                m.pos_embed.normal_()


def case(name, model, x, meta, extra=None):
    """Run L = sum(r * model(x)) in float64 and save everything."""
    model = model.double()
    xd = x.double().requires_grad_(True)
    y = model(xd)
    r = torch.randn(y.shape).double()  # float32 values, as stored
    (r * y).sum().backward()
    t = {"x": x, "y": y, "r": r, "dx": xd.grad}
    for k, p in model.state_dict().items():
        t["param." + k] = p
    for k, p in model.named_parameters():
        t["grad." + k] = p.grad
    if extra:
        t.update(extra(model, xd))
    save("layers_vit_" + name, t, meta)


def attention_taps(model, x):
    xbar = x.detach().mean(0)
    if model.qkv.bias is not None:
        xbar = torch.cat([xbar, torch.ones(xbar.shape[0], 1, dtype=xbar.dtype)], 1)
    return {"tap.xbar": xbar, "tap.tbar": model.last_attn.mean((0, 1, 2))}


def main():
    torch.manual_seed(20250611)

    for approx in ("none", "tanh"):
        x = 3 * torch.randn(3, 7, 5)
        case("gelu_" + ("tanh" if approx == "tanh" else "erf"), nn.GELU(approximate=approx), x,
             {"approximate": approx})

    # The last case's rows vary by about eps, so that eps matters.
    for shape, eps, scale in (((2, 5, 7), 1e-5, 2), ((3, 13), 1e-6, 2), ((4, 1, 3), 1e-5, 3e-3)):
        m = nn.LayerNorm(shape[-1], eps=eps)
        redraw(m)
        x = scale * torch.randn(*shape) + 0.5
        case("layernorm_d%d" % shape[-1], m, x, {"dim": shape[-1], "eps": eps})

    # (dim, heads, tokens, batch, qkv bias)
    for dim, heads, n, b, bias in ((6, 1, 5, 2, True), (6, 2, 17, 2, False), (12, 3, 5, 3, False),
                                   (12, 3, 17, 2, True), (8, 2, 1, 3, True)):
        m = Attention(dim, heads, bias)
        x = 1.5 * torch.randn(b, n, dim)
        case("attn_d%d_h%d_n%d_%s" % (dim, heads, n, "bias" if bias else "nobias"), m, x,
             {"dim": dim, "heads": heads, "tokens": n, "qkv_bias": bias}, attention_taps)

    # (in channels, dim, patch, batch, H, W)
    for c, dim, p, b, h, w in ((3, 8, 4, 2, 12, 12), (5, 6, 2, 2, 7, 10)):
        m = PatchEmbed(c, dim, p)
        case("patch_c%d_p%d" % (c, p), m, torch.randn(b, c, h, w), {"in": c, "dim": dim, "patch": p})

    m = TokenEmbed(4, 6)
    redraw(m)
    case("tokens_t4_d6", m, torch.randn(3, 4, 6), {"tokens": 4, "dim": 6})

    # The "small" case feeds tokens whose variance is near norm1's eps.
    for dim, heads, ratio, n, b, scale, tag in ((12, 3, 4.0, 5, 2, 1, ""), (8, 2, 2.5, 17, 2, 1, ""),
                                                (12, 3, 4.0, 5, 2, 3e-3, "_small")):
        m = Block(dim, heads, ratio)
        redraw(m)
        case("block_d%d_h%d_n%d%s" % (dim, heads, n, tag), m, scale * torch.randn(b, n, dim),
             {"dim": dim, "heads": heads, "mlp_ratio": ratio, "tokens": n})

    for index in (0, 2):
        case("take_i%d" % index, TakeToken(index), torch.randn(3, 5, 4), {"index": index})


if __name__ == "__main__":
    main()
