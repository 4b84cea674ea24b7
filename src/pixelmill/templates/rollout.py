"""Which version a request gets from a release tag: the tag's version, or its rollout candidate
for a fixed share of subjects.

A subject's bucket (0-9999) is a hash of template, tag and subject, so it is the same on every
host and every request: a subject sees one version for the whole rollout, and raising the
percentage only adds subjects (those already on the candidate stay there)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

BUCKETS = 10_000


def bucket(template: str, tag: str, subject: str) -> int:
    digest = hashlib.sha256(f"{template}\0{tag}\0{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class Release:
    template: str
    tag: str
    version: int
    candidate: int | None = None
    percent: int = 0
    paused: bool = False
    previous_version: int | None = None
    updated_at: int = 0
    updated_by: str = ""

    @property
    def rolling_out(self) -> bool:
        return self.candidate is not None and self.percent > 0 and not self.paused

    def choose(self, subject: str) -> tuple[int, Literal["stable", "candidate"]]:
        """(version, which) for ``subject``."""
        if self.rolling_out and bucket(self.template, self.tag, subject) < self.percent * BUCKETS // 100:
            assert self.candidate is not None
            return self.candidate, "candidate"
        return self.version, "stable"

    def to_json(self) -> dict[str, object]:
        return {
            "tag": self.tag, "version": self.version, "candidate": self.candidate, "percent": self.percent,
            "paused": self.paused, "previous_version": self.previous_version, "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }
