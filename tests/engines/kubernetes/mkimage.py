#!/usr/bin/env python3
"""Pack a rootfs tarball into a docker-archive image tar that `ctr -n k8s.io images import` accepts.
usage: mkimage.py ROOTFS.tar NAME:TAG OUT.tar [--entrypoint /x] [--cmd a b ...]"""

import hashlib
import io
import json
import sys
import tarfile
import time


def main():
    args = sys.argv[1:]
    rootfs, ref, out = args[:3]
    ep, cmd = None, None
    rest = args[3:]
    if "--entrypoint" in rest:
        i = rest.index("--entrypoint")
        ep = [rest[i + 1]]
        rest = rest[:i] + rest[i + 2 :]
    if "--cmd" in rest:
        i = rest.index("--cmd")
        cmd = rest[i + 1 :]
    h = hashlib.sha256()
    with open(rootfs, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    diff_id = "sha256:" + h.hexdigest()
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0)),
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": ep,
            "Cmd": cmd,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "mkimage.py"}],
    }
    cfg_b = json.dumps(cfg).encode()
    cfg_name = hashlib.sha256(cfg_b).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [ref], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(out, "w") as t:

        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 0
            t.addfile(ti, io.BytesIO(data))

        add(cfg_name, cfg_b)
        t.add(rootfs, arcname="layer.tar")
        add("manifest.json", manifest)


if __name__ == "__main__":
    main()
