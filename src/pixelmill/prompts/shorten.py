"""Shorten: which words of a prompt carry weight, and shorter prompts that keep those.

Image models read a prompt as tokens whose influence falls with position and which mostly come
from concrete words; function words and stock boosters ("highly detailed", "8k", "masterpiece")
move the picture little. Each word gets a weight from that: 0 for function words, low for stock
boosters, and for the rest a weight that falls with its position and with the comma-separated
phrase it sits in (the first phrase is the subject). The candidates keep the heaviest words in
their original order, from "drop only the dead weight" down to "the subject alone", and keep the
prompt's parameters (``--ar`` ...) unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pixelmill.prompts.grammar import parse_prompt

_FUNCTION = frozenset(
    ["a", "an", "the", "of", "in", "on", "at", "to", "for", "with", "and", "or", "but", "by", "from", "into", "onto", "over", "under", "as", "is", "are", "be", "that", "this", "these", "those", "its", "it", "their", "there", "very", "some", "any", "which", "while", "so", "such", "just", "really"]
)
_BOOSTERS = frozenset(
    ["highly", "detailed", "ultra", "hyper", "hyperrealistic", "intricate", "masterpiece", "best", "quality", "8k", "4k", "hd", "uhd", "trending", "artstation", "award", "winning", "stunning", "beautiful", "amazing", "gorgeous", "epic", "octane", "render", "unreal", "engine", "photorealistic", "realistic", "sharp", "focus", "professional", "cinematic"]
)
_WORD_RE = re.compile(r"[\w'-]+", re.UNICODE)
#: How many candidates a shorten task returns (Midjourney shows five).
CANDIDATES = 5


@dataclass(frozen=True)
class Shortened:
    candidates: tuple[str, ...]
    #: Words that carried little weight, in prompt order.
    low_weight: tuple[str, ...]
    weights: dict[str, float]


#: Below this a word counts as carrying little weight.
LOW = 0.2


def _weights(phrases: list[list[str]]) -> list[tuple[int, str, float]]:
    """(phrase number, word, weight) for every word, in prompt order."""
    out: list[tuple[int, str, float]] = []
    position = 0
    for p, words in enumerate(phrases):
        for word in words:
            lower = word.lower()
            if lower in _FUNCTION:
                weight = 0.0
            elif lower in _BOOSTERS:
                weight = 0.15
            else:
                weight = round((1.0 if p == 0 else 0.75 / p**0.5) / (1 + 0.04 * position), 3)
            out.append((p, word, weight))
            position += 1
    return out


def _spell(words: list[tuple[int, str, float]]) -> str:
    phrases: dict[int, list[str]] = {}
    for p, word, _ in words:
        phrases.setdefault(p, []).append(word)
    return ", ".join(" ".join(ws) for ws in phrases.values())


def shorten(prompt: str) -> Shortened:
    parsed = parse_prompt(prompt)
    flags = parsed.canonical()[len(" ".join([*parsed.image_urls, parsed.subject])):].strip()
    phrases = [p for p in (_WORD_RE.findall(part) for part in parsed.positive_text.split(",")) if p]
    weighted = _weights(phrases)
    content = [w for w in weighted if w[2] >= LOW] or weighted[:1]
    ranked = sorted((w[2] for w in content), reverse=True)
    candidates: list[str] = []
    # The content words, then ~3/4, 1/2 and 1/3 of them (the heaviest), then the subject phrase.
    for share in (1.0, 0.75, 0.5, 0.34):
        keep = max(1, round(len(content) * share))
        cut = ranked[keep - 1]
        candidates.append(_spell([w for w in content if w[2] >= cut][:keep]))
    candidates.append(_spell([w for w in content if w[0] == content[0][0]]))
    candidates = sorted(dict.fromkeys(candidates), key=len, reverse=True)
    suffix = f" {flags}" if flags else ""
    return Shortened(
        candidates=tuple(f"{c}{suffix}" for c in candidates[:CANDIDATES]),
        low_weight=tuple(dict.fromkeys(w for _, w, weight in weighted if weight < LOW)),
        weights={w: weight for _, w, weight in weighted},
    )
