#pragma once
// Waiting for something that happens on another thread or in another process.

#include <chrono>
#include <functional>

namespace er::test {

/// Polls `done` until it holds or `timeout` passes; returns whether it held.
bool eventually(const std::function<bool()>& done,
                std::chrono::milliseconds timeout = std::chrono::seconds{10});

} // namespace er::test
