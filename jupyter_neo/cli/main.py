"""``neo`` entry point: a thin client of the resident controller (stdlib imports only).

The command line goes to the controller of ``$NEO_HOME`` (started on demand), which runs it and
streams the output back; see :mod:`jupyter_neo.controller`. ``neo daemon ...`` manages the
controller itself. With ``NEO_CONTROLLER=off``, or when no controller can serve, the command runs
in-process (:func:`jupyter_neo.cli.app.main_in_process`), exactly as it would in the controller.

Whatever goes wrong ends as one line on stderr and a non-zero exit: anything unexpected as a
one-line summary whose traceback goes to ``$NEO_HOME/logs/errors.log`` (:mod:`jupyter_neo.errorlog`).
A user never sees a traceback.
"""

from __future__ import annotations

import os
import sys


def entry() -> None:
    """The ``neo`` console script: :func:`main`, then a prompt exit after a forwarded command.

    A command the controller ran leaves nothing here to tear down (the thin client holds no
    thread, file or atexit work; it imports the stdlib only), so the process skips the
    interpreter's finalisation: ~2 ms of a ~20 ms command. A command run in-process exits the
    normal way, its core, store and event loop closing in their finalisers.
    """
    code, forwarded = _run(sys.argv[1:])
    if forwarded:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                code = code or 1
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run one ``neo`` command line and return its exit code (what tests and ``python -m`` call)."""
    return _run(sys.argv[1:] if argv is None else list(argv))[0]


def _run(argv: list[str]) -> tuple[int, bool]:
    """The exit code, and whether the controller ran the command (nothing left to finalise here)."""
    try:
        return _dispatch(argv)
    except (KeyboardInterrupt, Exception) as exc:  # the catch-all: one line, the traceback to a file
        from jupyter_neo.errorlog import command_ended_by

        return command_ended_by(exc, argv), False


def _dispatch(argv: list[str]) -> tuple[int, bool]:
    if argv[:1] == ["daemon"]:
        from jupyter_neo.controller import manage

        return manage.main(argv[1:]), False
    from jupyter_neo.controller import client

    if os.environ.get("NEO_CONTROLLER", "on") != "off":
        try:
            return client.run_command(argv), True
        except client.Refused as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 1, False
        except client.Unavailable:
            pass  # run it here instead
    from jupyter_neo.cli.app import main_in_process

    return main_in_process(argv), False


if __name__ == "__main__":
    entry()
