// The device side of a jailed device process, in libcrosvm.so. crosvm-device
// (crosvm_device.cpp) is a stub: it maps the VMM's own library, so that a
// device process's code pages are the VMM's, shared, not a copy of its own,
// and hands this entry point the libcap and libseccomp functions the jail
// needs (jail_libraries.h), which the library does not link.
//
// Not part of the C ABI: the symbol is exported under a version node named
// after the release (libcrosvm.map.in), so a helper from another build fails
// at exec with the loader's "version ... not found" instead of speaking a
// different argument list. No public header declares it.
#pragma once

#include "sandbox/jail_libraries.h"

extern "C" {

// crosvm-device's whole life after its SIGABRT handler: parses argv (the
// usage in device_main.cpp), jails itself with `libraries`' help, builds
// the device from its fds, serves it over vhost-user until the VMM goes.
// Returns the process's exit status; errors are logged to stderr as
// "LEVEL\tmessage".
__attribute__((visibility("default"))) int crosvm_device_helper_main(int argc, char** argv,
                                                                    const crosvm_jail_libraries* libraries);
}
