"""Request bodies of the submit endpoints: one validated model per operation, shared by the HTTP
routes, the SDK and the CLI (the OpenAPI schema shows their constraints).

Numeric limits and allowed values come from ``prompts.params``, the same table the prompt parser
reads, so ``"stylize": 2000`` and ``--s 2000`` are refused by the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError

from pixelmill import validation
from pixelmill.exceptions import ValidationError
from pixelmill.prompts.aspect import AspectRatio
from pixelmill.prompts.grammar import Prompt, check_free_text, check_url, parse_prompt
from pixelmill.prompts.params import (
    DEFAULT_NIJI,
    MAX_IMAGE_PROMPTS,
    MAX_PROMPT_CHARS,
    MAX_URL_CHARS,
    NIJI_VERSIONS,
    QUALITIES,
    RANGES,
    SpeedName,
    VersionName,
    fmt_number,
)

#: Largest side of an explicit ``size``; also what ``--hd`` may reach.
MAX_SIDE = 4096
_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×*]\s*(\d{1,5})\s*$")


def _no_surrogates(value: Any) -> Any:
    """JSON allows escaped lone surrogates (``"\\ud800"``); they are not text and cannot be
    stored. Refuse them in any field instead of failing later."""
    if isinstance(value, str):
        if any("\ud800" <= ch <= "\udfff" for ch in value):
            raise ValueError("contains an unpaired UTF-16 surrogate; send valid Unicode text")
    elif isinstance(value, list):
        for item in value:
            _no_surrogates(item)
    return value


class RequestBody(BaseModel):
    # Unknown fields are an error, not silently ignored: a typo must not change the result.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        return _no_surrogates(value)


B = TypeVar("B", bound=BaseModel)


def describe_errors(errors: Sequence[Any]) -> tuple[str, str]:
    """The field and rule of the first Pydantic error, in the words every code-4 answer uses.
    Shared by the HTTP error handler and the SDK, so both say exactly the same."""
    first = errors[0]
    loc = [p for p in first.get("loc", ()) if p != "body"]
    field, msg = validation.path(loc) or "body", validation.rule(first)
    if first.get("type") == "json_invalid":
        field, msg = "body", f"not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
    elif first.get("type") in ("model_attributes_type", "dict_type") and not loc:
        msg = "must be a JSON object"
    return field, msg


def validated(model: type[B], fields: dict[str, Any]) -> B:
    """Build a request model, raising the same ``ValidationError`` the HTTP API answers with."""
    try:
        return model.model_validate(fields)
    except PydanticValidationError as exc:
        raise ValidationError(*describe_errors(exc.errors())) from None


def _ranged(key: str, description: str) -> Any:
    rule = RANGES[key]
    return Field(None, ge=rule.lo, le=rule.hi, description=f"{description} ({rule.describe()}).")


def _number_as_text(value: Any) -> Any:
    # "version": 7 and "version": "7" mean the same; bools are not versions.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt_number(value)
    return value


Url = Annotated[str, Field(min_length=1, max_length=MAX_URL_CHARS)]
UrlList = Annotated[list[Url], Field(max_length=MAX_IMAGE_PROMPTS)]
Version = Annotated[VersionName, BeforeValidator(_number_as_text)]
#: A template variable's value (text or a number); prompts.slots keeps parameters out of it.
VariableValue = Annotated[str | int | float, Field(union_mode="left_to_right")]
#: The fields of an imagine that pick and fill a template instead of giving a prompt.
TEMPLATE_FIELDS = ("template", "release", "template_version", "variables", "subject_id")
WebhookEvent = Literal["start", "progress", "completed", "reviewed", "files"]
#: A list of events names each at most once (duplicates are dropped), so it is never longer.
WEBHOOK_EVENTS_MAX = len(get_args(WebhookEvent))
#: What a webhook gets when it names no events.
DEFAULT_WEBHOOK_EVENTS: tuple[str, ...] = ("start", "progress", "completed", "reviewed")
MAX_PRIORITY = 10


class Delivery(RequestBody):
    """Where a task runs and who hears about it: the same fields on every submit route."""

    engine: str | None = Field(
        None, max_length=64, description="Which configured engine runs it (default: the deployment's); follow-ups run on their parent's.",
    )
    output_profile: str | None = Field(
        None, max_length=64, description="How its images are written: original (PNG), web, jpeg, avif, or an operator's profile.",
    )

    lane: Literal["interactive", "batch"] | None = Field(
        None, description="interactive (default) or batch: batch work never holds up interactive work."
    )
    priority: int | None = Field(
        None, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="Higher runs first inside its lane (default 0)."
    )
    webhook_url: Url | None = Field(
        None, description="POST signed events of this task here (Standard Webhooks); overrides the key's default."
    )
    webhook_events: Annotated[list[WebhookEvent], Field(min_length=1, max_length=WEBHOOK_EVENTS_MAX)] | None = Field(
        None, description="Which events to send: start, progress, completed, reviewed (an image held for review was decided), "
        "files (renditions and provenance records made after SUCCESS). Default: all but files.",
    )
    previews: bool | None = Field(
        None, description="Store the engine's previews while it runs (preview_url), as if watched from the start. "
        "Default: only once someone watches the task's event stream (or its webhook hears progress).",
    )
    state: str | None = Field(
        None, max_length=255, description="Your own text, kept with the task and echoed back (midjourney-proxy's state).",
    )
    end_user: str | None = Field(
        None, max_length=256, description="Who the request is for in your app, recorded with the task (OpenAI's user / safety_identifier).",
    )
    webhook_format: Literal["pixelmill", "midjourney-proxy"] | None = Field(
        None, description="pixelmill (default): signed events with the task object. midjourney-proxy: the task itself "
        "in midjourney-proxy's form, as its notifyHook posts it (still signed and retried).",
    )


def with_client_labels(params: dict[str, Any], req: Delivery) -> dict[str, Any]:
    """A task's params with what its own caller asked to keep (``params.client``: state,
    end_user), unread by engines; a follow-up does not inherit its parent's."""
    params.pop("client", None)
    labels = {name: value for name in ("state", "end_user") if (value := getattr(req, name)) is not None}
    return {**params, "client": labels} if labels else params


class ImagineRequest(Delivery):
    """Body fields override the same parameter given as a ``--flag`` in ``prompt``. Instead of a
    prompt, a request may name a versioned ``template`` with its ``variables``."""

    # template comes first: the validators of prompt and of the template fields look at it.
    template: str | None = Field(
        None, min_length=1, max_length=64, description="A published template to render instead of prompt (/v1/templates)."
    )
    prompt: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="[image URLs] subject text, optionally followed by --parameters "
        "(--ar 16:9 --v 8.1 --s 100 ...). Required unless template is given.",
        examples=["a serene mountain lake at sunrise --ar 16:9 --v 8.1 --s 100"],
        validate_default=True,
    )
    release: str | None = Field(
        None, min_length=1, max_length=32, description="Which release tag of the template (default: stable); its rollout applies."
    )
    template_version: int | None = Field(None, ge=1, description="Pin one published version of the template (no rollout).")
    variables: dict[str, VariableValue] | None = Field(None, max_length=50, description="Values of the template's variables.")
    subject_id: str | None = Field(
        None, min_length=1, max_length=128,
        description="Who the request is for: a rollout keeps each subject on one version (default: the API key).",
    )
    aspect_ratio: str | None = Field(None, max_length=16, description="W:H within 1:4..4:1; overrides --ar.", examples=["16:9"])
    size: str | None = Field(
        None, max_length=16, description=f"Exact output size WxH in pixels, multiples of 8, sides 64-{MAX_SIDE}.", examples=["1024x576"]
    )
    version: Version | None = Field(None, description="Model version (--v); with niji: true, the niji version.")
    niji: bool | None = Field(None, description=f"Use the niji model (--niji); versions {', '.join(NIJI_VERSIONS)}.")
    stylize: int | None = _ranged("stylize", "--s / --stylize")
    chaos: int | None = _ranged("chaos", "--c / --chaos")
    weird: int | None = _ranged("weird", "--weird / --w")
    quality: float | None = Field(
        None, description="--q / --quality.", json_schema_extra={"enum": list(QUALITIES)}
    )
    seed: int | None = _ranged("seed", "--seed")
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="What to leave out (--no).")
    tile: bool | None = Field(None, description="Seamless tiling (--tile).")
    iw: float | None = _ranged("iw", "Image prompt weight --iw, default 1")
    raw: bool | None = Field(None, description="--style raw.")
    repeat: int | None = _ranged("repeat", "Run the job this many times (--repeat / --r); one task each")
    stop: int | None = _ranged("stop", "Stop generation at this percentage (--stop)")
    draft: bool | None = Field(None, description="Draft mode (--draft): fewer steps where the engine has steps.")
    hd: bool | None = Field(None, description="Twice the base resolution (--hd).")
    speed: SpeedName | None = Field(
        None, description="Speed tier (--relax / --fast / --turbo): its price key when the operator prices it; "
        "relax also runs in the batch lane unless lane is given.",
    )
    image_urls: UrlList | None = Field(None, description="Image prompts; replace leading URLs in prompt.")
    sref: UrlList | None = Field(None, description="Style reference images (--sref).")
    sw: int | None = _ranged("sw", "Style weight --sw")
    cref: UrlList | None = Field(None, description="Character reference images (--cref).")
    cw: int | None = _ranged("cw", "Character weight --cw")
    cache: bool | None = Field(
        None,
        description="Without a seed, allow an earlier result of the same request as the answer "
        "(requests with a seed are always answered from cache when possible).",
    )

    @field_validator("quality")
    @classmethod
    def _quality(cls, value: float | None) -> float | None:
        if value is not None and value not in QUALITIES:
            raise ValueError(f"must be one of {', '.join(fmt_number(q) for q in QUALITIES)}")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_or_template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("template") is None:
            raise ValueError("Field required (or give template with its variables)")
        if value is not None and info.data.get("template") is not None:
            raise ValueError("give prompt or template, not both")
        return value

    @field_validator("release", "template_version", "variables", "subject_id")
    @classmethod
    def _with_template(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("template") is None:
            raise ValueError("goes with template (a prompt has no template to pick)")
        if value is not None and info.field_name == "template_version" and info.data.get("release") is not None:
            raise ValueError("give release or template_version, not both")
        return value

    def to_prompt(self) -> Prompt:
        """The prompt with every body field applied: what the task will run."""
        if self.prompt is None:
            raise ValidationError("prompt", "a template request must be rendered first")
        prompt = parse_prompt(self.prompt)
        updates: dict[str, Any] = {}
        if self.aspect_ratio is not None:
            updates["aspect"] = AspectRatio.parse(self.aspect_ratio)
        if self.size is not None:
            w, h = self.pixel_size() or (0, 0)
            ratio = AspectRatio.parse(f"{w}:{h}", field="size")
            if "aspect" in updates and updates["aspect"] != ratio:
                raise ValidationError("size", f"{w}x{h} is {ratio}, but aspect_ratio is {updates['aspect']}")
            updates["aspect"] = ratio
        updates.update(self._model(prompt))
        for name in ("stylize", "chaos", "weird", "quality", "seed", "iw", "repeat", "stop", "sw", "cw",
                     "tile", "raw", "draft", "hd", "speed"):
            if getattr(self, name) is not None:
                updates[name] = getattr(self, name)
        if self.negative_prompt is not None:
            updates["negative"] = check_free_text(self.negative_prompt, "negative_prompt") or None
        for name in ("image_urls", "sref", "cref"):
            urls = getattr(self, name)
            if urls is not None:
                updates[name] = tuple(check_url(u, f"{name}[{i}]") for i, u in enumerate(urls))
        result = replace(prompt, **updates).checked()
        if self.size is not None and result.hd:
            raise ValidationError("size", "an exact size and --hd both set the resolution; give one")
        return result

    def _model(self, prompt: Prompt) -> dict[str, Any]:
        """``niji`` + ``version`` → which model: ``niji: true, version: "7"`` is ``--niji 7``."""
        niji = self.niji if self.niji is not None else prompt.niji is not None
        if not niji:
            if self.niji is None and self.version is None:
                return {}
            return {"niji": None, "version": self.version or prompt.version}
        version = self.version or prompt.niji or DEFAULT_NIJI
        if version not in NIJI_VERSIONS:
            raise ValidationError("version", f"niji versions are {', '.join(NIJI_VERSIONS)}, got {version!r}")
        return {"niji": version, "version": None}

    def pixel_size(self) -> tuple[int, int] | None:
        """The explicit ``size``, checked; None when the size follows from the aspect ratio."""
        if self.size is None:
            return None
        m = _SIZE_RE.match(self.size)
        if not m:
            raise ValidationError("size", f"needs WxH in pixels like 1024x576, got {self.size!r}")
        w, h = int(m.group(1)), int(m.group(2))
        if not (64 <= w <= MAX_SIDE and 64 <= h <= MAX_SIDE):
            raise ValidationError("size", f"sides must be 64-{MAX_SIDE} pixels, got {w}x{h}")
        if w % 8 or h % 8:
            raise ValidationError("size", f"sides must be multiples of 8 (image models need it), got {w}x{h}")
        return w, h


TaskId = Annotated[str, Field(min_length=1, max_length=64)]
OptionalPrompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]


class FollowUp(Delivery):
    """An operation on a finished task's picture: ``task_id`` + ``index`` (which image of a grid;
    not needed for a single image), or a button's ``custom_id``."""

    task_id: TaskId | None = Field(None, description="The finished task whose picture to work on.")
    index: int | None = Field(None, ge=1, le=4, description="Which image of a grid, 1-4.")
    custom_id: str | None = Field(
        None, min_length=1, max_length=256, description="A button id from the task's buttons, instead of task_id + index."
    )


class UpscaleRequest(FollowUp):
    """Pick one image of a grid as it is, or enlarge a picture 2× (mode subtle / creative)."""

    mode: Literal["subtle", "creative"] | None = Field(
        None, description="None: the picked image as it is. subtle: 2× enlargement. creative: 2×, detail re-rendered by the engine."
    )


class VariationRequest(FollowUp):
    """Four variations of a picture, subtle or strong; with prompt, a remix. The picture is a
    finished task's (task_id + index) or any image (image_url)."""

    image_url: Url | None = Field(None, description="Vary this picture instead of a task's.")

    mode: Literal["subtle", "strong"] | None = Field(None, description="How far from the picture to move (default strong).")
    prompt: OptionalPrompt | None = Field(None, description="Remix: vary towards this prompt instead of the original one.")


class RerollRequest(Delivery):
    """Run a finished grid's job again with a new seed."""

    task_id: TaskId | None = Field(None, description="The task to run again with a new seed.")
    custom_id: str | None = Field(None, min_length=1, max_length=256, description="Its reroll button, instead of task_id.")


class ZoomRequest(FollowUp):
    """Zoom out of a picture and paint the new surroundings; custom: true waits in MODAL."""

    zoom: float | None = Field(None, ge=1, le=2, description="Zoom out by this factor (Midjourney's buttons: 1.5 and 2).")
    custom: bool | None = Field(None, description="Custom zoom: the task waits in MODAL for /modal to supply prompt and --zoom.")
    prompt: OptionalPrompt | None = Field(None, description="What to paint in the new surroundings (default: the original prompt).")


class PanRequest(FollowUp):
    """Extend the canvas of a picture towards one side and paint the new area."""

    direction: Literal["left", "right", "up", "down"] = Field(description="Which side to extend the canvas on.")
    prompt: OptionalPrompt | None = Field(None, description="What to paint in the new area (default: the original prompt).")


class InpaintRequest(FollowUp):
    """Vary a region of a task's picture: the task waits in MODAL (answer code 21) for /modal with
    prompt + mask_url. Or repaint any picture at once: image_url + mask_url + prompt."""

    image_url: Url | None = Field(None, description="Repaint this picture instead of a task's (with mask_url and prompt).")
    mask_url: Url | None = Field(None, description="With image_url: white = repaint (or a PNG whose transparent area is repainted).")
    prompt: OptionalPrompt | None = Field(None, description="With image_url: what to paint in the masked area.")


class ModalRequest(RequestBody):
    """Continue a task waiting in MODAL: inpaint (prompt + mask_url) or custom zoom (zoom)."""

    task_id: TaskId = Field(description="The task waiting in MODAL.")
    prompt: OptionalPrompt | None = Field(None, description="Inpaint: what to paint in the masked area. Custom zoom: the prompt, may hold --zoom 1-2.")
    mask_url: Url | None = Field(None, description="Inpaint: white = repaint (or a PNG whose transparent area is repainted).")
    zoom: float | None = Field(None, ge=1, le=2, description="Custom zoom factor (or --zoom in prompt).")


class DescribeRequest(Delivery):
    """Four prompts that could have made a picture, in the task's description."""

    image_url: Url | None = Field(None, description="The picture to describe.")
    task_id: TaskId | None = Field(None, description="Or a finished task's picture (with index for a grid).")
    index: int | None = Field(None, ge=1, le=4)


class BlendRequest(Delivery):
    """Blend 2-5 pictures into a grid."""

    image_urls: Annotated[list[Url], Field(min_length=2, max_length=5)] = Field(description="2-5 pictures to blend.")
    dimensions: Literal["PORTRAIT", "SQUARE", "LANDSCAPE"] = Field("SQUARE", description="2:3, 1:1 or 3:2.")
    prompt: OptionalPrompt | None = Field(None, description="Optional words to steer the blend.")
    seed: int | None = _ranged("seed", "--seed")


class ShortenRequest(Delivery):
    """Shorter prompts that keep the words carrying weight, in the task's description."""

    prompt: OptionalPrompt = Field(description="The prompt to shorten.")


VideoType = Literal["vid_1.1_i2v_480", "vid_1.1_i2v_720", "vid_1.1_i2v_start_end_480", "vid_1.1_i2v_start_end_720"]


class VideoRequest(Delivery):
    """MP4 clips that animate a picture; batch_size clips, each billed."""

    image_url: Url | None = Field(None, description="The first frame; or task_id + index.")
    task_id: TaskId | None = Field(None, description="A finished task whose picture to animate.")
    index: int | None = Field(None, ge=0, le=3, description="Which image of a grid, 0-3 (seed 004 counts from 0 here).")
    end_url: Url | None = Field(None, description="The last frame, for the start_end video types.")
    batch_size: Literal[1, 2, 4] = Field(1, description="Clips to make; each is billed (midjourney@video × batch_size).")
    video_type: VideoType = Field("vid_1.1_i2v_480", description="480p or 720p; start_end forms end on end_url.")
    motion: Literal["low", "high"] = Field("low", description="How much the camera and scene move.")
    prompt: OptionalPrompt | None = Field(None, description="Optional words about the motion.")
    custom_id: str | None = Field(None, min_length=1, max_length=256, description="An animate button, instead of task_id + index.")


class ActionRequest(Delivery):
    """Press a button: the custom_id says which operation on which task."""

    custom_id: str = Field(min_length=1, max_length=256, description="From the task's buttons.")
    task_id: TaskId | None = Field(None, description="The task the button belongs to (checked against the custom_id).")


class BatchRequest(Delivery):
    """Many imagine tasks at once, in the batch lane: either ``requests`` (imagine bodies) or a
    ``prompt_template`` with ``{name}`` slots and one ``variables`` entry per task."""

    requests: list[ImagineRequest] | None = Field(None, min_length=1, description="Imagine bodies, one task each (more with --repeat).")
    prompt_template: str | None = Field(
        None, min_length=1, max_length=MAX_PROMPT_CHARS, description="A prompt with {name} slots, e.g. 'a {animal} at dusk --ar 3:2'.",
    )
    variables: list[dict[str, VariableValue]] | None = Field(
        None, min_length=1, description="One set of slot values per task, for prompt_template."
    )
    defaults: ImagineRequest | None = Field(
        None, description="Body fields for every task made from prompt_template (its prompt is ignored)."
    )
    metadata: dict[str, Annotated[str, Field(max_length=500)]] | None = Field(
        None, max_length=20, description="Your labels for the batch, returned with its status and manifest."
    )


#: The body model of every operation route after imagine (``/v1/midjourney/generations/<name>``):
#: the HTTP routes, the CLI's ``op`` commands and the SDK all read this one table.
OPERATION_BODIES: dict[str, type[RequestBody]] = {
    "upscale": UpscaleRequest, "variation": VariationRequest, "reroll": RerollRequest, "zoom": ZoomRequest,
    "pan": PanRequest, "inpaint": InpaintRequest, "modal": ModalRequest, "describe": DescribeRequest,
    "blend": BlendRequest, "shorten": ShortenRequest, "video": VideoRequest, "action": ActionRequest,
}
