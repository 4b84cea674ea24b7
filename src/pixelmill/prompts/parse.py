"""Parse a Midjourney-style prompt: subject text followed by ``--flag value`` parameters.

This is the core subset (``--ar``, ``--seed``, ``--v``, ``--niji``, ``--s``, ``--c``, ``--no``,
``--tile``); anything else is refused with a precise message rather than silently dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace

from pixelmill.engines.base import MAX_SEED
from pixelmill.exceptions import ValidationError
from pixelmill.prompts.aspect import SQUARE, AspectRatio

MAX_PROMPT_CHARS = 4000
_INVISIBLE = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f\u200b-\u200f\u2060\ufeff]")
_VERSION_RE = re.compile(r"^\d{1,2}(\.\d{1,2})?$")


@dataclass(frozen=True)
class ParsedPrompt:
    subject: str
    aspect: AspectRatio = SQUARE
    seed: int | None = None
    version: str | None = None
    niji: str | None = None
    stylize: int | None = None
    chaos: int | None = None
    negative: str | None = None
    tile: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def canonical(self) -> str:
        """The normalised prompt: subject, then parameters in one fixed order and spelling."""
        parts = [self.subject]
        if self.aspect != SQUARE:
            parts.append(f"--ar {self.aspect}")
        if self.niji is not None:
            parts.append(f"--niji {self.niji}")
        elif self.version is not None:
            parts.append(f"--v {self.version}")
        if self.stylize is not None:
            parts.append(f"--s {self.stylize}")
        if self.chaos is not None:
            parts.append(f"--c {self.chaos}")
        if self.negative:
            parts.append(f"--no {self.negative}")
        if self.tile:
            parts.append("--tile")
        if self.seed is not None:
            parts.append(f"--seed {self.seed}")
        return " ".join(parts)

    def with_seed(self, seed: int) -> ParsedPrompt:
        return replace(self, seed=seed)


def clean_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    return " ".join(text.split())


def _int_in(flag: str, value: str | None, lo: int, hi: int) -> int:
    if value is None or not value.isdigit() or not lo <= int(value) <= hi:
        raise ValidationError("prompt", f"--{flag} needs a whole number {lo}-{hi}, got {value!r}")
    return int(value)


def _version(flag: str, value: str | None) -> str:
    if value is None or not _VERSION_RE.match(value):
        raise ValidationError("prompt", f"--{flag} needs a version like 6 or 8.1, got {value!r}")
    return value


_ALIASES = {
    "ar": "ar", "aspect": "ar", "seed": "seed", "v": "v", "version": "v", "niji": "niji",
    "s": "s", "stylize": "s", "c": "c", "chaos": "c", "no": "no", "tile": "tile",
}
_NO_VALUE = {"tile"}
_OPTIONAL_VALUE = {"niji"}


def parse_prompt(text: str) -> ParsedPrompt:
    text = clean_text(text)
    if len(text) > MAX_PROMPT_CHARS:
        raise ValidationError("prompt", f"longer than {MAX_PROMPT_CHARS} characters")
    head, *flag_parts = re.split(r"(?:^|\s)--(?=\S)", text)
    subject = head.strip()
    if not subject:
        raise ValidationError("prompt", "the subject text before the --parameters is empty")
    values: dict[str, str | None] = {}
    for part in flag_parts:
        name, _, value = part.strip().partition(" ")
        canonical = _ALIASES.get(name.lower())
        if canonical is None:
            raise ValidationError("prompt", f"unknown parameter --{name}")
        if canonical in values:
            raise ValidationError("prompt", f"--{name} is given more than once")
        value = value.strip() or None
        if canonical in _NO_VALUE and value is not None:
            raise ValidationError("prompt", f"--{name} takes no value, got {value!r}")
        if canonical not in _NO_VALUE and canonical not in _OPTIONAL_VALUE and value is None:
            raise ValidationError("prompt", f"--{name} needs a value")
        values[canonical] = value
    parsed = ParsedPrompt(subject=subject)
    updates: dict[str, object] = {}
    if "ar" in values:
        updates["aspect"] = AspectRatio.parse(values["ar"] or "", field="prompt --ar")
    if "seed" in values:
        updates["seed"] = _int_in("seed", values["seed"], 0, MAX_SEED)
    if "v" in values:
        updates["version"] = _version("v", values["v"])
    if "niji" in values:
        updates["niji"] = _version("niji", values["niji"]) if values["niji"] else "6"
    if "s" in values:
        updates["stylize"] = _int_in("s", values["s"], 0, 1000)
    if "c" in values:
        updates["chaos"] = _int_in("c", values["c"], 0, 100)
    if "no" in values:
        updates["negative"] = values["no"]
    if "tile" in values:
        updates["tile"] = True
    return replace(parsed, **updates)  # type: ignore[arg-type]
