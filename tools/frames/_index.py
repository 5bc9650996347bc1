"""A stream's timestamps without decoding: the packet index (every frame's pts, in decode order, with keyframe
flags), from the container's own index where it lists every frame (mp4, mov: only the GOPs around the targets are
demuxed) or from one demux of the stream (kept beside the video for later calls), and the stream's facts read from it:
its duration on one continuous timeline (clocks that restart are placed end to end), and whether the file ends well
before its header says (cut short)."""

from __future__ import annotations

import bisect
import logging
import struct
from array import array
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.error
import av.sidedata.sidedata
import av.video.frame
import av.video.stream

from llava_video_mcp.tools.errors import DecodeError
from llava_video_mcp.tools.files import write_whole
from llava_video_mcp.tools.frames._containers import ffmpeg_reason
from llava_video_mcp.tools.frames._plan import StreamInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PacketIndex:
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
    def from_bytes(cls, data: bytes) -> PacketIndex:
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


class ContainerIndex:
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
        step = last[-1][2] or average_step([pts for pts, _, _ in last])
        max_pts = max(pts for pts, _, _ in last)
        self.info = StreamInfo(
            duration_s=float((max_pts + step - self.first_pts) * stream_time_base(stream)),
            fps=stream_fps(stream),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            frame_count=frame_count,
        )

    @classmethod
    def read(
        cls, container: av.container.InputContainer, stream: av.video.stream.VideoStream, index_file: Path | None
    ) -> ContainerIndex | None:
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
            rewind(container, stream)
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

    def packets_around(self, targets: Sequence[int], *, keyframes_only: bool) -> PacketIndex:
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
        return PacketIndex(pts=pts, keyframe=keyframe, last_duration=last_duration)


def average_step(pts: list[int]) -> int:
    ordered = sorted(pts)
    return round((ordered[-1] - ordered[0]) / (len(ordered) - 1)) if len(ordered) > 1 else 0


def keyframes_in_range(index: PacketIndex, start_pts: int, end_pts: int) -> list[int]:
    keyframes = index.sorted_keyframe_pts()
    inside = [pts for pts in keyframes if start_pts <= pts <= end_pts]
    return inside or keyframes


INDEX_MAGIC = b"LVMIDX1\n"


def indexed(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: Path,
    index_file: Path | None,
) -> PacketIndex | None:
    """The packet index: from `index_file` when it was made from this very file (same size and modification time),
    else by demuxing the stream, saved to `index_file` for the next call, plan or window. A 60-minute video's
    demux takes about a second; reading the saved index, a few milliseconds."""
    if index_file is None:
        return read_index(container, stream)
    stat = path.stat()
    identity = f"{stat.st_size}:{stat.st_mtime_ns}:{stream.index}".encode()
    try:
        data = index_file.read_bytes()
        header, rest = data.split(b"\n\n", 1)
        if header.startswith(INDEX_MAGIC) and header[len(INDEX_MAGIC) :] == identity:
            return PacketIndex.from_bytes(rest)
    except (OSError, ValueError, struct.error):
        pass  # none yet, or damaged (cut short, overwritten): made again below
    index = read_index(container, stream)
    if index is not None:
        try:
            index_file.parent.mkdir(parents=True, exist_ok=True)
            write_whole(index_file, INDEX_MAGIC + identity + b"\n\n" + index.to_bytes())
        except OSError as exc:  # a time saver only: the call goes on without it
            log.warning("could not keep the packet index at %s (%s)", index_file, exc.strerror or exc)
    return index


def stream_time_base(stream: av.video.stream.VideoStream) -> Fraction:
    if stream.time_base is None:
        raise DecodeError("The video stream has no time base, so its frames cannot be placed in time.")
    return Fraction(stream.time_base)


def read_index(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> PacketIndex | None:
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
        log.info("demuxing stopped early: %s", ffmpeg_reason(exc))
    if not pts:
        return None
    return PacketIndex(pts=pts, keyframe=keyframe, last_duration=last_duration)


def rewind(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> None:
    """Back to the stream's start, after planning from the container's index (mp4, mov) moved elsewhere. Only there:
    a seek in an MPEG-TS file lands on a byte position found by search, and may skip its first packets."""
    with suppress(av.error.FFmpegError):
        container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)


def stream_info(stream: av.video.stream.VideoStream, index: PacketIndex) -> StreamInfo:
    time_base = stream_time_base(stream)
    frame_step = index.last_duration
    if not frame_step and len(index.pts) > 1:
        ordered = index.sorted_pts()
        frame_step = round((ordered[-1] - ordered[0]) / (len(ordered) - 1))
    segments = continuous_segments(index.pts, frame_step)
    spans = [max(segment) + frame_step - min(segment) for segment in segments]
    restarts = [float(sum(spans[:i]) * time_base) for i in range(1, len(spans))]
    duration = float(sum(spans) * time_base)
    return StreamInfo(
        duration_s=duration,
        fps=stream_fps(stream),
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        codec=stream.codec_context.name,
        frame_count=len(index.pts),
        restarts_s=tuple(restarts),
        stated_duration_s=stated_beyond(stream, len(index.pts), duration),
    )


def stated_beyond(stream: av.video.stream.VideoStream, frames: int, duration_s: float) -> float | None:
    """The duration the header states, when the readable packets end well before it: a file cut short."""
    stated_frames = stream.frames or 0
    stated = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
    if stated_frames > frames * 1.05 + 1 and stated > duration_s:
        return stated
    if not stated_frames and stated > duration_s * 1.1 + 1.0:
        return stated
    return None


REORDER_FRAMES = 16
"""Most frames a decoder may hold back to reorder (H.264's limit): pts may dip this far below the highest so far."""


def continuous_segments(pts: Sequence[int], frame_step: int) -> list[list[int]]:
    """The packets' pts (in decode order) split where the clock starts again: a pts seen before, or far below the
    highest so far (beyond what reordering explains). One segment for every well-formed stream."""
    window = REORDER_FRAMES * max(frame_step, 1)
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


def header_info(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> StreamInfo:
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    return StreamInfo(
        duration_s=duration,
        fps=stream_fps(stream),
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        codec=stream.codec_context.name,
        frame_count=stream.frames,
    )


def stream_fps(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def gop_groups(index: PacketIndex, chosen: Sequence[int]) -> dict[int, set[int]]:
    """The chosen frames' pts grouped by the decode position of the keyframe that opens their GOP."""
    decode_position = {pts: i for i, pts in enumerate(index.pts)}
    keyframe_positions = [i for i, is_key in enumerate(index.keyframe) if is_key] or [0]
    groups: dict[int, set[int]] = {}
    for pts in chosen:
        k = bisect.bisect_right(keyframe_positions, decode_position[pts]) - 1
        groups.setdefault(keyframe_positions[max(k, 0)], set()).add(pts)
    return groups
