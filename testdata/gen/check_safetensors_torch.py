"""Check that a safetensors file written by macdist's Go code loads in PyTorch.

Debian 12 has no python3-safetensors, so the file is parsed here by hand with
the format's own rules (8-byte length, JSON header, aligned little-endian data)
and turned into torch tensors with torch.frombuffer; where the safetensors
package is importable its loader is checked too. The tensors hold a
torch.nn.Linear(4, 3) state_dict, which is loaded with strict=True and run.

    /usr/bin/python3 testdata/gen/check_safetensors_torch.py [FILE]

Without FILE it runs `go run ./internal/tools/stsample` into a temporary
directory first. Exits non-zero on any mismatch.
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_DT = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
    "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8,
}


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    assert 8 + hlen <= len(raw), f"{path}: header length {hlen} past the end"
    assert (8 + hlen) % 8 == 0, f"{path}: data starts at {8 + hlen}, not 8-byte aligned"
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    data = raw[8 + hlen:]
    meta = header.pop("__metadata__", {})
    out, end = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        lo, hi = e["data_offsets"]
        assert lo == end, f"{path}: {name} starts at {lo}, previous ended at {end}"
        dt = _DT[e["dtype"]]
        n = math.prod(e["shape"])
        assert hi - lo == n * torch.empty(0, dtype=dt).element_size(), f"{path}: {name}: size does not match shape"
        buf = bytearray(data[lo:hi])  # frombuffer wants a writable buffer
        t = torch.frombuffer(buf, dtype=dt) if n else torch.empty(0, dtype=dt)
        out[name] = t.reshape(e["shape"])
        end = hi
    assert end == len(data), f"{path}: {len(data) - end} bytes after the last tensor"
    return out, meta


def expect(name, got, want):
    if got.dtype != want.dtype or got.shape != want.shape or not torch.equal(got, want):
        sys.exit(f"FAIL {name}: got {got.dtype} {tuple(got.shape)} {got.tolist()}, want {want.dtype} {tuple(want.shape)} {want.tolist()}")


def check(path):
    t, meta = load(path)
    assert meta == {"format": "pt", "producer": "macdist"}, f"metadata {meta}"
    w = (torch.arange(12, dtype=torch.float32) * 0.25 - 1).reshape(3, 4)
    expect("weight", t["weight"], w)
    expect("bias", t["bias"], torch.tensor([0.5, -0.5, 2.0]))
    expect("extra.f64", t["extra.f64"], torch.tensor([[math.pi, -math.e], [1e-300, 1e300]], dtype=torch.float64))
    expect("extra.i64", t["extra.i64"], torch.tensor([0, -1, 1 << 40, 2**63 - 1, -(2**63)], dtype=torch.int64))
    expect("extra.f16", t["extra.f16"], torch.tensor([1.0, -2.0, 65504.0, 2.0**-24], dtype=torch.float16))
    expect("extra.u8", t["extra.u8"], torch.tensor([[0, 1, 2], [127, 128, 255]], dtype=torch.uint8))
    expect("extra.scalar", t["extra.scalar"], torch.tensor(-7.5))

    lin = torch.nn.Linear(4, 3)
    lin.load_state_dict({k: t[k] for k in ("weight", "bias")}, strict=True)
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5]])
    y = lin(x).detach().numpy()
    want = x.numpy().astype(np.float64) @ w.numpy().astype(np.float64).T + np.array([0.5, -0.5, 2.0])
    assert np.allclose(y, want, rtol=1e-6, atol=1e-6), f"Linear output {y}, want {want}"

    try:
        from safetensors.torch import load_file
    except ImportError:
        print("safetensors package not installed; checked with the hand-written loader only")
    else:
        for k, v in load_file(path).items():
            expect("safetensors.torch " + k, v, t[k])
        print("safetensors.torch.load_file agrees")
    print(f"ok: {path} loads in torch {torch.__version__} ({len(t)} tensors, Linear(4, 3) state_dict strict)")


def main():
    if len(sys.argv) > 1:
        check(sys.argv[1])
        return
    go = shutil.which("go") or "/usr/local/go/bin/go"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "go_written.safetensors")
        subprocess.run([go, "run", "./internal/tools/stsample", path], cwd=ROOT, check=True)
        check(path)


if __name__ == "__main__":
    main()
