"""A video's sound as speech recognition takes it: mono float32 at 16 kHz, in 30 s blocks on the video's own
timeline (block k is seconds [30k, 30k + 30) from the first video frame), decoded with PyAV and its resampler.

Blocks are decoded on demand, one at a time, so memory stays flat in the audio's length; a broken packet is
skipped (its stretch stays silent); a stream with no decoder is treated as no audio. Sound of more than 8 channels
is mixed down to mono, every channel alike, before resampling (the resampler cannot be set up for most counts
above 8 in no named layout: 9, 11, 13, 17-23, 25-64); past 64 channels it cannot be heard (FFmpeg mixes no more).
Samples that are not numbers (NaN, infinity: a damaged float track) count as silence. The audio may come from the
video's own file or from a separate file (a site that serves sound apart): both are placed on the video's
timeline by their streams' start times. A block whose level says nothing is there (below `SILENCE_DBFS`) is
silent: no model is asked to hear it, since speech models write text over silence.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.audio.resampler
import av.audio.stream
import av.error
import av.filter
import numpy as np

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError
from llava_video_mcp.tools.frames._containers import ffmpeg_reason, open_input, open_video

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
BLOCK_S = 30.0
"""Whisper's window: every block is heard on its own, and kept on its own."""
EDGE_SEARCH_S = 5.0
"""How far before its nominal start a block may begin, to begin in a pause."""
SILENCE_DBFS = -50.0
"""Below this RMS level a block holds no speech a model could hear (room tone, hiss, digital silence)."""
RESAMPLED_CHANNELS = 8
"""Up to this many channels the resampler mixes down (with the layout's weights); more are mixed first."""
MIXED_CHANNELS = 64
"""The most channels FFmpeg's `pan` filter mixes."""


@dataclass(frozen=True)
class AudioTrack:
    """Where a video's sound is, and where it lies on the video's timeline."""

    path: Path
    stream_index: int
    offset_s: float
    """Seconds from the video's first frame to the audio's first sample (negative when the sound starts first)."""
    duration_s: float
    """Length of the sound on the video's timeline, counted from the video's first frame."""

    def block_length_s(self, number: int) -> float:
        """How long block `number` is: 30 s, or less where the sound ends (to the sample)."""
        length_s = min(BLOCK_S, max(self.duration_s - number * BLOCK_S, 0.0))
        return round(length_s * SAMPLE_RATE) / SAMPLE_RATE

    def blocks(self, start_s: float, end_s: float) -> range:
        """The block numbers that hold any of [start_s, end_s), within the sound."""
        end = min(end_s, self.duration_s)
        if end <= start_s:
            return range(0)
        return range(max(int(start_s // BLOCK_S), 0), math.ceil(end / BLOCK_S))


def audio_track(video: Path, audio: Path | None, name: str) -> AudioTrack | None:
    """The video's sound (from `audio` when the site served it apart), or None when there is none the server
    can decode."""
    with open_video(video, name) as container:
        stream = container.streams.video[0]
        video_start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
        if audio is None:
            return _track(container, video, video_start)
    with open_input(audio, name) as container:
        return _track(container, audio, video_start)


def _track(container: av.container.InputContainer, path: Path, video_start: float) -> AudioTrack | None:
    streams = [s for s in container.streams.audio if s.codec_context is not None]
    if not streams:
        return None
    stream = streams[0]
    time_base = stream.time_base
    start = float(stream.start_time * time_base) if stream.start_time is not None and time_base else 0.0
    if stream.duration is not None and time_base:
        length = float(stream.duration * time_base)
    elif container.duration is not None:
        length = container.duration / av.time_base - max(start, 0.0)
    else:
        length = 0.0
    offset = start - video_start
    return AudioTrack(path, stream.index, offset, max(offset + length, 0.0))


def decode_block(track: AudioTrack, number: int, cancel: CancelToken | None = None) -> np.ndarray:
    """Block `number` as mono float32 at SAMPLE_RATE, up to 30 s and no further than the sound lasts; silence where
    the sound has none (before it starts, across a broken packet, where a sample is not a number); DecodeError when
    the sound has more channels than can be mixed down."""
    return decode_span(track, number * BLOCK_S, (number + 1) * BLOCK_S, cancel)


def block_edge(track: AudioTrack, number: int, cancel: CancelToken | None = None) -> float:
    """Where block `number` starts on the video's timeline: the quietest moment of the EDGE_SEARCH_S before
    30 s x `number` (0.0 for the first block), so that a block rarely cuts a word in two. It is found in a decode of
    that stretch alone, the same whichever call asks, so that blocks heard by different calls meet."""
    nominal = number * BLOCK_S
    if number <= 0:
        return 0.0
    if nominal >= track.duration_s:
        return track.duration_s
    return quiet_edge(decode_span(track, nominal - EDGE_SEARCH_S, nominal, cancel), nominal - EDGE_SEARCH_S, number)


def quiet_edge(samples: np.ndarray, start_s: float, number: int) -> float:
    """Block `number`'s start (see `block_edge`) found in `samples`, decoded from `start_s`, which hold the
    EDGE_SEARCH_S before its 30 s mark."""
    nominal = number * BLOCK_S
    first = max(nominal - EDGE_SEARCH_S, 0.0)
    step = SAMPLE_RATE // 100
    at = round((first - start_s) * SAMPLE_RATE)
    stretch = samples[max(at, 0) : max(at, 0) + round((nominal - first) * SAMPLE_RATE)]
    usable = len(stretch) // step * step
    if usable < 10 * step:
        return nominal
    frames = np.square(stretch[:usable], dtype=np.float64).reshape(-1, step).mean(axis=1)
    smooth = np.convolve(frames, np.ones(10) / 10, mode="valid")  # 100 ms of level, centred 50 ms on
    quietest = len(smooth) - 1 - int(np.argmin(smooth[::-1]))  # the latest of equally quiet moments
    return first + (quietest + 5) * step / SAMPLE_RATE


def decode_span(track: AudioTrack, start_s: float, end_s: float, cancel: CancelToken | None = None) -> np.ndarray:
    """[start_s, end_s) of the video's timeline as mono float32 at SAMPLE_RATE, no further than the sound lasts;
    silence where the sound has none (before it starts, across a broken packet, where a sample is not a number);
    DecodeError when the sound has more channels than can be mixed down."""
    start_s = max(start_s, 0.0)
    length_s = min(end_s, track.duration_s) - start_s
    block = np.zeros(max(round(length_s * SAMPLE_RATE), 0), dtype=np.float32)
    if not len(block):
        return block
    with open_input(track.path, track.path.name) as container:
        stream = container.streams[track.stream_index]
        assert isinstance(stream, av.audio.stream.AudioStream)
        source_start = start_s - track.offset_s  # on the audio stream's own clock, from its first sample
        first = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
        if source_start > 1.0 and stream.time_base:
            container.seek(round((first + source_start - 1.0) / stream.time_base), stream=stream, backward=True)
        for time_s, samples in _resampled(container, stream, cancel):
            at = round((time_s - first - source_start) * SAMPLE_RATE)
            if at >= len(block):
                break
            if at + len(samples) <= 0:
                continue
            piece = samples[max(-at, 0) :]
            at = max(at, 0)
            block[at : at + len(piece)] = piece[: len(block) - at]
    np.nan_to_num(block, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return block


def _resampled(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, cancel: CancelToken | None
) -> Iterator[tuple[float, np.ndarray]]:
    """(start time in seconds, mono 16 kHz samples) of each decoded frame, the resampler flushed at the end."""
    resampler = av.audio.resampler.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    mixer: _Mixer | None = None
    next_time: float | None = None
    for packet in container.demux(stream):
        if cancel is not None:
            cancel.check()
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            log.debug("skipping an undecodable audio packet: %s", ffmpeg_reason(exc))
            next_time = None
            continue
        for frame in frames:
            if frame.time is not None and next_time is None:
                next_time = float(frame.time)
            if frame.layout.nb_channels > RESAMPLED_CHANNELS:
                mixer = mixer or _Mixer(frame)
                mixed = mixer.mix(frame)
            else:
                mixed = [frame]
            for out in (out for one in mixed for out in resampler.resample(one)):
                samples = out.to_ndarray().reshape(-1)
                if next_time is not None:
                    yield next_time, samples
                    next_time += len(samples) / SAMPLE_RATE
    for out in resampler.resample(None):
        samples = out.to_ndarray().reshape(-1)
        if next_time is not None:
            yield next_time, samples
            next_time += len(samples) / SAMPLE_RATE


class _Mixer:
    """Frames of many channels mixed down to mono (their mean) by FFmpeg's `pan` filter, at their own rate. The
    frames are never read as arrays here: PyAV reads planar frames of more than 8 channels past their end."""

    def __init__(self, frame: av.AudioFrame) -> None:
        channels = frame.layout.nb_channels
        if channels > MIXED_CHANNELS:
            raise DecodeError(
                f"The sound has {channels} channels; at most {MIXED_CHANNELS} can be mixed down to be heard. "
                "Pass a version of the video with fewer audio channels."
            )
        self._graph = av.filter.Graph()
        source = self._graph.add(
            "abuffer",
            sample_rate=str(frame.sample_rate),
            sample_fmt=frame.format.name,
            channels=str(channels),
            time_base=str(frame.time_base or f"1/{frame.sample_rate}"),
        )
        weights = "+".join(f"{1 / channels:.8f}*c{i}" for i in range(channels))
        pan = self._graph.add("pan", f"mono|c0={weights}")
        sink = self._graph.add("abuffersink")
        source.link_to(pan)
        pan.link_to(sink)
        try:
            self._graph.configure()
        except av.error.FFmpegError as exc:
            raise DecodeError(
                f"The sound's {channels} channels could not be mixed down ({ffmpeg_reason(exc)})."
            ) from exc

    def mix(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        self._graph.push(frame)
        mixed: list[av.AudioFrame] = []
        while True:
            try:
                out = self._graph.pull()
            except (av.error.BlockingIOError, EOFError):
                return mixed
            assert isinstance(out, av.AudioFrame)
            mixed.append(out)


def level_dbfs(samples: np.ndarray) -> float:
    """The block's RMS level, in dB below full scale, over the samples that are numbers."""
    finite = samples[np.isfinite(samples)]
    rms = float(np.sqrt(np.mean(np.square(finite, dtype=np.float64)))) if len(finite) else 0.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def is_silent(samples: np.ndarray) -> bool:
    return level_dbfs(samples) < SILENCE_DBFS
