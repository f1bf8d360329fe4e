#!/bin/busybox sh
# /init of the benchmark guest. The first thing it does is the boot marker;
# with crosvm_bench.block=MIB,READS on the command line it then loads the
# virtio modules and runs blkbench on /dev/vda; then it powers off.
# With crosvm_bench.net=ADDRESS/PREFIX (a TAP) or crosvm_bench.net=dhcp
# (passt) it brings eth0 up, starts iperf3's server (port 5201) and netrr's
# (5202), says so, and waits for the host to end the VM. With
# crosvm_bench.vsock=1 it starts vsockbench's server on vsock port 5300,
# says so, and waits likewise. With crosvm_bench.devices=1 it binds every
# device it finds (disk, NIC by DHCP, vsock, rng, console), uses each once,
# says so ("devices ready") and waits likewise.
/bin/busybox echo "crosvm-bench: init reached"
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
# sysfs, devtmpfs and the virtio modules, in the order make_initramfs wrote.
load_modules() {
  /bin/busybox mount -t sysfs sysfs /sys
  /bin/busybox mount -t devtmpfs devtmpfs /dev
  for module in $(/bin/busybox cat /modules/order); do
    /bin/busybox insmod "/modules/$module.ko" 2>/dev/null
  done
}
block=
net=
vsock=
devices=
for word in $(/bin/busybox cat /proc/cmdline); do
  case "$word" in
    crosvm_bench.block=*) block=${word#crosvm_bench.block=} ;;
    crosvm_bench.net=*) net=${word#crosvm_bench.net=} ;;
    crosvm_bench.vsock=*) vsock=${word#crosvm_bench.vsock=} ;;
    crosvm_bench.devices=*) devices=${word#crosvm_bench.devices=} ;;
  esac
done
if [ -n "$devices" ]; then
  load_modules
  tries=0
  until [ -b /dev/vda ] && [ -e /sys/class/net/eth0 ] && [ -e /dev/hvc0 ] && [ -e /dev/hwrng ] ||
      [ $tries -ge 200 ]; do
    /bin/busybox sleep 0.1
    tries=$((tries + 1))
  done
  /bin/busybox ip link set eth0 up
  /bin/busybox printf '%s\n' '#!/bin/busybox sh' 'exit 0' > /tmp/lease.sh
  /bin/busybox chmod +x /tmp/lease.sh
  /bin/busybox udhcpc -i eth0 -q -n -t 20 -s /tmp/lease.sh >/dev/null 2>&1 || echo "crosvm-bench: no DHCP lease"
  /bin/busybox dd if=/dev/vda of=/dev/null bs=1M count=8 2>/dev/null || echo "crosvm-bench: no disk"
  /bin/busybox dd if=/dev/hwrng of=/dev/null bs=64 count=1 2>/dev/null || echo "crosvm-bench: no rng"
  echo "crosvm-bench: console" > /dev/hvc0 || echo "crosvm-bench: no console"
  [ -e /dev/vsock ] || echo "crosvm-bench: no vsock"
  echo "crosvm-bench: devices ready"
  while true; do /bin/busybox sleep 3600; done
fi
if [ -n "$vsock" ]; then
  load_modules
  tries=0
  while [ ! -e /dev/vsock ] && [ $tries -lt 200 ]; do /bin/busybox sleep 0.1; tries=$((tries + 1)); done
  /bin/vsockbench server 5300 &
  # The host's client tries again until the server listens.
  echo "crosvm-bench: vsock ready"
  while true; do /bin/busybox sleep 3600; done
fi
if [ -n "$net" ]; then
  load_modules
  tries=0
  while [ ! -e /sys/class/net/eth0 ] && [ $tries -lt 200 ]; do /bin/busybox sleep 0.1; tries=$((tries + 1)); done
  /bin/busybox ip link set lo up
  /bin/busybox ip link set eth0 up
  if [ "$net" = dhcp ]; then
    /bin/busybox printf '%s\n' '#!/bin/sh' '[ "$1" = bound ] || exit 0' \
      '/bin/busybox ip addr add $ip/$mask dev $interface' \
      '[ -n "$mtu" ] && /bin/busybox ip link set $interface mtu $mtu' \
      '/bin/busybox ip route add default via $router' > /tmp/dhcp.sh
    /bin/busybox chmod +x /tmp/dhcp.sh
    /bin/busybox udhcpc -i eth0 -q -n -t 20 -s /tmp/dhcp.sh >/dev/null 2>&1 || echo "crosvm-bench: no DHCP lease"
  else
    /bin/busybox ip addr add "$net" dev eth0
  fi
  /bin/iperf3 -s -D || echo "crosvm-bench: iperf3 failed"
  /bin/netrr server 5202 &
  # Ready once both listen (ports 5201 and 5202, state 0A, in /proc/net/tcp
  # or tcp6: iperf3 listens on IPv6's any address): iperf3 -D returns
  # before its server does, and a connection that arrives first is refused
  # (through passt: accepted on the host, then reset).
  tries=0
  while [ $tries -lt 200 ]; do
    listening=$(/bin/busybox cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
      /bin/busybox grep -c -e ':1451 0*:0000 0A' -e ':1452 0*:0000 0A')
    [ "$listening" = 2 ] && break
    /bin/busybox sleep 0.1
    tries=$((tries + 1))
  done
  echo "crosvm-bench: net ready"
  while true; do /bin/busybox sleep 3600; done
fi
if [ -n "$block" ]; then
  load_modules
  tries=0
  while [ ! -b /dev/vda ] && [ $tries -lt 200 ]; do /bin/busybox sleep 0.1; tries=$((tries + 1)); done
  /bin/blkbench /dev/vda ${block%,*} ${block#*,} || echo "crosvm-bench: blkbench failed"
fi
echo "crosvm-bench: done"
/bin/busybox poweroff -f
