"""What the server and the terminal commands work with, built from the settings in one place: the fetcher (the
media stage, told how the frames stage reads a file), the model (loaded on first use, or an engine, or none at all
with `--model none`), the tracks read beside the frames (subtitles, and speech heard by the speech model, loaded on
first use too), and the questions' logic over them. The MCP app, the HTTP app and the terminal share it: a new
track is registered here."""

from __future__ import annotations

from dataclasses import dataclass

from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer import FRAME_SIDE, NoModel, VideoQA
from llava_video_mcp.tools.backends import LazyBackend, LazySpeech, ModelProvider
from llava_video_mcp.tools.backends.devices import pick_device
from llava_video_mcp.tools.backends.loader import model_summary
from llava_video_mcp.tools.backends.ocr import OcrOptions, load_engine
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.frames import image_facts, media_duration
from llava_video_mcp.tools.media import VideoFetcher
from llava_video_mcp.tools.tracks import SpeechTrack, SubtitlesTrack, Tracks
from llava_video_mcp.tools.tracks.on_screen import OnScreenTrack


@dataclass(frozen=True)
class Components:
    fetcher: VideoFetcher
    model: ModelProvider
    qa: VideoQA
    speech: LazySpeech

    def close(self) -> None:
        self.model.close()
        self.speech.close()


def on_screen_track(settings: Settings) -> OnScreenTrack:
    """The on-screen text track over the engine `--ocr-engine` names (checked at start: `server.checks`); without
    one, the track says so in the note of the calls that wanted it."""
    choice = settings.ocr_engine
    try:
        engine = load_engine(choice, OcrOptions(device=pick_device(settings.device)))
    except ModelError as exc:
        return OnScreenTrack(None, f"No on-screen text was read: {exc}", settings.ocr_max_frames)
    if engine is None and choice == "auto":
        return OnScreenTrack(None, "No on-screen text was read: no OCR engine is installed (pip install rapidocr "
                             "onnxruntime, or put tesseract on PATH).", settings.ocr_max_frames)  # fmt: skip
    return OnScreenTrack(engine, max_frames=settings.ocr_max_frames)


def build(settings: Settings, model: ModelProvider | None = None) -> Components:
    """The components for these settings; `model` when one is already up (started with --preload or --endpoint),
    never with --model none."""
    fetcher = VideoFetcher(
        settings.cache_dir,
        settings.fetch_policy(),
        cache_max_bytes=int(settings.cache_max_gb * 2**30),
        inspect=media_duration,
        inspect_image=image_facts,
    )
    if settings.looking_only:
        model = NoModel()
    elif model is None:
        model = LazyBackend(settings.backend_config())
    speech = LazySpeech(settings.speech_config())
    tracks = Tracks([SubtitlesTrack(), SpeechTrack(speech), on_screen_track(settings)])
    cost = None if settings.looking_only else model_summary(settings.backend_config()).frame_cost
    side = cost.side if cost is not None else FRAME_SIDE
    qa = VideoQA(fetcher, model, windows=settings.window_options(), tracks=tracks, frame_side=side)
    return Components(fetcher, model, qa, speech)
