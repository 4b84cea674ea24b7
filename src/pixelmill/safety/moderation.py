"""Prompt moderation: banned words and phrases, by category, global and per tenant.

Matching works on a normal form of the text, so the usual tricks do not get through:

- case, Unicode compatibility forms (NFKC), zero-width and other invisible characters;
- confusable letters from other scripts (Cyrillic ``о``, Greek ``ο`` ... → ``o``);
- leetspeak digits and signs (``n00d3`` → ``nood e``-style readings: ``0→o 1→i|l 3→e 4→a 5→s
  7→t @→a $→s``);
- letters spread out with spaces, punctuation or any other sign (``n u d e``, ``n.u.d.e``,
  ``n🍑u🍑d🍑e``), and a word broken by a dot or hyphen inside it (``nu.de``, ``nu-de``);
- a letter starred out (``n*de``, ``p**n``): a star stands for one letter of a listed word;
- letters repeated for effect (``nuuude``), and plural ``s`` / ``es``. Other inflections are
  listed as terms of their own (``masturbating``, ``masturbation``), so no stemmer guesses.

A term matches whole words only: a banned ``ass`` does not touch ``class``, ``assassin`` or
``Massachusetts``. A phrase matches the same words in a row.

Lists: ``PIXELMILL_MODERATION_FILE`` (JSON ``{"global": {"<category>": ["term", ...]},
"tenants": {"<tenant>": {"<category>": [...]}}}``) over a small built-in list.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from pixelmill.exceptions import BannedPrompt
from pixelmill.validation import explain

if TYPE_CHECKING:
    from pixelmill.safety.semantic import SemanticCheck

#: Body fields that carry prompt text.
_TEXT_FIELDS = frozenset({"prompt", "negative_prompt", "prompt_template"})

#: Letters of other scripts that look like Latin ones.
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "к": "k", "м": "m", "т": "t", "в": "b", "н": "h", "ё": "e",
    "α": "a", "ε": "e", "ο": "o", "ρ": "p", "ν": "v", "κ": "k", "ι": "i", "τ": "t", "υ": "u", "χ": "x", "η": "n",
    "ɑ": "a", "ı": "i", "ȷ": "j", "ß": "ss", "æ": "ae", "ø": "o", "đ": "d", "ł": "l",
})
#: Leetspeak: each sign with the letters it may stand for.
_LEET: dict[str, tuple[str, ...]] = {
    "0": ("o",), "1": ("i", "l"), "3": ("e",), "4": ("a",), "5": ("s",), "7": ("t",), "8": ("b",), "9": ("g",),
    "@": ("a",), "$": ("s",), "!": ("i",), "|": ("l",), "+": ("t",),
}
_INVISIBLE = re.compile(r"[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
#: A word: letters, digits and the signs leetspeak uses, and stars standing for letters.
_TOKEN = re.compile(r"[a-z0-9@$!|+*]+")
#: Single characters separated by spaces or any other signs: "n u d e", "n.u.d.e", "n🍑u🍑d🍑e".
_SPREAD = re.compile(r"(?<![a-z0-9@$])(?:[a-z0-9@$](?:[^a-z0-9@$!|+]+|(?![a-z0-9@$]))){3,}")
#: A dot, hyphen or underscore inside a word: "nu.de" also reads "nude". (Not an apostrophe: "Al
#: Gore's speech" is Al Gore's.)
_BREAK = re.compile(r"(?<=[a-z0-9@$])[._\-·]+(?=[a-z0-9@$])")
_BROKEN = re.compile(r"[a-z0-9@$]+(?:[._\-·]+[a-z0-9@$]+)+")
_RUNS = re.compile(r"(.)\1{2,}")

#: Built-in terms by category. A term is a word or a phrase; plurals come free, other inflections
#: are listed. A word that is innocent in another sense is left out (``tits`` the birds, ``xxx``
#: the Roman thirty, ``r34`` the Nissan, ``stripper`` the paint remover, ``erection`` of a tower,
#: ``loli`` a name, ``cock``, ``dick``, ``pussy``), listed only in unambiguous phrases
#: (``sexual intercourse``, ``stripper pole``), or kept with its innocent phrases allowed
#: (``naked eye``, ``nude nail polish``, ``the sex of the puppy``). ``gory`` and ``beheaded`` are left
#: to the semantic check (a gory battle painting, a beheaded statue).
BUILTIN: dict[str, list[str]] = {
    "sexual": [
        "nude", "nudity", "nudes", "nudie", "nudies", "naked", "nakedness", "nekkid", "undressed", "unclothed", "porn",
        "porno", "pornography", "pornographic", "pron", "pornhub", "nsfw", "rule 34", "hentai", "explicit sex", "sex", "seggs",
        "sex scene", "sexual intercourse", "having intercourse", "erotic", "erotica", "lewd", "topless", "bare breasts",
        "bare breasted", "exposed breasts", "exposed genitals", "full frontal", "genitals", "genitalia", "penis", "vagina",
        "vulva", "clitoris", "labia", "testicles", "boob", "boobies", "titties", "nipple", "masturbate", "masturbates",
        "masturbating", "masturbation", "orgasm", "orgy", "orgies", "blowjob", "blow job", "handjob", "hand job", "fellatio",
        "cunnilingus", "ejaculate", "ejaculating", "ejaculation", "semen", "cum shot", "cumshot", "striptease", "stripper pole",
        "male stripper", "female stripper", "strip club", "upskirt", "onlyfans", "camgirl", "bdsm",
    ],
    "violence": [
        "gore", "decapitated", "decapitate", "decapitation", "dismembered", "dismember", "dismemberment", "beheading",
        "mutilated", "mutilate", "mutilation", "disembowel", "disemboweled", "disembowelled", "disembowelment",
        "eviscerate", "eviscerated", "evisceration", "severed head", "severed heads", "severed limbs", "snuff film",
    ],
    "minors-sexual": [
        "child porn", "underage nude", "kiddie porn", "child nude", "nude child", "naked child", "naked kid", "nude teen",
        "naked teen", "nude minor", "naked minor", "underage sex", "child sex", "preteen nude", "lolicon", "shotacon",
        "jailbait", "pedophile", "paedophile", "csam",
    ],
}
#: Innocent words and names that contain a banned word as a word of their own: their words are
#: skipped before matching (a brand, a surname, a bird, a colour, a figure of speech).
BUILTIN_ALLOW = [
    "gore-tex", "gore tex", "al gore", "lesley gore", "edward gorey",
    "nude lipstick", "nude lip", "nude lips", "nude heels", "nude pumps", "nude shoes", "nude sandals", "nude stockings",
    "nude colour", "nude color", "nude coloured", "nude colored", "nude tone", "nude tones", "nude nail", "nude nails",
    "nude palette", "nude eyeshadow", "nude makeup", "nude beige", "nude pink",
    "naked eye", "naked mole rat", "naked mole rats", "naked mole-rat", "naked flame", "naked flames", "naked truth", "naked cake",
    "naked lunch", "naked tree", "naked trees", "naked branch", "naked branches", "naked wire", "naked wires", "naked gun",
    "naked juice", "naked chef", "naked city", "naked singularity",
    "sex pistols", "sex of", "sex determination", "sex reveal", "sex ed", "sex education", "sex chromosome", "sex chromosomes",
    "sex ratio", "sex and the city",
    "topless jeep", "topless car", "topless bus", "topless convertible", "topless towers",
    "orgy of colour", "orgy of colours", "orgy of color", "orgy of colors",
    "boob tube", "semen contra", "unclothed mannequin", "unclothed mannequins",
    "blue footed booby", "blue footed boobies", "blue-footed booby", "blue-footed boobies", "booby trap", "booby prize",
]


Terms = dict[str, list[Annotated[str, Field(min_length=1)]]]


class ModerationFile(BaseModel):
    """The shape of ``PIXELMILL_MODERATION_FILE``: every list a list of texts, checked at start (a
    bare string where a list belongs would otherwise ban its single letters)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    global_: Terms = Field(default_factory=dict, alias="global")
    tenants: dict[str, Terms] = Field(default_factory=dict)
    allow: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    concepts: Terms = Field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    term: str
    category: str
    found: str
    #: Set by the semantic check: how close the prompt came to the concept ``term``.
    similarity: float | None = None


def _base(text: str) -> str:
    """The text in the normal form terms are matched in: lower case, plain Latin letters, no
    invisible characters or accents."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text).casefold().translate(_CONFUSABLES)
    # Accents and combining marks off: "nüde", "n̶u̶d̶e̶" read "nude".
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _join_spread(match: re.Match[str]) -> str:
    text = match.group(0)
    # Letters spread with signs, words with spaces ("c🍑h🍑i🍑l🍑d p🍑o🍑r🍑n"): join each word.
    if re.search(r"\s", text) and re.search(r"[a-z0-9@$][^\sa-z0-9@$]+[a-z0-9@$]", text):
        return " " + " ".join(w for w in (re.sub(r"[^a-z0-9@$]+", "", g) for g in text.split()) if w) + " "
    joined = re.sub(r"[^a-z0-9@$]+", "", text)
    # "a p o r n": the article may have been swept in; read it both ways.
    return f" {joined} {joined[1:]} " if joined[0] in "ai" else f" {joined} "


def _texts(text: str) -> list[list[str]]:
    """The token lists one text is read as, most specific first: spread-out letters joined; the
    words as written (a starred ``s*x`` must not be swept into a spread); and the words that a dot,
    hyphen or underscore broke (``nu.de``), joined again, on their own."""
    base = _base(text)
    plain = _TOKEN.findall(base)
    spread = _TOKEN.findall(_SPREAD.sub(_join_spread, base))
    broken = [_BREAK.sub("", m.group(0)) for m in _BROKEN.finditer(base)]
    return [spread] + ([plain] if plain != spread else []) + ([broken] if broken else [])


def _readings(token: str) -> set[str]:
    """The words a token may stand for: itself, and leetspeak signs expanded (a few readings).
    A token without a letter is a number, not leetspeak: house number 8008 is no word (the price:
    calculator spellings such as 8008 are not caught)."""
    if not any(ch.isalpha() for ch in token):
        return {token}
    choices = [_LEET.get(ch, (ch,)) for ch in token]
    if sum(len(c) > 1 for c in choices) > 4:  # a long number is not leetspeak
        choices = [(c[0],) for c in choices]
    readings = {"".join(p) for p in product(*choices)}
    return {r for r in readings if r.isalpha()} | {token}


def _starred(token: str, vocabulary: Iterable[str]) -> set[str]:
    """The listed words a token with stars could be: each star one letter (``n*de``, ``p**n``).
    At least two letters, and half the word, must be shown: ``***`` or ``*a*`` stand for nothing."""
    shown = len(token) - token.count("*")
    if shown < 2 or shown * 2 < len(token):
        return set()
    pattern = re.compile("".join("." if c == "*" else re.escape(c) for c in token))
    return {w for w in vocabulary if len(w) in (len(token), len(token) - 1, len(token) - 2) and any(
        pattern.fullmatch(form) for form in ({w} | {w + "s", w + "es"}))}


def _forms(word: str) -> set[str]:
    """A word as written, with letter runs squeezed, and without a plural ending."""
    written = {word, _RUNS.sub(r"\1", word)}
    singular = {form[: -len(suffix)] for form in written for suffix in ("es", "s") if form.endswith(suffix) and len(form) - len(suffix) >= 3}
    return written | singular


def _squeeze(word: str) -> str:
    return re.sub(r"(.)\1+", r"\1", word)


class TermList:
    """Terms by category, matched on whole words after normalising both sides the same way."""

    def __init__(self, categories: Mapping[str, Iterable[str]], allow: Iterable[str] = ()) -> None:
        #: Allowed phrases by their first word.
        self._allow: dict[str, list[tuple[str, ...]]] = {}
        for phrase in allow:
            words = tuple(_TOKEN.findall(_base(phrase)))
            if words:
                self._allow.setdefault(words[0], []).append(words)
        self._single: dict[str, tuple[str, str]] = {}
        self._squeezed: dict[str, tuple[str, str]] = {}
        #: (words, the words with repeated letters squeezed, term, category)
        self._phrases: list[tuple[tuple[str, ...], tuple[str, ...], str, str]] = []
        for category, terms in categories.items():
            for term in terms:
                words = tuple(_TOKEN.findall(_base(term)))
                if not words:
                    raise ValueError(f"moderation term {term!r} has no letters")
                if len(words) == 1:
                    # The term and its plural ("boob", "boobs"); the text side strips plurals.
                    for key in (words[0], words[0] + "s"):
                        self._single.setdefault(key, (term, category))
                    self._squeezed.setdefault(_squeeze(words[0]), (term, category))
                else:
                    self._phrases.append((words, tuple(_squeeze(w) for w in words), term, category))
        self._by_first: dict[str, list[int]] = {}
        self._by_first_squeezed: dict[str, list[int]] = {}
        for index, (words, squeezed_words, _, _) in enumerate(self._phrases):
            self._by_first.setdefault(words[0], []).append(index)
            self._by_first_squeezed.setdefault(squeezed_words[0], []).append(index)
        #: Every word of every term: what a starred-out token may stand for.
        self._vocabulary = frozenset(self._single) | frozenset(w for words, _, _, _ in self._phrases for w in words)

    def _allowed(self, tokens: list[str]) -> set[int]:
        skip: set[int] = set()
        for i, token in enumerate(tokens):
            for words in self._allow.get(token, ()):
                if tuple(tokens[i : i + len(words)]) == words:
                    skip.update(range(i, i + len(words)))
        return skip

    def _read(self, token: str) -> set[str]:
        token = token.strip("*")  # *nude*: stars around a word are emphasis
        if "*" in token:
            return _starred(token, self._vocabulary)
        return _readings(token)

    def find(self, text: str) -> Hit | None:
        for tokens in _texts(text):
            hit = self._find(tokens)
            if hit is not None:
                return hit
        return None

    def _find(self, tokens: list[str]) -> Hit | None:
        skip = self._allowed(tokens)
        readings = [set() if i in skip else self._read(t) for i, t in enumerate(tokens)]
        # Each token's words, as written or in the plural, and squeezed where letters were repeated
        # for effect ("fulllll"), worked out once for every phrase to look at.
        forms = [{f for r in rs for f in _forms(r)} for rs in readings]
        squeezed = [{_squeeze(f) for r in rs if _RUNS.search(r) for f in _forms(r)} for rs in readings]
        # Phrases first: "child porn" is its own, more specific category. Only the phrases whose
        # first word a token can be are tried there.
        for i in range(len(tokens)):
            starting = {p for w in forms[i] for p in self._by_first.get(w, ())}
            starting |= {p for w in squeezed[i] for p in self._by_first_squeezed.get(w, ())}
            for index in sorted(starting):  # at each position, the first listed phrase wins
                words, squeezed_words, term, category = self._phrases[index]
                n = len(words)
                if i + n <= len(tokens) and all(words[k] in forms[i + k] or squeezed_words[k] in squeezed[i + k] for k in range(n)):
                    return Hit(term, category, " ".join(tokens[i : i + n]))
        for token, options in zip(tokens, readings, strict=True):
            for reading in sorted(options):  # sorted: the same text always names the same term
                for form in _forms(reading):
                    if form in self._single:
                        term, category = self._single[form]
                        return Hit(term, category, token)
                    # "nuuude": squeezed runs match the squeezed term, only when the token had a run.
                    if form != reading and _RUNS.search(reading) and _squeeze(form) in self._squeezed:
                        term, category = self._squeezed[_squeeze(form)]
                        return Hit(term, category, token)
        return None


class Moderator:
    def __init__(
        self,
        global_terms: Mapping[str, Iterable[str]],
        tenant_terms: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
        allow: Iterable[str] = BUILTIN_ALLOW,
        semantic: SemanticCheck | None = None,
    ) -> None:
        #: The meaning check, after the words (safety/semantic.py); None when switched off.
        self.semantic = semantic
        allow = list(allow)
        self._global = TermList(global_terms, allow)
        self._tenants = {t: TermList(c, allow) for t, c in (tenant_terms or {}).items()}

    @classmethod
    def from_file(cls, path: Path | None, semantic_threshold: float | None = None) -> Moderator:
        """The lists of ``path`` over the built-in ones; with ``semantic_threshold``, the semantic
        check too (built-in concepts plus the file's ``concepts``)."""
        spec = ModerationFile()
        if path is not None:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"moderation file {path}: {exc}") from exc
            try:
                spec = ModerationFile.model_validate(data)
            except PydanticValidationError as exc:
                raise ValueError(
                    f"moderation file {path}: {explain(exc.errors()[0], unknown='unknown key')}; it needs {{\"global\": {{category: [terms]}}, "
                    f"\"tenants\": {{tenant: {{category: [terms]}}}}, \"allow\": [phrases], \"concepts\": {{category: [descriptions]}}}}"
                ) from None
        merged = {k: list(v) for k, v in BUILTIN.items()}
        for category, terms in spec.global_.items():
            merged.setdefault(category, []).extend(terms)
        semantic = None
        if semantic_threshold is not None:
            from pixelmill.safety.semantic import BUILTIN_CONCEPTS, SemanticCheck

            concepts = {k: list(v) for k, v in BUILTIN_CONCEPTS.items()}
            for category, texts in spec.concepts.items():
                concepts.setdefault(category, []).extend(texts)
            semantic = SemanticCheck(concepts, semantic_threshold)
        return cls(merged, spec.tenants, [*BUILTIN_ALLOW, *spec.allow], semantic)

    def find(self, tenant_id: str, text: str) -> Hit | None:
        hit = self._global.find(text)
        if hit is None and tenant_id in self._tenants:
            hit = self._tenants[tenant_id].find(text)
        return hit

    def check_request(self, tenant_id: str, req: BaseModel, where: str = "") -> None:
        """Every prompt-like text of a request body (prompts, negative prompts, templates and
        their variables, the requests of a batch)."""
        for name in type(req).model_fields:
            value = getattr(req, name)
            field = f"{where}{name}"
            if isinstance(value, str) and name in _TEXT_FIELDS:
                self.check(tenant_id, field, value)
            elif isinstance(value, BaseModel):
                self.check_request(tenant_id, value, f"{field}.")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, BaseModel):
                        self.check_request(tenant_id, item, f"{field}[{i}].")
                    elif isinstance(item, dict):  # template variables
                        for key, text in item.items():
                            if isinstance(text, str):
                                self.check(tenant_id, f"{field}[{i}].{key}", text)

    def check(self, tenant_id: str, field: str, text: str) -> None:
        """Raise ``BannedPrompt`` (code 24) naming the term (or concept) and its category."""
        hit = self.find(tenant_id, text)
        if hit is not None:
            raise BannedPrompt(
                f"{field}: contains a banned term ({hit.category})",
                properties={"field": field, "check": "words", "term": hit.term, "category": hit.category, "found": hit.found},
            )
        if self.semantic is not None and text.strip():
            hit = self.semantic.find(text)
            if hit is not None:
                raise BannedPrompt(
                    f"{field}: too close to a banned concept ({hit.category})",
                    properties={"field": field, "check": "semantic", "term": hit.term, "category": hit.category,
                                "found": hit.found, "similarity": hit.similarity},
                )
