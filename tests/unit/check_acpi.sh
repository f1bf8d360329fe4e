#!/bin/sh
# usage: check_acpi.sh ACPI_DUMP
# Disassembles every generated table with iasl (acpica-tools) and compiles
# the disassembled DSDT again: both must succeed without errors or warnings.
set -u
dump=$1
if ! command -v iasl >/dev/null; then
  echo "skipped: iasl not installed (apt-get install acpica-tools)"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
status=0
for vcpus in 1 2 64; do
  mkdir -p "$dir/$vcpus"
  "$dump" "$dir/$vcpus" "$vcpus" || exit 1
  for table in "$dir/$vcpus"/*.dat; do
    if ! output=$(cd "$dir/$vcpus" && iasl -d "$table" 2>&1) || echo "$output" | grep -qi "error"; then
      echo "iasl -d $(basename "$table") ($vcpus vCPUs) failed:"; echo "$output"; status=1
    else
      echo "ok: $(basename "$table" .dat) ($vcpus vCPUs) disassembles"
    fi
  done
  if ! output=$(cd "$dir/$vcpus" && iasl -p recompiled DSDT.dsl 2>&1) ||
     ! echo "$output" | grep -q "0 Errors, 0 Warnings"; then
    echo "the disassembled DSDT ($vcpus vCPUs) does not compile cleanly again:"; echo "$output"; status=1
  else
    echo "ok: DSDT ($vcpus vCPUs) compiles again: $(echo "$output" | grep -i "errors" | tail -1)"
  fi
done
exit $status
