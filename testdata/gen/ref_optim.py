"""Reference implementations of MAC (and, later, the curvature baselines)
written in plain PyTorch from shared/MAC.md, independently of the Go code:
the fixtures of gen_optim.py come from these.

They follow MAC.md literally and favour clarity over speed: dense Gw
matrices, explicit hooks, float32 like the Go code.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def preconditioned(model):
    """Linear and Conv2d modules in registration (= forward) order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def input_rows(m, a):
    """The rows of a layer's input, with a trailing 1 when it has a bias."""
    if isinstance(m, nn.Conv2d):
        p = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)  # [B, Ckk, P]
        rows = p.transpose(1, 2).reshape(-1, p.shape[1])
    else:
        rows = a.reshape(-1, a.shape[-1])
    if m.bias is not None:
        rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], 1)
    return rows


def grad_matrix(m):
    g = m.weight.grad.reshape(m.weight.shape[0], -1)
    if m.bias is not None:
        g = torch.cat([g, m.bias.grad[:, None]], 1)
    return g


def set_grad(m, v):
    n = m.weight[0].numel()
    m.weight.grad.copy_(v[:, :n].reshape(m.weight.shape))
    if m.bias is not None:
        m.bias.grad.copy_(v[:, n])


class SGDStep:
    """torch.optim.SGD's update (momentum, no dampening, coupled or decoupled
    weight decay), applied to whatever the gradients hold."""

    def __init__(self, params, momentum, wd, decoupled=False):
        self.params, self.momentum, self.wd, self.decoupled = list(params), momentum, wd, decoupled
        self.buf = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def apply(self, lr):
        for p, b in zip(self.params, self.buf):
            g = p.grad
            if self.wd:
                if self.decoupled:
                    p.mul_(1 - lr * self.wd)
                else:
                    g = g + self.wd * p
            if self.momentum:
                b.mul_(self.momentum).add_(g)
                g = b
            p.add_(g, alpha=-lr)


class MAC:
    def __init__(self, model, momentum=0.9, stat_decay=0.95, damping=1.0, wd=5e-4, decoupled=False,
                 tcov=5, tinv=50, first_layer_cov=True, attention_v=True):
        self.model, self.beta, self.damping = model, stat_decay, damping
        self.tcov, self.tinv = tcov, tinv
        self.layers = preconditioned(model)
        self.first = self.layers[0][1] if first_layer_cov else None
        self.sgd = SGDStep(model.parameters(), momentum, wd, decoupled)
        self.k = 0
        self.state = {m: dict(m=None, n=0, mhat=None, s=None) for _, m in self.layers}
        self.abar = {}
        self.attn = {}  # qkv Linear -> dict(X, t, m, n, mhat, s)
        self.collect = False
        for _, m in self.layers:
            m.register_forward_pre_hook(self._hook)
        if attention_v:
            for _, m in model.named_modules():
                if hasattr(m, "qkv") and hasattr(m, "heads"):
                    m.register_forward_pre_hook(self._attn_hook)
                    self.attn[m.qkv] = dict(owner=m, m=None, n=0, mhat=None, s=None)
        self.inv0 = None

    def first_layer_covariance(self, inputs):
        """A0 = Σ p pᵀ / rows over every row of every input batch."""
        m = self.first
        s, n = None, 0
        with torch.no_grad():
            for x in inputs:
                rows = input_rows(m, x).double()
                s = rows.T @ rows if s is None else s + rows.T @ rows
                n += rows.shape[0]
        a0 = s / n
        self.inv0 = torch.linalg.inv(a0 + self.damping * torch.eye(a0.shape[0], dtype=a0.dtype)).float()

    def _hook(self, m, inp):
        if self.collect and m is not self.first:
            self.abar[m] = input_rows(m, inp[0].detach()).mean(0)

    def _attn_hook(self, mod, inp):
        if not self.collect:
            return
        x = inp[0].detach()
        B, N, C = x.shape
        with torch.no_grad():
            xb = torch.cat([x.mean(0), x.new_ones(N, 1)], 1) if mod.qkv.bias is not None else x.mean(0)
            qkv = mod.qkv(x).reshape(B, N, 3, mod.heads, C // mod.heads).permute(2, 0, 3, 1, 4)
            q, k = qkv[0], qkv[1]
            attn = ((q * mod.scale) @ k.transpose(-2, -1)).softmax(-1)  # [B, H, N(query), N(key)]
            t = attn.mean((0, 1, 2))
        st = self.attn[mod.qkv]
        st["X"], st["t"] = xb, t

    def begin_step(self):
        self.collect = self.k % self.tcov == 0

    @staticmethod
    def _ema(st, v, beta):
        st["m"] = (1 - beta) * v if st["m"] is None else beta * st["m"] + (1 - beta) * v
        st["n"] += 1

    def _refresh(self, st):
        if st["n"] == 0:
            return
        st["mhat"] = st["m"] / (1 - self.beta ** st["n"])
        st["s"] = 1.0 / (self.damping + (st["mhat"] @ st["mhat"]))

    @torch.no_grad()
    def step(self, lr):
        if self.collect:
            for _, m in self.layers:
                if m is not self.first:
                    self._ema(self.state[m], self.abar[m], self.beta)
            for st in self.attn.values():
                self._ema(st, st["X"].T @ st["t"], self.beta)
        if self.k % self.tinv == 0:
            for _, m in self.layers:
                if m is not self.first:
                    self._refresh(self.state[m])
            for st in self.attn.values():
                self._refresh(st)
        for _, m in self.layers:
            gw = grad_matrix(m)
            if m is self.first:
                v = gw @ self.inv0
            else:
                st = self.state[m]
                v = gw - (gw @ st["mhat"])[:, None] * st["mhat"][None, :] * st["s"]
                if m in self.attn and self.attn[m]["mhat"] is not None:
                    a = self.attn[m]
                    r = m.weight.shape[0] // 3
                    gv = gw[2 * r:]
                    v[2 * r:] = gv - (gv @ a["mhat"])[:, None] * a["mhat"][None, :] * a["s"]
            set_grad(m, v)
        self.sgd.apply(lr)
        self.k += 1
