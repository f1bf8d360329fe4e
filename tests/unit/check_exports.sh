#!/bin/sh
# usage: check_exports.sh LIBRARY ABI_VERSION RELEASE
# Fails if the library exports anything but the C ABI's crosvm_* functions
# (version LIBCROSVM_1) and the device helper's entry point (version
# LIBCROSVM_DEVICE_RELEASE, sandbox/device_main.h), if it needs zlib or
# zstd at start, or if its SONAME does not end in the ABI version.
library=$1 abi=$2 release=$3
unexpected=$(nm -D --defined-only "$library" | awk '$2 != "A" {print $3}' |
  grep -v '^crosvm_[a-z0-9_]*@@LIBCROSVM_1$' |
  grep -vx "crosvm_device_helper_main@@LIBCROSVM_DEVICE_$release")
if [ -n "$unexpected" ]; then
  echo "libcrosvm exports symbols outside the C ABI:"; echo "$unexpected"; exit 1
fi
if ! nm -D --defined-only "$library" | grep -q " T crosvm_device_helper_main@@LIBCROSVM_DEVICE_$release\$"; then
  echo "libcrosvm does not export crosvm_device_helper_main@@LIBCROSVM_DEVICE_$release (crosvm-device needs it)"; exit 1
fi
# zlib and zstd are loaded when a compressed qcow2 cluster is first read
# (disk/decompress.h), not by every process that maps the library.
eager=$(objdump -p "$library" | awk '$1 == "NEEDED" {print $2}' | grep -E '^lib(z|zstd)\.so' || true)
if [ -n "$eager" ]; then
  echo "libcrosvm loads at start what it should load on demand:"; echo "$eager"; exit 1
fi
soname=$(objdump -p "$library" | awk '$1 == "SONAME" {print $2}')
case "$soname" in
  libcrosvm.so."$abi") echo "exports: $(nm -D --defined-only "$library" | grep -c ' T crosvm_.*@@LIBCROSVM_1$') crosvm_* functions, the device helper's entry, SONAME $soname" ;;
  *) echo "SONAME is '$soname', expected libcrosvm.so.$abi"; exit 1 ;;
esac
