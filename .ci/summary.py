"""Sum the JUnit reports of every tox env into one closing line: 'total: N passed, N failed, N skipped'."""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

passed = failed = skipped = 0
for report in sorted(Path(sys.argv[1]).glob("*.xml")):
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
