"""Simulated diploid genotypes under demographic models fitted to 1000 Genomes populations.

Uses ``msprime`` (Baumdicker et al., 2022) through ``stdpopsim`` (Adrion et al., 2020; the
``popgen`` extra: ``pip install 'pyro-diffvi[popgen]'``), fully offline: a stretch of human chr22
with a uniform recombination rate (the chromosome's mean; no genetic map is downloaded) and the
model's own mutation rate. Only biallelic sites passing a minor-allele-frequency filter are kept,
read by streaming ``ts.variants()`` so memory stays proportional to the kept SNPs rather than to
the dense genotype matrix.

The demographic models are stdpopsim's ``HomSap`` models ``OutOfAfrica_3G09`` (Gutenkunst et al.,
2009), ``OutOfAfrica_4J17`` (Jouganous et al., 2017) and ``AmericanAdmixture_4B18`` (Browning et
al., 2018).

References:

- F. Baumdicker, G. Bisschop, D. Goldstein, et al. *Efficient ancestry and mutation
  simulation with msprime 1.0*. Genetics 220(3):iyab229, 2022.
- J. R. Adrion, C. B. Cole, N. Dukler, et al. *A community-maintained standard library of
  population genetic models*. eLife 9:e54967, 2020.
- R. N. Gutenkunst, R. D. Hernandez, S. H. Williamson, C. D. Bustamante. *Inferring the joint
  demographic history of multiple populations from multidimensional SNP frequency data*.
  PLoS Genetics 5(10):e1000695, 2009.
- J. Jouganous, W. Long, A. P. Ragsdale, S. Gravel. *Inferring the joint demographic history of
  multiple populations: beyond the diffusion approximation*. Genetics 206(3):1549-1567, 2017.
- S. R. Browning, B. L. Browning, M. L. Daviglus, R. A. Durazo-Arvizu, N. Schneiderman,
  R. C. Kaplan, C. C. Laurie. *Ancestry-specific recent effective population size in the
  Americas*. PLoS Genetics 14(5):e1007385, 2018.
"""

from __future__ import annotations

import numpy as np
import torch

from pyro_diffvi.datasets.files import check_float_dtype, data_device
from pyro_diffvi.datasets.genotypes import GenotypeData, encode_labels
from pyro_diffvi.util import check_positive_int

SPECIES = "HomSap"
CHROMOSOME = "chr22"
DEFAULT_LEFT = 20_000_000
SUPERPOPULATIONS = ("AFR", "AMR", "EAS", "EUR", "SAS")
# Sampled populations of each supported model and their 1000 Genomes superpopulation.
MODELS: dict[str, dict[str, str]] = {
    "OutOfAfrica_3G09": {"YRI": "AFR", "CEU": "EUR", "CHB": "EAS"},
    "OutOfAfrica_4J17": {"YRI": "AFR", "CEU": "EUR", "CHB": "EAS", "JPT": "EAS"},
    "AmericanAdmixture_4B18": {"AFR": "AFR", "EUR": "EUR", "ASIA": "EAS", "ADMIX": "AMR"},
}


def _import_popgen():
    try:
        import msprime  # noqa: F401  (stdpopsim's engine)
        import stdpopsim
    except ImportError as error:
        raise ImportError(
            "simulate_genotypes needs msprime and stdpopsim: pip install 'pyro-diffvi[popgen]'"
        ) from error
    return stdpopsim


def _sample_counts(model: str, samples_per_population: int | dict[str, int]) -> dict[str, int]:
    populations = MODELS[model]
    if isinstance(samples_per_population, dict):
        unknown = sorted(set(samples_per_population) - set(populations))
        if unknown:
            raise ValueError(
                f"samples_per_population has populations {unknown} not in {model}; "
                f"valid: {list(populations)}"
            )
        counts = dict(samples_per_population)
    else:
        counts = {name: samples_per_population for name in populations}
    for name, count in counts.items():
        check_positive_int(f"samples_per_population[{name!r}]", count)
    return counts


def _check_arguments(model: str, length: int, left: int, maf: float, seed: int) -> None:
    if model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
    check_positive_int("length", length)
    check_positive_int("left", left, minimum=0)
    check_positive_int("seed", seed, minimum=0)
    if isinstance(maf, bool) or not isinstance(maf, (int, float)) or not 0.0 <= maf < 0.5:
        raise ValueError(f"maf must be in [0, 0.5), got {maf!r}")


def diploid_dosages(ts, maf: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Stream the biallelic sites of a tree sequence ``ts`` into diploid dosages, keeping the SNPs whose minor-allele
    frequency is at least ``maf``.

    :param ts: an ``msprime`` tree sequence whose individuals each consist of two sample nodes.
    :param maf: the smallest minor-allele frequency kept.
    :return: ``(dosages (N, P) uint8, individual -> population id, SNP ids)``.
    """
    sample_index = np.full(ts.num_nodes, -1, dtype=np.int64)
    sample_index[ts.samples()] = np.arange(ts.num_samples)
    nodes = sample_index[ts.individuals_nodes]  # (num_individuals, 2) rows of the genotype vector
    if (nodes < 0).any():
        raise RuntimeError("every simulated individual must consist of two sample nodes")
    num_individuals = nodes.shape[0]
    columns, snp_ids = [], []
    for variant in ts.variants():
        if len(variant.alleles) != 2 or variant.has_missing_data:
            continue
        dosage = variant.genotypes[nodes].sum(axis=1)
        frequency = dosage.sum() / (2 * num_individuals)
        if min(frequency, 1.0 - frequency) >= maf and 0 < frequency < 1:
            columns.append(dosage.astype(np.uint8))
            snp_ids.append(f"{CHROMOSOME}:{int(variant.site.position)}")
    dosages = np.stack(columns, axis=1) if columns else np.zeros((num_individuals, 0), np.uint8)
    return dosages, ts.individuals_population, snp_ids


def simulate_genotypes(
    model: str = "OutOfAfrica_3G09",
    *,
    samples_per_population: int | dict[str, int] = 50,
    length: int = 1_000_000,
    maf: float = 0.05,
    seed: int = 0,
    left: int = DEFAULT_LEFT,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> GenotypeData:
    """Simulate diploid genotypes with msprime under a stdpopsim model fitted to 1000 Genomes data.

    The contig is ``chr22[left, left + length)`` with the chromosome's mean recombination rate and
    the model's mutation rate. Sites that are not biallelic or whose minor-allele frequency in the
    sample is below ``maf`` are dropped. Dosages count derived alleles. The result is reproducible
    for a given ``seed`` (which seeds both ancestry and mutations).

    :param model: ``"OutOfAfrica_3G09"`` (YRI, CEU, CHB), ``"OutOfAfrica_4J17"`` (YRI, CEU, CHB, JPT)
        or ``"AmericanAdmixture_4B18"`` (AFR, EUR, ASIA, ADMIX).
    :param samples_per_population: diploid individuals per population, one int for all or a dict
        ``{population: count}`` (populations left out are not sampled).
    :param length: contig length in base pairs.
    :param maf: minimum minor-allele frequency in ``[0, 0.5)``.
    :param seed: a non-negative random seed.
    :param left: start of the contig on chr22 (bp).
    :param device: where the tensors go (default CPU).
    :param dtype: floating-point dtype of the dosages.
    :return: a :class:`GenotypeData` whose population codes index the sampled populations in model
        order and whose superpopulations are the 1000 Genomes continental groups.

    Example:

    >>> from pyro_diffvi.datasets import simulate_genotypes
    >>> data = simulate_genotypes("OutOfAfrica_3G09", samples_per_population=5, length=100_000, seed=0)
    >>> data.num_individuals, data.population_names, data.population.tolist()
    (15, ('YRI', 'CEU', 'CHB'), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    >>> data.num_snps > 0, sorted(data.dosages.unique().tolist()) == [0.0, 1.0, 2.0]
    (True, True)
    """
    _check_arguments(model, length, left, maf, seed)
    counts = _sample_counts(model, samples_per_population)
    check_float_dtype(dtype)
    target = data_device(device)
    stdpopsim = _import_popgen()
    species = stdpopsim.get_species(SPECIES)
    demography = species.get_demographic_model(model)
    contig = species.get_contig(
        CHROMOSOME, left=left, right=left + length, mutation_rate=demography.mutation_rate
    )
    engine = stdpopsim.get_engine("msprime")
    msprime_seed = int(np.random.default_rng(int(seed)).integers(1, 2**32))  # msprime needs [1, 2**32)
    ts = engine.simulate(demography, contig, counts, seed=msprime_seed)
    dosages, population_ids, snp_ids = diploid_dosages(ts, maf)
    names = [ts.population(int(p)).metadata["name"] for p in population_ids]
    population, population_names = encode_labels(names, categories=tuple(p for p in MODELS[model] if p in counts))
    superpopulation, _ = encode_labels([MODELS[model][n] for n in names], categories=SUPERPOPULATIONS)
    return GenotypeData(
        dosages=torch.tensor(dosages, dtype=dtype, device=target),
        population=torch.tensor(population, device=target),
        population_names=population_names,
        superpopulation=torch.tensor(superpopulation, device=target),
        superpopulation_names=SUPERPOPULATIONS,
        sample_ids=tuple(f"{n}_{i}" for i, n in enumerate(names)),
        snp_ids=tuple(snp_ids),
    )
