#!/bin/sh
# Entry point of local/postgres (scripts/build-base-images.sh), a stand-in for the official
# postgres image on machines without a registry. It honours the same contract, as far as the
# compose stack uses it: POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD or
# POSTGRES_PASSWORD_FILE, PGDATA, and *.sql / *.sh files in /docker-entrypoint-initdb.d run
# once when the data directory is first initialised.
set -eu
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password=${POSTGRES_PASSWORD:-}
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        password=$(cat "$POSTGRES_PASSWORD_FILE")
    fi
    if [ -z "$password" ]; then
        echo "error: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "$password" >"$pwfile"
    "$BIN/initdb" -D "$PGDATA" -U "$user" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    # Local socket only while the init scripts run.
    "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$db" != postgres ]; then
        psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -q -c "CREATE DATABASE \"$db\""
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 -U "$user" -d "$db" -q -f "$f" ;;
            *.sh) echo "running $f"; . "$f" ;;
        esac
    done
    "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    echo "database initialised"
fi

exec "$BIN/postgres" -D "$PGDATA" "$@"
