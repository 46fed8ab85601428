"""A three-party replicated-sharing engine (ABY3-style, semi-honest, one corruption).

:class:`Rep3` runs the rounds of :mod:`mpcai.sharing.replicated` over a
:class:`~mpcai.runtime.Party`: three compute parties (``ids``, in the order of their
replicated-sharing indices 0, 1, 2) plus any number of input owners and output receivers,
which may be compute parties themselves or outside parties.

**Threat model.**  Semi-honest; at most one of the three compute parties is corrupted
(no two collude).  A compute party's view (its pair of components, its seeds and every
message it receives) is independent of the secrets; an owner outside the three learns
only what is opened to it.  Nothing is checked beyond message shapes: a cheating party
can change the result unnoticed (malicious security would need ABY3's consistency checks).

**Costs** (per element, ``n`` elements; one "element" is 8 bytes; per party):

============  ======  ===========================================================
operation     rounds  sent by each compute party
============  ======  ===========================================================
setup         1       one 32-byte seed (party i's ``k_i`` to party i - 1)
input         1       owner inside: 1 element to one party; outside: 2 elements +
                      4 seeds in all, from the owner only
mul / matmul  2       1 element per output (truncation built in, Pi_trunc1)
mul, no trunc 1       1 element per output (reshare)
msb / drelu   10      8 bytes (v-share) / 3 + 181 AND bits + 32 bytes (bit injection
                      by 3-party OT) / 3: about 36 bytes; the asymmetric steps are
                      rotated over three chunks of the elements, so every party plays
                      each replicated index for a third of them
relu          11      drelu, then one multiplication without truncation: ~44 bytes
square        2       as mul: 1 element per output
argmax        11/lvl  ceil(log2 k) levels of a batched drelu and one multiplication
                      (no truncation); k = 10: 44 rounds, 9 comparisons + 34
                      elements per row (~600 bytes)
sigmoid       18      2 comparisons + 5 elements (~112 bytes); degree-7 polynomial
exp           16      8 elements (8 squarings)
open_to       1       inside owner: 1 element from one party; outside: 1 element
                      from each of two parties
============  ======  ===========================================================

Tags are ``rep3/<step>`` for the compute parties' steps (every compute party runs the
same program, so their step counters agree) and ``rep3/in/<owner>/<k>`` /
``rep3/out/<owner>/<k>`` for inputs and outputs, counted per owner by everyone taking
part in them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mpcai import prg
from mpcai.errors import InvalidInput, InvalidType, MisbehaviourDetected
from mpcai.runtime import Party
from mpcai.sharing import additive
from mpcai.sharing import replicated as rep
from mpcai.validation import check_int

__all__ = ["SIGMOID_COEFFS", "Rep3"]

Layer = tuple[rep.RepShare, rep.RepShare | None]


def _shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (check_int(shape, "shape", lo=0),)
    if not isinstance(shape, (tuple, list)):
        raise InvalidType(f"shape must be an int or a tuple of ints, not {type(shape).__name__}")
    return tuple(check_int(d, "shape", lo=0) for d in shape)


def _expect(obj: object, shape: tuple[int, ...], frm: int, what: str) -> np.ndarray:
    """A received ring array of the agreed shape, or a typed error naming the sender."""
    if (
        not isinstance(obj, np.ndarray)
        or obj.dtype not in (np.uint64, np.int64)
        or obj.shape != shape
    ):
        got = f"{obj.dtype} {obj.shape}" if isinstance(obj, np.ndarray) else type(obj).__name__
        raise MisbehaviourDetected(
            f"party {frm} sent {got} as {what}, expected uint64 {shape}", [frm]
        )
    return obj.view(np.uint64)


def _expect_seed(obj: object, frm: int) -> bytes:
    if not isinstance(obj, bytes) or len(obj) != prg.SEED_BYTES:
        raise MisbehaviourDetected(f"party {frm} sent no valid seed", [frm])
    return obj


class Rep3:
    """One participant of a three-party replicated-sharing computation.

    ``ids``: the party ids of the compute parties with replicated indices 0, 1, 2.
    ``frac_bits``: fixed-point fractional bits (products are truncated by that many).
    Compute parties call :meth:`setup` first, then the same sequence of operations; an
    outside owner only calls :meth:`input` / :meth:`open_to` for its own data.
    """

    def __init__(
        self, party: Party, ids: Sequence[int] = (0, 1, 2), *, frac_bits: int = 12
    ) -> None:
        if not isinstance(party, Party):
            raise InvalidType(f"party must be a Party, not {type(party).__name__}")
        ids_t = tuple(check_int(p, "ids", lo=0) for p in ids)
        if len(ids_t) != 3 or len(set(ids_t)) != 3:
            raise InvalidInput(f"ids must name three distinct parties, got {ids_t}")
        known = set(party.peers) | {party.id}
        if not set(ids_t) <= known:
            raise InvalidInput(f"compute parties {sorted(set(ids_t) - known)} are not connected")
        self.party = party
        self.ids = ids_t
        self.frac_bits = check_int(frac_bits, "frac_bits", lo=0, hi=30)
        self.index: int | None = ids_t.index(party.id) if party.id in ids_t else None
        self._zero: rep.ZeroSharer | None = None
        self._step = 0
        self._io: dict[tuple[str, int], int] = {}

    # ---- bookkeeping ----------------------------------------------------------------

    def _me(self) -> tuple[int, rep.ZeroSharer]:
        if self.index is None:
            raise InvalidInput(f"party {self.party.id} is not a compute party {self.ids}")
        if self._zero is None:
            raise InvalidInput("call setup() before computing")
        return self.index, self._zero

    def _pid(self, i: int) -> int:
        return self.ids[i % 3]

    def _tag(self) -> str:
        self._step += 1
        return f"rep3/{self._step}"

    def _io_tag(self, kind: str, owner: int) -> str:
        n = self._io.get((kind, owner), 0)
        self._io[(kind, owner)] = n + 1
        return f"rep3/{kind}/{owner}/{n}"

    def _check_owner(self, owner: object) -> int:
        owner = check_int(owner, "owner", lo=0)
        if owner != self.party.id and owner not in self.party.peers:
            raise InvalidInput(f"party {owner} is not in this session")
        return owner

    # ---- setup ------------------------------------------------------------------------

    async def setup(self) -> None:
        """Pairwise seeds: party i draws ``k_i`` and sends it to party i - 1 (1 round)."""
        if self.index is None:
            raise InvalidInput(f"party {self.party.id} is not a compute party {self.ids}")
        if self._zero is not None:
            raise InvalidInput("setup() was already run")
        i = self.index
        tag = self._tag()
        own = prg.new_seed()
        await self.party.send(self._pid(i - 1), tag, own)
        nxt = _expect_seed(await self.party.recv(self._pid(i + 1), tag), self._pid(i + 1))
        self._zero = rep.ZeroSharer(i, own, nxt, context=self.party.session)

    # ---- input and output -----------------------------------------------------------

    async def input(
        self, owner: int, x: np.ndarray | None = None, *, shape: object = None
    ) -> rep.RepShare | None:
        """Secret-share ``owner``'s ``x`` (uint64, e.g. :func:`mpcai.encoding.encode_fixed`)
        among the compute parties; every other participant passes ``shape``.

        An owner inside the three (index j) sends one array: ``x_j`` is common randomness
        of parties j and j - 1, ``x_{j+2} = 0`` and ``x_{j+1} = x - x_j`` goes to party
        j + 1.  An outside owner sends two seeds to party 0, a seed and ``x_2`` to
        parties 1 and 2.  Returns the compute party's share (``None`` for an outside
        owner)."""
        owner = self._check_owner(owner)
        me = self.party.id
        if me == owner:
            if not isinstance(x, np.ndarray) or x.dtype not in (np.uint64, np.int64):
                raise InvalidType("the owner's x must be a uint64 (or int64) array")
            x = x.view(np.uint64)
            shp = x.shape
        else:
            if shape is None:
                raise InvalidInput("parties other than the owner must pass the input's shape")
            shp = _shape(shape)
        tag = self._io_tag("in", owner)
        if owner not in self.ids:
            if me == owner:
                assert x is not None
                s0, s1 = prg.new_seed(), prg.new_seed()
                x2 = x - additive.expand_seeded(s0, shp) - additive.expand_seeded(s1, shp)
                await self.party.send_many(
                    tag, {self.ids[0]: (s0, s1), self.ids[1]: (s1, x2), self.ids[2]: (x2, s0)}
                )
                return None
            i, _ = self._me()
            msg = await self.party.recv(owner, tag)
            if not isinstance(msg, tuple) or len(msg) != 2:
                raise MisbehaviourDetected(f"party {owner} sent a malformed input", [owner])
            if i == 0:
                a = additive.expand_seeded(_expect_seed(msg[0], owner), shp)
                b = additive.expand_seeded(_expect_seed(msg[1], owner), shp)
            elif i == 1:
                a = additive.expand_seeded(_expect_seed(msg[0], owner), shp)
                b = _expect(msg[1], shp, owner, "an input share")
            else:
                a = _expect(msg[0], shp, owner, "an input share")
                b = additive.expand_seeded(_expect_seed(msg[1], owner), shp)
            return rep.RepShare(i, a, b)
        i, zero = self._me()
        j = self.ids.index(owner)
        rel = (i - j) % 3
        zeros = np.zeros(shp, dtype=np.uint64)
        if rel == 0:
            assert x is not None
            xj = zero.common_prev(shp)
            xj1 = x - xj
            await self.party.send(self._pid(j + 1), tag, xj1)
            return rep.RepShare(i, xj, xj1)
        if rel == 1:
            xj1 = _expect(await self.party.recv(owner, tag), shp, owner, "an input share")
            return rep.RepShare(i, xj1, zeros)
        return rep.RepShare(i, zeros, zero.common_next(shp))

    async def open_to(self, owner: int, x: rep.RepShare | None = None) -> np.ndarray | None:
        """Reveal ``x`` to ``owner`` only (1 round); the owner gets the ``uint64`` array,
        everyone else ``None``.  Compute parties pass their share; an outside owner
        passes nothing."""
        owner = self._check_owner(owner)
        tag = self._io_tag("out", owner)
        me = self.party.id
        if owner not in self.ids:
            if me == owner:
                got = await self.party.gather(tag, [self.ids[0], self.ids[1]])
                u = _as_u64(got[self.ids[0]], self.ids[0])
                return u + _expect(got[self.ids[1]], u.shape, self.ids[1], "an output share")
            i, _ = self._me()
            x = _share_of(x, i)
            if i == 0:
                await self.party.send(owner, tag, x.a + x.b)
            elif i == 1:
                await self.party.send(owner, tag, x.b)
            return None
        i, _ = self._me()
        x = _share_of(x, i)
        j = self.ids.index(owner)
        if i == j:
            missing = _expect(
                await self.party.recv(self._pid(j + 1), tag),
                x.shape,
                self._pid(j + 1),
                "an output share",
            )
            return x.a + x.b + missing
        if (i - j) % 3 == 1:
            await self.party.send(owner, tag, x.b)
        return None

    async def reveal(self, x: rep.RepShare) -> np.ndarray:
        """Open ``x`` to all three compute parties (1 round: party i sends ``x_{i+1}`` to
        party i - 1)."""
        i, _ = self._me()
        x = _share_of(x, i)
        tag = self._tag()
        await self.party.send(self._pid(i - 1), tag, x.b)
        got = _expect(
            await self.party.recv(self._pid(i + 1), tag),
            x.shape,
            self._pid(i + 1),
            "a share to reveal",
        )
        return x.a + x.b + got

    # ---- multiplication -----------------------------------------------------------------

    async def _reshare(self, z: np.ndarray, boolean: bool = False) -> rep.RepShare | rep.BinShare:
        i, _ = self._me()
        tag = self._tag()
        await self.party.send(self._pid(i - 1), tag, z)
        nxt = _expect(
            await self.party.recv(self._pid(i + 1), tag), z.shape, self._pid(i + 1), "a reshare"
        )
        return rep.from_xor(i, z, nxt) if boolean else rep.from_additive(i, z, nxt)

    async def _truncate(self, z: np.ndarray, bits: int | None = None) -> rep.RepShare:
        """Pi_trunc1: the additive product ``z`` (scale 2f) to a replicated share of
        ``z / 2^f`` in two rounds (``z / 2^bits`` if ``bits`` is given)."""
        i, zero = self._me()
        f, shp = self.frac_bits if bits is None else bits, z.shape
        tag1, tag2 = self._tag(), self._tag()
        if i == 0:
            y0 = rep.trunc_p0_round1(z, f)
            await self.party.send(self._pid(2), tag1, y0)
            y1 = _expect(await self.party.recv(self._pid(1), tag2), shp, self._pid(1), "y_1")
            return rep.trunc_p0_finish(y0, y1)
        if i == 1:
            z2 = _expect(await self.party.recv(self._pid(2), tag1), shp, self._pid(2), "z_2")
            y1, share = rep.trunc_p1_round2(z, z2, zero.common_next(shp), f)
            await self.party.send(self._pid(0), tag2, y1)
            return share
        await self.party.send(self._pid(1), tag1, z)
        r = zero.common_prev(shp)
        y0 = _expect(await self.party.recv(self._pid(0), tag1), shp, self._pid(0), "y_0")
        return rep.trunc_p2_finish(r, y0)

    async def mul(self, x: rep.RepShare, y: rep.RepShare, *, truncate: bool = True) -> rep.RepShare:
        """Element-wise ``x * y`` (broadcasting); fixed-point truncated by ``frac_bits``
        unless ``truncate=False`` (2 rounds, or 1 without truncation)."""
        i, zero = self._me()
        z = rep.mul_local(_share_of(x, i), _share_of(y, i), zero)
        if truncate:
            return await self._truncate(z)
        out = await self._reshare(z)
        assert isinstance(out, rep.RepShare)
        return out

    async def matmul(
        self, x: rep.RepShare, w: rep.RepShare, *, truncate: bool = True
    ) -> rep.RepShare:
        """The matrix product ``x @ w`` over Z_2^64, truncated by ``frac_bits`` unless
        ``truncate=False`` (2 rounds, 1 element per output and party)."""
        i, zero = self._me()
        z = rep.matmul_local(_share_of(x, i), _share_of(w, i), zero)
        if truncate:
            return await self._truncate(z)
        out = await self._reshare(z)
        assert isinstance(out, rep.RepShare)
        return out

    async def square(self, x: rep.RepShare, *, truncate: bool = True) -> rep.RepShare:
        """Element-wise ``x * x``, fixed-point truncated by ``frac_bits`` unless
        ``truncate=False``: the cost of :meth:`mul` (2 rounds, or 1; 1 element per output
        and party), with the cheaper local product ``x_i^2 + 2 x_i x_{i+1}``."""
        i, zero = self._me()
        z = _square_local(_share_of(x, i), zero)
        if truncate:
            return await self._truncate(z)
        out = await self._reshare(z)
        assert isinstance(out, rep.RepShare)
        return out

    async def and_(self, x: rep.BinShare, y: rep.BinShare) -> rep.BinShare:
        """Bitwise ``x & y`` of XOR-shared words (1 round)."""
        _, zero = self._me()
        out = await self._reshare(rep.and_local(x, y, zero), boolean=True)
        assert isinstance(out, rep.BinShare)
        return out

    # ---- comparison -------------------------------------------------------------------

    def _chunks(self, n: int) -> list[slice]:
        """Three element ranges (multiples of 64 but the last), one per rotation."""
        per = -(-n // 3)
        c = -(-per // 64) * 64
        return [slice(min(k * c, n), min((k + 1) * c, n)) for k in range(3)]

    async def msb_bits(self, x: rep.RepShare) -> rep.BinShare:
        """XOR shares of the most significant bit of each element of ``x`` (flattened),
        in bit 0 of one word per element (8 rounds).

        The input round is asymmetric (replicated index 0 sends ``v_1`` to index 1), so
        the elements are cut in three and party i plays index ``i - s`` on chunk ``s``:
        each party sends one third of the ``v_1`` words."""
        i, zero = self._me()
        x = _share_of(x, i)
        n = x.a.size
        xa, xb = x.a.reshape(-1), x.b.reshape(-1)
        chunks = self._chunks(n)
        tag = self._tag()
        inputs: dict[int, tuple[rep.BinShare, rep.BinShare]] = {}

        def local(s: int, v1: np.ndarray | None = None) -> np.ndarray | None:
            r = (i - s) % 3
            xs = rep.RepShare(r, xa[chunks[s]], xb[chunks[s]])
            msg, vv, yy = rep.msb_inputs(r, xs, zero.as_role(r), v1)
            inputs[s] = (rep.BinShare(i, vv.a, vv.b), rep.BinShare(i, yy.a, yy.b))
            return msg

        for s in range(3):  # chunk order (index 1 draws nothing in this round)
            r = (i - s) % 3
            if r == 0:
                await self.party.send(self._pid(i + 1), f"{tag}/{s}", local(s))
            elif r == 2:
                local(s)
        s1 = (i - 1) % 3  # the chunk where this party is index 1
        width = -(-(chunks[s1].stop - chunks[s1].start) // 64)
        frm = self._pid(i - 1)
        local(s1, _expect(await self.party.recv(frm, f"{tag}/{s1}"), (64, width), frm, "v_1"))
        vv = _bcat_cols([inputs[s][0] for s in range(3)], i)
        yy = _bcat_cols([inputs[s][1] for s in range(3)], i)
        left, right = rep.carry_and_inputs(vv, yy)
        g = await self.and_(left, right)
        gg, pp, p63 = rep.carry_start(vv, yy, g)
        for _ in range(rep.CARRY_LEVELS):
            left, right = rep.carry_level_inputs(gg, pp)
            t = await self.and_(left, right)
            gg, pp = rep.carry_level_combine(gg, pp, t)
        bit = rep.msb_finish(gg, p63)
        parts_a, parts_b, col = [], [], 0
        for c in chunks:
            k = c.stop - c.start
            w = -(-k // 64)
            parts_a.append(rep.unbitslice(bit.a[:, col : col + w], k))
            parts_b.append(rep.unbitslice(bit.b[:, col : col + w], k))
            col += w
        return rep.BinShare(i, np.concatenate(parts_a), np.concatenate(parts_b))

    async def b2a(self, bit: rep.BinShare, *, flip: bool = False) -> rep.RepShare:
        """The bits in bit 0 of ``bit``'s words (flattened; their complement with
        ``flip``) as arithmetic shares: ABY3's three-party OT, then index 1 forwards
        ``d_2`` (2 rounds).  Rotated over three chunks like :meth:`msb_bits`, so each
        party sends (2 + 1 + 1) / 3 elements per bit on average."""
        i, zero = self._me()
        if not isinstance(bit, rep.BinShare) or bit.party != i:
            raise InvalidInput(f"b2a needs party {i}'s BinShare")
        ba, bb = bit.a.reshape(-1), bit.b.reshape(-1)
        chunks = self._chunks(ba.size)
        tag1, tag2 = self._tag(), self._tag()
        out: dict[int, rep.RepShare] = {}
        kept: dict[int, np.ndarray] = {}

        def chunk(s: int) -> tuple[int, rep.BinShare, rep.ZeroSharer]:
            r = (i - s) % 3
            return r, rep.BinShare(r, ba[chunks[s]], bb[chunks[s]]), zero.as_role(r)

        s1, s2 = (i - 1) % 3, (i - 2) % 3  # the chunks where this party is index 1, 2
        d1: np.ndarray | None = None
        for s in range(3):  # every party draws in chunk order, so the seeds stay in step
            r, b, z = chunk(s)
            if r == 0:
                msg, out[s] = rep.b2a_p0_round1(b, z, flip)
                await self.party.send(self._pid(i + 1), f"{tag1}/{s}", msg)
            elif r == 2:
                pad, kept[s] = rep.b2a_p2_round1(b, z)
                await self.party.send(self._pid(i - 1), f"{tag1}/{s}", pad)
            else:
                d1 = rep.b2a_p1_round1(b, z)
        assert d1 is not None
        _, b, _ = chunk(s1)
        k = b.shape
        frm0, frm2 = self._pid(i - 1), self._pid(i + 1)
        msg = _expect(await self.party.recv(frm0, f"{tag1}/{s1}"), (2, *k), frm0, "an OT message")
        pad = _expect(await self.party.recv(frm2, f"{tag1}/{s1}"), k, frm2, "an OT pad")
        d2, out[s1] = rep.b2a_p1_round2(b, d1, msg, pad)
        await self.party.send(self._pid(i + 1), f"{tag2}/{s1}", d2)
        frm1 = self._pid(i - 1)
        k2 = (chunks[s2].stop - chunks[s2].start,)
        d2 = _expect(await self.party.recv(frm1, f"{tag2}/{s2}"), k2, frm1, "d_2")
        out[s2] = rep.b2a_p2_finish(d2, kept[s2])
        return rep.RepShare(
            i,
            np.concatenate([out[s].a for s in range(3)]),
            np.concatenate([out[s].b for s in range(3)]),
        )

    async def drelu(self, x: rep.RepShare) -> rep.RepShare:
        """Arithmetic shares (integers 0/1, not fixed point) of ``[x >= 0]``, as signed
        two's complement (10 rounds)."""
        i, _ = self._me()
        x = _share_of(x, i)
        d = await self.b2a(await self.msb_bits(x), flip=True)
        return rep.RepShare(i, d.a.reshape(x.shape), d.b.reshape(x.shape))

    async def relu(self, x: rep.RepShare) -> rep.RepShare:
        """``max(x, 0)`` element-wise (11 rounds: :meth:`drelu`, then ``x * [x >= 0]``)."""
        return await self.mul(x, await self.drelu(x), truncate=False)

    # ---- argmax and nonlinear functions ----------------------------------------------

    async def argmax(self, x: rep.RepShare, *, index: bool = False) -> rep.RepShare:
        """The arg max of each row of ``x`` (shape ``(batch, k)``), as shares of the
        one-hot ``(batch, k)`` matrix of **integers** 0/1 (not fixed point), or with
        ``index=True`` of the ``(batch,)`` integer column indices.  Ties go to the lowest
        index, like :func:`numpy.argmax`; the result is exact (no truncation), for
        ``|x| < 2^62``.

        A tournament over the columns: ``ceil(log2 k)`` levels; in each, neighbouring
        candidates (left, right) are compared by one batched :meth:`drelu` of ``left -
        right`` (``1``: the left, lower-index one wins ties), then one batched
        multiplication without truncation by the bits gives the winners' values
        ``right + b (left - right)`` and one-hot vectors: a candidate's one-hot is kept
        over its block of original columns only, so the new block is ``(b e_left,
        e_right - b e_right)`` (on the first level the blocks are single columns whose
        one-hot is the public 1, so ``(b, 1 - b)`` is local).  An odd candidate passes
        through; the last level needs no values.  Rounds: ``11 ceil(log2 k)`` (44 for
        ``k = 10``; 10 for ``k = 2``, 0 for ``k = 1``); per row and party, ``k - 1``
        comparisons (~36 bytes each) and, per level, one element per pair plus one per
        column in a pair past the first level.  ``index`` is a local dot product with
        ``0 .. k - 1``."""
        i, _ = self._me()
        x = _share_of(x, i)
        if x.a.ndim != 2 or x.shape[1] < 1:
            raise InvalidInput(f"argmax needs a (batch, k) share with k >= 1, got {x.shape}")
        batch, k = x.shape
        sizes = np.ones(k, dtype=np.int64)  # block of original columns per candidate
        vals = x
        onehot = rep.add_public(rep.RepShare(i, np.zeros_like(x.a), np.zeros_like(x.b)), 1)
        public_ones = True  # onehot is still the trivial sharing of all ones
        while sizes.size > 1:
            m = sizes.size
            p = m // 2
            last = m == 2
            diff = rep.sub(_cols(vals, slice(0, 2 * p, 2)), _cols(vals, slice(1, 2 * p, 2)))
            bit = await self.drelu(diff)  # (batch, p): [left >= right]
            ncols = int(sizes[: 2 * p].sum())
            pair_of = np.repeat(np.arange(2 * p) // 2, sizes[: 2 * p])
            is_left = np.repeat(np.arange(2 * p) % 2 == 0, sizes[: 2 * p])
            bcols = _cols(bit, pair_of)  # each paired column's bit
            head = _cols(onehot, slice(0, ncols))
            if public_ones:
                if not last:
                    bdiff = await self.mul(diff, bit, truncate=False)
                be = bcols
            else:
                ops_x = [head] if last else [diff, head]
                ops_y = [bcols] if last else [bit, bcols]
                prod = await self.mul(_hcat(ops_x, i), _hcat(ops_y, i), truncate=False)
                bdiff = _cols(prod, slice(0, 0 if last else p))
                be = _cols(prod, slice(0 if last else p, None))
            new_head = rep.RepShare(
                i,
                np.where(is_left, be.a, head.a - be.a),
                np.where(is_left, be.b, head.b - be.b),
            )
            onehot = _hcat([new_head, _cols(onehot, slice(ncols, None))], i)
            public_ones = False
            if not last:
                winners = rep.add(_cols(vals, slice(1, 2 * p, 2)), bdiff)
                vals = _hcat([winners, _cols(vals, slice(2 * p, None))], i)
            sizes = np.concatenate([sizes[0 : 2 * p : 2] + sizes[1 : 2 * p : 2], sizes[2 * p :]])
        if not index:
            return onehot
        idx = rep.matmul_public(onehot, np.arange(k, dtype=np.uint64).reshape(k, 1))
        return rep.RepShare(i, idx.a.reshape(batch), idx.b.reshape(batch))

    def _check_nonlinear_frac(self, what: str) -> None:
        if not 8 <= self.frac_bits <= 16:
            raise InvalidInput(f"{what} needs 8 <= frac_bits <= 16, not {self.frac_bits}")

    async def sigmoid(self, x: rep.RepShare) -> rep.RepShare:
        """``1 / (1 + e^-x)`` element-wise (fixed point), by an odd degree-7 polynomial
        of ``u = clip(x, -5, 5) / 5``: ``0.5 + c1 u + c3 u^3 + c5 u^5 + c7 u^7`` with the
        coefficients of :data:`SIGMOID_COEFFS` (a minimax fit, Lawson's iteration, of
        the clipped polynomial to the sigmoid over all reals).  Approximation error
        ``<= 4.4e-3`` for every ``x`` (at the coefficients' 2^-12 resolution); with
        ``frac_bits = 12`` the measured maximum over ``[-16, 16]`` is 4.8e-3 (bound
        6e-3).  Needs ``8 <= frac_bits <= 16``.

        Steps: one batched :meth:`drelu` of ``(x - 5, -5 - x)`` (10 rounds), then ``u =
        x (2^(f+8)/5) [|x| < 5] / 2^(f+8) +- [|x| >= 5]`` (one truncated product, 2
        rounds), ``u^2`` (2), ``u^3, u^4`` (2, batched), and the sum with ``u^5 = u u^4``
        and ``u^7 = u^3 u^4`` in one additive sum at scale ``2f + 12`` truncated by ``f +
        12`` (2).  18 rounds; per element and party 2 comparisons (~72 bytes) and 5
        elements (40 bytes).  Each truncation may fail with probability ``<= 2^(2f +
        15 - 64)`` (``2^-25`` for ``f = 12``)."""
        i, zero = self._me()
        self._check_nonlinear_frac("sigmoid")
        x = _share_of(x, i)
        f, shp = self.frac_bits, x.shape
        bound = 5 << f
        both = _stack([rep.add_public(x, -bound), rep.add_public(rep.neg(x), -bound)], i)
        g = await self.drelu(both)
        hi = rep.RepShare(i, g.a[0], g.b[0])  # [x >= 5]
        lo = rep.RepShare(i, g.a[1], g.b[1])  # [x <= -5]
        inside = rep.add_public(rep.neg(rep.add(hi, lo)), 1)
        extra = 8
        scaled = rep.mul_public(inside, round(2 ** (f + extra) / 5))
        z = rep.mul_local(x, scaled, zero)
        u = rep.add(await self._truncate(z, f + extra), rep.mul_public(rep.sub(hi, lo), 1 << f))
        u2 = await self.square(u)
        pw = await self.mul(_stack([u, u2], i), u2)  # u^3, u^4
        u3 = rep.RepShare(i, pw.a[0], pw.b[0])
        u4 = rep.RepShare(i, pw.a[1], pw.b[1])
        c1, c3, c5, c7 = (round(c * 2**_COEF_BITS) for c in SIGMOID_COEFFS)
        # scale 2f + 12: products (scale 2f) times coefficients; linear terms also * 2^f
        acc = rep.mul_local(_stack([u, u3], i), u4, zero)
        zsum = acc[0] * np.uint64(c5 & _M64) + acc[1] * np.uint64(c7 & _M64)
        lin = rep.add(rep.mul_public(u, c1), rep.mul_public(u3, c3))
        zsum = zsum + lin.a * np.uint64(1 << f) + zero.next(shp)  # z_0 uniform again
        y = await self._truncate(zsum, f + _COEF_BITS)
        assert y.shape == shp
        return rep.add_public(y, 1 << (f - 1))

    async def exp(self, x: rep.RepShare) -> rep.RepShare:
        """``e^x`` element-wise (fixed point) as ``(1 + x / 256)^256``: the shares of
        ``x`` (scale ``f``) read as ``x / 256`` at scale ``f + 8`` plus the public 1,
        then 8 squarings at scale ``f + 8`` (the last truncated to scale ``f``).  16
        rounds, 8 elements per element and party.  Domain ``-256 < x <= 4``: absolute
        error ``<= 1.1e-3`` (approximation) plus rounding (``~2^8`` ulps of scale ``f +
        8``, ``2.5e-4`` relative) for ``x <= 0``, as for softmax after subtracting the
        maximum; relative error ``<= x^2 / 512 + 3e-4`` for ``0 < x <= 4``.  Each
        squaring's truncation may fail with probability ``<= e^x 2^(2f + 16 - 64)``.
        Needs ``8 <= frac_bits <= 16``."""
        i, zero = self._me()
        self._check_nonlinear_frac("exp")
        x = _share_of(x, i)
        n = 8
        fp = self.frac_bits + n
        y = rep.add_public(x, 1 << fp)
        for step in range(n):
            z = _square_local(y, zero)
            y = await self._truncate(z, fp if step + 1 < n else 2 * fp - self.frac_bits)
        return y

    # ---- networks -----------------------------------------------------------------------

    async def mlp(self, x: rep.RepShare, layers: Sequence[Layer]) -> rep.RepShare:
        """A multilayer perceptron: ``x @ W + b`` per layer (``b`` may be ``None``, shape
        ``(out,)``), ReLU between layers, none after the last.  All fixed point with
        ``frac_bits``."""
        h = x
        for k, (w, b) in enumerate(layers):
            h = await self.matmul(h, w)
            if b is not None:
                h = rep.add(h, b)
            if k + 1 < len(layers):
                h = await self.relu(h)
        return h


_M64 = (1 << 64) - 1
_COEF_BITS = 12

SIGMOID_COEFFS: tuple[float, float, float, float] = (
    1.20587901,
    -1.79303631,
    1.73643866,
    -0.6534991,
)
"""``(c1, c3, c5, c7)`` of :meth:`Rep3.sigmoid`: ``sigmoid(x) ~ 0.5 + sum c_j u^j`` with
``u = clip(x, -5, 5) / 5`` (minimax over all reals; maximum error 4.2e-3)."""


def _square_local(x: rep.RepShare, zero: rep.ZeroSharer) -> np.ndarray:
    """The 3-out-of-3 additive share ``x_i^2 + 2 x_i x_{i+1} + alpha_i`` of ``x^2``."""
    z = x.a * (x.a + x.b + x.b)
    return z + zero.next(z.shape)


def _cols(x: rep.RepShare, sel: slice | np.ndarray) -> rep.RepShare:
    """Columns ``sel`` of a 2-d share (a slice, or an index array: a gather)."""
    return rep.RepShare(x.party, x.a[:, sel], x.b[:, sel])


def _hcat(parts: Sequence[rep.RepShare], i: int) -> rep.RepShare:
    """2-d shares side by side."""
    return rep.RepShare(
        i,
        np.concatenate([p.a for p in parts], axis=1),
        np.concatenate([p.b for p in parts], axis=1),
    )


def _stack(parts: Sequence[rep.RepShare], i: int) -> rep.RepShare:
    """Shares of one shape stacked along a new first axis."""
    return rep.RepShare(i, np.stack([p.a for p in parts]), np.stack([p.b for p in parts]))


def _share_of(x: object, i: int) -> rep.RepShare:
    if not isinstance(x, rep.RepShare):
        raise InvalidType(f"expected this party's RepShare, not {type(x).__name__}")
    if x.party != i:
        raise InvalidInput(f"share of party {x.party} used by party {i}")
    return x


def _bcat_cols(parts: Sequence[rep.BinShare], i: int) -> rep.BinShare:
    """Bit-sliced shares of consecutive chunks side by side (columns)."""
    return rep.BinShare(
        i,
        np.concatenate([p.a for p in parts], axis=1),
        np.concatenate([p.b for p in parts], axis=1),
    )


def _as_u64(obj: object, frm: int) -> np.ndarray:
    if not isinstance(obj, np.ndarray) or obj.dtype not in (np.uint64, np.int64):
        raise MisbehaviourDetected(f"party {frm} sent no ring array", [frm])
    return obj.view(np.uint64)
