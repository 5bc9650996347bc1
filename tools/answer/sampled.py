"""A question about frames sampled from one video or several, still images among them, in one model call: fetch,
sample, bring up the model, ask, and build the answer with the evidence it rests on.

A still image is one image at its place in the order, prepared as frames are (`frames.image_for_model`), named in
the prompt as `Image N` by its place among the sources (videos are `Video N`), with no time and no tracks; its
result entry says `kind: image` and its size. An animated GIF is a video (`steps.played`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from llava_video_mcp.tools.answer.evidence import (
    AtSide,
    Evidence,
    LabelledFrame,
    Shown,
    checked_side,
    evidence_images,
    label,
    noted,
)
from llava_video_mcp.tools.answer.progress import WorkPlan, model_progress, span
from llava_video_mcp.tools.answer.results import (
    Clock,
    FrameInfo,
    TokenCounts,
    VideoAnswer,
    VideoInfo,
    answer_of,
    image_info,
    notes_of,
    video_info,
)
from llava_video_mcp.tools.answer.steps import (
    Sampling,
    Stages,
    ask,
    fetched_media,
    index_file,
    load_model,
    safe_for,
    scene_plan,
    timed,
)
from llava_video_mcp.tools.backends import Prompt
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import LimitError
from llava_video_mcp.tools.frames import Cut, SampleCache, SampledVideo, SamplingPlan, image_for_model, scene_numbers
from llava_video_mcp.tools.media import LocalImage, LocalVideo
from llava_video_mcp.tools.plural import plural
from llava_video_mcp.tools.progress import Progress
from llava_video_mcp.tools.prompt import (
    DEFAULT_IMAGE_QUESTION,
    DEFAULT_QUESTION,
    MAX_TRANSCRIPT_CHARS,
    Seen,
    SeenImage,
    SeenVideo,
    bounded_tracks,
    question_prompt,
)
from llava_video_mcp.tools.timeline import TrackText
from llava_video_mcp.tools.tracks import Tracks, TranscriptOptions

SPARSE_S = 30.0
"""A sampled call with more seconds than this between frames gets a note that it saw little of its range."""


@dataclass(frozen=True)
class VideoRequest:
    source: str
    plan: SamplingPlan
    sampling: Sampling = "uniform"


@dataclass(frozen=True)
class _Seen:
    """One video as this call saw (and heard) it."""

    video: LocalVideo
    sample: SampledVideo
    from_cache: bool
    heard: list[TrackText]
    """Its tracks, each within its share of the text budget."""
    cuts: Sequence[Cut] | None
    """The video's scene changes when the frames were placed by them (sampling="scenes"), else None."""


@dataclass(frozen=True)
class _Still:
    """A still image among the sources, as the model takes it."""

    image: LocalImage
    picture: Image.Image

    @property
    def note(self) -> str | None:
        if not self.image.animated:
            return None
        return f"An animated {self.image.format.upper()}: the model saw its first frame."


def answer_sampled(
    stages: Stages,
    samples: SampleCache,
    requests: Sequence[VideoRequest],
    question: str,
    transcript: TranscriptOptions,
    max_new_tokens: int,
    evidence: Evidence,
    progress: Progress,
    cancel: CancelToken | None,
    frame_max_side: int | None = None,
) -> VideoAnswer:
    """Answer `question` from the frames of every request, all in one model context; the images `evidence` asks for
    made while the call's files are held (`frame_max_side` may decode frames again, from them)."""
    checked_side(frame_max_side, evidence, stages.looking_only)
    clock = Clock()
    model, tracks = stages.model, stages.tracks
    work = WorkPlan(progress, loading=model.loaded is None and not stages.looking_only, hearing=tracks.busy(transcript))
    count = len(requests)
    fetching = [work.part("fetch", i, count) for i in range(count)]
    with fetched_media(stages, [r.source for r in requests], transcript, fetching, clock, cancel) as media:
        seen: list[_Seen | _Still] = []
        for number, (request, one) in enumerate(zip(requests, media, strict=True), 1):
            sampling = work.part("sample", number - 1, count)
            if isinstance(one, LocalImage):
                sampling(0, 1, f"Reading the image {number}/{count}")
                seen.append(_still(one, request, stages.frame_side, clock))
                continue
            with timed(clock, "decode_s"):
                plan, share, cuts = request.plan, 0.0, None
                if request.sampling == "scenes":
                    (plan, cuts), share = scene_plan(one, plan, span(sampling, 0, 0.8, 1), cancel), 0.9
                sampling(share, 1, f"Sampling {plural(request.plan.num_frames, 'frame')} from video {number}/{count}")
                sample, hit = samples.sample(one.path, plan, cancel, index_file(one))
            listening = work.part("hear", number - 1, count)
            heard = tracks.read_all(one, sample.start_s, sample.end_s, transcript, listening, cancel)
            clock.spent(tracks.timings(heard))
            seen.append(_Seen(one, sample, hit, bounded_tracks(heard, MAX_TRANSCRIPT_CHARS // count), cuts))
        with timed(clock, "decode_s"):
            shown = _evidence(seen, "frames" if stages.looking_only else evidence, frame_max_side, cancel)
    if question == DEFAULT_QUESTION and all(isinstance(s, _Still) for s in seen):
        question = DEFAULT_IMAGE_QUESTION
    if stages.looking_only:
        return _frames_only(seen, question, stages.tracks, clock, work.part("model"), shown)
    backend = load_model(model, work.part("load"), clock)
    running = work.part("model")
    pictures = [picture for s in seen for picture in _pictures(s)]
    unit = "frame" if all(isinstance(s, _Seen) for s in seen) else "image"
    running(0, 1, f"Running {backend.model_id} on {plural(len(pictures), unit)}")
    text = question_prompt([_described(s) for s in seen], question, safe_for(backend))
    prompt = Prompt(pictures, text.text, text.question_start)
    generation = ask(backend, prompt, max_new_tokens, model_progress(running), clock, cancel)
    running(1, 1, "Done")
    result = answer_of(generation, question, noted(_video_infos(seen, stages.tracks), shown.note), backend, clock)
    return result.with_images(shown.images)


def _still(image: LocalImage, request: VideoRequest, side: int, clock: Clock) -> _Still:
    """The image as the model takes it; a time range asked of it is refused (an image has no time)."""
    if request.plan.start_s is not None or request.plan.end_s is not None:
        raise LimitError(
            f"{request.source} is a still image: start_s/end_s apply to videos only. Leave them out for an image."
        )
    with timed(clock, "decode_s"):
        return _Still(image, image_for_model(image, side))


def _pictures(seen: _Seen | _Still) -> list[Image.Image]:
    return [seen.picture] if isinstance(seen, _Still) else [f.image for f in seen.sample.frames]


def _described(seen: _Seen | _Still) -> Seen:
    return SeenImage(seen.image.title) if isinstance(seen, _Still) else _seen_video(seen)


def _frames_only(
    seen: Sequence[_Seen | _Still], question: str, tracks: Tracks, clock: Clock, done: Progress, shown: Shown
) -> VideoAnswer:
    """Without a model (`--model none`): what was chosen, heard and read, with every frame as an image for the
    calling agent to look at (`shown`: each labelled with its exact time, as `frames[].timestamp_s` gives it)."""
    count = sum(len(_pictures(s)) for s in seen)
    done(1, 1, "Done")
    several = " (V1, V2, ... name the video)" if len(seen) > 1 else ""
    note = (
        f"No model runs on this server (--model none): the {plural(count, 'frame')} it chose are attached as images "
        f"for you to look at, in order, each labelled with its time in seconds{several} as frames[].timestamp_s "
        "gives it; what is said and shown as text is in videos[]. Answer the question from them yourself."
    )
    answer = VideoAnswer(
        question=question,
        videos=noted(_video_infos(seen, tracks, scenes=True), shown.note),
        note=note,
        timings=clock.timings(),
        tokens=TokenCounts(prompt=None, generated=0),
        stopped_by_token_limit=False,
    )
    return answer.with_images(shown.images)


def _seen_video(seen: _Seen) -> SeenVideo:
    times = [f.timestamp_s for f in seen.sample.frames]
    scenes = scene_numbers(seen.cuts, times) if seen.cuts is not None else ()
    return SeenVideo(seen.video.title, seen.sample.info.duration_s, times, seen.heard, scenes)


def _video_infos(seen: Sequence[_Seen | _Still], tracks: Tracks, scenes: bool = False) -> list[VideoInfo]:
    """What each source is, and each video's frames (with the scene each shows, when `scenes` and the call placed
    them so)."""
    infos = []
    index = 0
    for one in seen:
        if isinstance(one, _Still):
            infos.append(image_info(one.image, one.note))
            index += 1
            continue
        times = [f.timestamp_s for f in one.sample.frames]
        numbers = scene_numbers(one.cuts, times) if scenes and one.cuts is not None else [None] * len(times)
        frames = [
            FrameInfo(index=index + i, timestamp_s=round(t, 3), scene=n)
            for i, (t, n) in enumerate(zip(times, numbers, strict=True))
        ]
        index += len(frames)
        infos.append(
            video_info(
                one.video,
                one.sample.info,
                start_s=one.sample.start_s,
                end_s=one.sample.end_s,
                frames_requested=one.sample.frames_requested,
                frames=frames,
                frames_from_cache=one.from_cache,
                note=" ".join(n for n in (_with_sparse_note(one.sample), *notes_of(one.heard)) if n) or None,
                said=tracks.transcript(one.heard),
                fields=tracks.fields(one.heard),
            )
        )
    return infos


def _with_sparse_note(sample: SampledVideo) -> str | None:
    """The sampler's note, and one saying so when the frames are far apart: the model then saw little of the range."""
    spacing = (sample.end_s - sample.start_s) / max(len(sample.frames), 1)
    if spacing <= SPARSE_S:
        return sample.note
    sparse = (
        f"One frame every {spacing:.0f} s over {(sample.end_s - sample.start_s) / 60:.1f} min: the model saw little of "
        'this range. Use coverage="full" to watch all of it, or start_s/end_s to look closer at a part.'
    )
    return f"{sample.note} {sparse}" if sample.note else sparse


def _evidence(
    seen: Sequence[_Seen | _Still], evidence: Evidence, side: int | None, cancel: CancelToken | None
) -> Shown:
    """JPEGs of the images the model saw: a video's frames each labelled with its reported timestamp (and the video's
    number when several are compared), a still image with its name (`Image N`). The same decoded images, unless
    `side` asks them at a long side of its own (`AtSide`)."""
    if evidence == "none":
        return Shown([])
    several = len(seen) > 1
    if side is not None:
        sized = AtSide(side, cancel)
        for number, one in enumerate(seen, 1):
            if isinstance(one, _Still):
                sized.add_image(one.image, one.picture, f"Image {number}")
                continue
            frames = one.sample.frames
            labels = [label(round(frame.timestamp_s, 3), number if several else None) for frame in frames]
            size = (one.sample.info.width, one.sample.info.height)
            sized.add_video(one.video.path, index_file(one.video), size, frames, labels)
        return sized.shown()
    pictures: list[LabelledFrame] = []
    for number, one in enumerate(seen, 1):
        if isinstance(one, _Still):
            pictures.append(LabelledFrame(one.picture, f"Image {number}"))
            continue
        pictures += [
            LabelledFrame(frame.image, label(round(frame.timestamp_s, 3), number if several else None))
            for frame in one.sample.frames
        ]
    return Shown(evidence_images(pictures, evidence))
