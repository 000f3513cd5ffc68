"""Structured priors with exact log densities: Pinwheel, SwissRoll, Square, Gaussian mixtures."""

__all__: list[str] = []
