// A vhost-user backend that answers anything: the frontend negotiates,
// activates a queue and resets it against replies taken from the input
// (wrong requests, sizes, fds, configurations, NACKs, a connection that
// ends). It either refuses the backend with an error or works within what
// it was told; never a crash or a hang.
#include <sys/socket.h>

#include "vhost_user/frontend.h"
#include "fuzz_common.h"

using namespace crosvm;
using namespace crosvm::vhost_user;

namespace {

Logger quiet() {
  return Logger([](LogLevel, std::string_view) {}, LogLevel::kError);
}

class NoInterrupt final : public virtio::Interrupt {
 public:
  void signal_used(uint16_t) override {}
  void signal_config_change() override {}
  void report_needs_reset(std::string_view) override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;  // what fits in the socket's buffer
  FuzzedDataProvider input(data, size);
  const char* kinds[] = {"block", "fs", "rng"};
  const FrontendKind& kind = *find_frontend_kind(kinds[input.ConsumeIntegralInRange<int>(0, 2)]);
  auto [ours, theirs] = Connection::pair().value();
  // Every answer the backend will give, written before it is asked.
  const std::vector<uint8_t> answers = input.ConsumeRemainingBytes<uint8_t>();
  if (!answers.empty() && ::send(theirs.fd(), answers.data(), answers.size(), MSG_DONTWAIT) < 0) return 0;
  ::shutdown(theirs.fd(), SHUT_WR);

  auto frontend = Frontend::create(kind, std::move(ours), {.socket = "(fuzz)", .name = "fuzz", .tag = "tag"}, quiet());
  if (!frontend) return 0;
  const auto sizes = (*frontend)->queue_max_sizes();
  FUZZ_CHECK(!sizes.empty() && sizes.size() <= 64);
  uint8_t config[64];
  (*frontend)->read_config(0, config);

  static GuestMemory shared = [] {
    const GuestRegion region{0, 1 << 16};
    return GuestMemory::create(std::span(&region, 1), {.shared = true}).value();
  }();
  virtio::Activation activation;
  activation.memory = &shared;
  activation.features = virtio::kFeatureVersion1 | (*frontend)->device_features();
  activation.interrupt = std::make_shared<NoInterrupt>();
  auto queue = virtio::SplitQueue::create(shared, {16, 0x1000, 0x2000, 0x3000}, 256, false, false);
  FUZZ_CHECK(queue.ok());
  activation.queues.push_back(virtio::ActiveQueue{0, std::move(queue).value(), EventFd::create().value()});
  if ((*frontend)->activate(std::move(activation))) (*frontend)->reset();
  return 0;
}
