// A tiny guest drives virtio-net on a TAP the test made: its malformed
// chains on both queues come back unused, only its good frame reaches the
// host, and a frame from the host arrives whole in the one buffer that
// holds it.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "guest_vm.h"

using guest_tests::GuestVm;
using namespace std::chrono_literals;

namespace {

constexpr uint16_t kEthertype = 0x88b5;  // IEEE's local experimental type
constexpr uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};

// A TAP with a virtio_net_hdr (as the VMM wants it), up, without IPv6 (so
// the host sends nothing of its own), and a packet socket on its host side.
class TestTap {
 public:
  TestTap() {
    fd_ = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    REQUIRE(fd_ >= 0);
    ifreq request{};
    std::strncpy(request.ifr_name, "crosvmg%d", IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    REQUIRE(::ioctl(fd_, TUNSETIFF, &request) == 0);
    name_ = request.ifr_name;
    std::ofstream(fmt("/proc/sys/net/ipv6/conf/{}/disable_ipv6")) << "1\n";
    const int control = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(control >= 0);
    REQUIRE(::ioctl(control, SIOCGIFFLAGS, &request) == 0);
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
    REQUIRE(::ioctl(control, SIOCSIFFLAGS, &request) == 0);
    ::close(control);
    packets_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
    REQUIRE(packets_ >= 0);
    sockaddr_ll address{};
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(ETH_P_ALL);
    address.sll_ifindex = static_cast<int>(::if_nametoindex(name_.c_str()));
    REQUIRE(address.sll_ifindex > 0);
    REQUIRE(::bind(packets_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  }
  ~TestTap() {
    ::close(packets_);
    ::close(fd_);
  }
  int fd() const { return fd_; }

  // A frame out of the host's side of the TAP, to the guest.
  void send_to_guest(const std::string& text) {
    std::vector<uint8_t> frame(60, 0);
    std::memcpy(frame.data(), kGuestMac, 6);
    frame[6] = 0x02;  // a locally administered source
    frame[12] = kEthertype >> 8;
    frame[13] = kEthertype & 0xff;
    std::memcpy(frame.data() + 14, text.data(), text.size());
    REQUIRE(::send(packets_, frame.data(), frame.size(), 0) == static_cast<ssize_t>(frame.size()));
  }
  // The payloads of our ethertype that the guest sent, so far.
  std::vector<std::string> received_from_guest() {
    uint8_t frame[2048];
    sockaddr_ll from{};
    socklen_t length = sizeof(from);
    ssize_t got;
    while ((got = ::recvfrom(packets_, frame, sizeof(frame), 0, reinterpret_cast<sockaddr*>(&from), &length)) > 0) {
      if (from.sll_pkttype == PACKET_OUTGOING || got < 14) continue;
      if (((frame[12] << 8) | frame[13]) != kEthertype) continue;
      received_.emplace_back(reinterpret_cast<const char*>(frame + 14), ::strnlen(reinterpret_cast<const char*>(frame + 14), static_cast<size_t>(got) - 14));
      length = sizeof(from);
    }
    return received_;
  }

 private:
  std::string fmt(const char* pattern) const {
    std::string text(pattern);
    return text.replace(text.find("{}"), 2, name_);
  }
  int fd_ = -1;
  int packets_ = -1;
  std::string name_;
  std::vector<std::string> received_;
};

}  // namespace

TEST_CASE("a guest driving virtio-net survives its own malformed chains on both queues, jailed or not",
          "[guest][virtio][net][sandbox]") {
  if (::geteuid() != 0) {
    WARN("needs root to make a TAP: not run");
    return;
  }
  const bool jailed = GENERATE(false, true);
  INFO((jailed ? "jailed" : "in the VMM"));
  TestTap tap;
  GuestVm vm("virtio_net", 64, 1, [&](crosvm_config* config) {
    if (jailed) {
      crosvm_sandbox_options sandbox = CROSVM_SANDBOX_OPTIONS_INIT;
      sandbox.flags = CROSVM_SANDBOX_ENABLED;
      REQUIRE(crosvm_config_set_sandbox(config, &sandbox) == CROSVM_OK);
    }
    const std::string options = "tap-fd=" + std::to_string(tap.fd()) + ",mac=52:54:00:aa:bb:cc";
    REQUIRE(crosvm_config_add_device(config, "net", options.c_str()) == CROSVM_OK);
  });
  vm.start();
  REQUIRE(vm.wait_for_output("rx ready"));
  // The device takes its buffers as frames come: one for the three bad
  // ones, one for the buffer that fits (the hang guard bounds the wait).
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (vm.output().find("done") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    tap.send_to_guest("crosvm-rx-ok");
    std::this_thread::sleep_for(50ms);
  }
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output() ==
        "mac 52:54:00:aa:bb:cc link 1\n"
        "tx chain 0 returned\n"
        "tx chain 1 returned\n"
        "tx chain 2 returned\n"
        "tx chain 4 returned\n"
        "tx chain 6 returned\n"
        "rx ready\n"
        "rx chain 0 returned: length 0\n"
        "rx chain 1 returned: length 0\n"
        "rx chain 2 returned: length 0\n"
        "rx chain 3: length 72\n"
        "rx payload: crosvm-rx-ok\n"
        "done\n");
  // Only the good frame left the guest.
  CHECK(tap.received_from_guest() == std::vector<std::string>{"crosvm-tx-ok"});
  CHECK(vm.log().find("bad request from the guest") != std::string::npos);
}
