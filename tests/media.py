"""Small real videos, encoded by PyAV in the tests themselves, and a reference sequential decoder."""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def encode_all(
    container: av.container.OutputContainer,
    stream: av.video.stream.VideoStream | av.audio.stream.AudioStream,
    frames: Iterable[av.VideoFrame] | Iterable[av.AudioFrame],
) -> None:
    """Encodes `frames` into `stream` in order, then flushes its encoder, muxing every packet."""
    for frame in frames:
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def rgb_frame(image: np.ndarray, pts: int, time_base: Fraction | None = None) -> av.VideoFrame:
    """A frame of `image` (height x width x 3, uint8) at `pts`, in `time_base` when given (else the stream's)."""
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    frame.pts = pts
    if time_base is not None:
        frame.time_base = time_base
    return frame


def moving_frame(i: int, width: int, height: int) -> np.ndarray:
    """A frame whose content changes every frame: a sliding bar over a gradient that shifts colour."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = (x * 255 // max(width - 1, 1) + i * 7) % 256
    image[..., 1] = (y * 255 // max(height - 1, 1) + i * 3) % 256
    image[..., 2] = (i * 11) % 256
    bar = (i * 5) % width
    image[:, bar : bar + max(width // 16, 2)] = 255
    return image


def encode_video(
    path: Path,
    *,
    codec: str = "libx264",
    seconds: float = 3.0,
    fps: int = 10,
    width: int = 96,
    height: int = 64,
    gop: int = 12,
    pixel_format: str = "yuv420p",
    timestamps: list[float] | None = None,
    bframes: bool = True,
    rotation: int = 0,
    start_s: float = 0.0,
    audio_first: bool = False,
    first_frame: int = 0,
) -> Path:
    """Encode moving content; `timestamps` (seconds) makes a variable-frame-rate video instead of a fixed rate.

    `rotation` stores a display rotation (counter-clockwise degrees), `start_s` shifts every timestamp, and
    `audio_first` puts a silent audio stream ahead of the video stream in the container; the content starts at
    `moving_frame(first_frame)`.
    """
    times = timestamps if timestamps is not None else [i / fps for i in range(round(seconds * fps))]
    times = [t + start_s for t in times]
    time_base = Fraction(1, 1000) if timestamps is not None or start_s else Fraction(1, fps)
    with av.open(str(path), mode="w") as container:
        audio = container.add_stream("aac", rate=16000) if audio_first else None
        stream = container.add_stream(codec, rate=fps)
        if rotation:
            stream.set_display_rotation(rotation)
        stream.width, stream.height = width, height
        stream.pix_fmt = pixel_format
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = gop
        options = {"g": str(gop), "keyint_min": str(gop)}
        if codec == "libx264":
            options |= {"preset": "ultrafast", "bf": "2" if bframes else "0", "sc_threshold": "0"}
        elif codec == "libvpx-vp9":
            options |= {"deadline": "realtime", "cpu-used": "8"}
        stream.options = options
        if audio is not None:
            mux_silence(container, audio, 1.0)
        encode_all(
            container,
            stream,
            (
                rgb_frame(moving_frame(first_frame + i, width, height), round(t / time_base), time_base)
                for i, t in enumerate(times)
            ),
        )
    return path


def mux_silence(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    """Encode and mux `seconds` of mono silence at 16 kHz into the container's audio stream."""

    def silence() -> Iterator[av.AudioFrame]:
        for start in range(0, int(seconds * 16000), 1024):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            samples.sample_rate = 16000
            samples.pts = start
            yield samples

    encode_all(container, stream, silence())


def encode_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), mode="w") as container:
        mux_silence(container, container.add_stream("aac", rate=16000), seconds)
    return path


def with_subtitles(video: Path, folder: Path, name: str, subtitles: str, suffix: str = ".vtt") -> Path:
    """A copy of `video` as folder/NAME.mp4 with a subtitle file beside it, NAME plus `suffix`."""
    copy = folder / f"{name}.mp4"
    copy.write_bytes(video.read_bytes())
    (folder / f"{name}{suffix}").write_text(subtitles)
    return copy


def reference_frames(path: Path) -> list[tuple[float, av.VideoFrame]]:
    """Every frame of the first video stream by plain sequential decoding: (seconds from the first frame, frame)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(float(frame.pts * stream.time_base), frame) for frame in container.decode(stream)]
    first = frames[0][0]
    return [(t - first, frame) for t, frame in frames]


def nearest_reference(reference: list[tuple[float, av.VideoFrame]], target: float) -> tuple[float, av.VideoFrame]:
    return min(reference, key=lambda item: (abs(item[0] - target), item[0]))


CUTS = (45.0, 100.0, 170.0)
CUES = [(10.0, 12.0, "Welcome to the first scene."), (50.0, 52.0, "Now it is light."), (120.0, 123.0, "Halfway."),
        (230.0, 233.0, "Goodbye.")]  # fmt: skip


def scenes(path: Path, seconds: int = 240, fps: int = 2, width: int = 96, height: int = 64) -> Path:
    """Dark and light scenes changing at CUTS, a small square drifting across; keyframes every 30 s and at cuts."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {"g": str(30 * fps), "keyint_min": "1", "preset": "veryfast", "sc_threshold": "40", "bf": "0"}

        def pictures() -> Iterator[av.VideoFrame]:
            for i in range(seconds * fps):
                scene = sum(i / fps >= cut for cut in CUTS)
                image = np.full((height, width, 3), 235 if scene % 2 else 16, np.uint8)
                x = (i // 2) % (width - 4)
                image[:4, x : x + 4] = 128
                yield rgb_frame(image, i)

        encode_all(container, stream, pictures())
    vtt = "WEBVTT\n\n" + "\n\n".join(
        f"00:{int(a) // 60:02d}:{a % 60:06.3f} --> 00:{int(b) // 60:02d}:{b % 60:06.3f}\n{text}" for a, b, text in CUES
    )
    path.with_suffix(".vtt").write_text(vtt + "\n")
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, depth: int = 16) -> bytes:
    """A PNG that is all header: RGBA at `depth` bits, `width` x `height`, with a few bytes of picture data. A
    decoder allocates the whole frame from the header before it reads the data."""
    header = struct.pack(">IIBBBBB", width, height, depth, 6, 0, 0, 0)
    picture = zlib.compress(b"\0" * 1000)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", picture) + _png_chunk(b"IEND", b"")


def png_video(path: Path, *, declared: tuple[int, int], actual: tuple[int, int], frames: int = 3) -> Path:
    """A mov whose PNG frames are `actual` in size while its track declares `declared`: a few KB either way."""
    with av.open(str(path), "w", format="mov") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height = declared
        stream.pix_fmt = "rgba64be"
        stream.time_base = Fraction(1, 1)
        for i in range(frames):
            packet = av.Packet(png_header_only(*actual))
            packet.stream = stream
            packet.pts = packet.dts = i
            packet.duration = 1
            packet.time_base = Fraction(1, 1)
            container.mux(packet)
    return path


def sample_count_bomb(source: Path, path: Path, count: int = 20_000_000) -> Path:
    """A copy of a one-frame mp4 whose sample tables declare `count` samples of a constant size: 1.5 KB that would
    make a demuxer build an index of `count` entries."""
    data = bytearray(source.read_bytes())
    for table in (b"stsz", b"stts"):
        at = data.find(table)
        assert at > 0, table
        struct.pack_into(">I", data, at + 12, count)
    at = data.find(b"stsc")
    struct.pack_into(">I", data, at + 16, count)  # samples per chunk
    path.write_bytes(bytes(data))
    return path


def with_display_matrix(path: Path, matrix: list[int], *, width: int = 32, height: int = 16) -> Path:
    """A short H.264 mp4 carrying `matrix` as its display matrix; each frame is black with a white top-left block."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.set_display_matrix(matrix)
        stream.options = {"preset": "ultrafast"}
        image = np.zeros((height, width, 3), np.uint8)
        image[: height // 2, : width // 4] = 255
        encode_all(container, stream, (rgb_frame(image, i) for i in range(3)))
    return path


def joined_clips(path: Path, folder: Path) -> Path:
    """Two MPEG-TS clips of 2 s joined byte for byte, each with its clock from 0: the second's frames are the first
    clip's content 20 frames on (`moving_frame(20 + i)`), so its frames can be told apart."""
    first = encode_video(folder / "first.ts", seconds=2.0, fps=10)
    second = encode_video(folder / "second.ts", seconds=2.0, fps=10, first_frame=20)
    path.write_bytes(first.read_bytes() + second.read_bytes())
    return path


SPEECH = Path(__file__).parent / "data" / "speech"
"""espeak-ng utterances (u01.ogg ...) and their text, one line each in utterances.txt (tests/data/speech/make.py)."""


def utterance_texts() -> list[str]:
    return [line for line in (SPEECH / "utterances.txt").read_text().splitlines() if line.strip()]


@functools.cache
def utterance(number: int, rate: int = 16000) -> np.ndarray:
    """Utterance `number` (from 1) as mono float32 at `rate` Hz."""
    pieces = []
    with av.open(str(SPEECH / f"u{number:02d}.ogg")) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in container.decode(audio=0):
            pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(pieces).astype(np.float32)


@functools.cache
def spoken(rate: int = 16000, gap_s: float = 0.8) -> np.ndarray:
    """Every utterance in turn with `gap_s` of silence after each: 57 s of speech to loop under a test video."""
    gap = np.zeros(round(gap_s * rate), np.float32)
    return np.concatenate([piece for n in range(1, len(utterance_texts()) + 1) for piece in (utterance(n, rate), gap)])


def spoken_track(seconds: float, said: Iterable[tuple[float, int]], bed: np.ndarray | None = None) -> np.ndarray:
    """`seconds` of 16 kHz mono: utterance n starting at each (start_s, n) of `said`, over `bed` (same length) or
    digital silence."""
    track = np.zeros(round(seconds * 16000), np.float32) if bed is None else bed.astype(np.float32).copy()
    for start_s, number in said:
        voice = utterance(number)
        at = round(start_s * 16000)
        track[at : at + len(voice)] += voice[: max(len(track) - at, 0)]
    return track


def with_track(path: Path, track: np.ndarray, fps: int = 1) -> Path:
    """A small video (64x48 moving picture, H.264) whose sound is `track`, 16 kHz mono, as AAC."""
    seconds = len(track) / 16000
    with av.open(str(path), mode="w") as container:
        picture = container.add_stream("libx264", rate=fps)
        picture.width, picture.height = 64, 48
        picture.pix_fmt = "yuv420p"
        picture.options = {"preset": "ultrafast"}
        audio = container.add_stream("aac", rate=16000, layout="mono")
        encode_all(container, picture, (rgb_frame(moving_frame(i, 64, 48), i, Fraction(1, fps))
                                        for i in range(round(seconds * fps))))  # fmt: skip
        clipped = np.clip(track, -1.0, 1.0).astype(np.float32)

        def frames() -> Iterator[av.AudioFrame]:
            for offset in range(0, len(clipped), 1024):
                piece = clipped[offset : offset + 1024]
                frame = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
                frame.sample_rate = 16000
                frame.pts = offset
                yield frame

        encode_all(container, audio, frames())
    return path


def with_sound(
    path: Path,
    *,
    seconds: float = 3.0,
    sound: str = "speech",
    sound_seconds: float | None = None,
    sound_start_s: float = 0.0,
    rate: int = 16000,
    layout: str = "mono",
    fps: int = 2,
    video: bool = True,
    codec: str = "aac",
    start_s: float = 0.0,
) -> Path:
    """A small video with a sound track: `speech` (the committed espeak-ng utterances, one after another, looped),
    `noise` (loud, but no speech a voice detector would hear) or `silence`, lasting
    `sound_seconds` (the video's length unless given), starting `sound_start_s` after the first frame, at `rate` Hz
    with `layout`'s channels, in `codec` (pcm_s16le for 8 channels: PyAV cannot fill planar frames of more than 6).
    `video=False` makes a sound-only file (a site's separate audio); `start_s` shifts every timestamp (a segment of a
    stream that began earlier)."""
    rng = np.random.default_rng(7)
    length = seconds if sound_seconds is None else sound_seconds
    with av.open(str(path), mode="w") as container:
        picture = container.add_stream("libx264", rate=fps) if video else None
        audio = container.add_stream(codec, rate=rate, layout=layout)
        if picture is not None:
            picture.width, picture.height = 64, 48
            picture.pix_fmt = "yuv420p"
            picture.options = {"preset": "ultrafast", "g": str(fps * 2)}
            first = round(start_s * fps)
            encode_all(
                container,
                picture,
                (rgb_frame(moving_frame(i, 64, 48), i + first, Fraction(1, fps)) for i in range(round(seconds * fps))),
            )
        channels = av.AudioLayout(layout).nb_channels
        start = round((start_s + sound_start_s) * rate)

        def sound_frames() -> Iterator[av.AudioFrame]:
            for offset in range(0, round(length * rate), 1024):
                shape = (channels, 1024)
                if sound == "speech":
                    voice = spoken(rate)
                    at = np.arange(offset, offset + 1024) % len(voice)
                    data = np.repeat(voice[at][None, :], channels, axis=0)
                elif sound == "noise":
                    data = rng.standard_normal(shape).astype(np.float32) * 0.1
                else:
                    data = np.zeros(shape, np.float32)
                if codec == "aac":
                    samples = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
                else:
                    packed = (data.T.reshape(1, -1) * 32767).astype(np.int16)
                    samples = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
                samples.sample_rate = rate
                samples.pts = start + offset
                yield samples

        encode_all(container, audio, sound_frames())
    return path


def scene_picture(scene: int, i: int, width: int, height: int) -> np.ndarray:
    """A picture of the scene's own (colour and checker size), with a faint bar moving inside it."""
    rng = np.random.default_rng(scene)
    base = rng.integers(30, 226, size=3)
    y, x = np.mgrid[0:height, 0:width]
    cell = 4 + 4 * (scene % 4)
    checker = ((x // cell + y // cell + scene) % 2).astype(np.int16)
    image = np.empty((height, width, 3), np.int16)
    for c in range(3):
        image[..., c] = base[c] + (checker * 40 - 20) * (1 if (scene + c) % 2 else -1)
    image[:, i % width : i % width + 2] += 10
    return np.clip(image, 0, 255).astype(np.uint8)


def cut_scenes(
    path: Path,
    lengths_s: list[float],
    *,
    fps: int = 10,
    gop_s: float = 4.0,
    width: int = 128,
    height: int = 72,
    fade_s: float = 0.0,
    flashing: bool = False,
) -> list[float]:
    """Scenes lasting `lengths_s`, hard cuts between them (or fades of `fade_s` into the next), a fixed GOP and the
    encoder's own scene detection off (sc_threshold=0), so that the cuts fall between keyframes, as on most
    streaming sites; `flashing` alternates two pictures every frame. Returns the cut times."""
    bounds = np.cumsum([0.0, *lengths_s])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, fps)
        gop = str(round(gop_s * fps))
        stream.options = {"g": gop, "keyint_min": gop, "preset": "ultrafast", "sc_threshold": "0", "bf": "2"}

        def pictures() -> Iterator[av.VideoFrame]:
            for i in range(round(bounds[-1] * fps)):
                t = i / fps
                scene = int(np.searchsorted(bounds, t, side="right") - 1)
                image = scene_picture(1000 + i % 2 if flashing else scene, i, width, height)
                if fade_s and scene + 1 < len(lengths_s) and bounds[scene + 1] - t < fade_s:
                    weight = 1 - (bounds[scene + 1] - t) / fade_s
                    image = ((1 - weight) * image + weight * scene_picture(scene + 1, i, width, height)).astype(
                        np.uint8
                    )
                yield rgb_frame(image, i)

        encode_all(container, stream, pictures())
    return [float(b) for b in bounds[1:-1]]


REEL_LOOKS = ("grain", "pan", "object", "fast", "shake")
"""What moves in a reel's scene: grain alone, a slow pan, a bright object crossing, a fast pan, a shaking camera."""


def _reel_scene(seed: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A scene's picture as real footage has one, at any size: soft shapes of colour (what tells scenes apart), with
    fine texture over them (what a naive thumbnail aliases); returned as the colour field and the texture, both a
    little larger than the frame so that the camera can move over them."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pad_w, pad_h = width + width // 4, height + height // 4
    blobs = Image.fromarray(rng.integers(20, 236, (4, 6, 3), dtype=np.uint8)).resize((pad_w, pad_h), Image.BILINEAR)
    cell = max(2, width // 240)
    fine = rng.integers(-36, 37, (pad_h // cell + 1, pad_w // cell + 1, 1), dtype=np.int16)
    texture = np.kron(fine, np.ones((cell, cell, 1), dtype=np.int16))[:pad_h, :pad_w]
    return np.asarray(blobs, dtype=np.int16), texture


def _to_and_fro(distance: int, span: int) -> int:
    """Where a camera that moves `distance` pixels back and forth over `span` pixels is (no jump: a jump is a cut)."""
    span = max(span, 1)
    return distance % span if (distance // span) % 2 == 0 else span - distance % span


def scene_reel(
    path: Path,
    *,
    width: int,
    height: int,
    fps: int = 15,
    scene_s: float = 2.0,
    looks: Iterable[str] = REEL_LOOKS,
    cuts: int = 8,
    fade_s: float = 0.0,
    flash_frames: int = 0,
    bit_rate: int | None = None,
) -> list[float]:
    """Footage that is hard to cut right: `cuts + 1` scenes of `scene_s` seconds, each with fine texture and film
    grain that changes every frame, moving as the `looks` say in turn (see REEL_LOOKS); hard cuts between them with
    a fixed GOP and the encoder's scene detection off (no keyframe at a cut); then, when asked, a fade through black
    of `fade_s` seconds into one more scene of the same length, and a white flash of `flash_frames` frames in the
    middle of the last scene. The same content at every size, scaled. Returns the time of every hard cut (what a
    detector should report; the fade and the flash are not cuts)."""
    looks = list(looks)
    rng = np.random.default_rng(7)
    grain = [rng.integers(-14, 15, (height, width, 1), dtype=np.int16) for _ in range(5)]
    per_scene = round(scene_s * fps)
    scenes = [_reel_scene(100 + n, width, height) for n in range(cuts + 2)]
    total_scenes = cuts + 1 + (1 if fade_s else 0)
    fade = round(fade_s * fps)
    flash_at = (total_scenes - 1) * per_scene + per_scene // 2 if flash_frames else -1

    def picture(i: int) -> np.ndarray:
        number = min(i // per_scene, total_scenes - 1)
        j = i - number * per_scene
        blobs, texture = scenes[number]
        look = looks[number % len(looks)]
        pad_x, pad_y = blobs.shape[1] - width, blobs.shape[0] - height
        x, y = pad_x // 2, pad_y // 2
        if look in ("pan", "object"):
            x = _to_and_fro(round(j * width / 800), pad_x)
        elif look == "fast":
            x = _to_and_fro(round(j * width / 60), pad_x)
        elif look == "shake":
            x += int(rng.integers(-1, 2) * max(1, width // 120))
            y += int(rng.integers(-1, 2) * max(1, height // 120))
        image = blobs[y : y + height, x : x + width] + texture[y : y + height, x : x + width] + grain[i % len(grain)]
        if look == "object":
            side = height // 8
            ox = round(j * (width - side) / max(per_scene - 1, 1))
            image[height // 3 : height // 3 + side, ox : ox + side] = 250
        if fade and number >= cuts and (cuts + 1) * per_scene - fade <= i < (cuts + 1) * per_scene + fade:
            image = image * (abs(i - (cuts + 1) * per_scene + 0.5) / fade)  # through black: out, then in
        if flash_at <= i < flash_at + flash_frames:
            image = np.full_like(image, 250)
        return np.clip(image, 0, 255).astype(np.uint8)

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, fps)
        if bit_rate:
            stream.bit_rate = bit_rate
        gop = str(8 * fps)
        stream.options = {"g": gop, "keyint_min": gop, "preset": "veryfast", "sc_threshold": "0", "bf": "3"}
        encode_all(container, stream, (rgb_frame(picture(i), i) for i in range(total_scenes * per_scene)))
    return [n * per_scene / fps for n in range(1, cuts + 1)]
