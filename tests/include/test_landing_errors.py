"""An unreadable landing file's message names the file, never where it lives (messages
reach task logs, reason files and the UI)."""

from __future__ import annotations

import shutil

import pytest
from driftline.landing import read_landing_file
from driftline.packs import load_pack

from tests.helpers import PACKS


@pytest.fixture
def parquet_pack(tmp_path):
    """The flights pack with Parquet landing files."""
    target = tmp_path / "packs" / "flights"
    shutil.copytree(PACKS / "flights", target)
    spec = target / "pack.toml"
    spec.write_text(spec.read_text().replace('pattern = "flights_{date}.csv"',
                                             'pattern = "flights_{date}.parquet"'))
    pack = load_pack(target)
    assert pack.spec.landing.format == "parquet"
    return pack


@pytest.mark.parametrize("content", [b"PAR1\x00\x01garbage", b"", b"a,b\n1,2\n"])
def test_an_unreadable_files_message_has_no_directory(tmp_path, parquet_pack, content):
    path = tmp_path / "deep" / "landing" / "flights_2013-01-01.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        read_landing_file(parquet_pack, path)
    message = str(err.value)
    assert message.startswith("flights_2013-01-01.parquet: not a readable parquet file: ")
    assert str(tmp_path) not in message


def test_an_os_errors_path_is_replaced_by_the_files_name(tmp_path):
    path = tmp_path / "deep" / "landing" / "flights_2013-01-01.csv"
    path.mkdir(parents=True)  # a directory where the file should be: IsADirectoryError
    with pytest.raises(ValueError) as err:
        read_landing_file(load_pack(PACKS / "flights"), path)
    message = str(err.value)
    assert message == ("flights_2013-01-01.csv: not a readable csv file: [Errno 21] Is a "
                       "directory: 'flights_2013-01-01.csv'")
