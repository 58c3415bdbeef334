#!/bin/sh
# Index scale (issue 14, item 5): how long opening an ImageNet-sized
# ImageFolder tree takes and how much memory it holds. Generates
# 1,281,167 training files (1000 classes; hard links to a tiny PNG per class, so the
# tree costs inodes, not disk) plus 50 000 val files under $TREE (default
# /tmp/macdist-imagenet-tree, kept for reruns), then times data.Open with
# /usr/bin/time -v. Not part of make test.
set -eu
TREE=${TREE:-/tmp/macdist-imagenet-tree}
if [ ! -f "$TREE/.complete" ]; then
	/usr/bin/python3 - "$TREE" <<'PY'
import os, sys, zlib, struct
root = sys.argv[1]
def png(w, h):
    raw = b"".join(b"\x00" + b"\x80\x40\x20" * w for _ in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
os.makedirs(root, exist_ok=True)
os.makedirs(os.path.join(root, "protos"), exist_ok=True)
def fill(split, per_class, extra):
    for c in range(1000):
        # One source file per class: ext4 allows 65 000 links to a file.
        src = os.path.join(root, "protos", "%s-%d.png" % (split, c))
        with open(src, "wb") as f:
            f.write(png(8, 8))
        d = os.path.join(root, split, "n%08d" % c)
        os.makedirs(d, exist_ok=True)
        for i in range(per_class + (1 if c < extra else 0)):
            os.link(src, os.path.join(d, "n%08d_%d.JPEG" % (c, i)))
fill("train", 1281, 167)  # 1 281 167
fill("val", 50, 0)        # 50 000
open(os.path.join(root, ".complete"), "w").close()
PY
fi
go build -o /tmp/macdist-openindex ./bench/openindex
for i in 1 2 3; do
	uptime
	/usr/bin/time -v /tmp/macdist-openindex "imagefolder:$TREE" 2>/tmp/macdist-openindex.time
	grep -E "Elapsed|Maximum resident" /tmp/macdist-openindex.time
done
