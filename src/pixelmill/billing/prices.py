"""The price table: units per price key, in the database so every process charges the same.

At start the table is seeded with the defaults (``tasks.pricing.DEFAULT_PRICES``) and then with
the operator's file (``PIXELMILL_PRICES_FILE``, JSON ``{"midjourney@imagine": 2, ...}``), which
wins. The admin API changes single keys afterwards. Submits read a copy cached for a second, so a
change reaches every process within about a second without a query per submit.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import Engine, select

from pixelmill.clock import Clock
from pixelmill.db.engine import dialect_insert, read_tx, write_tx
from pixelmill.db.schema import prices
from pixelmill.exceptions import PixelmillError, ValidationError
from pixelmill.tasks.pricing import DEFAULT_PRICES

CACHE_SECONDS = 1.0
MAX_UNITS = 1_000_000


class PriceMissing(PixelmillError):
    """A task's price key has no price: a deployment error, answered as an internal one."""


def read_price_file(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"price file {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                              for k, v in data.items()):
        raise ValueError(f"price file {path}: needs a JSON object of price key -> units (integers >= 0)")
    return data


class PriceTable:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._insert = dialect_insert(engine)
        self._lock = threading.Lock()
        self._cached: dict[str, int] = {}
        self._cached_at = -CACHE_SECONDS

    def seed(self, overrides: Mapping[str, int]) -> None:
        """Defaults for keys not priced yet, then the operator's prices (``read_price_file``) over
        everything they name."""
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            for key, units in DEFAULT_PRICES.items():
                conn.execute(self._insert(prices).values(price_key=key, units=units, updated_at=now).on_conflict_do_nothing())
        for key, units in overrides.items():
            self.set(key, units)

    def set(self, key: str, units: int) -> None:
        if not key.startswith("midjourney@") or len(key) > 64:
            raise ValidationError("price_key", f"'{key}' must look like midjourney@<action>[-<variant>] (at most 64 characters)")
        if not 0 <= units <= MAX_UNITS:
            raise ValidationError("units", f"must be 0-{MAX_UNITS:,}, got {units}")
        stmt = self._insert(prices).values(price_key=key, units=units, updated_at=self._clock.now_ms())
        with write_tx(self._engine) as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=[prices.c.price_key], set_={"units": units, "updated_at": stmt.excluded.updated_at}))
        with self._lock:
            self._cached_at = -CACHE_SECONDS  # this process sees its own change at once

    def all(self) -> dict[str, int]:
        with read_tx(self._engine) as conn:
            return {k: int(u) for k, u in conn.execute(select(prices.c.price_key, prices.c.units).order_by(prices.c.price_key))}

    def tiered(self, key: str, speed: str | None) -> str:
        """The price key a speed tier bills under: ``<key>-<speed>`` when the operator priced that
        tier, else the plain key (tiers are optional; unpriced ones cost what the plain key does)."""
        if speed is None:
            return key
        return f"{key}-{speed}" if f"{key}-{speed}" in self._table() else key

    def units(self, key: str, count: int = 1) -> int:
        """What ``count`` of ``key`` cost (video: count = clips)."""
        table = self._table()
        if key not in table:
            raise PriceMissing(f"no price is configured for {key}; an operator must set one")
        return table[key] * count

    def _table(self) -> dict[str, int]:
        with self._lock:
            if time.monotonic() - self._cached_at >= CACHE_SECONDS:
                self._cached, self._cached_at = self.all(), time.monotonic()
            return self._cached
