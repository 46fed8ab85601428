"""The in-process Flower Grid the Flower integration tests share (real flwr 1.41).

:class:`GridBase` is everything but the delivery: a ``flwr.serverapp.grid.Grid`` whose
nodes are ``nodes`` (each with its persistent ``Context``, as a SuperNode keeps it) and
whose ``send_and_receive`` is ``push_messages`` then ``pull_messages``; each test module's
subclass delivers in ``push_messages`` (its own drops, tampering and checks), stamping
each message with :meth:`GridBase.stamp` and passing it both ways through :func:`wire`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage  # type: ignore[attr-defined]
from flwr.proto.node_pb2 import NodeInfo  # type: ignore[attr-defined]
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run


def wire(msg: Message) -> Message:
    """``msg`` after Flower's protobuf serde (what a deployment puts on the wire)."""
    proto = ProtoMessage()
    proto.ParseFromString(message_to_proto(msg).SerializeToString())
    return message_from_proto(proto)


def stage_of(msg: Message, key: str) -> str:
    """The stage a message names in its ``key`` ConfigRecord, else its message type."""
    recs = msg.content.config_records if msg.has_content() else {}
    return str(recs[key]["stage"]) if key in recs else msg.metadata.message_type


class GridBase(Grid):
    """A Grid of ``nodes`` in this process; subclasses implement ``push_messages``."""

    def __init__(self, nodes: Iterable[int],
                 node_config: Mapping[int, dict[str, Any]] | None = None) -> None:
        self._run = Run.create_empty(run_id=1)
        self._nodes = list(nodes)
        self.contexts = {nid: Context(run_id=1, node_id=nid,
                                      node_config=dict((node_config or {}).get(nid, {})),
                                      state=RecordDict(), run_config={})
                         for nid in self._nodes}
        self._replies: dict[str, Message] = {}
        self._next = 0

    def stamp(self, msg: Message) -> str:
        """Give ``msg`` the next message id and the SuperLink as its source; the id."""
        self._next += 1
        mid = f"m{self._next}"
        md = msg.metadata.__dict__
        md["_message_id"], md["_src_node_id"], md["_run_id"] = mid, SUPERLINK_NODE_ID, 1
        return mid

    def keep(self, mid: str, reply: Message) -> None:
        """Store ``reply`` (after the wire) as the answer to message ``mid``."""
        reply.metadata.__dict__["_message_id"] = f"r{mid[1:]}"
        self._replies[mid] = wire(reply)

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(self, content: Any, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Any:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._nodes)

    def get_nodes(self) -> Iterable[Any]:
        return [NodeInfo(node_id=nid) for nid in self._nodes]

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Any]:
        return [self._replies.pop(m) for m in list(message_ids) if m in self._replies]

    def send_and_receive(self, messages: Iterable[Any], *,
                         timeout: float | None = None) -> Iterable[Any]:
        return self.pull_messages(self.push_messages(messages))
