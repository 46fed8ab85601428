"""Party runtime conformance suite: the same tests over the in-memory network and TCP+TLS.

Timing tests run on trio's MockClock over memory (no waiting) and on the
real clock, with short time units, over TCP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from mpcai.errors import (
    InvalidInput,
    InvalidType,
    MessageRejected,
    PeerDropped,
    PeersMissing,
    PeerTimeout,
    WireError,
)
from mpcai.runtime import Gathered, InMemoryNetwork, Network, Party, open_party, wire
from mpcai.runtime.tcp import TlsCredentials, local_tcp_network
from mpcai.testing import Fault, FaultyNetwork, run_local

SESSION = bytes(16)


def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


# ---- the conformance suite: same behaviour over every network ---------------

NETWORKS: dict[str, Callable[[int], Network]] = {
    "memory": InMemoryNetwork,
    "tcp+tls": lambda n: local_tcp_network(n, connect_timeout=10),
}


@pytest.fixture(params=sorted(NETWORKS))
def make_network(request: pytest.FixtureRequest) -> Callable[[int], Network]:
    return NETWORKS[request.param]


@pytest.fixture(params=sorted(NETWORKS))
def timed(request: pytest.FixtureRequest) -> tuple[Callable[[int], Network], Any, float]:
    """(network factory, clock, time unit in seconds) for tests about deadlines."""
    if request.param == "memory":
        return NETWORKS["memory"], mock_clock(), 1.0
    return NETWORKS[request.param], None, 0.25


def test_three_party_sum(make_network: Callable[[int], Network]) -> None:
    async def add_up(party: Party, value: int) -> int:
        others = await party.exchange("value", value)
        return value + sum(others.values())

    results = run_local(3, add_up, args_per_party=[(1,), (2,), (3,)], network=make_network(3))
    assert list(results) == [6, 6, 6]


def test_payload_types_survive(make_network: Callable[[int], Network]) -> None:
    payload = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "big": 3**500, "s": "x",
               "b": b"\x00\xff", "l": [None, True, 1.25], "t": (1, 2)}

    async def fn(party: Party) -> object:
        if party.id == 0:
            await party.send(1, "p", payload)
            return None
        return await party.recv(0, "p")

    got = run_local(2, fn, network=make_network(2))[1]
    np.testing.assert_array_equal(got.pop("w"), payload["w"])
    assert got == {k: v for k, v in payload.items() if k != "w"}


def test_stats_count_wire_bytes_messages_rounds(make_network: Callable[[int], Network]) -> None:
    arr = np.zeros(1000, dtype=np.uint64)

    async def fn(party: Party) -> None:
        await party.exchange("r1", arr)
        await party.exchange("r2", arr[:10])

    net = make_network(3)
    res = run_local(3, fn, network=net)
    overhead = 4 if "Tcp" in type(net).__name__ else 0
    sizes = []
    for tag, a in (("r1", arr), ("r2", arr[:10])):
        body = wire.encode_payload(a)
        sizes.append(len(wire.encode_header(session=SESSION, tag=tag, sender=0, recipient=1,
                                            seq=0, payload_len=len(body))) + len(body))
    for st in res.stats:
        assert st.messages_sent == 4 and st.messages_received == 4
        assert st.rounds == 2
        assert st.bytes_sent == 2 * (sum(sizes) + 2 * overhead)
        assert st.bytes_received == st.bytes_sent
        assert sum(st.sent_to.values()) == st.bytes_sent


def test_partial_gather_returns_who_answered_and_rejects_latecomers(timed: tuple) -> None:
    make_network, clock, unit = timed

    async def fn(party: Party) -> object:
        if party.id == 0:
            got = await party.gather("g", timeout=1.0 * unit, min_count=1)
            assert isinstance(got.missing[2], PeerTimeout) and got.missing[2].peer == 2
            # party 2 answers after the deadline: its link is then rejected
            with pytest.raises(MessageRejected):
                await party.recv(2, "after")
            return sorted(got), sorted(got.missing)
        if party.id != 2:
            await party.send(0, "g", party.id)
            return None
        await trio.sleep(2.0 * unit)
        try:  # party 0 cuts party 2 off on the late message: these may fail
            await party.send(0, "g", party.id)
            await party.send(0, "after", 1)
        except PeerDropped:
            pass
        return None

    res = run_local(3, fn, network=make_network(3), clock=clock)
    assert res[0] == ([1], [2])


@pytest.mark.slow
def test_recv_timeout_is_typed(timed: tuple) -> None:
    make_network, clock, unit = timed

    async def fn(party: Party) -> object:
        if party.id == 0:
            with pytest.raises(PeerTimeout) as info:
                await party.recv(1, "never", timeout=5 * unit)
            assert info.value.peer == 1
            with pytest.raises(PeerTimeout):  # and it stays timed out
                await party.recv(1, "never")
        else:
            await trio.sleep(10 * unit)
        return "ok"

    assert list(run_local(2, fn, network=make_network(2), clock=clock,
                          timeout=5 * unit)) == ["ok"] * 2


def test_party_failure_surfaces_as_peer_dropped(make_network: Callable[[int], Network]) -> None:
    async def fn(party: Party) -> object:
        if party.id == 1:
            raise RuntimeError("crash")
        return await party.recv(1, "x", timeout=30)

    res = run_local(3, fn, network=make_network(3), return_exceptions=True)
    assert isinstance(res[1], RuntimeError)
    assert isinstance(res[0], PeerDropped) and res[0].peer == 1
    assert isinstance(res[2], PeerDropped)


def test_first_error_is_reraised_with_party_note(make_network: Callable[[int], Network]) -> None:
    async def fn(party: Party) -> None:
        if party.id == 2:
            raise ValueError("bad input at party 2")

    with pytest.raises(ValueError, match="bad input") as info:
        run_local(3, fn, network=make_network(3))
    assert any("party 2" in note for note in info.value.__notes__)


def test_tag_reuse_and_double_receive_are_bugs(make_network: Callable[[int], Network]) -> None:
    async def fn(party: Party) -> None:
        if party.id == 0:
            await party.send(1, "t", 1)
            with pytest.raises(InvalidInput, match="already used"):
                await party.send(1, "t", 2)
        else:
            assert await party.recv(0, "t") == 1
            with pytest.raises(InvalidInput, match="already received"):
                await party.recv(0, "t")
        with pytest.raises(InvalidInput):
            await party.send(7, "x", 1)

    run_local(2, fn, network=make_network(2))


def test_cancelled_recv_loses_nothing(timed: tuple) -> None:
    make_network, clock, unit = timed

    async def fn(party: Party) -> object:
        if party.id == 1:
            await trio.sleep(1 * unit)
            await party.send(0, "m", "hello")
            return None
        with trio.move_on_after(0.5 * unit):
            await party.recv(1, "m")
        return await party.recv(1, "m")

    assert run_local(2, fn, network=make_network(2), clock=clock)[0] == "hello"


def test_send_many_and_broadcast_subset(make_network: Callable[[int], Network]) -> None:
    async def fn(party: Party) -> object:
        if party.id == 0:
            failed = await party.send_many("own", {p: p * 10 for p in party.peers})
            assert failed == {}
            await party.broadcast("sub", "hi", to=[2])
            return None
        got = await party.recv(0, "own")
        extra = await party.recv(0, "sub") if party.id == 2 else None
        return (got, extra)

    res = run_local(3, fn, network=make_network(3))
    assert res[1] == (10, None) and res[2] == (20, "hi")


def test_many_parties_gather(make_network: Callable[[int], Network]) -> None:
    n = 30 if make_network is InMemoryNetwork else 8

    async def fn(party: Party) -> object:
        if party.id == 0:
            got = await party.gather("up", min_count=n - 1)
            return sum(int(v.sum()) for v in got.values())
        await party.send(0, "up", np.full(100, party.id, dtype=np.int64))
        return None

    assert run_local(n, fn, network=make_network(n))[0] == 100 * sum(range(1, n))


# ---- everyone expected, or a typed error naming who is missing ---------------------


async def add_up(party: Party, value: int) -> int:
    """The README's example, verbatim."""
    others = await party.exchange("value", value)   # send to all, gather from all
    return value + sum(others.values())


def test_exchange_raises_naming_a_party_that_left(make_network: Callable[[int], Network]) -> None:
    async def fn(party: Party, value: int) -> object:
        if party.id == 2:
            return None  # leaves at once (says goodbye)
        return await add_up(party, value)

    res = run_local(3, fn, args_per_party=[(1,), (2,), (3,)], network=make_network(3),
                    return_exceptions=True)
    for me in (0, 1):
        err = res[me]
        assert isinstance(err, PeersMissing), err
        assert set(err.missing) == {2} and err.peer == 2
        assert isinstance(err.missing[2], PeerDropped) and err.missing[2].peer == 2
        assert "'value': 1 of 2 parties answered, 2 needed; missing: party 2 (PeerDropped" \
            in str(err)
    assert res[2] is None


def test_exchange_raises_on_a_silent_party_partial_mode_says_who_is_missing(
        timed: tuple) -> None:
    make_network, clock, unit = timed

    async def fn(party: Party) -> object:
        if party.id == 2:
            await trio.sleep(3 * unit)  # silent past both deadlines
            return None
        if party.id == 0:
            with pytest.raises(PeersMissing) as info:
                await party.exchange("v", 10, timeout=1 * unit)
            return {p: type(e) for p, e in info.value.missing.items()}
        got = await party.exchange("v", 11, timeout=1 * unit, min_count=1)
        return type(got), dict(got), {p: type(e) for p, e in got.missing.items()}

    res = run_local(3, fn, network=make_network(3), clock=clock, return_exceptions=True)
    assert res[0] == {2: PeerTimeout}
    assert res[1] == (Gathered, {0: 10}, {2: PeerTimeout})


def test_min_count_raises_below_k_and_returns_from_k(
        make_network: Callable[[int], Network]) -> None:
    async def fn(party: Party) -> object:
        if party.id == 0:
            enough = await party.gather("a", min_count=2)
            with pytest.raises(PeersMissing, match="2 of 3 parties answered, 3 needed") as info:
                await party.gather("b", min_count=3, timeout=30)
            none_needed = await party.gather("c", [3], min_count=0)
            return (dict(enough), sorted(enough.missing), sorted(info.value.missing),
                    dict(none_needed), sorted(none_needed.missing))
        if party.id == 3:
            return None  # leaves at once
        await party.send(0, "a", party.id)
        await party.send(0, "b", party.id)
        return None

    res = run_local(4, fn, network=make_network(4))
    assert res[0] == ({1: 1, 2: 2}, [3], [3], {}, [3])


def test_gather_arguments_are_checked() -> None:
    async def fn(party: Party) -> None:
        if party.id != 0:
            return
        for bad, error in ((-1, InvalidInput), (1.5, InvalidType), (True, InvalidType),
                           (3, InvalidInput)):  # 3: more than the two peers asked
            with pytest.raises(error):
                await party.gather("x", min_count=bad)  # type: ignore[arg-type]
            with pytest.raises(error):
                await party.exchange("x", 0, min_count=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="listed twice"):
            await party.gather("x", [1, 1])

    run_local(3, fn)


@pytest.mark.parametrize("network", ["memory", "tcp+tls"])
def test_readme_add_up_with_only_party_0_started_raises(network: str) -> None:
    # the issue: party 0 alone printed 1 and exited 0
    net = InMemoryNetwork(3) if network == "memory" else local_tcp_network(3, connect_timeout=1)

    async def main() -> PeersMissing:
        with pytest.raises(PeersMissing) as info:
            async with open_party(net, 0, SESSION, timeout=5) as party:
                await add_up(party, 1)
        if network != "memory":
            await net.aclose()  # type: ignore[attr-defined]
        return info.value

    err = trio.run(main, clock=mock_clock() if network == "memory" else None)
    expected = PeerTimeout if network == "memory" else PeerDropped  # TCP: never connected
    assert sorted(err.missing) == [1, 2] and err.peer is None
    assert all(type(e) is expected for e in err.missing.values())
    assert "party 1 (" in str(err) and "party 2 (" in str(err)


def test_readme_add_up_with_a_refused_certificate_raises() -> None:
    # the issue: party 2 refused party 1's certificate, and 0 and 1 printed 3
    good = TlsCredentials.generate([0, 1, 2])
    foreign = TlsCredentials.generate([1])  # another CA: refused by 0 and 2
    net = local_tcp_network(3, {0: good[0], 1: foreign[1], 2: good[2]}, connect_timeout=1)
    res = run_local(3, add_up, args_per_party=[(1,), (2,), (3,)], network=net, timeout=10,
                    return_exceptions=True)
    assert all(isinstance(r, PeersMissing) for r in res), list(res)
    assert sorted(res[0].missing) == [1] and sorted(res[2].missing) == [1]
    assert sorted(res[1].missing) == [0, 2]
    assert all(isinstance(e, PeerDropped) for r in res for e in r.missing.values())
    assert "certificate" in str(res[2].missing[1])  # 2 connects to 1 and refuses its certificate


def test_readme_states_what_add_up_really_sends() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    run = run_local(3, add_up, args_per_party=[(1,), (2,), (3,)])
    assert list(run) == [6, 6, 6]
    assert f"print(run.stats[0])       # {run.stats[0]}\n" in readme


# ---- faults and hostile frames (in-memory: frames crafted by hand) -------------


async def _hostile(frames: Callable[[], list[bytes]], expect: type[Exception]) -> Exception:
    """Party 0 is honest; party 1's raw link sends ``frames``; returns party 0's error."""
    net = InMemoryNetwork(2)
    async with net.open_links(1) as raw, open_party(net, 0, SESSION, timeout=5) as p0:
        for f in frames():
            await raw[0].send_frame(f)
        with pytest.raises(expect) as info:
            await p0.recv(1, "t")
        assert 1 in p0.failed
        return info.value


def _f(**kw: object) -> bytes:
    args = {"session": SESSION, "tag": "t", "sender": 1, "recipient": 0, "seq": 0,
            "payload": 1} | kw
    return wire.encode_frame(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (lambda: [_f(session=b"\x01" * 16)], "session"),
        (lambda: [_f(sender=5)], "claims to be from party 5"),
        (lambda: [_f(recipient=3)], "addressed to party 3"),
        (lambda: [_f(seq=1)], "sequence number"),
        (lambda: [_f(tag="a"), _f(tag="b", seq=0)], "sequence number"),  # replay of seq 0
        (lambda: [_f(tag="a"), _f(tag="a", seq=1)], "second message"),
    ],
)
def test_rejected_frames_name_the_peer(frames: Callable[[], list[bytes]], match: str) -> None:
    err = trio.run(_hostile, frames, MessageRejected)
    assert err.peer == 1 and "party 1" in str(err)
    assert match in str(err)


@pytest.mark.parametrize("junk", [b"", b"garbage", _f()[:-1], b"MPCA" + bytes(60)])
def test_garbage_is_a_wire_error(junk: bytes) -> None:
    err = trio.run(_hostile, lambda: [junk], WireError)
    assert err.peer == 1


def test_goodbye_then_recv_is_peer_dropped() -> None:
    bye = wire.encode_frame(session=SESSION, tag="", sender=1, recipient=0, seq=0,
                            payload=None, kind=wire.FrameKind.BYE)
    err = trio.run(_hostile, lambda: [bye], PeerDropped)
    assert err.peer == 1


def test_messages_before_a_drop_are_still_delivered() -> None:
    async def fn(party: Party) -> object:
        if party.id == 1:
            await party.send(0, "a", 1)
            return None  # leaves: a goodbye follows
        await trio.sleep(1)
        first = await party.recv(1, "a")
        with pytest.raises(PeerDropped):
            await party.recv(1, "b")
        return first

    assert run_local(2, fn, clock=mock_clock())[0] == 1


def test_crashed_party_is_dropped_not_a_hang() -> None:
    async def fn(party: Party) -> object:
        if party.id == 2:
            await party.send(0, "one", 1)
            await party.send(0, "two", 2)  # crashes here
            return None
        if party.id == 0:
            got = await party.gather("one")
            with pytest.raises(PeerDropped):
                await party.recv(2, "two")
            return sorted(got)
        await party.send(0, "one", 1)
        return None

    net = FaultyNetwork(InMemoryNetwork(3), {2: Fault(crash_after=1)})
    res = run_local(3, fn, network=net, return_exceptions=True)
    assert res[0] == [1, 2]
    assert isinstance(res[2], PeerDropped)


def test_stalled_party_times_out() -> None:
    async def fn(party: Party) -> object:
        if party.id == 0:
            got = await party.gather("x", timeout=3, min_count=1)
            return sorted(got), type(got.missing[1])
        await party.send(0, "x", party.id)
        return None

    net = FaultyNetwork(InMemoryNetwork(3), {1: Fault(stall_after=0)})
    res = run_local(3, fn, network=net, clock=mock_clock(), timeout=5, return_exceptions=True)
    assert res[0] == ([2], PeerTimeout)
    assert isinstance(res[1], PeerTimeout)


def test_corrupting_party_is_cut_off_others_finish() -> None:
    def flip(frame: bytes) -> bytes:
        return frame[:-1] + bytes([frame[-1] ^ 0xFF]) + b"junk"

    async def fn(party: Party) -> object:
        if party.id == 0:
            got = await party.gather("x", min_count=1)
            assert isinstance(party.failed[1], WireError)
            assert got.missing == {1: party.failed[1]}
            return sorted(got)
        await party.send(0, "x", party.id)
        return None

    net = FaultyNetwork(InMemoryNetwork(3), {1: Fault(corrupt=flip)})
    assert run_local(3, fn, network=net)[0] == [2]


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInput):
        InMemoryNetwork([0, 0])
    with pytest.raises(InvalidInput):
        run_local(0, lambda p: p)  # type: ignore[arg-type, return-value]
    with pytest.raises(InvalidInput):
        run_local(2, lambda p: p, args_per_party=[()])  # type: ignore[arg-type, return-value]
    with pytest.raises(InvalidInput):
        Party(0, {}, b"short")
    with pytest.raises(InvalidInput):
        Party(0, {}, SESSION, timeout=0)


def test_star_network_links_only_the_hub() -> None:
    async def fn(party: Party) -> object:
        if party.id == 0:
            assert party.peers == (1, 2, 3)
            return sorted((await party.gather("x")).values())
        assert party.peers == (0,)
        with pytest.raises(InvalidInput):
            await party.send(1 if party.id != 1 else 2, "x", 0)
        await party.send(0, "x", party.id)
        return None

    assert run_local(4, fn, network=InMemoryNetwork(4, hub=0))[0] == [1, 2, 3]
    with pytest.raises(InvalidInput):
        InMemoryNetwork(3, hub=5)


def test_a_flood_of_unread_messages_cuts_the_peer_off() -> None:
    from mpcai.runtime import party as party_mod

    async def fn(party: Party) -> object:
        if party.id == 1:
            for i in range(party_mod.MAX_UNREAD_MESSAGES + 5):
                try:
                    await party.send(0, f"spam{i}", b"x")
                except PeerDropped:
                    break
            return None
        await trio.sleep(1)
        return type(party.failed.get(1)).__name__

    assert run_local(2, fn, clock=mock_clock())[0] == "MessageRejected"


def test_two_tasks_receiving_one_tag_is_a_typed_error() -> None:
    async def fn(party: Party) -> object:
        if party.id == 1:
            await trio.sleep(1)
            await party.send(0, "m", 1)
            return None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(party.recv, 1, "m")
            await trio.sleep(0.1)
            with pytest.raises(InvalidInput, match="already receiving"):
                await party.recv(1, "m")
        return "ok"

    assert run_local(2, fn, clock=mock_clock())[0] == "ok"


# ---- resource bounds: unread bytes per peer, decoding off the event loop -------------


async def _run_parties(net: Network, fns: dict[int, Callable[[Party], Any]],
                       **party_options: Any) -> dict[int, Any]:
    """Run ``fns[pid](party)`` for every party of ``net`` (party 0 gets ``party_options``)."""
    results: dict[int, Any] = {}

    async def one(pid: int) -> None:
        options = party_options if pid == 0 else {}
        async with open_party(net, pid, SESSION, timeout=10, **options) as party:
            results[pid] = await fns[pid](party)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for pid in fns:
                nursery.start_soon(one, pid)
    return results


BUDGET = 2 << 20
SPAM = np.zeros(256 << 10, dtype=np.uint8)


def test_unread_bytes_beyond_the_budget_cut_the_peer_off(
        make_network: Callable[[int], Network]) -> None:
    async def honest(party: Party) -> object:
        with trio.fail_after(20):
            while 1 not in party.failed:
                await trio.sleep(0.01)
        err = party.failed[1]
        with pytest.raises(MessageRejected):
            await party.recv(1, "never sent")
        stored = party.stats.received_from.get(1, 0)
        others = await party.exchange("after", 0, [2])  # the others carry on
        return type(err), err.peer, str(err), stored, others

    async def flooder(party: Party) -> int:
        sent = 0
        for i in range(40):  # 10 MiB under tags nobody reads
            try:
                await party.send(0, f"spam{i}", SPAM)
            except PeerDropped:
                break
            sent += 1
        return sent

    async def bystander(party: Party) -> object:
        return await party.exchange("after", 2, [0])

    async def main() -> dict[int, Any]:
        return await _run_parties(make_network(3), {0: honest, 1: flooder, 2: bystander},
                                  max_unread_bytes=BUDGET)

    res = trio.run(main)
    kind, peer, msg, stored, others = res[0]
    assert kind is MessageRejected and peer == 1
    assert "unsolicited messages would hold more than" in msg
    assert stored <= BUDGET  # what party 0 accepted from party 1 fits the budget
    assert stored >= BUDGET - 2 * SPAM.nbytes  # and the budget, not something else, stopped it
    assert others == {2: 2} and res[2] == {0: 0}


def test_messages_a_receive_waits_for_are_not_charged(timed: tuple) -> None:
    make_network, clock, unit = timed
    big = np.arange(1 << 18, dtype=np.uint64)  # 2 MiB, beyond the 64 KiB budget

    async def receiver(party: Party) -> object:
        one = await party.recv(1, "big")
        two = await party.gather("big2", [1])
        with trio.fail_after(10):
            while 1 not in party.failed:  # the unsolicited one is refused
                await trio.sleep(0.01 * unit)
        return int(one.sum()), int(two[1][-1]), type(party.failed[1])

    async def sender(party: Party) -> None:
        await trio.sleep(1.0 * unit)  # both receives are waiting by then
        await party.send(0, "big", big)
        await trio.sleep(1.0 * unit)
        await party.send(0, "big2", big)
        await trio.sleep(1.0 * unit)
        try:
            await party.send(0, "unasked", big)
        except PeerDropped:
            pass

    async def main() -> dict[int, Any]:
        return await _run_parties(make_network(2), {0: receiver, 1: sender},
                                  max_unread_bytes=64 << 10)

    res = trio.run(main, clock=clock) if clock else trio.run(main)
    assert res[0] == (int(big.sum()), int(big[-1]), MessageRejected)


def test_a_frame_slow_to_decode_does_not_stall_the_other_links(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    release = threading.Event()
    outcome: list[bool] = []
    real = wire.decode_frame

    def slow_decode(data: Any, limits: wire.Limits = wire.DEFAULT_LIMITS) -> wire.Frame:
        frame = real(data, limits)
        if frame.tag == "huge":  # stands for a frame that takes long to decode
            outcome.append(release.wait(timeout=5))
        return frame

    monkeypatch.setattr(wire, "decode_frame", slow_decode)
    huge_payload = list(range(2000))  # many small ints: more work than a reader does inline
    huge = _f(tag="huge", payload=huge_payload)
    small = _f(tag="small", sender=2, payload="hi")

    async def main() -> object:
        net = InMemoryNetwork(3)
        async with net.open_links(1) as raw1, net.open_links(2) as raw2, \
                open_party(net, 0, SESSION, timeout=10) as p0:
            await raw1[0].send_frame(huge)
            await raw2[0].send_frame(small)
            got = await p0.recv(2, "small")  # while party 1's frame is still being decoded
            release.set()
            return got, await p0.recv(1, "huge")

    assert trio.run(main) == ("hi", huge_payload)
    assert outcome == [True]  # released by the test, not by the timeout


def test_max_unread_bytes_is_checked() -> None:
    for bad, error in ((-1, InvalidInput), (1.5, InvalidType), (True, InvalidType)):
        with pytest.raises(error, match="max_unread_bytes"):
            Party(0, {}, SESSION, max_unread_bytes=bad)  # type: ignore[arg-type]


def test_run_local_raises_the_root_cause_not_what_the_others_saw_of_it() -> None:
    from mpcai.errors import PeerError
    from mpcai.runtime import run_local

    async def fn(party: Party) -> Any:
        if party.id == 1:
            raise ValueError("boom")
        return await party.recv(1, "value")  # parties 0 and 2 see party 1 leave

    with pytest.raises(ValueError, match="boom") as info:
        run_local(3, fn, timeout=3)
    notes = info.value.__notes__
    assert notes[0] == "(raised by party 1)"
    assert "0 (" in notes[1] and "2 (" in notes[1]
    got = run_local(3, fn, timeout=3, return_exceptions=True)
    assert isinstance(got[1], ValueError)
    assert isinstance(got[0], PeerError) and isinstance(got[2], PeerError)
