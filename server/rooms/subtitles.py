"""Subtitle cues that meet the common guidelines, cut from caption finals.

A final is a whole utterance, however long; as one cue it is unreadable and no editor or
platform accepts it. The usual guidelines (BBC, Netflix, the EBU): at most 42 characters a
line, at most 2 lines a cue, a cue on screen at most ~7 s and at least ~1 s; cut at sentence
ends first, then at phrase boundaries (a comma, a semicolon, a colon), never inside a word, and
leave no word alone on a cue where it can join its neighbour. Finals carry no word times in
transcripts, so each word's time is its share of the final's span, by length (speech runs at a
roughly even rate of characters).

Who speaks is part of the line: SRT writes ``Ana: `` before a cue's first line and WebVTT a
``<v Ana>`` voice span, so each format's mark is counted in the line it shares (a ``Voice``).
Two speakers' cues that overlap in time become one dialogue cue, a line each behind a dash
(``- Ana: …`` / ``- Ben: …``, the convention of subtitle editors), or, where that cannot fit,
follow one another; SRT has no overlapping cues at all, WebVTT only if asked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SENTENCE_END = (".", "?", "!", "…")
# Words whose full stop ends no sentence.
ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "vs.", "prof.", "e.g.", "i.e."})
PHRASE_END = (",", ";", ":", "—", "–")
EPSILON = 1e-6


@dataclass(frozen=True)
class CueRules:
    max_chars: int = 42
    max_lines: int = 2
    max_duration: float = 7.0
    min_duration: float = 1.0


@dataclass(frozen=True)
class Voice:
    """How a subtitle format marks the speaker, as text around the words: ``first`` before a
    one-speaker cue's first line, ``line`` for each line of a dialogue cue (``{name}``,
    ``{text}``), ``anonymous`` for a dialogue line nobody named."""

    first: str = ""
    line: str = "- {text}"
    anonymous: str = "- {text}"

    def prefix(self, speaker: str | None) -> int:
        """Characters the speaker's mark takes on a one-speaker cue's first line."""
        return len(self.first.format(name=speaker)) if speaker and self.first else 0

    def turn(self, speaker: str | None, text: str) -> str:
        """One line of a dialogue cue."""
        return (self.line if speaker else self.anonymous).format(name=speaker, text=text)


PLAIN = Voice()


@dataclass(frozen=True)
class Cue:
    """One subtitle: its time on screen and its lines. A dialogue cue holds the ``turns`` of
    several speakers, one line each (``lines`` are their texts, ``speaker`` is None)."""

    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None
    turns: tuple[tuple[str | None, str], ...] = ()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def words(self) -> list[str]:
        return " ".join(self.lines).split()


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


def wrap(words: list[str], max_chars: int, first: int | None = None) -> list[str]:
    """Lines of at most ``max_chars`` (the first line at most ``first``, when a speaker's name
    shares it; a longer word alone on its line), balanced: of the line counts possible, the
    fewest, with the break that evens the shown lengths out, at punctuation if that costs little."""
    if not words:
        return []
    first = max_chars if first is None else first
    greedy: list[str] = []
    for word in words:
        width = first if len(greedy) <= 1 else max_chars  # the line it would join, or open
        if greedy and len(greedy[-1]) + 1 + len(word) <= width:
            greedy[-1] += " " + word
        else:
            greedy.append(word)
    if len(greedy) != 2:
        return greedy
    name = max_chars - first  # what the speaker's mark takes of the first line
    best: tuple[float, list[str]] | None = None
    for i in range(1, len(words)):
        top, bottom = " ".join(words[:i]), " ".join(words[i:])
        if len(top) > first or len(bottom) > max_chars:
            continue
        cost = abs(len(top) + name - len(bottom)) - _pause_bonus(words[i - 1])
        if best is None or cost < best[0]:
            best = (cost, [top, bottom])
    return best[1] if best else greedy


def _ends_sentence(word: str) -> bool:
    return word.endswith(SENTENCE_END) and word.lower() not in ABBREVIATIONS


def _ends_phrase(word: str) -> bool:
    return _ends_sentence(word) or word.endswith(PHRASE_END)


def _pause_bonus(word: str) -> int:
    """How many characters of imbalance a line break is worth at a pause in the speech."""
    return 20 if _ends_sentence(word) else 12 if word.endswith(PHRASE_END) else 0


def _layout(words: list[str], rules: CueRules, prefix: int) -> list[str] | None:
    """The words' lines within the rules (the first line shared with a ``prefix``), else None."""
    lines = wrap(words, rules.max_chars, max(1, rules.max_chars - prefix))
    return lines if len(lines) <= rules.max_lines else None


def _fits(words: list[_Word], rules: CueRules, prefix: int) -> bool:
    return (
        words[-1].end - words[0].start <= rules.max_duration + EPSILON
        and _layout([w.text for w in words], rules, prefix) is not None
    )


def _cut(words: list[_Word], a: int, b: int, rules: CueRules, prefix: int) -> int:
    """Where to end the cue ``words[a:b]`` that word ``b`` does not fit: after its last
    sentence end in its second half, else its last phrase end there; else before the phrase
    that ``b`` belongs to, if that phrase fits a cue whole (so no length cut splits a phrase
    that the next cue can hold); else after its last word."""
    lowest = max(a + (b - a) // 2, a + 1)
    for ends in (_ends_sentence, lambda w: w.endswith(PHRASE_END)):
        for i in range(b, lowest - 1, -1):
            if ends(words[i - 1].text):
                return i
    end = next((j for j in range(b, len(words)) if _ends_phrase(words[j].text)), len(words) - 1)
    for i in range(b - 1, a, -1):
        if _ends_phrase(words[i - 1].text):
            if _fits(words[i : end + 1], rules, prefix):
                return i
            break
    return b


def _weak(group: list[_Word], rules: CueRules) -> bool:
    """A cue that should join a neighbour if it can: one word alone, or too short to read."""
    return len(group) == 1 or group[-1].end - group[0].start < rules.min_duration - EPSILON


def _mend(groups: list[list[_Word]], rules: CueRules, prefix: int) -> list[list[_Word]]:
    """Join each lone word and each cue too short to read to a neighbour where the two fit one
    cue (the side it belongs to by punctuation first); a lone word that cannot join takes a
    word of its neighbour instead."""
    groups = [g for g in groups if g]
    changed = True
    while changed and len(groups) > 1:
        changed = False
        for k, group in enumerate(groups):
            if not _weak(group, rules):
                continue
            after_sentence = k > 0 and _ends_sentence(groups[k - 1][-1].text)
            sides = (
                (k + 1, k - 1) if after_sentence and not _ends_sentence(group[-1].text) else (k - 1, k + 1)
            )
            for j in sides:
                if 0 <= j < len(groups):
                    lo, hi = min(j, k), max(j, k)
                    joined = groups[lo] + groups[hi]
                    if _fits(joined, rules, prefix):
                        groups[lo : hi + 1] = [joined]
                        changed = True
                        break
            if not changed and len(group) == 1:
                if k > 0 and len(groups[k - 1]) >= 3 and _fits(groups[k - 1][-1:] + group, rules, prefix):
                    groups[k - 1 : k + 1] = [groups[k - 1][:-1], groups[k - 1][-1:] + group]
                    changed = True
                elif (
                    k + 1 < len(groups)
                    and len(groups[k + 1]) >= 3
                    and _fits(group + groups[k + 1][:1], rules, prefix)
                ):
                    groups[k : k + 2] = [group + groups[k + 1][:1], groups[k + 1][1:]]
                    changed = True
            if changed:
                break
    return groups


def split_final(
    text: str, start: float, end: float, rules: CueRules | None = None, prefix: int = 0
) -> list[Cue]:
    """One final's cues: each within the rules (the first line of each shared with a speaker's
    mark of ``prefix`` characters), in order, covering the final's span."""
    rules = rules or CueRules()
    words = _timed(text, start, end)
    groups: list[list[_Word]] = []
    a = 0
    for b, word in enumerate(words):
        if b > a and not _fits(words[a : b + 1], rules, prefix):
            cut = _cut(words, a, b, rules, prefix)
            groups.append(words[a:cut])
            a = cut
            if a < b and not _fits(words[a : b + 1], rules, prefix):
                groups.append(words[a:b])
                a = b
        if _ends_sentence(word.text) and word.end - words[a].start >= rules.min_duration:
            # A new sentence starts a new cue, once this one has been up long enough to read.
            groups.append(words[a : b + 1])
            a = b + 1
    if a < len(words):
        groups.append(words[a:])
    cues = []
    for group in _mend(groups, rules, prefix):
        texts = [w.text for w in group]
        lines = _layout(texts, rules, prefix) or wrap(texts, rules.max_chars, rules.max_chars - prefix)
        cues.append(Cue(group[0].start, group[-1].end, tuple(lines)))
    return _min_durations(cues, rules)


def _min_durations(cues: list[Cue], rules: CueRules) -> list[Cue]:
    """A cue shorter than ``min_duration`` stays up longer, into the gap before the next cue
    (never over it); a final's last cue may run past the final's end by that much. None stays
    longer than ``max_duration`` (a single word said slowly)."""
    out: list[Cue] = []
    for i, cue in enumerate(cues):
        limit = cues[i + 1].start if i + 1 < len(cues) else float("inf")
        end = max(cue.end, min(cue.start + rules.min_duration, limit))
        out.append(replace(cue, end=min(end, cue.start + max(rules.max_duration, rules.min_duration))))
    return out


def _joined(p: Cue, c: Cue, rules: CueRules, voice: Voice) -> Cue | None:
    """One speaker's two cues as one, when either is weak (a lone word, or under
    ``min_duration``), they are at most ``min_duration`` apart, and the two fit one cue."""
    weak = lambda cue: len(cue.words) == 1 or cue.end - cue.start < rules.min_duration - EPSILON  # noqa: E731
    if (
        not (weak(p) or weak(c))
        or c.start - p.end > rules.min_duration
        or c.end - p.start > rules.max_duration
    ):
        return None
    lines = _layout(p.words + c.words, rules, voice.prefix(p.speaker))
    return None if lines is None else Cue(p.start, c.end, tuple(lines), p.speaker)


def _dialogue(p: Cue, c: Cue, rules: CueRules, voice: Voice) -> Cue | None:
    """Two speakers' overlapping cues as one dialogue cue, a line each, when both fit a line
    with their speaker's mark and the two last no longer than a cue may."""
    if p.turns or c.turns or p.speaker == c.speaker or rules.max_lines < 2:
        return None
    end = max(p.end, c.end)
    if end - p.start > rules.max_duration + EPSILON:
        return None
    turns = ((p.speaker, " ".join(p.words)), (c.speaker, " ".join(c.words)))
    if any(len(voice.turn(who, text)) > rules.max_chars for who, text in turns):
        return None
    return Cue(p.start, end, tuple(text for _, text in turns), None, turns)


def cues_of(
    finals: list[tuple[float, float, str, str | None]],
    rules: CueRules | None = None,
    voice: Voice = PLAIN,
    dialogue: bool = False,
) -> list[Cue]:
    """Every final's cues (start, end, text, speaker), in time order, each at least
    ``min_duration`` on screen; a speaker's cues never overlap each other. ``dialogue``: no
    two cues overlap at all; two speakers' overlapping cues become one dialogue cue where they
    fit, else the later one waits (SRT, which players show one cue at a time). Without it,
    different speakers' cues overlap where their speech did (WebVTT's players stack them)."""
    rules = rules or CueRules()
    spoken: dict[str | None, list[Cue]] = {}
    for start, end, text, speaker in sorted(finals, key=lambda f: f[0]):
        cues = split_final(text, start, end, rules, voice.prefix(speaker))
        spoken.setdefault(speaker, []).extend(replace(c, speaker=speaker) for c in cues)
    everyone: list[Cue] = []
    for cues in spoken.values():
        for cue in cues:
            joined = (
                _joined(everyone[-1], cue, rules, voice)
                if everyone and everyone[-1].speaker == cue.speaker
                else None
            )
            if joined is not None:
                everyone[-1] = joined
            else:
                everyone.append(cue)
    # A millisecond over the least time on screen: a reader that subtracts the written times in
    # floating point (8.2 - 7.2 = 0.99999...) still finds no cue under it.
    least = min(rules.min_duration + 0.001, rules.max_duration) if rules.min_duration > 0 else 0.0
    out: list[Cue] = []
    last_of: dict[str | None, int] = {}
    for cue in sorted(everyone, key=lambda c: c.start):
        cue = replace(cue, end=max(cue.end, cue.start + least))
        at = (len(out) - 1 if out else None) if dialogue else last_of.get(cue.speaker)
        if at is not None and out[at].end > cue.start + EPSILON:
            before = out[at]
            merged = _dialogue(before, cue, rules, voice) if dialogue else None
            if merged is not None:
                out[at] = merged
                continue
            # The later cue waits until the earlier has been up long enough to read.
            t = max(cue.start, before.start + least)
            out[at] = replace(before, end=min(before.end, t))
            cue = replace(cue, start=t, end=max(cue.end, t + least))
        out.append(cue)
        last_of[cue.speaker] = len(out) - 1
    return sorted(out, key=lambda c: c.start)
