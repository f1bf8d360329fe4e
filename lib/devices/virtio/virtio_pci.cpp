#include "devices/virtio/virtio_pci.h"

#include <sys/eventfd.h>

#include <cstring>

namespace crosvm::virtio {
namespace {

constexpr uint16_t kVirtioVendor = 0x1af4;
constexpr uint16_t kModernDeviceIdBase = 0x1040;
constexpr uint16_t kSubsystemId = 0x1100;

constexpr uint8_t kCapCommon = 1;
constexpr uint8_t kCapNotify = 2;
constexpr uint8_t kCapIsr = 3;
constexpr uint8_t kCapDevice = 4;
constexpr uint8_t kCapPciCfg = 5;
constexpr uint16_t kPciCfgBar = 4;
constexpr uint16_t kPciCfgOffset = 8;
constexpr uint16_t kPciCfgLength = 12;
constexpr uint16_t kPciCfgData = 16;

constexpr uint8_t kIsrQueue = 1;
constexpr uint8_t kIsrConfig = 2;

constexpr uint16_t kMsixControl = 2;
constexpr uint16_t kMsixEnable = 1 << 15;
constexpr uint16_t kMsixFunctionMask = 1 << 14;

// Common configuration register offsets (4.1.4.3).
constexpr uint64_t kDeviceFeatureSelect = 0x00;
constexpr uint64_t kDeviceFeature = 0x04;
constexpr uint64_t kDriverFeatureSelect = 0x08;
constexpr uint64_t kDriverFeature = 0x0c;
constexpr uint64_t kConfigMsixVector = 0x10;
constexpr uint64_t kNumQueues = 0x12;
constexpr uint64_t kDeviceStatus = 0x14;
constexpr uint64_t kConfigGeneration = 0x15;
constexpr uint64_t kQueueSelect = 0x16;
constexpr uint64_t kQueueSize = 0x18;
constexpr uint64_t kQueueMsixVector = 0x1a;
constexpr uint64_t kQueueEnable = 0x1c;
constexpr uint64_t kQueueNotifyOff = 0x1e;
constexpr uint64_t kQueueDesc = 0x20;
constexpr uint64_t kQueueDriver = 0x28;
constexpr uint64_t kQueueDevice = 0x30;

std::vector<uint8_t> virtio_capability(uint8_t type, uint64_t offset, uint64_t length,
                                       size_t extra_bytes = 0) {
  std::vector<uint8_t> body(16 + extra_bytes, 0);
  body[0] = pci::kCapabilityVendor;
  body[2] = static_cast<uint8_t>(body.size());
  body[3] = type;
  body[4] = 0;  // BAR 0
  const uint32_t offset32 = static_cast<uint32_t>(offset);
  const uint32_t length32 = static_cast<uint32_t>(length);
  std::memcpy(&body[8], &offset32, 4);
  std::memcpy(&body[12], &length32, 4);
  return body;
}

uint64_t little_endian(std::span<const uint8_t> data) {
  uint64_t value = 0;
  std::memcpy(&value, data.data(), std::min<size_t>(data.size(), 8));
  return value;
}

bool inside(uint64_t offset, size_t size, uint64_t base, uint64_t length) {
  return offset >= base && offset - base <= length && size <= length - (offset - base);
}

}  // namespace

// Interrupt delivery, shared with the device's worker: it touches only the
// MSI-X table (its own lock), the INTx line and its own small state, never
// the transport's registers, so a device signalling while a vCPU resets it
// cannot deadlock.
class VirtioPciDevice::TransportInterrupt final : public Interrupt {
 public:
  TransportInterrupt(std::shared_ptr<pci::MsixTable> msix, std::shared_ptr<LevelIrqLine> intx,
                     size_t queue_count, std::shared_ptr<GuestLog> log)
      : msix_(std::move(msix)),
        intx_(std::move(intx)),
        queue_vectors_(queue_count),
        log_(std::move(log)) {
    reset();
  }

  void signal_used(uint16_t queue) override {
    if (msix_->enabled()) {
      if (queue < queue_vectors_.size()) fire(queue_vectors_[queue].load());
      return;
    }
    raise_isr(kIsrQueue);
  }

  void signal_config_change() override {
    generation_.fetch_add(1);
    notify_config();
  }

  void report_needs_reset(std::string_view why) override {
    if (!needs_reset_.exchange(true)) log_->warn("{}; the device needs a reset", why);
    notify_config();
  }

  std::optional<int> direct_queue_fd(uint16_t queue) override {
    if (queue >= queue_vectors_.size() || !msix_->enabled()) return std::nullopt;
    const uint16_t vector = queue_vectors_[queue];
    if (vector == kNoVector) return std::nullopt;
    return msix_->direct_fd(vector);
  }

  void watch_direct_fds(std::function<void()> on_change) override {
    msix_->set_route_listener(std::move(on_change));
  }

  uint8_t take_isr() {
    std::lock_guard lock(isr_mutex_);
    const uint8_t value = std::exchange(isr_, 0);
    if (value != 0 && intx_) intx_->set_level(false);
    return value;
  }

  void set_intx_disabled(bool disabled) {
    std::lock_guard lock(isr_mutex_);
    intx_disabled_ = disabled;
    if (intx_) intx_->set_level(!disabled && isr_ != 0);
  }

  void set_queue_vector(size_t queue, uint16_t vector) { queue_vectors_[queue] = vector; }
  void set_config_vector(uint16_t vector) { config_vector_ = vector; }
  uint16_t config_vector() const { return config_vector_; }
  uint8_t generation() const { return generation_; }
  bool needs_reset() const { return needs_reset_; }

  void reset() {
    {
      std::lock_guard lock(isr_mutex_);
      if (isr_ != 0 && intx_) intx_->set_level(false);
      isr_ = 0;
    }
    needs_reset_ = false;
    config_vector_ = kNoVector;
    for (auto& vector : queue_vectors_) vector = kNoVector;
  }

 private:
  void fire(uint16_t vector) {
    if (vector != kNoVector) msix_->trigger(vector);
  }
  void notify_config() {
    if (msix_->enabled()) {
      fire(config_vector_);
    } else {
      raise_isr(kIsrConfig);
    }
  }
  void raise_isr(uint8_t bit) {
    std::lock_guard lock(isr_mutex_);
    isr_ |= bit;
    if (intx_ && !intx_disabled_) intx_->set_level(true);
  }

  std::shared_ptr<pci::MsixTable> msix_;
  std::shared_ptr<LevelIrqLine> intx_;
  std::vector<std::atomic<uint16_t>> queue_vectors_;
  std::atomic<uint16_t> config_vector_{kNoVector};
  std::atomic<uint8_t> generation_{0};
  std::atomic<bool> needs_reset_{false};
  std::mutex isr_mutex_;
  uint8_t isr_ = 0;
  bool intx_disabled_ = false;
  std::shared_ptr<GuestLog> log_;
};

Result<std::shared_ptr<VirtioPciDevice>> VirtioPciDevice::create(std::shared_ptr<VirtioDevice> device,
                                                                 PciTransportResources resources) {
  const std::vector<uint16_t> sizes = device->queue_max_sizes();
  if (sizes.empty() || sizes.size() > kMaxQueues) {
    return make_error(ErrorCode::kDevice, "{}: {} queues is not supported", device->name(), sizes.size());
  }
  pci::ConfigSpace config(pci::HeaderInfo{
      .vendor_id = kVirtioVendor,
      .device_id = static_cast<uint16_t>(kModernDeviceIdBase + static_cast<uint32_t>(device->type())),
      .revision = 1,
      .class_code = device->pci_class(),
      .subsystem_vendor_id = kVirtioVendor,
      .subsystem_id = kSubsystemId,
      .interrupt_pin = 1,
      .interrupt_line = resources.intx_gsi,
      .command = pci::kCommandMemorySpace,
  });
  config.add_bar(pci::BarSpec{.index = 0, .size = kBarSize, .address = resources.bar_address});

  auto device_pointer = std::shared_ptr<VirtioPciDevice>(
      new VirtioPciDevice(std::move(device), std::move(resources), std::move(config)));
  VirtioPciDevice& self = *device_pointer;

  const uint16_t vectors = static_cast<uint16_t>(sizes.size() + 1);  // one per queue, one for config
  self.msix_ = CROSVM_TRY(pci::MsixTable::create(vectors, *self.resources_.msi_router, self.guest_log_));
  std::vector<uint8_t> msix(12, 0);
  msix[0] = pci::kCapabilityMsix;
  const uint16_t control = vectors - 1;
  const uint32_t table = static_cast<uint32_t>(kMsixTableOffset);  // BIR 0 in the low bits
  const uint32_t pba = static_cast<uint32_t>(kMsixPbaOffset);
  std::memcpy(&msix[2], &control, 2);
  std::memcpy(&msix[4], &table, 4);
  std::memcpy(&msix[8], &pba, 4);
  std::vector<uint8_t> msix_writable(12, 0);
  msix_writable[3] = static_cast<uint8_t>((kMsixEnable | kMsixFunctionMask) >> 8);
  self.msix_capability_ = CROSVM_TRY(self.config_.add_capability(msix, msix_writable));

  CROSVM_TRY(self.config_.add_capability(virtio_capability(kCapCommon, kCommonOffset, kCommonSize), {}));
  std::vector<uint8_t> notify = virtio_capability(kCapNotify, kNotifyOffset, sizes.size() * kNotifyMultiplier, 4);
  std::memcpy(&notify[16], &kNotifyMultiplier, 4);
  CROSVM_TRY(self.config_.add_capability(notify, {}));
  CROSVM_TRY(self.config_.add_capability(virtio_capability(kCapIsr, kIsrOffset, 1), {}));
  CROSVM_TRY(self.config_.add_capability(
      virtio_capability(kCapDevice, kDeviceConfigOffset, kDeviceConfigSize), {}));
  // VIRTIO_PCI_CAP_PCI_CFG: a window onto BAR 0 through configuration space.
  std::vector<uint8_t> window_writable(20, 0);
  window_writable[kPciCfgBar] = 0xff;
  std::fill(window_writable.begin() + kPciCfgOffset, window_writable.end(), 0xff);
  self.pci_cfg_capability_ = CROSVM_TRY(
      self.config_.add_capability(virtio_capability(kCapPciCfg, 0, 0, 4), window_writable));

  for (size_t i = 0; i < sizes.size(); ++i) {
    self.kicks_.push_back(CROSVM_TRY(EventFd::create(EFD_NONBLOCK)));
    QueueState queue;
    queue.max_size = queue.size = sizes[i];
    self.queues_.push_back(queue);
  }
  self.interrupt_ = std::make_shared<TransportInterrupt>(self.msix_, self.resources_.intx, sizes.size(),
                                                         self.guest_log_);
  return device_pointer;
}

VirtioPciDevice::VirtioPciDevice(std::shared_ptr<VirtioDevice> device, PciTransportResources resources,
                                 pci::ConfigSpace config)
    : device_(std::move(device)),
      resources_(std::move(resources)),
      logger_(resources_.logger),
      guest_log_(std::make_shared<GuestLog>(logger_, std::string(device_->name()))),
      config_(std::move(config)) {}

VirtioPciDevice::~VirtioPciDevice() {
  device_->reset();
  if (notify_base_) bar_mapped(0, std::nullopt);
}

uint64_t VirtioPciDevice::offered_features() const {
  return device_->device_features() | kFeatureVersion1 |
         (device_->ring_features() & (kFeatureEventIndex | kFeatureIndirectDescriptors));
}

uint8_t VirtioPciDevice::device_status() const {
  std::lock_guard lock(mutex_);
  return static_cast<uint8_t>(status_ | (interrupt_->needs_reset() ? kStatusNeedsReset : 0));
}

uint32_t VirtioPciDevice::config_read(uint16_t offset) {
  if (offset == pci_cfg_capability_ + kPciCfgData) {
    uint8_t data[4] = {};
    handle_pci_cfg_access(false, data);
    uint32_t value;
    std::memcpy(&value, data, 4);
    return value;
  }
  return config_.read_dword(offset);
}

void VirtioPciDevice::config_write(uint16_t offset, std::span<const uint8_t> data) {
  config_.write(offset, data);
  const uint16_t end = static_cast<uint16_t>(offset + data.size());
  const uint16_t control = static_cast<uint16_t>(msix_capability_ + kMsixControl);
  if (offset < control + 2 && end > control) {
    const uint16_t value = config_.word(control);
    msix_->set_control((value & kMsixEnable) != 0, (value & kMsixFunctionMask) != 0);
  }
  const uint16_t window = static_cast<uint16_t>(pci_cfg_capability_ + kPciCfgData);
  if (offset < window + 4 && end > window) {
    uint8_t bytes[4];
    const uint32_t value = config_.dword(window);
    std::memcpy(bytes, &value, 4);
    handle_pci_cfg_access(true, bytes);
  }
  interrupt_->set_intx_disabled((config_.command() & pci::kCommandInterruptDisable) != 0);
}

void VirtioPciDevice::handle_pci_cfg_access(bool is_write, std::span<uint8_t> data) {
  const uint8_t bar = config_.byte(pci_cfg_capability_ + kPciCfgBar);
  const uint32_t offset = config_.dword(pci_cfg_capability_ + kPciCfgOffset);
  const uint32_t length = config_.dword(pci_cfg_capability_ + kPciCfgLength);
  if (bar != 0 || (length != 1 && length != 2 && length != 4) || offset % length != 0 ||
      !inside(offset, length, 0, kBarSize)) {
    return;
  }
  if (is_write) {
    bar_write(0, offset, data.first(length));
  } else {
    bar_read(0, offset, data.first(length));
  }
}

void VirtioPciDevice::bar_read(uint8_t bar, uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (bar != 0) return;
  if (inside(offset, data.size(), kCommonOffset, kCommonSize)) {
    read_common(offset - kCommonOffset, data);
  } else if (offset == kIsrOffset && !data.empty()) {
    data[0] = interrupt_->take_isr();  // reading acknowledges
  } else if (inside(offset, data.size(), kDeviceConfigOffset, kDeviceConfigSize)) {
    device_->read_config(offset - kDeviceConfigOffset, data);
  } else if (inside(offset, data.size(), kMsixTableOffset, msix_->table_bytes())) {
    msix_->read_table(offset - kMsixTableOffset, data);
  } else if (inside(offset, data.size(), kMsixPbaOffset, msix_->pba_bytes())) {
    msix_->read_pba(offset - kMsixPbaOffset, data);
  }
}

void VirtioPciDevice::bar_write(uint8_t bar, uint64_t offset, std::span<const uint8_t> data) {
  if (bar != 0) return;
  if (inside(offset, data.size(), kCommonOffset, kCommonSize)) {
    write_common(offset - kCommonOffset, data);
  } else if (inside(offset, data.size(), kDeviceConfigOffset, kDeviceConfigSize)) {
    device_->write_config(offset - kDeviceConfigOffset, data);
  } else if (inside(offset, data.size(), kNotifyOffset, kicks_.size() * kNotifyMultiplier)) {
    // Only when the ioeventfd did not match (another width, or not yet
    // registered): the kick still goes to the device's worker.
    kicks_[(offset - kNotifyOffset) / kNotifyMultiplier].signal();
  } else if (inside(offset, data.size(), kMsixTableOffset, msix_->table_bytes())) {
    msix_->write_table(offset - kMsixTableOffset, data);
  }
}

void VirtioPciDevice::bar_mapped(uint8_t bar, std::optional<uint64_t> address) {
  if (bar != 0) return;
  std::lock_guard lock(mutex_);
  if (notify_base_ == address) return;
  for (size_t i = 0; notify_base_ && i < kicks_.size(); ++i) {
    (void)resources_.io_events->unregister_mmio(kicks_[i], *notify_base_ + i * kNotifyMultiplier, 2);
  }
  notify_base_.reset();
  if (!address) return;
  const uint64_t base = *address + kNotifyOffset;
  for (size_t i = 0; i < kicks_.size(); ++i) {
    if (auto registered = resources_.io_events->register_mmio(kicks_[i], base + i * kNotifyMultiplier, 2);
        !registered) {
      // The MMIO exit path in bar_write() still delivers the kick.
      guest_log_->warn("queue {} notifications go through the VMM: {}", i,
                   registered.error().message);
    }
  }
  notify_base_ = base;
}

void VirtioPciDevice::read_common(uint64_t offset, std::span<uint8_t> data) {
  uint8_t registers[kCommonSize] = {};
  auto put = [&registers](uint64_t at, uint64_t value, size_t width) {
    std::memcpy(&registers[at], &value, width);
  };
  {
    std::lock_guard lock(mutex_);
    const uint64_t offered = offered_features();
    put(kDeviceFeatureSelect, device_feature_select_, 4);
    put(kDeviceFeature, device_feature_select_ < 2 ? offered >> (32 * device_feature_select_) : 0, 4);
    put(kDriverFeatureSelect, driver_feature_select_, 4);
    put(kDriverFeature, driver_feature_select_ < 2 ? driver_features_ >> (32 * driver_feature_select_) : 0, 4);
    put(kConfigMsixVector, interrupt_->config_vector(), 2);
    put(kNumQueues, queues_.size(), 2);
    put(kDeviceStatus, status_ | (interrupt_->needs_reset() ? kStatusNeedsReset : 0), 1);
    put(kConfigGeneration, interrupt_->generation(), 1);
    put(kQueueSelect, queue_select_, 2);
    if (queue_select_ < queues_.size()) {  // otherwise all zero: size 0 means "no such queue"
      const QueueState& queue = queues_[queue_select_];
      put(kQueueSize, queue.size, 2);
      put(kQueueMsixVector, queue.msix_vector, 2);
      put(kQueueEnable, queue.enabled ? 1 : 0, 2);
      put(kQueueNotifyOff, queue_select_, 2);
      put(kQueueDesc, queue.addresses.descriptor_table, 8);
      put(kQueueDriver, queue.addresses.available_ring, 8);
      put(kQueueDevice, queue.addresses.used_ring, 8);
    }
  }
  std::memcpy(data.data(), &registers[offset], data.size());
}

void VirtioPciDevice::write_common(uint64_t offset, std::span<const uint8_t> data) {
  const uint64_t value = little_endian(data);
  auto is = [&](uint64_t at, size_t width) { return offset == at && data.size() == width; };
  // A 64-bit queue address, written whole or as two dwords.
  auto set_address = [&](uint64_t& field, uint64_t base) {
    if (is(base, 8)) {
      field = value;
    } else if (is(base, 4)) {
      field = (field & ~uint64_t{0xffffffff}) | value;
    } else if (is(base + 4, 4)) {
      field = (field & uint64_t{0xffffffff}) | (value << 32);
    } else {
      return false;
    }
    return true;
  };
  auto valid_vector = [this](uint64_t vector) {
    return vector < msix_->vector_count() ? static_cast<uint16_t>(vector) : kNoVector;
  };

  std::lock_guard lock(mutex_);
  const bool driver_ok = (status_ & kStatusDriverOk) != 0;
  if (is(kDeviceFeatureSelect, 4)) {
    device_feature_select_ = static_cast<uint32_t>(value);
  } else if (is(kDriverFeatureSelect, 4)) {
    driver_feature_select_ = static_cast<uint32_t>(value);
  } else if (is(kDriverFeature, 4)) {
    if ((status_ & kStatusFeaturesOk) == 0 && driver_feature_select_ < 2) {
      const unsigned shift = 32 * driver_feature_select_;
      driver_features_ = (driver_features_ & ~(uint64_t{0xffffffff} << shift)) | (value << shift);
    }
  } else if (is(kConfigMsixVector, 2)) {
    if (!driver_ok) interrupt_->set_config_vector(valid_vector(value));
  } else if (is(kDeviceStatus, 1)) {
    write_status_locked(static_cast<uint8_t>(value));
  } else if (is(kQueueSelect, 2)) {
    queue_select_ = static_cast<uint16_t>(value);
  } else if (offset >= kQueueSize) {
    // Queue registers: read-only after DRIVER_OK, for a queue that does not
    // exist, and for a queue the driver has already enabled.
    if (driver_ok || queue_select_ >= queues_.size() || queues_[queue_select_].enabled) return;
    QueueState& queue = queues_[queue_select_];
    if (is(kQueueSize, 2)) {
      queue.size = static_cast<uint16_t>(value);  // checked at DRIVER_OK
    } else if (is(kQueueMsixVector, 2)) {
      queue.msix_vector = valid_vector(value);
      interrupt_->set_queue_vector(queue_select_, queue.msix_vector);
    } else if (is(kQueueEnable, 2)) {
      queue.enabled = value == 1;  // writing 0 is not a way to disable
    } else {
      (void)(set_address(queue.addresses.descriptor_table, kQueueDesc) ||
             set_address(queue.addresses.available_ring, kQueueDriver) ||
             set_address(queue.addresses.used_ring, kQueueDevice));
    }
  }
}

void VirtioPciDevice::write_status_locked(uint8_t value) {
  if (value == 0) {
    reset_locked();
    return;
  }
  if ((status_ & ~value) != 0) return;  // bits are only cleared by a reset
  const uint8_t added = static_cast<uint8_t>(value & ~status_);
  if ((added & kStatusFeaturesOk) != 0) {
    const uint64_t unknown = driver_features_ & ~offered_features();
    if (unknown != 0 || (driver_features_ & kFeatureVersion1) == 0) {
      guest_log_->warn("the driver accepted features {:#x} of {:#x} offered{}; FEATURES_OK refused",
                       driver_features_, offered_features(),
                       (driver_features_ & kFeatureVersion1) == 0 ? " without VERSION_1" : "");
      value = static_cast<uint8_t>(value & ~kStatusFeaturesOk);
    }
  }
  if ((value & kStatusDriverOk) != 0 && (value & kStatusFeaturesOk) == 0) {
    value = static_cast<uint8_t>(value & ~kStatusDriverOk);  // no DRIVER_OK without negotiation
  }
  status_ = value;
  if ((added & value & kStatusDriverOk) != 0) activate_locked();
}

void VirtioPciDevice::activate_locked() {
  Activation activation;
  activation.memory = resources_.memory;
  activation.features = driver_features_;
  activation.interrupt = interrupt_;
  const bool event_index = (driver_features_ & kFeatureEventIndex) != 0;
  const bool indirect = (driver_features_ & kFeatureIndirectDescriptors) != 0;
  for (uint16_t i = 0; i < queues_.size(); ++i) {
    const QueueState& state = queues_[i];
    if (!state.enabled) continue;
    QueueConfig config = state.addresses;
    config.size = state.size;
    auto queue = SplitQueue::create(*resources_.memory, config, state.max_size, event_index, indirect);
    if (!queue) {
      interrupt_->report_needs_reset(fmt::format("queue {}: {}", i, queue.error().message));
      return;
    }
    auto kick = kicks_[i].duplicate();
    if (!kick) {
      interrupt_->report_needs_reset(kick.error().message);
      return;
    }
    activation.queues.push_back(ActiveQueue{i, std::move(queue).value(), std::move(kick).value()});
  }
  if (auto activated = device_->activate(std::move(activation)); !activated) {
    interrupt_->report_needs_reset(activated.error().message);
    return;
  }
  active_ = true;
}

void VirtioPciDevice::reset_locked() {
  device_->reset();
  active_ = false;
  status_ = 0;
  device_feature_select_ = driver_feature_select_ = 0;
  driver_features_ = 0;
  queue_select_ = 0;
  for (QueueState& queue : queues_) {
    queue.size = queue.max_size;
    queue.msix_vector = kNoVector;
    queue.enabled = false;
    queue.addresses = {};
  }
  interrupt_->reset();
}

}  // namespace crosvm::virtio
