"""Noises of real rooms, made reproducibly (seeded), and mixing at a chosen signal-to-noise ratio.

pink: 1/f noise, the usual stand-in for room and street noise. fan: brown noise with a motor
hum at 100 Hz and its harmonics. keyboard: short decaying clicks at typing pace. music: plucked
notes of a chord progression with harmonics (sox's ``pluck`` synthesis, a tune and a bass).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pipeline.audio import read_audio

RATE = 16_000


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float64)


def pink(seconds: float, seed: int = 1) -> np.ndarray:
    """Unit-RMS pink noise: white noise shaped to 1/f power in the frequency domain."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    return _normalise(np.fft.irfft(spectrum, n))


def fan(seconds: float, seed: int = 2) -> np.ndarray:
    """Unit-RMS fan: brown (1/f^2) rumble plus a 100 Hz motor hum with harmonics."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= freqs[1:]
    spectrum[freqs < 20] = 0
    rumble = _normalise(np.fft.irfft(spectrum, n))
    t = np.arange(n) / RATE
    hum = sum(np.sin(2 * np.pi * 100 * k * t) / k for k in (1, 2, 3))
    return _normalise(rumble + 0.5 * _normalise(hum))


def keyboard(seconds: float, seed: int = 3, per_second: float = 7.0) -> np.ndarray:
    """Unit-RMS typing: 4 ms bursts of filtered noise decaying in ~15 ms, at random times."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    out = np.zeros(n)
    t = 0.0
    while True:
        t += rng.exponential(1 / per_second)
        start = int(t * RATE)
        if start >= n:
            break
        length = min(int(0.03 * RATE), n - start)
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.004 * RATE))
        out[start : start + length] += burst * rng.uniform(0.5, 1.0)
    return _normalise(out)


def music(seconds: float) -> np.ndarray:
    """Unit-RMS music: a plucked tune over a bass line, synthesised by sox."""
    tune = "C4 E4 G4 C5 A3 C4 E4 A4 F3 A3 C4 F4 G3 B3 D4 G4".split()
    note = 0.25
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for i, name in enumerate(tune):
            path = Path(tmp) / f"{i}.wav"
            subprocess.run(
                ["sox", "-n", "-r", str(RATE), "-c", "1", "-b", "16", str(path), "synth", str(note),
                 "pluck", name, "pluck", _octave_down(name, 1), "fade", "0", str(note), "0.05"],
                check=True,
            )  # fmt: skip
            parts.append(read_audio(str(path)).astype(np.float64))
        bar = np.concatenate(parts)
    reps = int(np.ceil(seconds * RATE / len(bar)))
    return _normalise(np.tile(bar, reps)[: int(seconds * RATE)])


def _octave_down(name: str, octaves: int) -> str:
    return name[:-1] + str(int(name[-1]) - octaves)


NOISES = {"pink": pink, "fan": fan, "keyboard": keyboard, "music": music}


def speech_rms(audio: np.ndarray) -> float:
    """RMS over the speech only (30 ms frames within 30 dB of the loudest), not the silences."""
    x = audio.astype(np.float64)
    frames = x[: len(x) // 480 * 480].reshape(-1, 480)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = rms[rms > rms.max() / 31.6]
    return float(np.sqrt(np.mean(loud**2))) if len(loud) else 0.0


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` (int16) with ``noise`` (unit RMS, same length or longer) at ``snr_db`` below it."""
    level = speech_rms(speech) / (10 ** (snr_db / 20))
    out = speech.astype(np.float64) + level * noise[: len(speech)]
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def noise_only(noise: np.ndarray, rms: float) -> np.ndarray:
    """The noise alone as int16 at an RMS level (for streams of pure noise)."""
    return np.clip(np.round(noise * rms), -32768, 32767).astype(np.int16)
