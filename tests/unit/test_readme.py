"""README's links within itself lead somewhere: its table of contents and cross-references name
headings that exist (GitHub's anchors: lower case, punctuation dropped, spaces to hyphens)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_within_the_readme_names_a_heading() -> None:
    text = README.read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no headings nor links
    headings = {anchor(h) for h in re.findall(r"^#{1,6} (.+)$", prose, flags=re.M)}
    links = set(re.findall(r"\]\(#([^)]+)\)", prose))
    assert links and not links - headings, sorted(links - headings)


def test_the_first_screen_installs_opens_the_page_and_runs_the_tests() -> None:
    first = README.read_text(encoding="utf-8").split("\n## ", 1)[0]
    install, page, tests = (first.index(s) for s in ("./install.sh &&", "http://127.0.0.1:8080", "pytest"))
    assert install < page < tests
