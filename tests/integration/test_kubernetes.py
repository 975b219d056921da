"""The Kubernetes manifests (deploy/kubernetes): rendered with kustomize, every resource valid
against Kubernetes' own schemas (PyPI kubernetes-validate, strict), the KEDA objects against
KEDA's documented redis-streams trigger, and what they say agrees with the code they run."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipeline.streams import Keys
from server.settings import Settings, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("cpu", "gpu")
# KEDA's redis-streams trigger (keda.sh/docs/latest/scalers/redis-streams): its metadata keys.
KEDA_REDIS_STREAMS = {
    "address", "host", "port", "usernameFromEnv", "passwordFromEnv", "stream", "consumerGroup",
    "pendingEntriesCount", "streamLength", "lagCount", "activationLagCount", "databaseIndex",
    "enableTLS", "unsafeSsl",
}  # fmt: skip
KEDA_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}  # fmt: skip


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (Debian kubernetes-client) renders kustomize offline"
    done = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy/kubernetes/overlays" / overlay)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_resource_is_valid_kubernetes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, docs in rendered.items():
        kinds = {d["kind"] for d in docs}
        assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "ScaledObject"} <= kinds, overlay
        for doc in docs:
            if doc["apiVersion"].startswith("keda.sh/"):
                continue  # not a Kubernetes schema: checked against KEDA's spec below
            kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_keda_scales_each_worker_kind_on_its_own_request_stream(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["cpu"]
    deployments = by_kind(docs, "Deployment")
    keys = Keys()
    streams = {
        "nova-whisper-worker": keys.requests("whisper", True),
        "nova-translate-worker": keys.requests("apertium", True),
        "nova-voice-worker": keys.requests("piper", True),
    }
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == set(streams)
    for name, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1" and set(obj["spec"]) <= KEDA_SPEC
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments
        assert obj["spec"]["minReplicaCount"] >= 1  # a final never waits for a cold start
        (trigger,) = obj["spec"]["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "redis-streams" and set(meta) <= KEDA_REDIS_STREAMS
        assert meta["stream"] == streams[name] and meta["consumerGroup"] == keys.group
        assert all(isinstance(v, str) for v in meta.values())  # KEDA's metadata is strings
        assert meta["address"].split(":")[0] in by_kind(docs, "Service")


def test_the_manifests_run_what_the_code_offers(rendered: dict[str, list[dict[str, Any]]]) -> None:
    flags = {f"NOVA_{f.name.upper()}" for cls in (Settings, WorkerSettings) for f in fields(cls)}
    for overlay, docs in rendered.items():
        configs = by_kind(docs, "ConfigMap")
        for name, deployment in by_kind(docs, "Deployment").items():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            env = {e["name"] for e in container.get("env", [])}
            for ref in container.get("envFrom", []):
                env |= set(configs[ref["configMapRef"]["name"]]["data"])
            if name == "nova-coturn":
                continue
            unknown = {e for e in env if e.startswith("NOVA_")} - flags
            assert not unknown, (overlay, name, unknown)
            assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        gateway = by_kind(docs, "Deployment")["nova-gateway"]["spec"]["template"]["spec"]
        drain = next(e["value"] for e in gateway["containers"][0]["env"] if e["name"] == "NOVA_DRAIN_TIMEOUT")
        assert gateway["terminationGracePeriodSeconds"] > float(drain) + 5  # preStop, then the drain
        assert gateway["containers"][0]["lifecycle"]["preStop"]
    gpu = by_kind(rendered["gpu"], "Deployment")["nova-whisper-worker"]["spec"]["template"]["spec"]
    limits = gpu["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and gpu["containers"][0]["image"] == "nova-voice:gpu"
    cpu = by_kind(rendered["cpu"], "Deployment")["nova-whisper-worker"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"].get("limits", {})
