"""Online serving: a model server per slot, nginx in front, blue-green switching.

* :mod:`driftline.serving.app` -- the FastAPI model server (``python -m driftline.serving.app``).
* :mod:`driftline.serving.prediction_log` -- served rows as JSON lines, read back by the monitor.
* :mod:`driftline.serving.router` -- nginx on the router port, proxying to ``run/live.sock``.
* :mod:`driftline.serving.bluegreen` -- deploy, switch and roll back between the two slots.

Layout under ``settings.serving_dir``::

    state.json                      live slot, each slot's version and pid, switch history
    run/blue.sock, run/green.sock   each slot's unix socket
    run/live.sock -> blue.sock      the symlink nginx connects through (the switch)
    nginx/nginx.conf                the router's configuration, pid, logs and temp paths
    logs/blue.log, logs/green.log   each slot server's stdout and stderr
    predictions/date=YYYY-MM-DD/<slot>-<pid>.jsonl   the prediction log
"""
