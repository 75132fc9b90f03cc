// chronos/export.hpp: symbol visibility for the public API.
//
// The library is built with -fvisibility=hidden; only what is marked
// CHRONOS_API is exported from a shared build.
#pragma once

#if defined(__GNUC__)
#define CHRONOS_API __attribute__((visibility("default")))
#else
#define CHRONOS_API
#endif
