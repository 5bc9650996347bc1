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
from llava_video_mcp.server.cli import parse_settings
from llava_video_mcp.server.settings import ConfigError, Settings
from llava_video_mcp.testing.tiny_llava import build_onevision
from llava_video_mcp.testing.tiny_qwen import build_qwen
from llava_video_mcp.tools.answer import MomentsAnswer
from llava_video_mcp.tools.backends.base import Prompt
from llava_video_mcp.tools.backends.families import FAMILIES, FrameCost, LlavaOnevision, family_of
from llava_video_mcp.tools.backends.families.onevision import VideoProcessing
from llava_video_mcp.tools.backends.transformers import TransformersBackend
from tests.support import call, error_text


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
    assert family.cost == type(family).nominal_cost  # the tiny models keep the released patch and merge sizes
    answer = backend.generate(prompt, 4)
    assert answer.prompt_tokens == inputs["input_ids"].shape[1]
    assert answer.reused_tokens == 0  # each call reads its whole prompt (3-D positions live on the model)


@pytest.mark.anyio
@pytest.mark.parametrize("model_type", ["onevision", *QWEN])
async def test_each_family_runs_all_three_tools(
    model_type: str, onevision: Path, qwen: dict[str, Path], tmp_path: Path, h264_mp4: Path
) -> None:
    folder = onevision if model_type == "onevision" else qwen[model_type]
    settings = Settings(
        ocr_engine="none", model=str(folder), device="cpu", cache_dir=tmp_path / "cache", asr_model="none"
    )
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


async def described(settings: Settings) -> str:
    async with Client(build_server(settings)) as client:
        listed = await client.list_tools()
    return next(tool.description or "" for tool in listed.tools if tool.name == "describe_video")


@pytest.mark.anyio
async def test_the_tools_say_what_a_frame_costs_the_running_family(
    tiny_model: Path, onevision: Path, tmp_path: Path
) -> None:
    """The figures are the families' own declarations (the released checkpoints'), known before a model loads: the
    tiny models' smaller towers do not change them, and a Qwen-VL folder needs only its config to be told."""
    (tmp_path / "qwen3").mkdir()
    (tmp_path / "qwen3" / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    figures = {
        tiny_model: "The model (llava-interleave) sees num_frames frames at 384 px, 729 tokens a frame:",
        onevision: "The model (llava-onevision) sees num_frames frames at 384 px, 196 tokens a frame:",
        tmp_path / "qwen3": "The model (qwen3-vl) sees num_frames frames at 384 px, about 252 tokens a frame:",
    }
    for folder, said in figures.items():
        settings = Settings(
            ocr_engine="none", model=str(folder), device="cpu", cache_dir=tmp_path / "cache", asr_model="none"
        )
        assert said in await described(settings)


@pytest.mark.anyio
async def test_an_engines_frame_cost_is_the_one_set_for_it(tmp_path: Path) -> None:
    """No family is picked for a model on an engine (it reads frames with its own processor): --frame-cost says
    what a frame costs there, and without it the description states no figure. The tool list is read without the
    lifespan, which would connect to the engine."""
    engine = {"endpoint": "http://127.0.0.1:9/v1", "model": "llava-hf/llava-onevision-qwen2-7b-ov-hf"}
    costed = build_server(Settings(**engine, frame_cost=(448, 256), cache_dir=tmp_path))
    [tool] = [tool for tool in await costed.list_tools() if tool.name == "describe_video"]
    said = "The model (on a serving engine) sees num_frames frames at 448 px, 256 tokens a frame:"
    assert said in (tool.description or "")
    plain = build_server(Settings(**engine, cache_dir=tmp_path))
    [tool] = [tool for tool in await plain.list_tools() if tool.name == "describe_video"]
    assert "sees num_frames frames:" in (tool.description or "")
    assert "tokens" not in (tool.description or "")
    with pytest.raises(ConfigError, match=r"^--frame-cost 448:256: is for a model on a serving engine"):
        parse_settings(["--frame-cost", "448:256"], {})


def test_each_family_declares_what_a_frame_costs_before_loading() -> None:
    declared = {family.name: family.nominal_cost for family in FAMILIES if "nominal_cost" in vars(family)}
    assert declared == {
        "llava-interleave": FrameCost(384, 729),
        "llava-onevision": FrameCost(384, 196, tokens_per_prompt=1),
        "qwen2-vl": FrameCost(384, 336, approximate=True),
        "qwen2.5-vl": FrameCost(384, 336, approximate=True),
        "qwen3-vl": FrameCost(384, 252, approximate=True),
    }
    released = {
        "llava-hf/llava-interleave-qwen-0.5b-hf": "llava-interleave",
        "llava-hf/llava-onevision-qwen2-7b-ov-hf": "llava-onevision",
        "Qwen/Qwen2-VL-2B-Instruct": "qwen2-vl",
        "Qwen/Qwen2.5-VL-3B-Instruct": "qwen2.5-vl",
        "Qwen/Qwen3-VL-2B-Instruct": "qwen3-vl",
    }
    for model_id, name in released.items():  # not in the (offline) hub cache: told by the id
        family = family_of(model_id)
        assert family is not None
        assert family.name == name
    assert family_of("someone/some-model") is None
