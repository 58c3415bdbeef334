"""Reference implementations of MAC and of the curvature baselines (KFAC,
Eva, FOOF), written in plain PyTorch from shared/MAC.md, independently of the Go code:
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


def window_rows_and_probs(mod, x):
    """torchvision's shifted_window_attention (0.14) up to the output
    projection, for MAC: the windows' input rows [B·nW, N, C] (padded,
    rolled by −shift and partitioned), the attention probabilities
    [B·nW, heads, N, N] with the relative position bias and the shift mask,
    and the projection's input [B·nW, N, C]."""
    B, H, W, C = x.shape
    ws, shift, heads = list(mod.window_size), list(mod.shift_size), mod.num_heads
    x = F.pad(x, (0, 0, 0, (ws[1] - W % ws[1]) % ws[1], 0, (ws[0] - H % ws[0]) % ws[0]))
    _, pH, pW, _ = x.shape
    if ws[0] >= pH:
        shift[0] = 0
    if ws[1] >= pW:
        shift[1] = 0
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    nW = (pH // ws[0]) * (pW // ws[1])
    x = x.view(B, pH // ws[0], ws[0], pW // ws[1], ws[1], C).permute(0, 1, 3, 2, 4, 5).reshape(B * nW, ws[0] * ws[1], C)
    N = x.shape[1]
    qkv = F.linear(x, mod.qkv.weight, mod.qkv.bias).reshape(B * nW, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (C // heads) ** -0.5, qkv[1], qkv[2]
    attn = q @ k.transpose(-2, -1) + mod.get_relative_position_bias()
    if sum(shift) > 0:
        mask = x.new_zeros((pH, pW))
        hs = ((0, -ws[0]), (-ws[0], -shift[0]), (-shift[0], None))
        wsl = ((0, -ws[1]), (-ws[1], -shift[1]), (-shift[1], None))
        count = 0
        for h in hs:
            for w in wsl:
                mask[h[0]:h[1], w[0]:w[1]] = count
                count += 1
        mask = mask.view(pH // ws[0], ws[0], pW // ws[1], ws[1]).permute(0, 2, 1, 3).reshape(nW, N)
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        attn = (attn.view(B, nW, heads, N, N) + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, N, N)
    attn = attn.softmax(-1)
    return x, attn, (attn @ v).transpose(1, 2).reshape(B * nW, N, C)


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
        for _, m in model.named_modules():
            if hasattr(m, "window_size"):
                # torchvision's window attention applies qkv and proj with
                # F.linear, so their own hooks never run (timm's calls the
                # modules): their inputs are taken here.
                m.register_forward_pre_hook(self._window_hook)
        if attention_v:
            for _, m in model.named_modules():
                # A ViT's Attention (heads) or torchvision's Swin
                # ShiftedWindowAttention (num_heads), found alike.
                if hasattr(m, "qkv") and (hasattr(m, "heads") or hasattr(m, "num_heads")):
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
        # In the model's own precision, so that a float64 copy of a run
        # keeps float64 throughout.
        self.inv0 = torch.linalg.inv(a0 + self.damping * torch.eye(a0.shape[0], dtype=a0.dtype)).to(x.dtype)

    def _hook(self, m, inp):
        if self.collect and m is not self.first:
            self.abar[m] = input_rows(m, inp[0].detach()).mean(0)

    def _window_hook(self, mod, inp):
        if not self.collect:
            return
        with torch.no_grad():
            xw, _, ctx = window_rows_and_probs(mod, inp[0].detach())
        for m, a in ((mod.qkv, xw), (mod.proj, ctx)):
            if m is not self.first:
                self.abar[m] = input_rows(m, a).mean(0)

    def _attn_hook(self, mod, inp):
        if not self.collect:
            return
        x = inp[0].detach()
        with torch.no_grad():
            if hasattr(mod, "window_size"):
                # Window attention: the windows are the batch.
                x, attn, _ = window_rows_and_probs(mod, x)
            else:
                B, N, C = x.shape
                qkv = mod.qkv(x).reshape(B, N, 3, mod.heads, C // mod.heads).permute(2, 0, 3, 1, 4)
                q, k = qkv[0], qkv[1]
                attn = ((q * mod.scale) @ k.transpose(-2, -1)).softmax(-1)  # [B, H, N(query), N(key)]
            N = x.shape[1]
            xb = torch.cat([x.mean(0), x.new_ones(N, 1)], 1) if mod.qkv.bias is not None else x.mean(0)
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


# ---------------------------------------------------------------------------
# The curvature baselines of shared/MAC.md: KFAC, Eva, FOOF. Same protocol as
# MAC (begin_step, then forward and backward, then step(lr)); statistics are
# taken on steps k with k % tcov == 0, from forward hooks on the layers'
# inputs and tensor hooks on their outputs' gradients. The loss is a mean
# over the batch, so the output gradient of sample i is g_i / B.


def output_grad_rows(m, g):
    """The rows of a layer's output gradient: [B·P, out]."""
    if isinstance(m, nn.Conv2d):
        return g.permute(0, 2, 3, 1).reshape(-1, g.shape[1])
    return g.reshape(-1, g.shape[-1])


def sym_inverse(a, shift):
    """(sym(a) + shift·I)⁻¹ in float64, returned in float32."""
    a = a.double()
    a = (a + a.T) / 2 + shift * torch.eye(a.shape[0], dtype=torch.float64)
    return torch.linalg.inv(a).float()


class _Hooked:
    """Forward hooks on every Linear and Conv2d that hand the layer's input
    to self._input and its output gradient to self._grad, on collecting
    steps only."""

    def __init__(self, model, tcov):
        self.layers = preconditioned(model)
        self.tcov, self.k, self.collect = tcov, 0, False
        for _, m in self.layers:
            m.register_forward_hook(self._fwd)

    def _fwd(self, m, inp, out):
        if not self.collect:
            return
        a = inp[0].detach()
        self._input(m, a)
        out.register_hook(lambda g, m=m, a=a: self._grad(m, a, g.detach()))

    def begin_step(self):
        self.collect = self.k % self.tcov == 0

    def _kl_clip(self, vs, gws, lr):
        """ν = min(1, √(κ / |η²·Σ V⊙Gw|)) over every preconditioned layer."""
        if not self.kl_clip:
            return 1.0
        vg = sum(float((v * g).sum()) for v, g in zip(vs, gws)) * lr ** 2
        return min(1.0, (self.kl_clip / abs(vg)) ** 0.5) if vg != 0 else 1.0


class KFAC(_Hooked):
    """KFAC with kfac-pytorch's factors (alecwangcq/KFAC-Pytorch, batch
    averaged): A from the input rows divided by the positions P of a sample
    (a sample's rows: 1 for a plain Linear, its tokens, or a convolution's
    output positions), A = Σ (a/P)(a/P)ᵀ / B; G from the output-gradient rows
    times B·P, G = mean of (B·P·g)(B·P·g)ᵀ. EMA from the identity; every
    tinv steps π-damped inverses; KL clip."""

    def __init__(self, model, momentum=0.9, stat_decay=0.95, damping=0.03, wd=5e-4, decoupled=False,
                 tcov=5, tinv=50, kl_clip=1e-3):
        super().__init__(model, tcov)
        self.beta, self.damping, self.tinv, self.kl_clip = stat_decay, damping, tinv, kl_clip
        self.sgd = SGDStep(model.parameters(), momentum, wd, decoupled)
        self.A, self.G, self.Ainv, self.Ginv = {}, {}, {}, {}
        self.a_new, self.g_new = {}, {}

    def _input(self, m, a):
        rows = input_rows(m, a)
        B = a.shape[0]
        P = rows.shape[0] // B
        r = rows / P
        self.a_new[m] = r.T @ (r / B)

    def _grad(self, m, a, g):
        rows = output_grad_rows(m, g)
        B = a.shape[0]
        P = rows.shape[0] // B
        s = rows * (B * P)
        self.g_new[m] = s.T @ (s / rows.shape[0])

    @torch.no_grad()
    def step(self, lr):
        for _, m in self.layers:
            if self.collect:
                for ema, new in ((self.A, self.a_new), (self.G, self.g_new)):
                    if m not in ema:
                        ema[m] = torch.eye(new[m].shape[0])
                    ema[m] = self.beta * ema[m] + (1 - self.beta) * new[m]
            if self.k % self.tinv == 0:
                A, G = self.A[m], self.G[m]
                ta, tg = float(A.double().trace()) / A.shape[0], float(G.double().trace()) / G.shape[0]
                pi = (ta / tg) ** 0.5 if ta > 0 and tg > 0 else 1.0
                self.Ainv[m] = sym_inverse(A, self.damping ** 0.5 * pi)
                self.Ginv[m] = sym_inverse(G, self.damping ** 0.5 / pi)
        vs, gws = [], []
        for _, m in self.layers:
            gw = grad_matrix(m)
            vs.append(self.Ginv[m] @ gw @ self.Ainv[m])
            gws.append(gw)
        nu = self._kl_clip(vs, gws, lr)
        for (_, m), v in zip(self.layers, vs):
            set_grad(m, v * nu)
        self.sgd.apply(lr)
        self.k += 1


class Eva(_Hooked):
    """Eva: ā the mean input row (with the trailing 1), ḡ the mean raw output
    gradient, as Eva's get_vector_a and get_vector_g take them; each an EMA
    started at its first value; V = (1/λ)·[Gw − (ḡᵀGwā / (‖ā‖²‖ḡ‖² + λ))·ḡāᵀ]
    every step; KL clip."""

    def __init__(self, model, momentum=0.9, stat_decay=0.95, damping=0.03, wd=5e-4, decoupled=False,
                 tcov=5, kl_clip=1e-3, **_):
        super().__init__(model, tcov)
        self.beta, self.damping, self.kl_clip = stat_decay, damping, kl_clip
        self.sgd = SGDStep(model.parameters(), momentum, wd, decoupled)
        self.ma, self.mg, self.a_new, self.g_new = {}, {}, {}, {}

    def _input(self, m, a):
        if isinstance(m, nn.Conv2d):
            a = a.mean(0, keepdim=True)  # Eva averages the batch first, then unfolds
            p = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
            v = p.mean((0, 2))
        else:
            v = a.mean(tuple(range(a.dim() - 1)))
        if m.bias is not None:
            v = torch.cat([v, v.new_ones(1)])
        self.a_new[m] = v

    def _grad(self, m, a, g):
        dims = [0, 2, 3] if isinstance(m, nn.Conv2d) else list(range(g.dim() - 1))
        self.g_new[m] = g.mean(dims)

    @torch.no_grad()
    def step(self, lr):
        if self.collect:
            for _, m in self.layers:
                for ema, new in ((self.ma, self.a_new), (self.mg, self.g_new)):
                    ema[m] = new[m].clone() if m not in ema else self.beta * ema[m] + (1 - self.beta) * new[m]
        vs, gws = [], []
        for _, m in self.layers:
            gw = grad_matrix(m)
            a, g = self.ma[m], self.mg[m]
            coef = (g @ gw @ a) / ((a @ a) * (g @ g) + self.damping)
            vs.append((gw - coef * torch.outer(g, a)) / self.damping)
            gws.append(gw)
        nu = self._kl_clip(vs, gws, lr)
        for (_, m), v in zip(self.layers, vs):
            set_grad(m, v * nu)
        self.sgd.apply(lr)
        self.k += 1


class FOOF(_Hooked):
    """FOOF: A = E[aaᵀ], the plain mean over input rows (patches unscaled, as
    the MAC authors' FOOF takes it); EMA from zero with bias correction;
    every tinv steps (Â + λI)⁻¹; V = Gw·(Â + λI)⁻¹; KL clip when kl_clip > 0."""

    def __init__(self, model, momentum=0.9, stat_decay=0.95, damping=1.0, wd=5e-4, decoupled=False,
                 tcov=5, tinv=50, kl_clip=0.0):
        super().__init__(model, tcov)
        self.beta, self.damping, self.tinv, self.kl_clip = stat_decay, damping, tinv, kl_clip
        self.sgd = SGDStep(model.parameters(), momentum, wd, decoupled)
        self.A, self.n, self.Ainv, self.a_new = {}, 0, {}, {}

    def _input(self, m, a):
        rows = input_rows(m, a)
        self.a_new[m] = rows.T @ (rows / rows.shape[0])

    def _grad(self, m, a, g):
        pass

    @torch.no_grad()
    def step(self, lr):
        if self.collect:
            self.n += 1
            for _, m in self.layers:
                self.A[m] = (1 - self.beta) * self.a_new[m] + (self.beta * self.A[m] if m in self.A else 0)
        if self.k % self.tinv == 0:
            for _, m in self.layers:
                self.Ainv[m] = sym_inverse(self.A[m] / (1 - self.beta ** self.n), self.damping)
        vs, gws = [], []
        for _, m in self.layers:
            gw = grad_matrix(m)
            vs.append(gw @ self.Ainv[m])
            gws.append(gw)
        nu = self._kl_clip(vs, gws, lr)
        for (_, m), v in zip(self.layers, vs):
            set_grad(m, v * nu)
        self.sgd.apply(lr)
        self.k += 1
