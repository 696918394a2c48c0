"""The agent as a deterministic zip, and the argv that boots it in a pod.

The zip's hash names the agent version in the pod (``agent-<hash>.pyz``): a pod that already
holds this exact agent receives nothing at connect time.
"""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from dataclasses import dataclass
from importlib import resources

import neo_agent
from neo_agent.boot import GUARD, STUB


@dataclass(frozen=True)
class AgentBundle:
    data: bytes
    digest: str


@functools.cache
def agent_bundle() -> AgentBundle:
    """Zip every module of ``neo_agent`` with fixed timestamps, so the hash is reproducible."""
    buf = io.BytesIO()
    root = resources.files(neo_agent)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        names = sorted(p.name for p in root.iterdir() if p.name.endswith(".py"))
        for name in names:
            info = zipfile.ZipInfo(f"neo_agent/{name}", date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, (root / name).read_bytes())
        main = zipfile.ZipInfo("__main__.py", date_time=(2020, 1, 1, 0, 0, 0))
        zf.writestr(main, b"from neo_agent.__main__ import main\nmain()\n")
    data = buf.getvalue()
    return AgentBundle(data=data, digest=hashlib.sha256(data).hexdigest()[:16])


# Installs the agent zip in DIR (read from stdin, only when DIR lacks this version) and, given more
# arguments, runs the zip with them (``keep``, ``leases inventory``...). Exits NEED_ZIP when the zip
# is missing and stdin is empty, so a caller sends the zip only to a host that lacks it.
# Fixed code run as ``python3 -c INSTALL DIR HASH [ARGS...]``; nothing in it comes from input.
NEED_ZIP = 75
INSTALL = (
    GUARD
    + r"""
if not have(z, h):
    b = sys.stdin.buffer.read()
    if not b:
        sys.exit(75)
    if hashlib.sha256(b).hexdigest()[:16] != h:
        sys.exit("neo: corrupt agent upload")
    t = "%s.%d.tmp" % (z, os.getpid())
    with open(t, "wb") as f:
        f.write(b)
    os.replace(t, z)
if len(sys.argv) > 3:
    sys.argv = [z] + sys.argv[3:]
    sys.path.insert(0, z)
    from neo_agent.__main__ import main
    main()
"""
)


def stub_argv(python: str, agent_dir: str) -> list[str]:
    """The command a backend runs in the pod; its stdio is the stream. Fixed code, no shell."""
    return [python, "-c", STUB, agent_dir, agent_bundle().digest]
