"""Opening workspace files and directories as the scan saw them, never what was swapped in since.

The scan decides from ``lstat`` that a path is a regular file (or a directory) inside the
workspace; content is read later, by path. Between the two, the path can be replaced: by a
symlink to a file outside the workspace (whose content would then land in every pod), by a FIFO
(whose ``open`` blocks forever), or by a directory symlink (so that the paths below it lead
elsewhere). Every open here therefore

- refuses a symlink in the last component (``O_NOFOLLOW``) and never blocks (``O_NONBLOCK``),
- checks with ``fstat`` on the opened descriptor that it is the kind the scan saw, and
- checks that it is the very inode the scan saw (device and inode number).

A directory listed through a verified descriptor yields entries whose ``lstat`` is relative to
that descriptor, so a parent swapped for a link after it was verified cannot redirect them.
"""

from __future__ import annotations

import errno
import os
import stat

Ident = tuple[int, int]
"""(st_dev, st_ino): which file the scan saw"""

FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Swapped(OSError):
    """The path is no longer what the scan saw; ``reason`` says what it became."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(errno.ESTALE, reason, path)
        self.reason = reason


def ident(st: os.stat_result) -> Ident:
    return (st.st_dev, st.st_ino)


def open_file(path: str, expected: Ident | None) -> int:
    """A descriptor of the regular file ``path`` that the scan saw (``expected``), or Swapped."""
    try:
        fd = os.open(path, FILE_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Swapped(path, "replaced by a symlink since the scan") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Swapped(path, "replaced by something that is not a regular file (a FIFO?) since the scan")
        if expected is not None and ident(st) != expected:
            raise Swapped(path, "replaced by another file since the scan")
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_dir(path: str, expected: Ident | None, *, follow: bool = False) -> int:
    """A descriptor of directory ``path`` as scanned (``follow``: the root may be a link)."""
    flags = DIR_FLAGS & ~os.O_NOFOLLOW if follow else DIR_FLAGS
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and expected is not None:
            raise Swapped(path, "directory replaced since the scan saw it") from None
        raise
    if expected is not None and ident(os.fstat(fd)) != expected:
        os.close(fd)
        raise Swapped(path, "directory replaced since the scan saw it")
    return fd


def list_dir(fd: int) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of every entry of an open directory, stat'ed relative to that descriptor."""
    out = []
    with os.scandir(fd) as it:
        for item in it:
            try:
                out.append((item.name, item.stat(follow_symlinks=False)))
            except OSError:
                continue  # vanished while listing
    return out


def lstat_beneath(root: str, rel: str) -> os.stat_result:
    """``lstat`` of ``root/rel`` reached without following a symlink in any directory on the way.

    A watcher reports single paths; looking one up by its full path would follow a parent that
    was swapped for a link, so each directory is opened from the one above with ``O_NOFOLLOW``.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parts = rel.split("/")
        for part in parts[:-1]:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)
