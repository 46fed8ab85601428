"""HEAggStrategy(scheme="ckks") + make_he_mod with the real Flower Message API, on the
in-process grid of test_flower_he.py (every message through Flower's protobuf serde, each
node with its own Context): a 3-of-5 committee CKKS key (preset "n8192-agg") whose
holders are nodes 101..105; the server names decryption sets of 3 and re-asks on a drop.

The oracle is the plain weighted mean of the same updates (numpy float64); the HE result
must match it within the quantisation step."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Message
from mpcai.protocols.he_aggregation import HEAggConfig
from mpcai.protocols.he_aggregation._scheme import scheme_for
from test_flower_he import (
    BITS,
    CLIP,
    MEMBERS,
    NODES,
    STEP,
    client_app,
    fedavg,
    make_grid,
    plain_mean,
    run,
    server_identity,
    stage_of,
)

from mpcai.errors import InvalidInput, MisbehaviourDetected, ProtocolAbort, WireError
from mpcai.he import ckks
from mpcai.integrations._flower_he import _claim_set, _load_share
from mpcai.integrations.flower import (
    HE_RECORD_KEY,
    HEAggStrategy,
    deal_committee_keys,
    make_he_mod,
)

N = len(NODES)


@pytest.fixture(scope="module")
def keys() -> tuple[ckks.ThresholdContext, list[ckks.KeyShare]]:
    return ckks.deal_threshold_keys(5, 3)


def apps(keys: Any, claims: Path, members: Iterable[int] = MEMBERS, **kw: Any) -> dict[int, Any]:
    ctx, shares = keys
    holder = {nid: shares[i] for i, nid in enumerate(members)}
    return {nid: client_app(make_he_mod(public_key=ctx, key_share=holder.get(nid),
                                        claims_dir=claims, **kw)) for nid in NODES}


def strategy(ctx: Any, **kw: Any) -> HEAggStrategy:
    return HEAggStrategy(fedavg(), public_key=ctx, clip=CLIP, bits=BITS, max_weight=1000,
                         max_clients=16, scheme="ckks", **kw)


def decrypt_trips(grid: Any) -> list[list[int]]:
    return [sorted(n for n, s in t if s == "decrypt") for t in grid.trips
            if any(s == "decrypt" for _, s in t)]


def test_two_rounds_equal_fedavg_within_the_quantisation_step(keys: Any,
                                                              tmp_path: Path) -> None:
    ctx, _ = keys
    grid = make_grid(apps(keys, tmp_path))
    strat = strategy(ctx)
    got = run(strat, grid, rounds=2)
    plain = run(fedavg(), make_grid({nid: client_app(None) for nid in NODES}), rounds=2)
    np.testing.assert_allclose(plain, 2 * plain_mean(NODES), atol=1e-5)  # the oracle
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, plain, rtol=0, atol=2 * STEP + 1e-6)
    assert not np.allclose(got, 0)
    trips = [sorted({s for _, s in t}) for t in grid.trips if t]
    assert trips == [["input"], ["committee"], ["decrypt"], ["input"], ["decrypt"]]
    # the sum goes to the named set only, not to every member
    assert decrypt_trips(grid) == [MEMBERS[:3], MEMBERS[:3]]
    for h in strat.history:
        assert h["he-participants"] == N and h["he-dropped"] == 0 and h["he-errors"] == 0
        assert h["he-sets"] == 1 and h["sets"] == [MEMBERS[:3]]
        assert h["he-decrypted-by"] == 3 and h["decrypted_by"] == MEMBERS[:3]
    # a client's reply is one CKKS ciphertext under the committee key, nothing else
    inputs = [r for _, s, r in grid.replies if s == "input"]
    assert len(inputs) == 2 * N
    rec = inputs[0].content.config_records[HE_RECORD_KEY]
    assert set(rec.keys()) == {"stage", "session", "data"}
    assert bytes(rec["data"])[4:20] == ctx.key_id


def test_a_client_not_answering_is_left_out(keys: Any, tmp_path: Path) -> None:
    ctx, _ = keys
    gone = [NODES[1], NODES[6]]  # a committee member's own update among them
    grid = make_grid(apps(keys, tmp_path), drop={(n, "input") for n in gone})
    strat = strategy(ctx)
    got = run(strat, grid)
    np.testing.assert_allclose(got, plain_mean([n for n in NODES if n not in gone]),
                               rtol=0, atol=STEP + 1e-6)
    h = strat.history[0]
    assert (h["he-participants"], h["he-dropped"], h["he-errors"]) == (N - 2, 2, 0)


def test_a_member_of_the_first_set_down_costs_a_second_set(keys: Any, tmp_path: Path) -> None:
    ctx, _ = keys
    down = MEMBERS[1]
    grid = make_grid(apps(keys, tmp_path), drop={(down, "decrypt")})
    strat = strategy(ctx, decrypt_timeout=0.3)
    np.testing.assert_allclose(run(strat, grid), plain_mean(NODES), rtol=0,
                               atol=STEP + 1e-6)
    h = strat.history[0]
    second = [MEMBERS[0], MEMBERS[2], MEMBERS[3]]
    assert h["he-sets"] == 2 and h["sets"] == [MEMBERS[:3], second]
    assert h["decrypted_by"] == second and h["he-misbehaving"] == 0
    assert decrypt_trips(grid) == [MEMBERS[:3], second]


def test_too_few_members_fail_the_round_and_leave_the_model(keys: Any, tmp_path: Path) -> None:
    ctx, _ = keys
    down = [MEMBERS[0], MEMBERS[2], MEMBERS[4]]  # set 1 loses two, set 2 its third
    grid = make_grid(apps(keys, tmp_path), drop={(n, "decrypt") for n in down})
    strat = strategy(ctx, decrypt_timeout=0.2)
    got = run(strat, grid)
    assert got is None or not np.any(got)  # Flower keeps only the initial model
    h = strat.history[0]
    assert "NotEnoughSurvivors" in h["failed"]
    assert h["sets"] == [MEMBERS[:3], [MEMBERS[1], MEMBERS[3], MEMBERS[4]]]


def corrupt(nid_bad: int, how: str) -> Any:
    def tamper(nid: int, stage: str, reply: Message) -> Message:
        if stage != "decrypt" or nid != nid_bad or reply.has_error():
            return reply
        rec = reply.content.config_records[HE_RECORD_KEY]
        blob = bytearray(bytes(rec["partial"]))
        tail = np.frombuffer(bytes(blob[-512:]), dtype="<u8").copy()
        if how == "garble":  # values beyond their primes: malformed
            tail |= np.uint64(0xFF00000000000000)
        else:  # still below the primes, but wrong: no proof can say so
            tail = np.where(tail > 0, tail - np.uint64(1), tail + np.uint64(1))
        blob[-512:] = tail.astype("<u8").tobytes()
        rec["partial"] = bytes(blob)
        return reply
    return tamper


def test_a_malformed_partial_costs_another_set(keys: Any, tmp_path: Path) -> None:
    ctx, _ = keys
    grid = make_grid(apps(keys, tmp_path), tamper=corrupt(MEMBERS[2], "garble"))
    strat = strategy(ctx)
    np.testing.assert_allclose(run(strat, grid), plain_mean(NODES), rtol=0,
                               atol=STEP + 1e-6)
    h = strat.history[0]
    assert h["he-misbehaving"] == 1 and h["misbehaving"] == [MEMBERS[2]]
    assert h["sets"] == [MEMBERS[:3], [MEMBERS[0], MEMBERS[1], MEMBERS[3]]]


def test_a_wrong_partial_fails_the_round_naming_the_set(keys: Any, tmp_path: Path) -> None:
    ctx, _ = keys
    grid = make_grid(apps(keys, tmp_path), tamper=corrupt(MEMBERS[2], "shift"))
    strat = strategy(ctx)
    got = run(strat, grid)
    assert got is None or not np.any(got)
    h = strat.history[0]
    assert "MisbehaviourDetected" in h["failed"] and "integers" in h["failed"]
    assert h["misbehaving"] == MEMBERS[:3] and h["sets"] == [MEMBERS[:3]]  # no other set


def test_members_refuse_a_set_twice_another_sum_and_too_many_sets(keys: Any,
                                                                  tmp_path: Path) -> None:
    ctx, shares = keys
    cfg = HEAggConfig(n_clients=5, dim=6, committee=(3, 5), clip=CLIP, bits=BITS,
                      max_weight=1000, min_clients=3, scheme="ckks")
    scheme = scheme_for(cfg, ctx)
    values = np.arange(cfg.length, dtype=np.uint64)
    total = scheme.load_input(scheme.encrypt(values))
    for _ in range(3):
        total = scheme.add(total, scheme.load_input(scheme.encrypt(values)))
    other = scheme.add(total, scheme.load_input(scheme.encrypt(values)))

    def asked(s: Any, holders: tuple[int, ...]) -> Any:
        return scheme.load_sum(scheme.dump_sum(s, holders))[0]

    session = b"s" * 16
    with pytest.raises(ProtocolAbort, match="set"):  # holder 4 is not in {1, 2, 3}
        _claim_set(tmp_path, session, 4, scheme, asked(total, (1, 2, 3)), cfg)
    _claim_set(tmp_path, session, 1, scheme, asked(total, (1, 2, 3)), cfg)
    with pytest.raises(ProtocolAbort, match="already ran"):  # the same set again
        _claim_set(tmp_path, session, 1, scheme, asked(total, (1, 2, 3)), cfg)
    with pytest.raises(MisbehaviourDetected, match="another sum"):
        _claim_set(tmp_path, session, 1, scheme, asked(other, (1, 2, 4)), cfg)
    _claim_set(tmp_path, session, 1, scheme, asked(total, (1, 2, 4)), cfg)
    _claim_set(tmp_path, session, 1, scheme, asked(total, (1, 2, 5)), cfg)  # l - t + 1 = 3
    with pytest.raises(MisbehaviourDetected, match="more than the 3"):
        _claim_set(tmp_path, session, 1, scheme, asked(total, (1, 3, 4)), cfg)
    # another session, another holder: free again; a partial only inside the set
    _claim_set(tmp_path, b"t" * 16, 1, scheme, asked(total, (1, 3, 4)), cfg)
    _claim_set(tmp_path, session, 2, scheme, asked(total, (1, 2, 3)), cfg)
    assert scheme.partial_decrypt(shares[4], asked(total, (1, 2, 3))) is None
    # through the mod: a decrypt request replayed to its member is refused
    grid = make_grid(apps(keys, tmp_path / "claims"))
    sent: list[Message] = []
    push = grid.push_messages

    def keep(messages: Iterable[Any]) -> Iterable[str]:
        messages = list(messages)
        sent.extend(copy.deepcopy(m) for m in messages if stage_of(m) == "decrypt")
        return push(messages)

    grid.push_messages = keep
    strat = strategy(ctx)
    run(strat, grid)
    assert strat.history[0]["he-decrypted-by"] == 3
    with server_identity():
        grid.push_messages = push
        grid.push_messages([next(m for m in sent if m.metadata.dst_node_id == MEMBERS[0])])
    assert grid.replies[-1][2].has_error()


def test_configurations_that_could_overflow_are_refused_when_built(keys: Any) -> None:
    ctx, _ = keys
    strategy(ctx)  # 16 x 1000 x (2^20 - 1) < 2^37
    kw = {"clip": CLIP, "scheme": "ckks", "public_key": ctx}
    with pytest.raises(InvalidInput, match="2\\^37"):  # sums: 200 x 1000 x (2^20 - 1)
        HEAggStrategy(fedavg(), bits=BITS, max_weight=1000, max_clients=200, **kw)
    HEAggStrategy(fedavg(), bits=BITS, max_weight=1000, max_clients=100, **kw)
    with pytest.raises(InvalidInput):  # one value: 1000 x (2^24 - 1) >= 2^32
        HEAggStrategy(fedavg(), bits=24, max_weight=1000, max_clients=4, **kw)
    with pytest.raises(InvalidInput):  # the defaults (max_weight 100,000) do not fit CKKS
        HEAggStrategy(fedavg(), public_key=ctx, scheme="ckks")
    with pytest.raises(InvalidInput, match="ThresholdContext"):  # a CKKS key as Paillier's
        HEAggStrategy(fedavg(), public_key=ctx, bits=BITS, max_weight=1000)
    with pytest.raises(InvalidInput):
        HEAggStrategy(fedavg(), committee=(2, 5), bits=BITS, max_weight=1000, **kw)


def test_key_files_from_the_dealer_and_the_node_config(tmp_path: Path) -> None:
    paths = deal_committee_keys(tmp_path / "keys", threshold=2, members=3, scheme="ckks")
    assert sorted(paths) == ["public_key", "share-1", "share-2", "share-3"]
    with pytest.raises(InvalidInput, match="overwrite"):
        deal_committee_keys(tmp_path / "keys", threshold=2, members=3, scheme="ckks")
    # members read only their share file (it holds the committee context too)
    node_config: dict[int, dict[str, Any]] = {
        nid: {"mpcai-he-public-key": str(paths["public_key"])} for nid in NODES}
    for i, nid in enumerate(NODES[:3]):
        node_config[nid] = {"mpcai-he-key-share": str(paths[f"share-{i + 1}"])}
    claims = tmp_path / "claims"
    grid = make_grid({nid: client_app(make_he_mod(claims_dir=claims)) for nid in NODES},
                     node_config=node_config)
    strat = HEAggStrategy(fedavg(), public_key=paths["public_key"], clip=CLIP, bits=BITS,
                          max_weight=1000, max_clients=16, scheme="ckks")
    np.testing.assert_allclose(run(strat, grid), plain_mean(NODES), rtol=0, atol=STEP + 1e-6)
    assert strat.history[0]["decrypted_by"] == NODES[:2]
    # a truncated share file is refused by the bounded parser, not read past its end
    bad = tmp_path / "bad-share.bin"
    bad.write_bytes(paths["share-1"].read_bytes()[:-100])
    with pytest.raises(WireError):
        _load_share(bad)


def test_transcripts_of_decryption_sets_verify_and_agree(keys: Any, tmp_path: Path) -> None:
    """Two rounds, a member of the first set down in round 1: the server and every node
    record the sets as ``decrypt`` and ``decrypt/2``; both sides agree.  A member's
    transcript stays open for its round's next set and is ended (ok) by its next round's
    request: round 1's verify complete, round 2's as prefixes."""
    from mpcai.protocols import audit as protocol_audit

    from mpcai import audit

    ctx, shares = keys
    holder = {nid: shares[i] for i, nid in enumerate(MEMBERS)}
    nodes = {nid: client_app(make_he_mod(public_key=ctx, key_share=holder.get(nid),
                                         claims_dir=tmp_path / "claims",
                                         transcript=tmp_path / f"node-{nid}"))
             for nid in NODES}
    down = MEMBERS[1]

    class Round1Only(set):  # the member's decrypt request dropped in round 1 only
        def __bool__(self) -> bool:
            return True

        def __contains__(self, item: object) -> bool:
            return item == (down, "decrypt") and len(grid.trips) < 4

    grid = make_grid(nodes, drop=Round1Only())
    strat = strategy(ctx, decrypt_timeout=0.3, transcript=tmp_path / "server")
    np.testing.assert_allclose(run(strat, grid, rounds=2), 2 * plain_mean(NODES), rtol=0,
                               atol=2 * STEP + 1e-6)
    assert [h["he-sets"] for h in strat.history] == [2, 1]
    for r, complete in ((1, True), (2, False)):
        server = tmp_path / "server" / f"round-{r}"
        session = audit.read_transcript(server / "party-0.jsonl").session
        files = sorted(tmp_path.glob(f"node-*/{session.hex()}/party-*.jsonl"))
        rep = protocol_audit.verify([server, *files], session=session,
                                    allow_incomplete=not complete)
        logs = {log.party: log for log in rep.logs}
        s = logs[0]
        assert s.status == "ok"
        sent = sorted((e["tag"], e["peer"]) for e in s.messages("send"))
        if r == 1:  # set 1: holders 1, 2, 3 (2 down); set 2: holders 1, 3, 4
            assert sent == sorted([("decrypt", N + 1), ("decrypt", N + 2), ("decrypt", N + 3),
                                   ("decrypt/2", N + 1), ("decrypt/2", N + 3),
                                   ("decrypt/2", N + 4)])
            tags = [e["tag"] for e in logs[N + 1].messages("recv")]
            assert tags == ["decrypt", "decrypt/2"]
            assert N + 2 not in logs  # it never answered
        else:
            assert sent == [("decrypt", N + h) for h in (1, 2, 3)]
        members = [log for p, log in logs.items() if p > N]
        assert all(log.complete == complete for log in members)
        assert all(log.status == "ok" for log in members) or not complete
        assert rep.run.matched > 0 and not rep.run.unconfirmed
