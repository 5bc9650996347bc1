"""A question about frames sampled from one video or several, in one model call: fetch, sample, bring up the
model, ask, and build the answer with the evidence it rests on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llava_video_mcp.tools.answer.evidence import Evidence, LabelledFrame, evidence_images, label
from llava_video_mcp.tools.answer.progress import WorkPlan, model_progress, span
from llava_video_mcp.tools.answer.results import (
    Clock,
    FrameInfo,
    TokenCounts,
    VideoAnswer,
    VideoInfo,
    answer_of,
    notes_of,
    video_info,
)
from llava_video_mcp.tools.answer.steps import (
    Sampling,
    Stages,
    ask,
    fetched,
    index_file,
    load_model,
    safe_for,
    scene_plan,
    timed,
)
from llava_video_mcp.tools.backends import Prompt
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.frames import Cut, SampleCache, SampledVideo, SamplingPlan, scene_numbers
from llava_video_mcp.tools.media import LocalVideo
from llava_video_mcp.tools.plural import plural
from llava_video_mcp.tools.progress import Progress
from llava_video_mcp.tools.prompt import MAX_TRANSCRIPT_CHARS, SeenVideo, bounded_tracks, question_prompt
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
) -> VideoAnswer:
    """Answer `question` from the frames of every request, all in one model context."""
    clock = Clock()
    model, tracks = stages.model, stages.tracks
    work = WorkPlan(progress, loading=model.loaded is None and not stages.looking_only, hearing=tracks.busy(transcript))
    count = len(requests)
    fetching = [work.part("fetch", i, count) for i in range(count)]
    with fetched(stages, [r.source for r in requests], transcript, fetching, clock, cancel) as videos:
        seen = []
        for number, (request, video) in enumerate(zip(requests, videos, strict=True), 1):
            sampling = work.part("sample", number - 1, count)
            with timed(clock, "decode_s"):
                plan, share, cuts = request.plan, 0.0, None
                if request.sampling == "scenes":
                    (plan, cuts), share = scene_plan(video, plan, span(sampling, 0, 0.8, 1), cancel), 0.9
                sampling(share, 1, f"Sampling {plural(request.plan.num_frames, 'frame')} from video {number}/{count}")
                sample, hit = samples.sample(video.path, plan, cancel, index_file(video))
            listening = work.part("hear", number - 1, count)
            heard = tracks.read_all(video, sample.start_s, sample.end_s, transcript, listening, cancel)
            clock.spent(tracks.timings(heard))
            seen.append(_Seen(video, sample, hit, bounded_tracks(heard, MAX_TRANSCRIPT_CHARS // count), cuts))
    if stages.looking_only:
        return _frames_only(seen, question, stages.tracks, clock, work.part("model"))
    backend = load_model(model, work.part("load"), clock)
    running = work.part("model")
    running(0, 1, f"Running {backend.model_id} on {plural(sum(len(s.sample.frames) for s in seen), 'frame')}")
    text = question_prompt([_seen_video(s) for s in seen], question, safe_for(backend))
    prompt = Prompt([f.image for s in seen for f in s.sample.frames], text.text, text.question_start)
    generation = ask(backend, prompt, max_new_tokens, model_progress(running), clock, cancel)
    running(1, 1, "Done")
    result = answer_of(generation, question, _video_infos(seen, stages.tracks), backend, clock)
    return result.with_images(_evidence([s.sample for s in seen], evidence))


def _frames_only(seen: Sequence[_Seen], question: str, tracks: Tracks, clock: Clock, done: Progress) -> VideoAnswer:
    """Without a model (`--model none`): what was chosen, heard and read, with every frame as an image for the
    calling agent to look at (each labelled with its exact time, as `frames[].timestamp_s` gives it)."""
    count = sum(len(s.sample.frames) for s in seen)
    done(0, 1, f"Labelling {plural(count, 'frame')} for you to look at")
    images = _evidence([s.sample for s in seen], "frames")
    done(1, 1, "Done")
    several = " (V1, V2, ... name the video)" if len(seen) > 1 else ""
    note = (
        f"No model runs on this server (--model none): the {plural(count, 'frame')} it chose are attached as images "
        f"for you to look at, in order, each labelled with its time in seconds{several} as frames[].timestamp_s "
        "gives it; what is said and shown as text is in videos[]. Answer the question from them yourself."
    )
    answer = VideoAnswer(
        question=question,
        videos=_video_infos(seen, tracks, scenes=True),
        note=note,
        timings=clock.timings(),
        tokens=TokenCounts(prompt=None, generated=0),
        stopped_by_token_limit=False,
    )
    return answer.with_images(images)


def _seen_video(seen: _Seen) -> SeenVideo:
    times = [f.timestamp_s for f in seen.sample.frames]
    scenes = scene_numbers(seen.cuts, times) if seen.cuts is not None else ()
    return SeenVideo(seen.video.title, seen.sample.info.duration_s, times, seen.heard, scenes)


def _video_infos(seen: Sequence[_Seen], tracks: Tracks, scenes: bool = False) -> list[VideoInfo]:
    """What each video is, and its frames (with the scene each shows, when `scenes` and the call placed them so)."""
    infos = []
    index = 0
    for one in seen:
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


def _evidence(sampled: Sequence[SampledVideo], evidence: Evidence) -> list[bytes]:
    """JPEGs of the frames the model saw (the same decoded images), each labelled with its reported timestamp."""
    if evidence == "none":
        return []
    several = len(sampled) > 1
    frames = [
        LabelledFrame(frame.image, label(round(frame.timestamp_s, 3), number if several else None))
        for number, sample in enumerate(sampled, 1)
        for frame in sample.frames
    ]
    return evidence_images(frames, evidence)
