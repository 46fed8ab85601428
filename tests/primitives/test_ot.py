"""Oblivious transfer (mpcai.sharing.ot): base OTs, IKNP extension, AND triples, Gilboa.

References are independent of the code under test: the receiver's outputs against the
sender's pair at the choice bit, AND triples against ``a & b`` on the reconstructed
bits, Gilboa's shares against the product of Python integers modulo 2^64.
"""

from __future__ import annotations

import secrets

import nacl.bindings as sodium
import numpy as np
import pytest

from mpcai.errors import InvalidInput, InvalidType, MisbehaviourDetected
from mpcai.sharing import ot


def _pair() -> tuple[ot.OTSession, ot.OTSession]:
    a, b = ot.OTSession(), ot.OTSession()
    ans_a, ans_b = a.answer(b.hello()), b.answer(a.hello())
    a.finish(ans_b)
    b.finish(ans_a)
    return a, b


def _bits(n: int) -> np.ndarray:
    return np.frombuffer(secrets.token_bytes(n), dtype=np.uint8) & 1


def _ring(*shape: int) -> np.ndarray:
    n = int(np.prod(shape))
    return np.frombuffer(secrets.token_bytes(8 * n), dtype=np.uint64).reshape(shape).copy()


@pytest.mark.parametrize("m", [1, 7, 8, 1000])
def test_random_ot_in_both_directions_and_several_batches(m: int) -> None:
    a, b = _pair()
    seen = set()
    for receiver, sender in ((a, b), (b, a), (a, b)):
        for blocks in (1, 2):
            c = _bits(m)
            msg, out = receiver.receive(c, blocks)
            o0, o1 = sender.send(m, msg, blocks)
            assert out.shape == o0.shape == o1.shape == (m, 64 * blocks)
            assert np.array_equal(out, np.where(c[:, None] == 1, o1, o0))
            # the other output is unrelated to the chosen one
            assert not np.any(np.all(o0 == o1, axis=1))
            for row in np.concatenate([o0, o1])[:, :16]:
                seen.add(row.tobytes())
    assert len(seen) == 2 * 3 * (m + m)  # no output repeats across batches or directions


def test_receiver_message_does_not_depend_on_the_choices() -> None:
    # u = G(k0) ^ G(k1) ^ r is uniform: all-zero and all-one choices give ~half the bits set
    a, _b = _pair()
    for c in (np.zeros(4096, dtype=np.uint8), np.ones(4096, dtype=np.uint8)):
        msg, _ = a.receive(c)
        frac = np.unpackbits(msg).mean()
        assert 0.48 < frac < 0.52


def test_and_triples_reconstruct_to_products() -> None:
    a, b = _pair()
    n = 20_000
    ca, cb = _bits(n), _bits(n)
    ma, ra = a.receive(ca)
    sb = b.send(n, ma)
    mb, rb = b.receive(cb)
    sa = a.send(n, mb)
    ta, tb = ot.and_triples(sa, ra, ca), ot.and_triples(sb, rb, cb)
    x, y, z = ta.a ^ tb.a, ta.b ^ tb.b, ta.c ^ tb.c
    assert np.array_equal(z, x & y)
    for v in (x, y, ta.a, tb.c):
        assert 0.47 < v.mean() < 0.53  # shares and secrets unbiased
    with pytest.raises(InvalidInput):
        ot.and_triples(sa, ra[:-1], ca[:-1])


@pytest.mark.parametrize(("m", "n", "o"), [(1, 1, 1), (7, 5, 3), (20, 9, 4)])
def test_gilboa_shares_add_up_to_the_ring_product(m: int, n: int, o: int) -> None:
    a, b = _pair()
    r, bm = _ring(m, n), _ring(n, o)
    bm[0, 0] = (1 << 64) - 1  # every bit set, including the 1-byte correction words
    ch = ot.gilboa_choices(bm)
    msg, out = b.receive(ch, ot.cot_blocks(m))
    o0, o1 = a.send(ch.size, msg, ot.cot_blocks(m))
    words, share_a = ot.cot_send(r, o, o0, o1)
    assert [w.dtype for w in words] == [np.uint64, np.uint32, np.uint16, np.uint8]
    share_b = ot.cot_receive(bm, m, out, words)
    want = [[sum(int(r[i, k]) * int(bm[k, j]) for k in range(n)) % 2**64 for j in range(o)]
            for i in range(m)]
    assert (share_a + share_b).tolist() == want
    # each share alone is not the product
    assert share_a.tolist() != want and share_b.tolist() != want


def test_malformed_messages_are_refused() -> None:
    a, b = ot.OTSession(), ot.OTSession()
    with pytest.raises(InvalidInput):  # not set up
        a.receive(_bits(8))
    with pytest.raises(MisbehaviourDetected):
        a.answer(b"\x00" * 31)
    identity = b"\x01" + bytes(31)
    with pytest.raises(MisbehaviourDetected):  # the identity is of small order
        a.answer(identity)
    not_on_curve = next(p for p in (secrets.token_bytes(32) for _ in range(200))
                        if not sodium.crypto_core_ed25519_is_valid_point(p))
    with pytest.raises(MisbehaviourDetected):
        a.answer(not_on_curve)
    ans_b = b.answer(a.hello())
    with pytest.raises(MisbehaviourDetected):
        a.finish(ans_b[:-1])
    with pytest.raises(MisbehaviourDetected):
        a.finish(identity + ans_b[32:])
    a.answer(b.hello())
    a.finish(ans_b)
    with pytest.raises(InvalidInput):
        a.finish(ans_b)  # a session is set up once
    with pytest.raises(InvalidInput):
        a.answer(b.hello())


def test_extension_input_checks() -> None:
    a, b = _pair()
    with pytest.raises(InvalidInput):
        a.receive(np.array([0, 2, 1], dtype=np.uint8))
    with pytest.raises(InvalidType):
        a.receive([0, 1])  # type: ignore[arg-type]
    msg, _ = a.receive(_bits(16))
    with pytest.raises(MisbehaviourDetected):
        b.send(17, msg)  # the peer announced another count
    with pytest.raises(MisbehaviourDetected):
        b.send(16, msg.astype(np.uint16))
    r, bm = _ring(3, 2), _ring(2, 2)
    ch = ot.gilboa_choices(bm)
    m2, out = b.receive(ch, ot.cot_blocks(3))
    o0, o1 = a.send(ch.size, m2, ot.cot_blocks(3))
    words, _ = ot.cot_send(r, 2, o0, o1)
    with pytest.raises(MisbehaviourDetected):
        ot.cot_receive(bm, 3, out, words[:3])
    with pytest.raises(MisbehaviourDetected):
        ot.cot_receive(bm, 3, out, [w.astype(np.uint64) for w in words])
    with pytest.raises(InvalidInput):
        ot.cot_send(r, 3, o0, o1)  # the wrong number of OTs for the shape


@pytest.mark.parametrize("bits", [1, 2, 9, 16, 33])
def test_gilboa_with_small_signed_entries(bits: int) -> None:
    a, b = _pair()
    m, n, o = 6, 4, 3
    rng = np.random.default_rng(bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1))
    w = rng.integers(lo, hi, size=(n, o)).astype(np.int64)
    w[0, 0], w[0, 1] = lo, hi - 1  # both ends of the range
    bm = w.view(np.uint64)
    assert ot.signed_bits(bm) == bits
    r = _ring(m, n)
    ch = ot.gilboa_choices(bm, bits)
    assert ch.size == n * o * bits
    msg, out = b.receive(ch, ot.cot_blocks(m))
    o0, o1 = a.send(ch.size, msg, ot.cot_blocks(m))
    words, share_a = ot.cot_send(r, o, o0, o1, bits)
    share_b = ot.cot_receive(bm, m, out, words, bits)
    want = [[sum(int(r[i, k]) * int(w[k, j]) for k in range(n)) % 2**64 for j in range(o)]
            for i in range(m)]
    assert (share_a + share_b).tolist() == want
    with pytest.raises(InvalidInput):
        ot.gilboa_choices(bm, bits - 1) if bits > 1 else ot.gilboa_choices(bm + 1, 1)
