"""Seeds and HKDF domain separation."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mpcai import prg
from mpcai.errors import InvalidInput, InvalidType


def test_new_seed_is_fresh() -> None:
    seeds = {prg.new_seed() for _ in range(100)}
    assert len(seeds) == 100 and all(len(s) == 32 for s in seeds)


def test_derive_seed_matches_rfc5869_construction() -> None:
    key = bytes(range(32))
    info = b"mpcai/v1/" + bytes([4]) + b"mask" + b"ctx"
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)
    assert prg.derive_seed(key, "mask", b"ctx") == expected


def test_labels_and_contexts_separate_domains() -> None:
    key = prg.new_seed()
    seeds = {
        prg.derive_seed(key, "a"),
        prg.derive_seed(key, "b"),
        prg.derive_seed(key, "a", b"1"),
        prg.derive_seed(key, "a1"),  # must differ from ("a", b"1"): length-prefixed label
    }
    assert len(seeds) == 4
    assert prg.derive_seed(key, "a") == prg.derive_seed(key, b"a")


def test_derive_seed_rejects_weak_or_bad_input() -> None:
    with pytest.raises(InvalidInput):
        prg.derive_seed(b"short", "x")
    with pytest.raises(InvalidInput):
        prg.derive_seed(prg.new_seed(), "")
    with pytest.raises(InvalidType):
        prg.derive_seed(prg.new_seed(), 3)  # type: ignore[arg-type]


def test_ring_accumulate_bits() -> None:
    """bits=24 reads the 3-byte stream (uint32 only); bits must match the dtype otherwise."""
    from mpcai import _bindings

    seed = prg.new_seed()
    acc, ref = np.arange(777, dtype=np.uint32), np.arange(777, dtype=np.uint32)
    prg.ring_accumulate(acc, seed, -1, bits=24, threads=2)
    _bindings.prg_ring24_acc(seed, ref, -1)
    np.testing.assert_array_equal(acc, ref)
    a32, r32 = np.zeros(777, dtype=np.uint32), np.zeros(777, dtype=np.uint32)
    prg.ring_accumulate(a32, seed, bits=32)
    prg.ring_accumulate(r32, seed)  # the dtype's width
    np.testing.assert_array_equal(a32, r32)
    for arr, bad in ((np.zeros(4, dtype=np.uint32), 64), (np.zeros(4, dtype=np.uint32), 16),
                     (np.zeros(4, dtype=np.uint64), 24), (np.zeros(4, dtype=np.uint64), 32),
                     (np.zeros(4, dtype=np.uint32), True)):
        with pytest.raises(InvalidInput):
            prg.ring_accumulate(arr, seed, bits=bad)


def test_vectors_and_accumulate() -> None:
    seed = prg.new_seed()
    v = prg.ring_vector(seed, 1000)
    acc = np.zeros(1000, dtype=np.uint64)
    prg.ring_accumulate(acc, seed)
    np.testing.assert_array_equal(acc, v)
    f = prg.field_vector(seed, 1000)
    assert np.all(f < prg.FIELD_P)
    facc = np.zeros(1000, dtype=np.uint64)
    prg.field_accumulate(facc, seed, -1)
    np.testing.assert_array_equal(facc, (prg.FIELD_P - f) % prg.FIELD_P)
