"""The Midjourney-style prompt language: parse it into a ``Prompt``, print a ``Prompt`` back in one
canonical spelling.

    [image URL ...] subject text [:: weight subject text :: weight ...] [--flag [value] ...]

- Leading ``http(s)://`` tokens are image prompts.
- ``::`` splits the subject into weighted parts (``space::2 ship::-0.5``); a part without a number
  weighs 1, and the weights must add up to more than 0.
- A flag starts with ``--`` at the start of a word (an em or en dash also counts when a known flag
  name follows: phones turn ``--`` into ``—``); its value runs to the next flag.
- Text inside double quotes is literal: no flags, no ``::`` in there.

Every problem is a ``ValidationError`` on field ``prompt`` with the rule in words; nothing is
dropped or defaulted silently. The canonical form lists image URLs, the subject, then the flags
in one fixed order and spelling, so equal requests print equally (``parse(p.canonical()) == p``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from pixelmill.exceptions import ValidationError
from pixelmill.prompts.aspect import SQUARE, AspectRatio
from pixelmill.prompts.hygiene import clean_text
from pixelmill.prompts.params import (
    DEFAULT_NIJI,
    MAX_IMAGE_PROMPTS,
    MAX_PROMPT_CHARS,
    MAX_URL_CHARS,
    NIJI_VERSIONS,
    QUALITIES,
    RANGES,
    SPEEDS,
    STYLES,
    VERSIONS,
    WEIGHT_RANGE,
    Range,
    fmt_number,
)

FIELD = "prompt"
_URL_RE = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
_WEIGHT_RE = re.compile(r"^\s*(-?\d{1,2}(?:\.\d{1,3})?)(?=\s|$)")
_INT_RE = re.compile(r"^\d{1,10}$")
_DECIMAL_RE = re.compile(r"^(?:\d{1,4}(?:\.\d{1,3})?|\.\d{1,3})$")


@dataclass(frozen=True)
class Segment:
    text: str
    #: None for a plain prompt (no ``::``); a multi-prompt gives every part its weight.
    weight: float | None = None


@dataclass(frozen=True)
class Prompt:
    segments: tuple[Segment, ...]
    image_urls: tuple[str, ...] = ()
    aspect: AspectRatio = SQUARE
    version: str | None = None
    niji: str | None = None
    raw: bool = False
    stylize: int | None = None
    chaos: int | None = None
    weird: int | None = None
    quality: float | None = None
    iw: float | None = None
    sref: tuple[str, ...] = ()
    sw: int | None = None
    cref: tuple[str, ...] = ()
    cw: int | None = None
    stop: int | None = None
    tile: bool = False
    draft: bool = False
    hd: bool = False
    repeat: int | None = None
    negative: str | None = None
    seed: int | None = None
    speed: str | None = None
    zoom: float | None = None

    # --- reading -----------------------------------------------------------------------------

    @property
    def subject(self) -> str:
        """The subject as written (weights included), without image URLs and flags."""
        if len(self.segments) == 1 and self.segments[0].weight is None:
            return self.segments[0].text
        return " ".join(f"{s.text}::{fmt_number(s.weight or 0)}" for s in self.segments)

    @property
    def positive_text(self) -> str:
        """What an engine without multi-prompt support should draw: the positively weighted parts."""
        return ", ".join(s.text for s in self.segments if s.weight is None or s.weight > 0)

    @property
    def negative_text(self) -> str:
        """``--no`` plus the negatively weighted parts: what an engine should avoid."""
        parts = [s.text for s in self.segments if s.weight is not None and s.weight < 0]
        return ", ".join(([self.negative] if self.negative else []) + parts)

    def canonical(self) -> str:
        """One spelling for one meaning: image URLs, subject, then flags in a fixed order."""
        parts = [*self.image_urls, self.subject]
        if self.aspect != SQUARE:
            parts.append(f"--ar {self.aspect}")
        if self.niji is not None:
            parts.append(f"--niji {self.niji}")
        if self.version is not None:
            parts.append(f"--v {self.version}")
        if self.raw:
            parts.append("--style raw")
        for flag, value in (("s", self.stylize), ("c", self.chaos), ("weird", self.weird)):
            if value is not None:
                parts.append(f"--{flag} {value}")
        if self.quality is not None:
            parts.append(f"--q {fmt_number(self.quality)}")
        if self.iw is not None:
            parts.append(f"--iw {fmt_number(self.iw)}")
        for refs, weight in (("sref", "sw"), ("cref", "cw")):
            if getattr(self, refs):
                parts.append(f"--{refs} " + " ".join(getattr(self, refs)))
            if getattr(self, weight) is not None:
                parts.append(f"--{weight} {getattr(self, weight)}")
        if self.stop is not None:
            parts.append(f"--stop {self.stop}")
        parts += [f"--{name}" for name in ("tile", "draft", "hd") if getattr(self, name)]
        if self.repeat is not None:
            parts.append(f"--repeat {self.repeat}")
        if self.negative:
            parts.append(f"--no {self.negative}")
        if self.seed is not None:
            parts.append(f"--seed {self.seed}")
        if self.speed is not None:
            parts.append(f"--{self.speed}")
        if self.zoom is not None:
            parts.append(f"--zoom {fmt_number(self.zoom)}")
        return " ".join(parts)

    def params(self) -> dict[str, Any]:
        """Every parameter as plain JSON values (what the task records)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "segments":
                value = [{"text": s.text, "weight": s.weight} for s in value]
            elif f.name == "aspect":
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    # --- rules across parameters ---------------------------------------------------------------

    def checked(self) -> Prompt:
        """Rules that involve more than one parameter; run after body fields were applied too."""
        if self.version is not None and self.niji is not None:
            raise ValidationError("version", f"--v {self.version} and --niji {self.niji} both pick the model; give one")
        if len(self.image_urls) > MAX_IMAGE_PROMPTS:
            raise ValidationError("image_urls", f"at most {MAX_IMAGE_PROMPTS} image prompts, got {len(self.image_urls)}")
        if self.iw is not None and not self.image_urls:
            raise ValidationError("iw", "--iw weighs an image prompt; give a leading image URL or image_urls")
        if self.sw is not None and not self.sref:
            raise ValidationError("sw", "--sw weighs a style reference; give --sref too")
        if self.cw is not None and not self.cref:
            raise ValidationError("cw", "--cw weighs a character reference; give --cref too")
        return self


# --- parsing ---------------------------------------------------------------------------------


def parse_prompt(text: str) -> Prompt:
    """Parse user text. Raises ``ValidationError`` (field ``prompt``) and nothing else."""
    text = clean_text(text)
    if len(text) > MAX_PROMPT_CHARS:
        raise ValidationError(FIELD, f"longer than {MAX_PROMPT_CHARS} characters ({len(text)})")
    head, flags = _split_flags(text)
    image_urls, body = _leading_urls(head)
    segments = _segments(body)
    values: dict[str, Any] = {}
    for written, value in flags:
        name = _ALIASES.get(written.lower())
        if name is None:
            raise ValidationError(FIELD, f"unknown parameter --{written}")
        attr, convert = _FLAGS[name]
        if attr == "speed" and "speed" in values and values["speed"] != name:
            raise ValidationError(FIELD, f"--{values['speed']} and --{written} both pick the speed; give one")
        if attr in values or (attr in ("version", "niji") and {"version", "niji"} & values.keys()):
            raise ValidationError(FIELD, _duplicate(written, attr, values))
        values[attr] = convert(written.lower(), value)
    try:
        return Prompt(segments=segments, image_urls=image_urls, **values).checked()
    except ValidationError as exc:  # a rule across flags: in a prompt, name the prompt
        raise ValidationError(FIELD, exc.description.split(": ", 1)[1]) from None


def _duplicate(written: str, attr: str, values: dict[str, Any]) -> str:
    if attr in values:
        return f"--{written} is given more than once"
    return "--v and --niji both pick the model; give one"


def _split_flags(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Cut ``text`` into the head and ``(flag name, value)`` pairs, outside double quotes only."""
    starts: list[tuple[int, int, str]] = []  # (flag start, value start, name)
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quoted = not quoted
        elif not quoted and (i == 0 or text[i - 1] == " "):
            dash = 2 if text.startswith("--", i) else 1 if ch in "\u2014\u2013" else 0
            if dash:
                end = text.find(" ", i)
                end = len(text) if end < 0 else end
                name = text[i + dash : end]
                if dash == 2 and not name:
                    raise ValidationError(FIELD, "a lone -- has no parameter name after it (like --ar 16:9)")
                # "--" anywhere is a flag (unknown ones are errors); a lone dash only before a
                # known name, so "1990 – 2000" stays text.
                if name and (dash == 2 or name.lower() in _ALIASES):
                    starts.append((i, end, name))
                    i = end
                    continue
        i += 1
    if quoted:
        raise ValidationError(FIELD, 'a double quote (") is not closed')
    if not starts:
        return text.strip(), []
    flags = []
    for n, (start, value_start, name) in enumerate(starts):
        value_end = starts[n + 1][0] if n + 1 < len(starts) else len(text)
        flags.append((name, text[value_start:value_end].strip()))
    return text[: starts[0][0]].strip(), flags


def _leading_urls(head: str) -> tuple[tuple[str, ...], str]:
    words = head.split(" ")
    urls: list[str] = []
    while words and _URL_RE.match(words[0]):
        urls.append(check_url(words.pop(0), FIELD))
    return tuple(urls), " ".join(words).strip()


def check_url(url: str, field: str) -> str:
    """Shape rules of an image URL (where it points is checked when it is fetched)."""
    if url.startswith("/files/"):  # pixelmill's own stored file, read from storage, not fetched
        return url
    if len(url) > MAX_URL_CHARS:
        raise ValidationError(field, f"image URL longer than {MAX_URL_CHARS} characters")
    if not _URL_RE.match(url):
        raise ValidationError(field, f"{url!r} is not an http(s) URL")
    if "@" in url.split("/", 3)[2]:
        raise ValidationError(field, f"{url}: URLs with user names or passwords are not accepted")
    return url


def check_free_text(text: str, field: str) -> str:
    """A free-text body field (``negative_prompt``): cleaned, and free of ``--flags``, which would
    change the meaning of the canonical prompt it becomes part of."""
    text = clean_text(text)
    try:
        head, flags = _split_flags(text)
    except ValidationError as exc:
        raise ValidationError(field, exc.description.split(": ", 1)[1]) from None
    if flags:
        raise ValidationError(field, f"must not contain --parameters, found --{flags[0][0]}")
    return head


def _segments(body: str) -> tuple[Segment, ...]:
    pieces = _split_outside_quotes(body, "::")
    if len(pieces) == 1:
        if not body:
            raise ValidationError(FIELD, "the subject is empty: describe what to draw before any --parameters")
        return (Segment(body),)
    segments: list[Segment] = []
    text = pieces[0]
    for piece in pieces[1:]:
        m = _WEIGHT_RE.match(piece)
        weight, rest = (float(m.group(1)), piece[m.end() :]) if m else (1.0, piece)
        if not text.strip():
            raise ValidationError(FIELD, "a part of the multi-prompt before '::' is empty")
        if not WEIGHT_RANGE.lo <= weight <= WEIGHT_RANGE.hi:
            raise ValidationError(FIELD, f"multi-prompt weight {fmt_number(weight)} is outside {WEIGHT_RANGE.describe()}")
        segments.append(Segment(text.strip(), weight + 0.0))
        text = rest
    if text.strip():
        segments.append(Segment(text.strip(), 1.0))
    if sum(s.weight or 0 for s in segments) <= 0:
        raise ValidationError(FIELD, "the multi-prompt weights must add up to more than 0")
    return tuple(segments)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    pieces, quoted, start, i = [], False, 0, 0
    while i < len(text):
        if text[i] == '"':
            quoted = not quoted
        elif not quoted and text.startswith(sep, i):
            pieces.append(text[start:i])
            start = i = i + len(sep)
            continue
        i += 1
    pieces.append(text[start:])
    return pieces


# --- flag values -----------------------------------------------------------------------------

Convert = Callable[[str, str], Any]


def _number(key: str) -> Convert:
    rule = RANGES[key]

    def convert(flag: str, value: str) -> float | int:
        return parse_number(value, rule, f"--{flag}")

    return convert


def parse_number(value: str, rule: Range, label: str, field: str = FIELD) -> float | int:
    pattern = _INT_RE if rule.integer else _DECIMAL_RE
    if not pattern.match(value) or not rule.lo <= float(value) <= rule.hi:
        raise ValidationError(field, f"{label} needs {rule.describe()}, got {value!r}")
    return int(value) if rule.integer else float(value) + 0.0


def _one_of(choices: tuple[str, ...]) -> Convert:
    def convert(flag: str, value: str) -> str:
        return check_choice(value, choices, f"--{flag}")

    return convert


def check_choice(value: str, choices: tuple[str, ...], label: str, field: str = FIELD) -> str:
    if value.lower() not in choices:
        raise ValidationError(field, f"{label} must be one of {', '.join(choices)}, got {value!r}")
    return value.lower()


def _niji(flag: str, value: str) -> str:
    return check_choice(value, NIJI_VERSIONS, f"--{flag}") if value else DEFAULT_NIJI


def _quality(flag: str, value: str) -> float:
    return check_quality(value, f"--{flag}")


def check_quality(value: str, label: str, field: str = FIELD) -> float:
    allowed = ", ".join(fmt_number(q) for q in QUALITIES)
    if not _DECIMAL_RE.match(value) or float(value) not in QUALITIES:
        raise ValidationError(field, f"{label} must be one of {allowed}, got {value!r}")
    return float(value)


def _switch(flag: str, value: str) -> bool:
    if value:
        raise ValidationError(FIELD, f"--{flag} takes no value, got {value!r}")
    return True


def _speed(flag: str, value: str) -> str:
    _switch(flag, value)
    return flag


def _style(flag: str, value: str) -> bool:
    check_choice(value, STYLES, f"--{flag}")
    return True


def _ratio(flag: str, value: str) -> AspectRatio:
    return AspectRatio.parse(value, field=FIELD, label=f"--{flag}")


def _text(flag: str, value: str) -> str:
    return value


def _urls(flag: str, value: str) -> tuple[str, ...]:
    urls = tuple(value.split())
    if len(urls) > MAX_IMAGE_PROMPTS:
        raise ValidationError(FIELD, f"--{flag} takes at most {MAX_IMAGE_PROMPTS} URLs, got {len(urls)}")
    for url in urls:
        if not _URL_RE.match(url):
            raise ValidationError(FIELD, f"--{flag} takes image URLs, got {url!r}")
        check_url(url, FIELD)
    return urls


def _needs_value(convert: Convert) -> Convert:
    def wrapped(flag: str, value: str) -> Any:
        if not value:
            raise ValidationError(FIELD, f"--{flag} needs a value")
        return convert(flag, value)

    return wrapped


def _single(convert: Convert) -> Convert:
    def wrapped(flag: str, value: str) -> Any:
        if " " in value:
            raise ValidationError(FIELD, f"--{flag} takes one value, got {value!r}")
        return convert(flag, value)

    return wrapped


# Canonical flag name → (Prompt attribute, value converter).
_FLAGS: dict[str, tuple[str, Convert]] = {
    "ar": ("aspect", _needs_value(_ratio)),
    "v": ("version", _needs_value(_single(_one_of(VERSIONS)))),
    "niji": ("niji", _single(_niji)),
    "style": ("raw", _needs_value(_single(_style))),
    "s": ("stylize", _needs_value(_single(_number("stylize")))),
    "c": ("chaos", _needs_value(_single(_number("chaos")))),
    "weird": ("weird", _needs_value(_single(_number("weird")))),
    "q": ("quality", _needs_value(_single(_quality))),
    "iw": ("iw", _needs_value(_single(_number("iw")))),
    "sref": ("sref", _needs_value(_urls)),
    "sw": ("sw", _needs_value(_single(_number("sw")))),
    "cref": ("cref", _needs_value(_urls)),
    "cw": ("cw", _needs_value(_single(_number("cw")))),
    "stop": ("stop", _needs_value(_single(_number("stop")))),
    "tile": ("tile", _switch),
    "draft": ("draft", _switch),
    "hd": ("hd", _switch),
    "repeat": ("repeat", _needs_value(_single(_number("repeat")))),
    "no": ("negative", _needs_value(_text)),
    "seed": ("seed", _needs_value(_single(_number("seed")))),
    **{speed: ("speed", _speed) for speed in SPEEDS},
    "zoom": ("zoom", _needs_value(_single(_number("zoom")))),
}
_ALIASES: dict[str, str] = {name: name for name in _FLAGS} | {
    "aspect": "ar", "version": "v", "stylize": "s", "chaos": "c", "w": "weird",
    "quality": "q", "r": "repeat",
}

