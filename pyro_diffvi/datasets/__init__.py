"""Offline datasets: MNIST and StackedMNIST, 1000 Genomes genotypes, simulated genotypes, 2-D toy data, posterior
test problems."""

from pyro_diffvi.datasets.genotypes import GenotypeData, load_1000_genomes
from pyro_diffvi.datasets.mnist import Minibatches, binarize_images, load_digits, load_mnist
from pyro_diffvi.datasets.posteriors import (
    PROBLEMS,
    PosteriorProblem,
    ProblemSpec,
    Quadrature,
    make_problem,
    posterior_quadrature,
)
from pyro_diffvi.datasets.simulate import simulate_genotypes
from pyro_diffvi.datasets.stacked_mnist import STACKED_MNIST_MODES, load_stacked_mnist, stacked_label
from pyro_diffvi.datasets.toy import POTENTIALS, TOY_DATASETS, potential, sample_toy

__all__: list[str] = [
    "GenotypeData",
    "POTENTIALS",
    "TOY_DATASETS",
    "Minibatches",
    "PROBLEMS",
    "PosteriorProblem",
    "ProblemSpec",
    "Quadrature",
    "STACKED_MNIST_MODES",
    "binarize_images",
    "load_1000_genomes",
    "load_digits",
    "load_mnist",
    "load_stacked_mnist",
    "make_problem",
    "posterior_quadrature",
    "potential",
    "sample_toy",
    "simulate_genotypes",
    "stacked_label",
]
