"""The subtitles track: a site's subtitles in the language asked for, or a subtitle file beside a local video."""

from __future__ import annotations

from typing import ClassVar

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.media import LocalVideo, Needs
from llava_video_mcp.tools.progress import Progress, no_progress
from llava_video_mcp.tools.prompt import read_cues
from llava_video_mcp.tools.timeline import TrackText, in_range
from llava_video_mcp.tools.tracks.base import Basis, Said, Track, TranscriptOptions


class SubtitlesTrack(Track):
    name: ClassVar[str] = "subtitles"
    heading: ClassVar[str] = "Subtitles spoken"
    basis: ClassVar[Basis] = "subtitles"
    said: ClassVar[Said | None] = "subtitles"

    def needs(self, options: TranscriptOptions) -> Needs:
        return Needs(subtitles=options.subtitle_language)

    def read(
        self,
        video: LocalVideo,
        start_s: float,
        end_s: float,
        options: TranscriptOptions,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> TrackText:
        if not options.include:
            return self.nothing()
        return TrackText(self.name, self.heading, in_range(read_cues(video.subtitles), start_s, end_s))
