"""``python -m bench``: every benchmark in quick mode (``--full`` for the default, longer runs).

Runs ``bench.sync``, ``bench.run_loop``, ``bench.hot``, ``bench.px`` and ``bench.controller`` one after the other, each printing its
table and writing its CSV under ``bench/results/``. See ``bench/README.md`` and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import subprocess
import sys


def main() -> None:
    quick = [] if "--full" in sys.argv[1:] else ["--quick"]
    failed = []
    for mod in ("bench.sync", "bench.run_loop", "bench.hot", "bench.px", "bench.controller"):
        print(f"=== python -m {mod} {' '.join(quick)}", flush=True)
        if subprocess.run([sys.executable, "-m", mod, *quick], check=False).returncode:
            failed.append(mod)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
