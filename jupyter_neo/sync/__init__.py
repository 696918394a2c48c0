"""Workspace sync: mirror a local folder into every pod of a gang, changed bytes only, atomically.

Contract (details in docs/sync.md):

- *What*: the files ``git ls-files -co --exclude-standard`` would list, minus ``.neoignore`` and
  defaults (:mod:`.ignore`); symlinks that leave the workspace, unreadable files and files over
  ``NEO_SYNC_MAX_FILE_MB`` are skipped with a reason in the report, the rest still syncs.
- *Cost*: unchanged files are not re-hashed (stat cache in ``NEO_HOME/sync``); an unchanged tree
  costs one round trip per pod (root digests compared); content a pod already holds (renames,
  copies, chmod) is never sent again.
- *Atomicity*: each pod applies a delta to a private tree and flips ``<workspace>/current`` with
  one rename(2); a reader sees the old generation or the new one, never a mix, and a sync cut off
  half way leaves the old generation current (the next sync repairs the pod). The last
  generations are kept for rollback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from jupyter_neo.sync.push import GangSync, Progress, SyncOptions, Transfer, gang_sync_for
from jupyter_neo.sync.report import Change, PodSync, SyncError, SyncReport
from jupyter_neo.sync.watch import Watcher

if TYPE_CHECKING:
    from jupyter_neo.hosts import SyncHost
    from jupyter_neo.model import Reservation

__all__ = [
    "Change",
    "GangSync",
    "PodSync",
    "SyncError",
    "SyncOptions",
    "SyncReport",
    "Watcher",
    "sync_gang",
]


async def sync_gang(
    core: SyncHost,
    res: Reservation,
    root: Path,
    *,
    progress: Progress | None = None,
    dry_run: bool = False,
    on_transfer: Transfer | None = None,
) -> SyncReport:
    """Bring every pod of ``res`` to the current content of ``root``; one report for the gang.

    Raises :class:`SyncError` (a ``BackendError``) when some pod did not acknowledge; the report
    rides on the error. The manifest stays in memory per core, so repeated calls are cheap.
    """
    gang = gang_sync_for(core, res, Path(root).expanduser().absolute())
    return await gang.sync(None, progress=progress, dry_run=dry_run, on_transfer=on_transfer)
