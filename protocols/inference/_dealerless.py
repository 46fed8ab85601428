"""Two-party inference without a dealer: the compute parties make the correlations together.

The online protocol is :mod:`.mpc2`'s (masked wires, local GEMMs, SecureML truncation);
what changes is where the correlations come from and how a ReLU runs.

**Masks.**  Each compute party ``b`` draws its own shares ``R_b`` (the input mask of
every linear layer) and ``B_b`` (the weight mask) from seeds; it hands the model owner
the seeds of ``B_b`` and the data owner the seed of the first ``R_b``, who add the two
contributions (as they would add a dealer's two seeds).  The product share needs the
cross terms: ``R B = R_0 B_0 + R_1 B_1 + R_0 B_1 + R_1 B_0``; each cross term is
Gilboa's product by correlated OT (:func:`mpcai.sharing.ot.cot_send`): the party with
``B`` chooses with its 64 bits per entry, the party with ``R`` sends the correction
words of ``R``'s columns.  Bytes: about ``5.4 * 64 * batch * d_in * d_out`` per
direction and linear layer (the price of not having a dealer: a dealer sends a seed).

**The model owner computes** (``Roles.model_owner_computes``: the usual client-server
case, e.g. the data owner is party 0 and the model owner party 1): no weight mask at
all.  The owner's compute role holds ``W`` itself and adds ``X_hat W - R_own W``; the
only cross term is ``R_other W``, one Gilboa product in which the owner chooses with
the ``k`` two's complement bits of its fixed-point weights (``k`` = the bits of the
largest weight of the layer, e.g. 16 at 12 fractional bits for weights below 8).
``k`` per layer is **revealed** to the other compute party (it is announced, and the
message sizes depend on it, also for an eavesdropper of the encrypted link): the bit
length of each layer's largest fixed-point weight.  The failure bound does not imply
it (two models with the same bound can announce different ``k``).
Bytes: about ``8 k * batch * d_in * d_out`` from the other party
(the correction words for the low bits need the full 64 bits), 64/k times fewer
OTs and no second direction: 30.7 MB and 4.6 MB for the digits MLP at batch 100,
against 88 MB each way in the general case.

**ReLU** (no FSS keys: those need a dealer).  With ``|y| < 2^L`` (``L`` from the
truncation bound every party knows: ``max_failure`` caps the hidden values' bits),
``y >= 0`` is bit ``L`` of ``y + 2^L`` modulo ``2^(L + 1)``; modulo ``2^(L+1)`` the
shares reduce locally, and that bit is the XOR of the shares' bit ``L`` and the carry
out of their low ``L`` bits, ``[a > b]`` with ``a`` party 0's low bits and ``b = 2^L -
1 -`` party 1's: a millionaires' comparison, a tree of AND gates on XOR shares (the
leaves ``a_j & ~b_j``, then ``g = g_hi ^ (e_hi & g_lo)``, ``e = e_hi & e_lo``):
``1 + ceil(log2 L)`` rounds, about ``3 L`` AND triples per element, made from random
OTs (:func:`mpcai.sharing.ot.and_triples`).  The ReLU is then ``d * y`` by two OTs per
element (a multiplexer: each party's share of ``d y_b`` from the other's choice bit),
two more rounds.

**Offline flights** (between the compute parties): the OT set-up (2), the extension
messages of every batch (1), the correlated-OT correction words (1).

Security: semi-honest, as the rest of :mod:`.mpc2` (the threat model of the package,
with "the dealer" removed: the two compute parties do not collude).  OT security rests
on the hardness of discrete logarithms in Ed25519 (the base OTs) and on ChaCha20 as a
correlation-robust hash (the extension).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mpcai import prg
from mpcai.errors import InvalidInput, MisbehaviourDetected
from mpcai.runtime import Party
from mpcai.sharing import beaver, ot

from .compare import XorGates, comparison_ands, packed, sign_bits, unpacked
from .mpc2 import Correlations, InferenceConfig, ModelSpec, ReluGate, Roles

__all__ = ["DealerlessCorrelations", "comparison_ands"]

_TAG = "inf2/dl"


def relu_bits(cfg: InferenceConfig, width: int) -> int:
    """``L`` with ``|y| < 2^L`` for every hidden value ``y`` (scale ``frac_bits``) of a
    layer of ``width`` outputs whose truncation meets ``max_failure``: the model
    owner's layer bits ``v`` satisfy ``|z| < 2^(v - 1)`` at scale ``2 frac_bits`` and
    ``v <= value_bits_bound(max_failure, width)``."""
    v = beaver.value_bits_bound(cfg.max_failure, width)
    return max(1, min(61, v - cfg.frac_bits))


class _BitRelu(ReluGate):
    """One hidden layer's ReLU from AND triples and multiplexer OTs."""

    def __init__(self, party: Party, other: int, me: int, tag: str, shape: tuple[int, int],
                 bits: int, triples: ot.AndTriples, mux_sent: tuple[np.ndarray, np.ndarray],
                 mux_choice: np.ndarray, mux_recv: np.ndarray) -> None:
        self._gates = XorGates(party, other, me, tag, triples)
        self._shape, self._bits = shape, bits
        self._mux_sent, self._mux_choice, self._mux_recv = mux_sent, mux_choice, mux_recv

    async def _swap(self, tag: str, obj: Any) -> Any:
        return await self._gates.swap(tag, obj)

    async def apply(self, y: np.ndarray) -> np.ndarray:
        if y.shape != self._shape:
            raise InvalidInput(f"ReLU input of shape {y.shape}, the gate is for {self._shape}")
        d = await sign_bits(self._gates, y.reshape(-1), self._bits)  # XOR share of [y >= 0]
        if self._gates.remaining != 0:
            raise InvalidInput("the ReLU gate's AND triples do not match its comparison")
        return (await self._mux(d, y.reshape(-1))).reshape(self._shape)

    async def _mux(self, d: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Shares of ``d * y`` (``d`` XOR-shared, ``y`` additively): two rounds."""
        n = d.size
        e_peer = unpacked(await self._swap("mux-e", packed(d ^ self._mux_choice)), n,
                           "multiplexer choice")
        m0, m1 = self._mux_sent
        r = prg.random_ring(n)
        msg0 = -r + np.where(d == 1, y, np.uint64(0))  # choice v = 0: (d_me ^ 0) * y_me
        msg1 = -r + np.where(d == 0, y, np.uint64(0))  # choice v = 1: (d_me ^ 1) * y_me
        pad0 = np.where(e_peer == 1, m1, m0)  # m_{0 ^ e}
        pad1 = np.where(e_peer == 1, m0, m1)  # m_{1 ^ e}
        got = await self._swap("mux-u", np.stack([msg0 + pad0, msg1 + pad1]))
        if not isinstance(got, np.ndarray) or got.dtype != np.uint64 or got.shape != (2, n):
            raise MisbehaviourDetected("multiplexer: a (2, n) uint64 array expected")
        x = np.where(d == 1, got[1], got[0]) - self._mux_recv
        return r + x


class DealerlessCorrelations(Correlations):
    """Correlations the two compute parties make together, by oblivious transfer."""

    def __init__(self, party: Party, roles: Roles, spec: ModelSpec, batch: int, *,
                 cfg: InferenceConfig) -> None:
        self._party, self._roles, self._spec, self._batch, self._cfg = (
            party, roles, spec, batch, cfg)
        self._me = roles.compute.index(party.id)
        self._other = roles.compute[1 - self._me]
        n = spec.n_linear
        # the model owner computes: no weight mask, its weights' bits choose the OTs
        self._owner = (roles.compute.index(roles.model_owner)
                       if roles.model_owner_computes else None)
        if self._owner is not None:
            self.public_party = self._owner
        self._w: list[np.ndarray] | None = None
        self._b_seeds = [] if self._owner is not None else [prg.new_seed() for _ in range(n)]
        self._x_seed = prg.new_seed()
        dims = spec.dims
        self._r = [
            prg.ring_vector(prg.derive_seed(self._x_seed, "x-mask"), batch * dims[0]).reshape(
                batch, dims[0])
            if i == 0 else prg.random_ring(batch * dims[i]).reshape(batch, dims[i])
            for i in range(n)
        ]
        self._b = [
            prg.ring_vector(prg.derive_seed(s, f"w-mask/{i}"), dims[i] * dims[i + 1]).reshape(
                dims[i], dims[i + 1])
            for i, s in enumerate(self._b_seeds)
        ] if self._owner is None else [
            np.zeros((dims[i], dims[i + 1]), dtype=np.uint64) for i in range(n)
        ]
        self._rb: list[np.ndarray] = []
        self._gates: list[_BitRelu] = []
        #: bytes this party sent in the offline phase, and its seconds per step
        self.offline_bytes = 0

    def mask_seeds(self) -> tuple[list[bytes], bytes]:
        return list(self._b_seeds), self._x_seed

    def set_weights(self, w_hat: list[np.ndarray]) -> None:
        if self._owner == self._me:
            self._w = list(w_hat)

    async def _swap(self, tag: str, obj: Any) -> Any:
        await self._party.send(self._other, f"{_TAG}/{tag}", obj)
        return await self._party.recv(self._other, f"{_TAG}/{tag}")

    async def fetch(self) -> None:
        spec, batch, dims, cfg = self._spec, self._batch, self._spec.dims, self._cfg
        sent0 = self._party.stats.bytes_sent
        session = ot.OTSession()
        session.finish(await self._swap("answer", session.answer(await self._swap(
            "hello", session.hello()))))
        n = spec.n_linear
        # the batches this party chooses in, in order: the mask products, AND triples, mux
        relu_shapes = [(batch, dims[i + 1]) for i in range(n - 1)]
        relu_l = [relu_bits(cfg, dims[i + 1]) for i in range(n - 1)]
        n_and = sum(
            math.prod(sh) * comparison_ands(b)[0]
            for sh, b in zip(relu_shapes, relu_l, strict=True)
        )
        n_mux = sum(math.prod(sh) for sh in relu_shapes)
        and_choice = np.unpackbits(np.frombuffer(prg.ring_vector(prg.new_seed(), (n_and + 63)
                                                 // 64).tobytes(), dtype=np.uint8),
                                   bitorder="little", count=n_and)
        mux_choice = np.unpackbits(np.frombuffer(prg.ring_vector(prg.new_seed(), (n_mux + 63)
                                                 // 64).tobytes(), dtype=np.uint8),
                                   bitorder="little", count=n_mux)
        # the mask products: each party chooses with its B_i's 64 bits (general case),
        # or only the model owner, with its weights' bits (it computes; no B)
        if self._owner is None:
            my_bits: list[int] = [64] * n
            my_mats = self._b
        elif self._owner == self._me:
            assert self._w is not None, "set_weights() comes before fetch()"
            my_bits = [ot.signed_bits(w) for w in self._w]
            my_mats = self._w
        else:
            my_bits, my_mats = [], []
        chosen: list[tuple[np.ndarray, int]] = [
            (ot.gilboa_choices(my_mats[i], my_bits[i]), ot.cot_blocks(batch))
            for i in range(len(my_bits))
        ]
        chosen += [(and_choice, 1), (mux_choice, 1)]
        msgs, outs = [], []
        for choices, blocks in chosen:
            msg, out = session.receive(choices, blocks)
            msgs.append(msg)
            outs.append(out)
        peer = await self._swap("extend", {"u": msgs, "bits": my_bits})
        if not isinstance(peer, dict) or set(peer) != {"u", "bits"}:
            raise MisbehaviourDetected("OT extension: malformed message from the peer")
        peer_bits = peer["bits"]
        want = n if self._owner is None or self._owner != self._me else 0
        if (not isinstance(peer_bits, list) or len(peer_bits) != want
                or not all(type(k) is int and 1 <= k <= 64 for k in peer_bits)
                or (self._owner is None and any(k != 64 for k in peer_bits))):
            raise MisbehaviourDetected("OT extension: the peer's bit counts are malformed")
        batches = [(dims[i] * dims[i + 1] * k, ot.cot_blocks(batch))
                   for i, k in enumerate(peer_bits)]
        batches += [(n_and, 1), (n_mux, 1)]
        if not isinstance(peer["u"], list) or len(peer["u"]) != len(batches):
            raise MisbehaviourDetected("OT extension: malformed message from the peer")
        sent = [session.send(count, u, blocks)
                for (count, blocks), u in zip(batches, peer["u"], strict=True)]
        # Gilboa: my R_i times the peer's matrix (I send), the peer's R_i times mine
        words, mine = [], []
        for i, k in enumerate(peer_bits):
            w, share = ot.cot_send(self._r[i], dims[i + 1], *sent[i], bits=k)
            words.append(w)
            mine.append(share)
        peer_words = await self._swap("cot", words)
        if not isinstance(peer_words, list) or len(peer_words) != len(my_bits):
            raise MisbehaviourDetected("correlated OT: malformed message from the peer")
        theirs = [ot.cot_receive(my_mats[i], batch, outs[i], peer_words[i], my_bits[i])
                  for i in range(len(my_bits))]
        for i in range(n):
            if self._owner is None:
                self._rb.append(beaver.ring_matmul(self._r[i], self._b[i]) + mine[i]
                                + theirs[i])
            else:  # rb = -(my share of R_other @ W): the owner adds X_hat W - R_own W
                self._rb.append(-(theirs[i] if self._owner == self._me else mine[i]))
        # the AND triples and the multiplexer OTs: the last two batches each way
        triples = ot.and_triples(sent[-2], outs[-2], and_choice)
        mux_sent = tuple(v.view(np.uint64)[:, 0] for v in sent[-1])
        mux_recv = outs[-1].view(np.uint64)[:, 0]
        a0 = m0 = 0
        for i, (shape, bits) in enumerate(zip(relu_shapes, relu_l, strict=True)):
            count = math.prod(shape)
            k = count * comparison_ands(bits)[0]
            part = ot.AndTriples(triples.a[a0:a0 + k], triples.b[a0:a0 + k],
                                 triples.c[a0:a0 + k])
            self._gates.append(_BitRelu(
                self._party, self._other, self._me, f"{_TAG}/relu{i}", shape, bits, part,
                (mux_sent[0][m0:m0 + count], mux_sent[1][m0:m0 + count]),
                mux_choice[m0:m0 + count], mux_recv[m0:m0 + count]))
            a0 += k
            m0 += count
        self.offline_bytes = self._party.stats.bytes_sent - sent0

    def _linear(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._r[i], self._rb[i], self._b[i]

    def _relu(self, i: int) -> _BitRelu:
        return self._gates[i]
