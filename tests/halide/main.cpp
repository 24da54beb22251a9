// Catch2's main for tetra_halide_tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
