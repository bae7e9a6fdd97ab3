"""Alerts as an Airflow notifier: a task's callback asks the core what happened
(:mod:`driftline.alerts`) and sends it by email (the SMTP provider's hook) and to a webhook
(a JSON POST through an HTTP connection).

Per pack, ``[alerts]`` says which events alert and where to; with no ``email_to`` and no
``webhook_conn_id`` nothing is read or sent. A send that fails is logged and never fails the
task. Connection secrets (the SMTP password, webhook headers, login and password) go to the
server only: never into the message, the log or XCom.
"""

from __future__ import annotations

import html
from typing import Any

from airflow.sdk import BaseNotifier
from driftline.alerts import configured

from driftline_provider.hooks.driftline import DriftlineHook

TASK_EVENTS = ("drift", "quality", "gate_refused", "quarantine", "deploy")
"""What a task's notifier looks for; ``deploy`` is ``auto_rollback`` or ``deploy_failed``,
whichever the serving history says."""


class DriftlineNotifier(BaseNotifier):
    """Send the pack's alert for ``event`` when the task's records show one.

    Used as ``on_failure_callback`` (``quarantine``, ``gate_refused``, ``deploy``) or
    ``on_success_callback`` (``drift`` and ``quality``: only a report that crossed alerts).

    :param event: one of :data:`TASK_EVENTS` (templated).
    :param pack: the pack (templated); default the task's ``pack``.
    :param driftline_conn_id: driftline's connection; default the task's.
    """

    template_fields = ("event", "pack")

    def __init__(self, *, event: str, pack: str | None = None,
                 driftline_conn_id: str | None = None, **kwargs: Any):
        if event not in TASK_EVENTS:
            raise ValueError(f"event {event!r}: expected one of {list(TASK_EVENTS)}")
        super().__init__(**kwargs)
        self.event = event
        self.pack = pack
        self.driftline_conn_id = driftline_conn_id

    # -- what to say ---------------------------------------------------------------------------
    def workspace(self, context):
        task = context.get("task")
        pack = self.pack or getattr(task, "pack", None)
        conn_id = (self.driftline_conn_id or getattr(task, "driftline_conn_id", None)
                   or DriftlineHook.default_conn_name)
        return DriftlineHook(conn_id).get_workspace(pack)

    def build_alert(self, context, ws):
        """The core's alert for this task's records, or None (nothing happened worth it)."""
        import datetime as dt

        from driftline import alerts

        task, ti = context["task"], context["ti"]
        started = getattr(ti, "start_date", None)
        since = started.isoformat() if started else None
        if self.event == "quarantine":
            name = ws.landing_path(dt.date.fromisoformat(task.start)).name
            alert = alerts.quarantine_alert(ws, name, since)
        elif self.event == "gate_refused":
            from driftline_provider.operators.base import slug

            report_dir = ws.reports_dir / "gates" / ti.dag_id / slug(ti.run_id)
            alert = alerts.gate_alert(ws, report_dir)
        elif self.event == "deploy":
            exception = context.get("exception")
            version = (task.candidate or {}).get("version")
            if not version:
                return None
            alert = alerts.deploy_alert(ws, version, _one_line(exception), since)
        else:
            start, end = dt.date.fromisoformat(task.start), dt.date.fromisoformat(task.end)
            if self.event == "drift":
                from driftline.monitoring import report_id_for

                alert = alerts.drift_alert(ws, report_id_for(start, end))
            else:
                from driftline.outcomes import report_id_for as quality_report_id

                alert = alerts.quality_alert(ws, quality_report_id(start, end))
        if alert is None:
            return None
        return alert.from_task(ti.dag_id, ti.run_id, ti.task_id)

    def notify(self, context) -> None:
        try:
            ws = self.workspace(context)
            if not configured(ws):
                self.log.info("driftline alerts are off for %s ([alerts] email_to and "
                              "webhook_conn_id are empty)", ws.name)
                return
            alert = self.build_alert(context, ws)
        except Exception as exc:  # an alert must never fail the task
            self.log.error("driftline alert (%s) not built: %s: %s", self.event,
                           type(exc).__name__, exc)
            return
        if alert is None:
            self.log.info("driftline %s: nothing to alert about", self.event)
            return
        if alert.event not in ws.alerts.events:
            self.log.info("driftline %s alert not sent: %s is not in [alerts] events",
                          alert.event, alert.event)
            return
        self.send(ws.alerts, alert)

    # -- where to -----------------------------------------------------------------------------
    def send(self, settings, alert) -> dict[str, bool]:
        """Email and POST ``alert`` as ``settings`` (:class:`AlertsSettings`) say; which
        sinks got it. A failure is logged (without secrets) and reported as False."""
        sent = {}
        if settings.email_to:
            sent["email"] = self._try("email", settings.smtp_conn_id, alert,
                                      lambda: send_email(settings, alert))
        if settings.webhook_conn_id:
            sent["webhook"] = self._try("webhook", settings.webhook_conn_id, alert,
                                        lambda: post_webhook(settings.webhook_conn_id, alert))
        return sent

    def _try(self, sink: str, conn_id: str, alert, send) -> bool:
        try:
            detail = send()
        except Exception as exc:
            self.log.error("driftline %s alert for %s: %s through connection %r failed: %s",
                           alert.event, alert.pack, sink, conn_id, _safe_error(exc, conn_id))
            return False
        self.log.info("driftline %s alert for %s sent by %s through connection %r (%s): %s",
                      alert.event, alert.pack, sink, conn_id, detail, alert.subject)
        return True


def _one_line(exception) -> str:
    if exception is None:
        return "unknown error"
    text = str(exception).strip().splitlines()
    return text[0] if text else type(exception).__name__


def email_html(alert) -> str:
    """The alert's text as HTML (the SMTP hook sends HTML), the link clickable."""
    body, link = html.escape(alert.text, quote=False), html.escape(alert.link, quote=False)
    anchor = f'<a href="{html.escape(alert.link)}">{link}</a>'
    return f"<pre>{body.replace(link, anchor)}</pre>"


def send_email(settings, alert) -> str:
    """Email ``alert`` to ``settings.email_to`` through ``settings.smtp_conn_id``."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=settings.smtp_conn_id) as hook:
        hook.send_email_smtp(to=list(settings.email_to), subject=alert.subject,
                             html_content=email_html(alert),
                             from_email=hook.from_email or "driftline@localhost",
                             mime_subtype="alternative",
                             custom_headers={"X-Driftline-Event": alert.event,
                                             "X-Driftline-Pack": alert.pack})
    return f"{len(settings.email_to)} recipient(s)"


def webhook_request(conn_id: str) -> tuple[str, dict, Any]:
    """The URL, headers and auth of the webhook connection ``conn_id``: ``schema`` (default
    http), ``host`` (or a whole URL), ``port``, extra ``endpoint`` (path) and ``headers``;
    ``login``/``password`` as basic auth."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    host = conn.host or ""
    if "://" in host:
        base = host.rstrip("/")
    else:
        base = f"{conn.schema or 'http'}://{host}" + (f":{conn.port}" if conn.port else "")
    endpoint = str(extra.get("endpoint", ""))
    url = base + ("/" + endpoint.lstrip("/") if endpoint else "")
    headers = {str(k): str(v) for k, v in (extra.get("headers") or {}).items()}
    auth = (conn.login, conn.password or "") if conn.login else None
    return url, headers, auth


def post_webhook(conn_id: str, alert) -> str:
    """POST ``alert.payload`` as JSON to the webhook connection ``conn_id``."""
    import httpx

    url, headers, auth = webhook_request(conn_id)
    response = httpx.post(url, json=alert.payload, headers=headers, auth=auth, timeout=10.0)
    response.raise_for_status()
    return f"HTTP {response.status_code}"


def _safe_error(exc: Exception, conn_id: str) -> str:
    """What went wrong, without the connection's secrets or URL (a webhook's path or query
    may be its token)."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return f"{type(exc).__name__}: HTTP {exc.response.status_code}"
    text = f"{type(exc).__name__}: {exc}"
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        secrets = [conn.password, conn.host, *(conn.extra_dejson.get("headers") or {}).values(),
                   conn.extra_dejson.get("endpoint")]
    except Exception:
        secrets = []
    for secret in secrets:
        if secret and len(str(secret)) > 3:
            text = text.replace(str(secret), "***")
    return text
