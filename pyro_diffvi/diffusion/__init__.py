"""Variance schedules, the Gaussian forward process and denoiser networks."""

__all__: list[str] = []
