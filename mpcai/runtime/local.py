"""Run every party of a computation in one process (one trio run, in-memory network).

:func:`run_local` is how protocols simulate a round (``simulate`` in
:mod:`mpcai.protocols.secure_aggregation`) and how tests run parties; it is
re-exported by :mod:`mpcai.testing`.  The same party functions run as
processes over TCP with :func:`mpcai.runtime.launcher.launch_local` or
``mpcai party``::

    async def add_up(party, value):
        others = await party.exchange("value", value)
        return value + sum(others.values())

    run_local(3, add_up, args_per_party=[(1,), (2,), (3,)])   # -> [6, 6, 6]
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from mpcai.errors import InvalidInput, PeerError
from mpcai.runtime import wire
from mpcai.runtime.memory import InMemoryNetwork
from mpcai.runtime.network import Network
from mpcai.runtime.party import DEFAULT_TIMEOUT, open_party
from mpcai.runtime.stats import CommStats
from mpcai.validation import check_int

if TYPE_CHECKING:
    from mpcai.audit import Transcript

__all__ = ["LocalRun", "run_local", "run_local_async"]

PartyFn = Callable[..., Awaitable[Any]]


class LocalRun(list):
    """The results of :func:`run_local` (a list, in party order) plus ``stats``.

    ``stats[i]`` is party ``i``'s :class:`~mpcai.runtime.CommStats`.
    """

    stats: list[CommStats]


async def run_local_async(
    n: int,
    party_fn: PartyFn,
    *args: Any,
    args_per_party: Sequence[Sequence[Any]] | None = None,
    network: Network | None = None,
    session: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    return_exceptions: bool = False,
    transcripts: Sequence[Transcript | None] | None = None,
) -> LocalRun:
    """Async form of :func:`run_local`, for use inside a running trio program."""
    n = check_int(n, "n", lo=1)
    if args_per_party is not None and len(args_per_party) != n:
        raise InvalidInput(f"args_per_party has {len(args_per_party)} entries for {n} parties")
    if transcripts is not None and len(transcripts) != n:
        raise InvalidInput(f"transcripts has {len(transcripts)} entries for {n} parties")
    net = network if network is not None else InMemoryNetwork(n)
    ids = net.party_ids
    if len(ids) != n:
        raise InvalidInput(f"the network has {len(ids)} parties, not {n}")
    session = session if session is not None else secrets.token_bytes(wire.SESSION_ID_BYTES)
    results: list[Any] = [None] * n
    stats: list[CommStats] = [CommStats() for _ in range(n)]
    errors: list[BaseException | None] = [None] * n
    order: list[int] = []  # the failed parties, in the order they failed

    async def one(k: int, pid: int) -> None:
        extra = tuple(args_per_party[k]) if args_per_party is not None else ()
        try:
            async with open_party(net, pid, session, timeout=timeout,
                                  transcript=None if transcripts is None
                                  else transcripts[k]) as party:
                stats[k] = party.stats
                results[k] = await party_fn(party, *args, *extra)
        except Exception as exc:  # one party failing must not cancel the others
            errors[k] = exc
            order.append(k)

    async with trio.open_nursery() as nursery:
        for k, pid in enumerate(ids):
            nursery.start_soon(one, k, pid)

    if not return_exceptions and order:
        # the root cause: the first party whose own code failed (not a PeerError, which
        # is what the others see of it), else the first to fail
        k = next((k for k in order if not isinstance(errors[k], PeerError)), order[0])
        err = errors[k]
        assert err is not None
        err.add_note(f"(raised by party {ids[k]})")
        others = [f"{ids[j]} ({type(errors[j]).__name__})" for j in order if j != k]
        if others:
            err.add_note(f"(parties that failed after it: {', '.join(others)})")
        raise err
    out = LocalRun(err if err is not None else res for res, err in zip(results, errors,
                                                                         strict=True))
    out.stats = stats
    return out


def run_local(
    n: int,
    party_fn: PartyFn,
    *args: Any,
    args_per_party: Sequence[Sequence[Any]] | None = None,
    network: Network | None = None,
    session: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    return_exceptions: bool = False,
    clock: trio.abc.Clock | None = None,
    transcripts: Sequence[Transcript | None] | None = None,
) -> LocalRun:
    """Run ``n`` parties of ``party_fn(party, *args, *args_per_party[i])`` in one process.

    Every party is connected to every other over an in-memory network (or
    ``network``).  Returns the results in party order, with per-party
    communication statistics in ``.stats``.  If a party raises, the others
    keep going (they see it drop out); then the root cause is re-raised (the
    error of the first party whose own code failed, rather than the
    :class:`~mpcai.errors.PeerError` the others saw of it; a note names the party
    and those that failed after it),
    or, with ``return_exceptions=True``, returned in its party's place.
    ``clock`` is passed to :func:`trio.run` (e.g. ``trio.testing.MockClock``
    to test deadlines without waiting).  ``transcripts[k]`` (a
    :class:`~mpcai.audit.Transcript` or ``None``) records the ``k``-th party's run.
    """
    return trio.run(
        lambda: run_local_async(
            n, party_fn, *args, args_per_party=args_per_party, network=network,
            session=session, timeout=timeout, return_exceptions=return_exceptions,
            transcripts=transcripts,
        ),
        clock=clock,
    )


