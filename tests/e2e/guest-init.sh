#!/bin/busybox sh
# /init of the end-to-end test guest: mount the basics, load the modules the
# image carries, say so on the console, and hand the console to a shell that
# the tests drive through the VMM's serial input.
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
for module in $(cat /modules/order 2>/dev/null); do
  insmod "/modules/$module.ko" 2>/dev/null || echo "crosvm-e2e: cannot load $module"
done
echo "crosvm-e2e: init reached, kernel $(uname -r)"
export PS1='guest# '
exec setsid cttyhack sh
