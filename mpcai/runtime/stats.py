"""Communication statistics, counted by the runtime itself."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CommStats"]


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"  # pragma: no cover


@dataclass
class CommStats:
    """What one party sent and received.

    Application messages only (not the goodbye frame sent on exit).  Bytes
    are whole frames as they go on the wire (header, payload and the
    network's own framing, e.g. the TCP length prefix; not TLS record
    overhead).  ``rounds`` counts communication rounds as this party saw
    them: a send that follows a receive (or the first send) opens a new
    round.
    """

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    rounds: int = 0
    sent_to: dict[int, int] = field(default_factory=dict)
    received_from: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """A plain dict (JSON-friendly)."""
        return {
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "rounds": self.rounds,
            "sent_to": dict(self.sent_to),
            "received_from": dict(self.received_from),
        }

    def __str__(self) -> str:
        return (
            f"sent {_human(self.bytes_sent)} in {self.messages_sent} messages, "
            f"received {_human(self.bytes_received)} in {self.messages_received} messages, "
            f"{self.rounds} rounds"
        )

    def _count_sent(self, peer: int, nbytes: int) -> None:
        self.bytes_sent += nbytes
        self.messages_sent += 1
        self.sent_to[peer] = self.sent_to.get(peer, 0) + nbytes

    def _count_received(self, peer: int, nbytes: int) -> None:
        self.bytes_received += nbytes
        self.messages_received += 1
        self.received_from[peer] = self.received_from.get(peer, 0) + nbytes
