"""Reading a JWT's claims without verifying it (the client only needs ``exp``)."""

import base64
import json
from typing import Optional


def decode_jwt_payload(token: str) -> Optional[dict]:
    """Return the JWT's payload as a dict, or ``None`` when it cannot be read.

    The signature is NOT verified: the router does that. The client only reads ``exp``
    to refresh the token in time.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        payload = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return payload if isinstance(payload, dict) else None


def token_expiry(token: str) -> Optional[float]:
    """The token's ``exp`` claim (seconds since the epoch), or ``None``."""
    payload = decode_jwt_payload(token)
    if payload is None:
        return None
    exp = payload.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)
