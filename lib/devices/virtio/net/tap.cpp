#include "devices/virtio/net/tap.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

namespace crosvm::virtio {
namespace {

// The offloads worth asking a TAP for, best first: kernels without UFO on
// TAPs refuse the whole set.
constexpr unsigned kOffloadSets[] = {
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO,
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN,
    TUN_F_CSUM,
};

ifreq request_for(const std::string& name) {
  ifreq request{};
  std::strncpy(request.ifr_name, name.c_str(), IFNAMSIZ - 1);
  return request;
}

std::string permission_hint(int error) {
  return error == EPERM || error == EACCES
             ? " (a TAP the user does not own, or a new one, needs CAP_NET_ADMIN: make one with "
               "'ip tuntap add NAME mode tap user USER' and pass tap-name=NAME)"
             : "";
}

Result<UniqueFd> open_tun_device() {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return make_errno_error(ErrorCode::kDevice, errno, "cannot open /dev/net/tun");
  return fd;
}

// Through an ordinary socket of the VMM's network namespace, where the TAP is.
Result<void> interface_ioctl(unsigned long request, ifreq& arguments, std::string_view what) {
  UniqueFd socket(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!socket) return make_errno_error(ErrorCode::kDevice, errno, "TAP {}: socket", arguments.ifr_name);
  if (::ioctl(socket.get(), request, &arguments) != 0) {
    const int error = errno;
    return make_errno_error(ErrorCode::kDevice, error, "TAP {}: cannot {}{}", arguments.ifr_name, what,
                            permission_hint(error));
  }
  return {};
}

Result<uint16_t> interface_mtu(const std::string& name) {
  ifreq request = request_for(name);
  CROSVM_TRY(interface_ioctl(SIOCGIFMTU, request, "read the MTU"));
  return static_cast<uint16_t>(std::clamp(request.ifr_mtu, 68, 65535));
}

Result<sockaddr> ipv4_address(const std::string& text, std::string_view key) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  if (::inet_pton(AF_INET, text.c_str(), &address.sin_addr) != 1) {
    return make_error(ErrorCode::kInvalidArgument, "net: {} must be an IPv4 address, not '{}'", key, text);
  }
  sockaddr result{};
  std::memcpy(&result, &address, sizeof(address));
  return result;
}

}  // namespace

namespace {

// `queues` fds on the TAP called `name` ("vmtap%d": a new one, numbered by
// the kernel), each a queue of it.
Result<OpenedTap> attach_queues(const std::string& name, unsigned queues) {
  OpenedTap tap{{}, name, 1500};
  for (unsigned i = 0; i < queues; ++i) {
    UniqueFd fd = CROSVM_TRY(open_tun_device());
    ifreq request = request_for(tap.name);
    request.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (queues > 1 ? IFF_MULTI_QUEUE : 0));
    if (::ioctl(fd.get(), TUNSETIFF, &request) != 0) {
      const int error = errno;
      return make_errno_error(ErrorCode::kDevice, error, "cannot {} TAP {}{}{}",
                              name.find('%') != std::string::npos ? "create a" : "open", name,
                              queues > 1 ? fmt::format(" (queue {} of {})", i + 1, queues) : "",
                              permission_hint(error));
    }
    tap.name = request.ifr_name;
    tap.queues.push_back(std::move(fd));
  }
  return tap;
}

}  // namespace

Result<OpenedTap> open_tap(const std::string& name, unsigned queues) {
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('%') != std::string::npos) {
    return make_error(ErrorCode::kInvalidArgument, "net: tap-name must have 1 to {} characters and no '%'",
                      IFNAMSIZ - 1);
  }
  OpenedTap tap = CROSVM_TRY(attach_queues(name, queues));
  tap.mtu = CROSVM_TRY(interface_mtu(tap.name));
  return tap;
}

Result<OpenedTap> create_tap(const std::string& host_ip, const std::string& netmask, unsigned queues) {
  const sockaddr address = CROSVM_TRY(ipv4_address(host_ip, "host-ip"));
  const sockaddr mask = CROSVM_TRY(ipv4_address(netmask, "netmask"));
  OpenedTap tap = CROSVM_TRY(attach_queues("vmtap%d", queues));
  const std::string name = tap.name;
  ifreq configure = request_for(name);
  configure.ifr_addr = address;
  CROSVM_TRY(interface_ioctl(SIOCSIFADDR, configure, "set host-ip"));
  configure = request_for(name);
  configure.ifr_netmask = mask;
  CROSVM_TRY(interface_ioctl(SIOCSIFNETMASK, configure, "set the netmask"));
  configure = request_for(name);
  CROSVM_TRY(interface_ioctl(SIOCGIFFLAGS, configure, "read its flags"));
  configure.ifr_flags = static_cast<short>(configure.ifr_flags | IFF_UP | IFF_RUNNING);
  CROSVM_TRY(interface_ioctl(SIOCSIFFLAGS, configure, "bring it up"));
  tap.mtu = CROSVM_TRY(interface_mtu(name));
  return tap;
}

Result<OpenedTap> adopt_tap_fd(int fd) {
  ifreq request{};
  if (::ioctl(fd, TUNGETIFF, &request) != 0) {
    return make_errno_error(ErrorCode::kInvalidArgument, errno, "net: tap-fd={} is not a TAP", fd);
  }
  if ((request.ifr_flags & IFF_TAP) == 0) {
    return make_error(ErrorCode::kInvalidArgument, "net: tap-fd={} is a TUN, not a TAP", fd);
  }
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) return make_errno_error(ErrorCode::kIo, errno, "net: cannot duplicate tap-fd={}", fd);
  OpenedTap tap{{}, request.ifr_name, 1500};
  tap.queues.push_back(std::move(copy));
  tap.mtu = CROSVM_TRY(interface_mtu(tap.name));
  return tap;
}

Result<std::unique_ptr<Tap>> Tap::create(UniqueFd fd, std::string description) {
  ifreq request{};
  if (::ioctl(fd.get(), TUNGETIFF, &request) != 0) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: not a TAP", description);
  }
  // The open file is shared with whoever gave it (tap-fd): reads must not
  // block the device's thread.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: cannot make it non-blocking", description);
  }
  const bool header = (request.ifr_flags & IFF_VNET_HDR) != 0;
  unsigned offloads = 0;
  if (header) {
    int size = kHeaderSize;
    if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &size) != 0) {
      return make_errno_error(ErrorCode::kDevice, errno, "{}: cannot set the header size", description);
    }
    for (const unsigned set : kOffloadSets) {
      if (::ioctl(fd.get(), TUNSETOFFLOAD, static_cast<unsigned long>(set)) == 0) {
        offloads = set;
        break;
      }
    }
    // Nothing until a driver asks for it.
    if (::ioctl(fd.get(), TUNSETOFFLOAD, 0ul) != 0) {
      return make_errno_error(ErrorCode::kDevice, errno, "{}: cannot clear its offloads", description);
    }
  }
  const bool multi_queue = (request.ifr_flags & IFF_MULTI_QUEUE) != 0;
  return std::unique_ptr<Tap>(new Tap(std::move(fd), std::move(description), header, multi_queue, offloads));
}

Result<void> Tap::set_enabled(bool enabled) {
  if (!multi_queue_ || enabled == attached_) return {};
  ifreq request{};
  request.ifr_flags = static_cast<short>(enabled ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE);
  if (::ioctl(fd_.get(), TUNSETQUEUE, &request) != 0) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: cannot {} a queue", description_,
                            enabled ? "attach" : "detach");
  }
  attached_ = enabled;
  return {};
}

Result<void> Tap::set_offloads(unsigned offloads) {
  if (!header_) return {};
  if (::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(offloads & offloads_)) != 0) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: cannot set offloads {:#x}", description_, offloads);
  }
  return {};
}

Result<size_t> Tap::receive(std::span<uint8_t> buffer) {
  while (true) {
    const ssize_t got = ::read(fd_.get(), buffer.data(), buffer.size());
    if (got >= 0) return static_cast<size_t>(got);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    return make_errno_error(ErrorCode::kIo, errno, "{}: read", description_);
  }
}

Result<NetBackend::Sent> Tap::send(std::span<const iovec> frame) {
  while (true) {
    if (::writev(fd_.get(), frame.data(), static_cast<int>(frame.size())) >= 0) return Sent::kSent;
    switch (errno) {
      case EINTR:
        continue;
      case EAGAIN:
      case ENOBUFS:
      case ENOMEM:
        return Sent::kNoRoom;
      case EINVAL:
      case EMSGSIZE:
      case EFAULT:
        return Sent::kRefused;
      default:
        return make_errno_error(ErrorCode::kIo, errno, "{}: write", description_);
    }
  }
}

}  // namespace crosvm::virtio
