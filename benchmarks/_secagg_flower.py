"""Flower's SecAgg+ (``flwr``, optional) driven in one process, stage by stage.

The clients run Flower's own stage functions from
``flwr.client.mod.secure_aggregation.secaggplus_mod`` (``_setup``,
``_share_keys``, ``_collect_masked_vectors``, ``_unmask``) on their own
``SecAggPlusState``, fed with real ``ConfigRecord`` / ``Parameters``
objects.  The server stages of ``SecAggPlusWorkflow`` are methods that need
a ``Grid`` and a ``LegacyContext`` (strategy, client manager, history), so
their bodies are re-run here line for line with Flower's own helpers
(neighbour ring over a shuffled order, ``bytes_to_ndarray``,
``parameters_addition`` / ``_subtraction`` / ``_mod``, ``combine_shares``,
``generate_shared_key``, ``pseudo_rand_gen``, ``factor_extract``,
``dequantize``), minus the message transport and the ``Strategy``
bookkeeping.  No network, no serialisation beyond what the stage functions
do themselves: this is Flower's compute only.

Bytes per client are estimated from what a client's stage functions return:
public keys, ciphertexts (+ 8 bytes per destination id), the serialised
masked arrays (``ndarray_to_bytes``), and the unmask shares (+ 8 bytes per
node id); protobuf/gRPC framing is not counted.
"""

from __future__ import annotations

import importlib
import random
import time
from dataclasses import dataclass, field

import numpy as np


def available() -> bool:
    """Whether ``flwr`` (with its SecAgg+ modules) can be imported."""
    try:
        import flwr.client.mod.secure_aggregation.secaggplus_mod  # noqa: F401
    except Exception:
        return False
    return True


def version() -> str:
    import flwr

    return str(getattr(flwr, "__version__", "?"))


@dataclass
class FlowerRound:
    """Per-stage compute seconds (clients summed, server), bytes, and the result."""

    stage_s: dict[str, float] = field(default_factory=dict)
    client_bytes: dict[int, int] = field(default_factory=dict)
    mean: np.ndarray | None = None
    #: the round halted as ``SecAggPlusWorkflow`` would (too few active neighbours)
    failed: bool = False

    @property
    def total_s(self) -> float:
        return sum(self.stage_s.values())

    @property
    def unmask_s(self) -> float:
        """The unmask stage: clients answering with shares + the server removing masks."""
        return self.stage_s.get("client_unmask", 0.0) + self.stage_s.get("server_unmask", 0.0)


def run_round(updates: list[np.ndarray], dropped: set[int], *, num_shares: int,
              threshold: int, clipping_range: float, quantization_range: int,
              modulus_range: int = 1 << 32, max_weight: float = 1.0) -> FlowerRound:
    """One SecAgg+ round over ``updates`` (client node ids ``1..N``); clients in
    ``dropped`` vanish after share_keys, before sending their masked input.

    Like ``SecAggPlusWorkflow``, the server halts after the masked-input stage
    if some client has fewer than ``threshold`` active nodes among its
    neighbourhood (itself included); the round is then returned with
    ``failed=True`` and the time spent so far."""
    from flwr.app import ConfigRecord
    from flwr.common import bytes_to_ndarray, ndarrays_to_parameters
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
    from flwr.common.secure_aggregation.ndarrays_arithmetic import (
        factor_extract,
        get_parameters_shape,
        parameters_addition,
        parameters_mod,
        parameters_subtraction,
    )
    from flwr.common.secure_aggregation.quantization import dequantize
    from flwr.common.secure_aggregation.secaggplus_constants import Key
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
    from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key

    # (the package re-exports a function of the same name, so import the module itself)
    mod = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
    n = len(updates)
    out = FlowerRound()
    nids = list(range(1, n + 1))
    out.client_bytes = {nid: 0 for nid in nids}
    # the client's fit result, built outside the timed region (training produces it)
    params = {nid: ndarrays_to_parameters([updates[nid - 1]]) for nid in nids}
    states = {nid: mod.SecAggPlusState() for nid in nids}

    def tick(name: str, t0: float) -> None:
        out.stage_s[name] = out.stage_s.get(name, 0.0) + time.perf_counter() - t0

    # ---- setup: server config + neighbour ring; clients generate key pairs
    t0 = time.perf_counter()
    setup_cfg = {Key.SAMPLE_NUMBER: n, Key.SHARE_NUMBER: num_shares, Key.THRESHOLD: threshold,
                 Key.CLIPPING_RANGE: float(clipping_range), Key.TARGET_RANGE: quantization_range,
                 Key.MOD_RANGE: modulus_range, Key.MAX_WEIGHT: float(max_weight)}
    sampled = list(nids)
    random.shuffle(sampled)
    half = num_shares >> 1
    nid_to_neighbours = {nid: {sampled[(idx + off) % n] for off in range(-half, half + 1)}
                         for idx, nid in enumerate(sampled)}
    tick("server_setup", t0)
    publickeys: dict[int, list[bytes]] = {}
    for nid in nids:
        t0 = time.perf_counter()
        states[nid].nid = nid
        res = mod._setup(states[nid], ConfigRecord(dict(setup_cfg)))
        tick("client_setup", t0)
        publickeys[nid] = [res[Key.PUBLIC_KEY_1], res[Key.PUBLIC_KEY_2]]
        out.client_bytes[nid] += len(publickeys[nid][0]) + len(publickeys[nid][1])
    active = set(nids)

    # ---- share keys: clients share rd_seed and sk1, encrypt to neighbours
    fwd_c: dict[int, list[bytes]] = {nid: [] for nid in active}
    fwd_s: dict[int, list[int]] = {nid: [] for nid in active}
    for nid in nids:
        t0 = time.perf_counter()
        cfg = ConfigRecord({str(v): publickeys[v] for v in nid_to_neighbours[nid] & active})
        res = mod._share_keys(states[nid], cfg)
        tick("client_share_keys", t0)
        dsts, ctxts = res[Key.DESTINATION_LIST], res[Key.CIPHERTEXT_LIST]
        out.client_bytes[nid] += sum(len(c) for c in ctxts) + 8 * len(dsts)
        t0 = time.perf_counter()
        for dst, c in zip(dsts, ctxts, strict=True):
            if dst in fwd_c:
                fwd_c[dst].append(c)
                fwd_s[dst].append(nid)
        tick("server_share_keys", t0)

    # ---- collect masked vectors: survivors mask and upload; the server sums
    survivors = [nid for nid in nids if nid not in dropped]
    masked_vector = None
    for nid in survivors:
        t0 = time.perf_counter()
        cfg = ConfigRecord({Key.CIPHERTEXT_LIST: fwd_c[nid], Key.SOURCE_LIST: fwd_s[nid]})
        res = mod._collect_masked_vectors(states[nid], cfg, 1, params[nid])
        tick("client_masked_input", t0)
        blobs = res[Key.MASKED_PARAMETERS]
        out.client_bytes[nid] += sum(len(b) for b in blobs)
        t0 = time.perf_counter()
        vec = [bytes_to_ndarray(b) for b in blobs]
        masked_vector = vec if masked_vector is None else parameters_addition(masked_vector, vec)
        tick("server_masked_input", t0)
        del res, blobs, vec
    t0 = time.perf_counter()
    assert masked_vector is not None
    masked_vector = parameters_mod(masked_vector, modulus_range)
    tick("server_masked_input", t0)
    active_nids = set(survivors)
    dead_nids = set(nids) - active_nids
    t0 = time.perf_counter()  # the workflow's _check_threshold
    halted = any(len(nid_to_neighbours[nid] & active_nids) < threshold for nid in nids)
    tick("server_masked_input", t0)
    if halted:
        out.failed = True
        return out

    # ---- unmask: survivors reveal shares; the server rebuilds and removes masks
    collected: dict[int, list[bytes]] = {nid: [] for nid in nids}
    for nid in survivors:
        t0 = time.perf_counter()
        nb = nid_to_neighbours[nid]
        cfg = ConfigRecord({Key.ACTIVE_NODE_ID_LIST: list(nb & active_nids),
                            Key.DEAD_NODE_ID_LIST: list(nb & dead_nids)})
        res = mod._unmask(states[nid], cfg)
        tick("client_unmask", t0)
        ids, shares = res[Key.NODE_ID_LIST], res[Key.SHARE_LIST]
        out.client_bytes[nid] += sum(len(s) for s in shares) + 8 * len(ids)
        t0 = time.perf_counter()
        for owner, share in zip(ids, shares, strict=True):
            collected[owner].append(share)
        tick("server_unmask", t0)
    t0 = time.perf_counter()
    for nid, share_list in collected.items():
        if len(share_list) < threshold:  # (unreachable after the check above)
            out.failed = True
            tick("server_unmask", t0)
            return out
        secret = combine_shares(share_list)
        if nid in active_nids:
            private_mask = pseudo_rand_gen(secret, modulus_range,
                                           get_parameters_shape(masked_vector))
            masked_vector = parameters_subtraction(masked_vector, private_mask)
        else:
            neighbours = nid_to_neighbours[nid]
            neighbours.remove(nid)
            for other in neighbours:
                shared_key = generate_shared_key(bytes_to_private_key(secret),
                                                 bytes_to_public_key(publickeys[other][0]))
                pairwise_mask = pseudo_rand_gen(shared_key, modulus_range,
                                                get_parameters_shape(masked_vector))
                if nid > other:
                    masked_vector = parameters_addition(masked_vector, pairwise_mask)
                else:
                    masked_vector = parameters_subtraction(masked_vector, pairwise_mask)
    recon = parameters_mod(masked_vector, modulus_range)
    q_total_ratio, recon = factor_extract(recon)
    inv_dq_total_ratio = quantization_range / q_total_ratio
    agg = dequantize(recon, clipping_range, quantization_range)
    offset = -(len(active_nids) - 1) * clipping_range
    for vec in agg:
        vec += offset
        vec *= inv_dq_total_ratio
    tick("server_unmask", t0)
    out.mean = agg[0]
    return out


def bytes_per_survivor(rnd: FlowerRound, dropped: set[int]) -> float:
    """Mean estimated upload of a client that completed the round."""
    vals = [b for nid, b in rnd.client_bytes.items() if nid not in dropped]
    return float(np.mean(vals)) if vals else 0.0

