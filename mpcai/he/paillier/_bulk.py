"""Bulk encryption and decryption on several cores (the ``workers`` argument).

Encryption with ``workers > 1`` runs in a ``spawn`` process pool started for
the call (gmpy2 keeps the GIL for the multiplications of table-based
encryption); only the public key reaches the workers.  Decryption with
``workers > 1`` runs in threads: ``powmod_sec`` releases the GIL when the
thread's gmpy2 context allows it.  See "Bulk and multi-core" in
:mod:`mpcai.he.paillier`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from typing import Any

from gmpy2 import mpz

from mpcai.errors import InvalidInput, InvalidType
from mpcai.validation import check_int

from ._keys import PrivateKey, PublicKey, Randomness
from ._phe import pub_of


def _worker_count(workers: object) -> int:
    """The number of workers to use: ``workers`` itself, or every core for 0."""
    return check_int(workers, "workers", lo=0) or (os.cpu_count() or 1)


def _pool(w: int, initargs: tuple[str, bytes]) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(w, mp_context=get_context("spawn"), initializer=_worker_init,
                               initargs=initargs)


_WORKER_KEY: list[Any] = []


def _worker_init(kind: str, blob: bytes) -> None:
    if kind != "pk":
        raise InvalidInput("encryption workers take a public key only")
    _WORKER_KEY[:] = [PublicKey.deserialize(blob)]


def _worker_encrypt(residues: list[int], randomness: Randomness) -> list[int]:
    key = _WORKER_KEY[0]
    return [int(key._raw_encrypt(mpz(m), randomness)) for m in residues]


def _map_chunks(w: int, initargs: tuple[str, bytes], fn: Callable[..., list[int]],
                items: list[int], *args: Any) -> list[mpz]:
    size = max(1, -(-len(items) // (4 * w)))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    out: list[mpz] = []
    with _pool(w, initargs) as pool:
        for part in pool.map(fn, chunks, *[[a] * len(chunks) for a in args]):
            out.extend(mpz(x) for x in part)
    return out


def bulk_encrypt(key: PublicKey | PrivateKey, residues: list[mpz], randomness: Randomness,
                 workers: int) -> list[mpz]:
    """Ciphertexts of plaintext residues in ``[0, n)``, under the public key of ``key``."""
    if not isinstance(key, (PublicKey, PrivateKey)):
        raise InvalidType(f"key must be a PublicKey or PrivateKey, not {type(key).__name__}")
    pub = pub_of(key)  # encryption needs the public key only (see PrivateKey.encrypt)
    pub.exponent_bits(randomness)  # validates ``randomness``
    w = _worker_count(workers)
    if w <= 1 or len(residues) < 2:
        return [pub._raw_encrypt(m, randomness) for m in residues]
    return _map_chunks(w, ("pk", pub.serialize()), _worker_encrypt,
                       [int(m) for m in residues], randomness)


def bulk_decrypt(key: PrivateKey, cts: list[mpz], workers: int) -> list[mpz]:
    """Plaintext residues in ``[0, n)`` of checked ciphertexts (CRT, ``powmod_sec``)."""
    if not isinstance(key, PrivateKey):
        raise InvalidType(f"decryption needs a PrivateKey, not {type(key).__name__}")
    w = _worker_count(workers)
    if w <= 1 or len(cts) < 2:
        return [key._decrypt_residue(c) for c in cts]
    # gmpy2 releases the GIL inside powmod_sec when the context allows it,
    # so threads suffice: no process start-up, no key shipped to another process.
    size = -(-len(cts) // w)
    chunks = [cts[i:i + size] for i in range(0, len(cts), size)]
    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = list(pool.map(key._decrypt_many, chunks))
    return [m for part in parts for m in part]
