"""Sum the JUnit reports of every tox env (counts and test minutes per env) into one closing line:
'total: N passed, N failed, N skipped'.

    python .ci/summary.py REPORTS_DIR [ENV,ENV,...]

Failures are listed first with the end of their message, so that the tail of a CI log says why it failed;
an expected env without a report (its install failed before any test ran) is listed and counted as failed.
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

MESSAGE_TAIL_CHARS = 1500

reports_dir = Path(sys.argv[1])
expected = [e for e in (sys.argv[2].split(",") if len(sys.argv) > 2 else []) if e and e != "lint"]
lines = []
passed = failed = skipped = 0
for env in expected:
    if not (reports_dir / f"{env}.xml").exists():
        lines.append(f"  {env:<24} NO REPORT: the env failed before its tests ran (see its install output above)")
        failed += 1
for report in sorted(reports_dir.glob("*.xml")):
    root = ET.parse(report).getroot()
    for case in root.iter("testcase"):
        for problem in [*case.findall("failure"), *case.findall("error")]:
            text = (problem.text or problem.get("message") or "").strip()
            print(f"--- FAILED {report.stem}: {case.get('classname')}::{case.get('name')}")
            print(text[-MESSAGE_TAIL_CHARS:])
    env = {"passed": 0, "failed": 0, "skipped": 0, "seconds": 0.0}
    for suite in root.iter("testsuite"):
        tests, fail = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skip = int(suite.get("skipped", 0))
        env["passed"] += tests - fail - skip
        env["failed"] += fail
        env["skipped"] += skip
        env["seconds"] += float(suite.get("time", 0) or 0)
    lines.append(
        f"  {report.stem:<24} {env['passed']} passed, {env['failed']} failed, {env['skipped']} skipped"
        f" in {env['seconds'] / 60:.1f} min of tests"
    )
    passed, failed, skipped = passed + env["passed"], failed + env["failed"], skipped + env["skipped"]
print("\n".join(lines))
print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
