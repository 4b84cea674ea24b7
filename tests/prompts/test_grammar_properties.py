"""Properties of the parser over generated input: it never fails with anything but a validation
error, and the canonical form of a prompt parses back to the same prompt."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixelmill.exceptions import ValidationError
from pixelmill.prompts.grammar import _ALIASES, parse_prompt
from pixelmill.prompts.hygiene import clean_text

WORDS = st.sampled_from(
    ["cat", "lake", "a", "sunrise", '"quoted words"', '"', "::", "::2", "::-0.5", "::1.25", "--",
     "\u2014ar", "\u2013", "https://x.org/a.png", "http://[::1]/b.png", "16:9", "0", "42", "raw",
     "ｆｕｌｌ", "\u200b", "\u00a0", "\t", "\n", "ﬁ", "é", "e\u0301", "\x00", "\ud800", "🙂", ",", "."]
)
FLAG_NAMES = st.sampled_from(sorted(_ALIASES) + ["foo", "AR", "Seed"])
VALUES = st.sampled_from(
    ["", "16:9", "32:18", "5:1", "0:1", "7", "4294967295", "4294967296", "100", "1000", "1001",
     "0.5", ".25", "3", "2.5", "raw", "RAW", "6", "8.1", "https://s.example/1.png", "red, blue", "-1", "x y"]
)


@st.composite
def prompts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(WORDS, max_size=8))
    for name, value in draw(st.lists(st.tuples(FLAG_NAMES, VALUES), max_size=5)):
        parts.append(f"--{name} {value}".rstrip())
    return " ".join(parts)


URL = st.from_regex(r"https://[a-z]{1,8}\.example/[a-z0-9]{1,8}\.png", fullmatch=True)
# Plain text: after cleaning, no quotes, no "--", no "::", something left.
TEXT = st.text(st.characters(categories=["L", "N", "Zs", "P", "S", "M"]), min_size=1, max_size=30).filter(
    lambda t: clean_text(t) and not {'"', "--", "::"} & {c for c in ('"', "--", "::") if c in clean_text(t)}
)
DECIMAL3 = st.decimals(0, 3, places=2).map(lambda d: str(d))
#: Flag name → valid values. Together with optional image URLs these build only valid prompts.
VALID_FLAGS = {
    "ar": st.tuples(st.integers(1, 40), st.integers(1, 40)).filter(lambda t: max(t) <= 4 * min(t)).map(lambda t: f"{t[0]}:{t[1]}"),
    "s": st.integers(0, 1000).map(str),
    "c": st.integers(0, 100).map(str),
    "weird": st.integers(0, 3000).map(str),
    "q": st.sampled_from([".25", "0.5", "1", "2", "4"]),
    "seed": st.integers(0, 2**32 - 1).map(str),
    "no": TEXT,
    "tile": st.just(""),
    "hd": st.just(""),
    "draft": st.just(""),
    "style": st.just("raw"),
    "repeat": st.integers(2, 40).map(str),
    "stop": st.integers(10, 100).map(str),
    "niji": st.sampled_from(["", "5", "6", "7"]),
    "sref": st.lists(URL, min_size=1, max_size=3).map(" ".join),
}


@st.composite
def valid_prompts(draw: st.DrawFn) -> str:
    images = draw(st.lists(URL, max_size=2))
    subject = draw(TEXT.filter(lambda t: not clean_text(t).startswith(("-", "\u2014", "\u2013", "http"))))
    flags = draw(st.lists(st.sampled_from(sorted(VALID_FLAGS)), unique=True, max_size=6))
    parts = [*images, subject] + [f"--{f} {draw(VALID_FLAGS[f])}".rstrip() for f in flags]
    if images and draw(st.booleans()):
        parts.append(f"--iw {draw(DECIMAL3)}")
    return " ".join(parts)


def _round_trips(text: str) -> None:
    try:
        prompt = parse_prompt(text)
    except ValidationError as exc:
        assert exc.description.startswith("prompt: ")
        return
    canonical = prompt.canonical()
    assert parse_prompt(canonical) == prompt
    assert parse_prompt(canonical).canonical() == canonical


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(prompts())
def test_prompt_shaped_input_round_trips_or_is_refused(text: str) -> None:
    _round_trips(text)


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(valid_prompts())
def test_valid_prompts_parse_and_round_trip(text: str) -> None:
    prompt = parse_prompt(text)  # no refusal allowed
    assert parse_prompt(prompt.canonical()) == prompt


@settings(max_examples=800)
@given(st.text(max_size=300))
def test_any_text_round_trips_or_is_refused(text: str) -> None:
    _round_trips(text)
