"""Offline datasets: MNIST, 1000 Genomes genotypes, simulated genotypes, 2-D toy data."""

__all__: list[str] = []
