"""Headless Debian Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


@asynccontextmanager
async def chromium(
    fake_audio: Path | None = None, grant_microphone: bool = True, extra_args: Sequence[str] = ()
) -> AsyncIterator[Browser]:
    """``grant_microphone=False`` leaves the permission prompt to headless Chromium, which denies
    it; ``extra_args``: more command-line flags (a host mapping, a certificate to trust)."""
    args = [f for f in FLAGS if grant_microphone or f != "--use-fake-ui-for-media-stream"]
    args += list(extra_args)
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}%noloop")
    # Playwright's launch() gives every run a fresh, temporary profile of its own.
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            await browser.close()


async def captured_finals(page: Page, reference: str, timeout_ms: int = 40_000) -> list[str]:
    """The capture page's final lines once they hold most of ``reference``'s words (word counts,
    never exact words: Whisper's words differ between CPUs)."""
    enough = len(reference.split()) * 4 // 5
    await page.wait_for_function(
        f"window.novaCapture.finals().join(' ').split(/\\s+/).length >= {enough}", timeout=timeout_ms
    )
    return list(await page.evaluate("window.novaCapture.finals()"))
