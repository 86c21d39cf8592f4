"""Print GitHub Actions outputs: all services, the changed ones, and the changed light ones to smoke.

    python3 tools/changed_services.py BASE_SHA

A change outside services/ (core/, tox.ini, toxfile.py, Makefile, the workflow, tools/) or an unknown
base means every service changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIGHT = {"substring_matching", "simple_text_classifier", "spacy", "tesseract"}


def main() -> int:
    services = sorted(p.parent.name for p in ROOT.glob("services/*/model.py"))
    base = sys.argv[1] if len(sys.argv) > 1 else ""
    changed = set(services)
    if base and set(base) != {"0"}:
        diff = subprocess.run(["git", "diff", "--name-only", base, "HEAD"], cwd=ROOT, capture_output=True, text=True)
        if diff.returncode == 0:
            paths = [p for p in diff.stdout.splitlines() if p]
            shared = [p for p in paths if not p.startswith(("services/", "compose/", "docs/", "README"))]
            if not shared:
                changed = {p.split("/")[1] for p in paths if p.startswith("services/")} & set(services)
                changed |= {Path(p).stem for p in paths if p.startswith("compose/")} & set(services)
    ordered = [s for s in services if s in changed]
    print(f"services={json.dumps(services)}")
    print(f"changed={json.dumps(ordered)}")
    print(f"smoke={json.dumps([s for s in ordered if s in LIGHT])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
