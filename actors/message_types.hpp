#pragma once
// Values that travel in mailboxes between the actors of one process and never leave it:
// they are not serialized, so CAF may carry them without type registration.

#include <caf/allowed_unsafe_message_type.hpp>

#include "context/user_execution_context.hpp"
#include "protocol/envelope.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::context::user_execution_context)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::protocol::outbound_event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::protocol::inbound_message)
