// User-mode networking: passt (a Debian package) started by the VMM on one
// end of a socketpair (its --fd), the NIC's FrameStream on the other. passt
// gives the guest an address by DHCP (and NDP/DHCPv6), answers DNS through
// the host's resolver, carries the guest's TCP and UDP through the host's
// own sockets, and forwards the host ports it is told to into the guest.
// Nothing needs root or CAP_NET_ADMIN and nothing is configured on the
// host; passt sandboxes itself (namespaces, seccomp) and quits when the
// NIC closes its end.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/log.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "sandbox/companion.h"

namespace crosvm::virtio {

// passt's largest MTU (and its default): 65535 less an Ethernet header,
// rounded down to whole IPv4 words.
inline constexpr uint16_t kPasstMaxMtu = 65520;

struct PasstOptions {
  std::string program = "passt";  // a path, or a name looked up on PATH
  std::string tcp_ports;          // passt's -t, e.g. "2222:22,8080"; empty: none
  std::string udp_ports;          // passt's -u
  uint16_t mtu = kPasstMaxMtu;    // what its DHCP and NDP tell the guest
  std::string name;               // the NIC, for the log
};

// Checks a forwarding spec before it reaches passt's command line: digits,
// ranges, addresses and interface names only ("2222:22", "127.0.0.1/8080",
// "22,80-90", "~8000"). An empty spec is valid (nothing forwarded).
Result<void> check_port_spec(std::string_view spec);

struct StartedPasst {
  UniqueFd connection;  // the NIC's end
  std::unique_ptr<sandbox::Companion> process;
};

Result<StartedPasst> start_passt(const PasstOptions& options, const Logger& logger);

}  // namespace crosvm::virtio
