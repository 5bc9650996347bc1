"""Remake the committed utterances: espeak-ng speaks each line of utterances.txt, PyAV encodes it as 16 kHz mono Opus.

Run by hand where Debian's espeak-ng is installed (`apt-get install espeak-ng`); the tests read the committed .ogg files
and need no system package. `python tests/data/speech/make.py`
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import av

HERE = Path(__file__).parent


def encode_opus(wav: Path, out: Path) -> None:
    with av.open(str(wav)) as source, av.open(str(out), "w", format="ogg") as sink:
        stream = sink.add_stream("libopus", rate=48000)
        stream.bit_rate = 32000
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in source.decode(audio=0):
            for chunk in resampler.resample(frame):
                for packet in stream.encode(chunk):
                    sink.mux(packet)
        for chunk in resampler.resample(None):
            for packet in stream.encode(chunk):
                sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)


def main() -> None:
    lines = [line for line in (HERE / "utterances.txt").read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as scratch:
        for number, line in enumerate(lines, 1):
            voice = "en-us" if number % 2 else "en-gb"
            wav = Path(scratch) / f"{number}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), line], check=True)
            encode_opus(wav, HERE / f"u{number:02d}.ogg")


if __name__ == "__main__":
    main()
