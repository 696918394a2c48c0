"""CPU, memory and GPU utilisation of the pod, as cheap as a /proc read and one nvidia-smi call."""

import asyncio
import os
import shutil
from typing import Any, Dict, List


def _meminfo() -> Dict[str, int]:
    out: Dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


async def _nvidia() -> List[Dict[str, Any]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = await asyncio.create_subprocess_exec(
            exe,
            "--query-gpu=index,name,utilization.gpu,memory.used,memory.total",
            "--format=csv,noheader,nounits",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 5)
    except (OSError, asyncio.TimeoutError):
        return []
    gpus = []
    for line in out.decode(errors="replace").splitlines():
        parts = [x.strip() for x in line.split(",")]
        if len(parts) == 5:
            try:
                gpus.append(
                    {
                        "index": int(parts[0]),
                        "name": parts[1],
                        "util": float(parts[2]),
                        "mem_used": int(float(parts[3])) * 1024 * 1024,
                        "mem_total": int(float(parts[4])) * 1024 * 1024,
                    }
                )
            except ValueError:
                continue
    return gpus


async def collect(visible: str) -> Dict[str, Any]:
    mem = _meminfo()
    gpus = await _nvidia()
    if not gpus and visible:
        # Virtual GPUs (local backend): report the slots with no utilisation figures.
        gpus = [{"index": int(i), "name": "virtual", "util": None} for i in visible.split(",") if i.isdigit()]
    return {
        "loadavg": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "mem_total": mem.get("MemTotal"),
        "mem_available": mem.get("MemAvailable"),
        "gpus": gpus,
    }
