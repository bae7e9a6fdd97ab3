"""Every dataset pack's Airflow DAGs: ``<pack>_ingest``, ``<pack>_train``, ``<pack>_monitor``,
``<pack>_retrain_on_drift`` and ``<pack>_rollback`` for each pack under ``$DRIFTLINE_PACKS``.

A pack is a directory with a ``pack.toml`` (see the README's pack reference); adding one needs
no change here.
"""

from driftline_provider.factory import render_pack_dags

globals().update(render_pack_dags())
