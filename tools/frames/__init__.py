"""Stage 2, file -> timed images: frames chosen at exact presentation times and decoded with PyAV, opened so that a
hostile file costs little and reads nothing else (`_containers`).

    _containers   opening one file: allowed formats, the `file` protocol only, sizes checked before allocating
    _plan         the plan and the typed records: StreamInfo, SamplingPlan, SampledFrame, SampledVideo
    _index        timestamps without decoding: the packet index, the container's index, the stream's facts
    _decode       decoding only what holds the chosen frames; the sequential fallback
    _orientation  frames turned upright from the display matrix
    _image        still images: told by their content, sizes checked from the header, the first frame as the model
                  takes it (`image_facts` is the media stage's `inspect_image`; `image_for_model`)
    _sampler      the entry points: sample, probe, outline, media_duration
    _cache        sampled frames kept for follow-ups
    _scenes       scene changes found by looking at every frame, and frames chosen so that every scene is seen
    _audio        the sound, in 30 s blocks of 16 kHz mono on the video's timeline, for hearing speech
"""

from llava_video_mcp.tools.frames._audio import (
    BLOCK_S,
    EDGE_SEARCH_S,
    SAMPLE_RATE,
    AudioTrack,
    audio_track,
    block_edge,
    decode_block,
    decode_span,
    is_silent,
    level_dbfs,
    quiet_edge,
)
from llava_video_mcp.tools.frames._cache import SampleCache
from llava_video_mcp.tools.frames._decode import to_model_image
from llava_video_mcp.tools.frames._image import IMAGE_FORMATS, MAX_IMAGE_PIXELS, image_facts, image_for_model
from llava_video_mcp.tools.frames._orientation import orientation_from_matrix
from llava_video_mcp.tools.frames._plan import (
    SampledFrame,
    SampledVideo,
    SamplingPlan,
    StreamInfo,
    checked_range,
    stream_notes,
    uniform_targets,
)
from llava_video_mcp.tools.frames._sampler import media_duration, outline, probe, sample_frames, sample_with_plan
from llava_video_mcp.tools.frames._scenes import PROGRESS_EVERY_S, Cut, detect_scenes, scene_numbers, scene_targets
from llava_video_mcp.tools.limits import MAX_FRAMES

__all__ = [
    "BLOCK_S",
    "EDGE_SEARCH_S",
    "IMAGE_FORMATS",
    "MAX_FRAMES",
    "MAX_IMAGE_PIXELS",
    "PROGRESS_EVERY_S",
    "SAMPLE_RATE",
    "AudioTrack",
    "Cut",
    "SampleCache",
    "SampledFrame",
    "SampledVideo",
    "SamplingPlan",
    "StreamInfo",
    "audio_track",
    "block_edge",
    "checked_range",
    "decode_block",
    "decode_span",
    "detect_scenes",
    "image_facts",
    "image_for_model",
    "is_silent",
    "level_dbfs",
    "media_duration",
    "orientation_from_matrix",
    "outline",
    "probe",
    "quiet_edge",
    "sample_frames",
    "sample_with_plan",
    "scene_numbers",
    "scene_targets",
    "stream_notes",
    "to_model_image",
    "uniform_targets",
]
