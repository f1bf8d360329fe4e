#include "guest_vm.h"

#include <catch2/catch.hpp>

namespace guest_tests {

std::string program_path(const std::string& name) {
  return std::string(GUEST_PROGRAM_DIR) + "/" + name + ".elf";
}

GuestVm::GuestVm(const std::string& program, uint64_t memory_mib, uint32_t vcpus,
                 const std::function<void(crosvm_config*)>& configure) {
  crosvm_config* config = nullptr;
  REQUIRE(crosvm_config_create(&config) == CROSVM_OK);
  if (program.empty()) {
    REQUIRE(crosvm_config_set_demo_kernel(config) == CROSVM_OK);
  } else {
    REQUIRE(crosvm_config_set_kernel(config, program_path(program).c_str()) == CROSVM_OK);
  }
  REQUIRE(crosvm_config_set_memory_mib(config, memory_mib) == CROSVM_OK);
  REQUIRE(crosvm_config_set_vcpu_count(config, vcpus) == CROSVM_OK);
  crosvm_serial_options serial = CROSVM_SERIAL_OPTIONS_INIT;
  serial.type = CROSVM_SERIAL_CALLBACK;
  serial.callback = &GuestVm::on_output;
  serial.userdata = this;
  REQUIRE(crosvm_config_add_serial(config, &serial) == CROSVM_OK);
  REQUIRE(crosvm_config_set_log(config, CROSVM_LOG_DEBUG, &GuestVm::on_log, this) == CROSVM_OK);
  if (configure) configure(config);
  const int created = crosvm_vm_create(&vm_, config);
  crosvm_config_destroy(config);
  INFO(crosvm_error_message());
  REQUIRE(created == CROSVM_OK);
}

GuestVm::~GuestVm() { crosvm_vm_destroy(vm_); }

void GuestVm::start() {
  INFO(crosvm_error_message());
  REQUIRE(crosvm_vm_start(vm_) == CROSVM_OK);
}

crosvm_exit_reason GuestVm::wait_for_exit(std::chrono::seconds limit) {
  crosvm_exit_reason reason = CROSVM_EXIT_NONE;
  const int waited = crosvm_vm_wait(&reason, vm_, std::chrono::milliseconds(limit).count());
  INFO("console: " << output() << "\nlog: " << log() << "\nerror: " << crosvm_error_message());
  REQUIRE(waited == CROSVM_OK);
  return reason;
}

bool GuestVm::wait_for_output(const std::string& text, std::chrono::seconds limit) {
  return wait_for_output_after(0, text, limit);
}

bool GuestVm::wait_for_output_after(size_t offset, const std::string& text, std::chrono::seconds limit) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, limit, [&] { return output_.find(text, offset) != std::string::npos; });
}

void GuestVm::send(const std::string& text) {
  size_t written = 0;
  REQUIRE(crosvm_vm_serial_write(&written, vm_, 1, text.data(), text.size()) == CROSVM_OK);
  REQUIRE(written == text.size());
}

std::string GuestVm::output() const {
  std::lock_guard lock(mutex_);
  return output_;
}

std::string GuestVm::log() const {
  std::lock_guard lock(mutex_);
  return log_;
}

void GuestVm::on_output(const uint8_t* data, size_t length, void* userdata) {
  auto* self = static_cast<GuestVm*>(userdata);
  {
    std::lock_guard lock(self->mutex_);
    self->output_.append(reinterpret_cast<const char*>(data), length);
  }
  self->changed_.notify_all();
}

void GuestVm::on_log(int /*level*/, const char* message, void* userdata) {
  auto* self = static_cast<GuestVm*>(userdata);
  std::lock_guard lock(self->mutex_);
  self->log_ += message;
  self->log_ += "\n";
}

}  // namespace guest_tests
