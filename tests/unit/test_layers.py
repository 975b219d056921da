"""pipeline/ is pure audio and inference: it never imports the web or WebRTC layers."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"
FORBIDDEN = ("server", "aiohttp", "aiortc", "jinja2", "prometheus_client")


def test_pipeline_imports_no_edges() -> None:
    offenders = []
    for path in PIPELINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
