"""Frame sampling with PyAV: choose the frames first, then decode only what holds them.

Choosing works on the packet index, built by demuxing the stream once without decoding: it gives every frame's
presentation timestamp (pts) and which packets are keyframes. Header fields are not trusted for this: webm
often states no frame count, mp4 edit lists make it wrong, and frame rates vary. The frame nearest each target
time is picked from the real pts, so reported timestamps are exact.

Decoding then seeks to the keyframe that opens each group of pictures (GOP) holding a chosen frame and decodes
forward only until the group's last chosen frame, so a few frames of a long video cost a few GOPs, not the whole
file. Where the index has no timestamps, or a seek lands somewhere useless (some MPEG-TS files), it falls back to
one sequential decode.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import struct
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import av.container
import av.error
import av.sidedata.sidedata
import av.video.frame
import av.video.stream
from PIL import Image

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError, LimitError
from llava_video_mcp.tools.frames.containers import open_input, prepare_video_stream

log = logging.getLogger(__name__)

MAX_FRAMES = 32
# Decoders that read skip_frame for each packet, so non-reference frames can be skipped around the wanted ones.
# libdav1d, for one, applies it late and keeps it: there it would drop wanted frames.
_PER_PACKET_SKIP_DECODERS = {"h264", "hevc"}
_STILL_IMAGE_FORMATS = {"image2", "apng", "webp_pipe"}


@dataclass(frozen=True)
class StreamInfo:
    """What the container says about its video stream, corrected by the packet index."""

    duration_s: float
    fps: float | None
    width: int
    height: int
    codec: str
    frame_count: int
    rotation: int = 0
    """Display rotation in degrees counter-clockwise; width and height are as displayed, after it."""
    mirrored: bool = False
    """The display matrix mirrors the picture (frames are mirrored back before the model sees them)."""
    restarts_s: tuple[float, ...] = ()
    """Where the stream's timestamps start again from a lower value (clips joined with restarting clocks), in
    seconds on the continuous timeline that `duration_s` and frame times follow."""
    stated_duration_s: float | None = None
    """The duration the header states, when the readable frames end well before it (a file cut short)."""


@dataclass(frozen=True)
class SamplingPlan:
    """Which frames to take: `num_frames` centred in equal slices of the range, or fewer by `fps`."""

    num_frames: int = 8
    start_s: float | None = None
    end_s: float | None = None
    fps: float | None = None
    """At most this many frames per second of the range; `num_frames` stays the cap."""
    keyframes_only: bool = False
    """Fast and approximate: the keyframe nearest each target, reported with its true timestamp."""
    min_side: int = 384

    def __post_init__(self) -> None:
        if not 1 <= self.num_frames <= MAX_FRAMES:
            raise LimitError(f"num_frames must be between 1 and {MAX_FRAMES}; got {self.num_frames}.")
        if self.fps is not None and self.fps <= 0:
            raise LimitError(f"fps must be greater than 0; got {self.fps}.")

    def frame_count(self, range_s: float) -> int:
        if self.fps is None:
            return self.num_frames
        return max(1, min(self.num_frames, math.floor(range_s * self.fps + 1e-9)))


@dataclass(frozen=True)
class SampledFrame:
    timestamp_s: float
    image: Image.Image


@dataclass(frozen=True)
class SampledVideo:
    info: StreamInfo
    start_s: float
    end_s: float
    frames_requested: int
    frames: list[SampledFrame]
    frames_decoded: int
    note: str | None = None
    """Why fewer frames than requested came back, when they did."""


@dataclass(frozen=True)
class _PacketIndex:
    """Presentation timestamps of a stream's frames, in decode order, with keyframe flags."""

    pts: list[int]
    keyframe: list[bool]
    last_duration: int

    def sorted_pts(self) -> list[int]:
        return sorted(self.pts)

    def sorted_keyframe_pts(self) -> list[int]:
        return sorted(pts for pts, key in zip(self.pts, self.keyframe, strict=True) if key)

    def to_bytes(self) -> bytes:
        return (
            struct.pack("<qq", len(self.pts), self.last_duration)
            + array("q", self.pts).tobytes()
            + bytes(self.keyframe)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> _PacketIndex:
        """The index saved by `to_bytes`; ValueError when the data is cut short or damaged."""
        if len(data) < 16:
            raise ValueError("truncated packet index")
        count, last_duration = struct.unpack_from("<qq", data)
        if count <= 0 or len(data) != 16 + 9 * count:
            raise ValueError("damaged packet index")
        start = 16
        pts = array("q")
        pts.frombytes(data[start : start + 8 * count])
        flags = data[start + 8 * count : start + 9 * count]
        if len(pts) != count or len(flags) != count:
            raise ValueError("truncated packet index")
        return cls(pts=pts.tolist(), keyframe=[bool(flag) for flag in flags], last_duration=last_duration)


def uniform_targets(start_s: float, end_s: float, count: int) -> list[float]:
    """Centres of `count` equal slices of [start_s, end_s]: one frame means the middle, never an edge."""
    step = (end_s - start_s) / count
    return [start_s + (i + 0.5) * step for i in range(count)]


def sample_frames(
    path: Path,
    num_frames: int = 8,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    fps: float | None = None,
    keyframes_only: bool = False,
    min_side: int = 384,
    strategy: Literal["seek", "sequential"] = "seek",
) -> SampledVideo:
    """Sample frames uniformly over the video, or over [start_s, end_s]; see `SamplingPlan` for the options.

    Frames are scaled down (aspect kept) so that their shorter side is `min_side`, which is all the model needs,
    and turned upright when the video carries a display rotation. `strategy="sequential"` decodes from the start
    instead of seeking: the same frames, for comparison.
    """
    plan = SamplingPlan(num_frames, start_s, end_s, fps, keyframes_only, min_side)
    return sample_with_plan(path, plan, strategy=strategy)


def sample_with_plan(
    path: Path,
    plan: SamplingPlan,
    *,
    strategy: Literal["seek", "sequential"] = "seek",
    cancel: CancelToken | None = None,
    index_file: Path | None = None,
) -> SampledVideo:
    """Sample by `plan`; decoding stops between packets once `cancel` is set. With `index_file`, the packet index
    is read from there when it was saved for this very file, and saved there otherwise (see `_indexed`)."""
    with _open_video(path) as container:
        stream = container.streams.video[0]
        planned = _plan(container, stream, path, plan, strategy, index_file)
        if planned is None or planned[0].restarts_s:
            # Timestamps that restart name two frames with one time: seeking cannot tell them apart.
            return _sample_sequentially(container, stream, path, plan, cancel, planned[0] if planned else None)
        info, index, first_pts, (range_start, range_end), count, targets = planned
        time_base = _time_base(stream)
        if plan.keyframes_only:
            chosen = _nearest_pts(
                _keyframes_in_range(
                    index, first_pts + round(range_start / time_base), first_pts + round(range_end / time_base)
                ),
                targets,
            )
        else:
            chosen = _nearest_pts(index.sorted_pts(), targets)
        found = _FrameCollector(plan.min_side)
        decoded = 0
        if strategy == "seek":
            decoded = _decode_chosen(container, stream, index, chosen, found, cancel)
        missing = {pts for pts in chosen if pts not in found.images}
        if missing:
            if strategy == "seek":
                log.info("%s: %d frames not reached by seeking; decoding sequentially", path.name, len(missing))
            decoded += _decode_sequential_exact(path, stream.index, missing, found, cancel)
        frames = [
            SampledFrame(timestamp_s=float((pts - first_pts) * time_base), image=found.images[pts])
            for pts in chosen
            if pts in found.images
        ]
        damaged = [float((pts - first_pts) * time_base) for pts in chosen if pts not in found.images]
        orientation = found.orientation
    if not frames:
        raise DecodeError(f"No frame of {path.name} could be decoded: the video stream is damaged or empty.")
    return SampledVideo(
        info=orientation.applied_to(info),
        start_s=range_start,
        end_s=range_end,
        frames_requested=plan.num_frames,
        frames=frames,
        frames_decoded=decoded,
        note=_joined(_shortfall_note(plan, count, len(chosen), damaged, range_end - range_start), stream_notes(info)),
    )


_Planned = tuple["StreamInfo", "_PacketIndex", int, tuple[float, float], int, list[int]]


def _plan(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: Path,
    plan: SamplingPlan,
    strategy: str,
    index_file: Path | None,
) -> _Planned | None:
    """What to decode: the stream's facts, a packet index covering the targets, the first pts, the range, the frame
    count and the targets. From the container's index where it lists every frame (falling back when its GOPs
    cannot be read, in a damaged file), else from a full index; None when packets carry no timestamps."""
    around = None if strategy == "sequential" else _ContainerIndex.read(container, stream, index_file)
    if around is not None:
        try:
            range_s = checked_range(plan.start_s, plan.end_s, around.info.duration_s)
            count = plan.frame_count(range_s[1] - range_s[0])
            targets = _targets(around.first_pts, range_s, count, _time_base(stream))
            index = around.packets_around(targets, keyframes_only=plan.keyframes_only)
            return around.info, index, around.first_pts, range_s, count, targets
        except (av.error.FFmpegError, ValueError) as exc:
            log.info("%s: planning from the container's index failed (%s); demuxing the stream", path.name, exc)
            _rewind(container, stream)
    full = _indexed(container, stream, path, index_file)
    if full is None:
        return None
    info = _stream_info(stream, full)
    first_pts = min(full.pts)
    range_s = checked_range(plan.start_s, plan.end_s, info.duration_s, info.stated_duration_s)
    count = plan.frame_count(range_s[1] - range_s[0])
    return info, full, first_pts, range_s, count, _targets(first_pts, range_s, count, _time_base(stream))


def _targets(first_pts: int, range_s: tuple[float, float], count: int, time_base: Fraction) -> list[int]:
    return [first_pts + round(t / time_base) for t in uniform_targets(range_s[0], range_s[1], count)]


class _ContainerIndex:
    """Planning from the container's own index (mp4 and mov list every frame, with keyframe flags and decode times)
    instead of a demux of the whole stream.

    The index gives the groups of pictures (GOPs) and where they start, in decode time; exact presentation times
    come from demuxing, without decoding, just the GOPs around each target (and the first and last, for the start
    and the duration). Frames are then chosen among real pts, and decoded, exactly as from a full index. Used when
    the index is complete and no full index was kept for the file.
    """

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        key_positions: list[int],
        key_dts: list[int],
        frame_count: int,
    ) -> None:
        self._container = container
        self._stream = stream
        self._key_positions = key_positions
        self._key_dts = key_dts
        self._frame_count = frame_count
        self._gops: dict[int, list[tuple[int, bool, int]]] = {}
        first = self._gop(0)
        last = self._gop(len(key_dts) - 1)
        self.first_pts = min(pts for pts, _, _ in first)
        self._delay = first[0][0] - key_dts[0]
        """pts - dts of the first keyframe: maps the index's decode times to presentation times, roughly."""
        step = last[-1][2] or _average_step([pts for pts, _, _ in last])
        max_pts = max(pts for pts, _, _ in last)
        self.info = StreamInfo(
            duration_s=float((max_pts + step - self.first_pts) * _time_base(stream)),
            fps=_fps(stream),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            frame_count=frame_count,
        )

    @classmethod
    def read(
        cls, container: av.container.InputContainer, stream: av.video.stream.VideoStream, index_file: Path | None
    ) -> _ContainerIndex | None:
        """The container's index when it lists every frame, and no full index is kept for the file yet."""
        if index_file is not None and index_file.is_file():
            return None
        entries = stream.index_entries
        count = len(entries)
        if count == 0 or stream.frames != count:
            return None
        key_positions: list[int] = []
        key_dts: list[int] = []
        for position, entry in enumerate(entries):
            if entry.is_keyframe:
                key_positions.append(position)
                key_dts.append(entry.timestamp)
        if not key_positions or key_positions[0] != 0:
            return None
        try:
            return cls(container, stream, key_positions, key_dts, count)
        except (av.error.FFmpegError, ValueError, IndexError) as exc:
            log.info("planning from the container's index failed (%s); demuxing the stream", exc)
            _rewind(container, stream)
            return None

    def _gop(self, number: int) -> list[tuple[int, bool, int]]:
        """(pts, keyframe, duration) of each packet of GOP `number`, in decode order, demuxed without decoding."""
        if number in self._gops:
            return self._gops[number]
        start = self._key_dts[number]
        following = number + 1 < len(self._key_positions)
        end = self._key_positions[number + 1] if following else self._frame_count
        size = end - self._key_positions[number]
        self._container.seek(start, stream=self._stream, backward=True, any_frame=False)
        packets: list[tuple[int, bool, int]] = []
        started = False
        for packet in self._container.demux(self._stream):
            if packet.size == 0:
                continue
            if not started:
                if not (packet.is_keyframe and packet.dts == start):
                    continue
                started = True
            elif packet.is_keyframe:
                break
            if packet.pts is None:
                raise ValueError("a packet without pts")
            packets.append((packet.pts, packet.is_keyframe, packet.duration or 0))
            if len(packets) > size:
                break
        if len(packets) != size:
            # A damaged file, or an index that does not match the packets: the full index is the safe ground.
            raise ValueError(f"GOP {number} has {len(packets)} readable packets where the index lists {size}")
        self._gops[number] = packets
        return packets

    def keyframe_pts(self) -> list[int]:
        """Every keyframe's presentation time, as the index's decode times give it: exact for the keyframes whose
        pts-dts is the first one's (nearly all), within a frame or two for the others."""
        return [dts + self._delay for dts in self._key_dts]

    def packets_around(self, targets: Sequence[int], *, keyframes_only: bool) -> _PacketIndex:
        """The packets of the GOPs that can hold the frame nearest each target: the GOP whose keyframe comes last
        before it, and the GOPs on either side (decode times only approximate presentation times)."""
        wanted: set[int] = {0, len(self._key_dts) - 1}
        approximate = self.keyframe_pts()
        for target in targets:
            number = max(bisect.bisect_right(approximate, target) - 1, 0)
            wanted.update(n for n in (number - 1, number, number + 1) if 0 <= n < len(self._key_dts))
        pts: list[int] = []
        keyframe: list[bool] = []
        last_duration = 0
        for number in sorted(wanted):
            for packet_pts, is_key, duration in self._gop(number):
                pts.append(packet_pts)
                keyframe.append(is_key)
                last_duration = duration or last_duration
        return _PacketIndex(pts=pts, keyframe=keyframe, last_duration=last_duration)


def _average_step(pts: list[int]) -> int:
    ordered = sorted(pts)
    return round((ordered[-1] - ordered[0]) / (len(ordered) - 1)) if len(ordered) > 1 else 0


class _FrameCollector:
    """Converts each wanted frame as soon as it is decoded, so no full-size frame outlives its turn."""

    def __init__(self, min_side: int) -> None:
        self.min_side = min_side
        self.images: dict[int, Image.Image] = {}
        self.orientation = UPRIGHT

    def add(self, frame: av.VideoFrame) -> None:
        if frame.pts is not None:
            self.images[frame.pts] = to_model_image(frame, self.min_side)
            self.orientation = orientation_of(frame)


class SampleCache:
    """Sampled frames per (file, plan) for the life of the process, least recently used out first.

    A second question about the same video and plan skips decoding. Keyed on the file's identity (resolved path,
    size, modification time), so a file replaced in place is decoded again.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[object, ...], tuple[SampledVideo, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def sample(
        self, path: Path, plan: SamplingPlan, cancel: CancelToken | None = None, index_file: Path | None = None
    ) -> tuple[SampledVideo, bool]:
        """The sampled video, and whether it came from this cache."""
        try:
            stat = path.stat()
        except OSError as exc:
            raise DecodeError(f"{path} cannot be read ({exc.strerror}).") from exc
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, plan)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry[0], True
        sampled = sample_with_plan(path, plan, cancel=cancel, index_file=index_file)
        size = sum(f.image.width * f.image.height * len(f.image.getbands()) for f in sampled.frames)
        with self._lock:
            if size <= self.max_bytes and key not in self._entries:
                self._entries[key] = (sampled, size)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (_, evicted) = self._entries.popitem(last=False)
                    self._bytes -= evicted
        return sampled, False


def _keyframes_in_range(index: _PacketIndex, start_pts: int, end_pts: int) -> list[int]:
    keyframes = index.sorted_keyframe_pts()
    inside = [pts for pts in keyframes if start_pts <= pts <= end_pts]
    return inside or keyframes


def _shortfall_note(
    plan: SamplingPlan, planned: int, distinct: int, damaged: Sequence[float], range_s: float
) -> str | None:
    """Why fewer frames than asked for came back: the fps cap, too few distinct frames, or frames that could not
    be decoded (and where the video is damaged)."""
    if distinct - len(damaged) == plan.num_frames:
        return None
    notes = []
    if planned < plan.num_frames:
        notes.append(f"fps={plan.fps} over {range_s:.3f} s allows {planned} frames")
    if distinct < planned:
        kind = "keyframes" if plan.keyframes_only else "frames"
        notes.append(f"the range holds only {distinct} distinct {kind} near the targets, each returned once")
    if damaged:
        places = ", ".join(f"{t:.2f} s" for t in damaged[:8]) + (", ..." if len(damaged) > 8 else "")
        notes.append(
            f"{len(damaged)} of the chosen frames could not be decoded, so the video is damaged near {places}: "
            "those moments are missing"
        )
    return f"Asked for {plan.num_frames} frames; " + "; ".join(notes) + "."


def probe(path: Path, index_file: Path | None = None) -> StreamInfo:
    """Stream facts from the packet index, without decoding any frame."""
    return outline(path, index_file)[0]


def outline(path: Path, index_file: Path | None = None) -> tuple[StreamInfo, list[float]]:
    """Stream facts and the keyframes' times (seconds from the first frame), from the packet index."""
    with _open_video(path) as container:
        stream = container.streams.video[0]
        time_base = _time_base(stream)
        around = _ContainerIndex.read(container, stream, index_file)
        if around is not None:
            return around.info, [float((pts - around.first_pts) * time_base) for pts in around.keyframe_pts()]
        index = _indexed(container, stream, path, index_file)
        if index is None:
            return _header_info(container, stream), []
        first = min(index.pts)
        keyframes = [float((pts - first) * time_base) for pts in index.sorted_keyframe_pts()]
        return _stream_info(stream, index), keyframes


_INDEX_MAGIC = b"LVMIDX1\n"


def _indexed(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: Path,
    index_file: Path | None,
) -> _PacketIndex | None:
    """The packet index: from `index_file` when it was made from this very file (same size and modification time),
    else by demuxing the stream, saved to `index_file` for the next call, plan or window. A 60-minute video's
    demux takes about a second; reading the saved index, a few milliseconds."""
    if index_file is None:
        return _read_index(container, stream)
    stat = path.stat()
    identity = f"{stat.st_size}:{stat.st_mtime_ns}:{stream.index}".encode()
    try:
        data = index_file.read_bytes()
        header, rest = data.split(b"\n\n", 1)
        if header.startswith(_INDEX_MAGIC) and header[len(_INDEX_MAGIC) :] == identity:
            return _PacketIndex.from_bytes(rest)
    except (OSError, ValueError, struct.error):
        pass  # none yet, or damaged (cut short, overwritten): made again below
    index = _read_index(container, stream)
    if index is not None:
        partial = index_file.with_name(f".{index_file.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            index_file.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(_INDEX_MAGIC + identity + b"\n\n" + index.to_bytes())
            partial.replace(index_file)
        except OSError as exc:  # a time saver only: the call goes on without it
            log.warning("could not keep the packet index at %s (%s)", index_file, exc.strerror or exc)
            with suppress(OSError):
                partial.unlink()
    return index


def media_duration(path: Path, name: str) -> float:
    """The video's duration: as its header states it, or counted from its packets when the header states none
    (a duration limit must hold for such files too). Raises DecodeError, calling the file `name`, when it is no
    video this server can read."""
    with _open_video(path, name) as container:
        stream = container.streams.video[0]
        stated = _header_info(container, stream).duration_s
        if stated > 0:
            return stated
        index = _read_index(container, stream)
        return _stream_info(stream, index).duration_s if index is not None else 0.0


def _open_video(path: Path, name: str | None = None) -> av.container.InputContainer:
    """The file opened with its first video stream ready to decode (see `tools.containers`: one file, an allowed
    format, sizes checked); a DecodeError that says what the file is otherwise, calling it `name` (its own name by
    default)."""
    name = name or path.name
    if not path.is_file():
        raise DecodeError(f"{path} is not a file.")
    container = open_input(path, name)
    try:
        format_name = container.format.name
        if format_name in _STILL_IMAGE_FORMATS or format_name.endswith("_pipe"):
            raise DecodeError(f"{name} is a still image ({format_name}), not a video. Pass a video file.")
        if not container.streams.video:
            raise DecodeError(f"{name} has no video stream (it may be audio only). Pass a file with video.")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise DecodeError(
                f"{name} has a video stream in a format this server has no decoder for (an unknown or "
                "proprietary codec). Convert it first, e.g. `ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4`."
            )
        prepare_video_stream(name, stream)
    except BaseException:
        container.close()
        raise
    return container


def _ffmpeg_reason(exc: av.error.FFmpegError) -> str:
    return str(exc.strerror or exc).strip().rstrip(".")


def _time_base(stream: av.video.stream.VideoStream) -> Fraction:
    if stream.time_base is None:
        raise DecodeError("The video stream has no time base, so its frames cannot be placed in time.")
    return Fraction(stream.time_base)


def _read_index(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> _PacketIndex | None:
    """Demux the whole stream (no decoding). None when packets carry no pts, so times must come from decoding."""
    pts: list[int] = []
    keyframe: list[bool] = []
    last_duration = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            keyframe.append(packet.is_keyframe)
            last_duration = packet.duration or last_duration
    except av.error.FFmpegError as exc:
        log.info("demuxing stopped early: %s", _ffmpeg_reason(exc))
    if not pts:
        return None
    return _PacketIndex(pts=pts, keyframe=keyframe, last_duration=last_duration)


def _rewind(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> None:
    """Back to the stream's start, after planning from the container's index (mp4, mov) moved elsewhere. Only there:
    a seek in an MPEG-TS file lands on a byte position found by search, and may skip its first packets."""
    with suppress(av.error.FFmpegError):
        container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)


def _stream_info(stream: av.video.stream.VideoStream, index: _PacketIndex) -> StreamInfo:
    time_base = _time_base(stream)
    frame_step = index.last_duration
    if not frame_step and len(index.pts) > 1:
        ordered = index.sorted_pts()
        frame_step = round((ordered[-1] - ordered[0]) / (len(ordered) - 1))
    segments = _continuous_segments(index.pts, frame_step)
    spans = [max(segment) + frame_step - min(segment) for segment in segments]
    restarts = [float(sum(spans[:i]) * time_base) for i in range(1, len(spans))]
    duration = float(sum(spans) * time_base)
    return StreamInfo(
        duration_s=duration,
        fps=_fps(stream),
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        codec=stream.codec_context.name,
        frame_count=len(index.pts),
        restarts_s=tuple(restarts),
        stated_duration_s=_stated_beyond(stream, len(index.pts), duration),
    )


def _stated_beyond(stream: av.video.stream.VideoStream, frames: int, duration_s: float) -> float | None:
    """The duration the header states, when the readable packets end well before it: a file cut short."""
    stated_frames = stream.frames or 0
    stated = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
    if stated_frames > frames * 1.05 + 1 and stated > duration_s:
        return stated
    if not stated_frames and stated > duration_s * 1.1 + 1.0:
        return stated
    return None


_REORDER_FRAMES = 16
"""Most frames a decoder may hold back to reorder (H.264's limit): pts may dip this far below the highest so far."""


def _continuous_segments(pts: Sequence[int], frame_step: int) -> list[list[int]]:
    """The packets' pts (in decode order) split where the clock starts again: a pts seen before, or far below the
    highest so far (beyond what reordering explains). One segment for every well-formed stream."""
    window = _REORDER_FRAMES * max(frame_step, 1)
    segments: list[list[int]] = [[]]
    seen: set[int] = set()
    highest: int | None = None
    for value in pts:
        if highest is not None and (value in seen or value < highest - window):
            segments.append([])
            seen.clear()
            highest = None
        segments[-1].append(value)
        seen.add(value)
        highest = value if highest is None else max(highest, value)
    return segments


def _header_info(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> StreamInfo:
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    return StreamInfo(
        duration_s=duration,
        fps=_fps(stream),
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        codec=stream.codec_context.name,
        frame_count=stream.frames,
    )


def _fps(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def checked_range(
    start_s: float | None, end_s: float | None, duration_s: float, stated_s: float | None = None
) -> tuple[float, float]:
    """The range asked for, whole video by default; a LimitError that says what fits when it lies outside, and a
    DecodeError when it lies in the part of a file cut short (`stated_s`, the header's duration) that is missing."""
    start = 0.0 if start_s is None else start_s
    end = duration_s if end_s is None else end_s
    if start < 0:
        raise LimitError(f"start_s must be 0 or more; got {start}.")
    if stated_s is not None and max(start, end) > duration_s + 1e-6:
        asked = f"{start:g}-{end:g} s" if end_s is not None else f"from {start:g} s"
        raise DecodeError(
            f"The file is damaged or was partly downloaded: its header says it lasts {stated_s:.3f} s, but its "
            f"frames stop at {duration_s:.3f} s, so the range asked for ({asked}) is not all there. Choose a "
            f"range below {duration_s:.3f} s, or pass a complete file."
        )
    if start >= duration_s:
        raise LimitError(
            f"start_s={start} is at or past the end of the video, which lasts {duration_s:.3f} s. "
            f"Choose start_s below {duration_s:.3f}."
        )
    if end <= start:
        raise LimitError(f"end_s ({end}) must be greater than start_s ({start}).")
    if end > duration_s + 1e-6:
        raise LimitError(
            f"end_s={end} is past the end of the video, which lasts {duration_s:.3f} s. "
            f"Choose end_s up to {duration_s:.3f}, or leave it out to sample to the end."
        )
    return start, end


def _nearest_pts(sorted_pts: Sequence[int], targets: Sequence[int]) -> list[int]:
    """The pts nearest each target (the earlier one on a tie), each distinct frame once, in time order."""
    chosen: list[int] = []
    for target in targets:
        i = bisect.bisect_left(sorted_pts, target)
        candidates = sorted_pts[max(i - 1, 0) : i + 1]
        best = min(candidates, key=lambda p: (abs(p - target), p))
        if not chosen or chosen[-1] != best:
            chosen.append(best)
    return chosen


def gop_groups(index: _PacketIndex, chosen: Sequence[int]) -> dict[int, set[int]]:
    """The chosen frames' pts grouped by the decode position of the keyframe that opens their GOP."""
    decode_position = {pts: i for i, pts in enumerate(index.pts)}
    keyframe_positions = [i for i, is_key in enumerate(index.keyframe) if is_key] or [0]
    groups: dict[int, set[int]] = {}
    for pts in chosen:
        k = bisect.bisect_right(keyframe_positions, decode_position[pts]) - 1
        groups.setdefault(keyframe_positions[max(k, 0)], set()).add(pts)
    return groups


def _decode_chosen(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    index: _PacketIndex,
    chosen: Sequence[int],
    found: _FrameCollector,
    cancel: CancelToken | None = None,
) -> int:
    """Decode the GOPs that hold the chosen frames, each once, seeking to its keyframe; return frames decoded."""
    groups = gop_groups(index, chosen)
    decoded = 0
    codec = stream.codec_context
    skips_per_packet = codec.name in _PER_PACKET_SKIP_DECODERS
    for key_position in sorted(groups):
        wanted = groups[key_position]
        last_wanted = max(wanted)
        try:
            container.seek(index.pts[key_position], stream=stream, backward=True, any_frame=False)
            skip_unless = set(wanted) if skips_per_packet else None
            frames = _decode(container, stream, skip_unless, cancel, from_keyframe=index.pts[key_position])
            for frame in frames:
                decoded += 1
                if frame.pts is None:
                    continue
                if frame.pts in wanted:
                    found.add(frame)
                    wanted.discard(frame.pts)
                if not wanted or frame.pts >= last_wanted:
                    break
        except av.error.FFmpegError as exc:
            log.info("seek-and-decode failed near pts %d: %s", index.pts[key_position], _ffmpeg_reason(exc))
        finally:
            codec.skip_frame = "DEFAULT"
    return decoded


def _decode(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    skip_unless: set[int] | None = None,
    cancel: CancelToken | None = None,
    from_keyframe: int | None = None,
) -> Iterator[av.VideoFrame]:
    """Decoded frames, skipping packets the decoder rejects as corrupt instead of ending the whole decode.

    With `skip_unless`, non-reference frames are not decoded unless their pts is in it: nothing else depends on
    them, so the wanted frames come out identical while most B-frames cost nothing.

    With `from_keyframe`, packets before the keyframe of that pts are dropped undecoded. A seek to a keyframe's pts
    can land on an earlier keyframe: mp4's index holds decode times, and where one keyframe's pts-dts differs from
    the others' (variable frame rate, the first GOP) the seek falls a whole GOP short. Nothing before a keyframe is
    needed to decode from it.
    """
    codec = stream.codec_context
    waiting = from_keyframe is not None
    for packet in container.demux(stream):
        if cancel is not None:
            cancel.check()
        if waiting:
            if not (packet.is_keyframe and packet.pts == from_keyframe):
                continue
            waiting = False
        if skip_unless is not None:
            codec.skip_frame = "DEFAULT" if packet.pts in skip_unless or packet.size == 0 else "NONREF"
        try:
            yield from packet.decode()
        except av.error.InvalidDataError as exc:
            log.debug("skipping undecodable packet: %s", _ffmpeg_reason(exc))


def _decode_sequential_exact(
    path: Path, stream_index: int, wanted: set[int], found: _FrameCollector, cancel: CancelToken | None = None
) -> int:
    """Decode from the start up to the last wanted frame, in a fresh container: no state left by seeking."""
    decoded = 0
    last_wanted = max(wanted)
    with _open_video(path) as container:
        stream = container.streams[stream_index]
        assert isinstance(stream, av.video.stream.VideoStream)
        prepare_video_stream(path.name, stream)
        for frame in _decode(container, stream, cancel=cancel):
            decoded += 1
            if frame.pts in wanted:
                found.add(frame)
            if frame.pts is not None and frame.pts >= last_wanted:
                break
    return decoded


def _sample_sequentially(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: Path,
    plan: SamplingPlan,
    cancel: CancelToken | None = None,
    info: StreamInfo | None = None,
) -> SampledVideo:
    """One pass over decoded frames, keeping the one nearest each target: for streams with no usable index, and
    for streams whose timestamps restart (`info.restarts_s`), whose frames are placed on a continuous timeline."""
    info = info or _header_info(container, stream)
    if info.duration_s <= 0:
        raise DecodeError(
            f"{path.name} has no timestamps and states no duration (a raw elementary stream?), so its frames cannot "
            "be placed in time. Put it in a container first, e.g. `ffmpeg -i INPUT -c copy OUTPUT.mp4`."
        )
    range_start, range_end = checked_range(plan.start_s, plan.end_s, info.duration_s)
    count = plan.frame_count(range_end - range_start)
    targets = uniform_targets(range_start, range_end, count)
    best: list[tuple[float, av.VideoFrame] | None] = [None] * count
    container.seek(0)
    timeline = _Timeline(1 / info.fps if info.fps else 0.04)
    decoded = 0
    for frame in _decode(container, stream, cancel=cancel):
        decoded += 1
        if frame.time is None:
            continue
        t = timeline.place(frame.time)
        if plan.keyframes_only and not frame.key_frame:
            continue
        for i, target in enumerate(targets):
            current = best[i]
            if current is None or abs(t - target) < abs(current[0] - target):
                best[i] = (t, frame)
        if t >= targets[-1]:
            break
    frames: list[SampledFrame] = []
    orientation = UPRIGHT
    for candidate in best:
        if candidate is not None and (not frames or frames[-1].timestamp_s != candidate[0]):
            orientation = orientation_of(candidate[1])
            frames.append(SampledFrame(timestamp_s=candidate[0], image=to_model_image(candidate[1], plan.min_side)))
    if not frames:
        raise DecodeError(f"No frame of {path.name} could be decoded: the video stream is damaged or empty.")
    return SampledVideo(
        info=orientation.applied_to(info),
        start_s=range_start,
        end_s=range_end,
        frames_requested=plan.num_frames,
        frames=frames,
        frames_decoded=decoded,
        note=_joined(_shortfall_note(plan, count, len(frames), [], range_end - range_start), stream_notes(info)),
    )


class _Timeline:
    """Frame times, in presentation order, on one continuous timeline from the first frame: where the stream's clock
    starts again from a lower value, the times go on from where they were."""

    def __init__(self, step_s: float) -> None:
        self._step_s = step_s
        self._offset: float | None = None
        self._last = 0.0

    def place(self, time_s: float) -> float:
        if self._offset is None:
            self._offset = -time_s
        elif time_s + self._offset < self._last - 0.5 * self._step_s:
            self._offset = self._last + self._step_s - time_s
        self._last = time_s + self._offset
        return self._last


def stream_notes(info: StreamInfo) -> str | None:
    """What the caller should know about the stream itself: a clock that restarts, a file cut short."""
    notes = []
    if info.restarts_s:
        places = ", ".join(f"{t:.2f} s" for t in info.restarts_s[:5])
        notes.append(
            f"The video's timestamps start again at {places} (clips joined together?): its times are counted on "
            "continuously from the start, so they may differ from what a player shows."
        )
    if info.stated_duration_s is not None:
        notes.append(
            f"The file is damaged or was partly downloaded: its header says it lasts {info.stated_duration_s:.1f} s, "
            f"but its frames stop at {info.duration_s:.1f} s; only that part could be seen."
        )
    return _joined(*notes)


def _joined(*notes: str | None) -> str | None:
    return " ".join(note for note in notes if note) or None


def to_model_image(frame: av.VideoFrame, min_side: int) -> Image.Image:
    """Upright RGB image, scaled in the decoder's converter so that its shorter side is at most `min_side`."""
    width, height = frame.width, frame.height
    shorter = min(width, height)
    if shorter > min_side:
        scale = min_side / shorter
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    rgb: Any = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA")
    image: Image.Image = rgb.to_image()  # PyAV leaves to_image untyped
    return orientation_of(frame).upright(image)


@dataclass(frozen=True)
class Orientation:
    """How a decoded frame is turned upright, as FFmpeg's own command line does it from the display matrix:
    quarter turns and mirror flips exactly (PIL transposes), any other angle by rotating."""

    steps: tuple[Image.Transpose, ...] = ()
    clockwise_degrees: float = 0.0
    """An angle that is no quarter turn (rare), applied after the steps."""
    rotation: int = 0
    """Counter-clockwise degrees of the display rotation, as reported in `StreamInfo`."""
    mirrored: bool = False

    def upright(self, image: Image.Image) -> Image.Image:
        for step in self.steps:
            image = image.transpose(step)
        if self.clockwise_degrees:
            image = image.rotate(-self.clockwise_degrees, expand=True)
        return image

    def applied_to(self, info: StreamInfo) -> StreamInfo:
        """The stream's facts as displayed: width and height swapped by a quarter turn."""
        oriented = replace(info, rotation=self.rotation, mirrored=self.mirrored)
        if self.rotation % 180 == 90:
            return replace(oriented, width=info.height, height=info.width)
        return oriented


UPRIGHT = Orientation()


def orientation_of(frame: av.VideoFrame) -> Orientation:
    """The frame's orientation from its display matrix, if it carries one."""
    matrix = frame.side_data.get("DISPLAYMATRIX")
    if not isinstance(matrix, av.sidedata.sidedata.SideData):
        return UPRIGHT
    return orientation_from_matrix(struct.unpack("<9i", bytes(matrix)))


def orientation_from_matrix(matrix: Sequence[int]) -> Orientation:
    """FFmpeg's command line's reading of a display matrix (fftools: get_rotation and the autorotate filters).

    A mirror is a flip, not a half turn; a matrix that maps nothing (all zeros, as some files carry) means no
    change at all, not a swap of width and height."""
    scale_x, scale_y = math.hypot(matrix[0], matrix[3]), math.hypot(matrix[1], matrix[4])
    if scale_x == 0 or scale_y == 0:
        return UPRIGHT
    theta = float(round(math.degrees(math.atan2(matrix[1] / scale_y, matrix[0] / scale_x))))
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    mirrored = matrix[0] * matrix[4] - matrix[1] * matrix[3] < 0
    transpose = Image.Transpose
    if abs(theta - 90) < 1:
        step = transpose.TRANSPOSE if matrix[3] > 0 else transpose.ROTATE_270
        return Orientation((step,), rotation=270, mirrored=mirrored)
    if abs(theta - 270) < 1:
        step = transpose.TRANSVERSE if matrix[3] < 0 else transpose.ROTATE_90
        return Orientation((step,), rotation=90, mirrored=mirrored)
    if abs(theta - 180) < 1:
        flips = (transpose.FLIP_LEFT_RIGHT,) * (matrix[0] < 0) + (transpose.FLIP_TOP_BOTTOM,) * (matrix[4] < 0)
        return Orientation(flips, rotation=0 if mirrored else 180, mirrored=mirrored)
    if abs(theta) > 1:
        return Orientation(clockwise_degrees=theta, rotation=round(360 - theta) % 360, mirrored=mirrored)
    return Orientation((transpose.FLIP_TOP_BOTTOM,) * (matrix[4] < 0), mirrored=mirrored)
