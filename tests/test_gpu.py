"""The CUDA path, for machines with a GPU: `python -m pytest -m gpu`. Deselected by default (CI has no GPU);
asked for on a machine without CUDA, these fail rather than skip, so a broken GPU setup cannot pass unseen."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llava_video_mcp.tools.answer import VideoQA
from llava_video_mcp.tools.backends import BackendConfig, LazyBackend, Prompt
from llava_video_mcp.tools.backends.transformers import TransformersBackend
from llava_video_mcp.tools.frames import media_duration, to_model_image, uniform_targets
from llava_video_mcp.tools.media import VideoFetcher
from tests.media import nearest_reference, reference_frames, scenes

pytestmark = pytest.mark.gpu

GUIDE = "The images are frames of one video, in time order.\n\n"


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.fail("these tests need a CUDA device (torch.cuda.is_available() is False)")


@pytest.fixture
def cuda_backend(tiny_model: Path) -> TransformersBackend:
    return TransformersBackend.load(str(tiny_model))


def test_auto_picks_cuda_in_bf16(cuda_backend: TransformersBackend) -> None:
    assert cuda_backend.device == "cuda"
    assert cuda_backend.dtype == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")


def test_thirty_two_frames_and_a_follow_up(cuda_backend: TransformersBackend, h264_mp4: Path) -> None:
    reference = reference_frames(h264_mp4)
    images = [to_model_image(nearest_reference(reference, t)[1], 384) for t in uniform_targets(0, 3.0, 32)]
    first = cuda_backend.generate(Prompt(images, GUIDE + "What moves?", len(GUIDE)), max_new_tokens=8)
    follow_up = cuda_backend.generate(Prompt(images, GUIDE + "Which way?", len(GUIDE)), max_new_tokens=8)
    cold = TransformersBackend.load(cuda_backend.model_id).generate(
        Prompt(images, GUIDE + "Which way?", len(GUIDE)), max_new_tokens=8
    )
    assert first.reused_tokens == 0
    assert follow_up.reused_tokens > 32 * 16
    assert follow_up.token_ids == cold.token_ids


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, from inside its compiler
def test_compiled_decoding_on_cuda_gives_the_eager_tokens(cuda_backend: TransformersBackend, h264_mp4: Path) -> None:
    """--compile-decode on CUDA (CUDA graphs): its answers are the eager step's, first call and follow-up."""
    compiled = TransformersBackend.load(cuda_backend.model_id, compile_decode=True)
    assert compiled.compile_config is not None
    reference = reference_frames(h264_mp4)
    images = [to_model_image(nearest_reference(reference, t)[1], 384) for t in uniform_targets(0, 3.0, 8)]
    for question in ("What moves?", "Which way?"):
        prompt = Prompt(images, GUIDE + question, len(GUIDE))
        assert compiled.generate(prompt, max_new_tokens=16).token_ids == cuda_backend.generate(prompt, 16).token_ids


def test_a_long_video_watched_in_full(tiny_model: Path, tmp_path: Path) -> None:
    """coverage="full" on the GPU: windows tile the range, and a second question reuses every window's notes."""
    talk = scenes(tmp_path / "talk.mp4", seconds=150)
    qa = VideoQA(
        VideoFetcher(tmp_path / "cache", inspect=media_duration), LazyBackend(BackendConfig(model=str(tiny_model)))
    )
    first = qa.describe(str(talk), "What happens?", num_frames=4, max_new_tokens=8, coverage="full")
    assert first.model.device == "cuda"
    assert first.segments is not None
    assert first.segments_from_cache == 0
    assert [s.start_s for s in first.segments[1:]] == [s.end_s for s in first.segments[:-1]]
    assert (first.segments[0].start_s, first.segments[-1].end_s) == (0.0, 150.0)
    second = qa.describe(str(talk), "When does it turn light?", num_frames=4, max_new_tokens=8, coverage="full")
    assert second.segments_from_cache == len(first.segments)


def test_speech_is_heard_in_batches_on_cuda(tiny_whisper: Path) -> None:
    """On CUDA, blocks go 8 at a time in float16; every block gets its own result, in order, and each block's times
    stay inside it."""
    import numpy as np

    from llava_video_mcp.tools.backends.speech.whisper import CUDA_BATCH, load_whisper

    backend = load_whisper(str(tiny_whisper), str(tiny_whisper), "transformers", "cuda", None)
    assert backend.device == "cuda"
    assert backend.compute == "float16"
    rng = np.random.default_rng(0)
    blocks = [(rng.standard_normal(16000 * 30) * 0.1).astype(np.float32) for _ in range(CUDA_BATCH + 2)]
    blocks[3] = blocks[3][: 16000 * 7]  # a short block among full ones, as the end of a track is
    done: list[int] = []
    heard = backend.transcribe(blocks, None, on_block=done.append)
    assert len(heard.heard) == len(blocks)
    assert heard.language is not None
    assert done[-1] == len(blocks)
    assert all(h.end_s <= len(block) / 16000 for block, found in zip(blocks, heard.heard, strict=True) for h in found)
