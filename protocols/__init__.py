"""Protocols built from mpcai primitives (installed as ``mpcai.protocols``)."""
