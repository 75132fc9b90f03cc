// chronos/chronos.hpp: the whole public API.
#pragma once

#include <chronos/config.hpp>
#include <chronos/fiber.hpp>
#include <chronos/runtime.hpp>
#include <chronos/sync.hpp>
