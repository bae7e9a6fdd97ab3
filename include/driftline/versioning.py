"""The versioned data lake: one Parquet partition per data interval in a git + DVC
repository per pack.

A *data version* is the git commit of the data repository: it pins every partition's
content hash (the ``.dvc`` files), so training can read exactly what it was given with
:meth:`DataRepo.read_days`, here or in a pod that only has the git URL and the DVC remote.

Writes take an exclusive file lock on the repository: DVC and git both refuse concurrent
writers ("Unable to acquire lock"), and backfills run many days at once. Reads at a fixed
revision need no lock.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
from filelock import BaseFileLock, FileLock

from driftline.packs import Pack
from driftline.partitions import canonical_table, dvc_add_one, write_parquet

log = logging.getLogger(__name__)

PARTITION_ROOT = "partitions"
PARTITION_FILE = "data.parquet"


@dataclass(frozen=True)
class PartitionVersion:
    """What one stored partition is: its day, content hash, rows and data version."""

    day: str
    md5: str
    rows: int
    data_version: str
    path: str
    changed: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def canonical_frame(pack: Pack, df: pd.DataFrame) -> pd.DataFrame:
    """The pack's declared columns in spec order, text as strings and numbers as float64,
    duplicates dropped and rows sorted by the natural key: the same rows always hash the
    same. An optional column the file lacks is stored as missing.

    The definition of a partition's rows, in pandas; ingest builds the same rows faster with
    :func:`~driftline.partitions.canonical_table`."""
    out = pd.DataFrame(index=df.index)
    for column in pack.spec.columns:
        values = df[column] if column in df.columns else pd.Series(None, index=df.index,
                                                                   dtype=object)
        if pack.is_text(column):
            out[column] = values.astype("string")
        else:
            out[column] = pd.to_numeric(values).astype("float64")
    out = out.drop_duplicates()
    return out.sort_values(pack.sort_key, kind="stable",
                           na_position="last").reset_index(drop=True)


class DataRepo:
    """A git + DVC repository of daily partitions with a DVC remote.

    :param pack: the pack whose partitions the repository holds.
    :param root: the repository's working directory (created on first use), or a git URL
        (``https://``, ``ssh://``, ``file://``, ``git@host:path``) to read from: DVC clones it
        and reads the partitions from the remote its committed ``.dvc/config`` names, as a
        training pod does. A URL is read-only.
    :param remote_url: DVC remote, a local directory or ``s3://<bucket>/<prefix>``
        (:func:`check_remote_url`); an S3 remote's credentials and endpoint come from the
        environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
        ``AWS_ENDPOINT_URL_S3``), never from the repository's config.
    :param lock_path: file used to serialise writers; default next to ``root``.
    :raises ValueError: ``remote_url`` is neither (:func:`check_remote_url`).
    """

    def __init__(self, pack: Pack, root: Path | str, remote_url: str,
                 lock_path: Path | None = None):
        self.pack = pack
        self.url = str(root) if is_git_url(root) else None
        self.root = Path(root).absolute() if self.url is None else None
        self.remote_url = check_remote_url(remote_url)
        self.lock = None if self.root is None else FileLock(
            str(lock_path or self.root.with_name(self.root.name + ".lock")), timeout=900)

    @classmethod
    def of(cls, ws, root: Path | str | None = None) -> DataRepo:
        """The data repository of a :class:`~driftline.workspace.Workspace`.

        :param root: another checkout of it, or its git URL (a pod's view); default the
            workspace's.
        """
        return cls(ws.pack, root or ws.data_repo, ws.dvc_remote)

    def _require_checkout(self) -> Path:
        if self.root is None:
            raise ValueError(f"data repository {self.url} is a git URL, read-only here: "
                             "partitions are written in a local checkout")
        return self.root

    def _writer_lock(self) -> BaseFileLock:
        """The lock that serialises writers of the local checkout."""
        root = self._require_checkout()
        if self.lock is None:  # __init__ makes one for every local checkout
            raise ValueError(f"data repository {root} has no writer lock")
        return self.lock

    # -- setup -------------------------------------------------------------------------
    def _git(self, *args: str) -> str:
        result = subprocess.run(["git", "-C", str(self.root), *args], check=True,
                                capture_output=True, text=True)
        return result.stdout.strip()

    def ensure(self) -> None:
        """Create the repository and its remote if they do not exist yet (idempotent)."""
        root = self._require_checkout()
        with self._writer_lock():
            if (root / ".dvc").is_dir():
                return
            from dvc.repo import Repo

            root.mkdir(parents=True, exist_ok=True)
            if not (root / ".git").exists():
                self._git("init", "-q", "-b", "main")
            self._git("config", "user.name", "driftline")
            self._git("config", "user.email", "driftline@localhost")
            if "://" not in self.remote_url:
                Path(self.remote_url).mkdir(parents=True, exist_ok=True)
            with Repo.init(str(root)) as repo, repo.config.edit() as conf:
                conf["remote"]["storage"] = {"url": self.remote_url}
                conf["core"]["remote"] = "storage"
                conf["core"]["autostage"] = True
            self._git("add", "-A")
            self._git("commit", "-q", "-m", "Initialise driftline data repository")
            log.info("initialised data repository %s with remote %s", root, self.remote_url)

    # -- writing -----------------------------------------------------------------------
    def partition_path(self, start: dt.date) -> Path:
        """The partition of the data interval starting on ``start``."""
        partition = f"date={start.isoformat()}"
        return self._require_checkout() / PARTITION_ROOT / partition / PARTITION_FILE

    def head(self) -> str:
        """The newest data version."""
        return self._git("rev-parse", "HEAD")

    def resolve(self, data_version: str) -> str | None:
        """The full commit of a data version (a commit or its prefix); None if no such
        commit exists."""
        result = subprocess.run(["git", "-C", str(self._require_checkout()), "rev-parse",
                                 "--verify", "--quiet", f"{data_version}^{{commit}}"],
                                capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    def write_partition(self, day: dt.date, rows: pd.DataFrame) -> PartitionVersion:
        """Store one day's rows as its partition, version it and push it to the remote.

        Rerunning with the same rows changes nothing and returns the same hash.
        The partition file is replaced atomically; nothing is committed if a step fails.
        """
        return self.store(day, canonical_table(self.pack, rows))

    def store(self, day: dt.date, table: pa.Table) -> PartitionVersion:
        """Store canonical rows (:func:`~driftline.partitions.canonical_table`) as the
        partition of ``day``: write, version and push it, commit if it changed.

        :param day: the data interval's first day.
        :param table: the rows, canonical already.
        """
        self.ensure()
        target = self.partition_path(day)
        with self._writer_lock():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(table, target)
            md5 = dvc_add_one(self._require_checkout(), target)
            dvc_file = target.with_name(target.name + ".dvc")
            self._git("add", str(dvc_file), str(target.parent / ".gitignore"))
            changed = bool(self._git("status", "--porcelain", "--", str(target.parent)))
            if changed:
                self._git("commit", "-q", "-m",
                          f"Ingest {self.pack.name} {day.isoformat()}: {table.num_rows} rows")
            version = PartitionVersion(day=day.isoformat(), md5=md5, rows=table.num_rows,
                                       data_version=self.head(), path=str(target),
                                       changed=changed)
        log.info("partition %s: %d rows, md5 %s, data version %s (%s)", day, table.num_rows,
                 md5, version.data_version[:12], "new commit" if changed else "unchanged")
        return version

    # -- reading -----------------------------------------------------------------------
    def _fs(self, data_version: str):
        from dvc.api import DVCFileSystem

        return DVCFileSystem(self.url or str(self.root), rev=data_version)

    def list_days(self, data_version: str, fs=None) -> list[dt.date]:
        """Days that have a partition at ``data_version``."""
        fs = fs or self._fs(data_version)
        days = []
        for entry in fs.ls(f"/{PARTITION_ROOT}", detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name.startswith("date="):
                days.append(dt.date.fromisoformat(name[len("date="):]))
        return sorted(days)

    def read_days(self, data_version: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        """All rows of the partitions whose interval starts in ``[start, end]`` (inclusive),
        exactly as of ``data_version``.

        :raises LookupError: no partition of that range exists at that version.
        """
        fs = self._fs(data_version)
        days = [d for d in self.list_days(data_version, fs) if start <= d <= end]
        if not days:
            raise LookupError(f"data version {data_version[:12]} has no partition between "
                              f"{start} and {end}")
        frames = []
        for day in days:
            with fs.open(f"/{PARTITION_ROOT}/date={day.isoformat()}/{PARTITION_FILE}") as fh:
                frames.append(pd.read_parquet(fh))
        log.info("read %d partitions (%s .. %s) at data version %s", len(days), days[0],
                 days[-1], data_version[:12])
        return pd.concat(frames, ignore_index=True)


def check_remote_url(url: str) -> str:
    """``url`` if it can be the data repository's DVC remote: a local directory or
    ``s3://<bucket>[/<prefix>]`` (what the installed DVC plugins read).

    The URL is committed in ``.dvc/config``, so it may hold no credentials.

    :raises ValueError: another scheme, no bucket, or a user, password or query in the URL
        (then the URL is not repeated in the message).
    """
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" in parts.netloc or parts.query:
        raise ValueError("DVC remote URL holds credentials or options: expected "
                         "s3://<bucket>/<prefix>, with the access key and secret in the "
                         "environment (the driftline connection's login and password)")
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"DVC remote {url!r}: expected a directory or s3://<bucket>/<prefix>")
    return url


def is_git_url(location: Path | str) -> bool:
    """Whether ``location`` is a git URL rather than a local path (``Path`` would turn
    ``https://host/repo.git`` into the relative path ``https:/host/repo.git``)."""
    if isinstance(location, Path):
        return False
    return "://" in location or bool(re.match(r"^[\w.-]+@[\w.-]+:", location))

