#pragma once
// What a socket tells the one actor that owns it: the router's connection managers and
// router-load's clients speak to their sockets alike.

#include <caf/atom.hpp>

namespace er::actors {

using frame_atom = caf::atom_constant<caf::atom("frame")>;   ///< (frame, text): a text frame
using binary_atom = caf::atom_constant<caf::atom("binary")>; ///< (binary, bytes): refused
using closed_atom = caf::atom_constant<caf::atom("closed")>; ///< (closed, code, clean): the end
/// (writable, ...): the socket, congested when asked (ws_connection::notify_writable), is not now
using writable_atom = caf::atom_constant<caf::atom("writable")>;

} // namespace er::actors
