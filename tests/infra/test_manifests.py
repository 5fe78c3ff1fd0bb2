"""The deployment files parse and say what the operators need: KubeRay field names as the CRDs
(ray.io/v1) spell them, a GPU group for training, settings from a ConfigMap, credentials only from
a Secret, and a Dockerfile that builds with ``make setup`` on a CUDA base."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"

# Field names of the KubeRay v1 CRDs (RayCluster, RayJob) that these manifests may use; a typo
# (``workerGroupSpec``, ``minReplica``) would be silently dropped by an API server without pruning
# errors, so the test knows them.
RAYCLUSTER_SPEC = {"rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec",
                   "workerGroupSpecs", "headServiceAnnotations", "suspend", "managedBy", "gcsFaultToleranceOptions"}
HEAD_GROUP = {"rayStartParams", "template", "serviceType", "enableIngress", "headService"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template",
                "scaleStrategy", "numOfHosts", "suspend", "idleTimeoutSeconds"}
RAYJOB_SPEC = {"entrypoint", "rayClusterSpec", "clusterSelector", "shutdownAfterJobFinishes",
               "ttlSecondsAfterFinished", "runtimeEnvYAML", "activeDeadlineSeconds", "backoffLimit",
               "submissionMode", "entrypointNumCpus", "entrypointNumGpus", "entrypointResources",
               "jobId", "metadata", "submitterPodTemplate", "submitterConfig", "suspend",
               "deletionStrategy", "managedBy"}
SECRET_ENV = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", re.I)


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((INFRA / "kuberay" / name).read_text()) if d]


def all_kuberay() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in sorted((INFRA / "kuberay").glob("*.yaml")) for d in docs(p.name)]


def check_cluster_spec(spec: dict) -> list[dict]:
    """Validate a RayCluster spec's field names; returns its pod templates."""
    assert set(spec) <= RAYCLUSTER_SPEC, set(spec) - RAYCLUSTER_SPEC
    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP and "template" in head, set(head) - HEAD_GROUP
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())  # CRD: map of strings
    templates = [head["template"]]
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP, set(group) - WORKER_GROUP
        assert {"groupName", "template", "rayStartParams"} <= set(group)
        assert group.get("minReplicas", 0) <= group.get("replicas", 0) <= group.get("maxReplicas", 1 << 30)
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
        templates.append(group["template"])
    return templates


def containers(templates: list[dict]) -> list[dict]:
    return [c for t in templates for c in t["spec"]["containers"]]


@pytest.mark.parametrize("name,doc", all_kuberay(), ids=lambda x: x if isinstance(x, str) else "")
def test_kuberay_manifests_use_crd_field_names(name, doc):
    assert doc["apiVersion"] in ("ray.io/v1", "v1")
    if doc["kind"] == "RayCluster":
        pods = check_cluster_spec(doc["spec"])
    elif doc["kind"] == "RayJob":
        spec = doc["spec"]
        assert set(spec) <= RAYJOB_SPEC, set(spec) - RAYJOB_SPEC
        assert spec["entrypoint"].startswith("iptalker ")
        assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec)  # new cluster or an existing one
        pods = check_cluster_spec(spec["rayClusterSpec"]) if "rayClusterSpec" in spec else []
    else:
        assert doc["kind"] == "ConfigMap"
        assert not [k for k in doc["data"] if SECRET_ENV.search(k)], "credentials belong in a Secret"
        return
    for c in containers(pods):  # settings by reference: Secret for credentials, ConfigMap for the rest
        refs = {next(iter(r)): next(iter(r.values()))["name"] for r in c.get("envFrom", [])}
        assert refs == {"secretRef": "iptalker-s3", "configMapRef": "iptalker-settings"}, (name, c["name"])
        assert not [e for e in c.get("env", []) if "value" in e and SECRET_ENV.search(e["name"])]


def test_cluster_has_a_gpu_training_group_and_the_configmap_exists():
    (cluster,) = docs("raycluster.yaml")
    gpu = [g for g in cluster["spec"]["workerGroupSpecs"]
           if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpu and gpu[0]["rayStartParams"]["num-gpus"] == str(
        gpu[0]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert "cuda" in gpu[0]["template"]["spec"]["containers"][0]["image"]
    (settings,) = docs("settings.yaml")
    assert settings["metadata"]["name"] == "iptalker-settings" and "MLFLOW_TRACKING_URI" in settings["data"]
    assert not list((INFRA / "kuberay").glob("*secret*"))  # the Secret is created out of band


def test_dockerfile_builds_the_pinned_environment_on_a_cuda_base():
    text = (INFRA / "Dockerfile").read_text()
    assert "make setup" in text  # the same pinned install as a developer machine
    assert re.search(r"--build-arg BASE=nvidia/cuda:\S+", text)  # documented GPU flavour
    assert re.search(r"^ARG BASE=", text, re.M) and re.search(r"^FROM \$\{BASE\}", text, re.M)
    ignored = (INFRA.parent / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".cache"} <= set(ignored)
