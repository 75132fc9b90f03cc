// chronos/chronos.hpp: the whole public API.
#pragma once

#include <chronos/blocking.hpp>
#include <chronos/cancel.hpp>
#include <chronos/channel.hpp>
#include <chronos/config.hpp>
#include <chronos/debug.hpp>
#include <chronos/fiber.hpp>
#include <chronos/future.hpp>
#include <chronos/net.hpp>
#include <chronos/runtime.hpp>
#include <chronos/sync.hpp>
#include <chronos/time.hpp>
