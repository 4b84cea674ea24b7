"""The wire contracts pixelmill speaks besides its own, as mappings onto the one pipeline.

Each contract is one mapping module here (its request bodies, how they become pixelmill
requests, how tasks and errors look on its wire) and one router in ``pixelmill.api`` (its paths
and its auth). Nothing here decides anything: validation, moderation, pricing, idempotency,
caching, lanes and templates stay in ``pixelmill.tasks`` and are reached through the same calls
the seed-004 routes make.

- ``mjproxy``: midjourney-proxy's ``/mj/...`` API (new-api, the ChatGPT-Midjourney web apps).
- ``openai_images``: the OpenAI Images API (``/v1/images/...``, the official ``openai`` SDK).
"""
