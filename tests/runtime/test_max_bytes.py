"""The per-receive size bound: ``max_bytes`` on recv, gather and exchange.

A frame bigger than the bound is refused before its payload is decoded
(MessageRejected naming the peer, who is cut off) whether it arrives while
the receive waits or came first, unsolicited; the honest peers go on.  Over
memory and over TCP with TLS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from mpcai.errors import InvalidInput, InvalidType, MessageRejected, PeersMissing, WireError
from mpcai.runtime import InMemoryNetwork, Network, Party, open_party, wire
from mpcai.runtime.party import frame_bytes
from mpcai.runtime.tcp import local_tcp_network

SESSION = bytes(16)
BIG = np.arange(1 << 20, dtype=np.uint64)  # 8 MiB
SMALL = np.arange(16, dtype=np.uint64)
NETWORKS: dict[str, Callable[[int], Network]] = {
    "memory": InMemoryNetwork,
    "tcp+tls": lambda n: local_tcp_network(n, connect_timeout=10),
}


@pytest.fixture(params=sorted(NETWORKS))
def timed(request: pytest.FixtureRequest) -> tuple[Callable[[int], Network], Any, float]:
    """(network factory, clock, time unit in seconds): MockClock over memory."""
    if request.param == "memory":
        return NETWORKS["memory"], trio.testing.MockClock(autojump_threshold=0), 1.0
    return NETWORKS[request.param], None, 0.2


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The payload lengths of every frame the runtime decodes (inline or in a thread)."""
    seen: list[int] = []
    inline, whole = wire._decode_payload_at, wire.decode_frame

    def spy_inline(data: Any, buf: memoryview, pos: int, *args: Any) -> Any:
        seen.append(len(buf) - pos)
        return inline(data, buf, pos, *args)

    def spy_whole(data: Any, limits: wire.Limits = wire.DEFAULT_LIMITS) -> wire.Frame:
        frame = whole(data, limits)
        seen.append(len(data))
        return frame

    monkeypatch.setattr(wire, "_decode_payload_at", spy_inline)
    monkeypatch.setattr(wire, "decode_frame", spy_whole)
    return seen


def _run(net: Network, fns: dict[int, Any], clock: Any = None) -> dict[int, Any]:
    results: dict[int, Any] = {}

    async def one(pid: int) -> None:
        async with open_party(net, pid, SESSION, timeout=10) as party:
            results[pid] = await fns[pid](party)

    async def main() -> None:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for pid in fns:
                    nursery.start_soon(one, pid)

    trio.run(main, clock=clock) if clock else trio.run(main)
    return results


async def _send_ignoring_drop(party: Party, to: int, tag: str, obj: Any) -> None:
    try:
        await party.send(to, tag, obj)
    except Exception:  # the receiver cut this party off: what is tested is its side
        pass


def test_an_oversized_frame_to_a_waiting_recv_is_refused_undecoded(
        timed: tuple, decoded: list[int]) -> None:
    make_network, clock, unit = timed

    async def receiver(party: Party) -> object:
        with pytest.raises(MessageRejected, match="exceeds the 1000 bytes") as info:
            await party.recv(1, "x", max_bytes=1000)
        cut = type(party.failed.get(1))
        return info.value.peer, cut, await party.exchange("after", 0, [2])

    async def liar(party: Party) -> None:
        await trio.sleep(1.0 * unit)  # the receive is waiting by then
        await _send_ignoring_drop(party, 0, "x", BIG)

    async def bystander(party: Party) -> object:
        return await party.exchange("after", 2, [0])

    res = _run(make_network(3), {0: receiver, 1: liar, 2: bystander}, clock)
    assert res[0] == (1, MessageRejected, {2: 2}) and res[2] == {0: 0}
    assert max(decoded) < BIG.nbytes  # the 8 MiB payload was never decoded


def test_a_frame_within_the_bound_is_received_exactly_at_the_bound(timed: tuple) -> None:
    make_network, clock, unit = timed
    size = frame_bytes("x", sum(len(b) for b in wire.encode_payload_parts(SMALL)[0]))

    async def receiver(party: Party) -> object:
        got = await party.recv(1, "x", max_bytes=size)
        received = party.stats.received_from[1]
        await party.send(1, "go", None)
        with pytest.raises(MessageRejected):
            await party.recv(1, "y", max_bytes=size - 1)  # one byte more than allowed
        return got.tolist(), received

    async def sender(party: Party) -> None:
        await trio.sleep(1.0 * unit)
        await party.send(0, "x", SMALL)
        await party.recv(0, "go")
        await _send_ignoring_drop(party, 0, "y", SMALL)

    res = _run(make_network(2), {0: receiver, 1: sender}, clock)
    got, received = res[0]
    assert got == SMALL.tolist()
    overhead = 0 if clock else 4  # TCP's length prefix is counted in stats, not in max_bytes
    assert received == size + overhead


def test_gather_with_one_oversized_peer_returns_the_others(timed: tuple,
                                                           decoded: list[int]) -> None:
    make_network, clock, unit = timed

    async def server(party: Party) -> object:
        got = await party.gather("u", min_count=2, max_bytes=4096)
        with pytest.raises(PeersMissing) as info:  # by default all must answer
            await party.gather("v", [1, 3], max_bytes=4096)
        return ({p: v.tolist() for p, v in got.items()}, type(got.missing[2]),
                got.missing[2].peer, type(info.value.missing[1]), sorted(info.value.missing))

    def client(pid: int) -> Any:
        async def run(party: Party) -> None:
            await trio.sleep(1.0 * unit)
            await _send_ignoring_drop(party, 0, "u", BIG if pid == 2 else SMALL + pid)
            await trio.sleep(1.0 * unit)  # the second gather is waiting by then
            await _send_ignoring_drop(party, 0, "v", BIG if pid == 1 else SMALL)
        return run

    res = _run(make_network(4), {0: server, 1: client(1), 2: client(2), 3: client(3)}, clock)
    got, kind, peer, kind_v, missing_v = res[0]
    assert got == {1: (SMALL + 1).tolist(), 3: (SMALL + 3).tolist()}
    assert kind is MessageRejected and peer == 2
    assert kind_v is MessageRejected and missing_v == [1]
    assert max(decoded) < BIG.nbytes


def test_an_unsolicited_oversized_frame_is_refused_when_received(timed: tuple) -> None:
    make_network, clock, unit = timed

    async def receiver(party: Party) -> object:
        with trio.fail_after(20):
            while party.stats.received_from.get(1, 0) < BIG.nbytes:  # it came first
                await trio.sleep(0.05 * unit)
        charged = party._unread_bytes[1]
        with pytest.raises(MessageRejected, match="exceeds the 4096 bytes"):
            await party.recv(1, "x", max_bytes=4096)
        released = party._unread_bytes[1]
        with pytest.raises(MessageRejected):  # and that peer is cut off
            await party.recv(1, "later")
        return charged >= BIG.nbytes, released, type(party.failed[1])

    async def liar(party: Party) -> None:
        await party.send(0, "x", BIG)
        await trio.sleep(3.0 * unit)
        await _send_ignoring_drop(party, 0, "later", SMALL)

    res = _run(make_network(2), {0: receiver, 1: liar}, clock)
    assert res[0] == (True, 0, MessageRejected)


def test_an_unsolicited_frame_within_the_bound_is_received(timed: tuple) -> None:
    make_network, clock, unit = timed

    async def receiver(party: Party) -> object:
        await trio.sleep(2.0 * unit)  # both came first
        got = await party.recv(1, "u", max_bytes=4096)
        return got.tolist(), await party.recv(1, "w", max_bytes=64), party._unread_bytes[1]

    async def sender(party: Party) -> None:
        await party.send(0, "u", SMALL)
        await party.send(0, "w", None)

    res = _run(make_network(2), {0: receiver, 1: sender}, clock)
    assert res[0] == (SMALL.tolist(), None, 0)


def test_gather_refuses_an_unsolicited_oversized_peer(timed: tuple) -> None:
    make_network, clock, unit = timed

    async def receiver(party: Party) -> object:
        await trio.sleep(2.0 * unit)  # both came first
        got = await party.gather("u", min_count=1, max_bytes=4096)
        return {p: v.tolist() for p, v in got.items()}, type(got.missing.get(2)), \
            party._unread_bytes[2], await party.recv(1, "w", max_bytes=64)

    async def sender(party: Party) -> None:
        await party.send(0, "u", SMALL)
        await party.send(0, "w", None)

    async def liar(party: Party) -> None:
        await party.send(0, "u", BIG)

    res = _run(make_network(3), {0: receiver, 1: sender, 2: liar}, clock)
    assert res[0] == ({1: SMALL.tolist()}, MessageRejected, 0, None)


def test_exchange_takes_max_bytes(timed: tuple) -> None:
    make_network, clock, _ = timed

    async def honest(party: Party) -> object:
        got = await party.exchange("e", 1, min_count=1, max_bytes=4096)
        return dict(got), sorted(got.missing)

    async def liar(party: Party) -> None:
        await _send_ignoring_drop(party, 0, "e", BIG)
        await _send_ignoring_drop(party, 1, "e", BIG)

    res = _run(make_network(3), {0: honest, 1: honest, 2: liar}, clock)
    assert res[0] == ({1: 1}, [2]) and res[1] == ({0: 1}, [2])


def test_exchange_bounds_an_answer_that_comes_during_its_sends(
        monkeypatch: pytest.MonkeyPatch, decoded: list[int]) -> None:
    """An answer that arrives while exchange is still sending (before its gather waits)
    is refused from its header, undecoded, not held as unsolicited first."""
    real = Party.broadcast

    async def slow_broadcast(self: Party, *args: Any, **kwargs: Any) -> Any:
        failures = await real(self, *args, **kwargs)
        await trio.sleep(1.0)  # a slow send to some other peer
        return failures

    monkeypatch.setattr(Party, "broadcast", slow_broadcast)

    async def honest(party: Party) -> object:
        got = await party.exchange("e", 1, [1], min_count=0, max_bytes=4096)
        return dict(got), {p: type(e) for p, e in got.missing.items()}

    async def liar(party: Party) -> None:
        await _send_ignoring_drop(party, 0, "e", BIG)  # at once, not waiting for party 0's

    clock = trio.testing.MockClock(autojump_threshold=0)
    res = _run(InMemoryNetwork(2), {0: honest, 1: liar}, clock)
    assert res[0] == ({}, {1: MessageRejected})
    assert max(decoded, default=0) < BIG.nbytes


def test_max_bytes_is_checked() -> None:
    async def main() -> None:
        net = InMemoryNetwork(2)
        async with open_party(net, 0, SESSION, timeout=1) as party:
            for bad, error in ((-1, InvalidInput), (1.5, InvalidType), (True, InvalidType),
                               ("10", InvalidType)):
                with pytest.raises(error, match="max_bytes"):
                    await party.recv(1, "a", max_bytes=bad)
                with pytest.raises(error, match="max_bytes"):
                    await party.gather("b", max_bytes=bad)
                with pytest.raises(error, match="max_bytes"):
                    await party.exchange("c", 0, max_bytes=bad)
            with pytest.raises(InvalidInput, match="payload_bytes"):
                frame_bytes("a", -1)

    trio.run(main)


def test_frame_bytes_is_the_frame_length() -> None:
    for tag in ("", "a", "round3/masked", "é" * 20):
        for obj in (None, SMALL, b"x" * 1000, {"k": [1, 2]}):
            _, length = wire.encode_payload_parts(obj)
            header = wire.encode_header(session=SESSION, tag=tag, sender=1, recipient=0,
                                        seq=0, payload_len=length)
            assert frame_bytes(tag, length) == len(header) + length



def _spy_deliveries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths of the frames that reach ``Party._deliver`` (i.e. that the link read whole)."""
    delivered: list[int] = []
    real = Party._deliver

    def spy(self: Party, peer: int, data: Any, *args: Any) -> Any:
        delivered.append(len(data))
        return real(self, peer, data, *args)

    monkeypatch.setattr(Party, "_deliver", spy)
    return delivered


def test_over_tcp_an_oversized_frame_is_refused_from_its_first_mib(
        monkeypatch: pytest.MonkeyPatch) -> None:
    delivered = _spy_deliveries(monkeypatch)

    async def receiver(party: Party) -> object:
        with pytest.raises(MessageRejected, match="exceeds the 4096 bytes"):
            await party.recv(1, "x", max_bytes=4096)
        return type(party.failed[1])

    async def liar(party: Party) -> None:
        await trio.sleep(0.2)
        await _send_ignoring_drop(party, 0, "x", BIG)

    res = _run(NETWORKS["tcp+tls"](2), {0: receiver, 1: liar})
    assert res[0] is MessageRejected
    assert delivered == []  # refused by the link after 1 MiB, never read whole


def test_expect_refuses_an_oversized_frame_before_its_receive(
        timed: tuple, decoded: list[int]) -> None:
    make_network, clock, unit = timed

    async def receiver(party: Party) -> object:
        party.expect("x", max_bytes=4096)  # both peers
        party.expect("y", [2], max_bytes=1 << 30)
        party.expect("y", [2], max_bytes=4096)  # only tightens
        await party.send(1, "go", None)
        await party.send(2, "go", None)
        with trio.fail_after(20):
            while 2 not in party.failed or party.stats.received_from.get(1, 0) == 0:
                await trio.sleep(0.05 * unit)  # both came before any receive
        got = (await party.recv(1, "x")).tolist()
        with pytest.raises(MessageRejected, match="exceeds the 4096 bytes"):
            await party.recv(2, "x")
        return got, type(party.failed[2]), party._unread_bytes[1]

    async def honest(party: Party) -> None:
        await party.recv(0, "go")
        await party.send(0, "x", SMALL)

    async def liar(party: Party) -> None:
        await party.recv(0, "go")
        await _send_ignoring_drop(party, 0, "x", BIG)

    res = _run(make_network(3), {0: receiver, 1: honest, 2: liar}, clock)
    assert res[0] == (SMALL.tolist(), MessageRejected, 0)
    assert max(decoded) < BIG.nbytes


def test_expect_then_a_tighter_receive(timed: tuple) -> None:
    make_network, clock, unit = timed

    async def receiver(party: Party) -> object:
        party.expect("x", max_bytes=1 << 20)
        await trio.sleep(2.0 * unit)  # it came first, within the expected bound
        with pytest.raises(MessageRejected):
            await party.recv(1, "x", max_bytes=64)
        return party._unread_bytes[1]

    async def sender(party: Party) -> None:
        await party.send(0, "x", SMALL)

    assert _run(make_network(2), {0: receiver, 1: sender}, clock)[0] == 0


def test_expect_is_checked() -> None:
    async def main() -> None:
        net = InMemoryNetwork(2)
        async with open_party(net, 0, SESSION, timeout=1) as party:
            for bad, error in ((-1, InvalidInput), (1.5, InvalidType), (None, InvalidType)):
                with pytest.raises(error, match="max_bytes"):
                    party.expect("a", max_bytes=bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidInput, match="no peer 5"):
                party.expect("a", [5], max_bytes=10)

    trio.run(main)


@pytest.mark.parametrize("bad", ["session", "seq", "sender", "magic", "second"])
def test_over_tcp_a_frame_refused_for_its_header_is_refused_from_its_first_mib(
        monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    """A frame that the receiver would refuse whole for its header alone (another
    session, out of sequence, another sender, not a frame, a second message under a
    tag) is refused by the link once its first MiB is in, like an oversized one: a
    peer cannot make the receiver read a declared 8 MiB by getting the header wrong
    (or choosing a tag no receive bounds) instead of the size."""
    delivered = _spy_deliveries(monkeypatch)

    async def receiver(party: Party) -> object:
        party.expect("x", max_bytes=4096)
        if bad == "second":
            assert (await party.recv(1, "x")).tolist() == SMALL.tolist()
        with trio.fail_after(20):
            while 1 not in party.failed:
                await trio.sleep(0.05)
        return type(party.failed[1])

    async def liar(party: Party) -> None:
        seq, session, sender, tag = 0, SESSION, 1, "y"
        if bad == "second":
            await party.send(0, "x", SMALL)
            seq, tag = 1, "x"
        elif bad == "seq":
            seq = 5
        elif bad == "session":
            session = bytes([1]) * 16
        elif bad == "sender":
            sender = 2
        frame = bytearray(wire.encode_frame(session=session, tag=tag, sender=sender,
                                            recipient=0, seq=seq, payload=BIG))
        if bad == "magic":
            frame[0] ^= 0xFF
        await trio.sleep(0.2)
        try:
            await party._links[0].send_frame(frame)
        except Exception:  # cut off: what is tested is the receiver's side
            pass

    res = _run(NETWORKS["tcp+tls"](2), {0: receiver, 1: liar})
    assert issubclass(res[0], WireError if bad == "magic" else MessageRejected)
    assert all(n < BIG.nbytes for n in delivered)  # never read whole


def test_over_tcp_a_big_frame_exactly_at_its_bound_passes_the_first_mib_check() -> None:
    """Frames over 1 MiB go through the link's admit check: exactly at the bound (from
    frame_bytes: the length admit sees is the frame's), under expect, and with no bound,
    they are received whole, and the buffer grows after the check."""
    size = frame_bytes("x", sum(len(b) for b in wire.encode_payload_parts(BIG)[0]))

    async def receiver(party: Party) -> object:
        party.expect("y", max_bytes=size)
        x = await party.recv(1, "x", max_bytes=size)
        await party.send(1, "go", None)
        with trio.fail_after(20):
            while party.stats.received_from[1] < 3 * (size + 4):
                await trio.sleep(0.05)  # "y" and "z" came before their receives
        y, z = await party.recv(1, "y"), await party.recv(1, "z")
        return [bool(np.array_equal(v, BIG)) for v in (x, y, z)]

    async def sender(party: Party) -> None:
        await trio.sleep(0.2)
        await party.send(0, "x", BIG)
        await party.recv(0, "go")
        await party.send(0, "y", BIG)
        await party.send(0, "z", BIG)

    res = _run(NETWORKS["tcp+tls"](2), {0: receiver, 1: sender})
    assert res[0] == [True, True, True]
