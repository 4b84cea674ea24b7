"""Request cache keys: two requests with equal keys would produce the same pixels.

The key hashes the canonical request: action, ``final_prompt`` (normalised prompt with its seed),
output size, engine and model version, the stored keys of input images and the template version
(name, version, content hash). ``prompt_key`` is the same without the seed: it finds any earlier
result of the same request, which is only a fair answer when the caller said so (``cache: true``):
a request without a seed asks for a new random picture, and answering it from cache would return
the same images every time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from pixelmill.prompts.grammar import Prompt


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def request_keys(
    action: str, prompt: Prompt, width: int, height: int, engine: str, model: str, inputs: dict[str, Any], profile: str = "original",
    template: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """(cache_key, prompt_key) of one task-to-be; ``prompt`` carries the task's own seed."""
    prompt = replace(prompt, speed=None)  # a speed tier changes the price and the queue, not the pixels
    payload = {
        "action": action,
        "size": [width, height],
        "engine": engine,
        "model": model,
        "inputs": {name: [i["key"] for i in images] for name, images in inputs.items()},
        # Name, version and content hash: a new version with the same rendered prompt is a new answer.
        "template": template,
        # The same pixels in another format are other files: the profile is part of the answer.
        "profile": profile,
    }
    return (
        _digest({**payload, "prompt": prompt.canonical()}),
        _digest({**payload, "prompt": replace(prompt, seed=None).canonical()}),
    )
