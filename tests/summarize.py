#!/usr/bin/python3
"""Sums the results of meson test runs (their testlog.json files) into one
line "N passed, N failed, N skipped".

A test's own counts are used where its output states them (Catch2's "All
tests passed (A assertions in N test cases)" / "test cases: N | P passed |
F failed", pytest's "== 3 passed, 1 skipped in 2.0s =="); otherwise the test
counts once, by meson's verdict.

usage: summarize.py TESTLOG.json...
"""
import json
import re
import sys

CATCH_ALL = re.compile(r"All tests passed \(\d+ assertions? in (\d+) test cases?\)")
CATCH_SOME = re.compile(r"test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")
PYTEST = re.compile(r"^=+ (.*\d+ (?:passed|failed|skipped|error|errors|deselected).*) in [\d.]+s", re.M)


def counts_from_output(text: str):
    if match := CATCH_ALL.search(text):
        return int(match.group(1)), 0, 0
    if match := CATCH_SOME.search(text):
        return int(match.group(2)), int(match.group(3)), 0
    matches = PYTEST.findall(text)
    if matches:
        passed = failed = skipped = 0
        for part in matches[-1].split(","):
            number, _, kind = part.strip().partition(" ")
            if not number.isdigit():
                continue
            if kind.startswith("passed") or kind.startswith("xfailed"):
                passed += int(number)
            elif kind.startswith("failed") or kind.startswith("error") or kind.startswith("xpassed"):
                failed += int(number)
            elif kind.startswith("skipped"):
                skipped += int(number)
        return passed, failed, skipped
    return None


def main() -> int:
    passed = failed = skipped = 0
    for path in sys.argv[1:]:
        with open(path) as log:
            for line in log:
                record = json.loads(line)
                result = record.get("result", "")
                output = (record.get("stdout") or "") + (record.get("stderr") or "")
                counts = counts_from_output(output)
                if result in ("SKIP",):
                    skipped += counts[0] + counts[1] + counts[2] if counts else 1
                    continue
                if counts is None:
                    counts = (1, 0, 0) if result in ("OK", "EXPECTEDFAIL") else (0, 1, 0)
                elif result not in ("OK", "EXPECTEDFAIL") and counts[1] == 0:
                    counts = (counts[0], 1, counts[2])  # crashed or timed out after its counts
                passed += counts[0]
                failed += counts[1]
                skipped += counts[2]
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
