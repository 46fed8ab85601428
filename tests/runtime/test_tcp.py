"""TCP network with mutual TLS 1.3: parties, big frames, and every refused peer.

Only 127.0.0.1 with ports chosen by the OS; every test is bounded by
``trio.fail_after`` so a hang fails instead of blocking the run.
"""

from __future__ import annotations

import ssl
import struct
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import trio

from mpcai.errors import InvalidInput, InvalidType, PeerDropped, WireError
from mpcai.runtime import _connect, tcp, wire
from mpcai.runtime.party import Party, open_party
from mpcai.runtime.tcp import (
    TcpListener,
    TcpNetwork,
    TlsCredentials,
    local_tcp_network,
)

SESSION = bytes(range(16))
GUARD = 15.0  # seconds before a test is declared hung
SHORT = 1.0  # connect timeout where a peer is expected to never show up


@pytest.fixture(scope="module")
def creds() -> dict[int, TlsCredentials]:
    return TlsCredentials.generate([0, 1, 2])


@pytest.fixture(scope="module")
def foreign() -> dict[int, TlsCredentials]:
    """Valid-looking credentials from another CA."""
    return TlsCredentials.generate([0, 1, 2])


def _client_context(c: TlsCredentials | None, ca: bytes) -> ssl.SSLContext:
    """A hand-made client context (for impostors); verifies nothing of the server."""
    if c is not None:
        ctx = c._context(server_side=False)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=ca.decode())
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _impostor_client(port: int, ctx: ssl.SSLContext | None, claimed: int,
                           recipient: int, after_ack: bytes = b"") -> str:
    """Connect, claim to be ``claimed``; returns what the server did."""
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        if ctx is not None:
            stream = trio.SSLStream(stream, ctx, server_hostname=f"party-{recipient}.mpcai")
            await stream.do_handshake()
        await stream.send_all(_connect._HELLO.pack(_connect._HELLO_MAGIC, claimed, recipient))
        ack = b""
        while len(ack) < _connect._HELLO.size:
            chunk = await stream.receive_some()
            if not chunk:
                return "closed"
            ack += chunk
        assert _connect._HELLO.unpack(ack) == (_connect._ACK_MAGIC, recipient, claimed)
        if after_ack:
            await stream.send_all(after_ack)
        return "accepted"
    except trio.BrokenResourceError as exc:
        return f"refused: {exc.__cause__!r}"
    finally:
        await trio.aclose_forcefully(stream)


async def _honest(net: TcpNetwork, me: int, fn: Callable[[Party], Awaitable[Any]]) -> Any:
    async with open_party(net, me, SESSION, timeout=5) as party:
        return await fn(party)


async def _dropped(party: Party, peer: int) -> PeerDropped:
    with pytest.raises(PeerDropped) as info:
        await party.recv(peer, "anything")
    assert info.value.peer == peer
    return info.value


# ---- honest parties -------------------------------------------------------------


@pytest.mark.trio
async def test_three_parties_exchange_over_tls_with_exact_byte_counts(
        creds: dict[int, TlsCredentials]) -> None:
    # launcher style: each party binds port 0, then learns the address book
    listeners = {i: await TcpListener.bind("127.0.0.1", 0) for i in range(3)}
    book = {i: ("127.0.0.1", lst.port) for i, lst in listeners.items()}
    assert all(port > 0 for _, port in book.values())
    payload = {i: {"from": i, "w": np.arange(6, dtype=np.int64).reshape(2, 3) * i}
               for i in range(3)}
    results: dict[int, Any] = {}
    stats = {}

    async def run(i: int) -> None:
        net = TcpNetwork(book, creds[i], listeners={i: listeners[i]}, connect_timeout=10)
        async with open_party(net, i, SESSION, timeout=10) as party:
            results[i] = await party.exchange("x", payload[i])
            stats[i] = party.stats

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(run, i)

    def wire_bytes(sender: int, recipient: int) -> int:
        frame = wire.encode_frame(session=SESSION, tag="x", sender=sender, recipient=recipient,
                                  seq=0, payload=payload[sender])
        return len(frame) + tcp.TcpLink.frame_overhead

    for i in range(3):
        peers = [j for j in range(3) if j != i]
        assert sorted(results[i]) == peers
        for j in peers:
            assert results[i][j]["from"] == j
            np.testing.assert_array_equal(results[i][j]["w"], payload[j]["w"])
            assert stats[i].sent_to[j] == wire_bytes(i, j)
            assert stats[i].received_from[j] == wire_bytes(j, i)
        assert stats[i].messages_sent == stats[i].messages_received == 2


@pytest.mark.trio
@pytest.mark.parametrize("plaintext", [False, True], ids=["tls", "plaintext"])
async def test_8mb_float32_array_round_trip(plaintext: bool) -> None:
    arr = np.random.default_rng(1).standard_normal(2 << 20).astype(np.float32)  # 8 MiB
    net = local_tcp_network(2, insecure_plaintext=plaintext, connect_timeout=10)

    async def fn(party: Party) -> Any:
        if party.id == 0:
            await party.send(1, "there", arr)
            return await party.recv(1, "back")
        await party.send(0, "back", await party.recv(0, "there"))
        return None

    results: dict[int, Any] = {}

    async def run(i: int) -> None:
        results[i] = await _honest(net, i, fn)

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, 0)
            nursery.start_soon(run, 1)
    assert results[0].dtype == np.float32
    np.testing.assert_array_equal(results[0], arr)


@pytest.mark.trio
@pytest.mark.parametrize("plaintext", [False, True], ids=["tls", "plaintext"])
async def test_link_sends_a_frame_given_in_parts_and_sees_close(plaintext: bool) -> None:
    net = local_tcp_network(2, insecure_plaintext=plaintext, connect_timeout=10)
    big = np.arange(300_000, dtype=np.uint16)  # spans several TLS write chunks
    parts = [b"head", memoryview(b""), big, b"tail"]
    expected = b"head" + big.tobytes() + b"tail"
    got: list[bytes] = []

    async def side(i: int) -> None:
        async with net.open_links(i) as links:
            link = links[1 - i]
            assert link.frame_overhead == 4
            if i == 0:
                await link.send_frame(parts)
                await link.send_frame(b"")
                await link.send_frame(b"small")
                await link.aclose()
                with pytest.raises(PeerDropped):
                    await link.send_frame(b"after close")
            else:
                for _ in range(3):
                    got.append(bytes(await link.receive_frame()))
                with pytest.raises(PeerDropped, match="connection closed"):
                    await link.receive_frame()
                with pytest.raises(PeerDropped):  # and it stays dropped
                    await link.receive_frame()

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, 0)
            nursery.start_soon(side, 1)
    assert got == [expected, b"", b"small"]


@pytest.mark.trio
async def test_cancelled_receive_loses_nothing_but_cancelled_send_breaks_the_link() -> None:
    net = local_tcp_network(2, connect_timeout=10)
    stuck = np.zeros(64 << 20, dtype=np.uint8)  # far more than the socket buffers hold
    sent_first = trio.Event()
    send_cancelled = trio.Event()

    async def side(i: int) -> None:
        async with net.open_links(i) as links:
            link = links[1 - i]
            if i == 0:
                await sent_first.wait()
                await link.send_frame(b"first")
                with trio.move_on_after(0.2) as scope:
                    await link.send_frame(stuck)  # the peer is not reading
                assert scope.cancelled_caught
                send_cancelled.set()
                with pytest.raises(PeerDropped, match="cancelled half-way"):
                    await link.send_frame(b"more")
            else:
                with trio.move_on_after(0.05) as scope:  # nothing sent yet
                    await link.receive_frame()
                assert scope.cancelled_caught
                sent_first.set()
                assert await link.receive_frame() == b"first"  # nothing was lost
                await send_cancelled.wait()
                with pytest.raises(PeerDropped, match="middle of a frame"):
                    await link.receive_frame()

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, 0)
            nursery.start_soon(side, 1)


@pytest.mark.trio
async def test_a_party_that_never_answers_the_handshake_is_dropped(
        creds: dict[int, TlsCredentials]) -> None:
    async with await TcpListener.bind() as silent:  # listens, never accepts
        book = {0: ("127.0.0.1", silent.port), 1: ("127.0.0.1", 0)}
        net = TcpNetwork(book, creds[1], connect_timeout=SHORT)

        async def fn(party: Party) -> PeerDropped:
            return await _dropped(party, 0)

        with trio.fail_after(GUARD):
            err = await _honest(net, 1, fn)
    assert "did not connect within" in str(err)


# ---- refused peers: the honest party sees a typed dropout, never a hang -------------


async def _impostor_vs_party0(n: int, creds: dict[int, TlsCredentials],
                              ctx: ssl.SSLContext | None, claimed: int,
                              after_ack: bytes = b"", **net_options: Any,
                              ) -> tuple[str, Party, dict[int, BaseException]]:
    """Honest party 0 of ``n`` (the others absent); an impostor dials it as ``claimed``."""
    options: dict[str, Any] = {"connect_timeout": SHORT, **net_options}
    net = local_tcp_network(n, None if options.get("insecure_plaintext") else creds, **options)
    port = net.addresses[0][1]
    outcome: list[str] = []
    errors: dict[int, BaseException] = {}
    box: list[Party] = []

    async def honest() -> None:
        async def fn(party: Party) -> None:
            box.append(party)
            for peer in party.peers:
                with pytest.raises((PeerDropped, WireError)) as info:
                    await party.recv(peer, "anything")
                errors[peer] = info.value

        await _honest(net, 0, fn)

    async def impostor() -> None:
        outcome.append(await _impostor_client(port, ctx, claimed, 0, after_ack))

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(honest)
            await trio.sleep(0)
            nursery.start_soon(impostor)
    await net.aclose()
    return outcome[0], box[0], errors


@pytest.mark.trio
async def test_client_without_certificate_is_refused(creds: dict[int, TlsCredentials]) -> None:
    outcome, party, errors = await _impostor_vs_party0(
        2, creds, _client_context(None, creds[0].ca_cert), claimed=1)
    assert outcome != "accepted"
    assert isinstance(errors[1], PeerDropped) and errors[1].peer == 1
    assert "certificate" in str(errors[1])
    assert set(party.failed) == {1}


@pytest.mark.trio
async def test_client_certificate_from_another_ca_is_refused(
        creds: dict[int, TlsCredentials], foreign: dict[int, TlsCredentials]) -> None:
    outcome, _, errors = await _impostor_vs_party0(
        2, creds, _client_context(foreign[1], foreign[1].ca_cert), claimed=1)
    assert outcome != "accepted"
    assert isinstance(errors[1], PeerDropped) and "did not connect" in str(errors[1])


@pytest.mark.trio
async def test_certificate_of_another_party_cannot_claim_an_id(
        creds: dict[int, TlsCredentials]) -> None:
    # party 2's genuine certificate, used by a process that says it is party 1
    outcome, _, errors = await _impostor_vs_party0(
        3, creds, _client_context(creds[2], creds[2].ca_cert), claimed=1)
    assert outcome != "accepted"
    assert isinstance(errors[1], PeerDropped)
    assert "certificate of party 2 claims to be party 1" in str(errors[1])
    assert isinstance(errors[2], PeerDropped)


@pytest.mark.trio
@pytest.mark.parametrize("who", ["other party", "other CA"])
async def test_server_with_the_wrong_certificate_is_refused(
        creds: dict[int, TlsCredentials], foreign: dict[int, TlsCredentials], who: str) -> None:
    # the address of party 0 is served by an impostor
    impostor = creds[2] if who == "other party" else foreign[0]
    async with await TcpListener.bind() as fake0:
        book = {0: ("127.0.0.1", fake0.port), 1: ("127.0.0.1", 0)}
        net = TcpNetwork(book, creds[1], connect_timeout=30)  # failing fast, not timing out

        async def serve() -> None:
            stream = await fake0.accept()
            tls = trio.SSLStream(stream, impostor._context(server_side=True), server_side=True)
            try:
                await tls.do_handshake()
                await tls.receive_some()
            except trio.BrokenResourceError:
                pass
            finally:
                await trio.aclose_forcefully(tls)

        async def fn(party: Party) -> PeerDropped:
            return await _dropped(party, 0)

        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                err = await _honest(net, 1, fn)
    assert "TLS certificate rejected" in str(err)
    assert "did not connect" not in str(err)


@pytest.mark.trio
async def test_length_prefix_above_the_limit_is_a_wire_error_without_allocating(
        creds: dict[int, TlsCredentials]) -> None:
    tracemalloc.start()
    try:
        outcome, party, errors = await _impostor_vs_party0(
            2, creds, _client_context(creds[1], creds[1].ca_cert), claimed=1,
            after_ack=struct.pack("<I", 2**32 - 1) + b"x" * 64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome == "accepted"  # a genuine party 1, misbehaving
    assert isinstance(errors[1], WireError) and errors[1].peer == 1
    assert "exceeds the limit" in str(errors[1])
    assert isinstance(party.failed[1], WireError)
    assert peak < 64 << 20


@pytest.mark.trio
async def test_smaller_frame_limit_is_enforced_in_plaintext_too() -> None:
    outcome, _, errors = await _impostor_vs_party0(
        2, {}, None, claimed=1, insecure_plaintext=True, max_frame_bytes=1000,
        after_ack=struct.pack("<I", 1001))
    assert outcome == "accepted"
    assert isinstance(errors[1], WireError) and "1001" in str(errors[1])


@pytest.mark.trio
async def test_peer_closing_in_the_middle_of_a_frame_is_a_dropout() -> None:
    outcome, _, errors = await _impostor_vs_party0(
        2, {}, None, claimed=1, insecure_plaintext=True,
        after_ack=struct.pack("<I", 100) + b"0123456789")
    assert outcome == "accepted"
    assert isinstance(errors[1], PeerDropped) and errors[1].peer == 1
    assert "middle of a frame" in str(errors[1])


@pytest.mark.trio
async def test_plaintext_hello_for_the_wrong_party_is_refused() -> None:
    # party 0 accepts only higher ids; party 0 itself (or a stranger) is refused
    outcome, _, errors = await _impostor_vs_party0(
        2, {}, None, claimed=0, insecure_plaintext=True)
    assert outcome != "accepted"
    assert "is not a peer that connects to party 0" in str(errors[1])


# ---- configuration errors ----------------------------------------------------------


@pytest.mark.parametrize("host", ["10.1.2.3", "example.org", "0.0.0.0"])
def test_plaintext_is_refused_unless_every_host_is_loopback(host: str) -> None:
    book = {0: ("127.0.0.1", 4000), 1: (host, 4001)}
    with pytest.raises(InvalidInput, match="loopback"):
        TcpNetwork(book, insecure_plaintext=True)
    TcpNetwork({0: ("127.0.0.1", 4000), 1: ("localhost", 4001), 2: ("::1", 4002)},
               insecure_plaintext=True)


def test_tls_needs_credentials_of_the_right_party(creds: dict[int, TlsCredentials]) -> None:
    book = {0: ("127.0.0.1", 4000), 1: ("127.0.0.1", 4001)}
    with pytest.raises(InvalidInput, match="credentials are required"):
        TcpNetwork(book)
    with pytest.raises(InvalidInput, match="takes no TLS credentials"):
        TcpNetwork(book, creds[0], insecure_plaintext=True)
    with pytest.raises(InvalidInput, match="party 1's"):
        TcpNetwork(book, {0: creds[1]})
    with pytest.raises(InvalidInput):
        TcpNetwork(book, creds[0], max_frame_bytes=2**32)
    with pytest.raises(InvalidInput):
        TcpNetwork(book, creds[0], connect_timeout=0)
    with pytest.raises(InvalidInput):
        TcpNetwork({0: ("127.0.0.1", 70000)}, creds[0])


@pytest.mark.trio
async def test_open_links_refuses_a_certificate_for_another_party(
        creds: dict[int, TlsCredentials]) -> None:
    net = TcpNetwork({0: ("127.0.0.1", 0), 1: ("127.0.0.1", 0)}, creds[1])
    with pytest.raises(InvalidInput, match="party 1's, not party 0's"):
        async with net.open_links(0):
            pass  # pragma: no cover
    with pytest.raises(InvalidInput, match="not on this network"):
        async with net.open_links(5):
            pass  # pragma: no cover


def test_credentials_load_from_the_files_write_party_certs_makes(tmp_path: Any) -> None:
    from mpcai.runtime.certs import write_party_certs

    paths = write_party_certs(tmp_path, [0, 3])
    c = TlsCredentials.from_directory(tmp_path, 3)
    assert c.party_id == 3
    assert c == TlsCredentials.from_files(*paths.for_party(3))
    assert "BEGIN" not in repr(c)
    with pytest.raises(InvalidInput):
        TlsCredentials.from_directory(tmp_path, 4)
    with pytest.raises(InvalidInput):
        TlsCredentials(c.ca_cert, c.cert, b"-----BEGIN PRIVATE KEY-----\njunk\n")._context(True)
    # a FIFO in any slot would block the read forever, /dev/zero fill memory
    import os

    os.mkfifo(tmp_path / "fifo")
    ca, cert, key = paths.for_party(3)
    for bad in ((tmp_path / "fifo", cert, key), (ca, "/dev/zero", key),
                (ca, cert, tmp_path)):
        with pytest.raises(InvalidInput, match="not a regular file"):
            TlsCredentials.from_files(*bad)


# ---- connections that never authenticate ---------------------------------------------


@pytest.mark.slow
@pytest.mark.trio
async def test_silent_connections_are_capped_timed_out_and_cost_no_buffers(
        creds: dict[int, TlsCredentials], monkeypatch: pytest.MonkeyPatch) -> None:
    live, peak = [0], [0]
    real = _connect._Connector._handle_incoming

    async def counted(self: Any, stream: trio.SocketStream) -> None:
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        try:
            await real(self, stream)
        finally:
            live[0] -= 1

    monkeypatch.setattr(_connect._Connector, "_handle_incoming", counted)
    net = local_tcp_network(3, creds, connect_timeout=GUARD, max_pending=4,
                            handshake_timeout=0.3)
    port = net.addresses[0][1]
    results: dict[int, Any] = {}

    async def party(me: int) -> None:
        results[me] = await _honest(net, me, lambda p: p.exchange("x", me))

    silent: list[trio.SocketStream] = []
    tracemalloc.start()
    try:
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(party, 0)
                for _ in range(40):
                    silent.append(await trio.open_tcp_stream("127.0.0.1", port))
                nursery.start_soon(party, 1)  # queued behind the silent ones, still gets in
                for stream in silent:  # party 0 closes them while it still waits for party 2
                    assert await stream.receive_some() == b""
                _, peak_bytes = tracemalloc.get_traced_memory()
                nursery.start_soon(party, 2)
    finally:
        tracemalloc.stop()
        for stream in silent:
            await trio.aclose_forcefully(stream)
    assert results == {0: {1: 1, 2: 2}, 1: {0: 0, 2: 2}, 2: {0: 0, 1: 1}}
    assert peak[0] <= 4  # never more than max_pending unauthenticated at once
    # no 256 KiB TLS buffer per silent connection (40 of them would be 10 MiB)
    assert peak_bytes < 5 << 20


def test_pending_and_handshake_options_are_checked(creds: dict[int, TlsCredentials]) -> None:
    book = {0: ("127.0.0.1", 4000), 1: ("127.0.0.1", 4001)}
    for bad in ({"max_pending": 0}, {"handshake_timeout": 0},
                {"handshake_timeout": float("inf")}):
        with pytest.raises(InvalidInput):
            TcpNetwork(book, creds[0], **bad)  # type: ignore[arg-type]
    for bad in ({"max_pending": 2.5}, {"handshake_timeout": "5"}, {"max_frame_bytes": True}):
        with pytest.raises(InvalidType):
            TcpNetwork(book, creds[0], **bad)  # type: ignore[arg-type]
