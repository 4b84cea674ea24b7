"""Prompt hygiene: make user text safe and comparable before anything reads it.

One function, ``clean_text``, used for the prompt and every free-text body field:

- Unicode NFKC: full-width letters, ligatures and compatibility forms become their plain
  equivalents, so ``ｃａｔ`` and ``cat`` are the same prompt (and the same cache key later).
- Control characters (category Cc), format characters (Cf: zero-width spaces and joiners, BOM,
  soft hyphen, bidi overrides) and unpaired surrogates (Cs) are removed; they are invisible, change
  nothing a reader sees, and are the usual tools for smuggling words past filters.
- Whitespace: runs collapse to one space and the ends are trimmed, except inside double quotes,
  where text is kept literally (quoted words are literal values: ``"OPEN  24h"``). Curly double
  quotes become straight ones so both spellings mean the same.
"""

from __future__ import annotations

import unicodedata

_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"'})


def clean_text(text: str) -> str:
    # Lone surrogates cannot be NFKC-normalised or stored as UTF-8: drop them first.
    text = "".join(ch for ch in text if not "\ud800" <= ch <= "\udfff")
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    out: list[str] = []
    quoted = False
    pending_space = False
    for ch in text:
        if ch.isspace():
            if quoted:
                out.append(" ")
            else:
                pending_space = True
            continue
        if unicodedata.category(ch) in _DROPPED_CATEGORIES:
            continue
        if pending_space and out:
            out.append(" ")
        pending_space = False
        if ch == '"':
            quoted = not quoted
        out.append(ch)
    return "".join(out).rstrip(" ") if not quoted else "".join(out)
