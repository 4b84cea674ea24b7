"""Request bodies of the submit endpoints: one validated model per operation, shared by the HTTP
routes, the SDK and the CLI (the OpenAPI schema shows their constraints)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pixelmill.engines.base import MAX_SEED
from pixelmill.prompts.parse import MAX_PROMPT_CHARS


class _Body(BaseModel):
    # Unknown fields are an error, not silently ignored: a typo must not change the result.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ImagineRequest(_Body):
    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="Subject text, optionally followed by --parameters (--ar 16:9 --seed 42 ...).",
        examples=["a serene mountain lake at sunrise --ar 16:9"],
    )
    aspect_ratio: str | None = Field(None, description="W:H; overrides --ar.", examples=["16:9"])
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Overrides --seed.")


class UpscaleRequest(_Body):
    task_id: str | None = Field(None, description="The finished imagine task to pick from.")
    index: int | None = Field(None, ge=1, le=4, description="Which image of the grid, 1-4.")
    custom_id: str | None = Field(
        None, description="A button id from the parent's buttons, instead of task_id + index."
    )

    @field_validator("task_id", "custom_id")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v:
            raise ValueError("must not be empty")
        return v
