"""HEAggStrategy + make_he_mod with the real Flower (1.41) Message API: ``strategy.start``
against ClientApps, every message through Flower's protobuf serde, each node with its own
persistent Context; a committee of nodes holding threshold Paillier key shares.

Most tests use a small 3-of-5 key from the unsafe test hook (objects handed to the mod);
the key-file test uses a 2048-bit key made from fixed safe primes (as
test_he_aggregation.py does)."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import pytest
from _flower_grid import GridBase, wire
from _flower_grid import stage_of as grid_stage
from flwr.app import (
    Array,
    ArrayRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg
from mpcai.protocols.he_aggregation import HEAggConfig, quantize_update

from mpcai.errors import ClippingWarning, InvalidInput
from mpcai.he import paillier as P
from mpcai.he.paillier._threshold import _unsafe_threshold_keys_for_tests
from mpcai.integrations._flower_he import _write_keys
from mpcai.integrations.flower import (
    _FAILED,
    HE_RECORD_KEY,
    HEAggStrategy,
    make_he_mod,
)

N, D = 8, 40
NODES = list(range(101, 101 + N))
MEMBERS = NODES[:5]  # holder i on node 100 + i (they train too)
RNG = np.random.default_rng(11)  # test data only
DELTAS = {nid: RNG.uniform(-0.4, 0.4, D).astype(np.float32) for nid in NODES}
WEIGHTS = {nid: int(w) for nid, w in zip(NODES, RNG.integers(1, 300, N), strict=True)}
BITS, CLIP = 20, 1.0
STEP = 2 * CLIP / (2**BITS - 1)

# the two 1024-bit safe primes of tests/primitives/test_paillier_threshold.py (tests only)
P1024 = int(
    "e202d4ac2c5a5bcf81b524eb598b92c0beb8a9ba14af6e8d566bddc8234b7f28379d89984a4ee7b6d9d3a4b2"
    "e5271490c99569cc9ad9ae585205a049e1d92bc26f80fb657d5422fb7c326e0af26075f96b11d5157a4251d9"
    "75c488c54422ebf6713ce8cf375b47b3ba94f6624735e93c68bfe7f396a353edb9bdc01602ccbb8b", 16)
Q1024 = int(
    "e9edb0284cc1b2eca89cdfe8a988f4436998cf0dd8e731157e9f3725f7033a264b28758dc40a83e0ce2dd203"
    "084eaec7c0472340228a0be9dd725fab9fd62171b1986c4608e630931c9387eaf3443187129e1e72a061c035"
    "7086b930937c89f7280be8f875e96925f77979f7e932876c87aeaba38c79f1523fb57a8f11aad263", 16)


@pytest.fixture(scope="module")
def keys() -> tuple[P.ThresholdPublicKey, list[P.KeyShare]]:
    return _unsafe_threshold_keys_for_tests(5, 3, n_bits=512)


@contextmanager
def server_identity() -> Iterator[None]:
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


Tamper = Callable[[int, str, Message], Message]


def stage_of(msg: Message) -> str:
    return grid_stage(msg, HE_RECORD_KEY)


def make_grid(apps: dict[int, ClientApp], drop: set[tuple[int, str]] | None = None,
              tamper: Tamper | None = None, node_config: dict[int, dict[str, Any]] | None = None
              ) -> Any:
    """Each message to its node's ClientApp, in this thread, through Flower's protobuf
    serde; (node, stage) in ``drop`` never answers; ``tamper`` may replace a reply."""
    class InProcessGrid(GridBase):
        def __init__(self) -> None:
            super().__init__(apps, node_config)
            self.trips: list[list[tuple[int, str]]] = []
            self.replies: list[tuple[int, str, Message]] = []

        def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
            ids, trip = [], []
            for msg in messages:
                mid = self.stamp(msg)
                ids.append(mid)
                nid, stage = msg.metadata.dst_node_id, stage_of(msg)
                trip.append((nid, stage))
                if (nid, stage) in (drop or set()):
                    continue
                ctx = self.contexts[nid]
                saved = copy.deepcopy(ctx.state)
                try:
                    reply = apps[nid](wire(msg), ctx)
                except Exception as exc:  # as Flower's run_clientapp: an error reply
                    reply = Message(Error(code=2, reason=str(exc)), reply_to=msg)
                    ctx.state = saved
                self.replies.append((nid, stage, reply))
                if tamper is not None:
                    reply = tamper(nid, stage, reply)
                self.keep(mid, reply)
            self.trips.append(trip)
            return ids

    return InProcessGrid()


def client_app(mod: Any, calls: list[int] | None = None) -> ClientApp:
    app = ClientApp(mods=[mod]) if mod is not None else ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        nid = context.node_id
        if calls is not None:
            calls.append(nid)
        w = msg.content["arrays"]["w"].numpy()
        new = ArrayRecord({"w": Array.from_numpy_ndarray((w + DELTAS[nid]).astype(np.float32))})
        return Message(RecordDict({"arrays": new,
                                   "metrics": MetricRecord({"num-examples": WEIGHTS[nid]})}),
                       reply_to=msg)

    return app


def he_apps(keys: tuple[P.ThresholdPublicKey, list[P.KeyShare]], members: Iterable[int] = MEMBERS,
            **kw: Any) -> dict[int, ClientApp]:
    pk, shares = keys
    holder = {nid: shares[i] for i, nid in enumerate(members)}
    return {nid: client_app(make_he_mod(public_key=pk, key_share=holder.get(nid), **kw))
            for nid in NODES}


def fedavg() -> FedAvg:
    return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=N,
                  min_train_nodes=N)


def strategy(pk: Any, **kw: Any) -> HEAggStrategy:
    return HEAggStrategy(fedavg(), public_key=pk, clip=CLIP, bits=BITS, max_weight=1000,
                         max_clients=16, **kw)


def run(strat: Any, grid: Any, rounds: int = 1) -> np.ndarray:
    logging.getLogger("flwr").setLevel(logging.CRITICAL)
    with server_identity():
        res = strat.start(grid=grid, initial_arrays=ArrayRecord(
            {"w": Array.from_numpy_ndarray(np.zeros(D, dtype=np.float32))}),
            num_rounds=rounds, timeout=10)
    return res.arrays["w"].numpy() if "w" in res.arrays else None


def plain_mean(nodes: Iterable[int]) -> np.ndarray:
    nodes = list(nodes)
    ws = np.array([WEIGHTS[n] for n in nodes], dtype=np.float64)
    return (np.stack([DELTAS[n] for n in nodes]).astype(np.float64) * ws[:, None]).sum(0) \
        / ws.sum()


def test_two_rounds_equal_fedavg_on_the_same_updates(keys: Any) -> None:
    calls: list[int] = []
    pk, _ = keys
    apps = {nid: client_app(make_he_mod(public_key=pk, key_share=keys[1][i]
                                        if i < 5 else None), calls=calls)
            for i, nid in enumerate(NODES)}
    grid = make_grid(apps)
    strat = strategy(pk)
    got = run(strat, grid, rounds=2)
    plain = run(fedavg(), make_grid({nid: client_app(None) for nid in NODES}), rounds=2)
    np.testing.assert_allclose(plain, 2 * plain_mean(NODES), atol=1e-5)  # the oracle
    assert got.dtype == np.float32 and got.shape == (D,)
    np.testing.assert_allclose(got, plain, rtol=0, atol=2 * STEP + 1e-6)
    assert sorted(calls) == sorted(NODES * 2)  # each client trained once per round
    # round 1: train, who-holds-a-share, decrypt; round 2: train, decrypt (holders known)
    trips = [t for t in grid.trips if t]
    assert [sorted({s for _, s in t}) for t in trips] == [
        ["input"], ["committee"], ["decrypt"], ["input"], ["decrypt"]]
    assert {n for n, _ in trips[1]} == set(NODES)
    assert strat.members == {nid: i + 1 for i, nid in enumerate(MEMBERS)}
    for h in strat.history:
        assert h["he-participants"] == N and h["he-dropped"] == 0 and h["he-errors"] == 0
        assert h["he-clipped"] == 0 and h["he-misbehaving"] == 0 and h["he-decrypted-by"] == 3


def test_the_clients_reply_carries_only_its_ciphertext(keys: Any) -> None:
    pk, shares = keys
    grid = make_grid(he_apps(keys))
    run(strategy(pk), grid)
    inputs = [(nid, r) for nid, stage, r in grid.replies if stage == "input"]
    assert len(inputs) == N
    cfg = HEAggConfig(n_clients=N, dim=D, committee=(3, 5), clip=CLIP, bits=BITS,
                      max_weight=1000, min_clients=3)
    for nid, reply in inputs:
        assert not reply.has_error()
        assert not reply.content.array_records and not reply.content.metric_records
        assert list(reply.content.config_records) == [HE_RECORD_KEY]
        rec = reply.content.config_records[HE_RECORD_KEY]
        assert set(rec.keys()) == {"stage", "session", "data"}
        blob = bytes(rec["data"])
        assert DELTAS[nid].tobytes()[:16] not in blob
        values, _ = quantize_update(DELTAS[nid], cfg, WEIGHTS[nid])
        assert values.tobytes()[:16] not in blob
        # ... and it is the encryption of this client's weighted, quantised update
        ct = P.PackedCiphertext.deserialize(pk, blob)
        parts = [P.partial_decrypt(s, ct) for s in shares[:3]]
        np.testing.assert_array_equal(np.asarray(P.combine(pk, ct, parts)).astype(np.int64),
                                      values.astype(np.int64))


def test_clients_that_do_not_answer_are_left_out(keys: Any) -> None:
    pk, _ = keys
    gone = [NODES[0], NODES[6]]  # a committee member's own update among them
    grid = make_grid(he_apps(keys), drop={(n, "input") for n in gone})
    strat = strategy(pk)
    got = run(strat, grid)
    np.testing.assert_allclose(got, plain_mean([n for n in NODES if n not in gone]),
                               rtol=0, atol=STEP + 1e-6)
    h = strat.history[0]
    assert (h["he-participants"], h["he-dropped"], h["he-errors"]) == (N - 2, 2, 0)
    # no recovery round: one train trip, the committee's, nothing else
    assert [sorted({s for _, s in t}) for t in grid.trips if t] == [
        ["input"], ["committee"], ["decrypt"]]


@pytest.mark.parametrize("down", [[MEMBERS[0], MEMBERS[1]], [MEMBERS[2], MEMBERS[4]]])
def test_any_t_members_suffice(keys: Any, down: list[int]) -> None:
    pk, _ = keys
    grid = make_grid(he_apps(keys), drop={(n, "decrypt") for n in down})
    strat = strategy(pk)
    np.testing.assert_allclose(run(strat, grid), plain_mean(NODES), rtol=0, atol=STEP + 1e-6)
    h = strat.history[0]
    assert sorted(h["decrypted_by"]) == sorted(set(MEMBERS) - set(down))


def test_fewer_than_t_members_leave_the_model_unchanged(keys: Any) -> None:
    pk, _ = keys
    grid = make_grid(he_apps(keys), drop={(n, "decrypt") for n in MEMBERS[:3]})
    strat = strategy(pk, decrypt_timeout=0.5)
    got = run(strat, grid, rounds=1)
    assert got is None or not np.any(got)  # Flower keeps only the initial model
    assert "NotEnoughSurvivors" in strat.history[0]["failed"]


def flip_partial(bad: set[int]) -> Tamper:
    def tamper(nid: int, stage: str, reply: Message) -> Message:
        if stage != "decrypt" or nid not in bad or reply.has_error():
            return reply
        rec = reply.content.config_records[HE_RECORD_KEY]
        blob = bytearray(bytes(rec["partial"]))
        blob[-3] ^= 0x01  # one bit of the last partial decryption value
        rec["partial"] = bytes(blob)
        return reply
    return tamper


def test_a_tampered_partial_decryption_is_detected_and_named(keys: Any) -> None:
    pk, _ = keys
    grid = make_grid(he_apps(keys), tamper=flip_partial({MEMBERS[0]}))
    strat = strategy(pk)
    np.testing.assert_allclose(run(strat, grid), plain_mean(NODES), rtol=0, atol=STEP + 1e-6)
    h = strat.history[0]
    assert h["he-misbehaving"] == 1 and h["misbehaving"] == [MEMBERS[0]]
    assert MEMBERS[0] not in h["decrypted_by"] and len(h["decrypted_by"]) == 3


def test_too_many_tampered_partials_fail_the_round_naming_them(keys: Any) -> None:
    pk, _ = keys
    bad = set(MEMBERS[:3])
    strat = strategy(pk)
    run(strat, make_grid(he_apps(keys), tamper=flip_partial(bad)))
    h = strat.history[0]
    assert "MisbehaviourDetected" in h["failed"] and sorted(h["misbehaving"]) == sorted(bad)


def test_members_refuse_a_sum_of_too_few_updates_and_a_second_request(
        keys: Any, tmp_path: Path) -> None:
    pk, _ = keys
    # 3 updates, as the server allows; the members' own floor is 4: they refuse
    apps = he_apps(keys)
    apps.update({nid: app for nid, app in he_apps(keys, min_clients=4).items()
                 if nid in MEMBERS})
    strat = strategy(pk, decrypt_timeout=0.5)
    grid = make_grid(apps, drop={(n, "input") for n in MEMBERS})  # 3 non-members left
    run(strat, grid)
    assert "NotEnoughSurvivors" in strat.history[0]["failed"]  # every member refused
    member_replies = [r for _, s, r in grid.replies if s == "decrypt"]
    assert member_replies and all(r.has_error() for r in member_replies)
    # a decrypt request delivered twice: the second is refused (one per session)
    grid2 = make_grid(he_apps(keys, claims_dir=tmp_path))
    sent: list[Message] = []
    push = grid2.push_messages

    def keep(messages: Iterable[Any]) -> Iterable[str]:
        messages = list(messages)
        sent.extend(copy.deepcopy(m) for m in messages if stage_of(m) == "decrypt")
        return push(messages)

    grid2.push_messages = keep
    strat2 = strategy(pk)
    run(strat2, grid2)
    assert strat2.history[0]["he-decrypted-by"] == 3
    again = next(m for m in sent if m.metadata.dst_node_id == MEMBERS[0])
    with server_identity():
        grid2.push_messages = push
        grid2.push_messages([again])
    assert grid2.replies[-1][2].has_error()


def test_a_round_under_another_key_is_refused_by_the_clients(keys: Any) -> None:
    other, _ = _unsafe_threshold_keys_for_tests(5, 3, n_bits=512)
    strat = strategy(other)
    grid = make_grid(he_apps(keys))
    run(strat, grid)
    inputs = [r for _, s, r in grid.replies if s == "input"]
    assert len(inputs) == N and all(r.has_error() and r.error.reason == _FAILED
                                    for r in inputs)
    assert "NotEnoughSurvivors" in strat.history[0]["failed"]


def test_a_plain_train_message_is_refused(keys: Any) -> None:
    grid = make_grid(he_apps(keys))
    run(fedavg(), grid)  # no HE: the update would leave in the clear
    replies = [r for _, _, r in grid.replies]
    assert len(replies) == N and all(r.has_error() for r in replies)


def test_configurations_that_could_overflow_are_refused_when_built(keys: Any) -> None:
    pk, _ = keys
    with pytest.raises(InvalidInput, match="2\\^53"):
        HEAggStrategy(fedavg(), public_key=pk, bits=24, max_weight=1 << 20, max_clients=1000)
    HEAggStrategy(fedavg(), public_key=pk, bits=24, max_weight=1 << 20, max_clients=100)
    with pytest.raises(InvalidInput):
        HEAggStrategy(fedavg(), public_key=pk, committee=(2, 5))  # not the key's committee
    with pytest.raises(InvalidInput):
        HEAggStrategy(fedavg(), public_key=pk, bits=0)
    with pytest.raises(InvalidInput):
        HEAggStrategy(object(), public_key=pk)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="paillier"):
        HEAggStrategy(fedavg(), public_key=pk, scheme="ckks")


def test_key_files_from_the_dealer_and_the_node_config(tmp_path: Path) -> None:
    assert gmpy2.is_prime(P1024 // 2, 25) and gmpy2.is_prime(Q1024 // 2, 25)
    pk, shares = _unsafe_threshold_keys_for_tests(3, 2, p=P1024, q=Q1024)  # 2048 bits
    paths = _write_keys(tmp_path / "keys", pk, shares)
    assert sorted(paths) == ["public_key", "share-1", "share-2", "share-3"]
    assert os.stat(paths["share-1"]).st_mode & 0o777 == 0o600
    with pytest.raises(InvalidInput, match="overwrite"):
        _write_keys(tmp_path / "keys", pk, shares)
    # every node reads its files from its node config; members need no public key file
    node_config: dict[int, dict[str, Any]] = {
        nid: {"mpcai-he-public-key": str(paths["public_key"])} for nid in NODES}
    for i, nid in enumerate(NODES[:3]):
        node_config[nid] = {"mpcai-he-key-share": str(paths[f"share-{i + 1}"])}
    apps = {nid: client_app(make_he_mod()) for nid in NODES}
    grid = make_grid(apps, node_config=node_config)
    strat = HEAggStrategy(fedavg(), public_key=paths["public_key"], clip=CLIP, bits=BITS,
                          max_weight=1000, max_clients=16)
    np.testing.assert_allclose(run(strat, grid), plain_mean(NODES), rtol=0, atol=STEP + 1e-6)
    assert strat.history[0]["he-decrypted-by"] == 2


def test_clipping_is_counted_and_reported(keys: Any) -> None:
    pk, _ = keys
    strat = HEAggStrategy(fedavg(), public_key=pk, clip=0.1, bits=16, max_weight=1000,
                          max_clients=16)
    with pytest.warns(ClippingWarning):
        got = run(strat, make_grid(he_apps(keys)))
    clipped = sum(int(np.sum(np.abs(d) > 0.1)) for d in DELTAS.values())
    assert strat.history[0]["he-clipped"] == clipped > 0
    clipped_mean = sum(
        WEIGHTS[n] * np.clip(DELTAS[n].astype(np.float64), -0.1, 0.1) for n in NODES) / sum(
        WEIGHTS.values())
    np.testing.assert_allclose(got, clipped_mean, rtol=0, atol=2 * 0.1 / (2**16 - 1) + 1e-6)


def test_a_malformed_or_overweight_client_is_left_out(keys: Any) -> None:
    pk, _ = keys
    heavy = max(NODES, key=WEIGHTS.__getitem__)  # above max_weight: it refuses
    garbled = next(n for n in NODES[::-1] if n != heavy)

    def tamper(nid: int, stage: str, reply: Message) -> Message:
        if stage == "input" and nid == garbled and not reply.has_error():
            rec = reply.content.config_records[HE_RECORD_KEY]
            rec["data"] = bytes(rec["data"])[:-1]  # one byte short: refused before parsing
        return reply

    strat = HEAggStrategy(fedavg(), public_key=pk, clip=CLIP, bits=BITS,
                          max_weight=WEIGHTS[heavy] - 1, max_clients=16)
    others = [n for n in NODES if n not in (garbled, heavy)
              and WEIGHTS[n] <= WEIGHTS[heavy] - 1]
    assert len(others) >= 3
    got = run(strat, make_grid(he_apps(keys), tamper=tamper))
    np.testing.assert_allclose(got, plain_mean(others), rtol=0, atol=STEP + 1e-6)
    h = strat.history[0]
    assert h["he-participants"] == len(others) and h["he-errors"] == N - len(others)


def test_huge_int_fields_are_refused_without_allocating(keys: Any) -> None:
    # bytes(2**62) would try to allocate 4 EiB: a MemoryError that once aborted the round
    pk, _ = keys
    garbled = NODES[-1]
    member_hit: list[int] = []

    def tamper(nid: int, stage: str, reply: Message) -> Message:
        if reply.has_error():
            return reply
        rec = reply.content.config_records[HE_RECORD_KEY]
        if stage == "input" and nid == garbled:
            rec["session"] = 2**62
        elif stage == "decrypt" and not member_hit:
            member_hit.append(nid)
            rec["partial"] = 2**62
        return reply

    strat = strategy(pk)
    got = run(strat, make_grid(he_apps(keys), tamper=tamper))
    others = [n for n in NODES if n != garbled]
    np.testing.assert_allclose(got, plain_mean(others), rtol=0, atol=STEP + 1e-6)
    assert member_hit and strat.history[0]["he-participants"] == len(others)


def test_members_refuse_a_participant_list_that_does_not_match_the_sum(keys: Any) -> None:
    from mpcai.runtime import wire

    pk, _ = keys
    grid = make_grid(he_apps(keys))
    push = grid.push_messages

    def forge(messages: Iterable[Any]) -> Iterable[str]:
        messages = list(messages)
        for m in messages:
            if stage_of(m) == "decrypt":  # one participant fewer than the sum holds
                rec = m.content.config_records[HE_RECORD_KEY]
                rec["participants"] = wire.encode_payload(np.arange(1, N, dtype=np.uint32))
        return push(messages)

    grid.push_messages = forge
    strat = strategy(pk, decrypt_timeout=0.5)
    run(strat, grid)
    assert "NotEnoughSurvivors" in strat.history[0]["failed"]
    assert all(r.has_error() for _, s, r in grid.replies if s == "decrypt")


def test_inner_fedadam_matches_its_plain_run(keys: Any) -> None:
    from flwr.serverapp.strategy import FedAdam

    def make() -> FedAdam:
        return FedAdam(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=N,
                       min_train_nodes=N)

    pk, _ = keys
    he = run(HEAggStrategy(make(), public_key=pk, clip=CLIP, bits=BITS, max_weight=1000,
                           max_clients=16), make_grid(he_apps(keys)), rounds=2)
    plain = run(make(), make_grid({nid: client_app(None) for nid in NODES}), rounds=2)
    np.testing.assert_allclose(he, plain, atol=1e-4)


def _round_files(root: Path, r: int) -> tuple[Path, bytes, list[Path]]:
    """A round's server transcript directory, its session and every node's files."""
    from mpcai import audit

    server = root / "server" / f"round-{r}"
    session = audit.read_transcript(server / "party-0.jsonl").session
    return server, session, sorted(root.glob(f"node-*/{session.hex()}/party-*.jsonl"))


def test_transcripts_of_the_server_and_the_nodes_verify_and_agree(keys: Any,
                                                                   tmp_path: Path) -> None:
    """Both sides' transcripts of two rounds (a client down, a member down): every chain,
    signature and stage sequence verifies and both sides recorded the same messages; the
    server's input digests are those of the replies the grid carried; a flipped byte in
    a node's file is caught."""
    from mpcai.protocols import audit as protocol_audit

    from mpcai import audit
    from mpcai.errors import InvalidTranscript

    pk, shares = keys
    holder = {nid: shares[i] for i, nid in enumerate(MEMBERS)}
    apps = {nid: client_app(make_he_mod(public_key=pk, key_share=holder.get(nid),
                                        transcript=tmp_path / f"node-{nid}"))
            for nid in NODES}
    gone, silent = NODES[-1], MEMBERS[4]
    grid = make_grid(apps, drop={(gone, "input"), (silent, "decrypt")})
    strat = strategy(pk, transcript=tmp_path / "server")
    got = run(strat, grid, rounds=2)
    np.testing.assert_allclose(got, 2 * plain_mean([n for n in NODES if n != gone]),
                               rtol=0, atol=2 * STEP + 1e-6)
    inputs = [r for n, s, r in grid.replies if s == "input" and not r.has_error()]
    for r in (1, 2):
        server, session, files = _round_files(tmp_path, r)
        rep = protocol_audit.verify([server, *files], session=session)
        logs = {log.party: log for log in rep.logs}
        # party ids as the protocol names them: clients 1..N, holder h as N + h
        cid = {int(f.parent.parent.name.split("-")[1]): int(f.stem.split("-")[1])
               for f in files if int(f.stem.split("-")[1]) <= N}
        assert gone not in cid and len(cid) == N - 1
        members = sorted(p for p in logs if p > N)
        assert members == [N + 1, N + 2, N + 3, N + 4]  # the silent holder 5 left none
        s = logs[0]
        assert s.status == "ok" and s.result is not None
        got_inputs = {e["peer"]: e["digest"] for e in s.messages("recv") if e["tag"] == "input"}
        assert sorted(got_inputs) == sorted(cid.values())
        # the digests against the replies as the grid carried them (independent of the mod)
        carried = {audit.frame_digest([bytes(m.content.config_records[HE_RECORD_KEY]["data"])],
                                      s.hash)[1].hex() for m in inputs}
        assert set(got_inputs.values()) <= carried
        asked = sorted(e["peer"] for e in s.messages("send") if e["tag"] == "decrypt")
        assert asked == [N + h for h in range(1, 6)]
        assert len([e for e in s.messages("recv") if e["tag"] == "decrypt"]) == 3
        (note,) = s.notes("outcome")
        assert note["participants"] == sorted(cid.values()) and note["misbehaving"] == []
        assert len(note["decrypted_by"]) == 3 and set(note["decrypted_by"]) <= set(members)
        assert rep.run.matched == (N - 1) + 5 + 3 - 1  # inputs, requests taken, partials
    # one byte changed in a member's record of round 2
    _, session, files = _round_files(tmp_path, 2)
    member = next(f for f in files if int(f.stem.split("-")[1]) > N)
    data = bytearray(member.read_bytes())
    data[len(data) // 2] ^= 1
    member.write_bytes(bytes(data))
    with pytest.raises(InvalidTranscript):
        protocol_audit.verify([tmp_path / "server" / "round-2", *files], session=session)


def test_a_misbehaving_member_is_named_in_the_transcript(keys: Any, tmp_path: Path) -> None:
    from mpcai.protocols import audit as protocol_audit

    pk, _ = keys
    grid = make_grid(he_apps(keys), tamper=flip_partial({MEMBERS[0]}))
    strat = strategy(pk, transcript=tmp_path / "server")
    run(strat, grid)
    (log,) = protocol_audit.verify([tmp_path / "server" / "round-1"]).logs
    (note,) = log.notes("outcome")
    assert note["misbehaving"] == [N + 1]  # holder 1, on MEMBERS[0]
    # what the member sent is recorded as received, its bad partial included
    assert N + 1 in [e["peer"] for e in log.messages("recv") if e["tag"] == "decrypt"]


def test_a_failed_round_ends_its_transcript_with_the_error(keys: Any, tmp_path: Path) -> None:
    from mpcai.protocols import audit as protocol_audit

    pk, _ = keys
    grid = make_grid(he_apps(keys), drop={(n, "decrypt") for n in MEMBERS[:3]})
    strat = strategy(pk, decrypt_timeout=0.3, transcript=tmp_path / "server")
    run(strat, grid)
    assert "NotEnoughSurvivors" in strat.history[0]["failed"]
    (log,) = protocol_audit.verify([tmp_path / "server" / "round-1"]).logs
    assert log.status == "error" and log.result is None


def test_transcript_options_are_checked(keys: Any, tmp_path: Path) -> None:
    pk, _ = keys
    with pytest.raises(InvalidInput):
        strategy(pk, transcript_key=bytes(32))  # a key without a directory
    with pytest.raises(InvalidInput):
        make_he_mod(public_key=pk, transcript_key=bytes(32))
    with pytest.raises(InvalidInput):  # not a key
        strategy(pk, transcript=tmp_path, transcript_key=b"short")


def test_a_share_two_nodes_claim_is_asked_of_neither(keys: Any, tmp_path: Path) -> None:
    """Share 1 on two nodes (each with its own claims, as on two machines): neither is
    asked, the other shares decrypt, and both sides' transcripts still agree (one party
    per share)."""
    from mpcai.protocols import audit as protocol_audit

    pk, shares = keys
    holder = {nid: shares[i] for i, nid in enumerate(MEMBERS)}
    holder[NODES[5]] = shares[0]
    apps = {nid: client_app(make_he_mod(public_key=pk, key_share=holder.get(nid),
                                        claims_dir=tmp_path / f"claims-{nid}",
                                        transcript=tmp_path / f"node-{nid}"))
            for nid in NODES}
    grid = make_grid(apps)
    strat = strategy(pk, transcript=tmp_path / "server")
    np.testing.assert_allclose(run(strat, grid), plain_mean(NODES), rtol=0, atol=STEP + 1e-6)
    asked = sorted(n for t in grid.trips for n, s in t if s == "decrypt")
    assert asked == MEMBERS[1:]  # not MEMBERS[0] nor NODES[5]
    server, session, files = _round_files(tmp_path, 1)
    rep = protocol_audit.verify([server, *files], session=session)
    assert N + 1 not in {log.party for log in rep.logs}


def test_a_member_refuses_an_attempt_that_does_not_count_up(
        keys: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With transcripts on, a request whose attempt is not the next one (a Paillier round
    has only attempt 1) is refused before anything is claimed: its record would break
    the member's own stage rules."""
    from mpcai.integrations import _flower_he

    pk, shares = keys
    holder = {nid: shares[i] for i, nid in enumerate(MEMBERS)}
    apps = {nid: client_app(make_he_mod(public_key=pk, key_share=holder.get(nid),
                                        claims_dir=tmp_path / "claims",
                                        transcript=tmp_path / f"node-{nid}"))
            for nid in NODES}
    saved = _flower_he._record

    def record(stage: str, session: bytes, **fields: Any) -> Any:  # the server lies
        if stage == "decrypt" and "sum" in fields:
            fields = {**fields, "attempt": 2}
        return saved(stage, session, **fields)

    monkeypatch.setattr(_flower_he, "_record", record)
    grid = make_grid(apps)
    strat = strategy(pk, decrypt_timeout=0.3)
    run(strat, grid)
    assert "NotEnoughSurvivors" in strat.history[0]["failed"]
    answers = [r for _, s, r in grid.replies if s == "decrypt"]
    assert len(answers) == 5 and all(r.has_error() for r in answers)
    assert not list((tmp_path / "claims").glob("*.claim"))  # no share used up
    recorded = [f for f in tmp_path.glob("node-*/*/party-*.jsonl")
                if int(f.stem.split("-")[1]) > N]
    assert not recorded  # no member recorded a request it refused


@pytest.mark.parametrize("field", ["weight-key", "session", "round-config"])
def test_a_request_missing_a_field_is_a_protocol_abort_on_the_node(
        keys: Any, field: str, caplog: pytest.LogCaptureFixture) -> None:
    grid = make_grid(he_apps(keys))
    push = grid.push_messages
    victim: list[int] = []

    def forge(messages: Iterable[Any]) -> Iterable[str]:
        messages = list(messages)
        for m in messages:
            recs = m.content.config_records if m.has_content() else {}
            if HE_RECORD_KEY in recs and not victim and field in recs[HE_RECORD_KEY]:
                victim.append(m.metadata.dst_node_id)
                del recs[HE_RECORD_KEY][field]
        return push(messages)

    grid.push_messages = forge
    with caplog.at_level(logging.ERROR, logger="mpcai.integrations.flower"):
        run(strategy(keys[0]), grid)
    assert victim
    assert f"ProtocolAbort: the request has no {field!r} field" in caplog.text
    assert "KeyError" not in caplog.text
