"""The pipeline without MCP, from a notebook or a script: python notebook.py VIDEO [MODEL]."""

import sys

from llava_video_mcp.tools.answer import VideoQA
from llava_video_mcp.tools.backends import BackendConfig, LazyBackend
from llava_video_mcp.tools.frames import media_duration
from llava_video_mcp.tools.media import VideoFetcher, default_cache_dir

video = sys.argv[1]
model = sys.argv[2] if len(sys.argv) > 2 else None  # None: the default llava-interleave-qwen-0.5b (1.7 GB)
fetcher = VideoFetcher(default_cache_dir(), inspect=media_duration)
# Subtitles only by default; tracks=Tracks([SubtitlesTrack(), SpeechTrack(LazySpeech(SpeechConfig())),
# OnScreenTrack(RapidOcr())]) hears speech with Whisper and reads the screen too (llava_video_mcp.tools.tracks).
qa = VideoQA(fetcher, LazyBackend(BackendConfig(model=model, device="cpu")))
answer = qa.describe(video, "What is moving?", num_frames=4, max_new_tokens=16)
print(answer.answer)
print([frame.timestamp_s for frame in answer.videos[0].frames])
