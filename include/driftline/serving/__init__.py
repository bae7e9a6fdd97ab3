"""Online serving: a model server per slot, nginx in front, blue-green switching.

* :mod:`driftline.serving.app` -- the FastAPI model server (``python -m driftline.serving.app``).
* :mod:`driftline.serving.prediction_log` -- served rows as JSON lines, read back by the monitor.
* :mod:`driftline.serving.router` -- one nginx for every pack: ``/<pack>/...`` goes to that
  pack's ``run/live.sock``.
* :mod:`driftline.serving.bluegreen` -- deploy, switch and roll back one pack's two slots.

The layout under ``settings.serving_dir`` is in :mod:`driftline.serving.paths`.
"""
