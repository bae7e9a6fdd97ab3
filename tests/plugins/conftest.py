"""The Kubernetes testbed for the provider's tests: the same session-wide testbed as
``tests/testbed/k8s`` (same module name, so one etcd + kube-apiserver per session); and a
trained bikes home for the per-pack retrain policy."""

import datetime as dt

import pytest
from testbed.k8s.fixtures import kube_testbed  # noqa: F401

from tests.helpers import PACKS, workspace_at

BIKES_MONTHS = (dt.date(2011, 1, 1), dt.date(2011, 2, 1))
BIKES_TRAINED_UNTIL = dt.date(2011, 2, 28)  # a window ends on its last interval's last day


@pytest.fixture(scope="session")
def bikes_trained_home(tmp_path_factory):
    """A driftline home with the bikes pack's Jan-Feb 2011 partitions and one bikes model
    (v0001, trained on both months: window end 2011-02-28)."""
    import numpy as np
    from driftline.packs import load_pack
    from driftline.training import train
    from driftline.versioning import DataRepo

    home = tmp_path_factory.mktemp("bikes-trained-home")
    ws = workspace_at(home, "bikes")
    pack = ws.pack
    rows = load_pack(PACKS / "bikes").load_source()
    dates = pack.local_dates(rows[pack.time_column])
    repo = DataRepo.of(ws)
    for first in BIKES_MONTHS:
        month = (dates >= np.datetime64(first)) & (dates < np.datetime64(pack.interval_end(first)))
        repo.write_partition(first, rows[month])
    train(ws, repo.head(), dt.date(2011, 1, 1), BIKES_TRAINED_UNTIL, reason="shared fixture")
    return home
