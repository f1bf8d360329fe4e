#!/bin/busybox sh
# /init of the benchmark guest. The first thing it does is the boot marker;
# with crosvm_bench.block=MIB,READS on the command line it then loads the
# virtio modules and runs blkbench on /dev/vda; then it powers off.
/bin/busybox echo "crosvm-bench: init reached"
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
block=
for word in $(/bin/busybox cat /proc/cmdline); do
  case "$word" in crosvm_bench.block=*) block=${word#crosvm_bench.block=} ;; esac
done
if [ -n "$block" ]; then
  /bin/busybox mount -t sysfs sysfs /sys
  /bin/busybox mount -t devtmpfs devtmpfs /dev
  for module in $(/bin/busybox cat /modules/order); do
    /bin/busybox insmod "/modules/$module.ko" 2>/dev/null
  done
  tries=0
  while [ ! -b /dev/vda ] && [ $tries -lt 200 ]; do /bin/busybox sleep 0.1; tries=$((tries + 1)); done
  /bin/blkbench /dev/vda ${block%,*} ${block#*,} || echo "crosvm-bench: blkbench failed"
fi
echo "crosvm-bench: done"
/bin/busybox poweroff -f
