"""The party runtime: parties, networks, the wire codec and statistics.

The same async party function runs with every party in one trio run
(:class:`InMemoryNetwork`, see :func:`run_local`) and as
separate processes over TCP with mutual TLS (:class:`TcpNetwork`, see
``mpcai party`` and :func:`mpcai.runtime.launcher.launch_local`).
Certificates: :mod:`mpcai.runtime.certs` (or ``mpcai certs``).
"""

from mpcai.runtime.local import LocalRun as LocalRun
from mpcai.runtime.local import run_local as run_local
from mpcai.runtime.local import run_local_async as run_local_async
from mpcai.runtime.memory import InMemoryNetwork as InMemoryNetwork
from mpcai.runtime.network import Link as Link
from mpcai.runtime.network import Network as Network
from mpcai.runtime.party import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from mpcai.runtime.party import Gathered as Gathered
from mpcai.runtime.party import Party as Party
from mpcai.runtime.party import open_party as open_party
from mpcai.runtime.stats import CommStats as CommStats
from mpcai.runtime.tcp import TcpListener as TcpListener
from mpcai.runtime.tcp import TcpNetwork as TcpNetwork
from mpcai.runtime.tcp import TlsCredentials as TlsCredentials
from mpcai.runtime.tcp import local_tcp_network as local_tcp_network
from mpcai.runtime.wire import Limits as Limits

__all__ = [
    "DEFAULT_TIMEOUT",
    "CommStats",
    "Gathered",
    "InMemoryNetwork",
    "Limits",
    "Link",
    "LocalRun",
    "Network",
    "Party",
    "TcpListener",
    "TcpNetwork",
    "TlsCredentials",
    "local_tcp_network",
    "open_party",
    "run_local",
    "run_local_async",
]
