#pragma once
// Server side of one WebSocket connection on Boost.Beast. Everything touching the stream
// runs on the connection's io thread (the one thread of its io_context); actors reach it only
// through net::ws_connection.

#include <memory>

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "net/connection.hpp"

namespace er::net {

using upgrade_request = boost::beast::http::request<boost::beast::http::string_body>;

/// Wraps an authenticated upgrade request; `select_protocol` answers with router.v1.
/// `unread` holds bytes already read behind the request (frames the client pipelined).
/// The session holds one slot of `budget` (already acquired) and releases it when destroyed.
std::shared_ptr<ws_connection> make_ws_session(boost::beast::tcp_stream stream,
                                               upgrade_request request, std::string unread,
                                               const session_limits& limits,
                                               bool select_protocol,
                                               std::shared_ptr<connection_budget> budget);

} // namespace er::net
