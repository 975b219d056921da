"""Subtitle cues that meet the common guidelines, cut from caption finals.

A final is a whole utterance, however long; as one cue it is unreadable and no editor or
platform accepts it. The usual guidelines (BBC, Netflix, the EBU): at most 42 characters a
line, at most 2 lines a cue, a cue on screen at most ~7 s and at least ~1 s; cut at sentence
ends first, then at phrase boundaries (a comma, a semicolon, a colon), never inside a word.
Finals carry no word times in transcripts, so each word's time is its share of the final's
span, by length (speech runs at a roughly even rate of characters).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SENTENCE_END = (".", "?", "!", "…")
# Words whose full stop ends no sentence.
ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "vs.", "prof.", "e.g.", "i.e."})
PHRASE_END = (",", ";", ":", "—", "–")


@dataclass(frozen=True)
class CueRules:
    max_chars: int = 42
    max_lines: int = 2
    max_duration: float = 7.0
    min_duration: float = 1.0


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class _Word:
    text: str
    start: float
    end: float


def _timed(text: str, start: float, end: float) -> list[_Word]:
    words = text.split()
    total = sum(len(w) + 1 for w in words) or 1
    out, at = [], start
    for word in words:
        span = (end - start) * (len(word) + 1) / total
        out.append(_Word(word, at, at + span))
        at += span
    return out


def wrap(words: list[str], max_chars: int) -> list[str]:
    """Lines of at most ``max_chars`` (a longer word alone on its line), balanced: of the line
    counts possible, the fewest, with the break that evens the lengths out, at punctuation if
    that costs little."""
    if not words:
        return []
    greedy: list[str] = []
    for word in words:
        if greedy and len(greedy[-1]) + 1 + len(word) <= max_chars:
            greedy[-1] += " " + word
        else:
            greedy.append(word)
    if len(greedy) != 2:
        return greedy
    best: tuple[float, list[str]] | None = None
    for i in range(1, len(words)):
        top, bottom = " ".join(words[:i]), " ".join(words[i:])
        if len(top) > max_chars or len(bottom) > max_chars:
            continue
        cost = abs(len(top) - len(bottom)) - _pause_bonus(words[i - 1])
        if best is None or cost < best[0]:
            best = (cost, [top, bottom])
    return best[1] if best else greedy


def _ends_sentence(word: str) -> bool:
    return word.endswith(SENTENCE_END) and word.lower() not in ABBREVIATIONS


def _pause_bonus(word: str) -> int:
    """How many characters of imbalance a line break is worth at a pause in the speech."""
    return 20 if _ends_sentence(word) else 12 if word.endswith(PHRASE_END) else 0


def _fits(words: list[_Word], rules: CueRules) -> bool:
    lines = wrap([w.text for w in words], rules.max_chars)
    return len(lines) <= rules.max_lines and words[-1].end - words[0].start <= rules.max_duration + 1e-9


def _break_at(words: list[_Word]) -> int:
    """Where to end a full cue: after its last sentence end, else its last phrase end, in the
    second half of the cue; else after its last word."""
    half = len(words) // 2
    for ends in (_ends_sentence, lambda w: w.endswith(PHRASE_END)):
        for i in range(len(words) - 1, max(half, 1) - 1, -1):
            if ends(words[i - 1].text):
                return i
    return len(words)


def split_final(text: str, start: float, end: float, rules: CueRules | None = None) -> list[Cue]:
    """One final's cues: each within the rules, in order, covering the final's span."""
    rules = rules or CueRules()
    words = _timed(text, start, end)
    groups: list[list[_Word]] = []
    current: list[_Word] = []
    for word in words:
        if current and not _fits([*current, word], rules):
            cut = _break_at(current)
            groups.append(current[:cut])
            current = current[cut:]
            while current and not _fits([*current, word], rules):
                groups.append(current)
                current = []
        current.append(word)
        if _ends_sentence(word.text) and word.end - current[0].start >= rules.min_duration:
            # A new sentence starts a new cue, once this one has been up long enough to read.
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    cues = [
        Cue(group[0].start, group[-1].end, tuple(wrap([w.text for w in group], rules.max_chars)))
        for group in groups
    ]
    return _min_durations(cues, rules)


def _min_durations(cues: list[Cue], rules: CueRules) -> list[Cue]:
    """A cue shorter than ``min_duration`` stays up longer, into the gap before the next cue
    (never over it); a final's last cue may run past the final's end by that much."""
    out: list[Cue] = []
    for i, cue in enumerate(cues):
        limit = cues[i + 1].start if i + 1 < len(cues) else float("inf")
        end = max(cue.end, min(cue.start + rules.min_duration, limit))
        out.append(Cue(cue.start, end, cue.lines))
    return out


def cues_of(finals: list[tuple[float, float, str, str | None]], rules: CueRules | None = None) -> list[Cue]:
    """Every final's cues (start, end, text, speaker), in time order; a cue never runs into the
    same speaker's next cue. Different speakers' cues overlap where their speech did."""
    rules = rules or CueRules()
    cues = [
        replace(cue, speaker=speaker)
        for start, end, text, speaker in finals
        for cue in split_final(text, start, end, rules)
    ]
    cues.sort(key=lambda c: c.start)
    following: dict[str | None, int] = {}
    for i in range(len(cues) - 1, -1, -1):
        j = following.get(cues[i].speaker)
        if j is not None and cues[i].end > cues[j].start:
            cues[i] = replace(cues[i], end=max(cues[j].start, cues[i].start + 0.05))
        following[cues[i].speaker] = i
    return cues
