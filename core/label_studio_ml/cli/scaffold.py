"""``label-studio-ml create``: a new backend from the templates, a model file or a service folder.

Two layouts. A standalone project (the default) builds alone: its Dockerfile installs the SDK from
the build arg ``LABEL_STUDIO_ML_SPEC``, by default a wheel of the running SDK written to
``wheels/``. In this repository's ``services/`` folder, the result is a service like the others:
its Dockerfile builds from the repository root with core from source, its compose file is
``compose/<name>.yml`` and its tests are in ``tests/``.
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.loader import model_file_of, split_target
from .console import Subcommands, add_subcommand, fail

TEMPLATES = Path(__file__).parent / "templates"
NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")
SKIP = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".tox", ".venv*", "*.egg-info", ".git", "model_dir"
)
SIBLINGS = ("requirements.txt", "requirements-test.txt", "README.md")
SDK_LINE = re.compile(r"^\s*label[-_.]studio[-_.]ml\b", re.IGNORECASE)
TEMPLATE_CONFIG = """Paste into *Project → Settings → Labeling Interface → Code*:

```xml
<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
  </Choices>
</View>
```"""
FROM_CONFIG = "Use the label config your model expects (`setup()` in `model.py` reads it)."
# a project's Debian packages come from its apt.txt (to run) and apt-test.txt (tests), as in this repository
APT_LISTS = (("apt_run", "apt.txt"), ("apt_test", "apt-test.txt"))
APT_INSTALL = """COPY {src}{name} /tmp/{name}
RUN apt-get update \\
    && sed -i 's/#.*//' /tmp/{name} && xargs -a /tmp/{name} apt-get install -y --no-install-recommends \\
    && rm -rf /var/lib/apt/lists/*
"""
# in this repository the core image has the same steps as a command (core/image/apt-install); the test
# list comes with the service's folder, copied before the test stage
APT_INSTALL_ON_CORE = {
    "apt.txt": "COPY {src}apt.txt /tmp/apt.txt\nRUN apt-install /tmp/apt.txt\n",
    "apt-test.txt": "RUN apt-install /app/apt-test.txt\n",
}


HELP = """make a new backend project (model.py, Dockerfile, compose, tests)

Make NAME/ with model.py, _wsgi.py, requirements.txt, requirements-test.txt,
test_api.py, README.md, Dockerfile, docker-compose.yml and wheels/ (the SDK the image
installs). Refuses to overwrite an existing NAME/ without --force.
In this repository's services/ folder it makes a service instead: a Dockerfile that
builds from the repository root, compose/NAME.yml and tests/.

examples:
  label-studio-ml create my_backend                       # a starter text classifier
  label-studio-ml create my_backend --from ~/code/my_model.py:MyModel
  label-studio-ml create my_model --from services/substring_matching --root-dir services
"""


class ScaffoldError(Exception):
    pass


@dataclass
class Source:
    """What the project starts from: the template (path None), a model file, or a service folder."""

    path: Path | None = None
    class_name: str = ""
    model_file: Path | None = None
    several: bool = False  # the file defines more model classes than the one picked

    @property
    def is_folder(self) -> bool:
        return self.path is not None and self.path.is_dir()


@dataclass
class Project:
    name: str
    folder: Path
    repo: Path | None  # the repository root when the project is a service of this repository
    written: list[Path] = field(default_factory=list)
    replaced_dockerfile: bool = False  # the source's Dockerfile installed system packages and was rewritten


# --- finding the model class ------------------------------------------------------------------
def model_classes(path: Path) -> tuple[list[str], list[str]]:
    """(model classes, all top-level classes) of a file, read without importing it: its libraries
    may not be installed yet. A model class derives from LabelStudioMLBase, directly or through
    another model class of the file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise ScaffoldError(f"cannot parse {path}: {exc.msg} (line {exc.lineno})") from None
    found: list[str] = []
    classes: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes.append(node.name)
            bases = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases}
            if "LabelStudioMLBase" in bases or bases & set(found):
                found.append(node.name)
    return found, classes


def resolve_source(spec: str | None) -> Source:
    if not spec:
        return Source()
    text, class_name = split_target(spec)
    path = Path(text)
    model_file = model_file_of(path)
    if not (model_file.is_file() and model_file.suffix == ".py"):
        problem = f"{path} has no model.py" if path.is_dir() else f"no model file at {text}"
        raise ScaffoldError(f"{problem}: --from takes FILE.py[:Class] or a service folder")
    found, classes = model_classes(model_file)
    if class_name:
        if class_name not in classes:
            raise ScaffoldError(
                f"{model_file} has no class {class_name!r}; model classes there: {', '.join(found) or 'none'}"
            )
    elif len(found) == 1:
        class_name = found[0]
    elif not found:
        raise ScaffoldError(
            f"{model_file} defines no LabelStudioMLBase subclass; name the class with --from {text}:<Class>"
        )
    else:
        raise ScaffoldError(
            f"{model_file} defines several model classes ({', '.join(found)}); pick one with --from {text}:<Class>"
        )
    several = len(set(found) | {class_name}) > 1
    if several and path.is_dir():
        raise ScaffoldError(
            f"{model_file} defines several model classes ({', '.join(found)}) and a service "
            f"serves one: copy the file instead, --from {model_file}:{class_name}"
        )
    return Source(path=path, class_name=class_name, model_file=model_file, several=several)


# --- the target -------------------------------------------------------------------------------
def repository_of(root: Path) -> Path | None:
    """The repository root when ``root`` is this repository's ``services/`` folder."""
    root = root.resolve()
    if (
        root.name == "services"
        and (root.parent / "core" / "pyproject.toml").is_file()
        and (root.parent / "compose").is_dir()
    ):
        return root.parent
    return None


def class_name_for(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]+", name) if part) or "NewModel"


def render(template: str, **values: str) -> str:
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def write(project: Project, relative: str, content: str | bytes, repo_relative: bool = False) -> None:
    target = (project.repo if repo_relative and project.repo else project.folder) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    project.written.append(target)


def rename(text: str, old: str, new: str) -> str:
    """Rewrite the places a copied service names its folder (paths, compose service, image, MODEL=,
    service_name) and nothing else: a folder named like a library it imports must keep its imports."""
    o = re.escape(old)
    rules = [
        (rf"services/{o}(?![\w-])", f"services/{new}"),
        (rf"compose/{o}\.yml", f"compose/{new}.yml"),
        (rf"label-studio-ml/{o}:", f"label-studio-ml/{new}:"),
        (rf"(MODEL=|\.venv-|run -e ){o}(?![\w-])", rf"\g<1>{new}"),
        (rf"(service_name\s*[:=][^\n]*?[\"']){o}([\"'])", rf"\g<1>{new}\g<2>"),
        (rf"(?m)^  {o}:$", f"  {new}:"),
    ]
    for pattern, replacement in rules:
        text = re.sub(pattern, replacement, text)
    return text


def without_sdk_pin(requirements: str) -> str:
    """Comment out a label-studio-ml line: the Dockerfile installs the SDK (another one would win)."""
    return (
        "\n".join(
            f"# {line}  # installed by the Dockerfile (LABEL_STUDIO_ML_SPEC)" if SDK_LINE.match(line) else line
            for line in requirements.splitlines()
        )
        + "\n"
    )


# --- the SDK wheel for standalone images -------------------------------------------------------
def sdk_wheel(dest: Path) -> Path:
    """A wheel of the running label-studio-ml, built from its installed files (no build tools, no
    network), so that a standalone project's image installs the same SDK the project was made with."""
    from importlib import metadata  # here: importing it costs `label-studio-ml start` ~30 ms

    # the installed dist-info (an editable install's source folder may also hold a stale egg-info)
    found = list(metadata.distributions(name="label-studio-ml"))
    dist = next((d for d in found if d.read_text("METADATA")), found[0])
    package = Path(__file__).parents[1]
    stem = f"label_studio_ml-{dist.version}"
    wheel = dest / f"{stem}-py3-none-any.whl"
    dest.mkdir(parents=True, exist_ok=True)
    record: list[str] = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible: same bytes, same layer
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")

        for path in sorted(package.rglob("*")):
            relative = path.relative_to(package)
            if (
                path.is_file()
                and path.suffix != ".pyc"
                and not any(p.startswith((".", "__pycache__")) for p in relative.parts)
            ):
                add(f"label_studio_ml/{relative.as_posix()}", path.read_bytes())
        info = f"{stem}.dist-info"
        add(f"{info}/METADATA", (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").encode())
        add(
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: label-studio-ml create\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        add(f"{info}/entry_points.txt", (dist.read_text("entry_points.txt") or "").encode())
        record.append(f"{info}/RECORD,,")
        archive.writestr(zipfile.ZipInfo(f"{info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    return wheel


# --- create -----------------------------------------------------------------------------------
def create(name: str, source_spec: str | None = None, root_dir: str | Path = ".", force: bool = False) -> Project:
    if not NAME.match(name):
        raise ScaffoldError(
            f"invalid NAME {name!r}: use lowercase letters, digits, '_' or '-', starting with a "
            f"letter (it names the folder, the image and the compose service)"
        )
    root = Path(root_dir)
    if root.exists() and not root.is_dir():
        raise ScaffoldError(f"--root-dir {root} is a file, not a folder")
    source = resolve_source(source_spec)
    project = Project(name=name, folder=root / name, repo=repository_of(root))
    compose = project.repo / "compose" / f"{name}.yml" if project.repo else None
    taken = [p for p in (project.folder, compose) if p is not None and p.exists() and (p.is_file() or any(p.iterdir()))]
    if taken and not force:
        raise ScaffoldError(f"{taken[0]} already exists; pass --force to overwrite it")
    if source.path is not None and project.folder.resolve() == source.path.resolve():
        raise ScaffoldError(f"--from {source.path} is the folder to create; pick another NAME or --root-dir")
    project.folder.mkdir(parents=True, exist_ok=True)
    values = {
        "name": name,
        "class_name": source.class_name or class_name_for(name),
        "label_config_section": TEMPLATE_CONFIG if source.path is None else FROM_CONFIG,
    }
    copy_source(project, source, values)
    for relative in ("requirements.txt", "requirements-test.txt"):
        if not provided(project, source, force, relative):
            write(project, relative, render(f"{relative}.tmpl", **values))
    if project.repo is not None:
        service_layout(project, source, force, values)
    else:
        standalone_layout(project, source, force, values)
    return project


def provided(project: Project, source: Source, force: bool, relative: str) -> bool:
    """The source brought this file, or it exists and --force rewrites only what create makes."""
    return (project.folder / relative).exists() and (source.path is not None or not force)


def copy_source(project: Project, source: Source, values: dict[str, str]) -> None:
    if source.path is None or source.model_file is None:
        write(project, "model.py", render("model.py.tmpl", **values))
    elif source.is_folder:
        old = source.path.resolve().name
        shutil.copytree(source.path, project.folder, ignore=SKIP, dirs_exist_ok=True)
        for path in sorted(project.folder.rglob("*")):
            if path.is_file():
                try:
                    text = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    continue
                renamed = rename(text, old, project.name)
                if path.name.startswith("requirements") and path.suffix == ".txt":
                    renamed = without_sdk_pin(renamed)
                if renamed != text:
                    path.write_text(renamed, encoding="utf-8")
                project.written.append(path)
    else:
        kept = model_file_name(source)
        write(project, kept, source.model_file.read_text(encoding="utf-8"))
        if source.several:  # model.py serves the picked class: the loader finds exactly one model class there
            cls = values["class_name"]
            write(
                project,
                "model.py",
                f'"""Serves {cls} of {kept}, which defines several model classes."""\n\n'
                f"from {kept[:-3]} import {cls} as _Picked\n\n\n"
                f"class {cls}(_Picked):\n    pass\n",
            )
        for sibling in SIBLINGS:
            if (source.model_file.parent / sibling).is_file():
                text = (source.model_file.parent / sibling).read_text(encoding="utf-8")
                write(project, sibling, without_sdk_pin(text) if sibling.startswith("requirements") else text)


def model_file_name(source: Source) -> str:
    """The user's file keeps its (importable) name when model.py must pick one of its classes."""
    assert source.model_file is not None
    if not source.several:
        return "model.py"
    stem = re.sub(r"\W", "_", source.model_file.stem)
    return f"{stem if stem.isidentifier() and stem != 'model' else 'user_' + stem}.py"


def copied_dockerfile(project: Project, source: Source) -> str:
    path = project.folder / "Dockerfile"
    return path.read_text(encoding="utf-8") if source.is_folder and path.is_file() else ""


def apt_steps(project: Project, src: str, on_core: bool = False) -> dict[str, str]:
    """Dockerfile steps installing the project's apt lists (``src``: their folder in the build context;
    ``on_core``: the Dockerfile builds on this repository's core image)."""
    return {
        key: (APT_INSTALL_ON_CORE[name] if on_core else APT_INSTALL).format(src=src, name=name)
        if (project.folder / name).is_file()
        else ""
        for key, name in APT_LISTS
    }


def installs_unlisted_packages(project: Project, source: Source) -> bool:
    """The copied Dockerfile installs Debian packages that no apt list carries into the template."""
    return "apt-get" in copied_dockerfile(project, source) and not any(
        (project.folder / name).is_file() for _, name in APT_LISTS
    )


def service_layout(project: Project, source: Source, force: bool, values: dict[str, str]) -> None:
    """A service of this repository: Dockerfile from the repository root, compose/NAME.yml, tests/."""
    assert project.repo is not None
    if not provided(project, source, force, "README.md"):
        write(project, "README.md", render("README.repo.md.tmpl", **values))
    if f"services/{project.name}/" not in copied_dockerfile(project, source):  # keep a copied service's own
        project.replaced_dockerfile = installs_unlisted_packages(project, source)
        write(
            project,
            "Dockerfile",
            render("Dockerfile.repo.tmpl", **values, **apt_steps(project, f"services/{project.name}/", on_core=True)),
        )
    if not (source.is_folder and (project.folder / "tests").is_dir()):
        write(project, "tests/conftest.py", render("conftest.py.tmpl", **values))
        write(project, "tests/test_api.py", render(api_test_template(source), **values))
    original = None
    if source.is_folder and source.path is not None:
        original = source.path.resolve().parent.parent / "compose" / f"{source.path.resolve().name}.yml"
    compose_text = (
        rename(original.read_text(encoding="utf-8"), original.stem, project.name)
        if original is not None and original.is_file()
        else render("compose.repo.yml.tmpl", **values)
    )
    write(project, f"compose/{project.name}.yml", compose_text, repo_relative=True)


def standalone_layout(project: Project, source: Source, force: bool, values: dict[str, str]) -> None:
    """A project that builds alone: the SDK wheel in wheels/, Dockerfile and compose in the folder."""
    wheel = sdk_wheel(project.folder / "wheels")
    project.written.append(wheel)
    values = {**values, "sdk_spec": f"./wheels/{wheel.name}"}
    if not provided(project, source, force, "README.md"):
        write(project, "README.md", render("README.md.tmpl", **values))
    project.replaced_dockerfile = installs_unlisted_packages(project, source)
    write(project, "Dockerfile", render("Dockerfile.tmpl", **values, **apt_steps(project, "")))
    write(project, "docker-compose.yml", render("docker-compose.yml.tmpl", **values))
    write(project, ".dockerignore", render("dockerignore.tmpl", **values))
    write(project, "_wsgi.py", render("_wsgi.py.tmpl", **values))
    write(project, "test_api.py", render(api_test_template(source), **values))


def api_test_template(source: Source) -> str:
    return "test_api.py.tmpl" if source.path is None else "test_api_from.py.tmpl"


def cmd_create(args: argparse.Namespace) -> int:
    try:
        project = create(args.name, args.source, args.root_dir, args.force)
    except (ScaffoldError, OSError) as exc:
        return fail(str(exc))
    where = project.folder
    print(f"Created {where}/: {', '.join(sorted(p.name for p in where.iterdir()))}")
    if project.replaced_dockerfile:
        print(
            f"Note: the Dockerfile of {args.source} builds another way and was replaced by the template: "
            f"list the system packages it installs (apt-get) in apt.txt, which the new Dockerfile installs."
        )
    if project.repo is not None:
        print(
            f"Created {project.repo / 'compose' / (project.name + '.yml')}\n"
            f"Next, from {project.repo}:\n"
            f"  make run MODEL={project.name}                # serve it on http://localhost:9090\n"
            f"  .venv-tools/bin/tox run -e {project.name}    # its tests\n"
            f"  make up MODEL={project.name}                 # in Docker"
        )
    else:
        print(
            f"Next:\n"
            f"  label-studio-ml start {where}    # serve it; connect the URL it prints in Label Studio\n"
            f"  pytest {where / 'test_api.py'}\n"
            f"  docker compose -f {where / 'docker-compose.yml'} up --build"
        )
    return 0


def add_command(sub: Subcommands) -> None:
    create_parser = add_subcommand(sub, "create", cmd_create, HELP)
    create_parser.add_argument("name", metavar="NAME", help="project folder name: lowercase letters, digits, _ or -")
    create_parser.add_argument(
        "--from",
        dest="source",
        metavar="FILE[:Class]",
        help="start from your model file (its requirements.txt and README.md next to it "
        "come along) or a service folder; Class picks one of several model classes",
    )
    create_parser.add_argument(
        "--root-dir", default=".", metavar="DIR", help="where to make NAME/ (default: the current folder)"
    )
    create_parser.add_argument("--force", action="store_true", help="overwrite an existing NAME/")
