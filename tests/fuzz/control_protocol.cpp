// The control socket's messages as any client may send them: parsing never
// crashes, and whatever parses serializes to a line that parses the same.
#include <string_view>

#include "control/protocol.h"
#include "fuzz_common.h"

using namespace crosvm::control;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  if (auto request = parse_request(line)) {
    auto again = parse_request(serialize(*request));
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->kind == request->kind && again->dialect == request->dialect && again->id == request->id && again->disk == request->disk &&
               again->size == request->size);
  }
  if (auto response = parse_response(line)) {
    auto again = parse_response(serialize(*response));
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->ok == response->ok && again->id == response->id && again->error == response->error);
  }
  return 0;
}
