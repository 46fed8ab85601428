"""ChaCha20 and the PRG kernels: RFC 8439 vectors, OpenSSL, pure-Python reference."""

from __future__ import annotations

import os

import native_reference as ref
import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given, settings
from hypothesis import strategies as st
from simd_paths import PATHS, each_path

from mpcai import _bindings as nb
from mpcai.errors import InvalidInput, InvalidType


def openssl_keystream(key: bytes, nonce: bytes, counter: int, length: int) -> bytes:
    full_nonce = counter.to_bytes(4, "little") + nonce
    return Cipher(algorithms.ChaCha20(key, full_nonce), None).encryptor().update(bytes(length))


# RFC 8439 section 2.3.2 (block function) and appendix A.1 (keystream vectors).
RFC_KEY = bytes(range(32))
RFC_232_NONCE = bytes.fromhex("000000090000004a00000000")
RFC_232_BLOCK = bytes.fromhex(
    "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
    "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
)
A1_TV1 = bytes.fromhex(
    "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
)
A1_TV2 = bytes.fromhex(
    "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed"
    "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f"
)


def test_rfc8439_block_vector(path: int) -> None:
    assert nb.chacha20_keystream(RFC_KEY, RFC_232_NONCE, 1, 64) == RFC_232_BLOCK


def test_rfc8439_appendix_a1(path: int) -> None:
    assert nb.chacha20_keystream(bytes(32), bytes(12), 0, 64) == A1_TV1
    assert nb.chacha20_keystream(bytes(32), bytes(12), 1, 64) == A1_TV2
    assert nb.chacha20_keystream(bytes(32), bytes(12), 0, 128) == A1_TV1 + A1_TV2


def test_python_reference_matches_rfc() -> None:
    assert ref.chacha20_block(RFC_KEY, 1, RFC_232_NONCE) == RFC_232_BLOCK
    assert ref.chacha20_block(bytes(32), 0, bytes(12)) == A1_TV1


# 576 bytes = one AVX2 group (9 blocks), 1088 = one AVX-512 group (17 blocks:
# 16 in zmm registers, 1 scalar); 1664 = 17 + 9 blocks
@pytest.mark.parametrize(
    "length",
    [0, 1, 63, 64, 65, 511, 512, 513, 575, 576, 577, 1000, 1023, 1024, 1025, 1087, 1088, 1089,
     1663, 1664, 1665, 2176, 4096 + 7, 9216, 100_003],
)
def test_keystream_matches_openssl(path: int, length: int) -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    counter = int.from_bytes(os.urandom(2), "little")
    assert nb.chacha20_keystream(key, nonce, counter, length) == openssl_keystream(
        key, nonce, counter, length
    )


@settings(max_examples=40, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=12, max_size=12),
    counter=st.integers(0, 2**32 - 40),
    length=st.integers(0, 2000),
)
def test_keystream_property_against_openssl(key: bytes, nonce: bytes, counter: int, length: int):
    expect = openssl_keystream(key, nonce, counter, length)
    for _ in each_path():
        assert nb.chacha20_keystream(key, nonce, counter, length) == expect


@pytest.mark.parametrize("blocks", [1, 9, 16, 17, 20, 26, 34, 35, 43])
def test_keystream_near_counter_wrap(path: int, blocks: int) -> None:
    """The last `blocks` blocks before the 32-bit counter wraps (whole SIMD
    groups that fit, the rest one block at a time), then one byte too many."""
    key, nonce = os.urandom(32), os.urandom(12)
    counter = 2**32 - blocks
    assert nb.chacha20_keystream(key, nonce, counter, blocks * 64) == ref.chacha20_keystream(
        key, nonce, counter, blocks * 64
    )
    with pytest.raises(InvalidInput):
        nb.chacha20_keystream(key, nonce, counter, blocks * 64 + 1)


def test_keystream_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInput):
        nb.chacha20_keystream(bytes(31), bytes(12), 0, 10)
    with pytest.raises(InvalidInput):
        nb.chacha20_keystream(bytes(32), bytes(8), 0, 10)
    with pytest.raises(InvalidType):
        nb.chacha20_keystream("k" * 32, bytes(12), 0, 10)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        nb.chacha20_keystream(bytes(32), bytes(12), -1, 10)


@pytest.mark.parametrize(
    "n", [0, 1, 7, 8, 63, 64, 65, 71, 72, 73, 127, 128, 129, 135, 136, 137, 208, 209, 1001]
)
def test_prg_ring64_matches_reference(path: int, n: int) -> None:
    seed = os.urandom(32)
    np.testing.assert_array_equal(nb.prg_ring64(seed, n), ref.prg_ring64(seed, n))


def test_prg_ring64_large_matches_openssl(path: int) -> None:
    seed, n = os.urandom(32), 300_001
    expected = np.frombuffer(openssl_keystream(seed, bytes(12), 0, 8 * n), dtype="<u8")
    np.testing.assert_array_equal(nb.prg_ring64(seed, n), expected)


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000, 100_001])
@pytest.mark.parametrize("sign", [1, -1])
def test_prg_ring64_acc_is_fused_add(path: int, n: int, sign: int) -> None:
    seed = os.urandom(32)
    acc = np.frombuffer(os.urandom(8 * n), dtype=np.uint64).copy()
    mask = np.frombuffer(openssl_keystream(seed, bytes(12), 0, 8 * n), dtype="<u8")
    expected = acc + mask if sign == 1 else acc - mask
    nb.prg_ring64_acc(seed, acc, sign)
    np.testing.assert_array_equal(acc, expected)


def test_prg_ring64_acc_any_shape_and_cancellation() -> None:
    seed = os.urandom(32)
    acc = np.arange(3 * 5 * 7, dtype=np.uint64).reshape(3, 5, 7)
    before = acc.copy()
    nb.prg_ring64_acc(seed, acc, 1)
    assert not np.array_equal(acc, before)
    nb.prg_ring64_acc(seed, acc, -1)
    np.testing.assert_array_equal(acc, before)


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 72, 73, 135, 136, 137, 577, 1000])
def test_prg_fieldp_matches_reference(path: int, n: int) -> None:
    seed = os.urandom(32)
    out = nb.prg_fieldp(seed, n)
    np.testing.assert_array_equal(out, ref.prg_fieldp(seed, n))
    assert np.all(out < ref.P61)


def test_reference_rejection_rule() -> None:
    # The reference's rule on chosen words: low 61 bits all ones are rejected.
    words = [ref.P61, 5, (1 << 64) - 1, ref.P61 | (1 << 63), 7]
    assert ref.prg_fieldp_from_words(words, 2) == [5, 7]


@pytest.mark.parametrize("force", [[0], [3], [7, 8], [0, 1, 2, 63, 64, 65], [130, 131, 1000],
                                   [71, 72, 127, 128, 135, 136], list(range(200, 260))])
@pytest.mark.parametrize("n", [1, 64, 137, 1100])
def test_prg_fieldp_rejection_in_c_matches_reference(path: int, force: list[int],
                                                     n: int) -> None:
    """The C kernel's rejection path (probability 2^-61 per word, never met at random)
    made reachable by a test hook that replaces the generator's raw words at chosen
    stream indices by 2^64 - 1 (candidate p) *before* the SIMD path's own comparison
    with p, so the detection under test is the real one: the output must equal the
    reference applied to the keystream with those words replaced -- on every SIMD
    path, at both ends of a group (8-block + 1 AVX2/scalar groups, 16 + 1 AVX-512),
    in the fast whole-group path and the buffered one."""
    from mpcai._native import ffi, lib

    seed = os.urandom(32)
    forced = np.array(sorted(force), dtype=np.uint64)
    out = np.zeros(n, dtype=np.uint64)
    rc = lib.mpcai_testhook_prg_fieldp(ffi.from_buffer("uint8_t[]", seed), 32,
                                       ffi.cast("uint64_t *", forced.ctypes.data), forced.size,
                                       ffi.cast("uint64_t *", out.ctypes.data), n)
    assert rc == lib.MPCAI_OK
    words = ref.prg_words(seed, max(n + len(force), max(force) + 1) + 8)
    for j in force:
        words[j] = (1 << 64) - 1
    expected = ref.prg_fieldp_from_words(words, n)
    assert out.tolist() == expected
    if any(j < n for j in force):  # the forced words really were dropped
        assert out.tolist() != ref.prg_fieldp(seed, n).tolist()


@pytest.mark.parametrize("n", [0, 1, 64, 65, 10_007])
@pytest.mark.parametrize("sign", [1, -1])
def test_prg_fieldp_acc(path: int, n: int, sign: int) -> None:
    seed = os.urandom(32)
    acc = nb.prg_fieldp(os.urandom(32), n)
    if n:
        acc[0] = ref.P61 - 1
    mask = nb.prg_fieldp(seed, n)
    expected = [(int(a) + sign * int(m)) % ref.P61 for a, m in zip(acc, mask, strict=True)]
    nb.prg_fieldp_acc(seed, acc, sign)
    assert acc.tolist() == expected


def test_prg_fieldp_acc_rejects_unreduced_without_writing() -> None:
    acc = np.array([1, 2, ref.P61, 3], dtype=np.uint64)
    before = acc.copy()
    with pytest.raises(InvalidInput):
        nb.prg_fieldp_acc(os.urandom(32), acc)
    np.testing.assert_array_equal(acc, before)


def test_accumulate_rejects_bad_arrays() -> None:
    seed = os.urandom(32)
    with pytest.raises(InvalidType):
        nb.prg_ring64_acc(seed, np.zeros(10, dtype=np.int64))
    with pytest.raises(InvalidType):
        nb.prg_ring64_acc(seed, np.zeros(10, dtype=np.float64))
    with pytest.raises(InvalidType):
        nb.prg_ring64_acc(seed, np.zeros(20, dtype=np.uint64)[::2])
    ro = np.zeros(10, dtype=np.uint64)
    ro.flags.writeable = False
    with pytest.raises(InvalidType):
        nb.prg_ring64_acc(seed, ro)
    with pytest.raises(InvalidInput):
        nb.prg_ring64_acc(seed, np.zeros(10, dtype=np.uint64), 2)
    with pytest.raises(InvalidInput):
        nb.prg_ring64_acc(bytes(16), np.zeros(10, dtype=np.uint64))
    with pytest.raises(InvalidInput):
        nb.prg_ring64(seed, -1)


def test_simd_paths_bit_identical_on_large_streams() -> None:
    if len(PATHS) < 2:
        pytest.skip("this CPU has no AVX2: only the scalar path exists")
    seed = os.urandom(32)
    outs = []
    for _ in each_path():
        acc = np.arange(123_457, dtype=np.uint64)
        nb.prg_ring64_acc(seed, acc, -1)
        acc32 = np.arange(54_321, dtype=np.uint32)
        nb.prg_ring32_acc(seed, acc32, 1)
        outs.append((nb.prg_ring64(seed, 99_999), nb.prg_fieldp(seed, 77_777), acc, acc32))
    for other in outs[1:]:
        for a, b in zip(outs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [0, 1, 1000, 1 << 16, (1 << 17) + 5, 1_000_003])
@pytest.mark.parametrize("threads", [2, 3, 64])
def test_threaded_accumulate_is_identical(path: int, n: int, threads: int) -> None:
    seed = os.urandom(32)
    acc = np.frombuffer(os.urandom(8 * n), dtype=np.uint64).copy()
    expected = acc + nb.prg_ring64(seed, n)
    nb.prg_ring64_acc(seed, acc, 1, threads)
    np.testing.assert_array_equal(acc, expected)


def test_threads_argument_is_checked() -> None:
    acc = np.zeros(10, dtype=np.uint64)
    for bad in (0, -1, 65):
        with pytest.raises(InvalidInput):
            nb.prg_ring64_acc(os.urandom(32), acc, 1, bad)


@pytest.mark.parametrize(
    "n", [0, 1, 15, 16, 17, 143, 144, 145, 271, 272, 273, 416, 417, 1000, 300_001]
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_ring32_acc_reads_the_stream_as_32_bit_words(path: int, n: int, threads: int) -> None:
    seed = os.urandom(32)
    mask = np.frombuffer(openssl_keystream(seed, bytes(12), 0, 4 * n), dtype="<u4")
    acc = np.frombuffer(os.urandom(4 * n), dtype=np.uint32).copy()
    expected = acc - mask
    nb.prg_ring32_acc(seed, acc, -1, threads)
    np.testing.assert_array_equal(acc, expected)
    nb.prg_ring32_acc(seed, acc, 1, threads)
    np.testing.assert_array_equal(acc, expected + mask)


@pytest.mark.parametrize(
    "n", [0, 1, 15, 63, 64, 65, 191, 192, 193, 1087, 1088, 1089, 1280, 2177, 300_001]
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_ring24_acc_reads_the_stream_as_3_byte_values(path: int, n: int, threads: int) -> None:
    """Value i is bytes 3i..3i+2 of OpenSSL's ChaCha20 stream (little-endian), added to
    a uint32 word: across the scalar (3 blocks), AVX2 (9) and AVX-512 (51) units, the
    threads' slices and the tails."""
    seed = os.urandom(32)
    raw = np.frombuffer(openssl_keystream(seed, bytes(12), 0, 3 * n), dtype=np.uint8)
    raw = raw.astype(np.uint32)
    mask = raw[0::3] | (raw[1::3] << np.uint32(8)) | (raw[2::3] << np.uint32(16))
    acc = np.frombuffer(os.urandom(4 * n), dtype=np.uint32).copy()
    expected = acc - mask
    nb.prg_ring24_acc(seed, acc, -1, threads)
    np.testing.assert_array_equal(acc, expected)
    nb.prg_ring24_acc(seed, acc, 1, threads)
    np.testing.assert_array_equal(acc, expected + mask)


def test_ring24_is_not_the_32_bit_stream_and_checks_its_array() -> None:
    seed = os.urandom(32)
    a24, a32 = np.zeros(20_000, dtype=np.uint32), np.zeros(20_000, dtype=np.uint32)
    nb.prg_ring24_acc(seed, a24)
    nb.prg_ring32_acc(seed, a32)
    assert int(a24.max()) < 1 << 24 and int(a24.max()) > (1 << 24) - (1 << 16)
    assert not np.array_equal(a24, a32 & np.uint32(0xFFFFFF))
    with pytest.raises(InvalidType):
        nb.prg_ring24_acc(seed, np.zeros(4, dtype=np.uint64))
    with pytest.raises(InvalidType):
        nb.prg_ring24_acc(seed, np.zeros(8, dtype=np.uint32)[::2])
    with pytest.raises(InvalidInput):
        nb.prg_ring24_acc(seed, a24, 2)


def test_ring32_acc_checks_its_array() -> None:
    with pytest.raises(InvalidType):
        nb.prg_ring32_acc(os.urandom(32), np.zeros(4, dtype=np.uint64))
    with pytest.raises(InvalidType):
        nb.prg_ring32_acc(os.urandom(32), np.zeros(8, dtype=np.uint32)[::2])
