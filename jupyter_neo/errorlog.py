"""The last line of defence: an unexpected exception becomes one line for the user and a traceback
in ``$NEO_HOME/logs/errors.log`` for whoever fixes it.

Every surface (the ``neo`` entry point, every REST handler, the magics) ends in :func:`report`,
so a bug never shows a user a traceback, and the traceback is never lost either.
"""

from __future__ import annotations

import datetime
import os
import sys
import traceback
from pathlib import Path

from jupyter_neo.private import open_private, private_dir

LOG_NAME = "errors.log"


def error_log_path() -> Path:
    from jupyter_neo.config import default_home

    return default_home() / "logs" / LOG_NAME


def report(exc: BaseException, where: str) -> str:
    """Log ``exc`` with its traceback; return the one line to show (naming the log file)."""
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    path = error_log_path()
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    text = f"--- {stamp} pid {os.getpid()} {where}\n" + "".join(traceback.format_exception(exc))
    try:
        private_dir(path.parent)
        with open_private(path, "ab") as f:
            f.write(text.encode("utf-8", "replace"))
        where_logged = f"details in {path}"
    except OSError as err:
        where_logged = f"the traceback could not be written to {path}: {err.strerror or err}"
    return f"unexpected error: {summary} ({where_logged}); please report it"


INTERRUPTED = "interrupted: whatever was starting or running was stopped"


def command_ended_by(exc: BaseException, argv: list[str]) -> int:
    """The last word of a ``neo`` command that something escaped (in the thin client or wherever
    the command ran): Ctrl-C as exit 130, anything else as one line whose traceback is logged."""
    if isinstance(exc, KeyboardInterrupt):
        print(INTERRUPTED, file=sys.stderr)
        return 130
    print(f"error: {report(exc, 'neo ' + ' '.join(argv))}", file=sys.stderr)
    return 1
