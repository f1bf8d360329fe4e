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
# The kernel's own messages go to dmesg from here on, not to the console:
# one that lands while a test reads a command's output (a NIC's "link
# becomes ready" seconds after boot) would be read as part of it. A panic or
# an oops still prints (the kernel raises the level for those itself).
echo 1 > /proc/sys/kernel/printk
# crosvm.shell=DEV moves the shell to /dev/DEV (e.g. hvc0, whose driver is
# a module and so cannot be the console the kernel starts /init on).
shell=
for word in $(cat /proc/cmdline); do
  case "$word" in crosvm.shell=*) shell=${word#crosvm.shell=} ;; esac
done
if [ -n "$shell" ]; then
  tries=0
  while [ ! -e "/dev/$shell" ] && [ $tries -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
  exec <>"/dev/$shell" >&0 2>&0
fi
echo "crosvm-e2e: init reached, kernel $(uname -r)"
export PS1='guest# '
# cttyhack would follow the kernel's console (ttyS0); a moved shell takes
# its own device as controlling terminal instead.
if [ -n "$shell" ]; then exec setsid -c sh; fi
exec setsid cttyhack sh
