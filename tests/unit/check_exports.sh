#!/bin/sh
# usage: check_exports.sh LIBRARY ABI_VERSION
# Fails if the library exports anything but crosvm_* functions or if its
# SONAME does not end in the ABI version.
library=$1 abi=$2
unexpected=$(nm -D --defined-only "$library" | awk '$2 != "A" {print $3}' | grep -v '^crosvm_')
if [ -n "$unexpected" ]; then
  echo "libcrosvm exports symbols outside the C ABI:"; echo "$unexpected"; exit 1
fi
soname=$(objdump -p "$library" | awk '$1 == "SONAME" {print $2}')
case "$soname" in
  libcrosvm.so."$abi") echo "exports: $(nm -D --defined-only "$library" | grep -c ' T crosvm_') crosvm_* functions, SONAME $soname" ;;
  *) echo "SONAME is '$soname', expected libcrosvm.so.$abi"; exit 1 ;;
esac
