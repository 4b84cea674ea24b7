"""GPU throughput of the diffusers engine (issue 7), on full-size architectures with random weights.

No weights can be downloaded, and none are needed to measure speed: the compute of a UNet, VAE and
text encoder depends on their shapes, not on their values. The script builds

- ``sd-turbo-like``: the Stable Diffusion 2.1 / SD-Turbo architecture (UNet 865 M parameters,
  OpenCLIP-H text encoder, SD VAE), 1 step, no guidance;
- ``sdxl-like``: the SDXL architecture (UNet 2.6 B, CLIP-L + OpenCLIP-bigG, SDXL VAE), 4 steps,
  no guidance (an SDXL-Turbo / Lightning-style schedule);

saves each to a folder (bf16) and prints images/s at 512² and 1024² for pipeline batches of 1, 4
and 8 images, measured two ways:

1. a plain ``pipeline(...)`` call, loaded the usual way;
2. through pixelmill: a real server with the diffusers engine on that folder, under concurrent
   load (enough imagine tasks in flight to fill every batch), counting finished images per second
   (every imagine is 4 images; engine batches of 1 and 2 requests give pipeline batches of 4 and 8).

From the FLOPs of one image (counted with torch's FlopCounterMode) it prints the share of the
GPU's dense bf16 peak each throughput implies (H100 SXM 989 TFLOP/s by default; --peak-tflops).

Run on a GPU box:   .venv/bin/python bench/gpu_diffusers.py
Smoke-test on a CPU (tiny shapes, no numbers worth reading):   .venv/bin/python bench/gpu_diffusers.py --tiny
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

KEY = "pm_gpubench_" + "g" * 32


def _tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for code in range(33, 127):
        vocab.setdefault(chr(code), len(vocab))
        vocab.setdefault(chr(code) + "</w>", len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def build(arch: str, folder: Path, tiny: bool) -> dict[str, Any]:
    """Save a random-weight pipeline of ``arch``; returns its run settings."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tok = _tokenizer(folder / "tokenizer-source")
    v = len(tok.get_vocab())
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing")
    ch, layers, heads, blocks = (32, 64), 1, 2, 2  # the tiny shapes (a CPU smoke test)
    vae_cfg = {"in_channels": 3, "out_channels": 3, "latent_channels": 4,
               "block_out_channels": (32, 64) if tiny else (128, 256, 512, 512), "layers_per_block": 1 if tiny else 2,
               "down_block_types": ("DownEncoderBlock2D",) * (2 if tiny else 4), "up_block_types": ("UpDecoderBlock2D",) * (2 if tiny else 4),
               "norm_num_groups": 32}
    if arch == "sd-turbo-like":
        unet = UNet2DConditionModel(
            block_out_channels=ch if tiny else (320, 640, 1280, 1280), layers_per_block=layers if tiny else 2,
            down_block_types=("CrossAttnDownBlock2D",) * (blocks - 1 if tiny else 3) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (blocks - 1 if tiny else 3),
            cross_attention_dim=64 if tiny else 1024, attention_head_dim=heads if tiny else (5, 10, 20, 20),
            use_linear_projection=True, sample_size=64,
        )
        te = CLIPTextModel(CLIPTextConfig(vocab_size=v, hidden_size=64 if tiny else 1024, intermediate_size=128 if tiny else 4096,
                                          num_hidden_layers=2 if tiny else 23, num_attention_heads=2 if tiny else 16,
                                          max_position_embeddings=77, hidden_act="gelu", bos_token_id=0, eos_token_id=1, pad_token_id=1))
        pipe = StableDiffusionPipeline(unet=unet, vae=AutoencoderKL(**vae_cfg), text_encoder=te, tokenizer=tok, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        steps = 1
    else:
        unet = UNet2DConditionModel(
            block_out_channels=ch if tiny else (320, 640, 1280), layers_per_block=layers if tiny else 2,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (blocks - 1 if tiny else 2),
            up_block_types=("CrossAttnUpBlock2D",) * (blocks - 1 if tiny else 2) + ("UpBlock2D",),
            transformer_layers_per_block=1 if tiny else (1, 2, 10), attention_head_dim=heads if tiny else (5, 10, 20),
            cross_attention_dim=96 if tiny else 2048, use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8 if tiny else 256, projection_class_embeddings_input_dim=(32 + 6 * 8) if tiny else 2816,
            sample_size=128,
        )
        te1 = CLIPTextModel(CLIPTextConfig(vocab_size=v, hidden_size=64 if tiny else 768, intermediate_size=128 if tiny else 3072,
                                           num_hidden_layers=2 if tiny else 12, num_attention_heads=2 if tiny else 12,
                                           max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=v, hidden_size=32 if tiny else 1280, intermediate_size=64 if tiny else 5120,
                                                         num_hidden_layers=2 if tiny else 32, num_attention_heads=2 if tiny else 20,
                                                         projection_dim=32 if tiny else 1280, max_position_embeddings=77,
                                                         hidden_act="gelu", bos_token_id=0, eos_token_id=1, pad_token_id=1))
        pipe = StableDiffusionXLPipeline(unet=unet, vae=AutoencoderKL(**vae_cfg, force_upcast=False), text_encoder=te1, text_encoder_2=te2,
                                         tokenizer=tok, tokenizer_2=tok, scheduler=scheduler)
        steps = 4
    pipe.to(torch.bfloat16).save_pretrained(folder)
    params = sum(p.numel() for p in pipe.unet.parameters())
    return {"steps": steps, "unet_params": params}


def flops_per_image(pipe: Any, size: int, steps: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        pipe(["a lake"], height=size, width=size, num_inference_steps=steps, guidance_scale=0.0, output_type="pil")
    return float(counter.get_total_flops())


def plain(folder: Path, steps: int, size: int, batch: int, repeats: int) -> float:
    import torch
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(folder, dtype=torch.bfloat16).to("cuda" if torch.cuda.is_available() else "cpu")
    pipe.set_progress_bar_config(disable=True)
    run = lambda: pipe(["a lake at dawn"] * batch, height=size, width=size, num_inference_steps=steps, guidance_scale=0.0)
    run()  # warm-up: kernels, allocator
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def through_pixelmill(folder: Path, steps: int, size: int, requests_per_batch: int, tasks: int) -> float:
    """Images/s of finished imagine tasks with enough of them in flight to fill every batch."""
    from pixelmill.testing import Server, wait_for

    engines = {"gpu": {"kind": "diffusers", "model": str(folder), "dtype": "bf16", "steps": steps, "guidance": 0.0,
                       "max_batch_size": requests_per_batch, "batch_timeout_ms": 50, "warmup": True}}
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), KEY, engines=json.dumps(engines), engine="gpu", image_size=size, workers=2 * requests_per_batch,
                     rate_per_minute=0, max_concurrent_tasks=0, run_timeout_seconds=3600).start()
        try:
            with srv.client() as api:
                warm = api.post("/v1/midjourney/generations/imagine", json={"prompt": "warm up", "seed": 1}).json()["data"][0]["task_id"]
                wait_for(lambda: api.get(f"/v1/midjourney/{warm}").json()["status"] == "SUCCESS", timeout=1800, what="warm-up")
                start = time.perf_counter()
                ids: list[str] = []

                def submit(i: int) -> None:
                    with srv.client() as c:
                        ids.append(c.post("/v1/midjourney/generations/imagine", json={"prompt": f"a lake {i}", "seed": i}).json()["data"][0]["task_id"])

                threads = [threading.Thread(target=submit, args=(i,)) for i in range(tasks)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wait_for(lambda: all(api.get(f"/v1/midjourney/{t}").json()["status"] == "SUCCESS" for t in ids),
                         timeout=3600, interval=0.5, what="all tasks")
                return 4 * tasks / (time.perf_counter() - start)
        finally:
            srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="tiny shapes: a CPU smoke test of this script")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100 SXM: 989)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=24, help="imagine tasks per pixelmill run")
    ap.add_argument("--archs", default="sd-turbo-like,sdxl-like")
    ap.add_argument("--sizes", default="512,1024")
    args = ap.parse_args()
    import torch
    from diffusers import AutoPipelineForText2Image

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"device: {device}; torch {torch.__version__}; peak {args.peak_tflops:g} TFLOP/s bf16")
    sizes = [64, 128] if args.tiny else [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            folder = Path(tmp) / arch
            info = build(arch, folder, args.tiny)
            print(f"\n{arch}: UNet {info['unet_params'] / 1e6:.0f} M parameters, {info['steps']} step(s)")
            print("| size | batch | plain pipeline img/s | pixelmill img/s | GFLOP/img | plain % peak | pixelmill % peak |")
            print("|---|---|---|---|---|---|---|")
            for size in sizes:
                pipe = AutoPipelineForText2Image.from_pretrained(folder, dtype=torch.bfloat16).to("cuda" if torch.cuda.is_available() else "cpu")
                pipe.set_progress_bar_config(disable=True)
                flops = flops_per_image(pipe, size, info["steps"])
                del pipe
                for batch in (1, 4, 8):
                    p = plain(folder, info["steps"], size, batch, 1 if args.tiny else args.repeats)
                    # pixelmill runs grids of 4: engine batches of 1 and 2 requests are pipeline batches of 4 and 8.
                    m = through_pixelmill(folder, info["steps"], size, batch // 4, 4 if args.tiny else args.tasks) if batch >= 4 else float("nan")
                    share_p, share_m = (100 * ips * flops / (args.peak_tflops * 1e12) for ips in (p, m))
                    print(f"| {size}² | {batch} | {p:.2f} | {m:.2f} | {flops / 1e9:.0f} | {share_p:.1f} | {share_m:.1f} |", flush=True)


if __name__ == "__main__":
    main()
