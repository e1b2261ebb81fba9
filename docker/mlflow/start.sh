#!/bin/sh
# Builds the backend URI from a password file, so the password is in no environment variable
# or command line that `docker inspect` or `ps` would show (only in this process's environment).
set -eu
password=$(python -c 'import sys, urllib.parse; print(urllib.parse.quote(open(sys.argv[1]).read().strip(), safe=""))' "$MLFLOW_DB_PASSWORD_FILE")
export MLFLOW_BACKEND_STORE_URI="postgresql://${MLFLOW_DB_USER}:${password}@${MLFLOW_DB_HOST}:5432/${MLFLOW_DB_NAME}"
exec mlflow server --host 0.0.0.0 --port 5000 --artifacts-destination /mlflow/artifacts --serve-artifacts
