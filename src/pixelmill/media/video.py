"""MP4 (H.264) files: encoding frames as they are made, and reading a clip back (poster, probe).

PyAV wraps FFmpeg's libx264 in-process: frames stream into the encoder one at a time, so a clip
never sits in memory as raw frames.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image

#: x264 speed/size trade: "veryfast" encodes a 5 s 480p clip in well under a second on one core.
PRESET = "veryfast"
CRF = 23


def encode_mp4(frames: Iterable[np.ndarray], width: int, height: int, fps: int) -> bytes:
    """H.264 in MP4 from uint8 RGB frames of shape (height, width, 3); yuv420p plays everywhere."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": PRESET, "crf": str(CRF), "movflags": "+faststart"}
        for pixels in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buf.getvalue()


@dataclass(frozen=True)
class ClipInfo:
    codec: str
    width: int
    height: int
    frames: int
    seconds: float


def probe_mp4(data: bytes) -> ClipInfo:
    """Decode a clip completely: its codec, size, frame count and duration."""
    with av.open(io.BytesIO(data), "r") as clip:
        stream = clip.streams.video[0]
        frames = sum(1 for _ in clip.decode(stream))
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else (clip.duration or 0) / av.time_base
        return ClipInfo(stream.codec_context.name, stream.width, stream.height, frames, seconds)


def first_frame(data: bytes) -> Image.Image:
    """The clip's first frame: its poster."""
    with av.open(io.BytesIO(data), "r") as clip:
        for frame in clip.decode(video=0):
            image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]  # PyAV's stubs leave VideoFrame.to_image unannotated
            return image
    raise ValueError("the clip has no frames")
