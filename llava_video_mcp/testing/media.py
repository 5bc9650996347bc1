"""Videos made in code with PyAV, for the self-test and the benchmarks: no binary media in the repository."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_video(path: Path, seconds: float = 8.0, fps: int = 10, sound: bool = True) -> Path:
    """A small H.264 video of a moving gradient with a cut halfway, and noise standing in for speech (AAC)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono") if sound else None
        for i in range(round(seconds * fps)):
            y, x = np.mgrid[0:64, 0:96]
            image = np.empty((64, 96, 3), dtype=np.uint8)
            shade = 40 if i < seconds * fps / 2 else 200
            image[..., 0] = (x * 2 + i * 5) % 256
            image[..., 1] = (y * 3 + shade) % 256
            image[..., 2] = shade
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            samples = (rng.standard_normal(round(seconds * 16000)) * 0.1).astype(np.float32)
            step = 1024
            for start in range(0, len(samples) - step + 1, step):
                chunk = av.AudioFrame.from_ndarray(samples[None, start : start + step], format="fltp", layout="mono")
                chunk.sample_rate = 16000
                chunk.pts = start
                for packet in audio.encode(chunk):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return path
