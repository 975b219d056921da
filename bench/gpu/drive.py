"""bench.capacity's simulated sessions on CUDA, from a kit packed by bench/gpu/pack.sh: raw
engine batches first, then doubling session counts. Run by the kit's run.sh on the GPU box,
from the kit's folder (the project is its proj/ copy; audio comes from librivox.npz)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, "proj")  # the packed copy of the project, before anything of it is imported

import ctranslate2  # noqa: E402
import numpy as np  # noqa: E402

import bench.capacity as cap  # noqa: E402
from bench.corpus import Stream, Utterance  # noqa: E402
from bench.profile import measured  # noqa: E402
from pipeline.engines.whisper import HOP, WhisperConfig, WhisperEngine  # noqa: E402
from pipeline.types import TranscribeRequest  # noqa: E402
from server.inference import batch_options, parse_devices  # noqa: E402
from server.settings import Settings  # noqa: E402

OUT = os.environ.get("OUT", "/tmp")


def log(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)
    with open(os.path.join(OUT, "capacity.jsonl"), "a") as f:
        f.write(json.dumps(obj) + "\n")


def raw_batches(engine: WhisperEngine, stream: Stream) -> None:
    """One batch of B windows of 10 s, greedy (what a partial costs); then real speech at batch
    1 and 32: audio seconds per GPU second."""
    for b in (1, 16, 64):
        reqs = [TranscribeRequest(np.zeros((1000 - 60) * HOP, dtype=np.float32))] * b
        engine.run_batch(reqs)
        t, n = time.perf_counter(), 5
        for _ in range(n):
            engine.run_batch(reqs)
        log({"raw_batch": b, "window_s": 10, "ms_per_batch": round(1000 * (time.perf_counter() - t) / n, 1)})
    audio = stream.audio[: 16000 * 10].astype(np.float32) / 32768.0
    for b in (1, 32):
        reqs = [TranscribeRequest(audio)] * b
        engine.run_batch(reqs)
        t = time.perf_counter()
        engine.run_batch(reqs)
        dt = time.perf_counter() - t
        text = engine.run_batch([TranscribeRequest(audio)])[0].text[:80] if b == 1 else ""
        log(
            {
                "speech_batch": b,
                "ms": round(1000 * dt, 1),
                "audio_s_per_s": round(10 * b / dt, 1),
                "text": text,
            }
        )


async def sweep(engine: WhisperEngine, max_batch: int, ns: list[int], deadline: float) -> None:
    settings = Settings(device="cuda", max_batch=max_batch)
    cap.warm_up(engine, batch_options(settings, parse_devices("cuda")[0]).max_batch)
    for n in ns:
        if time.monotonic() > deadline - 45:
            log({"skipped": n, "max_batch": max_batch})
            return
        r = await cap.run(engine, settings, "cuda", n, "after")
        r["max_batch"] = max_batch
        log({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
        if r["worst_p90"] > cap.BOUND or r["missed"]:
            return


def main() -> None:
    print(
        "ct2",
        ctranslate2.__version__,
        "cuda devices",
        ctranslate2.get_cuda_device_count(),
        "types",
        sorted(ctranslate2.get_supported_compute_types("cuda")),
        flush=True,
    )
    d = np.load("librivox.npz")
    stream = Stream("librivox", d["audio"], [Utterance(*u) for u in json.loads(str(d["utt"]))])
    cap.librivox = lambda: stream
    deadline = time.monotonic() + float(os.environ.get("BUDGET_S", "330"))
    config = WhisperConfig(
        os.path.abspath("model"),
        device="cuda",
        device_index=0,
        compute_type=os.environ.get("CTYPE", "float16"),
        cpu_threads=0,
        decode_threads=0,
    )
    engine = WhisperEngine(config)
    # First what the modelled device needs (bench.profile: stage by stage, features apart), so
    # even a box lent for a minute leaves a profile bench.scale can run on without a GPU.
    prof = measured(engine, config.model_path, d["audio"].astype(np.float32) / 32768, [1, 16, 64, 128], 6, 3)
    with open(os.path.join(OUT, "profile.json"), "w") as f:
        json.dump(prof, f, indent=1)
    log({"profile": prof})
    raw_batches(engine, stream)
    ns = [int(x) for x in os.environ.get("NS", "16,64,128,256,384").split(",")]
    asyncio.run(sweep(engine, int(os.environ.get("MAXB", "0")), ns, deadline))
    if os.environ.get("NS2"):
        more = [int(x) for x in os.environ["NS2"].split(",")]
        asyncio.run(sweep(engine, int(os.environ.get("MAXB2", "64")), more, deadline))
    print("done", flush=True)


if __name__ == "__main__":
    main()
