#include "vm/device_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/unix_socket.h"
#include "vhost_user/backend.h"
#include "devices/virtio/block.h"
#include "devices/registry.h"
#include "disk/disk_file.h"
#include "vm/device_options.h"

namespace crosvm {
namespace {

Error invalid(std::string message) { return Error{ErrorCode::kInvalidArgument, std::move(message)}; }

Result<UniqueFd> listen_at(const std::string& path) {
  const sockaddr_un address = CROSVM_TRY(unix_socket_address(path, "vhost-user socket"));
  CROSVM_TRY(clear_stale_socket(path, address, "vhost-user socket"));
  // Bound under a temporary name and renamed once listening: whoever sees
  // the socket at `path` can connect at once.
  const std::string temporary = fmt::format("{}.{}", path, ::getpid());
  const sockaddr_un bound = CROSVM_TRY(unix_socket_address(temporary, "vhost-user socket"));
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener) return make_errno_error(ErrorCode::kIo, errno, "socket");
  ::unlink(temporary.c_str());
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&bound), sizeof(bound)) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "cannot bind {}", path);
  }
  if (::listen(listener.get(), 1) != 0 || ::rename(temporary.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(temporary.c_str());
    return make_errno_error(ErrorCode::kIo, saved, "cannot listen on {}", path);
  }
  return listener;
}

}  // namespace

std::string served_device_kinds() {
  std::string kinds = "block";
  for (const VirtioKind* kind : virtio_kinds()) kinds += ", " + std::string(kind->name);
  return kinds;
}

Result<ServedDevice> create_served_device(std::string_view kind, std::string_view options, const Logger& logger) {
  ServedDevice served;
  if (kind == "block") {
    VmConfig parsed;
    CROSVM_TRY(add_device(parsed, "block", options));
    const DiskConfig& disk = parsed.disks.front();
    if (disk.root) return invalid("block: root= is for a VM's command line, not a served disk");
    auto file = disk::open_disk(disk_options(disk));
    if (!file) return Error{ErrorCode::kDevice, file.error().message};
    served.device = std::make_shared<virtio::Block>(std::move(file).value(), block_device_options(disk),
                                                    fmt::format("virtio-blk ({})", disk.path), logger);
    return served;
  }
  if (const VirtioKind* unit = find_virtio_kind(kind)) {
    DeviceOptions parsed = CROSVM_TRY(parse_device_options(*unit, options));
    served.device = CROSVM_TRY(create_device_here(*unit, parsed, DeviceEnvironment{logger, 0, {}}, served.companions));
    return served;
  }
  return invalid(fmt::format("cannot serve a device of kind '{}' (known: {})", kind, served_device_kinds()));
}

Result<void> serve_device_on(std::string_view kind, std::string_view options, UniqueFd connection,
                             const Logger& logger) {
  ServedDevice served = CROSVM_TRY(create_served_device(kind, options, logger));
  vhost_user::Backend backend(std::move(served.device), logger);
  return backend.serve(vhost_user::Connection(std::move(connection)));
}

Result<void> serve_device_at(std::string_view kind, std::string_view options, const std::string& path,
                             const Logger& logger) {
  // The device first: a bad option fails before any socket exists.
  ServedDevice served = CROSVM_TRY(create_served_device(kind, options, logger));
  UniqueFd listener = CROSVM_TRY(listen_at(path));
  UniqueFd connection;
  do {
    connection.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  } while (!connection && errno == EINTR);
  const int saved = errno;
  ::unlink(path.c_str());
  listener.reset();
  if (!connection) return make_errno_error(ErrorCode::kIo, saved, "accept on {}", path);
  vhost_user::Backend backend(std::move(served.device), logger);
  return backend.serve(vhost_user::Connection(std::move(connection)));
}

}  // namespace crosvm
