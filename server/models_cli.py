"""``nova-voice models pull NAME``: download an NLLB-200 checkpoint and convert it for CTranslate2.

Online users get the model hub's files and a torch-free conversion; offline users can pass
``--from`` a copy of the hub folder made elsewhere. A failure is one line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.models import NLLB_MODELS, ModelNotFound, models_dir, pull_nllb


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nova-voice models", description="Fetch and convert translation models.")
    sub = p.add_subparsers(dest="action", required=True)
    pull = sub.add_parser("pull", help="download and convert an NLLB-200 model")
    pull.add_argument("name", help=f"one of: {', '.join(NLLB_MODELS)}")
    pull.add_argument("--from", dest="source", type=Path, help="a local copy of the hub folder (offline)")
    pull.add_argument("--dir", type=Path, default=None, help=f"where models go (default {models_dir()})")
    pull.add_argument("--quantization", default="int8", help="weight type: int8, float16, float32")
    sub.add_parser("list", help="the models `pull` knows")
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    if args.action == "list":
        for name, repo in NLLB_MODELS.items():
            print(f"{name}\t{repo}")
        return 0
    from pipeline.checkpoints import CheckpointError
    from pipeline.nllb_convert import ConversionError

    try:
        out = pull_nllb(args.name, dest=args.dir, source=args.source, quantization=args.quantization)
    except (ModelNotFound, ConversionError, CheckpointError, OSError) as exc:
        print(f"nova-voice: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    print(f"converted {args.name} into {out}; serve it with --translate-model {out}", flush=True)
    return 0
