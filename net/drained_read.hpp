#pragma once
// Reads that tell asio's reactor when they drained the socket, so that the next read waits for
// readiness instead of trying a read that must fail.
//
// asio 1.74's epoll reactor starts every read with a "speculative" recvmsg and stops doing so
// only when a read returns end of file: a request-reply connection, whose next bytes cannot be
// there yet when it asks for them, pays one failed recvmsg (EAGAIN) per message: a third of its
// system calls. Other event loops (libuv, uSockets) read only on readiness.
//
// A read through async_read_drained() reports a short read on a stream socket (fewer bytes than
// the buffers hold: the receive queue was empty when it was copied) as "done and exhausted",
// the status asio has for this: the reactor then queues the next read on the descriptor, which
// epoll already watches edge-triggered, without any system call. Nothing can be missed: the
// reactor marks the descriptor as worth a speculative read again, under the same lock, for every
// readiness event that epoll reports after the short read, and bytes that arrive after a read
// raise such an event. A read that fills its buffers keeps asio's speculative next read (more
// may be waiting), and so does a failed one (the next read reports the socket's error at once).
// tests/drained_read_test.cpp counts the read system calls and checks every such arrival.
//
// The hook is a partial specialisation of asio's receive operation for the buffer sequence type
// drained_buffers<B>, the same code as asio's own but for the status of a short read. It is
// made only for the asio this project builds with (Boost 1.74, Debian 12's, on epoll); anywhere
// else async_read_drained() is a plain async_read_some.

#include <cstddef>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/version.hpp>

namespace er::net {

/// A mutable buffer sequence, read as asio reads `Buffers`, whose type selects the receive
/// operation below.
template <class Buffers>
struct drained_buffers {
  Buffers buffers;

  auto begin() const {
    return boost::asio::buffer_sequence_begin(buffers);
  }
  auto end() const {
    return boost::asio::buffer_sequence_end(buffers);
  }
};

/// socket.async_read_some(buffers, handler), with a short read ending asio's speculative reads.
template <class Socket, class MutableBuffers, class Handler>
void async_read_drained(Socket& socket, const MutableBuffers& buffers, Handler&& handler) {
  socket.async_read_some(drained_buffers<MutableBuffers>{buffers}, std::forward<Handler>(handler));
}

} // namespace er::net

#if BOOST_VERSION == 107400 && defined(__linux__)
#include <boost/asio/detail/config.hpp>
#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IOCP)
#define ER_NET_DRAINED_READS 1
#include <boost/asio/detail/buffer_sequence_adapter.hpp>
#include <boost/asio/detail/reactive_socket_recv_op.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>

namespace boost::asio::detail {

template <typename Buffers>
class reactive_socket_recv_op_base<er::net::drained_buffers<Buffers>> : public reactor_op {
public:
  reactive_socket_recv_op_base(const boost::system::error_code& success_ec, socket_type socket,
                               socket_ops::state_type state,
                               const er::net::drained_buffers<Buffers>& buffers,
                               socket_base::message_flags flags, func_type complete_func)
    : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
      socket_(socket), state_(state), buffers_(buffers.buffers), flags_(flags) {
  }

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<reactive_socket_recv_op_base*>(base);
    using adapter = buffer_sequence_adapter<boost::asio::mutable_buffer, Buffers>;
    std::size_t capacity = 0;
    bool finished = false;
    if (adapter::is_single_buffer) {
      auto first = adapter::first(o->buffers_);
      capacity = first.size();
      finished = socket_ops::non_blocking_recv1(o->socket_, first.data(), capacity, o->flags_,
                                                (o->state_ & socket_ops::stream_oriented) != 0,
                                                o->ec_, o->bytes_transferred_);
    } else {
      adapter bufs(o->buffers_);
      capacity = bufs.total_size();
      finished = socket_ops::non_blocking_recv(o->socket_, bufs.buffers(), bufs.count(),
                                               o->flags_,
                                               (o->state_ & socket_ops::stream_oriented) != 0,
                                               o->ec_, o->bytes_transferred_);
    }
    if (!finished)
      return not_done;
    if ((o->state_ & socket_ops::stream_oriented) == 0)
      return done;
    // End of file, as in asio; or a read that returned less than it could hold: it emptied the
    // receive queue, the next read waits for epoll to report new bytes. A failed read keeps the
    // speculative next read, which reports the socket's error at once.
    if (o->ec_ == boost::asio::error::eof)
      return done_and_exhausted;
    return !o->ec_ && o->bytes_transferred_ < capacity ? done_and_exhausted : done;
  }

private:
  socket_type socket_;
  socket_ops::state_type state_;
  Buffers buffers_;
  socket_base::message_flags flags_;
};

} // namespace boost::asio::detail
#endif
#endif
