"""Task ids: numeric strings in the upstream contract's own form, sortable by submit time.

An id is the submit millisecond followed by three random digits, like midjourney-proxy's: 16
digits, below 2^53 until the year 2255. JavaScript clients read ids as numbers (Dooy's web app
sends ``+id``), and a double holds every integer up to 2^53 exactly, so the same id works through
every contract. (Ids minted before this form had 20 digits; they keep working as strings.)
"""

from __future__ import annotations

import secrets

#: The largest integer a double (a JavaScript number) holds exactly.
MAX_SAFE_INTEGER = 2**53 - 1


def new_task_id(now_ms: int, spread_ms: int = 1) -> str:
    """An id within ``spread_ms`` milliseconds from ``now_ms``. Many ids minted together spread
    over more milliseconds than one, whose thousand suffixes a batch would exhaust; two ids that
    still collide are caught by the primary key and minted again (queue/store.py)."""
    value = now_ms * 1000 + secrets.randbelow(1000 * spread_ms)
    if value > MAX_SAFE_INTEGER:
        raise OverflowError("the clock is past the year 2255; task ids no longer fit a double")
    return str(value)
