#include "disk/decompress.h"

#include <dlfcn.h>
#include <zlib.h>
#include <zstd.h>

#include <mutex>
#include <optional>
#include <string>

namespace crosvm::disk {
namespace {

// The few entry points used, from the two libraries' own headers' types.
struct Decompressors {
  decltype(&::inflateInit2_) inflate_init = nullptr;
  decltype(&::inflate) inflate = nullptr;
  decltype(&::inflateEnd) inflate_end = nullptr;
  decltype(&::ZSTD_createDCtx) zstd_create = nullptr;
  decltype(&::ZSTD_decompressStream) zstd_decompress = nullptr;
  decltype(&::ZSTD_isError) zstd_is_error = nullptr;
  decltype(&::ZSTD_freeDCtx) zstd_free = nullptr;
};

template <typename Function>
Result<void> find(void* library, const char* library_name, const char* name, Function& function) {
  function = reinterpret_cast<Function>(::dlsym(library, name));
  if (function == nullptr) {
    return make_error(ErrorCode::kIo, "{} has no {} (compressed qcow2 clusters need it)", library_name, name);
  }
  return {};
}

Result<Decompressors> load() {
  // Never closed: the process keeps them, as if they had been linked.
  void* zlib = ::dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
  if (zlib == nullptr) return make_error(ErrorCode::kIo, "compressed qcow2 clusters need zlib: {}", ::dlerror());
  void* zstd = ::dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
  if (zstd == nullptr) return make_error(ErrorCode::kIo, "compressed qcow2 clusters need zstd: {}", ::dlerror());
  Decompressors found;
  CROSVM_TRY(find(zlib, "libz.so.1", "inflateInit2_", found.inflate_init));
  CROSVM_TRY(find(zlib, "libz.so.1", "inflate", found.inflate));
  CROSVM_TRY(find(zlib, "libz.so.1", "inflateEnd", found.inflate_end));
  CROSVM_TRY(find(zstd, "libzstd.so.1", "ZSTD_createDCtx", found.zstd_create));
  CROSVM_TRY(find(zstd, "libzstd.so.1", "ZSTD_decompressStream", found.zstd_decompress));
  CROSVM_TRY(find(zstd, "libzstd.so.1", "ZSTD_isError", found.zstd_is_error));
  CROSVM_TRY(find(zstd, "libzstd.so.1", "ZSTD_freeDCtx", found.zstd_free));
  return found;
}

Result<const Decompressors*> decompressors() {
  static std::once_flag once;
  static std::optional<Result<Decompressors>> loaded;
  std::call_once(once, [] { loaded.emplace(load()); });
  if (!*loaded) return loaded->error();
  return &loaded->value();
}

bool inflate_raw(const Decompressors& with, std::span<const uint8_t> input, std::span<uint8_t> output) {
  z_stream stream{};
  // inflateInit2(), a macro over inflateInit2_ that passes the header's version.
  if (with.inflate_init(&stream, -15, ZLIB_VERSION, static_cast<int>(sizeof(z_stream))) != Z_OK) return false;
  stream.next_in = const_cast<Bytef*>(input.data());
  stream.avail_in = static_cast<uInt>(input.size());
  stream.next_out = output.data();
  stream.avail_out = static_cast<uInt>(output.size());
  const int result = with.inflate(&stream, Z_FINISH);
  const bool whole = (result == Z_STREAM_END || result == Z_BUF_ERROR || result == Z_OK) && stream.avail_out == 0;
  with.inflate_end(&stream);
  return whole;
}

bool zstd_decompress(const Decompressors& with, std::span<const uint8_t> input, std::span<uint8_t> output) {
  ZSTD_DCtx* context = with.zstd_create();
  if (context == nullptr) return false;
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  ZSTD_outBuffer out{output.data(), output.size(), 0};
  // Each round consumes input or produces output, or the loop ends.
  while (out.pos < out.size) {
    const size_t before = in.pos + out.pos;
    if (with.zstd_is_error(with.zstd_decompress(context, &out, &in)) || in.pos + out.pos == before) break;
  }
  with.zstd_free(context);
  return out.pos == out.size;
}

}  // namespace

Result<bool> decompress_cluster(Compression compression, std::span<const uint8_t> input, std::span<uint8_t> output) {
  const Decompressors* with = CROSVM_TRY(decompressors());
  return compression == Compression::kZstd ? zstd_decompress(*with, input, output)
                                           : inflate_raw(*with, input, output);
}

Result<void> preload_decompressors() {
  CROSVM_TRY(decompressors());
  return {};
}

}  // namespace crosvm::disk
