"""The in-process Flower Grid the Flower integration tests share (real flwr 1.41).

:data:`GridBase` is the benchmarks' grid base (``mpcai.benchmarks._flower_round.
grid_base``): a ``flwr.serverapp.grid.Grid`` whose nodes are ``nodes`` (each with its
persistent ``Context``, as a SuperNode keeps it) and whose ``send_and_receive`` is
``push_messages`` then ``pull_messages``; each test module's subclass delivers in
``push_messages`` (its own drops, tampering and checks), stamping each message with
``stamp``, passing it through :func:`wire` and storing the reply with ``keep``.
"""

from __future__ import annotations

from flwr.app import Message
from mpcai.benchmarks._flower_round import grid_base, wire_sized

GridBase = grid_base()


def wire(msg: Message) -> Message:
    """``msg`` after Flower's protobuf serde (what a deployment puts on the wire)."""
    return wire_sized(msg)[0]


def stage_of(msg: Message, key: str) -> str:
    """The stage a message names in its ``key`` ConfigRecord, else its message type."""
    recs = msg.content.config_records if msg.has_content() else {}
    return str(recs[key]["stage"]) if key in recs else msg.metadata.message_type
