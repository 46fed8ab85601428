"""Typed errors raised by mpcai.

Every error derives from :class:`MpcaiError`, and also from the builtin
exception a caller would naturally catch (``ValueError``, ``TypeError``,
``OverflowError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AggregateOutOfRange",
    "ClippingWarning",
    "DecryptionBudgetExceeded",
    "DuplicateShares",
    "EncodingOverflow",
    "IllegalTransition",
    "InconsistentShares",
    "InvalidCiphertext",
    "InvalidInput",
    "InvalidTranscript",
    "InvalidType",
    "KeyTooSmall",
    "LaunchError",
    "MessageRejected",
    "MisbehaviourDetected",
    "MissingDependency",
    "MissingSecretKey",
    "MpcaiError",
    "NativeError",
    "NotEnoughShares",
    "NotEnoughSurvivors",
    "PartyFailed",
    "PeerDropped",
    "PeerError",
    "PeerTimeout",
    "PeersMissing",
    "ProtocolAbort",
    "ShareError",
    "SlotOverflow",
    "TripleReuse",
    "UnsupportedVersion",
    "WireError",
    "WouldOverwrite",
]


class MpcaiError(Exception):
    """Base class of every error raised by mpcai."""


class InvalidInput(MpcaiError, ValueError):
    """An argument has the right type but an invalid value (length, range, shape)."""


class InvalidType(MpcaiError, TypeError):
    """An argument has the wrong type or dtype, or an array has the wrong layout."""


class WouldOverwrite(MpcaiError, FileExistsError):
    """Files that would be overwritten exist already (``paths`` lists them); nothing
    was written.  Pass the tool's overwrite flag (``--force``) to replace them."""

    def __init__(self, message: str, paths: list[str] | None = None) -> None:
        super().__init__(message)
        self.paths = list(paths or [])


class EncodingOverflow(MpcaiError, OverflowError):
    """A value does not fit the fixed-point or quantisation range; nothing wrapped."""


class ShareError(MpcaiError, ValueError):
    """A set of secret shares cannot be reconstructed."""


class NotEnoughShares(ShareError):
    """Fewer shares than the reconstruction threshold were given."""


class DuplicateShares(ShareError):
    """Two shares claim the same evaluation point (or party index)."""


class InconsistentShares(ShareError):
    """The shares do not lie on one polynomial of the declared degree, or do not match."""


class TripleReuse(MpcaiError, RuntimeError):
    """A single-use piece of correlated randomness was used twice."""


class NativeError(MpcaiError, RuntimeError):
    """The C core reported an error that the Python checks should have caught."""


class UnsupportedVersion(MpcaiError, RuntimeError):
    """An installed dependency has a version whose internals mpcai does not support."""


class WireError(MpcaiError, ValueError):
    """A frame or payload from the network is malformed or exceeds a limit.

    ``peer`` names the party it came from, when known.
    """

    def __init__(self, message: str, peer: int | None = None) -> None:
        super().__init__(message if peer is None else f"from party {peer}: {message}")
        self.peer = peer


class MessageRejected(WireError):
    """A well-formed message that is not acceptable here: another session or
    stage, a replayed or out-of-order sequence number, a wrong sender or
    recipient."""


class PeerError(MpcaiError, ConnectionError):
    """A peer cannot be heard from; ``peer`` is its party id."""

    def __init__(self, message: str, peer: int | None = None) -> None:
        super().__init__(message)
        self.peer = peer


class PeerDropped(PeerError):
    """The peer's connection closed (or it said goodbye) before the message came."""


class PeerTimeout(PeerError, TimeoutError):
    """The peer did not send the expected message before the deadline."""


class PeersMissing(PeerError):
    """A ``gather`` or ``exchange`` did not hear from every peer it needed.

    ``missing`` maps each party that gave no answer to why, as the error
    that party's receive got: :class:`PeerTimeout` (silent until the
    deadline), :class:`PeerDropped` (it left, crashed, or never connected,
    e.g. its certificate was refused) or :class:`WireError` (it sent
    something unacceptable and was cut off).  ``peer`` is the missing party
    when there is exactly one, else ``None``.
    """

    def __init__(self, message: str, missing: dict[int, MpcaiError]) -> None:
        super().__init__(message, next(iter(missing)) if len(missing) == 1 else None)
        self.missing = dict(missing)


_LOG_LINE_SHOWN = 300  # characters of each log line quoted in PartyFailed / LaunchError
_LOG_LINES_SHOWN = 40  # lines of each party's log in a LaunchError's message


def _clip_line(line: str) -> str:
    """``line``, cut to ``_LOG_LINE_SHOWN`` characters (saying how many were cut)."""
    if len(line) <= _LOG_LINE_SHOWN:
        return line
    return f"{line[:_LOG_LINE_SHOWN]}... ({len(line) - _LOG_LINE_SHOWN} more characters)"


class PartyFailed(MpcaiError, RuntimeError):
    """A party's OS process (see :mod:`mpcai.runtime.launcher`) did not deliver a result.

    ``party_id``: the party.  ``exit_status``: its exit code, ``-N`` if signal
    ``N`` killed it (see :attr:`signal`), ``None`` if unknown.  ``reason``: what
    happened, in words.  ``error_type``: the qualified name of the exception
    the party reported (e.g. ``"mpcai.errors.PeerDropped"``), if it reported
    one.  ``log``: its stderr (the launcher keeps only its end).  The message
    quotes the log's last 5 lines, each cut to ``_LOG_LINE_SHOWN`` characters.
    """

    def __init__(self, party_id: int, exit_status: int | None, log: str = "", *,
                 reason: str = "failed", error_type: str | None = None) -> None:
        tail = "\n".join(_clip_line(line) for line in log.rstrip().splitlines()[-5:])
        super().__init__(f"party {party_id} {reason}" + (f"\n{tail}" if tail else ""))
        self.party_id = party_id
        self.exit_status = exit_status
        self.reason = reason
        self.error_type = error_type
        self.log = log

    @property
    def signal(self) -> str | None:
        """The name of the signal that killed the process (``"SIGKILL"``), or ``None``."""
        import signal

        if self.exit_status is None or self.exit_status >= 0:
            return None
        try:
            return signal.Signals(-self.exit_status).name
        except ValueError:
            return f"signal {-self.exit_status}"

    def __repr__(self) -> str:
        return (f"PartyFailed(party_id={self.party_id}, exit_status={self.exit_status}, "
                f"reason={self.reason!r})")


class LaunchError(MpcaiError, RuntimeError):
    """Launched parties failed: ``failures[i]`` is party i's :class:`PartyFailed`,
    ``logs[i]`` every party's output (its end, see :mod:`mpcai.runtime.launcher`).
    ``first`` is the failed party that most likely caused the rest.

    The message's first line is that party's failure (``party 1 exited with status
    1: mpcai.errors.EncodingOverflow: cannot encode NaN ...``), the next line
    ``message`` (every failed party), then each log's last ``_LOG_LINES_SHOWN``
    lines (the first party's log first), each cut to ``_LOG_LINE_SHOWN`` characters.
    """

    def __init__(self, message: str, logs: dict[int, str],
                 failures: Mapping[int, PartyFailed] | None = None, *,
                 first: int | None = None) -> None:
        def tail(text: str) -> str:
            lines = text.rstrip().splitlines()
            cut = len(lines) - _LOG_LINES_SHOWN
            return "\n".join(([f"... ({cut} lines before)"] if cut > 0 else [])
                             + [_clip_line(line) for line in lines[-_LOG_LINES_SHOWN:]])

        failures = dict(failures or {})
        if first not in failures:
            first = min(failures) if failures else None
        order = sorted(logs, key=lambda pid: (pid != first, pid))
        shown = "\n".join(f"---- party {pid} ----\n{tail(logs[pid]) or '(no output)'}"
                          for pid in order)
        head = f"party {first} {failures[first].reason}\n" if first is not None else ""
        super().__init__(f"{head}{message}\n{shown}")
        self.logs = logs
        self.failures = failures
        self.first = first


class ProtocolAbort(MpcaiError, RuntimeError):
    """A protocol stopped because continuing would be unsafe or impossible."""


class NotEnoughSurvivors(ProtocolAbort):
    """Fewer parties than the protocol's threshold are still alive; no result is given."""


class ClippingWarning(MpcaiError, UserWarning):
    """Many values were clipped to the quantisation range before aggregation (the
    result is the mean of the clipped values): widen ``clip`` or send deltas."""


class MisbehaviourDetected(ProtocolAbort):
    """A participant cheated in a way that leaves no result (e.g. a dealer whose shares
    cannot be decoded); ``misbehaving`` names every client caught so far."""

    def __init__(self, message: str, misbehaving: list[int] | None = None) -> None:
        super().__init__(message)
        self.misbehaving = list(misbehaving or [])


class AggregateOutOfRange(ProtocolAbort):
    """An unmasked aggregate lies outside what honest inputs can produce (a total
    weight or a value beyond its bounds): a participant cheated; no result is given."""


class IllegalTransition(ProtocolAbort):
    """A protocol state machine was asked to move to a stage that may not follow this one."""


class InvalidTranscript(MpcaiError, ValueError):
    """An audit transcript (:mod:`mpcai.audit`) fails verification: altered, cut,
    badly signed, an illegal stage sequence, or disagreeing with a peer's.

    ``source`` names the transcript, ``entry`` the entry index (``None`` if the
    whole transcript is concerned).
    """

    def __init__(self, message: str, source: str | None = None,
                 entry: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.entry = entry


# --------------------------------------------------------------------------- homomorphic encryption


class KeyTooSmall(InvalidInput):
    """A Paillier modulus below :data:`~mpcai.he.paillier.MIN_KEY_BITS` bits was given or
    requested."""


class InvalidCiphertext(InvalidInput):
    """A ciphertext is not a unit of Z_{n^2} (0 < c < n^2, gcd(c, n) = 1) or has
    the wrong key, length or format."""


class SlotOverflow(EncodingOverflow):
    """A packed value is outside its slot's range, or a packed sum exceeds its
    declared number of summands K; nothing was written into a neighbouring slot."""


class MissingDependency(MpcaiError, ImportError):
    """An optional dependency is not installed; the message names the extra to install
    (e.g. ``pip install mpcai[dp]``)."""


class MissingSecretKey(MpcaiError, ValueError):
    """A decryption or key generation was asked of a context without the secret key."""


class DecryptionBudgetExceeded(MpcaiError, RuntimeError):
    """The key's budget of flooded decryptions is spent; the key must be retired."""
