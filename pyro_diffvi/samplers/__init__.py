"""MCMC samplers: Langevin (ULA, MALA), Gibbs-Langevin, annealed importance sampling."""

__all__: list[str] = []
