"""``python -m pyro_diffvi``: the main demo (see :mod:`pyro_diffvi.demo`)."""

from pyro_diffvi.demo import main

if __name__ == "__main__":
    main()
