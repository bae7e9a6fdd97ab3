"""Shared real data of the bikes pack for the DAG runs (the flights data is in
``tests/conftest.py``)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.helpers import workspace_at

BIKES_MONTHS = [dt.date(2011, month, 1) for month in range(1, 7)]  # Jan-Jun 2011


@pytest.fixture(scope="session")
def bikes_rentals():
    """Every hour of the bikes pack's source (UCI bike sharing, 2011-2012)."""
    from driftline.packs import load_pack

    from tests.helpers import PACKS

    return load_pack(PACKS / "bikes").load_source()


@pytest.fixture(scope="session")
def bikes_data_home(tmp_path_factory, bikes_rentals):
    """A driftline home with the bikes pack's Jan-Jun 2011 partitions in a real DVC repo."""
    import numpy as np
    from driftline.versioning import DataRepo

    home = tmp_path_factory.mktemp("bikes-home")
    ws = workspace_at(home, "bikes")
    pack = ws.pack
    repo = DataRepo.of(ws)
    dates = pack.local_dates(bikes_rentals[pack.time_column])
    for first in BIKES_MONTHS:
        month = (dates >= np.datetime64(first)) & (dates < np.datetime64(pack.interval_end(first)))
        repo.write_partition(first, bikes_rentals[month])
    return home
