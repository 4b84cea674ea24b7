"""pixelmill: a Midjourney-style task API in front of image models, with production guardrails."""

__version__ = "0.1.0"
