"""Offline transcription of whole streams: the bar streamed captions are held to."""

from __future__ import annotations

import numpy as np
from faster_whisper import WhisperModel


class Offline:
    """The test model transcribing a whole stream at once (beam 5), each stream once per run:
    several tests hold streamed captions of the same speech to the same offline text."""

    def __init__(self, model_path: str) -> None:
        self._path = model_path
        self._model: WhisperModel | None = None
        self._texts: dict[str, str] = {}

    def model(self) -> WhisperModel:
        if self._model is None:
            self._model = WhisperModel(self._path, device="cpu", compute_type="int8")
        return self._model

    def text(self, name: str, audio: np.ndarray) -> str:
        if name not in self._texts:
            segments, _ = self.model().transcribe(
                audio.astype(np.float32) / 32768, language="en", beam_size=5
            )
            self._texts[name] = " ".join(s.text.strip() for s in segments)
        return self._texts[name]
