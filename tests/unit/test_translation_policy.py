"""The room translation policy, pure, with a fake clock: finals always, partials bounded."""

from __future__ import annotations

from pipeline.clock import FakeClock
from pipeline.translation import (
    Emit,
    SourceLine,
    Translate,
    TranslationOptions,
    TranslationPolicy,
)
from pipeline.types import Translation


def partial(segment: int, stable: str, text: str | None = None, lang: str = "en") -> SourceLine:
    return SourceLine(segment, False, text or stable + " maybe", 1.0, 2.0, lang, stable)


def final(segment: int, text: str, lang: str = "en") -> SourceLine:
    return SourceLine(segment, True, text, 1.0, 3.0, lang)


def jobs(actions: list) -> list[Translate]:
    return [a for a in actions if isinstance(a, Translate)]


def emits(actions: list) -> list[Emit]:
    return [a for a in actions if isinstance(a, Emit)]


def answer(policy: TranslationPolicy, job: Translate, now: float, text: str | None = None) -> list:
    r = job.request
    translated = Translation(text or f"<{r.target}:{r.text}>", r.source, r.target)
    return policy.on_result(job.ticket, translated, now)


def test_a_final_is_translated_once_per_language_and_keeps_its_times() -> None:
    p = TranslationPolicy(("es", "fr"))
    actions = p.on_caption(final(3, "Your country."), 0.0)
    assert [(j.lang, j.final, j.request.text) for j in jobs(actions)] == [
        ("es", True, "Your country."),
        ("fr", True, "Your country."),
    ]
    assert p.on_caption(final(3, "Your country."), 0.1) == []  # the same segment again: nothing
    out = emits(answer(p, jobs(actions)[0], 0.2))
    assert out == [Emit(3, "es", True, "<es:Your country.>", "en", 1.0, 3.0)]
    assert p.open_lines() == 1


def test_the_spoken_language_passes_through_untouched() -> None:
    p = TranslationPolicy(("en", "es"))
    actions = p.on_caption(partial(0, "Hello", "Hello there"), 0.0)
    (through,) = emits(actions)
    assert (through.lang, through.text, through.stable) == ("en", "Hello there", "Hello")
    assert [j.lang for j in jobs(actions)] == ["es"]


def test_partials_translate_only_the_stable_prefix_and_only_when_it_grows() -> None:
    clock = FakeClock()
    p = TranslationPolicy(("es",), TranslationOptions(partial_interval=1.0, force_prefix=False))
    assert p.on_caption(partial(0, "", "Ask"), clock.now()) == []  # nothing stable yet
    (job,) = jobs(p.on_caption(partial(0, "Ask not", "Ask not what your"), clock.now()))
    assert job.request.text == "Ask not" and not job.final
    answer(p, job, clock.now())
    clock.advance(2.0)
    # Only the unstable tail changed: no new translation however often the source updates.
    for tail in ("what", "what your", "what your country"):
        assert jobs(p.on_caption(partial(0, "Ask not", f"Ask not {tail}"), clock.now())) == []


def test_partials_wait_for_the_interval_and_for_the_one_in_flight() -> None:
    clock = FakeClock()
    p = TranslationPolicy(("es",), TranslationOptions(partial_interval=1.0))
    (first,) = jobs(p.on_caption(partial(0, "One"), clock.now()))
    clock.advance(0.3)
    assert jobs(p.on_caption(partial(0, "One two"), clock.now())) == []  # in flight, and too soon
    assert p.next_due(clock.now()) is None  # waiting on the answer, not on the clock
    out = answer(p, first, clock.now())
    assert [e.text for e in emits(out)] == ["<es:One>"] and jobs(out) == []
    assert p.next_due(clock.now()) == 0.7
    clock.advance(0.7)
    (second,) = jobs(p.due(clock.now()))
    assert second.request.text == "One two"
    # NoLanguageLeftWaiting: what viewers already read is forced as the start of the next one.
    assert second.request.prefix == "<es:One>"


def test_updates_never_outnumber_the_source_nor_the_interval() -> None:
    clock = FakeClock()
    p = TranslationPolicy(("es", "fr"), TranslationOptions(partial_interval=1.0))
    words = "one two three four five six seven eight nine ten eleven twelve".split()
    sent: list[Translate] = []
    shown = 0
    for i in range(1, len(words) + 1):
        clock.advance(0.25)  # a source partial every 250 ms, its stable part growing each time
        new = jobs(p.on_caption(partial(0, " ".join(words[:i])), clock.now())) + jobs(p.due(clock.now()))
        for job in new:
            sent.append(job)
            shown += len(emits(answer(p, job, clock.now())))
    per_lang = [len([j for j in sent if j.lang == lang]) for lang in ("es", "fr")]
    assert per_lang[0] == per_lang[1]
    assert per_lang[0] <= 3 * 1.0 / 1.0 + 1  # 3 s of source partials, one per second at most
    assert shown == len(sent)


def test_a_late_partial_never_overwrites_the_final() -> None:
    p = TranslationPolicy(("es",))
    (pjob,) = jobs(p.on_caption(partial(0, "Ask not"), 0.0))
    (fjob,) = jobs(p.on_caption(final(0, "Ask not what your country can do."), 0.5))
    assert fjob.request.prefix == ""  # a final is translated afresh
    final_out = emits(answer(p, fjob, 0.6))
    assert [e.final for e in final_out] == [True]
    assert answer(p, pjob, 0.7) == []
    assert p.open_lines() == 0


def test_a_failed_final_still_closes_the_line_with_what_was_shown() -> None:
    p = TranslationPolicy(("es",))
    (pjob,) = jobs(p.on_caption(partial(0, "Ask not"), 0.0))
    answer(p, pjob, 0.1, text="No preguntes")
    (fjob,) = jobs(p.on_caption(final(0, "Ask not what."), 0.5))
    (closing,) = emits(p.on_failure(fjob.ticket, 0.6))
    assert closing.final and closing.text == "No preguntes"


def test_an_empty_final_closes_at_once_and_partials_can_be_off() -> None:
    p = TranslationPolicy(("es",), TranslationOptions(partials=False))
    assert p.on_caption(partial(0, "Ask not"), 0.0) == []
    (closing,) = emits(p.on_caption(final(0, ""), 0.1))
    assert closing.final and closing.text == ""


def test_lines_whose_final_never_came_are_forgotten() -> None:
    p = TranslationPolicy(("es",), TranslationOptions(max_open=4))
    for seg in range(10):
        p.on_caption(partial(seg, f"word {seg}"), float(seg))
    assert p.open_lines() <= 4
