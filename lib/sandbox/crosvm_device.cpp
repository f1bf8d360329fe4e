// crosvm-device: one virtio device in a jailed process of its own, spawned
// by the VMM (lib/sandbox/device_process.cpp). A stub: the device, its
// arguments and its log are libcrosvm.so's (device_main.h), so that a
// device process runs the VMM's own mapped code instead of a copy. What it
// adds is what the library does not link: libcap and libseccomp, whose
// functions it hands the library for the jail (jail_libraries.h).
//
// usage: see lib/sandbox/device_main.cpp.
#include <signal.h>
#include <unistd.h>

#include "sandbox/device_main.h"
#include "sandbox/jail_libraries.h"
#include "sandbox/aborted_status.h"

namespace {

// As init of its PID namespace the process would survive its own SIGABRT
// (see aborted_status.h): abort(), a failed assertion or std::terminate()
// end here instead, and so does a kill -ABRT from outside.
void on_abort(int) { ::_exit(crosvm::sandbox::kAbortedStatus); }

}  // namespace

#ifdef CROSVM_SANITIZED
// LeakSanitizer's check at exit stops the process's threads with ptrace,
// which a jailed device may not use: a sanitizer build's device process
// skips it (the same code is leak-checked in the VMM by the unit tests).
extern "C" int __lsan_is_turned_off() { return 1; }
#endif

int main(int argc, char** argv) {
  struct sigaction abort_action {};
  abort_action.sa_handler = on_abort;
  ::sigaction(SIGABRT, &abort_action, nullptr);
  return crosvm_device_helper_main(argc, argv, &crosvm::sandbox::linked_jail_libraries());
}
