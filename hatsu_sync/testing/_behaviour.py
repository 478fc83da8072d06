"""What the deployed server says, as data: the default user, HELLO's text, PRESENCE fan-out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_USER", "HELLO_INFO", "presence_update"]

#: The user that READY carries by default (``session_ids`` is filled in per connection).
DEFAULT_USER: Mapping[str, Any] = {
    "_id": "100000000000000001",
    "username": "local-user",
    "separator": "0001",
    "avatar_url": None,
    "banner_url": None,
    "flags": 0,
    "verified": False,
    "system": False,
}

HELLO_INFO = "Connected to the hatsu gateway (hatsu_sync.testing.LocalGateway)."


def presence_update(message: dict[str, Any], user: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PRESENCE_UPDATE the deployed server made of a client's PRESENCE, or None when it
    dropped the message (silently, with no answer and no close).

    Like the server: ``type`` must be 1-4 and ``description`` present; an ``embed`` (any truthy
    value) must hold ``name`` and ``description``, and its fields are passed through ``str()``,
    so a missing or null ``banner_url``, ``top_text`` or ``bottom_text`` arrives as "None".
    """
    if message.get("type") not in (1, 2, 3, 4) or "description" not in message:
        return None
    embed: dict[str, Any] | None = None
    source = message.get("embed")
    if source:
        if not isinstance(source, dict) or "name" not in source or "description" not in source:
            return None
        embed = {
            "name": str(source["name"]),
            "description": str(source["description"]),
            "banner_url": str(source.get("banner_url")),
            "text": {"top": str(source.get("top_text")), "bottom": str(source.get("bottom_text"))},
        }
    user_id = user.get("id", user.get("_id"))
    presence = {
        "type": message["type"],
        "description": message["description"],
        "emoji": message.get("emoji"),
        "embed": embed,
    }
    return {"t": "PRESENCE_UPDATE", "id": user_id, "d": presence}
