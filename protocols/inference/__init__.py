"""Private inference with secret sharing (work in progress: see the modules)."""

__all__: list[str] = []
