"""Follow-up questions reuse the attention state of the frames, and answer exactly as a cold call would."""

from __future__ import annotations

from pathlib import Path

import pytest

from llava_video_mcp.tools.answer import VideoQA
from llava_video_mcp.tools.backends import BackendConfig, LazyBackend, Prompt
from llava_video_mcp.tools.backends.prefix_cache import PrefixCache
from llava_video_mcp.tools.backends.transformers import TransformersBackend
from llava_video_mcp.tools.errors import LimitError
from llava_video_mcp.tools.frames import media_duration
from llava_video_mcp.tools.media import VideoFetcher
from tests.llava_builder import build_llava
from tests.support import GUIDE, frames_of


def ask(backend: TransformersBackend, images: list, question: str) -> tuple[list[int], int]:  # type: ignore[type-arg]
    generation = backend.generate(Prompt(images, GUIDE + question, question_start=len(GUIDE)), max_new_tokens=12)
    return generation.token_ids, generation.reused_tokens


def test_follow_up_equals_a_cold_call(tiny_model: Path, h264_mp4: Path) -> None:
    images = frames_of(h264_mp4, 6)
    warm = TransformersBackend.load(str(tiny_model), device="cpu")
    _, reused_first = ask(warm, images, "What moves?")
    follow_up, reused = ask(warm, images, "And what colour is it?")
    cold, cold_reused = ask(TransformersBackend.load(str(tiny_model), device="cpu"), images, "And what colour is it?")
    assert reused_first == cold_reused == 0
    assert reused > 6 * 16  # every image token and the frame description
    assert follow_up == cold
    again, _ = ask(warm, images, "What moves?")
    assert again == ask(TransformersBackend.load(str(tiny_model), device="cpu"), images, "What moves?")[0]


def test_other_frames_or_models_never_hit(tiny_model: Path, h264_mp4: Path, vp9_webm: Path, tmp_path: Path) -> None:
    backend = TransformersBackend.load(str(tiny_model), device="cpu")
    ask(backend, frames_of(h264_mp4, 6), "Q?")
    assert ask(backend, frames_of(vp9_webm, 6, end=2.0), "Q?")[1] == 0  # another video
    assert ask(backend, frames_of(h264_mp4, 6, start=1.0), "Q?")[1] == 0  # another frame plan
    other = TransformersBackend.load(str(build_llava(tmp_path / "other", seed=1)), device="cpu")
    assert ask(other, frames_of(h264_mp4, 6), "Q?")[1] == 0  # another model
    assert ask(backend, frames_of(h264_mp4, 6), "Q!")[1] > 0


def test_prefix_cache_is_bounded() -> None:
    cache = PrefixCache(max_bytes=100)
    cache.put("a", "state-a", 60)
    cache.put("b", "state-b", 60)  # over the bound: "a", least recently used, goes
    assert cache.take("a") is None
    assert cache.take("b") is not None
    cache.put("huge", "state", 101)
    assert cache.take("huge") is None


def test_follow_up_through_the_tool_says_it_reused(tiny_model: Path, h264_mp4: Path, tmp_path: Path) -> None:
    qa = VideoQA(
        VideoFetcher(tmp_path, inspect=media_duration), LazyBackend(BackendConfig(model=str(tiny_model), device="cpu"))
    )
    first = qa.describe(str(h264_mp4), "What moves?", num_frames=4, max_new_tokens=4)
    second = qa.describe(str(h264_mp4), "Which way?", num_frames=4, max_new_tokens=4)
    assert first.tokens.reused == 0
    assert second.tokens.reused > 4 * 16
    assert second.tokens.prompt > second.tokens.reused


def test_context_budget_is_checked_before_encoding(tmp_path: Path, h264_mp4: Path) -> None:
    small = build_llava(tmp_path / "small-context", context=400)
    qa = VideoQA(
        VideoFetcher(tmp_path / "cache", inspect=media_duration),
        LazyBackend(BackendConfig(model=str(small), device="cpu")),
    )
    with pytest.raises(LimitError, match=r"over this model's context of 400\. At most \d+ frames fit") as refused:
        qa.describe(str(h264_mp4), "What happens?", num_frames=16, max_new_tokens=64)
    fitting = int(str(refused.value).split("At most ")[1].split(" ")[0])
    assert 0 < fitting < 16
    answer = qa.describe(str(h264_mp4), "What happens?", num_frames=fitting, max_new_tokens=64)
    assert len(answer.videos[0].frames) == fitting


def test_a_longer_follow_up_grows_the_cache_and_still_matches(tiny_model: Path, h264_mp4: Path) -> None:
    images = frames_of(h264_mp4, 6)
    question = "Describe everything, at length."
    prompt = Prompt(images, GUIDE + question, question_start=len(GUIDE))
    warm = TransformersBackend.load(str(tiny_model), device="cpu", headroom=4)
    warm.generate(Prompt(images, GUIDE + "Short?", question_start=len(GUIDE)), max_new_tokens=2)
    long_answer = warm.generate(prompt, max_new_tokens=40)  # past the first call's cache and its small headroom
    cold = TransformersBackend.load(str(tiny_model), device="cpu").generate(prompt, max_new_tokens=40)
    assert long_answer.reused_tokens > 0
    assert long_answer.token_ids == cold.token_ids


def test_compiled_decoding_is_asked_for_and_uses_cuda_graphs_on_cuda() -> None:
    from llava_video_mcp.server.settings import Settings
    from llava_video_mcp.tools.backends.transformers import COMPILED_SLOTS, decode_compile_config

    assert decode_compile_config("cuda", False) is None
    on_cuda = decode_compile_config("cuda", True)
    assert on_cuda.mode == "reduce-overhead"  # CUDA graphs: the decoding step replayed, not relaunched per kernel
    assert not on_cuda._compile_all_devices
    assert decode_compile_config("cpu", True)._compile_all_devices
    assert COMPILED_SLOTS % 256 == 0
    assert not Settings().backend_config().compile_decode
    assert Settings(compile_decode=True).backend_config().compile_decode


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, from inside its compiler
def test_compiled_decoding_gives_the_same_tokens(tiny_model: Path, h264_mp4: Path) -> None:
    """The compiled decoding step over the static cache answers token for token as the eager one, first call and
    follow-up (whose prefix is reused); its cache length comes in COMPILED_SLOTS steps, one graph per step. Slow:
    inductor compiles on the CPU for about a minute, so it runs with -m slow (and compiled on CUDA with -m gpu)."""
    from llava_video_mcp.tools.backends.transformers import COMPILED_SLOTS

    images = frames_of(h264_mp4, 6)
    eager = TransformersBackend.load(str(tiny_model), device="cpu", dtype="float32", compile_decode=False)
    compiled = TransformersBackend.load(str(tiny_model), device="cpu", dtype="float32", compile_decode=True)
    assert compiled.compile_config is not None
    for question in ("What moves?", "Which way?"):
        expected, _ = ask(eager, images, question)
        got, reused = ask(compiled, images, question)
        assert got == expected
    assert reused > 0
    [(kept, _)] = compiled.prefixes.kept()
    assert int(kept.layers[0].get_max_length()) % COMPILED_SLOTS == 0
