"""Blue-green serving of one dataset pack on Kubernetes (``[serving] backend =
"kubernetes"``).

Objects, all in ``[serving_kubernetes] namespace``, named ``<service>-<pack>-<role>`` (the
pack's name with ``_`` as ``-``; every name ends in one role, so two packs' names never
collide) and labelled ``app.kubernetes.io/name=<service>`` and ``driftline.io/pack=<pack>``:

* Deployments ``<service>-<pack>-blue`` and ``-green``: ``replicas`` pods running
  ``python -m driftline.serving.app --pack <pack> --slot <slot> --version <v> --host 0.0.0.0
  --port <p>`` from ``image`` (``p``: ``[serving_kubernetes] blue_port``/``green_port``, both
  8080 by default), labelled ``driftline.io/slot`` and ``driftline.io/model-version``.
  Readiness is ``GET /ready``, liveness ``GET /health`` (with a startup probe for the model
  load); non-root, seccomp ``RuntimeDefault``, no privilege escalation, all capabilities
  dropped, read-only root filesystem. ``DRIFTLINE_HOME`` is ``home``: the ``home_pvc`` mounted
  read-only, except the pack's prediction log directory; ``DRIFTLINE_PACKS`` is
  ``packs_dir`` (the image ships the packs there); ``config_map``'s ``driftline.toml`` is
  ``DRIFTLINE_CONFIG``. The idle slot takes no traffic, so its Deployments use the
  ``Recreate`` strategy.
* Services ``<service>-<pack>-blue``/``-green`` (one per slot, for checks before a switch)
  and the live Service ``<service>-<pack>-live``, whose selector's ``driftline.io/slot`` is
  the only thing a switch changes (a strategic-merge patch of that one key). All expose port
  80 (``http``) and select by pack as well as slot.
* ConfigMap ``<service>-<pack>-state``: the live slot, each slot's version and the switch
  history, as JSON. Every write is a ``replace`` with the ``resourceVersion`` that was read,
  and a deploy or rollback holds a lock recorded in it, so two deployers of the pack cannot
  clobber each other (a lock left by a killed deployer expires after ``3 * start_timeout_s +
  post_switch_watch_s + 120`` seconds); other packs have their own.

A deploy verifies the artifact's sha256 before touching the cluster, applies the idle slot's
Deployment and Service, waits for the rollout, runs the smoke check and the shadow
comparison (:mod:`driftline.serving.verify`, on the pack's recent served rows from
``ws.serving_dir``) through the apiserver's service proxy, switches the live Service,
confirms that it answers with the new version, watches it for ``post_switch_watch_s`` and
switches back on its own if a check fails (an ``auto-rollback`` record). A failure before the
switch scales the candidate to zero and leaves the live Service as it was; the error names the
pods' state, recent events and the server's last log lines. Checks are sent with
:data:`~driftline.serving.verify.VERIFY_HEADER`, so the pods do not log them as served
traffic.

The client comes from ``in_cluster`` (the pod's service account) or ``config_file`` /
``cluster_context``. It needs, in ``namespace``: Deployments (get, create, update, patch),
Services (get, create, patch), ConfigMaps (get, create, update), ``services/proxy`` (get,
create), pods and ReplicaSets (list), events (list), ``pods/log`` (get).

One concern per module, as the cncf-kubernetes provider splits ``pod_generator``,
``pod_manager`` and its operator: :mod:`.manifests` builds the objects,
:mod:`.cluster` makes the API calls, :mod:`.state` keeps the deploy state ConfigMap,
:mod:`.diagnosis` explains a failed rollout and :mod:`.platform` is the
:class:`~driftline.serving.deploy.SlotPlatform` the shared deploy algorithm runs on.
"""

from driftline.serving.kubernetes.platform import KubernetesBlueGreen

__all__ = ["KubernetesBlueGreen"]
