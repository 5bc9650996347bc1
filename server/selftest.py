"""`llava-video-mcp selftest`: the three tools, run on this machine in a minute, without the 1.7 GB download.

It builds a tiny llava-interleave and a tiny Whisper of the real architectures (random weights, the real token
layouts), makes a video with sound and one with subtitles beside it (PyAV), all with the makers the tests use
(`llava_video_mcp.testing`), starts the real server in memory with them and calls describe_video, compare_videos
and find_moments through the real MCP client, printing what each returned and how long it took. The answers are
noise, and it says so: what it shows is that decoding, hearing, the model and the tools work here. Everything it
makes is in a temporary folder, removed after.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.plural import plural

SUBTITLES = "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nA red kite lands on the fence.\n"


def run(settings: Settings) -> int:
    """Build, serve, call each tool; the exit status (0 when all three answered)."""
    import anyio

    from llava_video_mcp.testing.media import make_video
    from llava_video_mcp.testing.tiny_llava import build_llava
    from llava_video_mcp.testing.tiny_whisper import build_whisper

    say = print
    say("llava-video-mcp selftest: random tiny models of the real architectures (llava-interleave and Whisper, not")
    say("their weights), so the answers below are noise; what counts is that every step runs on this machine.")
    with tempfile.TemporaryDirectory(prefix="llava-video-mcp-selftest-") as work:
        root = Path(work)
        started = time.perf_counter()
        llava = build_llava(root / "tiny-llava")
        whisper = build_whisper(root / "tiny-whisper", max_length=24)
        talk = make_video(root / "talk.mp4")
        other = make_video(root / "other.mp4", seconds=5, sound=False)
        subtitled = make_video(root / "kite.mp4", sound=False)
        subtitled.with_suffix(".vtt").write_text(SUBTITLES)
        say(f"  built the models and 3 videos in {time.perf_counter() - started:.1f} s")
        local = settings.model_copy(
            update={"model": str(llava), "asr_model": str(whisper), "cache_dir": root / "cache", "endpoint": None,
                    "asr_endpoint": None, "allow_dirs": (), "preload": False}
        )  # fmt: skip
        calls = [
            ("describe_video", {"source": str(talk), "question": "What happens?", "num_frames": 4,
                                "max_new_tokens": 16}),
            ("compare_videos", {"sources": [str(talk), str(other)], "question": "Which is longer?",
                                "frames_per_video": 2, "max_new_tokens": 16}),
            ("find_moments", {"source": str(subtitled), "query": "the red kite lands", "max_moments": 1}),
        ]  # fmt: skip
        results = anyio.run(_calls, local, calls)
    failed = 0
    for (tool, _), (seconds, result) in zip(calls, results, strict=True):
        if result.get("error"):
            failed += 1
            say(f"  {tool}: FAILED in {seconds:.1f} s: {result['error']}")
        else:
            say(f"  {tool}: {seconds:.1f} s; {_summary(tool, result)}")
    if failed:
        say(f"{failed} of 3 tools failed: see above, and run with --verbose for the log.")
        return 1
    say("All three tools ran. For real answers, run the server: the first call downloads the real model (1.7 GB).")
    return 0


async def _calls(settings: Settings, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[float, dict[str, Any]]]:
    from mcp import Client

    from llava_video_mcp.server.app import build_server

    done = []
    async with Client(build_server(settings)) as client:
        for tool, arguments in calls:
            started = time.perf_counter()
            result = await client.call_tool(tool, arguments)
            seconds = time.perf_counter() - started
            if result.is_error:
                text = " ".join(getattr(block, "text", "") for block in result.content)
                done.append((seconds, {"error": text}))
            else:
                done.append((seconds, dict(result.structured_content or {})))
    return done


def _summary(tool: str, result: dict[str, Any]) -> str:
    if tool == "find_moments":
        moments = result.get("moments", [])
        first = moments[0] if moments else {}
        found = plural(len(moments), "moment")
        return f"{found}, {first.get('start_s')}-{first.get('end_s')} s, {first.get('description')!r}"
    videos = result.get("videos", [])
    frames = sum(len(v.get("frames", [])) for v in videos)
    heard = sum(len(v.get("transcript") or []) for v in videos)
    languages = {v.get("speech_language") for v in videos if v.get("speech_language")}
    told = ", ".join(sorted(languages))
    listened = any("sound without words" in (v.get("note") or "") for v in videos)
    speech = f"{plural(heard, 'cue')} heard (speech in {told})" if heard else "no speech heard"
    if not heard and listened:  # random weights' noise at the edge of Whisper's no-speech test: it did listen
        speech = "the speech model listened and heard no words"
    answer = json.dumps(str(result.get("answer", ""))[:40], ensure_ascii=True)
    return f"{plural(frames, 'frame')} seen, {speech}; answer {answer}"
