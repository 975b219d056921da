"""Dictation on the capture page, in headless Chromium on a phone-sized screen: a real server
hears a fake microphone, and each final is typed at the cursor of the page's text area."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from bench.corpus import ESPEAK_TEXT, espeak, silence, write_wav
from bench.scoring import normalize, wer
from tests.support.browser import chromium

FIRST = ESPEAK_TEXT
COMMAND = "New line."
SECOND = "Thank you all for coming."

# Every change of the partial line below the text, with the text area's content at that moment.
WATCH_PARTIALS = """
(() => {
  window.partialsSeen = [];
  const partial = document.querySelector('#dictation-partial');
  const text = document.querySelector('#dictation');
  new MutationObserver(() => {
    if (partial.textContent) partialsSeen.push([partial.textContent, text.value]);
  }).observe(partial, { childList: true, characterData: true, subtree: true });
})()
"""


async def test_dictation_types_finals_at_the_cursor(nova, tmp_path: Path, artifacts: Path) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    # Silence first: the fake microphone starts with the page's request for it, before the
    # connection is up.
    parts = [silence(2.0), espeak(FIRST, tmp_path / "a.wav"), silence(1.5)]
    parts += [
        espeak(COMMAND, tmp_path / "b.wav"),
        silence(1.5),
        espeak(SECOND, tmp_path / "c.wav"),
        silence(3.0),
    ]
    mic = write_wav(tmp_path / "mic.wav", np.concatenate(parts))

    async with chromium(fake_audio=mic) as browser:
        context = await browser.new_context(
            viewport={"width": 390, "height": 844},
            accept_downloads=True,
            permissions=["clipboard-read", "clipboard-write"],
        )
        page = await context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        await page.goto(f"{base}/?room=notes&mode=dictation")
        assert await page.is_visible("#dictation") and await page.is_hidden("#captions")

        # The spoken commands, per language, with the punctuation Whisper puts around them.
        pieces = await page.evaluate(
            """() => [
              novaCapture.dictationPieces('Hola a todos. Nueva línea. ¿Qué tal?', 'es'),
              novaCapture.dictationPieces('Guten Tag, neuer Absatz, bis bald', 'de'),
              novaCapture.dictationPieces('We need a new line of shoes.', 'en'),
              novaCapture.dictationPieces('Newline', 'en'),
            ]"""
        )
        assert pieces[0] == [{"text": "Hola a todos."}, {"command": "\n"}, {"text": "¿Qué tal?"}], pieces[0]
        assert pieces[1] == [{"text": "Guten Tag,"}, {"command": "\n\n"}, {"text": "bis bald"}], pieces[1]
        assert pieces[2] == [{"text": "We need a new line of shoes."}], pieces[2]
        assert pieces[3] == [{"command": "\n"}], pieces[3]

        # The speaker's own words are there first; the cursor stands between them.
        await page.fill("#dictation", "Dear all. Best, Ana")
        await page.evaluate("document.querySelector('#dictation').setSelectionRange(10, 10)")
        await page.evaluate(WATCH_PARTIALS)
        await page.click("#share")
        await page.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
        await page.wait_for_function(
            "document.querySelector('#dictation').value.split('\\n').length >= 2"
            " && novaCapture.finals('').length >= 3",
            timeout=40_000,
        )
        await page.screenshot(path=str(artifacts / "dictation-phone.png"), full_page=True)
        value = await page.input_value("#dictation")
        finals = await page.evaluate("novaCapture.finals('')")
        said = await page.evaluate("partialsSeen")

        # Finals typed at the cursor, in order, exactly as the captions show them; the command
        # made a line break, not words.
        assert value.startswith("Dear all. ") and value.endswith(" Best, Ana"), value
        typed = value[len("Dear all. ") : -len(" Best, Ana")]
        command = [i for i, f in enumerate(finals) if normalize(f) in ("new line", "newline")]
        assert command, finals
        i = command[0]
        assert typed == " ".join(finals[:i]) + "\n" + " ".join(finals[i + 1 :]), (typed, finals)
        first, _, second = typed.partition("\n")
        assert wer(FIRST, first) <= 0.2 and wer(SECOND, second) <= 0.2, typed
        # Partials were shown below the text, and never typed into it.
        assert said, "no partial was shown below the text area"
        assert all(partial not in text for partial, text in said), said

        # Copy and download give the text as it stands.
        await page.click("#dictation-copy")
        assert await page.evaluate("navigator.clipboard.readText()") == value
        async with page.expect_download() as info:
            await page.click("#dictation-download")
        download = await info.value
        name = download.suggested_filename
        assert name.startswith("notes-") and name.endswith(".txt"), name
        saved = await asyncio.to_thread(Path(await download.path()).read_text, encoding="utf-8")
        assert saved == value
        assert not problems, problems

        await page.click("#stop")
        await page.wait_for_function("window.novaCapture.state() === 'idle'", timeout=10_000)
        await page.set_viewport_size({"width": 1100, "height": 800})
        await page.screenshot(path=str(artifacts / "dictation-desktop.png"), full_page=True)
