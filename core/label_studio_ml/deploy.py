"""``label-studio-ml deploy gcp``: a project folder to Google Cloud Run with ``gcloud run deploy --source``.

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

from .console import Subcommands, fail

SERVICE = re.compile(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?\Z")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1", "host.docker.internal"}


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
        raise DeployError("gcloud is not installed: install the Google Cloud CLI "
                          "(https://cloud.google.com/sdk/docs/install), then run `gcloud auth login`")
    try:
        accounts = subprocess.run([gcloud, "auth", "list", "--filter=status:ACTIVE", "--format=value(account)"],
                                  capture_output=True, text=True, timeout=60)
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
        raise DeployError(f"{dockerfile} builds from the repository root, but Cloud Run builds {folder} alone: "
                          f"make a standalone copy with `label-studio-ml create NAME --from {folder}` and deploy it")


def check_host(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeployError(f"--label-studio-host must be a URL like https://label-studio.example.com, not {url!r}")
    if parts.hostname in LOCAL_HOSTS or parts.hostname.startswith("127."):
        raise DeployError(f"--label-studio-host {url} is local to this machine; give an address Cloud Run can reach")


def service_name(folder: Path, given: str | None) -> str:
    name = given or folder.resolve().name.lower().replace("_", "-")
    if not SERVICE.match(name):
        raise DeployError(f"{name!r} is not a valid Cloud Run service name (lowercase letters, digits and -, "
                          f"starting with a letter, at most 49 characters): pass --service-name")
    return name


def deploy_gcp(args: argparse.Namespace) -> int:
    folder = Path(args.directory)
    api_key = args.label_studio_api_key or os.environ.get("LABEL_STUDIO_API_KEY", "")
    secrets = [s for s in (api_key, args.basic_auth_pass) if s]
    if not api_key:
        raise DeployError("the Label Studio API key is missing: pass --label-studio-api-key "
                          "or set LABEL_STUDIO_API_KEY")
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
        command = [gcloud, "run", "deploy", name, "--source", str(folder), "--project", args.gcp_project_id,
                   "--region", args.gcp_region, "--platform", "managed", "--port", "9090",
                   "--allow-unauthenticated", "--env-vars-file", str(env_file), "--quiet"]
        print(f"Deploying {folder} to Cloud Run service {name!r} (project {args.gcp_project_id}, region "
              f"{args.gcp_region}); LABEL_STUDIO_URL={env['LABEL_STUDIO_URL']}, LABEL_STUDIO_API_KEY=***", flush=True)
        print("$ gcloud " + " ".join(command[1:]), flush=True)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(redact(line, secrets))
            sys.stdout.flush()
        code = process.wait()
    if code != 0:
        raise DeployError(f"gcloud run deploy failed (exit {code}); see its output above")
    auth = "" if args.basic_auth_user else (" It is public: pass --basic-auth-user/--basic-auth-pass "
                                            "to require credentials.")
    print(f"Deployed. Connect the Service URL above in Label Studio (Project -> Settings -> Model).{auth}")
    return 0


def cmd_deploy_gcp(args: argparse.Namespace) -> int:
    try:
        return deploy_gcp(args)
    except (DeployError, OSError) as exc:
        return fail(redact(str(exc), [args.label_studio_api_key or os.environ.get("LABEL_STUDIO_API_KEY", ""),
                                      args.basic_auth_pass or ""]))


def add_command(sub: Subcommands) -> None:
    deploy = sub.add_parser("deploy", help="deploy a backend to a cloud (gcp: Google Cloud Run)",
                            description="Deploy a project folder (from `label-studio-ml create`) to a cloud.")
    targets = deploy.add_subparsers(dest="cloud", required=True, metavar="CLOUD")
    gcp = targets.add_parser(
        "gcp", help="Google Cloud Run, built from the folder's Dockerfile",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build and deploy DIR on Google Cloud Run with `gcloud run deploy --source DIR` (Cloud Build\n"
                    "uses DIR's Dockerfile). Needs the gcloud CLI, logged in (`gcloud auth login`). The service\n"
                    "gets LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY; the key is never printed.",
        epilog="example:\n"
               "  label-studio-ml deploy gcp my_backend --gcp-project-id my-project --gcp-region europe-west1 \\\n"
               "      --label-studio-host https://label-studio.example.com --label-studio-api-key \"$KEY\"")
    gcp.add_argument("directory", metavar="DIR", help="project folder with model.py and a Dockerfile")
    gcp.add_argument("--gcp-project-id", required=True, metavar="ID", help="Google Cloud project id")
    gcp.add_argument("--gcp-region", default="us-central1", metavar="R", help="Cloud Run region (default: us-central1)")
    gcp.add_argument("--label-studio-host", required=True, metavar="URL",
                     help="Label Studio as reachable from Cloud Run (sets LABEL_STUDIO_URL)")
    gcp.add_argument("--label-studio-api-key", metavar="KEY",
                     help="LS legacy token or personal access token (sets LABEL_STUDIO_API_KEY; default: "
                          "$LABEL_STUDIO_API_KEY, which keeps it out of your shell history)")
    gcp.add_argument("--service-name", metavar="NAME", help="Cloud Run service (default: DIR's name, _ -> -)")
    gcp.add_argument("--basic-auth-user", metavar="U", help="require HTTP basic auth with this user")
    gcp.add_argument("--basic-auth-pass", metavar="P", help="password for basic auth")
    gcp.set_defaults(func=cmd_deploy_gcp)
