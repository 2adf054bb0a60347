"""A full disk, as the node's parts recognise it (torch-free)."""
from __future__ import annotations

import errno
import sqlite3

SQLITE_FULL = 13


def is_disk_full(e: BaseException) -> bool:
    """A write that failed for lack of space: ENOSPC or EDQUOT from the OS, SQLITE_FULL from the ledger."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(e, sqlite3.OperationalError):
        return getattr(e, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(e)
    return False
