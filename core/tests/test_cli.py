"""The ``label-studio-ml`` command as a user runs it: real processes, real ports, real files.

Servers run as subprocesses on free loopback ports and are always stopped. ``deploy gcp`` runs
against a stand-in ``gcloud`` on PATH that records its arguments. The "copy a service" tests work
on a copy of the repository tree in a temporary folder, never on the repository itself.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from label_studio_ml.cli import main as cli
from label_studio_ml.cli.scaffold import rename
from label_studio_ml.engine.loader import load_model_class
from label_studio_ml.testing.plugin import free_port

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "label_studio_ml"]
KEY = "ls-api-key-0123456789abcdef"
PREDICT = {
    "tasks": [{"id": 1, "data": {"text": "x"}}],
    "label_config": '<View><Text name="text" value="$text"/></View>',
}

ECHO_MODEL = """
from label_studio_ml import LabelStudioMLBase


class Echo(LabelStudioMLBase):
    def predict(self, tasks, context=None, **kwargs):
        return [{"result": [], "score": None} for _ in tasks]
"""


# --- helpers ------------------------------------------------------------------------------------
def http(url: str, body: dict[str, Any] | None = None, auth: tuple[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def wait(self, path: str = "/health", status: int = 200, timeout: float = 30) -> Any:
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited {self.process.returncode}: {self.stderr()[-2000:]}")
            try:
                last = http(self.url + path)
                if last[0] == status:
                    return last[1]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        pytest.fail(f"{path} never answered {status} (last: {last}); log: {self.stderr()[-2000:]}")


def pytest_run(cwd: Path, target: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """A generated project's or copied service's own tests, run as its user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASIC_AUTH", "ML_SERVER", "LABEL_STUDIO"))}
    env.pop("PORT", None)
    return {**env, "MODEL_DIR": str(tmp_path / "model_dir"), "PYTHONDONTWRITEBYTECODE": "1", **extra}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(args, port=...)`` starts ``label-studio-ml`` (or any command) in its own process group;
    every group is stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        args: list[str], port: int, command: list[str] | None = None, cwd: Path | None = None, **env: str
    ) -> Server:
        out, err = tmp_path / f"out-{len(started)}.log", tmp_path / f"err-{len(started)}.log"
        with out.open("wb") as o, err.open("wb") as e:
            process = subprocess.Popen(
                (command or CLI) + args,
                stdout=o,
                stderr=e,
                cwd=cwd,
                env=env_for(tmp_path, **env),
                start_new_session=True,
            )
        started.append(process)
        return Server(process, out, err, port)

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def invoke(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """The command in this process (no interpreter start-up): exit status, stdout, stderr."""
    out, err, previous = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd or previous)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exit_info:
                code = exit_info.code if isinstance(exit_info.code, int) else 2
    finally:
        os.chdir(previous)
    return code, out.getvalue(), err.getvalue()


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("label-studio-ml: error: "), stderr
    return lines[0]


def write_model(folder: Path, source: str = ECHO_MODEL, name: str = "model.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(source)
    return folder


# --- help -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command", [[], ["start"], ["create"], ["deploy"], ["deploy", "gcp"], ["deploy", "k8s"], ["worker"]]
)
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: label-studio-ml")
    assert len(text.splitlines()) >= 8  # a description and options, not just a usage line
    if command in (["start"], ["create"], ["deploy", "gcp"], ["deploy", "k8s"], []):
        assert "example" in text or "steps" in text


@pytest.mark.parametrize(
    "args, says",
    [
        (
            ["start"],
            "label-studio-ml start: error: the following arguments are required: TARGET; "
            "see label-studio-ml start --help",
        ),
        (["bogus"], "invalid choice: 'bogus'"),
        (["deploy", "gcp", "x", "--gcp-project-id", "p"], "required: --label-studio-host"),
    ],
)
def test_usage_errors_are_one_line_saying_where_to_look(args, says):
    code, out, err = invoke(*args)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and says in err and err.rstrip().endswith("--help")


def test_a_mistyped_option_does_not_echo_its_value():
    code, _, err = invoke(
        "deploy",
        "gcp",
        "x",
        "--gcp-project-id",
        "p",
        "--label-studio-host",
        "https://ls.example.com",
        "--label-studio-apikey",
        KEY,
    )
    assert code == 2 and "--label-studio-apikey" in err and KEY not in err


def test_version(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert re.fullmatch(r"label-studio-ml \d+\.\d+\.\d+\n", capsys.readouterr().out)


# --- start ------------------------------------------------------------------------------------
def test_start_prints_the_url_to_paste_and_serves(tmp_path, serve):
    folder = write_model(tmp_path / "echo")
    port = free_port()
    server = serve(["start", str(folder), "-p", str(port), "--host", "127.0.0.1"], port)
    assert server.wait()["status"] == "UP"
    assert f"URL: http://127.0.0.1:{port}" in server.stdout()
    status, body = http(server.url + "/predict", PREDICT)
    assert status == 200 and len(body["results"]) == 1


def test_start_on_a_taken_port_fails_with_one_line(tmp_path):
    folder = write_model(tmp_path / "echo")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("start", str(folder), "-p", str(port), "--host", "127.0.0.1", env=env_for(tmp_path))
    assert result.returncode != 0
    line = one_line_error(result.stderr)
    assert f"port {port}" in line and "already in use" in line and "-p PORT" in line


def test_start_reports_an_import_error_with_its_place(tmp_path):
    folder = write_model(tmp_path / "broken", "import numpy_that_is_not_installed\n" + ECHO_MODEL)
    result = run_cli("start", str(folder), "-p", str(free_port()), env=env_for(tmp_path))
    assert result.returncode == 2
    line = one_line_error(result.stderr)
    assert "ModuleNotFoundError" in line and "numpy_that_is_not_installed" in line and "model.py line 1" in line


def test_start_without_a_model_says_what_to_pass(tmp_path):
    result = run_cli("start", str(tmp_path / "nowhere"), env=env_for(tmp_path))
    assert result.returncode == 2
    assert "model.py" in one_line_error(result.stderr)
    two = write_model(tmp_path / "two", ECHO_MODEL + ECHO_MODEL.replace("Echo", "Other"))
    line = one_line_error(run_cli("start", str(two), env=env_for(tmp_path)).stderr)
    assert "Echo, Other" in line and ":<Class>" in line


def test_a_model_that_fails_to_load_says_why_on_health_and_in_the_log(tmp_path, serve):
    folder = write_model(
        tmp_path / "failing",
        ECHO_MODEL
        + """
    @classmethod
    def load(cls):
        raise RuntimeError("weights not found at /nowhere/weights.bin")
""",
    )
    port = free_port()
    server = serve(["start", str(folder), "-p", str(port), "--host", "127.0.0.1"], port)
    body = server.wait(status=503)
    for _ in range(50):  # /health says LOADING until the background load has failed
        if body["status"] == "FAILED":
            break
        time.sleep(0.1)
        body = server.wait(status=503)
    assert body["status"] == "FAILED"
    assert "weights not found at /nowhere/weights.bin" in body["reason"]
    assert "Echo failed to load" in server.stderr()
    assert http(server.url + "/predict", PREDICT)[0] == 503


def test_two_workers_each_load_the_model_through_the_app_factory(tmp_path, serve):
    folder = write_model(tmp_path / "echo")
    port = free_port()
    server = serve(["start", str(folder), "-p", str(port), "--host", "127.0.0.1", "--workers", "2"], port)
    server.wait()
    deadline = time.monotonic() + 30
    while server.stderr().count("Echo loaded") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.stderr().count("Echo loaded") == 2
    pids = set(re.findall(r"Started server process \[(\d+)\]", server.stderr()))
    assert len(pids) == 2 and str(server.process.pid) not in pids
    for _ in range(4):
        assert http(server.url + "/predict", PREDICT)[0] == 200


@pytest.mark.parametrize(
    "flags, env",
    [
        (["--basic-auth-user", "ls", "--basic-auth-pass", "s3cret-pass"], {}),
        # what upstream's _wsgi.py and `label-studio-ml start` read
        ([], {"ML_SERVER_BASIC_AUTH_USER": "ls", "ML_SERVER_BASIC_AUTH_PASS": "s3cret-pass"}),
    ],
)
def test_basic_auth_flags_are_enforced(tmp_path, serve, flags, env):
    folder = write_model(tmp_path / "echo")
    port = free_port()
    server = serve(["start", str(folder), "-p", str(port), "--host", "127.0.0.1", *flags], port, **env)
    server.wait()  # /health stays open for container probes
    body = PREDICT
    assert http(server.url + "/predict", body)[0] == 401
    assert http(server.url + "/predict", body, auth=("ls", "wrong"))[0] == 401
    assert http(server.url + "/predict", body, auth=("ls", "s3cret-pass"))[0] == 200
    assert "s3cret-pass" not in server.stdout() + server.stderr()


def test_basic_auth_user_without_a_password_is_refused(tmp_path):
    folder = write_model(tmp_path / "echo")
    result = run_cli("start", str(folder), "--basic-auth-user", "ls", env=env_for(tmp_path))
    assert result.returncode == 2
    assert "--basic-auth-pass" in one_line_error(result.stderr)
    result = run_cli("start", str(folder), env=env_for(tmp_path, BASIC_AUTH_PASS="only-a-password"))
    assert result.returncode == 2
    assert "BASIC_AUTH_USER" in one_line_error(result.stderr)


def test_reload_watches_the_folder_of_a_file_target(tmp_path, serve):
    folder = write_model(tmp_path / "code", name="mine.py")
    port = free_port()
    server = serve(
        ["start", f"{folder / 'mine.py'}:Echo", "-p", str(port), "--host", "127.0.0.1", "--reload"], port, cwd=tmp_path
    )
    server.wait()
    assert f"Will watch for changes in these directories: ['{folder}']" in server.stderr()


# --- create: a standalone project -------------------------------------------------------------
def test_create_makes_a_project_that_serves_and_passes_its_tests(tmp_path, serve):
    result = run_cli("create", "my_backend", cwd=tmp_path, env=env_for(tmp_path))
    assert result.returncode == 0, result.stderr
    project = tmp_path / "my_backend"
    listed = {
        "Dockerfile",
        "docker-compose.yml",
        "model.py",
        "_wsgi.py",
        "README.md",
        "requirements.txt",
        "test_api.py",
    }
    assert listed <= {p.name for p in project.iterdir()}
    assert "label-studio-ml start" in result.stdout

    tests = pytest_run(tmp_path, "my_backend/test_api.py", env_for(tmp_path))
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout

    port = free_port()
    server = serve(["start", "my_backend", "-p", str(port), "--host", "127.0.0.1"], port, cwd=tmp_path)
    assert server.wait() == {"status": "UP", "model_class": "MyBackend"}
    config = (
        '<View><Text name="text" value="$text"/><Choices name="c" toName="text">'
        '<Choice value="Spam"/><Choice value="Ham"/></Choices></View>'
    )
    assert http(server.url + "/setup", {"project": "3.1", "schema": config})[0] == 200
    status, body = http(server.url + "/predict", {"project": "3.1", "tasks": [{"id": 1, "data": {"text": "spam!"}}]})
    assert status == 200
    assert body["results"][0]["result"][0]["value"] == {"choices": ["Spam"]}


def test_wsgi_is_three_lines_that_hand_the_class_to_core(tmp_path, serve):
    assert invoke("create", "wsgi_demo", cwd=tmp_path)[0] == 0
    project = tmp_path / "wsgi_demo"
    code = [
        line for line in (project / "_wsgi.py").read_text().splitlines() if line.strip() and not line.startswith('"""')
    ]
    assert code == [
        "from label_studio_ml.cli.start import entry_point",
        "from model import WsgiDemo",
        "app = entry_point(WsgiDemo, __name__)",
    ]
    imported = subprocess.run(
        [sys.executable, "-c", "import _wsgi; print(type(_wsgi.app).__name__)"],
        capture_output=True,
        text=True,
        cwd=project,
        env=env_for(tmp_path),
    )
    assert imported.stdout.strip() == "Starlette", imported.stderr
    port = free_port()  # run as a script it takes the flags of `start`
    server = serve(["_wsgi.py", "-p", str(port), "--host", "127.0.0.1"], port, command=[sys.executable], cwd=project)
    assert server.wait()["model_class"] == "WsgiDemo"


def test_create_refuses_to_overwrite_without_force(tmp_path):
    assert invoke("create", "mine", cwd=tmp_path)[0] == 0
    model = tmp_path / "mine" / "model.py"
    model.write_text("# my edits\n")
    code, _, err = invoke("create", "mine", cwd=tmp_path)
    assert code == 2
    assert "--force" in one_line_error(err)
    assert model.read_text() == "# my edits\n"
    assert invoke("create", "mine", "--force", cwd=tmp_path)[0] == 0
    assert "class Mine(LabelStudioMLBase)" in model.read_text()


@pytest.mark.parametrize("name", ["My_Model", "1model", "a/b", "with space"])
def test_create_refuses_names_that_cannot_name_an_image(tmp_path, name):
    code, _, err = invoke("create", name, cwd=tmp_path)
    assert code == 2
    assert "lowercase" in one_line_error(err)
    assert list(tmp_path.iterdir()) == []


def test_create_from_a_file_brings_its_requirements_and_readme(tmp_path):
    user = write_model(tmp_path / "code", name="sentiment.py")
    (user / "requirements.txt").write_text("label-studio-ml @ git+https://example.com/x.git\nrequests==2.32.3\n")
    (user / "README.md").write_text("# Sentiment, my way\n")
    code, _, err = invoke("create", "senti", "--from", str(user / "sentiment.py"), "--root-dir", str(tmp_path / "out"))
    assert code == 0, err
    project = tmp_path / "out" / "senti"
    assert (project / "model.py").read_text() == ECHO_MODEL
    assert (project / "README.md").read_text() == "# Sentiment, my way\n"
    requirements = (project / "requirements.txt").read_text().splitlines()
    assert requirements[0].startswith("# label-studio-ml @ git+")  # the Dockerfile installs our SDK instead
    assert requirements[1] == "requests==2.32.3"
    assert "from model import Echo" in (project / "_wsgi.py").read_text()
    assert load_model_class(project).__name__ == "Echo"


def test_create_from_a_file_with_several_classes_names_them_and_serves_the_picked_one(tmp_path, serve):
    source = ECHO_MODEL + "\n\nclass Other(Echo):\n    pass\n"
    user = write_model(tmp_path / "code", source, name="models.py")
    code, _, err = invoke("create", "picked", "--from", str(user / "models.py"), cwd=tmp_path)
    assert code == 2
    line = one_line_error(err)
    assert "Echo, Other" in line and f"--from {user / 'models.py'}:<Class>" in line
    assert not (tmp_path / "picked").exists()

    assert invoke("create", "picked", "--from", f"{user / 'models.py'}:Other", cwd=tmp_path)[0] == 0
    port = free_port()
    server = serve(["start", "picked", "-p", str(port), "--host", "127.0.0.1"], port, cwd=tmp_path)
    assert server.wait()["model_class"] == "Other"

    assert "Echo, Other" in one_line_error(
        invoke("create", "nope", "--from", f"{user / 'models.py'}:Missing", cwd=tmp_path)[2]
    )


def test_create_from_a_service_folder_makes_a_standalone_project(tmp_path):
    code, _, err = invoke("create", "keywords", "--from", str(REPO / "services" / "substring_matching"), cwd=tmp_path)
    assert code == 0, err
    project = tmp_path / "keywords"
    assert 'service_name = "keywords"' in (project / "model.py").read_text()
    assert (project / "tests" / "test_model.py").is_file()
    dockerfile = (project / "Dockerfile").read_text()
    assert "services/" not in dockerfile and "COPY core" not in dockerfile  # builds from its own folder
    tests = pytest_run(tmp_path, "keywords", env_for(tmp_path))
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert re.search(r"\b6 passed, 1 skipped\b", tests.stdout), tests.stdout


def test_the_sdk_wheel_installs_with_its_templates_and_command(tmp_path):
    assert invoke("create", "wheel_demo", cwd=tmp_path)[0] == 0
    wheels = list((tmp_path / "wheel_demo" / "wheels").glob("*.whl"))
    assert [w.name for w in wheels] == ["label_studio_ml-2.1.0-py3-none-any.whl"]
    spec = f"./wheels/{wheels[0].name}"
    assert f"ARG LABEL_STUDIO_ML_SPEC={spec}" in (tmp_path / "wheel_demo" / "Dockerfile").read_text()
    assert f"LABEL_STUDIO_ML_SPEC:-{spec}" in (tmp_path / "wheel_demo" / "docker-compose.yml").read_text()
    with zipfile.ZipFile(wheels[0]) as archive:
        names = archive.namelist()
    assert "label_studio_ml/cli/templates/Dockerfile.tmpl" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheels[0]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr
    assert (target / "label_studio_ml" / "cli" / "main.py").read_bytes() == Path(cli.__file__).read_bytes()
    assert (
        "label-studio-ml" in (target / "bin" / "label-studio-ml").read_text()
        or "label_studio_ml.cli.main" in (target / "bin" / "label-studio-ml").read_text()
    )


def test_the_generated_container_files_pass_the_repository_lint(tmp_path):
    tools = [
        shutil.which(t, path=f"{tools_bin() or ''}{os.pathsep}{os.environ.get('PATH', '')}")
        for t in ("hadolint", "docker-compose")
    ]
    if None in tools:
        pytest.skip("hadolint and docker-compose are not installed here (make lint installs them)")
    assert invoke("create", "lint_demo", cwd=tmp_path)[0] == 0
    project = tmp_path / "lint_demo"
    hadolint = subprocess.run(
        [tools[0], "--config", str(REPO / ".hadolint.yaml"), "Dockerfile"], cwd=project, capture_output=True, text=True
    )
    assert hadolint.returncode == 0, hadolint.stdout
    compose = subprocess.run(
        [tools[1], "-f", "docker-compose.yml", "config", "--quiet"], cwd=project, capture_output=True, text=True
    )
    assert compose.returncode == 0, compose.stderr
    dockerfile = (project / "Dockerfile").read_text()
    for marker in (
        "ARG BASE_IMAGE=",
        "FROM ${BASE_IMAGE} AS base",
        " AS test",
        " AS production",
        "USER app",
        "EXPOSE 9090",
        "HEALTHCHECK",
        'CMD ["label-studio-ml", "start", "/app"]',
    ):
        assert marker in dockerfile


@pytest.mark.skipif(
    not os.environ.get("LSML_DOCKER_BASE_IMAGE"),
    reason="set LSML_DOCKER_BASE_IMAGE (a python:3.11-slim or stand-in) to build the image",
)
def test_the_generated_dockerfile_builds_and_serves(tmp_path):
    assert invoke("create", "docker_demo", cwd=tmp_path)[0] == 0
    base = ["--network", "host", "--build-arg", f"BASE_IMAGE={os.environ['LSML_DOCKER_BASE_IMAGE']}"]
    for target, tag in (("test", "lsml-docker-demo:test"), ("production", "lsml-docker-demo:latest")):
        build = subprocess.run(
            ["docker", "build", *base, "--target", target, "-t", tag, "."],
            capture_output=True,
            text=True,
            cwd=tmp_path / "docker_demo",
            timeout=900,
        )
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    port = free_port()
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "--network", "host", "-e", f"PORT={port}", "lsml-docker-demo:latest"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                status, body = http(f"http://127.0.0.1:{port}/health")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert body == {"status": "UP", "model_class": "DockerDemo"}
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        subprocess.run(["docker", "rmi", "lsml-docker-demo:latest", "lsml-docker-demo:test"], capture_output=True)


# --- a service folder as a starter, in a copy of the repository -------------------------------
@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    skip = shutil.ignore_patterns(".tox", ".venv*", "__pycache__", "*.egg-info", ".pytest_cache", "model_dir")
    for name in ("core", "services", "compose", "tools"):
        shutil.copytree(REPO / name, root / name, ignore=skip)
    for name in ("Makefile", "tox.ini", "toxfile.py", ".hadolint.yaml", ".dockerignore", "ruff.toml"):
        shutil.copy2(REPO / name, root / name)
    return root


def tools_bin() -> str | None:
    """Where tox, hadolint and docker-compose live: the Makefile's .venv-tools, else PATH."""
    if (REPO / ".venv-tools" / "bin" / "tox").exists():
        return str(REPO / ".venv-tools" / "bin")
    tox = shutil.which("tox")
    return str(Path(tox).parent) if tox else None


def discovered(root: Path) -> list[str]:
    result = subprocess.run(["make", "-s", "services"], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def lint_problems(root: Path, service: str) -> list[str]:
    env = dict(os.environ)
    if tools_bin():
        env["PATH"] = f"{tools_bin()}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [sys.executable, "tools/lint_containers.py"], capture_output=True, text=True, cwd=root, env=env, timeout=300
    )
    assert "checked" in result.stdout, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if service in line]


def service_tests(root: Path, service: str) -> subprocess.CompletedProcess[str]:
    """The service's tests as tox runs them: from its folder, `pytest tests`."""
    folder = root / "services" / service
    return pytest_run(folder, "tests", {**os.environ, "PYTHONPATH": str(folder)}, timeout=180)


def test_cp_r_of_a_service_is_picked_up_and_lint_says_what_to_rename(repo_copy):
    shutil.copytree(repo_copy / "services" / "substring_matching", repo_copy / "services" / "my_model")
    assert "my_model" in discovered(repo_copy)
    assert service_tests(repo_copy, "my_model").returncode == 0
    problems = lint_problems(repo_copy, "my_model")
    assert (
        "services/my_model/Dockerfile: names services/substring_matching/ (copied from it?): "
        "change it to services/my_model/"
    ) in problems
    assert any(p.startswith("compose/my_model.yml is missing") for p in problems), problems

    # the edits the README lists for `cp -r`, and lint is content
    dockerfile = repo_copy / "services" / "my_model" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("services/substring_matching/", "services/my_model/"))
    compose = (repo_copy / "compose" / "substring_matching.yml").read_text().replace("substring_matching", "my_model")
    (repo_copy / "compose" / "my_model.yml").write_text(compose)
    assert lint_problems(repo_copy, "my_model") == []


def test_create_from_a_service_in_services_makes_a_service_with_no_other_edit(repo_copy):
    code, _, err = invoke(
        "create", "my_model", "--from", "services/substring_matching", "--root-dir", "services", cwd=repo_copy
    )
    assert code == 0, err
    service = repo_copy / "services" / "my_model"
    assert "my_model" in discovered(repo_copy)
    assert lint_problems(repo_copy, "my_model") == []
    assert not (service / "_wsgi.py").exists() and not (service / "docker-compose.yml").exists()
    dockerfile = (service / "Dockerfile").read_text()
    assert "COPY services/my_model/ /app/" in dockerfile and "substring_matching" not in dockerfile
    compose = (repo_copy / "compose" / "my_model.yml").read_text()
    assert "\n  my_model:\n" in compose and "dockerfile: services/my_model/Dockerfile" in compose
    assert "SUBSTRING_WHOLE_WORD" in compose  # the service's own settings come along
    assert 'service_name = "my_model"' in (service / "model.py").read_text()
    tests = service_tests(repo_copy, "my_model")
    assert tests.returncode == 0 and "5 passed" in tests.stdout, tests.stdout + tests.stderr
    again = invoke(
        "create", "my_model", "--from", "services/substring_matching", "--root-dir", "services", cwd=repo_copy
    )
    assert "--force" in one_line_error(again[2])


def test_a_copied_service_with_system_packages_installs_them_from_its_apt_lists(tmp_path, repo_copy):
    code, out, err = invoke("create", "ocr", "--from", str(REPO / "services" / "tesseract"), cwd=tmp_path)
    assert code == 0, err
    assert "Note:" not in out  # nothing to carry over by hand: the apt lists came along
    dockerfile = (tmp_path / "ocr" / "Dockerfile").read_text()
    base, test_stage = dockerfile.split("FROM base AS test")
    assert "COPY apt.txt /tmp/apt.txt" in base and "xargs -a /tmp/apt.txt apt-get install" in base
    assert "COPY apt-test.txt /tmp/apt-test.txt" in test_stage.split("FROM base AS production")[0]
    code, _, err = invoke("create", "ocr2", "--from", "services/tesseract", "--root-dir", "services", cwd=repo_copy)
    assert code == 0, err
    assert lint_problems(repo_copy, "ocr2") == []  # hadolint, and installs exactly services/ocr2/apt*.txt
    assert "COPY services/ocr2/apt.txt /tmp/apt.txt" in (repo_copy / "services" / "ocr2" / "Dockerfile").read_text()


def test_create_from_the_template_in_services_makes_a_service(repo_copy):
    code, out, err = invoke("create", "new_model", "--root-dir", str(repo_copy / "services"))
    assert code == 0, err
    assert "make run MODEL=new_model" in out
    assert "new_model" in discovered(repo_copy)
    assert lint_problems(repo_copy, "new_model") == []
    tests = service_tests(repo_copy, "new_model")
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout + tests.stderr


@pytest.mark.skipif(tools_bin() is None, reason="tox is not installed here (make test installs it in .venv-tools)")
def test_tox_discovers_a_copied_service(repo_copy):
    shutil.copytree(repo_copy / "services" / "substring_matching", repo_copy / "services" / "my_model")
    result = subprocess.run(
        [str(Path(tools_bin() or "") / "tox"), "list", "--no-desc"],
        capture_output=True,
        text=True,
        cwd=repo_copy,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "my_model" in result.stdout.split()


def test_rename_touches_names_not_imports():
    text = (
        "import spacy\nCOPY services/spacy/ /app/\nservice_name = 'spacy'\n  spacy:\n"
        "make run MODEL=spacy\nimage: label-studio-ml/spacy:latest\nspacy.load('x')\n"
    )
    assert rename(text, "spacy", "my_ner") == (
        "import spacy\nCOPY services/my_ner/ /app/\nservice_name = 'my_ner'\n  my_ner:\n"
        "make run MODEL=my_ner\nimage: label-studio-ml/my_ner:latest\nspacy.load('x')\n"
    )


# --- deploy gcp -------------------------------------------------------------------------------
FAKE_GCLOUD = '''#!{python}
"""Stand-in gcloud: records its arguments (and the env-vars file), answers like gcloud."""
import json, os, sys
args = sys.argv[1:]
record = {{"args": args}}
if "--env-vars-file" in args:
    record["env_file"] = open(args[args.index("--env-vars-file") + 1]).read()
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
if args[:2] == ["auth", "list"]:
    print(os.environ.get("FAKE_GCLOUD_ACCOUNT", ""))
elif args[:2] == ["run", "deploy"]:
    print("Building using Dockerfile and deploying container to Cloud Run service [%s]" % args[2])
    print("env file was: " + record.get("env_file", "").replace("\\n", " "))  # a chatty tool leaks what it got
    print("Service URL: https://%s-abc123-uc.a.run.app" % args[2])
    sys.exit(int(os.environ.get("FAKE_GCLOUD_EXIT", "0")))
'''


@pytest.fixture
def gcloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable))
    (bin_dir / "gcloud").chmod(0o755)
    log = tmp_path / "gcloud.jsonl"
    monkeypatch.setenv("PATH", str(bin_dir))  # no other gcloud
    monkeypatch.setenv("FAKE_GCLOUD_LOG", str(log))
    monkeypatch.setenv("FAKE_GCLOUD_ACCOUNT", "me@example.com")
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    return log


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def deploy_args(folder: Path, *extra: str) -> list[str]:
    return [
        "deploy",
        "gcp",
        str(folder),
        "--gcp-project-id",
        "my-proj",
        "--gcp-region",
        "europe-west1",
        "--label-studio-host",
        "https://ls.example.com/",
        "--label-studio-api-key",
        KEY,
        *extra,
    ]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert invoke("create", "my_backend", cwd=tmp_path)[0] == 0
    return tmp_path / "my_backend"


def test_deploy_runs_gcloud_run_deploy_with_the_env_names_core_reads(project, gcloud, capsys):
    assert cli.main(deploy_args(project)) == 0
    out = capsys.readouterr()
    assert KEY not in out.out + out.err
    assert "Service URL: https://my-backend-abc123-uc.a.run.app" in out.out
    auth, deploy = calls(gcloud)
    assert auth["args"] == ["auth", "list", "--filter=status:ACTIVE", "--format=value(account)"]
    args = deploy["args"]
    assert args[:5] == ["run", "deploy", "my-backend", "--source", str(project)]
    assert args[args.index("--project") + 1] == "my-proj" and args[args.index("--region") + 1] == "europe-west1"
    assert KEY not in " ".join(args)  # not on the command line either, where `ps` shows it
    import yaml

    assert yaml.safe_load(deploy["env_file"]) == {
        "LABEL_STUDIO_URL": "https://ls.example.com",
        "LABEL_STUDIO_API_KEY": KEY,
    }
    assert not Path(args[args.index("--env-vars-file") + 1]).exists()  # deleted afterwards


def test_deploy_takes_the_key_from_the_environment_and_basic_auth(project, gcloud, capsys, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", KEY)
    args = [
        a
        for a in deploy_args(project, "--basic-auth-user", "ls", "--basic-auth-pass", "pass-9876")
        if a not in ("--label-studio-api-key", KEY)
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr()
    assert KEY not in out.out + out.err and "pass-9876" not in out.out + out.err
    import yaml

    env = yaml.safe_load(calls(gcloud)[-1]["env_file"])
    assert env["LABEL_STUDIO_API_KEY"] == KEY and env["BASIC_AUTH_PASS"] == "pass-9876"


def test_deploy_failure_is_one_line_without_the_key(project, gcloud, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_GCLOUD_EXIT", "1")
    assert cli.main(deploy_args(project)) == 2
    out = capsys.readouterr()
    assert KEY not in out.out + out.err
    assert "gcloud run deploy failed (exit 1)" in one_line_error(out.err)


def test_deploy_needs_gcloud_installed(project, gcloud, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli.main(deploy_args(project)) == 2
    assert "gcloud is not installed" in one_line_error(capsys.readouterr().err)


def test_deploy_needs_gcloud_logged_in(project, gcloud, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_GCLOUD_ACCOUNT", "")
    assert cli.main(deploy_args(project)) == 2
    assert "gcloud auth login" in one_line_error(capsys.readouterr().err)
    assert [c["args"][:2] for c in calls(gcloud)] == [["auth", "list"]]  # nothing deployed


@pytest.mark.parametrize(
    "change, message",
    [
        (["--label-studio-host", "http://localhost:8080"], "local to this machine"),
        (["--label-studio-host", "ls.example.com"], "must be a URL"),
        (["--basic-auth-user", "ls"], "go together"),
    ],
)
def test_deploy_refuses_what_cannot_work(project, gcloud, capsys, change, message):
    args = deploy_args(project)
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += change
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in one_line_error(err) and KEY not in err
    assert not any(c["args"][:2] == ["run", "deploy"] for c in calls(gcloud))


def test_deploy_refuses_a_service_that_builds_from_the_repository_root(gcloud, capsys):
    assert cli.main(deploy_args(REPO / "services" / "substring_matching")) == 2
    assert "label-studio-ml create NAME --from" in one_line_error(capsys.readouterr().err)


REPO = Path(__file__).resolve().parents[2]


def make_dry_run(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "REDIS_URL", "MODEL"))}
    done = subprocess.run(["make", "-n", "-C", str(REPO), *args], capture_output=True, text=True, env=env, timeout=30)
    return done.stdout + done.stderr


def test_make_run_and_worker_install_redis_when_redis_url_is_set() -> None:
    """Issue 21 #4: `REDIS_URL=... make worker` said "No module named 'rq'", `make run` "No module named 'redis'"."""
    assert "core[redis]" in make_dry_run("worker", "MODEL=simple_text_classifier", "REDIS_URL=redis://127.0.0.1:1/0")
    assert "core[redis]" in make_dry_run("run", "MODEL=simple_text_classifier", "REDIS_URL=redis://127.0.0.1:1/0")


def test_make_run_puts_the_default_model_files_in_place_as_the_image_does() -> None:
    """Issue 21 #8: `make run MODEL=spacy` served nothing: the image downloads the pipeline, `make run` did not.
    Both now run services/spacy/model_files.sh."""
    assert "services/spacy/model_files.sh" in make_dry_run("run", "MODEL=spacy")
    assert "/app/model_files.sh" in (REPO / "services" / "spacy" / "Dockerfile").read_text()


def test_model_files_script_skips_an_installed_pipeline_and_blank_ones(tmp_path: Path) -> None:
    script = REPO / "services" / "spacy" / "model_files.sh"
    for model in ("json", "blank:en"):  # importable or blank: nothing to download, no spacy needed
        env = {**os.environ, "PYTHON": sys.executable, "SPACY_MODEL": model}
        assert subprocess.run(["sh", str(script)], env=env, capture_output=True, timeout=30).returncode == 0


def test_server_worker_and_preannotate_share_one_default_model_dir(monkeypatch: Any, tmp_path: Path) -> None:
    """Issue 21 #9: without MODEL_DIR, preannotate used ./state while `make run` served model_dir/<model>."""
    from label_studio_ml.cli import main as cli

    monkeypatch.delenv("MODEL_DIR", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["worker", str(REPO / "services" / "substring_matching")]) != 0  # no REDIS_URL: stops at once
    assert os.environ["MODEL_DIR"] == str(Path("model_dir") / "substring_matching")
    assert cli.service_name("services/spacy") == "spacy" == cli.service_name("x/spacy/model.py:Model")
