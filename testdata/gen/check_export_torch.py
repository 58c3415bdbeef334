"""Check that `macdist export` writes weights PyTorch loads and computes with.

1. Trains LeNet-5 with MAC for one short epoch on Fashion-MNIST
   (/usr/share/datasets/fashion-mnist), exports the checkpoint, loads it into
   a plain PyTorch LeNet-5 with load_state_dict(strict=True), evaluates the
   first 1000 test images and compares loss and accuracy with
   `macdist eval` on the same images.
2. Trains a ResNet-8 (BatchNorm) on synthetic data, exports it and loads it
   strictly into the PyTorch CIFAR ResNet: num_batches_tracked must arrive as
   int64 with the step count, the running statistics as float32.

    /usr/bin/python3 testdata/gen/check_export_torch.py

It builds bin/macdist's source into a temporary directory and needs Go.
Exits non-zero on any mismatch. Not a fixture generator: nothing is written
under testdata/.
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from check_safetensors_torch import load  # noqa: E402
from gen_models import CifarResNet, LeNet5  # noqa: E402

FASHION = "/usr/share/datasets/fashion-mnist"
N_TEST = 1000


def macdist(binary, *args):
    r = subprocess.run([binary, *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL macdist {' '.join(args)}: exit {r.returncode}\n{r.stderr}")
    return r.stdout


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def check_lenet(binary, tmp):
    run = os.path.join(tmp, "lenet")
    macdist(binary, "train", "--model", "lenet5", "--data", "fashion-mnist", "--subset", "1920", "--batch", "64",
            "--epochs", "1", "--test-subset", str(N_TEST), "--run-dir", run, "--progress", "none")
    out = os.path.join(tmp, "lenet5.safetensors")
    macdist(binary, "export", "--checkpoint", run, "--out", out)
    ev = json.loads(macdist(binary, "eval", "--checkpoint", run, "--subset", str(N_TEST)))

    tensors, meta = load(out)
    assert meta.get("format") == "pt", f"metadata {meta}"
    model = LeNet5(1, 28, 10)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    x = idx(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"))[:N_TEST].astype(np.float32) / 255.0
    y = torch.from_numpy(idx(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz"))[:N_TEST].astype(np.int64))
    x = torch.from_numpy((x - 0.2860) / 0.3530).unsqueeze(1)
    with torch.no_grad():
        logits = model(x)
    loss = F.cross_entropy(logits, y).item()
    correct = int((logits.argmax(1) == y).sum())
    go_correct = round(ev["accuracy"] * ev["samples"])
    print(f"lenet5: torch loss {loss:.6f} acc {correct}/{N_TEST}; macdist eval loss {ev['loss']:.6f} acc {go_correct}/{ev['samples']}")
    # Summation order differs; an image on the decision boundary may flip.
    if abs(loss - ev["loss"]) > 1e-4 * max(1.0, abs(loss)) or abs(correct - go_correct) > 1:
        sys.exit("FAIL: PyTorch and macdist disagree on the exported LeNet-5")


def check_resnet(binary, tmp):
    run = os.path.join(tmp, "resnet")
    macdist(binary, "train", "--model", "resnet20", "--depth", "8", "--data", "synthetic:3x16x16:4:64:16",
            "--batch", "16", "--epochs", "1", "--run-dir", run, "--progress", "none")
    out = os.path.join(tmp, "resnet8.safetensors")
    macdist(binary, "export", "--checkpoint", run, "--out", out)
    tensors, _ = load(out)
    model = CifarResNet(8, 3, 4)
    model.load_state_dict(tensors, strict=True)
    nbt = tensors["bn1.num_batches_tracked"]
    assert nbt.dtype == torch.int64 and nbt.shape == () and int(nbt) == 4, f"num_batches_tracked {nbt!r}"
    assert tensors["bn1.running_var"].dtype == torch.float32
    sd = model.state_dict()
    for k, v in tensors.items():
        assert torch.equal(sd[k], v), f"{k} changed on load"
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 16, 16))
    assert torch.isfinite(y).all()
    print(f"resnet8: {len(tensors)} tensors loaded strictly; num_batches_tracked int64 = {int(nbt)}")


def main():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "macdist")
        subprocess.run(["go", "build", "-o", binary, "./cmd/macdist"], cwd=ROOT, check=True)
        if os.path.exists(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")):
            check_lenet(binary, tmp)
        else:
            print(f"skipping the LeNet-5 check: {FASHION} is missing (apt-get install dataset-fashion-mnist)")
        check_resnet(binary, tmp)
    print("OK")


if __name__ == "__main__":
    main()
