/* crosvm.h must compile as strict C99. */
#include <crosvm/crosvm.h>

int main(void) {
  crosvm_serial_options options = CROSVM_SERIAL_OPTIONS_INIT;
  return options.struct_size == sizeof(options) && crosvm_abi_version() == CROSVM_ABI_VERSION ? 0 : 1;
}
