"""find_moments through the real MCP client, on a video made here with six scenes whose cuts fall between keyframes,
and subtitles beside it.

Most tests give the model's part to `Scripted`, a stand-in (a FakeBackend that answers by what it is asked: notes,
a ranking, which frames), so that what the search does with each reply can be checked; the last runs the real
(tiny, random) llava end to end, whose replies are noise: the result must still be sane.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import ImageContent

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer import MomentsAnswer
from llava_video_mcp.tools.backends import Ready
from tests.media import cut_scenes
from tests.support import LENGTHS, SUBTITLES, NeverLoaded, Scripted, call, error_text, moments, served

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def garden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("garden")
    path = folder / "garden.mp4"
    cut_scenes(path, LENGTHS, gop_s=3.3)
    (folder / "garden.vtt").write_text(SUBTITLES)
    return path


@pytest.fixture
async def scripted(tmp_path: Path) -> AsyncIterator[tuple[Client, Scripted]]:
    model = Scripted()
    async with served(tmp_path, Ready(model)) as client:
        yield client, model


def assert_sane(answer: MomentsAnswer, start: float = 0.0, end: float = 60.0) -> None:
    assert answer.moments
    for moment in answer.moments:
        assert start <= moment.start_s < moment.end_s <= end + 1e-6
        assert moment.frames
        assert all(moment.start_s - 1e-6 <= t <= moment.end_s + 1e-6 for t in moment.frames)
        assert moment.description


async def test_a_subtitled_phrase_is_found_where_it_is(scripted: tuple[Client, Scripted], garden: Path) -> None:
    client, _ = scripted
    found = await moments(client, source=str(garden), query="red kite lands")
    first = found.moments[0]
    assert (first.start_s, first.end_s) == (20.0, 22.5)
    assert first.description == 'Said: "The red kite lands on the fence."'
    assert first.basis[0] == "subtitles"
    assert_sane(found)


async def test_words_that_hold_every_moment_asked_for_need_no_model(tmp_path: Path, garden: Path) -> None:
    model = Scripted()
    async with served(tmp_path, NeverLoaded(model)) as client:
        found = await moments(client, source=str(garden), query="red kite lands", max_moments=1)
    assert [(m.start_s, m.end_s, m.basis) for m in found.moments] == [(20.0, 22.5, ["subtitles"])]
    assert found.model is None
    assert model.prompts == []  # no window watched, nothing ranked
    assert found.tokens.generated == 0
    note = found.videos[0].note or ""
    assert "no model ran" in note
    assert "1 moment " in note
    assert_sane(found)


async def test_windows_are_ranked_then_looked_at_closer(scripted: tuple[Client, Scripted], garden: Path) -> None:
    client, model = scripted
    found = await moments(client, source=str(garden), query="a blue door", max_moments=2)
    assert model.asked("Which parts show or mention") == 1
    assert model.asked("In which of these frames") == 2
    windows = found.videos[0]
    assert windows.note is not None
    third, first = found.moments  # the ranking said 3, then 1
    assert third.basis == first.basis == ["frames"]
    assert third.description == "The kite spreads its wings."
    assert len(third.frames) == 2  # the look named frames 2 and 3: the range is trimmed to them
    assert 15.0 <= third.start_s < third.end_s <= 25.0  # inside the third window, [15, 25]
    assert first.end_s <= 10.0
    assert_sane(found)


async def test_the_range_is_kept_to(scripted: tuple[Client, Scripted], garden: Path) -> None:
    client, _ = scripted
    found = await moments(client, source=str(garden), query="the fence", start_s=12, end_s=40, max_moments=3)
    assert_sane(found, 12.0, 40.0)
    crossing = await moments(client, source=str(garden), query="red kite lands", start_s=21, end_s=40)
    assert (crossing.moments[0].start_s, crossing.moments[0].end_s) == (21.0, 22.5)  # the cue, cut at the range
    assert_sane(crossing, 21.0, 40.0)


async def test_replies_naming_nothing_still_give_a_moment(tmp_path: Path, garden: Path) -> None:
    model = Scripted(ranking="none of them", look="I cannot tell.")
    async with served(tmp_path, Ready(model)) as client:
        found = await moments(client, source=str(garden), query="a bird flies")
    assert len(found.moments) == 1
    assert found.moments[0].basis == ["frames"]
    assert_sane(found)


async def test_a_contact_sheet_on_request(scripted: tuple[Client, Scripted], garden: Path) -> None:
    client, _ = scripted
    result = await client.call_tool(
        "find_moments", {"source": str(garden), "query": "a blue door", "return_frames": "sheet"}
    )
    assert not result.is_error, error_text(result)
    assert len([block for block in result.content if isinstance(block, ImageContent)]) == 1


async def test_the_notes_of_a_full_watch_are_reused(scripted: tuple[Client, Scripted], garden: Path) -> None:
    client, model = scripted
    watched = await call(client, "describe_video", source=str(garden), coverage="full", num_frames=8)
    windows = len(watched.segments or [])
    before = len(model.prompts)
    found = await moments(client, source=str(garden), query="a blue door", max_moments=1)
    assert found.segments_from_cache == windows
    assert len(model.prompts) - before == 2  # the ranking and one look: no window watched again
    again = await moments(client, source=str(garden), query="the garden")
    assert again.segments_from_cache == windows


async def test_notes_are_reused_whatever_frames_the_watch_used(scripted: tuple[Client, Scripted], garden: Path) -> None:
    client, model = scripted
    watched = await call(client, "describe_video", source=str(garden), coverage="full", num_frames=4)
    windows = len(watched.segments or [])
    before = len(model.prompts)
    found = await moments(client, source=str(garden), query="a blue door", max_moments=1)
    assert found.segments_from_cache == windows
    assert len(model.prompts) - before == 2  # the ranking and one look
    assert found.videos[0].note is not None
    assert f"{windows} windows watched" in found.videos[0].note
    more = await call(client, "describe_video", source=str(garden), coverage="full", num_frames=6)
    assert more.segments_from_cache == 0  # 4 frames a window is less than asked: watched again, with 6
    fewer = await call(client, "describe_video", source=str(garden), coverage="full", num_frames=5)
    assert fewer.segments_from_cache == windows  # notes from 6 frames serve a call asking for 5


async def test_bad_arguments_are_refused_clearly(scripted: tuple[Client, Scripted], garden: Path) -> None:
    client, _ = scripted
    cases = [
        ({"query": ""}, "query"),
        ({"query": "  \n "}, "find_moments needs a query"),
        ({"query": "x", "max_moments": 11}, "max_moments"),
        ({"query": "x", "start_s": 70}, "past the end of the video"),
        ({"query": "x", "start_s": 30, "end_s": 20}, "must be greater than start_s"),
    ]
    for arguments, says in cases:
        result = await client.call_tool("find_moments", {"source": str(garden), **arguments})
        assert result.is_error, arguments
        assert says in error_text(result), (arguments, error_text(result))


async def test_the_real_model_end_to_end(tiny_model: Path, tmp_path: Path, garden: Path) -> None:
    settings = Settings(
        ocr_engine="none",
        model=str(tiny_model),
        device="cpu",
        cache_dir=tmp_path / "cache",
        asr_model="none",
        window_s=30,
    )
    async with Client(build_server(settings)) as client:
        found = await moments(client, source=str(garden), query="the red kite", max_moments=2)
    assert found.moments[0].basis[0] == "subtitles"
    assert_sane(found)
    assert found.model.id == str(tiny_model)
