// Catch2's implementation, compiled once for every test program (it is the
// slowest file of the build, and slower still under the sanitizers, which
// it does not need: it is test scaffolding, not code under test).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "catch_session.h"

int run_catch_tests(int argc, char** argv) { return Catch::Session().run(argc, argv); }
