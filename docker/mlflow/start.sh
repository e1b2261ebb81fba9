#!/bin/sh
# Entry point of the MLflow image: `mlflow server` on a PostgreSQL backend store, artifacts served
# from /mlflow/artifacts. The database password is read from MLFLOW_DB_PASSWORD_FILE and given to
# libpq in a pgpass file (mode 0600, on /tmp), so it is in no URI, environment variable or command
# line that `docker inspect`, `ps` or a logged error could show.
set -eu
host=${MLFLOW_DB_HOST:-postgres}
port=${MLFLOW_DB_PORT:-5432}
user=${MLFLOW_DB_USER:?set MLFLOW_DB_USER}
db=${MLFLOW_DB_NAME:-mlflow}

if [ -n "${MLFLOW_DB_PASSWORD_FILE:-}" ]; then
    if [ ! -r "$MLFLOW_DB_PASSWORD_FILE" ]; then
        echo "start-mlflow: cannot read MLFLOW_DB_PASSWORD_FILE ($MLFLOW_DB_PASSWORD_FILE) as UID $(id -u)" >&2
        exit 1
    fi
    umask 077
    PGPASSFILE=$(mktemp "${TMPDIR:-/tmp}/pgpass.XXXXXX")
    export PGPASSFILE
    # pgpass format: host:port:database:user:password, with ':' and '\' escaped. printf is a
    # shell builtin, so the password never becomes a process argument.
    password=$(cat "$MLFLOW_DB_PASSWORD_FILE")
    printf '%s' "$password" | sed 's/[\\:]/\\&/g' | {
        IFS= read -r escaped || true
        printf '%s:%s:%s:%s:%s\n' "$host" "$port" "$db" "$user" "$escaped"
    } >"$PGPASSFILE"
    unset password
    umask 022
fi

# +psycopg2: the driver the image has (SQLAlchemy 2.1 reads plain postgresql:// as psycopg 3).
exec mlflow server \
    --host 0.0.0.0 --port 5000 \
    --workers "${MLFLOW_WORKERS:-1}" \
    --backend-store-uri "postgresql+psycopg2://$user@$host:$port/$db" \
    --artifacts-destination /mlflow/artifacts \
    "$@"
