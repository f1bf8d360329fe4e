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
machine (at most MACHINES for each share of the tests, see below). A test
that finished keeps its verdict: nothing that failed is ever run again.
Every re-run is said in the output, as are the boots that conftest.py
tried again (a guest that hung or crashed before /init; see there).

The runner's machines have one CPU (with two, the emulator's own fault
struck most boots: tests/nested/run), so the tests are dealt to PARALLEL
machines that run side by side, one per core of this machine, each
with its own re-runs; each machine's output is printed whole when it ends.

usage: nested_e2e.py BUILD [PYTEST ARGS...]
Ends with one pytest-style line "== N passed, N failed, N skipped in Ts ==".
"""
import itertools
import os
import pathlib
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
SOURCE_ROOT = HERE.parents[1]
MACHINES = 4  # per share of the tests; a frozen machine is caught in two minutes (its heartbeat)
# A share of the suite takes 10-15 minutes in a machine; one still running
# after this has stopped making progress (the runner then exits 75 as well).
MACHINE_LIMIT = 1500
# Machines side by side: each is one emulating thread, so one per core, and
# no more than two (each takes 4 GiB; 5 GiB guests overcommit it).
PARALLEL = max(1, min(2, os.cpu_count() or 1))
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
    machines = itertools.count(1)  # numbers the result files of every machine
    lock = threading.Lock()

    def run_in_machines(selected: list[str]) -> None:
        """Runs `selected` in a machine, and the unfinished ones in a fresh
        machine while a machine locks up (MACHINES in all)."""
        remaining = selected
        for _ in range(MACHINES):
            with lock:
                machine = next(machines)
            results = build / "tests" / "e2e" / f"results-{machine}.txt"
            results.unlink(missing_ok=True)
            pathlib.Path(f"{results}.retries").unlink(missing_ok=True)
            environment = dict(os.environ, CROSVM_E2E_RESULTS=str(results),
                               CROSVM_BUILD_DIR=str(build))
            run = subprocess.run(
                [str(SOURCE_ROOT / "tests" / "nested" / "run"), "--share", str(build),
                 "--timeout", str(MACHINE_LIMIT), "--", str(HERE / "run-e2e"), *remaining],
                cwd=SOURCE_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            with lock:
                print(f"\n===== nested_e2e: machine {machine} ({len(remaining)} test(s)), "
                      f"exit {run.returncode} =====", flush=True)
                sys.stdout.buffer.write(run.stdout)
                sys.stdout.flush()
                outcomes.update(read_results(results, retried, triple_faulted))
                retry_details = pathlib.Path(f"{results}.retries")
                if retry_details.exists():
                    details.append(retry_details.read_text())
                    retry_details.unlink()
                remaining = [test for test in remaining if test not in outcomes]
            if run.returncode != EXIT_OUTER_LOCKUP or not remaining:
                return
            print(f"\nnested_e2e: the outer machine locked up during {remaining[0]}; "
                  f"{len(remaining)} unfinished test(s) run again in a fresh machine\n", flush=True)

    def run_side_by_side(selected: list[str]) -> None:
        """Deals `selected` to up to PARALLEL machines at once."""
        shares = [selected[i::PARALLEL] for i in range(PARALLEL) if selected[i::PARALLEL]]
        threads = [threading.Thread(target=run_in_machines, args=(share,)) for share in shares]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    run_side_by_side(tests)  # node IDs: options such as -k already chose them
    # A test that failed on a triple fault (the emulator's #PF fault, which
    # also strikes after /init: docs/testing.md) runs once more, in a fresh
    # machine; failing twice, it fails. Every such test is named below.
    crashed = [test for test in tests if outcomes.get(test) == "failed" and test in triple_faulted]
    if crashed:
        print(f"\nnested_e2e: {len(crashed)} test(s) failed on a triple fault; once more in a "
              f"fresh machine: {', '.join(crashed)}\n", flush=True)
        for test in crashed:
            del outcomes[test]
        run_side_by_side(crashed)

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
