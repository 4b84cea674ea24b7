"""Which account of a pool a task goes to: the offers a task has, and the selection rules.

The state the rules read (upstream tasks in flight, submit windows, health) is shared by every
process and kept in the database (``queue/accounts.py``); a rule is given the accounts with room
inside the transaction that records the choice, so it always sees what every process did.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from pixelmill.engines.remote.config import AccountConfig, RemoteConfig
from pixelmill.queue.accounts import Offer, Slot


def offers(config: RemoteConfig, *, speed: str | None, sticky: str | None, besides: frozenset[str] = frozenset()) -> list[Offer]:
    """The accounts a task may go to: the one holding its parent's task (``sticky``), or every
    account that runs its speed tier, less ``besides``."""
    pool: Sequence[AccountConfig] = config.pool
    if sticky is not None:
        pool = [a for a in pool if a.name == sticky]
    return [
        Offer(a.name, a.weight, a.capacity, a.submit_per_minute, a.daily_limit)
        for a in pool
        if a.runs(speed) and a.name not in besides
    ]


def rule(name: str, rng: random.Random | None = None) -> Callable[[Sequence[Slot]], str]:
    """The selection rule ``name`` (``RemoteConfig.selection``) over accounts with room, which come in
    configuration order; ties go to the earlier account."""
    if name == "weighted":
        chooser = rng or random.Random()

        def weighted(slots: Sequence[Slot]) -> str:
            return chooser.choices([s.name for s in slots], weights=[s.weight for s in slots])[0]

        return weighted
    if name == "round_robin":
        return lambda slots: min(enumerate(slots), key=lambda item: (item[1].last_pick, item[0]))[1].name
    # least busy: the fewest upstream tasks, relative to the account's capacity where it has one
    return lambda slots: min(enumerate(slots), key=lambda item: (_load(item[1]), item[0]))[1].name


def _load(slot: Slot) -> float:
    return slot.in_flight / slot.capacity if slot.capacity else float(slot.in_flight)
