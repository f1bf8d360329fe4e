// A vhost-user frontend that sends anything: bytes on the socket (the
// reader: sizes, fds, torn messages) and messages with any fds (the
// backend: memory tables, rings, queue indexes, kick and call fds that may
// be no eventfds), served by a real device. Never a crash, a hang or a
// leak; an error ends the session and the backend can start another.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vhost_user/backend.h"
#include "devices/virtio/rng/rng.h"
#include "fuzz_common.h"

using namespace crosvm;
using namespace crosvm::vhost_user;

namespace {

Logger quiet() {
  return Logger([](LogLevel, std::string_view) {}, LogLevel::kError);
}

UniqueFd make_fd(uint8_t kind) {
  switch (kind % 3) {
    case 0:
      return UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    case 1: {
      UniqueFd fd(::memfd_create("fuzz-guest", MFD_CLOEXEC));
      if (::ftruncate(fd.get(), 1 << 20) != 0) return {};
      return fd;
    }
    default: {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return {};
      ::close(fds[1]);
      return UniqueFd(fds[0]);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  Backend backend(std::make_shared<virtio::Rng>(quiet()), quiet());
  if (input.ConsumeBool()) {
    // Bytes on the socket, with a few fds beside the first of them.
    auto [writer, reader] = Connection::pair().value();
    const size_t fd_count = input.ConsumeIntegralInRange<size_t>(0, 10);
    std::vector<UniqueFd> owned;
    for (size_t i = 0; i < fd_count; ++i) owned.push_back(make_fd(input.ConsumeIntegral<uint8_t>()));
    const std::vector<uint8_t> bytes = input.ConsumeRemainingBytes<uint8_t>();
    if (!bytes.empty()) {
      std::vector<int> fds;
      for (const UniqueFd& fd : owned) fds.push_back(fd.get());
      iovec vector{.iov_base = const_cast<uint8_t*>(bytes.data()), .iov_len = bytes.size()};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 10)] = {};
      msghdr message{};
      message.msg_iov = &vector;
      message.msg_iovlen = 1;
      if (!fds.empty()) {
        message.msg_control = control;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* entry = CMSG_FIRSTHDR(&message);
        entry->cmsg_level = SOL_SOCKET;
        entry->cmsg_type = SCM_RIGHTS;
        entry->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(entry), fds.data(), sizeof(int) * fds.size());
      }
      if (::sendmsg(writer.fd(), &message, MSG_DONTWAIT) < 0) return 0;
    }
    ::shutdown(writer.fd(), SHUT_WR);
    // serve() reads until the end of the bytes or the first error.
    auto served = backend.serve(reader);
    if (!served) FUZZ_CHECK(served.error().code != ErrorCode::kInternal);
    return 0;
  }
  // Whole messages straight to the backend, each with fds of its own.
  while (input.remaining_bytes() > 0) {
    Message message;
    message.header.request = input.ConsumeIntegralInRange<uint32_t>(0, 42);
    message.header.flags = input.ConsumeBool() ? kVersion : input.ConsumeIntegral<uint32_t>();
    if (input.ConsumeBool()) message.header.flags |= kFlagNeedReply;
    const size_t fd_count = input.ConsumeIntegralInRange<size_t>(0, 3);
    for (size_t i = 0; i < fd_count; ++i) message.fds.push_back(make_fd(input.ConsumeIntegral<uint8_t>()));
    message.body = input.ConsumeBytes<uint8_t>(input.ConsumeIntegralInRange<size_t>(0, 300));
    message.header.size = static_cast<uint32_t>(message.body.size());
    const uint32_t request = message.header.request;
    auto reply = backend.handle(std::move(message));
    if (!reply) {
      FUZZ_CHECK(reply.error().code != ErrorCode::kInternal);
      backend.reset();  // the session ends; a new frontend may come
      continue;
    }
    if (*reply) {
      FUZZ_CHECK((*reply)->header.request == request && (*reply)->is_reply());
      FUZZ_CHECK((*reply)->body.size() <= kMaxBody && (*reply)->fds.empty());
    }
  }
  return 0;
}
