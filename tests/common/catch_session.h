// Runs the Catch2 tests linked into the program (its command line is
// Catch's); catch_session.cpp holds Catch's implementation, compiled once.
#pragma once

int run_catch_tests(int argc, char** argv);
