"""The diffusers engine: any Hugging Face diffusers text-to-image model, by hub id or folder
(``pip install pixelmill[diffusers]``).

One loaded model serves every operation: the text-to-image pipeline is loaded once, and the
image-to-image and inpainting pipelines are made from it with ``from_pipe`` (the same weights,
nothing loaded twice). Each image has its own ``torch.Generator`` seeded with its seed, so a grid
is reproducible image by image and a batch gives the same pixels as single runs.

**Dynamic batching.** Requests that can share one pipeline call (same kind, size, steps,
strength and guidance) and arrive within ``batch_timeout_ms`` of the first are run together, up
to ``max_batch_size`` requests. Each task records which batch it ran in (``engine_meta``).

**Its own process.** With ``process: true`` (the default) the model lives in a worker process
started with the ``spawn`` method, so CUDA is initialised in a process that never forks; the
engine object in the server sends requests to it and receives images, progress and previews.
A crashed worker fails its requests as retryable and is started again on the next request.

Settings (``PIXELMILL_ENGINES``: ``{"sd": {"kind": "diffusers", "model": "stabilityai/sd-turbo", ...}}``):
``model``, ``device`` (auto | cuda | cpu | mps), ``dtype`` (fp16 | bf16 | fp32; auto: fp16 on
CUDA, fp32 elsewhere), ``scheduler`` (a diffusers scheduler class name), ``steps``, ``guidance``,
``max_batch_size``, ``batch_timeout_ms``, ``attention`` (sdpa | eager), ``compile``,
``channels_last``, ``cpu_offload``, ``warmup``, ``preview`` (latent | taesd), ``taesd`` (hub id
or folder of a tiny autoencoder), ``process``, ``model_version``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from pixelmill.engines.base import Engine, GenerationRequest, GenerationResult, ProgressCallback, settings_from_json
from pixelmill.exceptions import EngineError

_DTYPES = ("auto", "fp16", "bf16", "fp32")
#: Latent → RGB for a preview without the VAE (Stable Diffusion 1.x/2.x latent space): good enough
#: to see the composition forming, and free.
_LATENT_RGB = np.array(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]], dtype=np.float32
)


@dataclass(frozen=True)
class DiffusersConfig:
    model: str
    device: str = "auto"
    dtype: str = "auto"
    scheduler: str | None = None
    steps: int = 30
    guidance: float = 7.5
    max_batch_size: int = 4
    batch_timeout_ms: float = 20.0
    attention: str = "sdpa"
    compile: bool = False
    channels_last: bool = False
    cpu_offload: bool = False
    warmup: bool = True
    preview: str = "latent"
    taesd: str | None = None
    process: bool = True
    model_version: str | None = None

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> DiffusersConfig:
        if not isinstance(spec.get("model"), str) or not spec["model"]:
            raise ValueError("'model' (a hub id or a folder) is required")
        config = settings_from_json(cls, spec)
        checks = [
            (config.dtype in _DTYPES, f"dtype must be one of {', '.join(_DTYPES)}"),
            (config.device in ("auto", "cpu", "mps") or config.device.startswith("cuda"), "device must be auto, cpu, mps or cuda[:n]"),
            (isinstance(config.steps, int) and 1 <= config.steps <= 500, "steps must be 1-500"),
            (0 <= config.guidance <= 30, "guidance must be 0-30"),
            (isinstance(config.max_batch_size, int) and 1 <= config.max_batch_size <= 64, "max_batch_size must be 1-64"),
            (0 <= config.batch_timeout_ms <= 10_000, "batch_timeout_ms must be 0-10000"),
            (config.attention in ("sdpa", "eager"), "attention must be sdpa or eager"),
            (config.preview in ("latent", "taesd"), "preview must be latent or taesd"),
            (config.preview != "taesd" or bool(config.taesd), "preview taesd needs taesd (a hub id or folder)"),
        ]
        for ok, rule in checks:
            if not ok:
                raise ValueError(rule)
        return config


# --- the model side (in the worker process) --------------------------------------------------------


@dataclass
class _Job:
    id: int
    kind: str  # "txt2img" | "img2img" | "inpaint"
    prompt: str
    negative: str
    width: int
    height: int
    seeds: tuple[int, ...]
    strength: float
    init: Image.Image | None
    mask: Image.Image | None

    @property
    def batch_key(self) -> tuple[Any, ...]:
        return (self.kind, self.width, self.height, round(self.strength, 4))


class _Runner:
    """Holds the pipelines and runs batches of jobs. Lives where the GPU is."""

    def __init__(self, config: DiffusersConfig) -> None:
        import torch
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

        self._torch = torch
        self.config = config
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        self.device = device
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}.get(config.dtype)
        self.dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        pipe = AutoPipelineForText2Image.from_pretrained(config.model, dtype=self.dtype)
        if config.scheduler:
            import diffusers

            cls = getattr(diffusers, config.scheduler, None)
            if cls is None:
                raise ValueError(f"no diffusers scheduler named {config.scheduler}")
            pipe.scheduler = cls.from_config(pipe.scheduler.config)
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        if config.attention == "eager" and denoiser is not None and hasattr(denoiser, "set_attn_processor"):
            from diffusers.models.attention_processor import AttnProcessor

            denoiser.set_attn_processor(AttnProcessor())
        if config.channels_last and denoiser is not None:
            denoiser.to(memory_format=torch.channels_last)
        if config.cpu_offload:
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(device)
        if config.compile and denoiser is not None:
            compiled = torch.compile(denoiser, mode="reduce-overhead", fullgraph=False)
            setattr(pipe, "unet" if hasattr(pipe, "unet") else "transformer", compiled)
        pipe.set_progress_bar_config(disable=True)
        self.pipes = {"txt2img": pipe}
        # The same modules, other call paths: made on first use, never loaded again.
        self._derive = {"img2img": AutoPipelineForImage2Image, "inpaint": AutoPipelineForInpainting}
        self._taesd = None
        if config.preview == "taesd" and config.taesd:
            from diffusers import AutoencoderTiny

            self._taesd = AutoencoderTiny.from_pretrained(config.taesd, dtype=self.dtype).to(device)
        if config.warmup:
            self.run([_Job(-1, "txt2img", "warm-up", "", 64, 64, (0,), 1.0, None, None)], lambda *a: None, steps=1)

    def _pipe(self, kind: str) -> Any:
        if kind not in self.pipes:
            pipe = self._derive[kind].from_pipe(self.pipes["txt2img"])
            pipe.set_progress_bar_config(disable=True)
            self.pipes[kind] = pipe
        return self.pipes[kind]

    def _preview(self, latents: Any) -> Image.Image | None:
        torch = self._torch
        with torch.no_grad():
            first = latents[:1]
            if self._taesd is not None:
                rgb = self._taesd.decode(first.to(self.dtype)).sample[0].float().clamp(-1, 1).add(1).mul(127.5)
                return Image.fromarray(rgb.permute(1, 2, 0).cpu().numpy().astype(np.uint8))
            lat = first[0].float().cpu().numpy()
            if lat.shape[0] != 4:
                return None  # another latent space: no cheap projection for it
            rgb = np.tensordot(lat, _LATENT_RGB, axes=([0], [0]))
            return Image.fromarray(np.clip((rgb + 1) * 127.5, 0, 255).astype(np.uint8))

    def run(self, jobs: list[_Job], report: Any, steps: int | None = None) -> list[list[Image.Image]]:
        """One pipeline call for all ``jobs`` (they share a batch key); ``report(job_ids,
        fraction, preview)`` after every step."""
        torch = self._torch
        first = jobs[0]
        n_steps = steps or self.config.steps
        prompts = [j.prompt for j in jobs for _ in j.seeds]
        negatives = [j.negative for j in jobs for _ in j.seeds]
        generator_device = "cpu" if self.config.cpu_offload else self.device
        generators = [torch.Generator(generator_device).manual_seed(s) for j in jobs for s in j.seeds]
        kwargs: dict[str, Any] = {
            "prompt": prompts, "num_inference_steps": n_steps, "generator": generators, "output_type": "pil",
            "guidance_scale": self.config.guidance, "height": first.height, "width": first.width,
        }
        if any(negatives) and self.config.guidance > 1:
            kwargs["negative_prompt"] = negatives
        if first.kind != "txt2img":
            kwargs["image"] = [j.init for j in jobs for _ in j.seeds]
            kwargs["strength"] = first.strength
        if first.kind == "inpaint":
            kwargs["mask_image"] = [j.mask for j in jobs for _ in j.seeds]
        ids = [j.id for j in jobs]
        every = max(1, n_steps // 4)

        def on_step(pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            preview = self._preview(tensors["latents"]) if (step + 1) % every == 0 and step + 1 < n_steps else None
            report(ids, (step + 1) / n_steps, preview)
            return tensors

        with torch.inference_mode():
            images = self._pipe(first.kind)(**kwargs, callback_on_step_end=on_step).images
        out, i = [], 0
        for j in jobs:
            out.append([im.convert("RGB") for im in images[i : i + len(j.seeds)]])
            i += len(j.seeds)
        return out


def _serve(config: DiffusersConfig, inbox: Any, outbox: Any) -> None:
    """The worker loop: gather compatible jobs into batches and run them. Messages out:
    ("ready",), ("progress", ids, fraction, preview), ("done", id, images, meta), ("error", id, text, retryable)."""
    try:
        runner = _Runner(config)
    except Exception as exc:  # noqa: BLE001 - a model that cannot load fails every request, in words
        outbox.put(("dead", f"{type(exc).__name__}: {exc}"))
        return
    outbox.put(("ready",))
    held: deque[_Job] = deque()  # jobs that came while another kind of batch was gathering
    batches = itertools.count(1)
    stopping = False
    while not (stopping and not held):
        job = held.popleft() if held else inbox.get()
        if job is None:
            return
        batch = [job]
        deadline = time.monotonic() + config.batch_timeout_ms / 1000
        while len(batch) < config.max_batch_size and not stopping:
            remaining = deadline - time.monotonic()
            try:
                nxt = inbox.get(timeout=remaining) if remaining > 0 else inbox.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                stopping = True
            else:
                (batch if nxt.batch_key == job.batch_key else held).append(nxt)
        number = next(batches)
        try:
            results = runner.run(batch, lambda ids, f, p: outbox.put(("progress", ids, f, p)))
        except Exception as exc:  # noqa: BLE001 - reported to each request of the batch
            text = f"{type(exc).__name__}: {exc}"
            for j in batch:
                outbox.put(("error", j.id, text, "out of memory" in text.lower()))
            continue
        for j, images in zip(batch, results, strict=True):
            outbox.put(("done", j.id, images, {"batch": number, "batch_requests": len(batch)}))


# --- the server side --------------------------------------------------------------------------------


@dataclass
class _Pending:
    done: threading.Event
    progress: ProgressCallback | None
    result: tuple[list[Image.Image], dict[str, Any]] | None = None
    error: EngineError | None = None


class DiffusersEngine(Engine):
    def __init__(self, name: str, config: DiffusersConfig) -> None:
        self.name = name
        self.model = config.model_version or f"diffusers:{config.model}"
        self._config = config
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._worker: Any = None
        self._inbox: Any = None
        self._state = "stopped"

    @classmethod
    def from_json(cls, name: str, spec: Mapping[str, Any]) -> DiffusersEngine:
        try:
            import diffusers  # noqa: F401
            import torch  # noqa: F401
        except ImportError as exc:
            raise ImportError("the diffusers engine needs `pip install pixelmill[diffusers]`") from exc
        return cls(name, DiffusersConfig.from_json(spec))

    # The worker (process or thread) starts on the first request, not at import: an API process
    # that only accepts tasks never loads the model.
    def _ensure_worker(self) -> None:
        with self._lock:
            if self._state == "running":
                return
            outbox: multiprocessing.queues.Queue[Any] | queue.Queue[Any]
            if self._config.process:
                ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA
                self._inbox, outbox = ctx.Queue(), ctx.Queue()
                self._worker = ctx.Process(target=_serve, args=(self._config, self._inbox, outbox), daemon=True, name=f"pixelmill-{self.name}")
            else:
                self._inbox, outbox = queue.Queue(), queue.Queue()
                self._worker = threading.Thread(target=_serve, args=(self._config, self._inbox, outbox), daemon=True, name=f"pixelmill-{self.name}")
            self._worker.start()
            message = outbox.get()
            if message[0] == "dead":
                self._state = "stopped"
                raise EngineError(f"the {self.name} model did not load: {message[1]}", retryable=False)
            self._state = "running"
            threading.Thread(target=self._receive, args=(outbox, self._worker), daemon=True).start()

    def _receive(self, outbox: Any, worker: Any) -> None:
        while True:
            try:
                message = outbox.get(timeout=1.0)
            except queue.Empty:
                if not worker.is_alive():
                    self._fail_all("the model worker stopped")
                    return
                continue
            kind = message[0]
            if kind == "progress":
                for job_id in message[1]:
                    pending = self._pending.get(job_id)
                    if pending and pending.progress:
                        pending.progress(message[2], message[3])
                continue
            pending = self._pending.pop(message[1], None)
            if pending is None:
                continue
            if kind == "done":
                pending.result = (message[2], message[3])
            else:
                pending.error = EngineError(f"{self.name}: {message[2]}", retryable=message[3])
            pending.done.set()

    def _fail_all(self, why: str) -> None:
        with self._lock:
            self._state = "stopped"
            pending, self._pending = self._pending, {}
        for p in pending.values():
            p.error = EngineError(f"{self.name}: {why}", retryable=True)
            p.done.set()

    def generate(self, request: GenerationRequest, progress: ProgressCallback | None = None) -> GenerationResult:
        self._ensure_worker()
        init, mask, strength, kind = request.init_image, request.mask, request.strength, "txt2img"
        if init is None and request.image_prompts:
            # No image-prompt adapter: start from the image prompts instead (--iw 1 keeps a quarter).
            mean = np.mean([np.asarray(ImageOps.fit(p.convert("RGB"), (request.width, request.height)), dtype=np.float32) for p in request.image_prompts], axis=0)
            init, strength = Image.fromarray(mean.astype(np.uint8)), max(0.2, 1 - 0.25 * request.image_weight)
        if init is not None:
            kind = "inpaint" if mask is not None else "img2img"
            init = init.convert("RGB").resize((request.width, request.height))
            strength = max(strength, 1 / self._config.steps)  # at least one denoising step
        job = _Job(next(self._ids), kind, request.prompt, request.negative_prompt, request.width, request.height, request.seeds,
                   strength if kind != "txt2img" else 1.0, init, mask.convert("L").resize(init.size) if mask is not None and init else None)
        pending = _Pending(threading.Event(), progress)
        with self._lock:
            self._pending[job.id] = pending
        self._inbox.put(job)
        while not pending.done.wait(1.0):
            # A worker that died before this request was registered never answers it.
            if not self._worker.is_alive():
                with self._lock:
                    self._pending.pop(job.id, None)
                raise EngineError(f"{self.name}: the model worker stopped", retryable=True)
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        images, meta = pending.result
        return GenerationResult(images=tuple(images), model=self.model, meta=meta)

    def check(self) -> None:
        if self._state != "running" and self._worker is not None:
            raise RuntimeError("the model worker is not running")

    def close(self) -> None:
        with self._lock:
            if self._state == "running" and self._inbox is not None:
                self._inbox.put(None)
            self._state = "stopped"
        if self._worker is not None:
            self._worker.join(timeout=10)

