"""Task ids: numeric strings like the upstream contract's, sortable by submit time."""

from __future__ import annotations

import secrets


def new_task_id(now_ms: int) -> str:
    # 13 digits of milliseconds + 7 random digits: ordered by time, and two ids minted in the same
    # millisecond collide with probability 1e-7 (the primary key turns that into a retry).
    return f"{now_ms:013d}{secrets.randbelow(10**7):07d}"
