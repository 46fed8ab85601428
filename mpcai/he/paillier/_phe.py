"""Accepting python-paillier's (``phe``) objects where :mod:`mpcai.he.paillier` takes keys.

The bulk functions, the ciphertext constructors and ``deserialize`` pass
their key argument through :func:`key_arg` or :func:`pub_arg`: ours is used
as is, phe's is converted (:meth:`PublicKey.from_phe`,
:meth:`PrivateKey.from_phe`).  ``phe`` is imported only when a key is not
ours.  The formats phe shares with us (JWK keys, ``{"v", "e"}`` ciphertexts)
are methods of the key and ciphertext classes.
"""

from __future__ import annotations

import weakref
from typing import Any

from mpcai.errors import InvalidType

from ._keys import PrivateKey, PublicKey

_PHE_PRIVATE: weakref.WeakKeyDictionary[Any, PrivateKey] = weakref.WeakKeyDictionary()
"""phe private key -> its conversion, kept only while the phe key object lives."""

_KEY_TYPES = ("a PublicKey or PrivateKey (phe keys are converted; explicitly: "
              "PublicKey.from_phe, PrivateKey.from_phe, from_jwk)")


def key_arg(key: object, *, private: bool = False) -> PublicKey | PrivateKey:
    """``key`` as one of ours: a ``phe.PaillierPublicKey`` is converted with
    :meth:`PublicKey.from_phe` (microseconds), a ``phe.PaillierPrivateKey`` with
    :meth:`PrivateKey.from_phe` once per phe key object (cached in a weak mapping,
    so the conversion dies with the phe key).  ``private``: the key must be able to
    decrypt; a public key raises :class:`InvalidType` saying so."""
    if isinstance(key, PrivateKey):
        return key
    if isinstance(key, PublicKey) and not private:
        return key
    from ._threshold import ThresholdPublicKey  # built on this module: imported on use

    if isinstance(key, ThresholdPublicKey):
        if private:
            raise InvalidType("a ThresholdPublicKey cannot decrypt alone: combine the "
                              "holders' partial decryptions (combine)")
        return key.public_key
    import phe

    if isinstance(key, phe.PaillierPrivateKey):
        sk = _PHE_PRIVATE.get(key)
        if sk is None:
            sk = _PHE_PRIVATE[key] = PrivateKey.from_phe(key)
        return sk
    if isinstance(key, (PublicKey, phe.PaillierPublicKey)):
        if private:
            raise InvalidType(f"decryption needs the private key, not a {type(key).__name__}")
        return PublicKey.from_phe(key)
    raise InvalidType(f"key must be {_KEY_TYPES}, not {type(key).__name__}")


def pub_arg(public_key: object) -> PublicKey:
    """``public_key`` as our :class:`PublicKey` (a phe public key is converted)."""
    if isinstance(public_key, PublicKey):
        return public_key
    from ._threshold import ThresholdPublicKey  # built on this module: imported on use

    if isinstance(public_key, ThresholdPublicKey):
        return public_key.public_key
    import phe

    if isinstance(public_key, phe.PaillierPublicKey):
        return PublicKey.from_phe(public_key)
    raise InvalidType(f"public_key must be a PublicKey or a phe.PaillierPublicKey "
                      f"(PublicKey.from_phe converts), not {type(public_key).__name__}")


def pub_of(key: object) -> PublicKey:
    """The public key of ``key`` (ours or phe's, public or private)."""
    k = key_arg(key)
    return k.public_key if isinstance(k, PrivateKey) else k

