"""Shared helpers for the fixture generators: a safetensors writer (Debian's
python3-torch ships without the safetensors package) and macdist's hash
initialisation, which Go reproduces bit for bit (nn.HashInit), so that model
fixtures need not store their weights.

Run the generators with Debian's /usr/bin/python3 (python3-torch, python3-numpy).
"""
import json
import os
import struct

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")

_DT = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def save(name, tensors, metadata=None):
    """Write tensors (a dict name -> torch.Tensor) to testdata/fixtures/NAME.safetensors."""
    os.makedirs(FIXTURES, exist_ok=True)
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        if t.dtype == torch.float64:
            t = t.float()
        b = t.numpy().tobytes()
        header[k] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    path = os.path.join(FIXTURES, name + ".safetensors")
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)
    return path


_M64 = (1 << 64) - 1


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for c in s.encode():
        h ^= c
        h = (h * 0x100000001B3) & _M64
    return h


def hash_uniform(name, seed, n):
    """n numbers in [0, 1): u_i = top 24 bits of splitmix64(fnv1a64(name) ^ seed + (i+1)·golden) / 2^24.

    Must match Go's nn.HashUniform exactly.
    """
    base = np.uint64((fnv1a64(name) ^ seed) & _M64)
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = base + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def hash_init(model, seed=0):
    """Overwrite every state_dict entry of model with macdist's hash initialisation (nn.HashInit)."""
    sd = model.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            if t.dtype not in (torch.float32, torch.float64):
                continue  # num_batches_tracked
            u = hash_uniform(name, seed, t.numel())
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_var":
                v = 0.5 + u
            elif leaf == "running_mean":
                v = 0.2 * (2 * u - 1)
            elif t.dim() == 1 and _is_norm(model, name):
                v = (1.0 + 0.2 * (2 * u - 1)) if leaf == "weight" else 0.2 * (2 * u - 1)
            elif leaf in ("weight", "bias") and t.dim() >= 1:
                fan_in = _fan_in(sd, name)
                v = (2 * u - 1) / np.sqrt(fan_in)
            else:  # cls_token, pos_embed and other embeddings
                v = 0.02 * (2 * u - 1)
            t.copy_(torch.from_numpy(v.astype(np.float32)).reshape(t.shape))


def _fan_in(sd, name):
    prefix = name.rsplit(".", 1)[0] + "." if "." in name else ""
    w = sd[prefix + "weight"]
    return int(np.prod(w.shape[1:])) if w.dim() > 1 else w.shape[0]


def _is_norm(model, name):
    mod = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    return isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.LayerNorm, torch.nn.GroupNorm))
