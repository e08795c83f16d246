#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for tests and trials (Debian's postgresql-15), run as the postgres user.
#
#   tools/postgres-cluster.sh start DATADIR [PORT]   # initdb into DATADIR when it is empty, then start;
#                                                    # prints the libpq connection string
#   tools/postgres-cluster.sh stop DATADIR           # fast shutdown
#
# The server listens on a Unix socket only, in /tmp/shadowmover-pg-PORT/ (a socket path may not exceed
# 107 bytes, so not next to a deep DATADIR), and logs to DATADIR.log: nothing of it is inside the data
# directory but the cluster itself.
set -euo pipefail
cmd=${1:?usage: postgres-cluster.sh start|stop DATADIR [PORT]}
data=${2:?usage: postgres-cluster.sh start|stop DATADIR [PORT]}
port=${3:-5433}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$BIN" ] || { echo "PostgreSQL is not installed: apt-get install postgresql-15 postgresql-contrib" >&2; exit 1; }
as_postgres() { runuser -u postgres -- "$@"; }
case "$cmd" in
start)
    sock="/tmp/shadowmover-pg-$port"
    mkdir -p "$data" "$sock"
    chown postgres: "$data" "$sock"
    chmod 700 "$data"
    if [ ! -f "$data/PG_VERSION" ]; then
        as_postgres "$BIN/initdb" -D "$data" -A trust -U postgres --no-sync > "$data.initdb.log" 2>&1
    fi
    touch "$data.log" && chown postgres: "$data.log"
    if ! as_postgres "$BIN/pg_ctl" -D "$data" -l "$data.log" -w -t 60 \
        -o "-p $port -k $sock -c listen_addresses='' -c fsync=on -c max_wal_size=256MB" start > /dev/null 2>&1 < /dev/null; then
        echo "PostgreSQL did not start in $data; the end of $data.log:" >&2
        tail -n 15 "$data.log" >&2
        exit 1
    fi
    echo "host=$sock port=$port user=postgres dbname=postgres"
    ;;
stop)
    as_postgres "$BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop > /dev/null || true
    ;;
*)
    echo "usage: postgres-cluster.sh start|stop DATADIR [PORT]" >&2
    exit 1
    ;;
esac
