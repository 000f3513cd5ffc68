"""Evaluation: ELBO / IWAE, MMD, latent NLL, kNN accuracy, clustering scores, PSIS k-hat."""

__all__: list[str] = []
