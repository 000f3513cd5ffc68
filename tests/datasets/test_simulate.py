import sys

import msprime
import numpy as np
import pytest
import torch

from pyro_diffvi.datasets import simulate_genotypes
from pyro_diffvi.datasets.simulate import diploid_dosages

LENGTH = 200_000


def _minor_allele_frequency(dosages: torch.Tensor) -> torch.Tensor:
    frequency = dosages.double().mean(0) / 2
    return torch.minimum(frequency, 1 - frequency)


def test_shape_values_maf_and_populations():
    data = simulate_genotypes(
        "OutOfAfrica_3G09", samples_per_population=10, length=LENGTH, maf=0.05, seed=1
    )
    assert data.dosages.shape[0] == 30 and data.dosages.shape[1] > 50
    assert set(data.dosages.unique().tolist()) <= {0.0, 1.0, 2.0}
    assert _minor_allele_frequency(data.dosages).min() >= 0.05
    assert data.population_names == ("YRI", "CEU", "CHB")
    assert torch.bincount(data.population).tolist() == [10, 10, 10]
    names = [data.superpopulation_names[k] for k in data.superpopulation.tolist()]
    assert names == ["AFR"] * 10 + ["EUR"] * 10 + ["EAS"] * 10
    positions = [int(snp.split(":")[1]) for snp in data.snp_ids]
    assert positions == sorted(positions) and 20_000_000 <= positions[0] and positions[-1] < 20_000_000 + LENGTH


def test_seeds_reproduce_and_differ():
    a = simulate_genotypes("OutOfAfrica_3G09", samples_per_population=5, length=LENGTH, seed=7)
    b = simulate_genotypes("OutOfAfrica_3G09", samples_per_population=5, length=LENGTH, seed=7)
    c = simulate_genotypes("OutOfAfrica_3G09", samples_per_population=5, length=LENGTH, seed=8)
    assert torch.equal(a.dosages, b.dosages) and a.snp_ids == b.snp_ids
    assert a.snp_ids != c.snp_ids


def test_stricter_maf_keeps_a_subset_of_the_same_sites():
    loose = simulate_genotypes("OutOfAfrica_3G09", samples_per_population=5, length=LENGTH, maf=0.0, seed=3)
    strict = simulate_genotypes("OutOfAfrica_3G09", samples_per_population=5, length=LENGTH, maf=0.2, seed=3)
    columns = [loose.snp_ids.index(snp) for snp in strict.snp_ids]
    assert torch.equal(loose.dosages[:, columns], strict.dosages)
    kept = (_minor_allele_frequency(loose.dosages) >= 0.2).sum().item()
    assert kept == strict.num_snps


@pytest.mark.parametrize(
    "model, counts, names, superpopulations",
    [
        ("OutOfAfrica_4J17", {"JPT": 3, "YRI": 4}, ("YRI", "JPT"), ["AFR"] * 4 + ["EAS"] * 3),
        ("AmericanAdmixture_4B18", {"ADMIX": 4, "EUR": 2}, ("EUR", "ADMIX"), ["EUR"] * 2 + ["AMR"] * 4),
    ],
)
def test_other_models_and_per_population_counts(model, counts, names, superpopulations):
    data = simulate_genotypes(model, samples_per_population=counts, length=100_000, seed=2)
    assert data.population_names == names
    assert torch.bincount(data.population).tolist() == [counts[n] for n in names]
    assert [data.superpopulation_names[k] for k in data.superpopulation.tolist()] == superpopulations


def test_streamed_dosages_match_dense_genotype_matrix():
    # An msprime tree sequence with multi-allelic sites (JC69 on a discrete genome, high rate).
    ts = msprime.sim_ancestry(samples=6, sequence_length=20_000, recombination_rate=1e-8,
                              population_size=10_000, random_seed=5)
    ts = msprime.sim_mutations(ts, rate=5e-7, random_seed=5)
    states = [len({s.ancestral_state, *(m.derived_state for m in s.mutations)}) for s in ts.sites()]
    assert max(states) > 2  # the biallelic filter is exercised
    haplotypes = ts.genotype_matrix()  # (sites, 12); individual i owns sample nodes 2i, 2i + 1
    assert np.array_equal(ts.individuals_nodes, np.arange(12).reshape(6, 2))
    dosages = haplotypes[:, 0::2] + haplotypes[:, 1::2]
    frequency = dosages.sum(1) / 12
    keep = (np.array(states) == 2) & (np.minimum(frequency, 1 - frequency) >= 0.1)
    assert 0 < keep.sum() < len(states)
    streamed, population_ids, snp_ids = diploid_dosages(ts, maf=0.1)
    np.testing.assert_array_equal(streamed, dosages[keep].T)
    assert len(snp_ids) == keep.sum() and population_ids.shape == (6,)


def test_device_and_dtype(device):
    data = simulate_genotypes(
        "OutOfAfrica_3G09", samples_per_population=2, length=50_000, seed=1, device=device, dtype=torch.float64
    )
    assert data.dosages.device.type == device.type and data.dosages.dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="OutOfAfrica_9X99"), "model must be one of .*OutOfAfrica_3G09.*AmericanAdmixture_4B18"),
        (dict(samples_per_population=0), "samples_per_population.* must be an integer >= 1"),
        (dict(samples_per_population={"YRI": -2}), "must be an integer >= 1"),
        (dict(samples_per_population={"JPT": 2}), r"populations \['JPT'\] not in OutOfAfrica_3G09"),
        (dict(length=-5), "length must be an integer >= 1"),
        (dict(maf=0.5), r"maf must be in \[0, 0.5\)"),
        (dict(seed=-1), "seed must be an integer >= 0"),
        (dict(dtype=torch.int32), "dtype must be a floating-point"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate_genotypes(**{"length": 10_000, **kwargs})


def test_missing_popgen_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "stdpopsim", None)
    with pytest.raises(ImportError, match=r"pip install 'pyro-diffvi\[popgen\]'"):
        simulate_genotypes(samples_per_population=2, length=10_000)
