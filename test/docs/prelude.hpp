// What every documentation snippet sees before its own code (test/docs/check_snippets.py;
// the convention is described in docs/api.md). Examples stay short by assuming the names a
// reader of drover code would have in scope anyway, and nothing more.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include "drover/drover.hpp"
#include "drover/http_api.hpp" // libdrover-http: not in drover.hpp, which is libdrover alone

namespace asio = boost::asio;
using boost::asio::awaitable;
using boost::asio::use_awaitable;

/// Stands for whatever the reader does with a value: the examples are about getting it.
template <typename... T>
void use(const T&...) {}
