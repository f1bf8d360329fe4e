#!/usr/bin/python3
"""Runs the end-to-end suite inside the nested runner (tests/nested/run), for
machines without a hardware-backed KVM.

The outer machine is QEMU emulating AMD-V in software, and it has a known
failure of its own: now and then one of its CPUs stays inside VMRUN for
good, its kernel reports a soft lockup, and the runner stops the machine
with exit status 75. Whatever test was running then never finished, and no
verdict about the VMM can be drawn from it. So each test reports its
outcome the moment it ends (CROSVM_E2E_RESULTS, see conftest.py), and when
the machine locks up, the tests that had not finished run again in a fresh
machine (at most MACHINES in all). A test that finished keeps its verdict:
nothing that failed is ever run again. Every re-run is said in the output,
as are the boots that conftest.py tried again (a guest that hung or
crashed before /init; see there).

usage: nested_e2e.py BUILD [PYTEST ARGS...]
Ends with one pytest-style line "== N passed, N failed, N skipped in Ts ==".
"""
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
SOURCE_ROOT = HERE.parents[1]
MACHINES = 5  # a frozen machine is caught in two minutes (its heartbeat)
# The whole suite takes 10-15 minutes in a machine; one still running after
# this has stopped making progress (the runner then exits 75 as well).
MACHINE_LIMIT = 1500
EXIT_OUTER_LOCKUP = 75


def collect(args: list[str]) -> list[str]:
    """The node IDs pytest would run for `args` (collection needs no KVM)."""
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *(args or [str(HERE)])],
        cwd=SOURCE_ROOT, capture_output=True, text=True)
    ids = [line.strip() for line in listed.stdout.splitlines() if "::" in line]
    if listed.returncode != 0 or not ids:
        print(listed.stdout + listed.stderr)
        sys.exit(f"nested_e2e: cannot collect the tests (pytest exit {listed.returncode})")
    return ids


def read_results(path: pathlib.Path, retried: list[str], triple_faulted: set[str]) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            outcome, _, node = line.partition(" ")
            if outcome == "retried":  # "retried hung|crashed NODEID" (IDs may hold spaces)
                what, _, test = node.partition(" ")
                retried.append(f"{test} ({what})")
            elif outcome == "triplefault":  # it failed on a triple fault
                triple_faulted.add(node)
            elif node:
                outcomes[node] = outcome  # a later phase (teardown) overrides
    return outcomes


def main() -> int:
    build = pathlib.Path(sys.argv[1]).resolve()
    args = sys.argv[2:]
    started = time.monotonic()
    tests = collect(args)
    outcomes: dict[str, str] = {}
    retried: list[str] = []
    details: list[str] = []  # what each boot that was tried again left behind
    triple_faulted: set[str] = set()
    machine = 0

    def run_in_machines(selected: list[str]) -> None:
        """Runs `selected` in a machine, and the unfinished ones in a fresh
        machine while a machine locks up (MACHINES in all)."""
        nonlocal machine
        remaining = selected
        while machine < MACHINES:
            machine += 1
            results = build / "tests" / "e2e" / f"results-{machine}.txt"
            results.unlink(missing_ok=True)
            pathlib.Path(f"{results}.retries").unlink(missing_ok=True)
            environment = dict(os.environ, CROSVM_E2E_RESULTS=str(results),
                               CROSVM_BUILD_DIR=str(build))
            status = subprocess.run(
                [str(SOURCE_ROOT / "tests" / "nested" / "run"), "--share", str(build),
                 "--timeout", str(MACHINE_LIMIT), "--", str(HERE / "run-e2e"), *remaining],
                cwd=SOURCE_ROOT, env=environment).returncode
            outcomes.update(read_results(results, retried, triple_faulted))
            retry_details = pathlib.Path(f"{results}.retries")
            if retry_details.exists():
                details.append(retry_details.read_text())
                retry_details.unlink()
            remaining = [test for test in remaining if test not in outcomes]
            if status != EXIT_OUTER_LOCKUP or not remaining:
                return
            print(f"\nnested_e2e: the outer machine locked up during {remaining[0]}; "
                  f"{len(remaining)} unfinished test(s) run again in a fresh machine\n", flush=True)

    run_in_machines(tests)  # node IDs: options such as -k already chose them
    # A test that failed on a triple fault (the emulator's #PF fault, which
    # also strikes after /init: docs/testing.md) runs once more, in a fresh
    # machine; failing twice, it fails. Every such test is named below.
    crashed = [test for test in tests if outcomes.get(test) == "failed" and test in triple_faulted]
    if crashed:
        print(f"\nnested_e2e: {len(crashed)} test(s) failed on a triple fault; once more in a "
              f"fresh machine: {', '.join(crashed)}\n", flush=True)
        for test in crashed:
            del outcomes[test]
        run_in_machines(crashed)

    passed = sum(1 for test in tests if outcomes.get(test) == "passed")
    skipped = sum(1 for test in tests if outcomes.get(test) == "skipped")
    failed = len(tests) - passed - skipped  # failures, and tests that never finished
    for test in tests:
        if test not in outcomes:
            print(f"nested_e2e: {test} never finished")
    if details:
        print("\nnested_e2e: what the boots that were tried again left behind:")
        print("".join(details))
    for test in retried:
        print(f"nested_e2e: a boot failed before /init and was tried again: {test}")
    for test in crashed:
        print(f"nested_e2e: failed on a triple fault and was run again ({outcomes.get(test, 'unfinished')}): "
              f"{test}")
    print(f"===== {passed} passed, {failed} failed, {skipped} skipped "
          f"in {time.monotonic() - started:.1f}s =====")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
