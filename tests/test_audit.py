"""Audit transcripts: recording in the runtime, verification, tampering, stage rules, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mpcai.protocols import audit as protocol_audit
from mpcai.protocols import secure_aggregation as sa

from mpcai import audit
from mpcai.cli._main import main
from mpcai.errors import InvalidInput, InvalidTranscript, WouldOverwrite
from mpcai.runtime import run_local

N = 4
DIM = 12


def _updates() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.uniform(-0.5, 0.5, DIM).astype(np.float32) for _ in range(N)]


@pytest.fixture(scope="module")
def secagg_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, sa.SimulationResult,
                                                                  list[np.ndarray]]:
    """One secure aggregation with transcripts; client 2 drops before masked_input."""
    d = tmp_path_factory.mktemp("secagg") / "transcripts"
    ups = _updates()
    res = sa.simulate(ups, sa.SecAggConfig(n_clients=N, consistency_check=True),
                      dropouts={2: "masked_input"}, transcript=d)
    return d, res, ups


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _replay(log: audit.TranscriptLog, path: Path, entries: list[audit.Entry],
            key: Ed25519PrivateKey | None = None, *, protocol: str | None = None) -> None:
    """A new transcript of ``entries`` (valid chain and signatures, signed by ``key``)."""
    t = audit.Transcript(path, protocol=protocol or log.protocol, version=log.version,
                         signing_key=key, hash=log.hash)
    t.config_digest = log.config_digest
    t.begin(session=log.session, party=log.party, peers=log.peers)
    for e in entries:
        if e.type in ("send", "recv"):
            t.record(e.type, e["peer"], e["seq"], e["tag"], e["len"], bytes.fromhex(e["digest"]))
        elif e.type == "note":
            t.note(e["name"], e["data"])
        elif e.type == "result":
            t.result(bytes.fromhex(e["digest"]))
    t.close()


# ---- recording and verifying a real run ---------------------------------------------------


def test_secure_aggregation_transcripts_verify_with_dropouts(secagg_run) -> None:
    d, res, _ups = secagg_run
    assert sorted(p.name for p in d.iterdir()) == ["keys.json"] + [
        f"party-{i}.jsonl" for i in range(N + 1)]
    report = protocol_audit.verify([d])
    assert [log.party for log in report.logs] == list(range(N + 1))
    assert all(log.complete and log.status == "ok" for log in report.logs)
    assert report.participants["masked_input"] == [1, 3, 4]
    assert report.dropped["masked_input"] == [2]
    assert report.dropped["share_keys"] == []
    assert report.run.matched > 0
    server = report.logs[0]
    total = np.ascontiguousarray(res.aggregate.quantised_sum)
    import hashlib

    assert server.result == hashlib.sha256(total.tobytes()).digest()
    assert server.notes("outcome") == [{"survivors": [1, 3, 4], "dropped": res.aggregate.dropped,
                                        "misbehaving": []}]
    # every receive matched its send; the dropped client's stage messages are missing
    # on both sides, not mismatched
    assert not [u for u in report.run.undelivered if u[0] != 0]
    pinned = protocol_audit.verify([d], keys=d / "keys.json")
    assert all(log.pinned for log in pinned.logs)


def test_identity_keys_sign_the_clients_transcripts(tmp_path: Path) -> None:
    public, private = sa.make_identities(N)
    cfg = sa.SecAggConfig(n_clients=N, identities=public, consistency_check=True)
    d = tmp_path / "t"
    sa.simulate(_updates(), cfg, identity_keys=private, transcript=d)
    server_key = audit.load_keys(d / "keys.json")[0]
    keys = {0: server_key, **public}  # the clients' keys from the PKI, not from the run
    report = protocol_audit.verify([d], keys=keys)
    assert all(log.pinned for log in report.logs)
    other = dict(keys)
    other[3] = public[1]
    with pytest.raises(InvalidTranscript, match="not its pinned key"):
        protocol_audit.verify([d], keys=other)
    with pytest.raises(InvalidTranscript, match="no pinned key"):
        protocol_audit.verify([d], keys={k: v for k, v in keys.items() if k != 2})


def test_inference_transcripts_verify(tmp_path: Path) -> None:
    from mpcai.protocols import inference as inf

    rng = np.random.default_rng(1)
    model = inf.from_numpy([(rng.normal(size=(5, 4)) * 0.3, np.zeros(4)),
                            (rng.normal(size=(4, 3)) * 0.3, np.zeros(3))])
    x = rng.normal(size=(3, 5))
    for parties, provider in ((2, "dealer"), (3, "replicated")):
        d = tmp_path / provider
        inf.simulate(model, x, parties=parties, provider=provider, transcript=d)
        report = protocol_audit.verify([d])
        assert report.logs[0].protocol == f"inference-{provider}"
        assert report.run.matched > 0 and not report.run.undelivered


def test_robust_aggregation_transcripts_verify_and_a_verdict_first_is_refused(
        tmp_path: Path) -> None:
    from mpcai.protocols import robust_aggregation as ra

    rng = np.random.default_rng(2)
    d = tmp_path / "robust"
    res = ra.simulate([rng.normal(size=16) * 0.1 for _ in range(4)], l2_bound=1.0,
                      dropouts=[4], transcript=d)
    report = protocol_audit.verify([d])
    assert report.participants == {"robust/share": sorted(res.accepted)}
    assert report.dropped == {"robust/share": [4]}
    import hashlib

    digest = hashlib.sha256(np.asarray(res.sum, dtype="<i8").tobytes()).digest()
    for log in report.logs[:2]:  # both servers: the outcome and the sum's digest
        assert log.party in (0, 1) and log.result == digest
        assert log.notes("outcome") == [{"accepted": res.accepted, "rejected": res.rejected,
                                         "malformed": res.malformed, "dropped": [4]}]
    client = audit.read_transcript(d / "party-2.jsonl")
    msgs = client.messages()
    assert [e["tag"] for e in msgs] == ["robust/share", "robust/share", "robust/verdict"]
    _replay(client, tmp_path / "c.jsonl", [msgs[2], msgs[0], msgs[1]])
    with pytest.raises(InvalidTranscript, match="illegal stage sequence"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "c.jsonl"))
    server = audit.read_transcript(d / "party-1.jsonl")  # server 1 sends no verdicts
    fake = audit.Entry(0, "send", {"tag": "robust/verdict", "peer": 2, "seq": 99, "len": 1,
                                   "digest": "00" * 32})
    _replay(server, tmp_path / "s.jsonl", [*server.entries[1:-1], fake])
    with pytest.raises(InvalidTranscript, match="not a message of robust aggregation"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "s.jsonl"))


def test_process_party_records_a_transcript(tmp_path: Path) -> None:
    """The entry point of launch_local / mpcai party, under run_local here (cheap)."""
    import dataclasses

    from mpcai.protocols.secure_aggregation.simulation import process_party

    cfg = sa.SecAggConfig(n_clients=N)
    config = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    ups = _updates()

    async def one(party):
        return await process_party(party, config, None if party.id == 0 else ups[party.id - 1],
                                      transcript=str(tmp_path / f"p{party.id}.jsonl"))

    out = run_local(N + 1, one, timeout=cfg.timeout)  # a full mesh, as over TCP
    report = protocol_audit.verify([tmp_path])
    assert len(report.logs) == N + 1 and report.run.matched > 0
    import hashlib

    assert report.logs[0].result == hashlib.sha256(out[0]["quantised_sum"].tobytes()).digest()


def test_processes_over_tls_write_transcripts_that_verify(tmp_path: Path) -> None:
    """launch_local: one OS process per party, a full mesh over TCP + mutual TLS."""
    from mpcai.runtime.launcher import launch_local

    config = {"n_clients": N, "timeout": 10.0, "dim": DIM}
    ups = _updates()
    args = [(config, None, 1, None, False, None, False, str(tmp_path / "party-0.jsonl"))] + [
        (config, ups[c], 1, None, False, None, False, str(tmp_path / f"party-{c + 1}.jsonl"))
        for c in range(N)]
    run = launch_local(N + 1, "mpcai.protocols.secure_aggregation.simulation:process_party",
                       args_per_party=args, timeout=60)
    report = protocol_audit.verify([tmp_path])
    assert report.participants["unmask"] == [1, 2, 3, 4]
    assert report.run.matched == sum(len(log.messages("recv")) for log in report.logs) > 0
    import hashlib

    assert report.logs[0].result == hashlib.sha256(run[0]["quantised_sum"].tobytes()).digest()


def test_no_transcript_no_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoHash:
        @staticmethod
        def sha256(*_: object) -> None:
            raise AssertionError("hashed without a transcript")

    monkeypatch.setattr(audit, "hashlib", NoHash)
    monkeypatch.setattr(audit, "_CONSTRUCTORS", dict.fromkeys(audit.HASHES, NoHash.sha256))

    async def add_up(party, value):
        others = await party.exchange("value", value)
        return value + sum(others.values())

    assert run_local(3, add_up, args_per_party=[(1,), (2,), (3,)]) == [6, 6, 6]


def test_run_local_records_every_message_on_both_sides(tmp_path: Path) -> None:
    ts = audit.open_transcripts(tmp_path, range(3), protocol="toy")

    async def add_up(party, value):
        others = await party.exchange("value", np.arange(value * 1000, dtype=np.uint64))
        return int(sum(int(v.sum()) for v in others.values()))

    run_local(3, add_up, args_per_party=[(1,), (2,), (3,)], transcripts=ts)
    logs = [audit.read_transcript(t.path) for t in ts]
    assert [len(log.messages()) for log in logs] == [4, 4, 4]
    sent = {(log.party, e["peer"]): e for log in logs for e in log.messages("send")}
    for log in logs:
        for e in log.messages("recv"):
            assert e["digest"] == sent[(e["peer"], log.party)]["digest"]
    assert audit.cross_check(logs).matched == 6
    with pytest.raises(WouldOverwrite):
        audit.open_transcripts(tmp_path, range(3), protocol="toy")
    again = [audit.Transcript(t.path, protocol="toy") for t in ts]
    with pytest.raises(WouldOverwrite):  # the party's own error, before any message
        run_local(3, add_up, args_per_party=[(1,), (2,), (3,)], transcripts=again)


def test_a_cancelled_or_failing_party_ends_its_transcript_with_the_error(tmp_path: Path) -> None:
    import trio

    from mpcai.runtime import run_local_async

    async def stuck(party):
        if party.id == 1:
            raise KeyError("boom")
        await trio.sleep(30)

    ts = audit.open_transcripts(tmp_path, range(2), protocol="toy")

    async def main() -> None:
        with trio.move_on_after(0.2):
            await run_local_async(2, stuck, transcripts=ts, return_exceptions=True)

    trio.run(main)
    logs = [audit.read_transcript(t.path) for t in ts]
    assert [(log.status, log.error) for log in logs] == [("error", "Cancelled"),
                                                          ("error", "KeyError")]


@pytest.mark.parametrize("network", ["memory", "tcp+tls"])
def test_large_frames_hashed_in_threads_match_over_each_transport(tmp_path: Path,
                                                                  network: str) -> None:
    from mpcai.runtime import local_tcp_network

    big = np.arange(300_000, dtype=np.uint64)  # 2.4 MB: hashed in a worker thread

    async def swap(party):
        got = await party.exchange("big", big + np.uint64(party.id))
        small = await party.exchange("small", party.id)
        return int(next(iter(got.values()))[0]), next(iter(small.values()))

    ts = audit.open_transcripts(tmp_path, range(2), protocol="toy")
    net = None if network == "memory" else local_tcp_network(2, connect_timeout=10)
    assert run_local(2, swap, network=net, transcripts=ts) == [(1, 1), (0, 0)]
    logs = [audit.read_transcript(t.path) for t in ts]
    check = audit.cross_check(logs)
    assert check.matched == 4 and not check.undelivered
    sizes = sorted(e["len"] for e in logs[0].messages())
    assert sizes[-1] > 2_400_000
    import hashlib

    from mpcai.runtime import wire

    sent = next(e for e in logs[0].messages("send") if e["tag"] == "big")
    parts, length = wire.encode_payload_parts(big)
    header = wire.encode_header(session=logs[0].session, tag="big", sender=0, recipient=1,
                                seq=sent["seq"], payload_len=length, kind=wire.FrameKind.DATA)
    frame = bytes(header) + b"".join(bytes(memoryview(p).cast("B")) for p in parts)
    assert sent["len"] == len(frame)
    assert sent["digest"] == audit.frame_digest([frame], logs[0].hash)[1].hex()  # on the wire
    if logs[0].hash == "sha256":
        assert sent["digest"] == hashlib.sha256(frame).hexdigest()


# ---- tampering -------------------------------------------------------------------------


def test_every_byte_flip_is_detected(secagg_run) -> None:
    d, _, _ = secagg_run
    data = (d / "party-2.jsonl").read_bytes()  # the dropped client's: 5 entries
    audit.read_transcript(data)
    assert len(data) < 4000
    for pos in range(len(data)):
        for mask in (0x01, 0x20) if pos % 7 == 0 else (0x01,):
            bad = bytearray(data)
            bad[pos] ^= mask
            with pytest.raises(InvalidTranscript):
                audit.read_transcript(bytes(bad))


def test_removed_reordered_and_cut_entries_are_detected(secagg_run) -> None:
    d, _, _ = secagg_run
    lines = (d / "party-1.jsonl").read_bytes().splitlines(keepends=True)
    for i in range(1, len(lines)):
        with pytest.raises(InvalidTranscript):
            audit.read_transcript(b"".join(lines[:i] + lines[i + 1:]))  # one removed
        if i + 1 < len(lines):
            swapped = [*lines[:i], lines[i + 1], lines[i], *lines[i + 2:]]
            with pytest.raises(InvalidTranscript):
                audit.read_transcript(b"".join(swapped))
    cut = b"".join(lines[:-1])
    with pytest.raises(InvalidTranscript, match="no end entry"):
        audit.read_transcript(cut)
    prefix = audit.read_transcript(cut, allow_incomplete=True)
    assert not prefix.complete and prefix.status is None
    with pytest.raises(InvalidTranscript):  # a line from another party's transcript
        other = (d / "party-3.jsonl").read_bytes().splitlines(keepends=True)
        audit.read_transcript(b"".join([*lines[:3], other[3], *lines[4:]]))


def test_resigned_transcript_with_another_key_is_refused_when_keys_are_pinned(
        secagg_run, tmp_path: Path) -> None:
    d, _, _ = secagg_run
    run = _copy(d, tmp_path / "run")
    log = audit.read_transcript(run / "party-1.jsonl")
    (run / "party-1.jsonl").unlink()
    _replay(log, run / "party-1.jsonl", log.entries[1:], Ed25519PrivateKey.generate())
    protocol_audit.verify([run])  # self-consistent: only pinning can tell
    with pytest.raises(InvalidTranscript, match="pinned key"):
        protocol_audit.verify([run], keys=d / "keys.json")


# ---- stage rules, with valid chains and signatures -------------------------------------


def test_unmask_before_masked_input_is_refused_by_the_stage_check(secagg_run,
                                                                  tmp_path: Path) -> None:
    d, _, _ = secagg_run
    log = audit.read_transcript(d / "party-1.jsonl")
    tags = [e["tag"] for e in log.messages()]
    assert tags == ["advertise_keys", "advertise_keys", "share_keys", "share_keys",
                    "masked_input", "consistency_check", "consistency_check", "unmask",
                    "unmask"]
    msgs = log.messages()
    # the unmask exchange moved before the masked input
    forged = msgs[:4] + msgs[7:9] + msgs[4:7]
    _replay(log, tmp_path / "forged.jsonl", forged, Ed25519PrivateKey.generate())
    bad = audit.read_transcript(tmp_path / "forged.jsonl")  # chain and signatures hold
    with pytest.raises(InvalidTranscript, match="share_keys cannot be followed by unmask"):
        protocol_audit.check_stages(bad)
    # a masked input skipped altogether, and a tag that is no stage
    _replay(log, tmp_path / "skip.jsonl", msgs[:4] + msgs[7:], Ed25519PrivateKey.generate())
    with pytest.raises(InvalidTranscript, match="illegal stage sequence"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "skip.jsonl"))
    t = audit.Transcript(tmp_path / "tag.jsonl", protocol="secure_aggregation")
    t.begin(session=log.session, party=1, peers=[0])
    t.record("send", 0, 0, "results", 10, bytes(32))
    t.close()
    with pytest.raises(InvalidTranscript, match="not a stage"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "tag.jsonl"))
    t = audit.Transcript(tmp_path / "peer.jsonl", protocol="secure_aggregation")
    t.begin(session=log.session, party=1, peers=[0, 2])
    t.record("send", 2, 0, "advertise_keys", 10, bytes(32))
    t.close()
    with pytest.raises(InvalidTranscript, match="not the server"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "peer.jsonl"))


def test_server_without_result_or_unknown_protocol_is_refused(secagg_run,
                                                               tmp_path: Path) -> None:
    d, _, _ = secagg_run
    log = audit.read_transcript(d / "party-0.jsonl")
    _replay(log, tmp_path / "s.jsonl", [e for e in log.entries[1:] if e.type != "result"])
    with pytest.raises(InvalidTranscript, match="without recording a result"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "s.jsonl"))
    phantom = [e if e.type != "note" else audit.Entry(e.index, "note", {
        "name": "outcome", "data": {**e["data"], "survivors": [1, 2, 3, 4]}})
        for e in log.entries[1:]]
    _replay(log, tmp_path / "ph.jsonl", phantom)
    with pytest.raises(InvalidTranscript, match=r"survivors \[2\] whose masked input"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "ph.jsonl"))
    _replay(log, tmp_path / "p.jsonl", log.entries[1:], protocol="secret_aggregation")
    with pytest.raises(InvalidTranscript, match="no stage rules"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "p.jsonl"))


def test_inference_layer_out_of_order_is_refused(tmp_path: Path) -> None:
    t = audit.Transcript(tmp_path / "inf.jsonl", protocol="inference-dealer")
    t.begin(session=bytes(16), party=0, peers=[1, 2])
    for seq, tag in enumerate(["inf2/x", "inf2/relu/0", "inf2/open/1", "inf2/relu/0b"]):
        t.record("send", 1, seq, tag, 10, bytes(32))
    t.close()
    with pytest.raises(InvalidTranscript, match="inf2/relu/0b"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "inf.jsonl"))
    t = audit.Transcript(tmp_path / "inf2.jsonl", protocol="inference-dealer")
    t.begin(session=bytes(16), party=0, peers=[1, 2])
    for seq, tag in enumerate(["inf2/x", "inf2/open/1", "inf2/relu/0"]):
        t.record("send", 1, seq, tag, 10, bytes(32))
    t.close()
    with pytest.raises(InvalidTranscript, match="illegal stage sequence"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "inf2.jsonl"))


@pytest.mark.parametrize(("protocol", "peers", "tag"), [
    ("inference-dealer", [1, 2], "inf2/relu/{n}"),
    ("inference-dealer", [1, 2], "inf2/dl/relu{n}/x"),
    ("inference-replicated", [1, 2], "rep3/{n}"),
    ("inference-replicated", [1, 2], "rep3/in/1/{n}"),
    ("inference-he", [1], "he-inference/query/{n}"),
    ("he_aggregation", [1], "decrypt/{n}"),
])
def test_a_tag_number_of_thousands_of_digits_is_an_invalid_transcript(
        tmp_path: Path, protocol: str, peers: list[int], tag: str) -> None:
    # int() of a 5000-digit string raises a ValueError (CPython's digit limit)
    t = audit.Transcript(tmp_path / "t.jsonl", protocol=protocol)
    t.begin(session=bytes(16), party=0, peers=peers)
    t.record("send", peers[0], 0, tag.format(n="9" * 5000), 10, bytes(32))
    t.close()
    with pytest.raises(InvalidTranscript, match="not a tag"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "t.jsonl"))


@pytest.mark.parametrize("survivors", [[[1]], [{"a": 1}], [True], [-1]])
def test_survivors_that_are_not_party_ids_are_an_invalid_transcript(
        secagg_run, tmp_path: Path, survivors: list[Any]) -> None:
    d, _, _ = secagg_run
    log = audit.read_transcript(d / "party-0.jsonl")
    odd = [e if e.type != "note" else audit.Entry(e.index, "note", {
        "name": "outcome", "data": {**e["data"], "survivors": survivors}})
        for e in log.entries[1:]]
    _replay(log, tmp_path / "s.jsonl", odd)
    with pytest.raises(InvalidTranscript, match="names no survivors"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "s.jsonl"))


@pytest.mark.parametrize("kind", [[], {}, 1, None])
def test_an_entry_type_that_is_not_a_string_is_an_invalid_transcript(kind: Any) -> None:
    line = json.dumps({"e": {"i": 0, "t": kind}, "h": "", "s": ""}).encode() + b"\n"
    with pytest.raises(InvalidTranscript, match="unknown entry type"):
        audit.read_transcript(line)


# ---- cross-checks ------------------------------------------------------------------------


def test_a_receive_that_disagrees_with_its_send_is_detected(secagg_run, tmp_path: Path) -> None:
    d, _, _ = secagg_run
    run = _copy(d, tmp_path / "run")
    log = audit.read_transcript(run / "party-3.jsonl")
    entries = list(log.entries[1:])
    k = next(i for i, e in enumerate(entries) if e.type == "recv" and e["tag"] == "unmask")
    e = entries[k]
    entries[k] = audit.Entry(e.index, e.type, {**e.fields, "digest": "00" * 32})
    (run / "party-3.jsonl").unlink()
    _replay(log, run / "party-3.jsonl", entries, Ed25519PrivateKey.generate())
    with pytest.raises(InvalidTranscript, match="party 0 recorded sending"):
        protocol_audit.verify([run])
    # a receive the sender never recorded
    entries = list(log.entries[1:])
    e = entries[k]
    entries[k] = audit.Entry(e.index, e.type, {**e.fields, "seq": 99})
    (run / "party-3.jsonl").unlink()
    _replay(log, run / "party-3.jsonl", entries)
    with pytest.raises(InvalidTranscript, match="has no such send"):
        protocol_audit.verify([run])


def test_transcripts_of_different_runs_are_not_cross_checked(secagg_run,
                                                             tmp_path: Path) -> None:
    d, _, _ = secagg_run
    other = tmp_path / "other"
    sa.simulate(_updates(), sa.SecAggConfig(n_clients=N), transcript=other)
    with pytest.raises(InvalidTranscript, match="not one run"):
        protocol_audit.verify([d / "party-0.jsonl", other / "party-1.jsonl"])
    with pytest.raises(InvalidTranscript, match="a second transcript of party 1"):
        protocol_audit.verify([d / "party-1.jsonl", d / "party-1.jsonl"])


# ---- secrets and bounds ------------------------------------------------------------------


def test_no_secret_in_the_transcripts(tmp_path: Path) -> None:
    public, private = sa.make_identities(N)
    ups = _updates()
    d = tmp_path / "t"
    cfg = sa.SecAggConfig(n_clients=N, identities=public)
    sa.simulate(ups, cfg, identity_keys=private, transcript=d)
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    text = b"".join(f.read_bytes() for f in d.iterdir())
    needles = [u.tobytes()[:8] for u in ups] + [u.tobytes()[:8].hex().encode() for u in ups]
    for key in private.values():
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        needles += [raw, raw.hex().encode()]
    for needle in needles:
        assert needle not in text
    for f in d.glob("*.jsonl"):  # only the entry kinds of the format, nothing else
        for line in f.read_bytes().splitlines():
            e = json.loads(line)["e"]
            assert e["t"] in ("header", "send", "recv", "note", "result", "end")
            if e["t"] == "note":
                assert e["name"] == "outcome" and set(e["data"]) == {
                    "survivors", "dropped", "misbehaving"}


def test_bounds_and_bad_input() -> None:
    with pytest.raises(InvalidTranscript, match="more than the limit"):
        audit.read_transcript(b"x" * 100, max_bytes=10)
    with pytest.raises(InvalidTranscript, match="longer than"):
        audit.read_transcript(b"[" * (audit.MAX_LINE_BYTES + 1) + b"\n")
    with pytest.raises(InvalidTranscript, match="not a JSON line"):
        audit.read_transcript(b"[" * 100_000 + b"\n")
    with pytest.raises(InvalidTranscript, match="empty"):
        audit.read_transcript(b"")
    with pytest.raises(InvalidInput):
        audit.load_keys({"0": "zz"})
    with pytest.raises(InvalidInput):
        audit.cross_check([])


# ---- the command line --------------------------------------------------------------------


def test_cli_verify_end_to_end(secagg_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                               ) -> None:
    d, _, _ = secagg_run
    assert main(["audit", "verify", str(d), "--keys", str(d / "keys.json")]) == 0
    out = capsys.readouterr().out
    assert "OK: every chain" in out and "masked_input: 3 took part, dropped: [2]" in out
    key = audit.load_keys(d / "keys.json")[1].hex()
    assert main(["audit", "verify", str(d / "party-1.jsonl"), "--key", key]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", str(d / "party-2.jsonl"), "--key", key]) == 1
    assert "not the pinned key" in capsys.readouterr().err
    run = _copy(d, tmp_path / "run")
    data = bytearray((run / "party-4.jsonl").read_bytes())
    data[len(data) // 2] ^= 1
    (run / "party-4.jsonl").write_bytes(bytes(data))
    assert main(["audit", "verify", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mpcai: error: ") and "party-4.jsonl: entry" in err
    assert len(err.strip().splitlines()) == 1
    (run / "party-4.jsonl").write_bytes(b"".join(
        (d / "party-4.jsonl").read_bytes().splitlines(keepends=True)[:-1]))  # a crash
    assert main(["audit", "verify", str(run)]) == 1
    assert "no end entry" in capsys.readouterr().err
    assert main(["audit", "verify", str(run), "--allow-incomplete"]) == 0
    assert "INCOMPLETE" in capsys.readouterr().out
    assert main(["audit", "verify", str(tmp_path / "missing.jsonl")]) == 1
    assert main(["audit", "verify", str(d), "--key", "00"]) == 2


def test_bench_audit_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "audit", "--quick", "--reps", "1"]) == 0
    assert "overhead" in capsys.readouterr().out


_FAULTS = """
import ctypes, resource, sys
import numpy as np
from mpcai.benchmarks._common import steady_allocator
libc = ctypes.CDLL(None)
libc.mallopt(-3, 128 * 1024)  # glibc's initial mmap threshold, held fixed

def faults():  # minor faults of 20 rounds of 4-16 MiB buffers, filled and freed
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for k in range(20):
        a = np.ones((1 + k % 4) << 19); b = np.ones(1 << 19); del a, b
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

before = faults()
what = steady_allocator()
faults()  # the heap grows once
print(before, faults(), what)
"""


def test_bench_steady_allocator_stops_page_fault_storms(tmp_path: Path) -> None:
    # in a child: the setting is process-wide.  With every multi-MiB buffer a fresh
    # mmap, its pages fault in (fewer with numpy's huge-page advice, still thousands
    # over the loop); once steady, the memory freed is reused without a fault
    import subprocess
    import sys

    # -P and another directory: the installed mpcai, never a source checkout in the cwd
    proc = subprocess.run([sys.executable, "-P", "-c", _FAULTS], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.split(maxsplit=2)
    before, after, what = int(out[0]), int(out[1]), out[2]
    assert before > 5_000 and after < before / 20, out
    assert what.startswith("glibc mallopt")


# ---- process_party of inference, CKKS inference, HE aggregation ---------------------------


def _flip(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("provider", ["dealer", "dealerless", "replicated"])
def test_inference_process_party_writes_transcripts(tmp_path: Path, provider: str) -> None:
    """The launcher's entry points (2PC with and without a dealer, 3PC), under run_local."""
    from mpcai.protocols.inference.simulation import process_party, process_party3

    rng = np.random.default_rng(4)
    layers = [[rng.normal(size=(4, 3)) * 0.3, np.zeros(3)],
              [rng.normal(size=(3, 2)) * 0.3, np.zeros(2)]]
    x = rng.uniform(-1, 1, (2, 4))
    cfg = {"frac_bits": 12, "input_bound": 1.0}
    n = 2 if provider == "dealerless" else 3
    roles = {"compute": [0, 1], "dealer": None if n == 2 else 2, "data_owner": 0,
             "model_owner": 1}

    async def one(party):
        mine = {"layers": layers if party.id == 1 else None, "x": x if party.id == 0 else None,
                "transcript": str(tmp_path / f"party-{party.id}.jsonl")}
        if provider == "replicated":
            return await process_party3(party, [4, 3, 2], 2, cfg, **mine)
        return await process_party(party, roles, [4, 3, 2], 2, cfg, **mine)

    out = run_local(n, one, timeout=30)
    w0, w1 = layers[0][0], layers[1][0]
    np.testing.assert_allclose(out[0]["logits"], np.maximum(x @ w0, 0) @ w1, atol=0.02)
    report = protocol_audit.verify([tmp_path])
    assert {log.protocol for log in report.logs} == {f"inference-{provider}"}
    assert report.run.matched == sum(len(log.messages("recv")) for log in report.logs) > 0
    _flip(tmp_path / "party-1.jsonl")
    with pytest.raises(InvalidTranscript, match=r"party-1\.jsonl"):
        protocol_audit.verify([tmp_path])


def _square_model(rng: np.random.Generator):
    from mpcai.protocols.inference.model import Linear, Model, Square

    return Model((Linear(rng.uniform(-1, 1, (4, 3)), rng.uniform(-1, 1, 3)), Square(),
                  Linear(rng.uniform(-1, 1, (3, 2)), rng.uniform(-1, 1, 2))), np.arange(2))


def test_ckks_inference_transcripts_verify_and_order_is_checked(tmp_path: Path) -> None:
    from mpcai.protocols.inference import he

    rng = np.random.default_rng(3)
    d = tmp_path / "run"
    he.simulate(_square_model(rng), rng.uniform(-1, 1, (5, 4)), batch=2, transcript=d)
    report = protocol_audit.verify([d], keys=d / "keys.json")
    assert [log.protocol for log in report.logs] == ["inference-he"] * 2
    assert report.run.matched == 9  # plan, keys, ready, 3 x (query, result)
    client = audit.read_transcript(d / "party-0.jsonl")
    msgs = client.messages()
    # the client's record with two batches swapped: legal chain, illegal order
    swapped = [e for e in client.entries if e.type != "header" and e.type != "end"]
    i, j = swapped.index(msgs[3]), swapped.index(msgs[5])
    swapped[i], swapped[j] = swapped[j], swapped[i]
    _replay(client, tmp_path / "bad.jsonl", swapped)
    with pytest.raises(InvalidTranscript, match="out of order"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "bad.jsonl"))
    _flip(d / "party-0.jsonl", 0.9)
    with pytest.raises(InvalidTranscript):
        protocol_audit.verify([d])


def test_ckks_inference_process_party_writes_transcripts(tmp_path: Path) -> None:
    from mpcai.protocols.inference import he

    rng = np.random.default_rng(6)
    model = _square_model(rng)
    x = rng.uniform(-1, 1, (3, 4))

    async def one(party):
        path = str(tmp_path / f"party-{party.id}.jsonl")
        if party.id == 1:
            return await he.process_party(party, "server", he.model_layers(model),
                                          transcript=path)
        return await he.process_party(party, "client", x=x, transcript=path)

    out = run_local(2, one, timeout=120)
    np.testing.assert_allclose(out[0]["outputs"], model.logits(x), atol=1e-2)
    report = protocol_audit.verify([tmp_path])
    assert report.run.matched == 5


@pytest.mark.parametrize("scheme", ["paillier", "ckks"])
def test_he_aggregation_transcripts_verify_with_a_dropout(tmp_path: Path, scheme: str) -> None:
    from mpcai.protocols import he_aggregation as hea

    rng = np.random.default_rng(8)
    ups = [rng.uniform(-1, 1, 5) for _ in range(3)]
    keys = None
    if scheme == "paillier":
        from mpcai.he import paillier

        keys = paillier.deal_threshold_keys(3, 2, paillier.MIN_KEY_BITS)
    d = tmp_path / "run"
    agg = hea.simulate(ups, committee=(2, 3), keys=keys, scheme=scheme, dropouts=[2],
                       transcript=d)
    report = protocol_audit.verify([d], keys=d / "keys.json")
    hub = report.logs[0]
    assert hub.notes("outcome") == [{"participants": agg.participants,
                                     "misbehaving": agg.misbehaving}]
    import hashlib

    assert hub.result == hashlib.sha256(np.asarray(agg.sums, dtype="<i8").tobytes()).digest()
    # the hub combines the first t valid partial decryptions and does not wait for the
    # others: a member's late answer may be sent and never read, which is legal
    late = [(frm, to, tag) for frm, to, _, tag in report.run.undelivered]
    assert all(to == 0 and tag == "decrypt" and frm in (4, 5, 6)
               and frm not in agg.decrypted_by for frm, to, tag in late), late
    assert len(agg.decrypted_by) == 2 and report.run.matched > 0
    assert protocol_audit.stage_participants(hub)["input"] == [1, 3]
    # a client that answers a decryption request: an illegal step for its role
    client = audit.read_transcript(d / "party-1.jsonl")
    member = audit.read_transcript(d / "party-4.jsonl")
    _replay(client, tmp_path / "bad.jsonl",
            [*client.messages(), *[e for e in member.messages() if e.type == "send"]])
    with pytest.raises(InvalidTranscript, match="not a legal step"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "bad.jsonl"))
    _flip(d / "party-0.jsonl")
    with pytest.raises(InvalidTranscript):
        protocol_audit.verify([d])


# ---- attacks: checkpoints, splicing, replay, false digests, bounds, paths -----------------


def test_checkpoints_sign_the_whole_record_and_a_crash_leaves_a_signed_prefix(
        tmp_path: Path) -> None:
    t = audit.Transcript(tmp_path / "t.jsonl", protocol="toy", sign_every=4, hash="sha256")
    t.begin(session=bytes(16), party=0, peers=[1])
    for seq in range(10):
        t.record("send", 1, seq, f"m{seq}", 10, bytes(32))
    t.close()
    lines = (tmp_path / "t.jsonl").read_bytes().splitlines(keepends=True)
    unsigned = [i for i, line in enumerate(lines) if line.endswith(b'"s":""}\n')]
    assert unsigned == [1, 2, 3, 5, 6, 7, 9, 10]  # header, every 4th, end signed
    log = audit.read_transcript(b"".join(lines))
    assert log.complete and len(log.entries) == 12 and log.hash == "sha256"
    cut = b"".join(lines[:7])  # a crash after an unsigned entry: back to entry 4
    prefix = audit.read_transcript(cut, allow_incomplete=True)
    assert [e.index for e in prefix.entries] == [0, 1, 2, 3, 4] and prefix.unsigned_tail == 2
    with pytest.raises(InvalidTranscript, match="no end entry"):
        audit.read_transcript(cut)
    half = b"".join(lines[:5]) + lines[5][:40]  # a crash in the middle of a line
    assert len(audit.read_transcript(half, allow_incomplete=True).entries) == 5
    with pytest.raises(InvalidTranscript, match="cut"):
        audit.read_transcript(half)
    # an unsigned entry altered: the next checkpoint's chain breaks
    bad = lines[2].replace(b'"len":10', b'"len":11')
    with pytest.raises(InvalidTranscript, match="hash chain"):
        audit.read_transcript(b"".join([*lines[:2], bad, *lines[3:]]))
    # the end entry (or header, note, result) without its signature is refused
    end = lines[-1]
    stripped = end[:end.index(b'"s":"') + 5] + b'"}\n'
    with pytest.raises(InvalidTranscript, match="end entry must be signed"):
        audit.read_transcript(b"".join([*lines[:-1], stripped]))
    t1 = audit.Transcript(tmp_path / "t1.jsonl", protocol="toy", sign_every=1)
    t1.begin(session=bytes(16), party=0, peers=[1])
    t1.record("send", 1, 0, "m", 1, bytes(32))
    t1.close()
    assert b'"s":""' not in (tmp_path / "t1.jsonl").read_bytes()


def test_lines_spliced_from_another_run_or_party_are_refused(secagg_run,
                                                             tmp_path: Path) -> None:
    d, _, _ = secagg_run
    other = tmp_path / "other"
    sa.simulate(_updates(), sa.SecAggConfig(n_clients=N, consistency_check=True),
                dropouts={2: "masked_input"}, transcript=other)
    mine = (d / "party-1.jsonl").read_bytes().splitlines(keepends=True)
    theirs = (other / "party-1.jsonl").read_bytes().splitlines(keepends=True)
    peer = (d / "party-3.jsonl").read_bytes().splitlines(keepends=True)
    for i in range(len(mine)):  # the same entry of the same party in another run
        with pytest.raises(InvalidTranscript):
            audit.read_transcript(b"".join([*mine[:i], theirs[i], *mine[i + 1:]]))
        with pytest.raises(InvalidTranscript):  # the same entry of another party
            audit.read_transcript(b"".join([*mine[:i], peer[i], *mine[i + 1:]]))
    with pytest.raises(InvalidTranscript):  # another run's tail after this one's head
        audit.read_transcript(b"".join([*mine[:4], *theirs[4:]]))


def test_a_replayed_old_run_is_refused_when_the_session_is_pinned(
        secagg_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, _, _ = secagg_run
    session = audit.read_transcript(d / "party-0.jsonl").session
    protocol_audit.verify([d], keys=d / "keys.json", session=session)
    with pytest.raises(InvalidTranscript, match="another run's transcript"):
        protocol_audit.verify([d], keys=d / "keys.json", session=bytes(16))
    assert main(["audit", "verify", str(d), "--session", session.hex()]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", str(d), "--session", "ab" * 16]) == 1
    assert "another run" in capsys.readouterr().err
    assert main(["audit", "verify", str(d), "--session", "xyz"]) == 2  # a usage error


def test_a_party_that_records_a_false_digest_is_exposed_by_its_peer(tmp_path: Path) -> None:
    """Client 1 re-signs, with its own real key, a record claiming it sent other bytes."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    public, private = sa.make_identities(N)
    cfg = sa.SecAggConfig(n_clients=N, identities=public)
    d = tmp_path / "run"
    sa.simulate(_updates(), cfg, identity_keys=private, transcript=d)
    keys = audit.load_keys(d / "keys.json")
    log = audit.read_transcript(d / "party-1.jsonl")
    entries = list(log.entries[1:])
    k = next(i for i, e in enumerate(entries) if e.type == "send" and e["tag"] == "masked_input")
    entries[k] = audit.Entry(entries[k].index, "send", {**entries[k].fields,
                                                        "digest": "ab" * 32})
    (d / "party-1.jsonl").unlink()
    raw = private[1].private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    _replay(log, d / "party-1.jsonl", entries, raw)
    assert audit.read_transcript(d / "party-1.jsonl", key=keys[1]).pinned  # its signature
    with pytest.raises(InvalidTranscript, match="party 1 recorded sending"):
        protocol_audit.verify([d], keys=keys)
    # without the server's transcript nothing contradicts it: the limit of an audit
    alone = protocol_audit.verify([d / f"party-{c}.jsonl" for c in range(1, N + 1)],
                                  keys=keys)
    assert alone.run.absent == [0]


def test_a_send_hidden_in_an_incomplete_transcript_is_still_caught(secagg_run,
                                                                   tmp_path: Path) -> None:
    d, _, _ = secagg_run
    run = _copy(d, tmp_path / "run")
    log = audit.read_transcript(run / "party-1.jsonl")
    body = [e for e in log.entries[1:] if e.type != "end"]
    first = next(i for i, e in enumerate(body) if e.type == "send")
    # the first send removed, later ones kept, no end entry (as if it crashed)
    t = audit.Transcript(run / "p1.jsonl", protocol=log.protocol, version=log.version,
                         hash=log.hash, sign_every=1)
    t.config_digest = log.config_digest
    t.begin(session=log.session, party=1, peers=log.peers)
    for e in body[:first] + body[first + 1:]:
        t.record(e.type, e["peer"], e["seq"], e["tag"], e["len"], bytes.fromhex(e["digest"]))
    t._file.close()  # no end entry
    (run / "party-1.jsonl").unlink()
    (run / "p1.jsonl").rename(run / "party-1.jsonl")
    with pytest.raises(InvalidTranscript, match="has no such send"):
        protocol_audit.verify([run], allow_incomplete=True)
    # only its sends after the prefix's last are unconfirmed, not an error
    t = audit.Transcript(run / "p1b.jsonl", protocol=log.protocol, version=log.version,
                         hash=log.hash, sign_every=1)
    t.config_digest = log.config_digest
    t.begin(session=log.session, party=1, peers=log.peers)
    for e in body[:first]:
        t.record(e.type, e["peer"], e["seq"], e["tag"], e["len"], bytes.fromhex(e["digest"]))
    t._file.close()
    (run / "party-1.jsonl").unlink()
    (run / "p1b.jsonl").rename(run / "party-1.jsonl")
    report = protocol_audit.verify([run], allow_incomplete=True)
    assert report.run.unconfirmed and {u[0] for u in report.run.unconfirmed} == {1}


def test_corruption_in_transit_is_exposed_and_shared_digests_are_the_same_object_only(
        tmp_path: Path) -> None:
    from mpcai.runtime import InMemoryNetwork
    from mpcai.runtime import party as party_mod
    from mpcai.testing import Fault, FaultyNetwork

    big = np.arange(300_000, dtype=np.uint64)

    def flip_last(frame: bytes) -> bytes:  # a bit of the last value: still decodable
        return frame[:-1] + bytes([frame[-1] ^ 1])

    async def send(party):
        if party.id == 0:
            await party.send(1, "big", big)
            return None
        return int((await party.recv(0, "big"))[-1])

    ts = audit.open_transcripts(tmp_path / "a", range(2), protocol="toy")
    net = FaultyNetwork(InMemoryNetwork(2), {0: Fault(corrupt=flip_last)})
    assert run_local(2, send, network=net, transcripts=ts)[1] == 299_999 ^ (1 << 56)
    logs = [audit.read_transcript(t.path) for t in ts]
    with pytest.raises(InvalidTranscript, match="party 0 recorded sending"):
        audit.cross_check(logs)
    ts = audit.open_transcripts(tmp_path / "b", range(2), protocol="toy")
    assert run_local(2, send, transcripts=ts)[1] == 299_999  # shared over a memory link
    assert audit.cross_check([audit.read_transcript(t.path) for t in ts]).matched == 1
    assert not party_mod._SHARED._entries  # taken by the recipient
    cache = party_mod._SharedDigests()
    frame = bytes(range(256)) * 8
    owner: dict = {}
    cache.put(frame, "sha256", owner).resolve(b"d" * 32)
    assert cache.take(bytes(bytearray(frame)), "sha256") is None  # equal bytes, not the object
    assert cache.take(bytearray(frame), "sha256") is None
    assert cache.take(frame, "blake2b") is None
    got = cache.take(frame, "sha256")
    assert got is not None and got.digest == b"d" * 32 and cache.take(frame, "sha256") is None
    assert not owner  # a taken frame is no longer held for its sender
    pending = cache.put(frame, "sha256", owner)
    cache.forget(owner)  # the sender closed: a recipient still waiting hashes it itself
    assert pending.done.is_set() and pending.digest is None and not cache._entries


def test_unread_shared_digests_are_forgotten_when_the_sender_closes(tmp_path: Path) -> None:
    from mpcai.runtime import party as party_mod

    big = np.zeros(300_000, dtype=np.uint64)

    async def one(party):
        if party.id == 0:
            await party.send(1, "big", big)
            assert party_mod._SHARED._entries and party._shared  # in flight
        else:
            await party.recv(0, "big")
        return party.id

    # party 1 records nothing, so it never takes the digest: the sender's close drops it
    ts = audit.open_transcripts(tmp_path, range(2), protocol="toy")
    assert run_local(2, one, transcripts=[ts[0], None]) == [0, 1]
    assert not party_mod._SHARED._entries


@pytest.mark.parametrize("name", ["sha256", "blake2b", "blake3"])
def test_the_header_names_the_frame_hash_and_a_run_uses_one(tmp_path: Path, name: str) -> None:
    assert audit.hash_available(name)  # blake3 is a dependency: never skipped
    payload = np.arange(200_000, dtype=np.uint32)  # big: hashed in a thread and shared

    async def swap(party):
        return (await party.exchange("v", payload))[1 - party.id].sum()

    ts = audit.open_transcripts(tmp_path / name, range(2), protocol="toy", hash=name)
    run_local(2, swap, transcripts=ts)
    logs = [audit.read_transcript(t.path) for t in ts]
    assert {log.hash for log in logs} == {name}
    assert audit.cross_check(logs).matched == 2
    other = "sha256" if name != "sha256" else "blake2b"
    ts2 = audit.open_transcripts(tmp_path / "o", range(2), protocol="toy", hash=other)
    run_local(2, swap, transcripts=ts2, session=logs[0].session)
    mixed = [logs[0], audit.read_transcript(ts2[1].path)]
    mixed[1].config_digest = logs[0].config_digest
    with pytest.raises(InvalidTranscript, match="hash differs"):
        audit.cross_check(mixed)
    with pytest.raises(InvalidInput, match="hash must be one of"):
        audit.Transcript(tmp_path / "x.jsonl", protocol="toy", hash="md5")
    t = audit.Transcript(tmp_path / "md5.jsonl", protocol="toy")
    t.hash = "md5"  # a header naming an unknown algorithm, validly signed
    t.begin(session=bytes(16), party=0, peers=[1])
    t.close()
    with pytest.raises(InvalidTranscript, match="frame hash 'md5'"):
        audit.read_transcript(tmp_path / "md5.jsonl")


def test_missing_blake3_is_a_typed_error(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    from mpcai.errors import MissingDependency

    def no_blake3() -> None:
        raise ImportError("no blake3")

    monkeypatch.setitem(audit._CONSTRUCTORS, "blake3", no_blake3)
    assert audit.default_hash() == "blake3"  # never silently another algorithm
    with pytest.raises(MissingDependency, match="pip install blake3"):
        audit.Transcript(tmp_path / "t.jsonl", protocol="toy", hash="blake3")


def test_reading_is_bounded_and_paths_are_checked(tmp_path: Path) -> None:
    import os

    with pytest.raises(InvalidTranscript, match="not a regular file"):
        audit.read_transcript("/dev/zero")
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(InvalidTranscript, match="not a regular file"):  # would block
        audit.read_transcript(fifo)
    with pytest.raises(InvalidInput, match="not a regular file"):
        audit.load_keys(fifo)
    with pytest.raises(InvalidInput, match="cannot read"):
        audit.load_keys(tmp_path / "missing.json")
    with pytest.raises(InvalidTranscript, match="cannot read"):
        audit.read_transcript(tmp_path / "missing.jsonl")
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as f:  # one 12 MB line: refused after reading 4 MB of it
        f.write(b"[" * (12 << 20))
    with pytest.raises(InvalidTranscript, match="longer than"):
        audit.read_transcript(huge)
    with pytest.raises(InvalidTranscript, match="more than the limit"):
        audit.read_transcript(huge, max_bytes=1 << 20)
    with pytest.raises(InvalidTranscript, match="more than the limit"):
        protocol_audit.verify([huge], max_bytes=1 << 20)
    assert main(["audit", "verify", str(huge), "--max-bytes", "1000"]) == 1
    with pytest.raises(InvalidInput):  # a transcript in a directory that does not exist
        audit.Transcript(tmp_path / "no" / "t.jsonl", protocol="toy").begin(
            session=bytes(16), party=0, peers=[1])
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keys.json").symlink_to(tmp_path / "nowhere")  # dangling: not replaced
    with pytest.raises(WouldOverwrite):
        audit.open_transcripts(tmp_path / "d", [0, 1], protocol="toy")


def test_no_secret_of_inference_or_he_aggregation_in_transcripts(tmp_path: Path) -> None:
    from mpcai.protocols import he_aggregation as hea
    from mpcai.protocols import inference as inf

    from mpcai.he import ckks

    rng = np.random.default_rng(9)
    w0, w1 = rng.normal(size=(5, 4)) * 0.3, rng.normal(size=(4, 3)) * 0.3
    x = rng.normal(size=(3, 5))
    inf.simulate(inf.from_numpy([(w0, np.zeros(4)), (w1, np.zeros(3))]), x,
                 transcript=tmp_path / "inf")
    public, shares = ckks.deal_threshold_keys(3, 2)
    ups = [rng.uniform(-1, 1, 6) for _ in range(3)]
    hea.simulate(ups, committee=(2, 3), keys=(public, shares), scheme="ckks",
                 transcript=tmp_path / "he")
    text = b"".join(f.read_bytes() for f in tmp_path.rglob("*.json*"))
    needles = [a.tobytes()[:16] for a in (w0, w1, x, *ups)]
    needles += [s.serialize()[-32:] for s in shares]
    for needle in list(needles):
        needles.append(needle.hex().encode())
    for needle in needles:
        assert needle not in text


def test_message_entries_are_canonical_json_whatever_the_tag(tmp_path: Path) -> None:
    """The message entries are formatted directly (not through json.dumps): each line must
    be exactly the canonical JSON of its entry, for any tag and integer type."""
    t = audit.Transcript(tmp_path / "p.jsonl", protocol="x", sign_every=5)
    t.begin(session=b"s" * 16, party=0, peers=[1, 2])
    tags = ["masked_input", 'q"uo\\te', "\u00fcn\u00ef\u2028\x00\x1f", "a/b", "", "x" * 300]
    rng = np.random.default_rng(3)
    want = []
    for i in range(40):
        tag = tags[i % len(tags)]
        direction = ("send", "recv")[i % 2]
        peer, seq = int(rng.integers(1, 3)), int(rng.integers(0, 2**62))
        n = int(rng.integers(0, 2**62))
        digest = bytes(rng.integers(0, 256, 32, dtype=np.uint8))
        # numpy integers as the runtime may pass them
        t.record(direction, np.int64(peer), np.uint64(seq), tag, np.int32(n % 2**31), digest)
        want.append({"t": direction, "tag": tag, "peer": peer, "seq": seq, "len": n % 2**31,
                     "digest": digest.hex()})
    t.close()
    lines = (tmp_path / "p.jsonl").read_bytes().splitlines()
    for k, line in enumerate(lines[1:-1]):
        obj = json.loads(line)
        assert obj["e"] == {**want[k], "i": k + 1}
        assert line.startswith(b'{"e":' + audit.canonical_json(obj["e"]) + b',"h":')
    log = audit.read_transcript(tmp_path / "p.jsonl")
    assert [e["tag"] for e in log.messages()] == [w["tag"] for w in want]


def test_robust_process_party_records_a_transcript(tmp_path: Path) -> None:
    """Robust aggregation's process entry point writes transcripts that verify (under
    run_local here, a full mesh as over TCP), the servers' results the sum's digest; a
    server transcript that ends ok without a result is refused."""
    import dataclasses
    import hashlib

    from mpcai.protocols import robust_aggregation as ra

    cfg = ra.RobustConfig(n_clients=3, dim=16, l2_bound=1.0, timeout=20.0)
    config = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}
    rng = np.random.default_rng(4)
    ups = [rng.normal(size=16) * 0.05 for _ in range(3)]
    key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization as ser

    raw = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())

    async def one(party):
        return await ra.process_party(party, config, None if party.id < 2 else ups[party.id - 2],
                                      transcript=tmp_path / f"p{party.id}.jsonl",
                                      signing_key=raw if party.id == 2 else None)

    out = run_local(5, one, timeout=30.0)
    report = protocol_audit.verify([tmp_path])
    assert len(report.logs) == 5 and report.run.matched > 0
    assert report.participants == {"robust/share": [2, 3, 4]}
    assert report.logs[2].public_key == audit.public_key(key)
    digest = hashlib.sha256(np.asarray(out[0]["sum"], dtype="<i8").tobytes()).digest()
    assert report.logs[0].result == report.logs[1].result == digest
    server = audit.read_transcript(tmp_path / "p0.jsonl")
    entries = [e for e in server.entries[1:-1] if e.type != "result"]
    _replay(server, tmp_path / "s.jsonl", entries)
    with pytest.raises(InvalidTranscript, match="without recording a result"):
        protocol_audit.check_stages(audit.read_transcript(tmp_path / "s.jsonl"))


# ---- suspend and resume (a party run one message at a time) --------------------------------


def _suspended(tmp_path: Path, key: bytes) -> tuple[bytes, Path]:
    t = audit.Transcript(tmp_path / "p1.jsonl", protocol="demo", config={"n": 2},
                         signing_key=key, sign_every=1)
    t.begin(session=b"s" * 16, party=1, peers=[0])
    t.record("send", 0, 0, "hello", 5, b"\x01" * 32)
    return t.suspend(), tmp_path / "p1.jsonl"


def test_a_suspended_transcript_resumes_and_verifies_whole(tmp_path: Path) -> None:
    key = audit.new_signing_key()
    state, path = _suspended(tmp_path, key)
    assert key.hex() not in state.decode() and b"hello" not in state  # public facts only
    t = audit.Transcript.resume(state, signing_key=key)
    t.record("recv", 0, 0, "reply", 7, b"\x02" * 32)
    state = t.suspend()
    t = audit.Transcript.resume(state, signing_key=key)
    t.close()
    log = audit.read_transcript(path, key=audit.public_key(key))
    assert [(e.type, e["tag"]) for e in log.messages()] == [("send", "hello"),
                                                            ("recv", "reply")]
    assert log.complete and log.status == "ok" and log.party == 1
    assert log.config_digest == audit.config_digest({"n": 2})


def test_resume_cuts_what_a_failed_call_left_and_refuses_a_changed_file(
        tmp_path: Path) -> None:
    key = audit.new_signing_key()
    state, path = _suspended(tmp_path, key)
    with pytest.raises(InvalidInput):
        audit.Transcript.resume(state, signing_key=audit.new_signing_key())
    # a later call wrote more, then its state was discarded: cut off on resume
    t = audit.Transcript.resume(state, signing_key=key)
    t.record("recv", 0, 0, "lost", 7, b"\x03" * 32)
    t._file.close()  # type: ignore[union-attr]  (the call died here)
    t = audit.Transcript.resume(state, signing_key=key)
    t.close()
    log = audit.read_transcript(path)
    assert [e["tag"] for e in log.messages()] == ["hello"] and log.complete
    # shorter than at the suspension, or not ending with its last entry: refused (a
    # check that the state and the file belong together; verify finds any tampering)
    (tmp_path / "b").mkdir()
    state, path = _suspended(tmp_path / "b", key)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(InvalidTranscript):
        audit.Transcript.resume(state, signing_key=key)
    first, last = data[:-1].rsplit(b"\n", 1)  # the same length, another last line
    path.write_bytes(first + b"\n" + b" " * len(last) + b"\n")
    with pytest.raises(InvalidTranscript):
        audit.Transcript.resume(state, signing_key=key)
    with pytest.raises(InvalidInput):
        audit.Transcript.resume(b"{}", signing_key=key)
    t = audit.Transcript(tmp_path / "never.jsonl", protocol="demo")
    with pytest.raises(InvalidInput):  # not begun
        t.suspend()


def test_resume_refuses_a_link_or_another_file_and_works_from_another_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = audit.new_signing_key()
    monkeypatch.chdir(tmp_path)
    t = audit.Transcript("rel.jsonl", protocol="demo", signing_key=key, sign_every=1)
    t.begin(session=b"s" * 16, party=1, peers=[0])
    state = t.suspend()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the next call runs in another directory
    audit.Transcript.resume(state, signing_key=key).close()
    assert audit.read_transcript(tmp_path / "rel.jsonl").complete
    # a link put in the file's place, or another file of the same content: refused
    t = audit.Transcript(tmp_path / "a.jsonl", protocol="demo", signing_key=key,
                         sign_every=1)
    t.begin(session=b"s" * 16, party=1, peers=[0])
    state = t.suspend()
    data = (tmp_path / "a.jsonl").read_bytes()
    victim = tmp_path / "victim"
    (tmp_path / "a.jsonl").rename(victim)  # (kept: its inode is not reused below)
    (tmp_path / "a.jsonl").symlink_to(victim)
    with pytest.raises(InvalidTranscript):  # even to the very file
        audit.Transcript.resume(state, signing_key=key)
    (tmp_path / "a.jsonl").unlink()
    (tmp_path / "a.jsonl").write_bytes(data)  # a copy: another inode
    with pytest.raises(InvalidTranscript, match="another file"):
        audit.Transcript.resume(state, signing_key=key)
    assert victim.read_bytes() == data


def test_close_ends_the_file_even_when_the_end_entry_cannot_be_written(
        tmp_path: Path) -> None:
    t = audit.Transcript(tmp_path / "t.jsonl", protocol="demo")
    t.begin(session=b"s" * 16, party=0, peers=[1])
    real = t._file
    assert real is not None

    class Full:
        def write(self, b: bytes) -> int:
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    t._file = Full()  # type: ignore[assignment]
    with pytest.raises(OSError):
        t.close(RuntimeError("x"))
    assert t.closed and real.closed
    t.close()  # idempotent


def test_resume_never_rewrites_a_transcript_a_later_call_ended(tmp_path: Path) -> None:
    key = audit.new_signing_key()
    state, path = _suspended(tmp_path, key)
    t = audit.Transcript.resume(state, signing_key=key)
    t.record("recv", 0, 0, "reply", 7, b"\x02" * 32)
    t.close(RuntimeError("the step failed"))  # and its host kept the old state
    ended = path.read_bytes()
    with pytest.raises(InvalidTranscript, match="ended"):
        audit.Transcript.resume(state, signing_key=key)
    assert path.read_bytes() == ended
    assert audit.read_transcript(path).error == "RuntimeError"
    # a state of before the file's identity was recorded still resumes
    (tmp_path / "x").mkdir()
    state2, path2 = _suspended(tmp_path / "x", key)
    old = json.loads(state2)
    del old["file"]
    audit.Transcript.resume(audit.canonical_json(old), signing_key=key).close()
    assert audit.read_transcript(path2).complete
