"""Helpers a user's own tests need too: run parties in one process, inject faults.

:func:`run_local` (from :mod:`mpcai.runtime`) runs ``n`` copies of an async
party function, each connected to the others over an
:class:`~mpcai.runtime.InMemoryNetwork`, and returns their results::

    async def add_up(party, value):
        others = await party.exchange("value", value)
        return value + sum(others.values())

    run_local(3, add_up, args_per_party=[(1,), (2,), (3,)])   # -> [6, 6, 6]

:class:`FaultyNetwork` wraps a network to make chosen parties crash, stall or
send garbage at chosen points (:class:`Fault`).
"""

from mpcai.runtime.local import LocalRun as LocalRun
from mpcai.runtime.local import run_local as run_local
from mpcai.runtime.local import run_local_async as run_local_async
from mpcai.testing.faults import Fault as Fault
from mpcai.testing.faults import FaultyNetwork as FaultyNetwork

__all__ = ["Fault", "FaultyNetwork", "LocalRun", "run_local", "run_local_async"]
