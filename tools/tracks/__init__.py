"""Stage 5, a video -> what a range of it says or shows, as timed text: one `Track` a sense (subtitles, speech heard
where there are none), the registry of those a server reads (`Tracks`), and their blocks kept beside the cached
video (`store`).

    base.py       Track (name, heading, basis, needs: media's `Needs`, read), Tracks (read_all, needs), options
    store.py      a track's blocks on disk, per track and model, written whole or not at all
    subtitles.py  a site's subtitles, or a subtitle file beside a local video
    speech.py     speech heard by a speech model (`backends`), where there are no subtitles
    on_screen.py  text shown on screen, read by an OCR engine (`backends.ocr`) where the picture changed

A new track is one module here (a `Track` subclass, its engine in `backends/`) and a place in the server's `Tracks`
(server/components.py): the prompt renders it and find_moments searches it with no other edit.
"""

from llava_video_mcp.tools.media import Needs
from llava_video_mcp.tools.tracks.base import (
    WITH_TRANSCRIPT,
    Basis,
    Said,
    Track,
    Tracks,
    TranscriptOptions,
)
from llava_video_mcp.tools.tracks.on_screen import OnScreenTrack
from llava_video_mcp.tools.tracks.speech import SpeechTrack
from llava_video_mcp.tools.tracks.store import BlockStore
from llava_video_mcp.tools.tracks.subtitles import SubtitlesTrack

__all__ = [
    "WITH_TRANSCRIPT",
    "Basis",
    "BlockStore",
    "Needs",
    "OnScreenTrack",
    "Said",
    "SpeechTrack",
    "SubtitlesTrack",
    "Track",
    "Tracks",
    "TranscriptOptions",
]
