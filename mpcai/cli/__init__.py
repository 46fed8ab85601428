"""The ``mpcai`` command line (``mpcai demo``, ``mpcai party``, ``mpcai certs``,
``mpcai bench``) and the code only it runs: the demos (:mod:`mpcai.cli._demo`)
and declarative deployments (:mod:`mpcai.cli._deploy`, ``mpcai party --config
deploy.toml``).  This package, :mod:`mpcai.integrations` and
:mod:`mpcai.benchmarks` are the only parts of ``mpcai`` that import
:mod:`mpcai.protocols`.
"""

from mpcai.cli._main import main as main

__all__ = ["main"]
