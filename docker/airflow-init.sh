#!/bin/sh
# The compose stack's one-shot init (service airflow-init): make the shared secrets once, in
# the airflow-home volume that every Airflow container mounts (read by the *_CMD settings, so
# no secret is in docker-compose.yaml or the environment), write the admin password file, and
# migrate the metadata database. Idempotent: a second `docker compose up` keeps the secrets.
set -eu
umask 077
secrets=/opt/airflow/secrets
mkdir -p "$secrets" /opt/airflow/logs /opt/airflow/plugins
new_secret() {
  [ -s "$secrets/$1" ] || python -c "$2" > "$secrets/$1"
}
new_secret jwt_secret "import secrets; print(secrets.token_urlsafe(32))"
new_secret api_secret_key "import secrets; print(secrets.token_urlsafe(32))"
new_secret fernet_key "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
python - <<'PY'
import json, os
with open("/opt/airflow/passwords.json", "w") as f:
    json.dump({"admin": os.environ.get("DRIFTLINE_ADMIN_PASSWORD") or "admin"}, f)
PY
exec airflow db migrate
