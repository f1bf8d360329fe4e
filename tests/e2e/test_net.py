"""virtio-net over a TAP with Debian's kernel and its virtio_net driver.
Each test makes a network namespace of its own with a TAP in it (MTU
9000, 10.0.2.1/24 on the host side) and runs the VMM and every host-side
peer inside it: no packet leaves the namespace. With the NIC jailed
(crosvm-launch's default) and in the VMM, with and without the kernel's
vhost-net."""
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from test_control import control

HANG_GUARD = 300  # a guard against hangs, never a timing check
HOST_IP = "10.0.2.1"
GUEST_IP = "10.0.2.15"
GUEST_MAC = "52:54:00:12:34:56"
TAP = "vmtap0"
MTU = 9000
STREAM_BYTES = 64 << 20
_namespaces = itertools.count()

# The host's end of a TCP stream, run inside the namespace: "send PORT"
# connects (retrying until the guest listens) and sends STREAM_BYTES of
# numbered copies of a random MiB; "fetch PORT" downloads /blob from the
# guest's web server. Either prints the sha256 of what went through.
PEER = r"""
import hashlib, os, socket, sys, time
mode, host, port, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
digest = hashlib.sha256()
if mode == "send":
    deadline = time.monotonic() + 120
    while True:
        try:
            connection = socket.create_connection((host, port), timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    # Random 1 MiB, each copy numbered: cheap to make in a slow machine,
    # and a lost, damaged or reordered piece still changes the digest.
    seed = os.urandom(1 << 20)
    for index in range(total >> 20):
        chunk = b"%08d" % index + seed[8:]
        digest.update(chunk)
        connection.sendall(chunk)
    connection.close()
else:
    import urllib.request
    with urllib.request.urlopen(f"http://{host}:{port}/blob", timeout=120) as response:
        received = 0
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            received += len(chunk)
    if received != total:
        sys.exit(f"the stream ended {total - received} bytes short")
print(digest.hexdigest(), flush=True)
"""


def in_namespace(namespace: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *command]


@pytest.fixture
def namespace(request):
    """A network namespace with lo up and a persistent TAP in it (with a
    queue per pair when the test has several)."""
    name = f"crosvm-e2e-{os.getpid()}-{next(_namespaces)}"
    multi_queue = ["multi_queue"] if request.node.callspec.params.get("pairs", 1) > 1 else []
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (["link", "set", "lo", "up"],
                        ["tuntap", "add", "dev", TAP, "mode", "tap", *multi_queue],
                        ["link", "set", TAP, "mtu", str(MTU)],
                        ["addr", "add", f"{HOST_IP}/24", "dev", TAP],
                        ["link", "set", TAP, "up"]):
            subprocess.run(["ip", "-n", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def boot_with_net(boot, launcher, kernel, initramfs, namespace, sandbox_mode, net, *extra):
    flags = ["--disable-sandbox"] if sandbox_mode == "in-the-vmm" else []
    command = in_namespace(namespace, launcher, "run", "-i", initramfs, "-p", "console=ttyS0 reboot=k",
                           *flags, *extra, "--net", net, kernel)
    guest = boot(command=command)
    guest.run(f"ip link set eth0 up && ip addr add {GUEST_IP}/24 dev eth0")
    return guest


def iperf3(namespace: str, *flags: str) -> dict:
    """One iperf3 run from the namespace to the guest's server, 2 s (a
    check that data flows and iperf3's own accounting agrees, not a
    measurement: bench/run measures)."""
    ran = subprocess.run(in_namespace(namespace, "iperf3", "-c", GUEST_IP, "-t", "2", "-J", *flags),
                         capture_output=True, text=True, timeout=HANG_GUARD)
    result = json.loads(ran.stdout) if ran.stdout.strip().startswith("{") else {"error": ran.stderr}
    assert ran.returncode == 0 and "error" not in result, ran.stdout + ran.stderr
    return result["end"]


# Jailed with two queue pairs on two vCPUs, in the VMM with one over
# vhost-net, and jailed with two over vhost-net: each boot checks
# everything once.
@pytest.mark.parametrize("sandbox_mode, pairs, vhost", [("sandboxed", 2, False), ("in-the-vmm", 1, True),
                                                        ("sandboxed", 2, True)])
def test_a_guest_on_a_tap_pings_both_ways_streams_64_mib_each_way_and_sees_its_mac_mtu_and_offloads(
        boot, launcher, kernel, net_initramfs, namespace, sandbox_mode, pairs, vhost, tmp_path):
    sock = str(tmp_path / "vm.sock")
    net = f"tap-name={TAP},mac={GUEST_MAC},vq-pairs={pairs}" + (",vhost-net=true" if vhost else "")
    guest = boot_with_net(boot, launcher, kernel, net_initramfs, namespace, sandbox_mode, net,
                          "-s", sock, "-c", str(pairs))
    devices = json.loads(control(launcher, "status", sock).stdout)["status"]["devices"]
    described = (f"net0 (virtio-net, tap {TAP}, mac {GUEST_MAC}, mtu {MTU}" +
                 (f", {pairs} queue pairs" if pairs > 1 else "") + (", vhost-net" if vhost else "") + ")")
    assert any(line.startswith(described) for line in devices), devices
    assert guest.run("cat /sys/class/net/eth0/address").strip() == GUEST_MAC
    assert guest.run("cat /sys/class/net/eth0/mtu").strip() == str(MTU)
    # The negotiated feature bits, as the guest's virtio core lists them.
    features = guest.run("cat /sys/class/net/eth0/device/features").strip()
    for bit, name in [(0, "CSUM"), (1, "GUEST_CSUM"), (5, "MAC"), (7, "GUEST_TSO4"), (11, "HOST_TSO4"),
                      (15, "MRG_RXBUF"), (16, "STATUS"), (17, "CTRL_VQ")]:
        assert features[bit] == "1", f"{name} not negotiated: {features}"

    # 20 of 20 both ways.
    assert "20 packets transmitted, 20 packets received" in guest.run(f"ping -c 20 -A {HOST_IP}", timeout=HANG_GUARD)
    pinged = subprocess.run(in_namespace(namespace, "ping", "-c", "20", "-i", "0.2", "-W", "10", GUEST_IP),
                            capture_output=True, text=True, timeout=HANG_GUARD)
    assert pinged.returncode == 0 and " 20 received" in pinged.stdout, pinged.stdout + pinged.stderr
    # MTU 9000: the largest don't-fragment ping fits, one byte more does not.
    largest = subprocess.run(in_namespace(namespace, "ping", "-M", "do", "-s", str(MTU - 28), "-c", "3",
                                          "-W", "10", GUEST_IP), capture_output=True, text=True,
                             timeout=HANG_GUARD)
    assert largest.returncode == 0, largest.stdout + largest.stderr
    too_large = subprocess.run(in_namespace(namespace, "ping", "-M", "do", "-s", str(MTU - 27), "-c", "1",
                                            "-W", "5", GUEST_IP), capture_output=True, text=True,
                               timeout=HANG_GUARD)
    assert too_large.returncode != 0

    # 64 MiB host -> guest.
    guest.send("nc -l -p 5001 | sha256sum > /tmp/in.sum; echo received-$?\n")
    sent = subprocess.run(in_namespace(namespace, sys.executable, "-c", PEER, "send", GUEST_IP, "5001",
                                       str(STREAM_BYTES)), capture_output=True, text=True, timeout=HANG_GUARD)
    assert sent.returncode == 0, sent.stderr
    guest.expect(r"received-0", timeout=HANG_GUARD)
    assert guest.run("cat /tmp/in.sum").split()[0] == sent.stdout.split()[-1]

    # 64 MiB guest -> host, served by busybox's httpd: it sends with
    # sendfile(), in large writes (nc's 4 KiB writes cost one exit each,
    # minutes in the nested machine).
    written = guest.run("dd if=/dev/urandom of=/tmp/seed bs=1048568 count=1 2>/dev/null && mkdir -p /tmp/www && "
                        f"for i in $(seq 1 {STREAM_BYTES >> 20}); do printf %08d $i; cat /tmp/seed; done "
                        "> /tmp/www/blob && sha256sum /tmp/www/blob && httpd -p 8080 -h /tmp/www",
                        timeout=HANG_GUARD)
    fetched = subprocess.run(in_namespace(namespace, sys.executable, "-c", PEER, "fetch", GUEST_IP, "8080",
                                          str(STREAM_BYTES)), capture_output=True, text=True, timeout=HANG_GUARD)
    assert fetched.returncode == 0, fetched.stderr
    out = fetched.stdout
    assert written.split()[0] == out.split()[-1]

    # iperf3 host -> guest, then guest -> host (-R): data went each way
    # and iperf3 saw no error.
    guest.run("iperf3 -s -D", timeout=HANG_GUARD)
    for flags in ((), ("-R",)):
        end = iperf3(namespace, *flags)
        assert end["sum_sent"]["bytes"] > 0 and end["sum_received"]["bytes"] > 0, end
        print(f"iperf3 {'guest -> host' if flags else 'host -> guest'}: "
              f"{end['sum_received']['bits_per_second'] / 1e6:.0f} Mbit/s (nested, not a measurement)")

    if pairs > 1:
        # Sixteen short connections: the TAP spreads flows over its
        # queues, and each receive queue carries some.
        guest.run("echo small > /tmp/www/small")
        for _ in range(16):
            fetched = subprocess.run(in_namespace(namespace, sys.executable, "-c",
                                                  f"import urllib.request; urllib.request.urlopen("
                                                  f"'http://{GUEST_IP}:8080/small', timeout=60).read()"),
                                     capture_output=True, text=True, timeout=HANG_GUARD)
            assert fetched.returncode == 0, fetched.stderr
        interrupts = guest.run("grep -e -input. /proc/interrupts")
        for queue in range(pairs):
            line = next(line for line in interrupts.splitlines() if line.endswith(f"-input.{queue}"))
            assert sum(int(field) for field in line.split()[1:1 + pairs]) > 0, interrupts

    guest.send("poweroff -f\n")
    assert guest.wait(timeout=HANG_GUARD) == 0, guest.errors
    # Nothing was dropped or refused on the way.
    assert "virtio-net" not in guest.errors, guest.errors


# User-mode networking: passt, started by the VMM, run by a user with no
# privilege at all (nobody, no groups but /dev/kvm's access). The namespace
# stands for a host: a TAP nobody reads with 10.0.2.15/24 and a default
# route through 10.0.2.2 (and IPv6's alike), which passt copies for the guest (DHCP gives the
# guest 10.0.2.15 and the gateway 10.0.2.2, passt's own address, which
# leads to the host's loopback).
PASST_BLOB = 32 << 20
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
# The guest's DHCP client hook: address, MTU and route from the lease.
DHCP_HOOK = ("printf '%s\\n' '#!/bin/sh' '[ \"$1\" = bound ] || exit 0' "
             "'ip addr add $ip/$mask dev $interface' '[ -n \"$mtu\" ] && ip link set $interface mtu $mtu' "
             "'ip route add default via $router' > /tmp/dhcp.sh && chmod +x /tmp/dhcp.sh")


@pytest.fixture
def host_namespace():
    name = f"crosvm-e2e-{os.getpid()}-{next(_namespaces)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (["link", "set", "lo", "up"],
                        ["tuntap", "add", "dev", "uplink0", "mode", "tap"],
                        ["addr", "add", f"{GUEST_IP}/24", "dev", "uplink0"],
                        ["link", "set", "uplink0", "up"],
                        ["route", "add", "default", "via", "10.0.2.2"],
                        ["-6", "addr", "add", "fd00::15/64", "dev", "uplink0", "nodad"],
                        ["-6", "route", "add", "default", "via", "fd00::2"]):
            subprocess.run(["ip", "-n", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def unprivileged_dir():
    """A directory nobody can write (the control socket, the blob)."""
    path = tempfile.mkdtemp(prefix="crosvm-e2e-nobody-")
    os.chmod(path, 0o777)
    mode = os.stat("/dev/kvm").st_mode
    os.chmod("/dev/kvm", 0o666)  # the nested machine's own /dev/kvm, put back below
    try:
        yield path
    finally:
        os.chmod("/dev/kvm", mode & 0o7777)
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("sandbox_mode", ["sandboxed", "in-the-vmm"])
def test_passt_without_root_gives_the_guest_dhcp_and_a_way_out_and_forwards_a_host_port_in(
        boot, launcher, kernel, initramfs, host_namespace, unprivileged_dir, sandbox_mode):
    sock = os.path.join(unprivileged_dir, "vm.sock")
    flags = ["--disable-sandbox"] if sandbox_mode == "in-the-vmm" else []
    command = in_namespace(host_namespace, *NOBODY, launcher, "run", "-i", initramfs, "-p", "console=ttyS0 reboot=k",
                           "-s", sock, *flags, "--net", f"passt,tcp-ports=2222:8080,mac={GUEST_MAC}", kernel)
    guest = boot(command=command)
    devices = json.loads(control(launcher, "status", sock).stdout)["status"]["devices"]
    described = f"net0 (virtio-net, passt, tcp 2222:8080, mac {GUEST_MAC}, mtu 65520)"
    assert any(line.startswith(described) for line in devices), devices
    passt = subprocess.run(["pgrep", "-u", "nobody", "passt"], capture_output=True, text=True)
    assert passt.returncode == 0, "passt does not run as nobody"

    # DHCP: the address, gateway and MTU passt copied from the "host".
    guest.run(DHCP_HOOK)
    leased = guest.run("ip link set eth0 up && udhcpc -i eth0 -n -q -f -O mtu -s /tmp/dhcp.sh >/dev/null 2>&1; "
                       "echo dhcp-$?", timeout=HANG_GUARD)
    assert "dhcp-0" in leased, leased
    assert f"inet {GUEST_IP}/24" in guest.run("ip -4 addr show dev eth0")
    assert "default via 10.0.2.2" in guest.run("ip route")
    assert guest.run("cat /sys/class/net/eth0/mtu").strip() == "65520"

    # Out: the guest fetches from a web server on the host's loopback,
    # through the gateway's address.
    blob = os.path.join(unprivileged_dir, "blob")
    with open(blob, "wb") as out:
        out.write(os.urandom(PASST_BLOB))
    with open(blob, "rb") as source:
        expected = hashlib.sha256(source.read()).hexdigest()
    server = subprocess.Popen(in_namespace(host_namespace, *NOBODY, sys.executable, "-m", "http.server", "--bind",
                                           "127.0.0.1", "--directory", unprivileged_dir, "8000"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        fetched = guest.run("for i in $(seq 1 50); do wget -q -O - http://10.0.2.2:8000/blob > /tmp/blob && break; "
                            "sleep 0.2; done; sha256sum /tmp/blob", timeout=HANG_GUARD)
    finally:
        server.kill()
        server.wait()
    assert fetched.split()[0] == expected, fetched

    # In: host port 2222 reaches the guest's web server on 8080.
    served = guest.run("mkdir -p /tmp/www && mv /tmp/blob /tmp/www/blob && httpd -p 8080 -h /tmp/www && echo serving")
    assert "serving" in served
    got = subprocess.run(in_namespace(host_namespace, *NOBODY, sys.executable, "-c", PEER, "fetch", "127.0.0.1", "2222",
                                      str(PASST_BLOB)), capture_output=True, text=True, timeout=HANG_GUARD)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split()[-1] == expected

    guest.send("poweroff -f\n")
    assert guest.wait(timeout=HANG_GUARD) == 0, guest.errors
    assert "virtio-net" not in guest.errors and "passt" not in guest.errors, guest.errors
    # passt quit with the NIC.
    assert subprocess.run(["pgrep", "-u", "nobody", "passt"]).returncode != 0
