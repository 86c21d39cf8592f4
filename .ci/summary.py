"""Sum the JUnit reports of every tox env into one closing line: 'total: N passed, N failed, N skipped'.

    python .ci/summary.py REPORTS_DIR [ENV,ENV,...]

Failures are listed first with the end of their message, so that the tail of a CI log says why it failed;
an expected env without a report (its install failed before any test ran) is listed and counted as failed.
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

MESSAGE_TAIL_CHARS = 1500

reports = sorted(Path(sys.argv[1]).glob("*.xml"))
for report in reports:
    for case in ET.parse(report).getroot().iter("testcase"):
        for problem in [*case.findall("failure"), *case.findall("error")]:
            text = (problem.text or problem.get("message") or "").strip()
            print(f"--- FAILED {report.stem}: {case.get('classname')}::{case.get('name')}")
            print(text[-MESSAGE_TAIL_CHARS:])

passed = failed = skipped = 0
expected = [e for e in (sys.argv[2].split(",") if len(sys.argv) > 2 else []) if e and e != "lint"]
for env in expected:
    if not (Path(sys.argv[1]) / f"{env}.xml").exists():
        print(f"  {env:<24} NO REPORT: the env failed before its tests ran (see its install output above)")
        failed += 1
for report in reports:
    env = {"passed": 0, "failed": 0, "skipped": 0}
    for suite in ET.parse(report).getroot().iter("testsuite"):
        tests, fail = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skip = int(suite.get("skipped", 0))
        env["passed"] += tests - fail - skip
        env["failed"] += fail
        env["skipped"] += skip
    print(f"  {report.stem:<24} {env['passed']} passed, {env['failed']} failed, {env['skipped']} skipped")
    passed, failed, skipped = passed + env["passed"], failed + env["failed"], skipped + env["skipped"]
print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
