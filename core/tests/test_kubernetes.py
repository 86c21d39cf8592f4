"""``label-studio-ml deploy k8s`` and the checked-in manifests under deploy/k8s/.

The manifests are checked against each service's Dockerfile and compose file as read here, with
a few regular expressions and PyYAML, not through ``service_facts`` (which the builder uses):
a mistake there would otherwise check itself. The offline schema validation and ``kubectl
kustomize`` build are the lint env's (tools/lint_k8s.py); these tests need neither.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from label_studio_ml.cli import main as cli

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "k8s"
TOOL = REPO / "tools" / "k8s_manifests.py"
SERVICES = sorted(path.parent.name for path in REPO.glob("services/*/model.py"))
# what this test calls a secret: basic auth and any setting named *KEY, *TOKEN, *PASS(WORD), *SECRET
SECRET = re.compile(r"^BASIC_AUTH_|(KEY|TOKEN|PASS|PASSWORD|SECRET)$")
INTERPOLATED = re.compile(r"\$\{\w+(?::?-(.*))?\}\Z")


# --- what the service's own files say -------------------------------------------------------------
@dataclass(frozen=True)
class Image:
    """The production stage of a Dockerfile (with the stages it is built FROM), read with regexes."""

    text: str

    @classmethod
    def read(cls, service: str) -> Image:
        return cls(cls.production_chain(REPO / "services" / service / "Dockerfile"))

    @classmethod
    def production_chain(cls, path: Path) -> str:
        text = path.read_text()
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        text = text.replace("\\\n", " ")
        stages: dict[str, tuple[str, str]] = {}  # name -> (FROM argument, body)
        for found in re.finditer(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\n(.*?)(?=^FROM\s|\Z)", text, re.M | re.S | re.I):
            stages[found.group(2) or f"stage{len(stages)}"] = (found.group(1), found.group(3))
        name = "production" if "production" in stages else list(stages)[-1]
        chain = []
        while name in stages:
            parent, body = stages[name]
            chain.insert(0, body)
            name = parent
        if name == "${CORE_IMAGE}":  # a service of this repository: the core image comes first
            chain.insert(0, cls.production_chain(REPO / "core" / "Dockerfile"))
        return "\n".join(chain)

    def last(self, pattern: str) -> re.Match[str]:
        found = list(re.finditer(pattern, self.text, re.M))
        assert found, f"the Dockerfile has no {pattern!r}"
        return found[-1]

    @property
    def exposed(self) -> int:
        return int(self.last(r"^EXPOSE\s+(\d+)").group(1))

    @property
    def model_dir(self) -> str:
        return self.last(r"^ENV\s.*\bMODEL_DIR=(\S+)").group(1)

    @property
    def user(self) -> str:
        return self.last(r"^USER\s+(\S+)").group(1)

    @property
    def uid(self) -> int:
        found = self.last(r"useradd\b.*?--uid\s+(\d+)\s+(\w+)")
        assert found.group(2) == self.user, "the image runs as a user it does not create"
        return int(found.group(1))

    @property
    def creates_home(self) -> bool:
        return "--create-home" in self.last(r"useradd\b.*").group(0)

    @property
    def command(self) -> list[str]:
        return json.loads(self.last(r"^CMD\s+(\[.*\])\s*$").group(1))

    @property
    def health_path(self) -> str:
        return self.last(r"^HEALTHCHECK\s.*?https?://[^/'\"\s]+(/[\w/]*)").group(1)

    @property
    def start_period(self) -> int:
        return int(self.last(r"^HEALTHCHECK\s.*?--start-period=(\d+)s").group(1))


def compose(service: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose" / f"{service}.yml").read_text())["services"]


def wants_gpu(definition: dict[str, Any]) -> bool:
    devices = definition.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any(device.get("driver") == "nvidia" for device in devices)


def compose_service(service: str, gpu: bool) -> dict[str, Any]:
    if not gpu:
        return compose(service)[service]
    return next(definition for definition in compose(service).values() if wants_gpu(definition))


def default(value: Any) -> str:
    """What compose runs with when the variable is unset: ``${X:-d}`` -> d."""
    found = INTERPOLATED.match(str(value))
    return (found.group(1) or "") if found else str(value)


GPU_SERVICES = [s for s in SERVICES if any(wants_gpu(d) for d in compose(s).values())]
VARIANTS = [(s, False) for s in SERVICES] + [(s, True) for s in GPU_SERVICES]
VARIANT_IDS = [f"{s}-gpu" if gpu else s for s, gpu in VARIANTS]


# --- what the manifests say -----------------------------------------------------------------------
def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@dataclass
class Folder:
    path: Path

    def resource(self, file: str) -> dict[str, Any]:
        return yaml.safe_load((self.path / file).read_text())

    def resources(self) -> list[dict[str, Any]]:
        return [self.resource(p.name) for p in sorted(self.path.glob("*.yaml")) if p.name != "kustomization.yaml"]

    def pod(self, file: str) -> dict[str, Any]:
        return self.resource(file)["spec"]["template"]["spec"]

    def container(self, file: str) -> dict[str, Any]:
        (container,) = self.pod(file)["containers"]
        return container

    @property
    def kustomization(self) -> dict[str, Any]:
        return self.resource("kustomization.yaml")

    @property
    def config(self) -> dict[str, str]:
        return env_file(self.path / "config.env")

    @property
    def secrets(self) -> dict[str, str]:
        return env_file(self.path / "secrets.env")

    def kinds(self) -> list[str]:
        return sorted(resource["kind"] for resource in self.resources())


def checked_in(service: str, gpu: bool) -> Folder:
    return Folder(DEPLOY / (f"{service}-gpu" if gpu else service))


def deploy(*args: str) -> tuple[int, str, str]:
    """``label-studio-ml deploy k8s ARGS`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(["deploy", "k8s", *args])
        except SystemExit as exit_info:
            code = exit_info.code if isinstance(exit_info.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def generated(tmp_path: Path, service: str, *args: str) -> Folder:
    output = tmp_path / "k8s" / service
    code, _, err = deploy(str(REPO / "services" / service), *args, "--output", str(output))
    assert code == 0, err
    return Folder(output)


# --- drift ----------------------------------------------------------------------------------------
def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), "--check", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_there_is_a_folder_per_service_and_per_gpu_service_of_compose():
    expected = set(SERVICES) | {f"{s}-gpu" for s in GPU_SERVICES}
    assert {path.name for path in DEPLOY.iterdir()} == expected
    assert GPU_SERVICES  # the GPU checks below check something


def test_the_checked_in_manifests_are_what_the_command_writes():
    run = check()
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("change", ["edited", "removed", "added"])
def test_check_fails_naming_the_file_that_drifted(tmp_path, change):
    copy = tmp_path / "k8s"
    shutil.copytree(DEPLOY, copy)
    target = copy / "spacy" / ("extra.yaml" if change == "added" else "server-deployment.yaml")
    if change == "edited":
        text = target.read_text()
        target.write_text(text.replace("containerPort: 9090", "containerPort: 9091"))
        assert target.read_text() != text
    elif change == "removed":
        target.unlink()
    else:
        target.write_text("kind: ConfigMap\n")
    run = check("--deploy-dir", str(copy))
    assert run.returncode == 1
    assert [line for line in run.stdout.splitlines() if line.startswith("out of date")] == [f"out of date: {target}"]
    assert "make k8s" in run.stdout


def test_check_of_a_missing_folder_says_so(tmp_path):
    run = check("--deploy-dir", str(tmp_path / "nothing"))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert f"out of date: {tmp_path / 'nothing'}" in run.stdout


# --- the checked-in manifests against the service's files ----------------------------------------
@pytest.mark.parametrize("service, gpu", VARIANTS, ids=VARIANT_IDS)
def test_the_image_is_the_one_compose_runs_and_kustomize_can_rename_it(service, gpu):
    folder = checked_in(service, gpu)
    image = compose_service(service, gpu)["image"]
    assert image.split(":")[0] == f"label-studio-ml/{service}"
    for file in ("server-deployment.yaml", "worker-deployment.yaml"):
        assert folder.container(file)["image"] == image
    (entry,) = folder.kustomization["images"]
    assert entry["name"] == image.split(":")[0]  # `images:` rewrites only the name it matches
    assert f"{entry['newName']}:{entry['newTag']}" == image


@pytest.mark.parametrize("service, gpu", VARIANTS, ids=VARIANT_IDS)
def test_the_port_is_the_exposed_one_and_the_service_sends_there(service, gpu):
    folder = checked_in(service, gpu)
    exposed = Image.read(service).exposed
    (port,) = folder.container("server-deployment.yaml")["ports"]
    assert port["containerPort"] == exposed
    (service_port,) = folder.resource("server-service.yaml")["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    assert service_port["port"] == exposed  # LS connects to the port the README and compose use
    assert compose_service(service, gpu)["ports"][0].endswith(f":{exposed}")


@pytest.mark.parametrize("service, gpu", VARIANTS, ids=VARIANT_IDS)
def test_readiness_is_the_healthcheck_and_a_long_load_is_not_killed(service, gpu):
    image, definition = Image.read(service), compose_service(service, gpu)
    container = checked_in(service, gpu).container("server-deployment.yaml")
    port_name = container["ports"][0]["name"]
    assert image.health_path == "/health"
    assert re.search(r"https?://[^/'\"\s]+/health\b", " ".join(definition["healthcheck"]["test"]))
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness == {"path": "/health", "port": port_name}
    # /health is 503 until the model is loaded: the startup probe (same request) waits at least as
    # long as the image's and compose's start periods before the kubelet may restart the pod ...
    startup = container["startupProbe"]
    assert startup["httpGet"] == readiness
    waits = startup["failureThreshold"] * startup["periodSeconds"]
    assert waits >= image.start_period and waits >= int(definition["healthcheck"]["start_period"].rstrip("s"))
    # ... and liveness asks only whether the port answers: 503 (loading, Redis away) never restarts it
    assert container["livenessProbe"]["tcpSocket"] == {"port": port_name}
    assert "httpGet" not in container["livenessProbe"]


@pytest.mark.parametrize("service, gpu", VARIANTS, ids=VARIANT_IDS)
def test_pods_run_as_the_image_user_with_a_read_only_root(service, gpu):
    image, folder = Image.read(service), checked_in(service, gpu)
    for file in ("server-deployment.yaml", "worker-deployment.yaml"):
        pod, container = folder.pod(file), folder.container(file)
        assert pod["securityContext"]["runAsUser"] == image.uid != 0
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        writable = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert "/tmp" in writable
        if image.creates_home:  # libraries cache under $HOME: it needs a volume on a read-only root
            assert f"/home/{image.user}" in writable


@pytest.mark.parametrize("service, gpu", VARIANTS, ids=VARIANT_IDS)
def test_model_dir_is_the_shared_claim_mounted_where_image_and_compose_put_it(service, gpu):
    folder = checked_in(service, gpu)
    model_dir = Image.read(service).model_dir
    definition = compose_service(service, gpu)
    assert f"model-data:{model_dir}" in definition["volumes"]
    assert default(definition.get("environment", {}).get("MODEL_DIR", model_dir)) == model_dir
    claim = folder.resource("model-data-pvc.yaml")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every replica and the worker mount it
    for file in ("server-deployment.yaml", "worker-deployment.yaml"):
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in folder.pod(file)["volumes"]}
        mounted = {m["mountPath"]: m["name"] for m in folder.container(file)["volumeMounts"]}
        assert claims[mounted[model_dir]] == claim["metadata"]["name"]


@pytest.mark.parametrize("service, gpu", VARIANTS, ids=VARIANT_IDS)
def test_the_server_runs_the_image_cmd_and_the_worker_label_studio_ml_worker(service, gpu):
    image, folder = Image.read(service), checked_in(service, gpu)
    assert "ENTRYPOINT" not in image.text  # `command` replaces an entrypoint; there is none to keep
    server = folder.container("server-deployment.yaml")
    assert server.get("command", image.command) == image.command and "args" not in server
    worker = folder.container("worker-deployment.yaml")
    assert worker["command"] == compose("redis")["worker"]["command"] == ["label-studio-ml", "worker", "/app"]
    assert "ports" not in worker and "readinessProbe" not in worker
    assert folder.resource("worker-deployment.yaml")["spec"]["replicas"] == 1


@pytest.mark.parametrize("service, gpu", VARIANTS, ids=VARIANT_IDS)
def test_every_compose_setting_reaches_the_pods_and_secrets_only_by_reference(service, gpu):
    folder = checked_in(service, gpu)
    environment = compose_service(service, gpu)["environment"]
    (config_map,) = folder.kustomization["configMapGenerator"]
    (secret,) = folder.kustomization["secretGenerator"]
    assert config_map["envs"] == ["config.env"] and secret["envs"] == ["secrets.env"]
    config, secrets = folder.config, folder.secrets
    assert set(secrets) >= {"LABEL_STUDIO_API_KEY", "BASIC_AUTH_USER", "BASIC_AUTH_PASS"}
    assert set(secrets).isdisjoint(config)
    assert not [name for name in config if SECRET.search(name)]
    assert set(secrets.values()) == {""}  # nothing filled in is ever checked in
    for name, value in environment.items():
        if SECRET.search(name):
            assert name in secrets, name
        elif name != "REDIS_URL":  # REDIS_URL names the Redis of the cluster, below
            assert config.get(name) == default(value), name
    for file in ("server-deployment.yaml", "worker-deployment.yaml"):
        container = folder.container(file)
        assert container["envFrom"] == [{"configMapRef": {"name": config_map["name"]}}]
        assert not [var for var in container["env"] if "value" in var]
        by_reference = {var["name"]: var["valueFrom"]["secretKeyRef"] for var in container["env"]}
        assert by_reference == {name: {"name": secret["name"], "key": name} for name in secrets}


@pytest.mark.parametrize("service, gpu", VARIANTS, ids=VARIANT_IDS)
def test_redis_runs_in_the_cluster_with_a_volume_and_only_its_pods_reach_it(service, gpu):
    folder = checked_in(service, gpu)
    statefulset = folder.resource("redis-statefulset.yaml")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["image"] == compose("redis")["redis"]["image"]
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    data = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == template["metadata"]["name"])
    assert container["args"][container["args"].index("--dir") + 1] == data
    url = urlsplit(folder.config["REDIS_URL"])
    redis_service = folder.resource("redis-service.yaml")
    assert url.hostname == redis_service["metadata"]["name"] == statefulset["spec"]["serviceName"]
    assert url.port in [p["port"] for p in redis_service["spec"]["ports"]]
    policy = folder.resource("redis-networkpolicy.yaml")["spec"]
    allowed = [peer["podSelector"]["matchLabels"] for peer in policy["ingress"][0]["from"]]
    for file in ("server-deployment.yaml", "worker-deployment.yaml"):
        labels = folder.resource(file)["spec"]["template"]["metadata"]["labels"]
        assert any(selector.items() <= labels.items() for selector in allowed)


@pytest.mark.parametrize("service, gpu", VARIANTS, ids=VARIANT_IDS)
def test_a_gpu_folder_asks_for_a_gpu_where_compose_reserves_one(service, gpu):
    folder = checked_in(service, gpu)
    for file in ("server-deployment.yaml", "worker-deployment.yaml"):
        pod, limits = folder.pod(file), folder.container(file)["resources"]["limits"]
        if gpu:
            assert limits["nvidia.com/gpu"] == 1
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        else:
            assert "nvidia.com/gpu" not in limits and "tolerations" not in pod and "nodeSelector" not in pod


@pytest.mark.parametrize("service, gpu", VARIANTS, ids=VARIANT_IDS)
def test_the_kustomization_lists_every_resource_file(service, gpu):
    folder = checked_in(service, gpu)
    files = {path.name for path in folder.path.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(folder.kustomization["resources"]) == sorted(files)
    assert folder.kinds() == sorted(
        ["Deployment", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PersistentVolumeClaim"]
        + ["PodDisruptionBudget", "Service", "Service", "StatefulSet"]
    )


# --- the command's options ------------------------------------------------------------------------
def test_an_external_redis_goes_to_the_secret_and_no_redis_runs(tmp_path):
    folder = generated(tmp_path, "spacy", "--redis", "redis://x:6379/0")
    assert folder.secrets["REDIS_URL"] == "redis://x:6379/0"
    assert "REDIS_URL" not in folder.config
    for file in ("server-deployment.yaml", "worker-deployment.yaml"):
        assert {"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "spacy-secrets", "key": "REDIS_URL"}}} in (
            folder.container(file)["env"]
        )
    assert "StatefulSet" not in folder.kinds() and "NetworkPolicy" not in folder.kinds()
    assert not list(folder.path.glob("redis-*"))
    assert not [name for name in folder.kustomization["resources"] if "redis" in name]


def test_the_password_of_an_external_redis_is_not_printed(tmp_path):
    url = "redis://:s3cret-pw@redis.internal:6379/0"
    code, out, err = deploy(str(REPO / "services" / "spacy"), "--redis", url, "--output", str(tmp_path / "out"))
    assert code == 0, err
    assert "s3cret-pw" not in out + err and "redis://:***@redis.internal:6379/0" in out
    assert env_file(tmp_path / "out" / "secrets.env")["REDIS_URL"] == url
    assert (tmp_path / "out" / "secrets.env").stat().st_mode & 0o077 == 0


def test_with_redis_runs_a_statefulset_with_a_volume_claim_template(tmp_path):
    folder = generated(tmp_path, "substring_matching", "--with-redis")
    statefulset = folder.resource("redis-statefulset.yaml")
    assert statefulset["kind"] == "StatefulSet"
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    assert template["spec"]["resources"]["requests"]["storage"]
    assert folder.config["REDIS_URL"] == f"redis://{folder.resource('redis-service.yaml')['metadata']['name']}:6379/0"
    assert "REDIS_URL" not in folder.secrets


def test_gpu_gives_every_model_pod_a_gpu_and_gpu_nodes(tmp_path):
    folder = generated(tmp_path, "spacy", "--gpu")  # no GPU service in compose: the same image on a GPU node
    for file in ("server-deployment.yaml", "worker-deployment.yaml"):
        pod = folder.pod(file)
        assert folder.container(file)["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu"]
        assert folder.container(file)["image"] == "label-studio-ml/spacy:latest"
    redis = folder.resource("redis-statefulset.yaml")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in redis["containers"][0]["resources"]["limits"] and "tolerations" not in redis
    assert folder.resource("server-deployment.yaml")["metadata"]["name"] == "spacy-gpu"


def test_gpu_with_a_node_selector_of_its_own(tmp_path):
    folder = generated(tmp_path, "spacy", "--gpu", "--node-selector", "pool=a100", "--node-selector", "zone=b")
    assert folder.pod("server-deployment.yaml")["nodeSelector"] == {"pool": "a100", "zone": "b"}
    none = generated(tmp_path / "none", "spacy", "--gpu", "--node-selector", "")
    assert "nodeSelector" not in none.pod("server-deployment.yaml")
    assert none.pod("server-deployment.yaml")["tolerations"]


def test_replicas_is_the_autoscaler_minimum_and_the_deployment_leaves_the_count_to_it(tmp_path):
    folder = generated(tmp_path, "spacy", "--replicas", "3")
    hpa = folder.resource("server-hpa.yaml")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    assert hpa["scaleTargetRef"]["name"] == folder.resource("server-deployment.yaml")["metadata"]["name"]
    assert "replicas" not in folder.resource("server-deployment.yaml")["spec"]  # else each apply resets the HPA
    assert folder.resource("server-pdb.yaml")["spec"]["maxUnavailable"] == 1
    capped = generated(tmp_path / "capped", "spacy", "--replicas", "3", "--max-replicas", "4")
    assert capped.resource("server-hpa.yaml")["spec"]["maxReplicas"] == 4


DIGEST = "sha256:" + "a" * 64


def test_image_namespace_and_sizes_reach_the_manifests(tmp_path):
    folder = generated(
        tmp_path,
        "spacy",
        *("--image", f"registry.example.com/team/spacy@{DIGEST}"),
        *("--namespace", "ml", "--cpu", "500m", "--memory", "4Gi", "--storage", "50Gi", "--storage-class", "nfs"),
    )
    (image,) = folder.kustomization["images"]
    assert image == {"name": "label-studio-ml/spacy", "newName": "registry.example.com/team/spacy", "digest": DIGEST}
    assert folder.kustomization["namespace"] == "ml"
    resources = folder.container("server-deployment.yaml")["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "4Gi"} and resources["limits"]["memory"] == "4Gi"
    claim = folder.resource("model-data-pvc.yaml")["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi" and claim["storageClassName"] == "nfs"


def test_running_again_keeps_what_the_user_filled_in_and_drops_what_it_no_longer_writes(tmp_path):
    folder = generated(tmp_path, "spacy")
    for file, line, filled in (
        ("secrets.env", "LABEL_STUDIO_API_KEY=\n", "LABEL_STUDIO_API_KEY=k-123\n"),
        ("config.env", "LABEL_STUDIO_URL=\n", "LABEL_STUDIO_URL=http://ls:8080\n"),
    ):
        text = (folder.path / file).read_text()
        assert line in text
        (folder.path / file).write_text(text.replace(line, filled))
    (folder.path / "mine.yaml").write_text("kind: ConfigMap\n")  # not generated: left alone
    again = generated(tmp_path, "spacy", "--redis", "redis://x:6379/0")
    assert again.secrets["LABEL_STUDIO_API_KEY"] == "k-123"
    assert again.config["LABEL_STUDIO_URL"] == "http://ls:8080"
    assert again.secrets["REDIS_URL"] == "redis://x:6379/0"  # the option decides, not the old file
    assert not list(again.path.glob("redis-*")) and (again.path / "mine.yaml").exists()


def test_a_folder_without_model_py_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "Dockerfile").write_text('FROM python:3.11-slim\nCMD ["label-studio-ml", "start", "/app"]\n')
    run = subprocess.run(
        [sys.executable, "-m", "label_studio_ml", "deploy", "k8s", str(tmp_path), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("label-studio-ml: error: ") and "has no model.py" in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, says",
    [
        (["--replicas", "0"], "--replicas must be 1 or more"),
        (["--replicas", "3", "--max-replicas", "2"], "--max-replicas (2) must be at least --replicas (3)"),
        (["--memory", "lots"], "--memory 'lots' is not a Kubernetes quantity"),
        (["--redis", "http://x:6379"], "--redis must be a URL like redis://"),
        (["--node-selector", "pool"], "--node-selector takes KEY=VALUE"),
    ],
)
def test_options_that_cannot_work_are_one_line(tmp_path, args, says):
    code, out, err = deploy(str(REPO / "services" / "spacy"), *args, "--output", str(tmp_path / "out"))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and says in err
    assert not (tmp_path / "out").exists()


def test_a_folder_running_as_root_is_refused(tmp_path):
    service = tmp_path / "services" / "rooted"
    shutil.copytree(REPO / "services" / "substring_matching", service, ignore=shutil.ignore_patterns("tests"))
    (tmp_path / "compose").mkdir()
    shutil.copy(REPO / "compose" / "substring_matching.yml", tmp_path / "compose" / "rooted.yml")
    (tmp_path / "core").mkdir()  # the user comes from the core image the service builds on
    (tmp_path / "core" / "Dockerfile").write_text((REPO / "core" / "Dockerfile").read_text().replace("useradd", "true"))
    dockerfile = service / "Dockerfile"
    dockerfile.write_text(re.sub(r"^USER app\n", "", dockerfile.read_text(), flags=re.M))
    code, _, err = deploy(str(service), "--output", str(tmp_path / "out"))
    assert code == 2 and "runs as root" in err and len(err.splitlines()) == 1
