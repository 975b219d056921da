"""What Whisper is told of what came before: the confident words of the last finals, as the
prompt of the next request, and the last final's words, which text heard again across a
length cut is trimmed against."""

from __future__ import annotations

from collections import deque

from pipeline.text import join_words
from pipeline.types import Word


class PromptContext:
    """``chars``: how much earlier text the prompt carries; ``min_probability``: words Whisper
    itself doubted stay out of it, since a misheard word in the prompt tends to be misheard
    again in the next utterance."""

    def __init__(self, chars: int, min_probability: float) -> None:
        self.chars, self.min_probability = chars, min_probability
        self._texts: deque[str] = deque()
        self.last_final: list[Word] = []

    def prompt(self) -> str:
        text = " ".join(self._texts)
        if len(text) > self.chars:
            text = text[-self.chars :]
            text = text[text.find(" ") + 1 :]
        return text

    def remember(self, words: list[Word]) -> None:
        """A final's words: the last one, and the context of the next requests."""
        if not words:
            return
        self.last_final = list(words)
        self._texts.append(join_words([w for w in words if w.probability >= self.min_probability]))
        while len(self._texts) > 1 and sum(map(len, self._texts)) > 4 * self.chars:
            self._texts.popleft()
