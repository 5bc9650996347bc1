"""Decoding only what holds the chosen frames: each GOP once from its keyframe, non-reference frames that nothing
needs skipped (H.264, HEVC), frames converted to the model's size in the decoder's converter as soon as they come;
and the sequential fallback for streams without usable timestamps or whose clock restarts."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import av.container
import av.error
import av.sidedata.sidedata
import av.video.frame
import av.video.stream
from PIL import Image

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError
from llava_video_mcp.tools.frames._containers import ffmpeg_reason, open_video, prepare_video_stream
from llava_video_mcp.tools.frames._index import PacketIndex, gop_groups, header_info
from llava_video_mcp.tools.frames._orientation import UPRIGHT, Orientation, orientation_of
from llava_video_mcp.tools.frames._plan import (
    SampledFrame,
    SampledVideo,
    SamplingPlan,
    StreamInfo,
    checked_range,
    joined,
    plan_targets,
    shortfall_note,
    stream_notes,
)

log = logging.getLogger(__name__)


# Decoders that read skip_frame for each packet, so non-reference frames can be skipped around the wanted ones.
# libdav1d, for one, applies it late and keeps it: there it would drop wanted frames.
PER_PACKET_SKIP_DECODERS = {"h264", "hevc"}


class FrameCollector:
    """Converts each wanted frame as soon as it is decoded, so no full-size frame outlives its turn."""

    def __init__(self, min_side: int) -> None:
        self.min_side = min_side
        self.images: dict[int, Image.Image] = {}
        self.orientation = UPRIGHT

    def add(self, frame: av.VideoFrame) -> None:
        if frame.pts is not None:
            self.images[frame.pts], self.orientation = upright_image(frame, self.min_side)


def decode_chosen(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    index: PacketIndex,
    chosen: Sequence[int],
    found: FrameCollector,
    cancel: CancelToken | None = None,
) -> int:
    """Decode the GOPs that hold the chosen frames, each once, seeking to its keyframe; return frames decoded."""
    groups = gop_groups(index, chosen)
    decoded = 0
    codec = stream.codec_context
    skips_per_packet = codec.name in PER_PACKET_SKIP_DECODERS
    for key_position in sorted(groups):
        wanted = groups[key_position]
        last_wanted = max(wanted)
        try:
            container.seek(index.pts[key_position], stream=stream, backward=True, any_frame=False)
            skip_unless = set(wanted) if skips_per_packet else None
            frames = decode_packets(container, stream, skip_unless, cancel, from_keyframe=index.pts[key_position])
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
            log.info("seek-and-decode failed near pts %d: %s", index.pts[key_position], ffmpeg_reason(exc))
        finally:
            codec.skip_frame = "DEFAULT"
    return decoded


def decode_packets(
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
            log.debug("skipping undecodable packet: %s", ffmpeg_reason(exc))


def decode_sequential_exact(
    path: Path, stream_index: int, wanted: set[int], found: FrameCollector, cancel: CancelToken | None = None
) -> int:
    """Decode from the start up to the last wanted frame, in a fresh container: no state left by seeking."""
    decoded = 0
    last_wanted = max(wanted)
    with open_video(path) as container:
        stream = container.streams[stream_index]
        assert isinstance(stream, av.video.stream.VideoStream)
        prepare_video_stream(path.name, stream)
        for frame in decode_packets(container, stream, cancel=cancel):
            decoded += 1
            if frame.pts in wanted:
                found.add(frame)
            if frame.pts is not None and frame.pts >= last_wanted:
                break
    return decoded


def sample_sequentially(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: Path,
    plan: SamplingPlan,
    cancel: CancelToken | None = None,
    info: StreamInfo | None = None,
) -> SampledVideo:
    """One pass over decoded frames, keeping the one nearest each target: for streams with no usable index, and
    for streams whose timestamps restart (`info.restarts_s`), whose frames are placed on a continuous timeline."""
    info = info or header_info(container, stream)
    if info.duration_s <= 0:
        raise DecodeError(
            f"{path.name} has no timestamps and states no duration (a raw elementary stream?), so its frames cannot "
            "be placed in time. Put it in a container first, e.g. `ffmpeg -i INPUT -c copy OUTPUT.mp4`."
        )
    range_start, range_end = checked_range(plan.start_s, plan.end_s, info.duration_s)
    count = plan.frame_count(range_end - range_start)
    targets = plan_targets(plan, (range_start, range_end), count)
    best: list[tuple[float, av.VideoFrame] | None] = [None] * count
    container.seek(0)
    timeline = Timeline(1 / info.fps if info.fps else 0.04)
    decoded = 0
    for frame in decode_packets(container, stream, cancel=cancel):
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
            image, orientation = upright_image(candidate[1], plan.min_side)
            frames.append(SampledFrame(timestamp_s=candidate[0], image=image))
    return finished_sample(
        path, info, orientation, plan, (range_start, range_end), frames, decoded, (count, len(frames), [])
    )


def finished_sample(
    path: Path,
    info: StreamInfo,
    orientation: Orientation,
    plan: SamplingPlan,
    span: tuple[float, float],
    frames: list[SampledFrame],
    decoded: int,
    shortfall: tuple[int, int, Sequence[float]],
) -> SampledVideo:
    """The sample as callers get it, whichever way it was decoded: the stream's info turned upright, and notes on the
    stream and on any shortfall (`shortfall`: frames planned, distinct frames chosen, times that could not be
    decoded); DecodeError when no frame at all was decoded."""
    if not frames:
        raise DecodeError(f"No frame of {path.name} could be decoded: the video stream is damaged or empty.")
    start_s, end_s = span
    planned, distinct, damaged = shortfall
    return SampledVideo(
        info=orientation.applied_to(info),
        start_s=start_s,
        end_s=end_s,
        frames_requested=plan.num_frames,
        frames=frames,
        frames_decoded=decoded,
        note=joined(shortfall_note(plan, planned, distinct, damaged, end_s - start_s), stream_notes(info)),
    )


class Timeline:
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


def to_model_image(frame: av.VideoFrame, min_side: int) -> Image.Image:
    """Upright RGB image, scaled in the decoder's converter so that its shorter side is at most `min_side`."""
    return upright_image(frame, min_side)[0]


def upright_image(frame: av.VideoFrame, min_side: int) -> tuple[Image.Image, Orientation]:
    """`to_model_image`, and the orientation it was turned upright by."""
    width, height = model_size(frame.width, frame.height, min_side)
    rgb: Any = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA")
    image: Image.Image = rgb.to_image()  # PyAV leaves to_image untyped
    orientation = orientation_of(frame)
    return orientation.upright(image), orientation


def model_size(width: int, height: int, min_side: int) -> tuple[int, int]:
    """The size an image is scaled to for the model: the aspect kept, the shorter side `min_side` at most (never
    scaled up)."""
    shorter = min(width, height)
    if shorter <= min_side:
        return width, height
    scale = min_side / shorter
    return max(1, round(width * scale)), max(1, round(height * scale))
