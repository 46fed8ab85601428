"""Benchmarks of mpcai against its peers (installed as ``mpcai.benchmarks``)."""
