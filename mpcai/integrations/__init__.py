"""Integrations with the frameworks users already run: :mod:`mpcai.integrations.flower`
(secure aggregation in Flower's Message API).  Each imports its framework only when
it is itself imported."""

__all__: list[str] = []
