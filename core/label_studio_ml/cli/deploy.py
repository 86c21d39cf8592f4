"""``label-studio-ml deploy gcp``: a project folder to Google Cloud Run with ``gcloud run deploy --source``;
``label-studio-ml deploy k8s``: Kubernetes manifests for a service folder (built in ``kubernetes``).

Secrets never reach the output or gcloud's command line (where ``ps`` shows them): they go to
Cloud Run in an ``--env-vars-file`` readable by this user only, deleted afterwards, and every line
gcloud prints is redacted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from .console import Subcommands, add_subcommand, fail
from .kubernetes import ManifestError, Options, build_manifests, quoted, write_manifests
from .service_facts import ServiceError, read_service

SERVICE = re.compile(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?\Z")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1", "host.docker.internal"}
GCP_HELP = r"""Google Cloud Run, built from the folder's Dockerfile

Build and deploy DIR on Google Cloud Run with `gcloud run deploy --source DIR` (Cloud Build
uses DIR's Dockerfile). Needs the gcloud CLI, logged in (`gcloud auth login`). The service
gets LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY; the key is never printed.

example:
  label-studio-ml deploy gcp my_backend --gcp-project-id my-project --gcp-region europe-west1 \
      --label-studio-host https://label-studio.example.com --label-studio-api-key "$KEY"
"""
K8S_HELP = """Kubernetes manifests and a kustomization.yaml, for kubectl apply -k

Write Kubernetes manifests for SERVICE_DIR (a services/<name> folder or a project from
`label-studio-ml create`), read from its Dockerfile and compose file: the server Deployment
(readiness on /health, a startup probe that waits out long model loads, non-root, read-only
root filesystem), its Service, HorizontalPodAutoscaler and PodDisruptionBudget, the RQ
training worker, Redis (a StatefulSet with a volume) unless --redis names one, a
ReadWriteMany volume for MODEL_DIR, and kustomization.yaml, which makes a ConfigMap of
config.env and a Secret of secrets.env (read by secretKeyRef, never plain values). Nothing
is sent to a cluster: apply the folder with kubectl.

examples:
  label-studio-ml deploy k8s services/segment_anything --gpu --replicas 2
  kubectl apply -k deploy/k8s/segment_anything-gpu
  label-studio-ml deploy k8s my_backend --redis redis://redis.internal:6379/0 --output k8s/
"""


class DeployError(Exception):
    pass


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def check_gcloud() -> str:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise DeployError(
            "gcloud is not installed: install the Google Cloud CLI "
            "(https://cloud.google.com/sdk/docs/install), then run `gcloud auth login`"
        )
    try:
        accounts = subprocess.run(
            [gcloud, "auth", "list", "--filter=status:ACTIVE", "--format=value(account)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise DeployError("`gcloud auth list` did not answer in 60 s; check your gcloud set-up") from None
    if accounts.returncode != 0 or not accounts.stdout.strip():
        raise DeployError("gcloud has no active account: run `gcloud auth login`")
    return gcloud


def check_folder(folder: Path) -> None:
    if not (folder / "model.py").is_file():
        raise DeployError(f"{folder} has no model.py: pass a project folder made with `label-studio-ml create`")
    dockerfile = folder / "Dockerfile"
    if not dockerfile.is_file():
        raise DeployError(f"{folder} has no Dockerfile: make the project with `label-studio-ml create`")
    text = dockerfile.read_text(encoding="utf-8")
    if re.search(r"^COPY\s+(core|services/)", text, re.MULTILINE):
        raise DeployError(
            f"{dockerfile} builds from the repository root, but Cloud Run builds {folder} alone: "
            f"make a standalone copy with `label-studio-ml create NAME --from {folder}` and deploy it"
        )


def check_host(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeployError(f"--label-studio-host must be a URL like https://label-studio.example.com, not {url!r}")
    if parts.hostname in LOCAL_HOSTS or parts.hostname.startswith("127."):
        raise DeployError(f"--label-studio-host {url} is local to this machine; give an address Cloud Run can reach")


def service_name(folder: Path, given: str | None) -> str:
    name = given or folder.resolve().name.lower().replace("_", "-")
    if not SERVICE.match(name):
        raise DeployError(
            f"{name!r} is not a valid Cloud Run service name (lowercase letters, digits and -, "
            f"starting with a letter, at most 49 characters): pass --service-name"
        )
    return name


def deploy_gcp(args: argparse.Namespace) -> int:
    folder = Path(args.directory)
    api_key = args.label_studio_api_key or os.environ.get("LABEL_STUDIO_API_KEY", "")
    secrets = [s for s in (api_key, args.basic_auth_pass) if s]
    if not api_key:
        raise DeployError(
            "the Label Studio API key is missing: pass --label-studio-api-key or set LABEL_STUDIO_API_KEY"
        )
    if bool(args.basic_auth_user) != bool(args.basic_auth_pass):
        raise DeployError("--basic-auth-user and --basic-auth-pass go together: pass both or neither")
    check_folder(folder)
    check_host(args.label_studio_host)
    name = service_name(folder, args.service_name)
    gcloud = check_gcloud()
    env = {"LABEL_STUDIO_URL": args.label_studio_host.rstrip("/"), "LABEL_STUDIO_API_KEY": api_key}
    if args.basic_auth_user:
        env.update(BASIC_AUTH_USER=args.basic_auth_user, BASIC_AUTH_PASS=args.basic_auth_pass)
    with tempfile.TemporaryDirectory(prefix="lsml-deploy-") as tmp:
        env_file = Path(tmp) / "env.yaml"
        env_file.touch(mode=0o600)
        env_file.write_text(yaml.safe_dump(env))
        command = [
            gcloud,
            "run",
            "deploy",
            name,
            "--source",
            str(folder),
            "--project",
            args.gcp_project_id,
            "--region",
            args.gcp_region,
            "--platform",
            "managed",
            "--port",
            "9090",
            "--allow-unauthenticated",
            "--env-vars-file",
            str(env_file),
            "--quiet",
        ]
        print(
            f"Deploying {folder} to Cloud Run service {name!r} (project {args.gcp_project_id}, region "
            f"{args.gcp_region}); LABEL_STUDIO_URL={env['LABEL_STUDIO_URL']}, LABEL_STUDIO_API_KEY=***",
            flush=True,
        )
        print("$ gcloud " + " ".join(command[1:]), flush=True)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(redact(line, secrets))
            sys.stdout.flush()
        code = process.wait()
    if code != 0:
        raise DeployError(f"gcloud run deploy failed (exit {code}); see its output above")
    auth = (
        ""
        if args.basic_auth_user
        else (" It is public: pass --basic-auth-user/--basic-auth-pass to require credentials.")
    )
    print(f"Deployed. Connect the Service URL above in Label Studio (Project -> Settings -> Model).{auth}")
    return 0


def cmd_deploy_gcp(args: argparse.Namespace) -> int:
    try:
        return deploy_gcp(args)
    except (DeployError, OSError) as exc:
        return fail(
            redact(
                str(exc),
                [args.label_studio_api_key or os.environ.get("LABEL_STUDIO_API_KEY", ""), args.basic_auth_pass or ""],
            )
        )


def node_selector(pairs: list[str] | None) -> dict[str, str] | None:
    if pairs is None:
        return None
    selector = {}
    for pair in pairs:
        if pair:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ManifestError(f"--node-selector takes KEY=VALUE, not {pair!r}")
            selector[key] = value
    return selector


def deploy_k8s(args: argparse.Namespace) -> int:
    folder = Path(args.directory)
    facts = read_service(folder, gpu=args.gpu)
    options = Options(
        replicas=args.replicas,
        max_replicas=args.max_replicas,
        redis_url=args.redis or "",
        image=args.image,
        namespace=args.namespace,
        cpu=args.cpu,
        memory=args.memory,
        storage=args.storage,
        storage_class=args.storage_class,
        node_selector=node_selector(args.node_selector),
    )
    manifests = build_manifests(facts, options)
    output = Path(args.output or Path("deploy", "k8s", facts.name + ("-gpu" if args.gpu else "")))
    written = write_manifests(manifests, output, facts.name + (" --gpu" if args.gpu else ""))
    autoscaler = manifests.files["server-hpa.yaml"]["spec"]
    redis = f"Redis at {quoted(options.redis_url)}" if options.redis_url else "a Redis StatefulSet"
    note = "" if not args.gpu or facts.has_gpu_variant else " (its compose file has no GPU service: same image)"
    print(
        f"Wrote {output}/ for {facts.name}: image {options.image or facts.image}{note}, "
        f"{autoscaler['minReplicas']}-{autoscaler['maxReplicas']} server replicas, a training worker, {redis}.\n"
        f"  {', '.join(path.name for path in written)}\n"
        f"Next:\n"
        f"  1. push the image to a registry the cluster pulls from and name it under images: in "
        f"{output / 'kustomization.yaml'} (or pass --image)\n"
        f"  2. set LABEL_STUDIO_URL in config.env and fill secrets.env (LABEL_STUDIO_API_KEY, basic auth)\n"
        f"  3. kubectl apply -k {output}\n"
        f"Label Studio in the cluster reaches it at http://{manifests.name}.<namespace>.svc:{facts.port}"
    )
    return 0


def cmd_deploy_k8s(args: argparse.Namespace) -> int:
    try:
        return deploy_k8s(args)
    except (ManifestError, ServiceError, OSError) as exc:
        return fail(quoted(str(exc)) if not args.redis else str(exc).replace(args.redis, quoted(args.redis)))


def add_k8s_command(targets: Subcommands) -> None:
    k8s = add_subcommand(targets, "k8s", cmd_deploy_k8s, K8S_HELP)
    k8s.add_argument(
        "directory", metavar="SERVICE_DIR", help="service folder with model.py, Dockerfile and a compose file"
    )
    k8s.add_argument(
        "--replicas", type=int, default=2, metavar="N", help="server replicas: the autoscaler's minimum (default: 2)"
    )
    k8s.add_argument("--max-replicas", type=int, metavar="N", help="the autoscaler's maximum (default: 3 x N)")
    k8s.add_argument(
        "--gpu",
        action="store_true",
        help="one nvidia.com/gpu per server replica and worker, the compose file's GPU image, a node "
        "selector (nvidia.com/gpu.present=true) and a toleration for GPU nodes",
    )
    k8s.add_argument(
        "--node-selector",
        action="append",
        metavar="KEY=VALUE",
        help="schedule pods on nodes with this label (repeatable; replaces the --gpu default; "
        "--node-selector '' for none)",
    )
    redis = k8s.add_mutually_exclusive_group()
    redis.add_argument(
        "--redis",
        metavar="URL",
        help="use this Redis (REDIS_URL, written to secrets.env as it may hold a password) instead of running one",
    )
    redis.add_argument(
        "--with-redis",
        action="store_true",
        help="run Redis in the cluster: a StatefulSet with its own volume (the default)",
    )
    k8s.add_argument(
        "--image",
        metavar="REF",
        help="image the cluster pulls, e.g. registry.example.com/sam:1.0 "
        "(default: the compose file's, which `make build` tags)",
    )
    k8s.add_argument("--namespace", metavar="NS", help="namespace for every resource (default: kubectl's)")
    k8s.add_argument("--cpu", default="1", metavar="Q", help="CPU request of the server and worker (default: 1)")
    k8s.add_argument(
        "--memory", default="2Gi", metavar="Q", help="memory request and limit of the server and worker (default: 2Gi)"
    )
    k8s.add_argument("--storage", default="10Gi", metavar="Q", help="size of the MODEL_DIR volume (default: 10Gi)")
    k8s.add_argument(
        "--storage-class",
        metavar="NAME",
        help="storage class of the MODEL_DIR volume; it must offer ReadWriteMany (default: the cluster's)",
    )
    k8s.add_argument("--output", "-o", metavar="DIR", help="folder to write (default: deploy/k8s/<service>[-gpu])")


def add_command(sub: Subcommands) -> None:
    deploy = sub.add_parser(
        "deploy",
        help="deploy a backend: gcp (Google Cloud Run), k8s (Kubernetes manifests)",
        description="Deploy a project folder (from `label-studio-ml create`) to a cloud, "
        "or write Kubernetes manifests for it.",
    )
    targets = deploy.add_subparsers(dest="cloud", required=True, metavar="CLOUD")
    gcp = add_subcommand(targets, "gcp", cmd_deploy_gcp, GCP_HELP)
    gcp.add_argument("directory", metavar="DIR", help="project folder with model.py and a Dockerfile")
    gcp.add_argument("--gcp-project-id", required=True, metavar="ID", help="Google Cloud project id")
    gcp.add_argument("--gcp-region", default="us-central1", metavar="R", help="Cloud Run region (default: us-central1)")
    gcp.add_argument(
        "--label-studio-host",
        required=True,
        metavar="URL",
        help="Label Studio as reachable from Cloud Run (sets LABEL_STUDIO_URL)",
    )
    gcp.add_argument(
        "--label-studio-api-key",
        metavar="KEY",
        help="LS legacy token or personal access token (sets LABEL_STUDIO_API_KEY; default: "
        "$LABEL_STUDIO_API_KEY, which keeps it out of your shell history)",
    )
    gcp.add_argument("--service-name", metavar="NAME", help="Cloud Run service (default: DIR's name, _ -> -)")
    gcp.add_argument("--basic-auth-user", metavar="U", help="require HTTP basic auth with this user")
    gcp.add_argument("--basic-auth-pass", metavar="P", help="password for basic auth")
    add_k8s_command(targets)
