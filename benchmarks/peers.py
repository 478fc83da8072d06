"""What the peer contenders build from each PRESENCE_UPDATE: no I/O here, only parse and build.

Every contender of the throughput table turns each message into a typed object, as an
application would. The peers (websockets, websocket-client) have no models of their own, so
they get what a careful user would write: ``json.loads`` and plain dataclasses of the same
shape as hatsu_sync's (``PresenceUpdate`` -> ``Presence`` -> ``Embed`` -> ``EmbedText``), built
directly with positional arguments. The naive contender uses dataclasses-json's ``from_dict``
on classes shaped like the message itself, as the project card's packages suggest. The no-I/O
limit runs :func:`parse_and_build` over the pre-encoded stream, with no socket and no thread.
"""

# dataclasses-json reads the annotations at run time: no `from __future__ import annotations`,
# and the typing generics, so that Python 3.9 resolves them.
# ruff: noqa: UP006, UP035

import json
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Union

from dataclasses_json import dataclass_json

__all__ = [
    "Embed",
    "EmbedText",
    "NaiveMessage",
    "Presence",
    "PresenceUpdate",
    "build_presence_update",
    "naive_parse",
    "parser",
]

Id = Union[str, int]


@dataclass
class EmbedText:
    """The two text lines of an embed."""

    top: Optional[str]
    bottom: Optional[str]


@dataclass
class Embed:
    """The rich part of a presence."""

    name: Optional[str]
    description: Optional[str]
    banner_url: Optional[str]
    text: Optional[EmbedText]


@dataclass
class Presence:
    """A user's presence."""

    type: Optional[int]
    description: Optional[str]
    emoji: Optional[Id]
    embed: Optional[Embed]


@dataclass
class PresenceUpdate:
    """One PRESENCE_UPDATE, as a peer's user would model it."""

    name: str
    user_id: Optional[Id]
    presence: Presence


def build_presence_update(message: Dict[str, Any]) -> PresenceUpdate:
    """Build the typed object of one decoded PRESENCE_UPDATE (missing fields become None)."""
    d = message["d"]
    embed = d.get("embed")
    if embed is not None:
        text = embed.get("text")
        embed = Embed(
            embed.get("name"),
            embed.get("description"),
            embed.get("banner_url"),
            None if text is None else EmbedText(text.get("top"), text.get("bottom")),
        )
    user_id = message.get("id")
    return PresenceUpdate(
        message["t"],
        message.get("_id") if user_id is None else user_id,
        Presence(d.get("type"), d.get("description"), d.get("emoji"), embed),
    )


@dataclass_json
@dataclass
class NaiveEmbedText:
    """``d.embed.text`` for dataclasses-json."""

    top: Optional[str] = None
    bottom: Optional[str] = None


@dataclass_json
@dataclass
class NaiveEmbed:
    """``d.embed`` for dataclasses-json."""

    name: Optional[str] = None
    description: Optional[str] = None
    banner_url: Optional[str] = None
    text: Optional[NaiveEmbedText] = None


@dataclass_json
@dataclass
class NaivePresence:
    """``d`` for dataclasses-json."""

    type: Optional[int] = None
    description: Optional[str] = None
    emoji: Optional[str] = None
    embed: Optional[NaiveEmbed] = None


@dataclass_json
@dataclass
class NaiveMessage:
    """The whole PRESENCE_UPDATE message for dataclasses-json: ``t``, ``id`` and ``d``."""

    t: str
    id: Optional[str] = None
    d: Optional[NaivePresence] = None


def parser(encoding: str) -> Callable[[Union[bytes, str]], PresenceUpdate]:
    """Parse and build one message of a connection's stream, as the careful peers do.

    In ``zlib`` mode the returned function holds the connection's one inflate context, so it
    must see the connection's messages in order (make one per connection).

    Raises:
        ValueError: an unknown encoding.
    """
    loads = json.loads
    build = build_presence_update
    if encoding == "json":

        def parse_json(data: Union[bytes, str]) -> PresenceUpdate:
            return build(loads(data))

        return parse_json
    if encoding != "zlib":
        raise ValueError(f"unknown encoding {encoding!r}")
    inflate = zlib.decompressobj().decompress

    def parse_zlib(data: Union[bytes, str]) -> PresenceUpdate:
        assert isinstance(data, bytes)  # zlib mode: binary messages
        return build(loads(inflate(data)))

    return parse_zlib


def naive_parse(encoding: str) -> Callable[[Union[bytes, str]], Any]:
    """Parse and build one message with dataclasses-json's ``from_dict`` (the naive client).

    Raises:
        ValueError: an unknown encoding.
    """
    from_dict = NaiveMessage.from_dict  # type: ignore[attr-defined]
    loads = json.loads
    if encoding == "json":

        def parse_json(data: Union[bytes, str]) -> Any:
            return from_dict(loads(data))

        return parse_json
    if encoding != "zlib":
        raise ValueError(f"unknown encoding {encoding!r}")
    inflate = zlib.decompressobj().decompress

    def parse_zlib(data: Union[bytes, str]) -> Any:
        assert isinstance(data, bytes)
        return from_dict(loads(inflate(data)))

    return parse_zlib
