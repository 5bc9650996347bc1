"""Model families in process: LLaVA-OneVision and Qwen2-VL, Qwen2.5-VL, Qwen3-VL beside llava-interleave, behind
one seam (`tools/backends/families`).

Tiny random models of each real architecture run through all three tools with the real MCP client. OneVision's
native video prompt is checked against the checkpoints' template and its token count, its chunked encoding and
prefix reuse against transformers' own generate() given the pixels; the Qwen families' prompts against their
templates, a frame's tokens against its image grid; an unsupported family is refused at start.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mcp import Client
from PIL import Image

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.checks import check
from llava_video_mcp.server.settings import ConfigError, Settings
from llava_video_mcp.testing.tiny_llava import build_onevision
from llava_video_mcp.testing.tiny_qwen import build_qwen
from llava_video_mcp.tools.answer import MomentsAnswer
from llava_video_mcp.tools.backends.base import Prompt
from llava_video_mcp.tools.backends.families import FAMILIES, LlavaOnevision
from llava_video_mcp.tools.backends.families.onevision import VideoProcessing
from llava_video_mcp.tools.backends.transformers import TransformersBackend
from tests.test_server import call, error_text


@pytest.fixture(scope="module")
def onevision(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_onevision(tmp_path_factory.mktemp("onevision") / "model")


@pytest.fixture(scope="module")
def backend(onevision: Path) -> TransformersBackend:
    return TransformersBackend.load(str(onevision), device="cpu", dtype="float32")


def frames(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (48, 32), (30 * n, 100, 200 - 20 * n)) for n in range(count)]


def test_the_native_video_prompt(backend: TransformersBackend) -> None:
    family = backend.family
    assert isinstance(family, LlavaOnevision)
    prompt = Prompt(frames(3), "Frames at 0.00 s, 1.00 s, 2.00 s.\n\nWhy is this video funny?", question_start=35)
    rendered = family.render(prompt)
    assert rendered == (
        "<|im_start|>user\n<video>\nFrames at 0.00 s, 1.00 s, 2.00 s.\n\nWhy is this video funny?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = family.inputs(prompt, rendered)["input_ids"][0].tolist()
    video_id = family.tokenizer.convert_tokens_to_ids("<video>")
    # 3 frames x (32 px / 8 px patches = 4x4, pooled 2x2 to 2x2) and one closing newline.
    assert family.cost.tokens_per_frame == 4
    assert ids.count(video_id) == 3 * 4 + 1
    assert backend.tokens_per_image == 4
    # The model card's decoded example, special tokens skipped: "user\n\nWhy is this video funny?\nassistant\n".
    question = Prompt(frames(1), "Why is this video funny?")
    decoded = family.tokenizer.decode(family.inputs(question, family.render(question))["input_ids"][0])
    assert family.tokenizer.decode(family.tokenizer(decoded)["input_ids"], skip_special_tokens=True) == (
        "user\n\nWhy is this video funny?\nassistant\n"
    )


def test_frames_are_processed_as_its_video_processor_says(onevision: Path) -> None:
    settings = VideoProcessing.of_folder(onevision)
    assert (settings.height, settings.width, settings.image_mean) == (32, 32, (0.5, 0.5, 0.5))
    pixels = settings.pixels([Image.new("RGB", (64, 36), (255, 0, 51))])
    assert tuple(pixels.shape) == (1, 1, 3, 32, 32)
    assert torch.allclose(pixels[0, 0, :, 5, 5], torch.tensor([1.0, -1.0, -0.6]), atol=1e-6)
    # Without a file of its own, the class defaults (OpenAI CLIP's mean and std) hold, as in transformers.
    assert VideoProcessing.of_folder(onevision / "nowhere").image_mean[0] == pytest.approx(0.48145466)


def test_encoding_in_chunks_and_reusing_the_prefix_give_transformers_own_answer(backend: TransformersBackend) -> None:
    images = frames(5)
    prompt = Prompt(images, "The 5 images are frames.\n\nWhat moves?", question_start=26)
    family = backend.family
    inputs = family.inputs(prompt, family.render(prompt))
    with torch.inference_mode():
        whole = backend.model.generate(**inputs, max_new_tokens=8, do_sample=False)
        chunked = family.encode(backend.model, inputs["pixel_values_videos"], 2, lambda done, total: None, None)
        at_once = backend.model.model.get_video_features(
            pixel_values_videos=inputs["pixel_values_videos"], vision_feature_layer=-1,
            vision_feature_select_strategy="full",
        ).pooler_output  # fmt: skip
    assert torch.allclose(chunked["video"].pooler_output, at_once, atol=1e-5)
    first = backend.generate(prompt, 8)  # frames encoded 8 at a time, the prefix prefilled on its own
    assert first.token_ids == tuple(whole[0, inputs["input_ids"].shape[1] :].tolist())
    follow = Prompt(images, "The 5 images are frames.\n\nWhat else?", question_start=26)
    warm = backend.generate(follow, 8)
    assert warm.reused_tokens > 0
    cold = TransformersBackend.load(backend.model_id, device="cpu", dtype="float32").generate(follow, 8)
    assert cold.reused_tokens == 0
    assert cold.token_ids == warm.token_ids


QWEN = ("qwen2_5_vl", "qwen3_vl", "qwen2_vl")


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("qwen")
    return {model_type: build_qwen(folder / model_type, model_type) for model_type in QWEN}


@pytest.mark.parametrize("model_type", QWEN)
def test_qwen_frames_are_images_at_their_own_resolution(qwen: dict[str, Path], model_type: str) -> None:
    backend = TransformersBackend.load(str(qwen[model_type]), device="cpu", dtype="float32")
    family = backend.family
    assert family.model_type == model_type
    assert not family.prefix_cache
    images = [Image.new("RGB", (512, 384), (40 * n, 90, 200)) for n in range(3)]
    prompt = Prompt(images, "Frames at 0.00 s, 1.00 s, 2.00 s.\n\nWhat moves?", question_start=35)
    rendered = family.render(prompt)
    frames = "<|vision_start|><|image_pad|><|vision_end|>" * 3
    system = "" if model_type == "qwen3_vl" else "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert rendered == (
        f"{system}<|im_start|>user\n{frames}Frames at 0.00 s, 1.00 s, 2.00 s.\n\nWhat moves?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    inputs = family.inputs(prompt, rendered)
    # A merged block of patches is a token: 512x384 is 36x28 patches of 14 px (Qwen3-VL: 32x24 of 16 px).
    per_frame = 18 * 14 if model_type != "qwen3_vl" else 16 * 12
    pad = family.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert inputs["input_ids"][0].tolist().count(pad) == 3 * per_frame == family.frame_tokens(images)
    assert inputs["mm_token_type_ids"].sum() == 3 * per_frame
    answer = backend.generate(prompt, 4)
    assert answer.prompt_tokens == inputs["input_ids"].shape[1]
    assert answer.reused_tokens == 0  # each call reads its whole prompt (3-D positions live on the model)


@pytest.mark.anyio
@pytest.mark.parametrize("model_type", ["onevision", *QWEN])
async def test_each_family_runs_all_three_tools(
    model_type: str, onevision: Path, qwen: dict[str, Path], tmp_path: Path, h264_mp4: Path
) -> None:
    folder = onevision if model_type == "onevision" else qwen[model_type]
    settings = Settings(model=str(folder), device="cpu", cache_dir=tmp_path / "cache", asr_model="none")
    async with Client(build_server(settings)) as client:
        described = await call(client, "describe_video", source=str(h264_mp4), num_frames=4, max_new_tokens=4)
        assert len(described.videos[0].frames) == 4
        assert described.tokens.prompt is not None
        assert described.tokens.prompt > 4 * 4
        compared = await call(
            client, "compare_videos", sources=[str(h264_mp4), str(h264_mp4)], question="Same?", max_new_tokens=2
        )
        assert len(compared.videos) == 2
        watched = await call(
            client, "describe_video", source=str(h264_mp4), coverage="full", num_frames=2, max_new_tokens=2
        )
        assert watched.segments
        result = await client.call_tool("find_moments", {"source": str(h264_mp4), "query": "the bar", "max_moments": 1})
        assert not result.is_error, error_text(result)
        found = MomentsAnswer.model_validate(result.structured_content)
    assert 1 <= len(found.moments) <= 1
    assert described.model.id == str(folder)


def test_an_unsupported_family_is_refused_at_start_with_the_list(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "idefics3"}))
    with pytest.raises(ConfigError) as refused:
        check(Settings(model=str(tmp_path), asr_model="none"))
    said = str(refused.value)
    assert "holds a 'idefics3' model, which this server does not run in process" in said
    assert all(f"{family.name} ('{family.model_type}')" in said for family in FAMILIES)
