"""The checked-in Kubernetes manifests, deploy/k8s/<service>/ (and <service>-gpu/ for a service whose
compose file has a GPU variant), as `label-studio-ml deploy k8s` writes them.

    python tools/k8s_manifests.py           # regenerate them (what `make k8s` runs)
    python tools/k8s_manifests.py --check   # exit 1, naming the folders, when they differ from a fresh run

Needs label_studio_ml importable (core installed).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from label_studio_ml.cli.main import main as label_studio_ml
from label_studio_ml.cli.service_facts import read_service

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "k8s"


def variants() -> list[tuple[str, list[str]]]:
    """(folder name, extra `deploy k8s` arguments) of every checked-in manifest folder."""
    found = []
    for model in sorted(ROOT.glob("services/*/model.py")):
        service = model.parent
        found.append((service.name, []))
        if read_service(service).has_gpu_variant:
            found.append((f"{service.name}-gpu", ["--gpu"]))
    return found


def generate(target: Path) -> list[str]:
    names = []
    for name, extra in variants():
        service = name.removesuffix("-gpu")
        with redirect_stdout(StringIO()):
            code = label_studio_ml(
                ["deploy", "k8s", str(ROOT / "services" / service), *extra, "--output", str(target / name)]
            )
        if code != 0:
            raise SystemExit(f"label-studio-ml deploy k8s services/{service} {' '.join(extra)} failed")
        names.append(name)
    return names


def differences(left: Path, right: Path) -> list[str]:
    if not right.is_dir():
        return [str(right)]
    compared = filecmp.dircmp(left, right)
    found = [str(right / n) for n in compared.left_only + compared.right_only + compared.diff_files]
    for sub in compared.common_dirs:
        found += differences(left / sub, right / sub)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with a fresh run instead of writing")
    parser.add_argument("--deploy-dir", type=Path, default=DEPLOY, help=argparse.SUPPRESS)  # tests
    args = parser.parse_args(argv)
    if not args.check:
        names = generate(args.deploy_dir)
        print(
            f"{args.deploy_dir.relative_to(ROOT) if args.deploy_dir.is_relative_to(ROOT) else args.deploy_dir}/: "
            f"{len(names)} folders written"
        )
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        drift = differences(Path(tmp), args.deploy_dir)
    for path in drift:
        print(f"out of date: {path}")
    if drift:
        print(
            "the checked-in Kubernetes manifests differ from what `label-studio-ml deploy k8s` writes: "
            "run `make k8s` and commit deploy/k8s/"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
