"""The per-rank entry point torchrun starts: ``python3 agent.pyz rank (SCRIPT | -m MODULE) [ARGS...]``.

It runs the user's script exactly like ``python SCRIPT`` (as ``__main__``, its directory first on
``sys.path``) and, when it raises, first prints one ``NEO_RANK_FAILED {json}`` line carrying the
wall-clock time of the exception. With many ranks failing in a cascade (one raises, its peers then
fail on closed connections), the earliest such line names the real culprit, whatever order the
log lines happen to arrive in.
"""

import json
import os
import runpy
import sys
import time
import traceback
from typing import List

from neo_agent.rank_api import install

MARKER = "NEO_RANK_FAILED "


def main(argv: List[str]) -> None:
    if not argv:
        sys.stderr.write("usage: agent.pyz rank (SCRIPT | -m MODULE) [ARGS...]\n")
        sys.exit(2)
    module = argv[0] == "-m"
    target = argv[1] if module else argv[0]
    args = argv[2:] if module else argv[1:]
    # Look like a plain ``python SCRIPT``: drop the agent zip from the import path.
    sys.path[:] = [p for p in sys.path if not p.endswith(".pyz")]
    install()
    try:
        if module:
            sys.argv = [target, *args]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = [target, *args]
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
            runpy.run_path(target, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as exc:
        record = {
            "time": time.time(),
            "rank": int(os.environ.get("RANK", "-1")),
            "error": "%s: %s" % (type(exc).__name__, exc),
        }
        sys.stdout.flush()
        sys.stderr.write(MARKER + json.dumps(record) + "\n")
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)
