"""Livy's recovery state store, as both the Livy collector (filesystem store)
and the ZooKeeper collector (ZooKeeper store) count it: its layout and the
metric both export.

Livy (``SessionStore``) keeps one entry per session it would recover on a
restart, under ``<root>/v1/<kind>/<id>``, beside ``<root>/v1/<kind>/state``
(the next session id). ``<kind>`` is ``batch`` or ``interactive``.
"""

from __future__ import annotations

import os
import re

from .collector import gauge

#: the session kinds, as the state store names its directories and znodes
SESSION_KINDS = ("batch", "interactive")


def kind_path(root: str, kind: str) -> str:
    """Where the sessions of ``kind`` are stored below the store's root."""
    return f"{root.rstrip('/')}/v1/{kind}"


RECOVERY_SESSIONS = gauge(
    "livy_recovery_sessions",
    "Sessions stored in Livy's recovery state store (ZooKeeper or filesystem) by kind: the sessions a "
    "Livy restart would recover, starting one thread for each. 'process' names the Livy JVM "
    "(to join with jvm_process_thread_limit and jvm_process_user_threads).",
    ["kind", "process"],
)


_NUMERIC = re.compile(r"^[+-]?[0-9]+$")


def count_fs_state_store(root: str, kind: str) -> int:
    """Sessions of ``kind`` in Livy's filesystem state store rooted at ``root``.

    Layout (SessionStore + FileSystemStateStore): ``<root>/v1/<kind>/<id>`` per
    session, ``<root>/v1/<kind>/state`` (the next session id), and transient
    ``<id>.tmp`` and Hadoop ``.<name>.crc`` files. Livy recovers exactly the
    children whose name parses as an integer, so those are counted. A missing
    directory holds no session (Livy treats it the same way).
    """
    try:
        with os.scandir(kind_path(root, kind)) as it:
            return sum(1 for e in it if _NUMERIC.match(e.name) and -2**31 <= int(e.name) < 2**31)
    except FileNotFoundError:
        return 0
