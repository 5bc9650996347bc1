"""Turning decoded frames upright from their display matrix, as players (and FFmpeg's command line) do: quarter
turns and mirror flips exactly, any other angle by rotating; a matrix that maps nothing changes nothing."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace

import av
import av.container
import av.error
import av.sidedata.sidedata
import av.video.frame
import av.video.stream
from PIL import Image

from llava_video_mcp.tools.frames._plan import StreamInfo


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
    """The frame's orientation from its display matrix, if it carries one.

    The matrix is read from a one-pixel copy of the frame, which carries the frame's side data, never from the frame
    itself: PyAV (18) ties a frame and its `side_data` into a reference cycle, and a decoded frame in a cycle holds
    the decoder's buffers and threads until the cyclic garbage collector happens to run (on an idle server, never).
    The copy's cycle holds a pixel."""
    probe = frame.reformat(width=1, height=1, format="gray", interpolation="POINT")
    matrix = probe.side_data.get("DISPLAYMATRIX")
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
