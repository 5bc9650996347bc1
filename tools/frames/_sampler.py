"""Frame sampling with PyAV: choose the frames first, then decode only what holds them.

Choosing works on the packet index, built by demuxing the stream without decoding: it gives every frame's
presentation timestamp (pts) and which packets are keyframes. Header fields are not trusted for this: webm
often states no frame count, mp4 edit lists make it wrong, and frame rates vary. The frame nearest each target
time is picked from the real pts, so reported timestamps are exact.

Decoding then seeks to the keyframe that opens each group of pictures (GOP) holding a chosen frame and decodes
forward only until the group's last chosen frame, so a few frames of a long video cost a few GOPs, not the whole
file. Where the index has no timestamps, or a seek lands somewhere useless (some MPEG-TS files), it falls back to
one sequential decode.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import av
import av.container
import av.error
import av.sidedata.sidedata
import av.video.frame
import av.video.stream

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.frames._containers import open_video
from llava_video_mcp.tools.frames._decode import (
    FrameCollector,
    decode_chosen,
    decode_sequential_exact,
    finished_sample,
    sample_sequentially,
)
from llava_video_mcp.tools.frames._image import refuse_still_image
from llava_video_mcp.tools.frames._index import (
    ContainerIndex,
    PacketIndex,
    header_info,
    indexed,
    keyframes_in_range,
    read_index,
    rewind,
    stream_info,
    stream_time_base,
)
from llava_video_mcp.tools.frames._plan import (
    SampledFrame,
    SampledVideo,
    SamplingPlan,
    StreamInfo,
    checked_range,
    nearest_pts,
    target_pts,
)

log = logging.getLogger(__name__)


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
    is read from there when it was saved for this very file, and saved there otherwise (see `indexed`)."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        planned = plan_sampling(container, stream, path, plan, strategy, index_file)
        if planned is None or planned[0].restarts_s:
            # Timestamps that restart name two frames with one time: seeking cannot tell them apart.
            return sample_sequentially(container, stream, path, plan, cancel, planned[0] if planned else None)
        info, index, first_pts, (range_start, range_end), count, targets = planned
        time_base = stream_time_base(stream)
        if plan.keyframes_only:
            chosen = nearest_pts(
                keyframes_in_range(
                    index, first_pts + round(range_start / time_base), first_pts + round(range_end / time_base)
                ),
                targets,
            )
        else:
            chosen = nearest_pts(index.sorted_pts(), targets)
        found = FrameCollector(plan.min_side)
        decoded = 0
        if strategy == "seek":
            decoded = decode_chosen(container, stream, index, chosen, found, cancel)
        missing = {pts for pts in chosen if pts not in found.images}
        if missing:
            if strategy == "seek":
                log.info("%s: %d frames not reached by seeking; decoding sequentially", path.name, len(missing))
            decoded += decode_sequential_exact(path, stream.index, missing, found, cancel)
        frames = [
            SampledFrame(timestamp_s=float((pts - first_pts) * time_base), image=found.images[pts])
            for pts in chosen
            if pts in found.images
        ]
        damaged = [float((pts - first_pts) * time_base) for pts in chosen if pts not in found.images]
        orientation = found.orientation
    return finished_sample(
        path, info, orientation, plan, (range_start, range_end), frames, decoded, (count, len(chosen), damaged)
    )


Planned = tuple["StreamInfo", "PacketIndex", int, tuple[float, float], int, list[int]]


def plan_sampling(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: Path,
    plan: SamplingPlan,
    strategy: str,
    index_file: Path | None,
) -> Planned | None:
    """What to decode: the stream's facts, a packet index covering the targets, the first pts, the range, the frame
    count and the targets. From the container's index where it lists every frame (falling back when its GOPs
    cannot be read, in a damaged file), else from a full index; None when packets carry no timestamps."""
    around = None if strategy == "sequential" else ContainerIndex.read(container, stream, index_file)
    if around is not None:
        try:
            range_s = checked_range(plan.start_s, plan.end_s, around.info.duration_s)
            count = plan.frame_count(range_s[1] - range_s[0])
            targets = target_pts(around.first_pts, range_s, count, stream_time_base(stream), plan)
            index = around.packets_around(targets, keyframes_only=plan.keyframes_only)
            return around.info, index, around.first_pts, range_s, count, targets
        except (av.error.FFmpegError, ValueError) as exc:
            log.info("%s: planning from the container's index failed (%s); demuxing the stream", path.name, exc)
            rewind(container, stream)
    full = indexed(container, stream, path, index_file)
    if full is None:
        return None
    info = stream_info(stream, full)
    first_pts = min(full.pts)
    range_s = checked_range(plan.start_s, plan.end_s, info.duration_s, info.stated_duration_s)
    count = plan.frame_count(range_s[1] - range_s[0])
    return info, full, first_pts, range_s, count, target_pts(first_pts, range_s, count, stream_time_base(stream), plan)


def probe(path: Path, index_file: Path | None = None) -> StreamInfo:
    """Stream facts from the packet index, without decoding any frame."""
    return outline(path, index_file)[0]


def outline(path: Path, index_file: Path | None = None) -> tuple[StreamInfo, list[float]]:
    """Stream facts and the keyframes' times (seconds from the first frame), from the packet index."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        time_base = stream_time_base(stream)
        around = ContainerIndex.read(container, stream, index_file)
        if around is not None:
            return around.info, [float((pts - around.first_pts) * time_base) for pts in around.keyframe_pts()]
        index = indexed(container, stream, path, index_file)
        if index is None:
            return header_info(container, stream), []
        first = min(index.pts)
        keyframes = [float((pts - first) * time_base) for pts in index.sorted_keyframe_pts()]
        return stream_info(stream, index), keyframes


def media_duration(path: Path, name: str) -> float:
    """The video's duration: as its header states it, or counted from its packets when the header states none
    (a duration limit must hold for such files too). Raises DecodeError, calling the file `name`, when it is no
    video this server can read (a still image, too: `refuse_still_image`)."""
    refuse_still_image(path, name)
    with open_video(path, name) as container:
        stream = container.streams.video[0]
        stated = header_info(container, stream).duration_s
        if stated > 0:
            return stated
        index = read_index(container, stream)
        return stream_info(stream, index).duration_s if index is not None else 0.0
