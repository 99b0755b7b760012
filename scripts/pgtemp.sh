#!/usr/bin/env bash
# pgtemp.sh - a private, throw-away PostgreSQL server for tests and demos.
#
# usage: scripts/pgtemp.sh start DIR   initdb DIR/data, start postgres on a free
#                                      127.0.0.1 port (socket dir DIR), print
#                                      "port=N conninfo=host=127.0.0.1 port=N user=escrow dbname=postgres"
#        scripts/pgtemp.sh stop DIR    stop it (immediate) ; DIR itself is the caller's
# Exits 77 with "skipped: no postgresql" on stderr when initdb/pg_ctl are not
# installed (Debian package postgresql; scripts/deps.sh installs it).
# PostgreSQL refuses to run as root: as root, initdb, pg_ctl and postgres run
# as the user "postgres" (or "nobody"), and DIR is handed to that user.
# fsync is off: the data is throw-away, and the tests kill clients, never the server.
set -euo pipefail
cmd=${1:-} dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
bin=
if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
	bin=$(dirname "$(command -v pg_ctl)")
else
	for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bin=$d; done
fi
[ -n "$bin" ] || { echo "skipped: no postgresql (initdb/pg_ctl not found)" >&2; exit 77; }
as=()
if [ "$(id -u)" = 0 ]; then
	user=postgres
	getent passwd postgres >/dev/null || user=nobody
	as=(runuser -u "$user" --)
fi
dir=$(cd "$dir" && pwd)
case "$cmd" in
start)
	if [ ${#as[@]} != 0 ]; then
		chown "${as[2]}" "$dir"
		"${as[@]}" test -w "$dir" || { echo "pgtemp.sh: user ${as[2]} cannot reach $dir (a parent dir is private)" >&2; exit 1; }
	fi
	"${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U escrow -E UTF8 --no-sync \
		>"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
	for try in 1 2 3 4 5; do
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		if "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
			-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
			start >/dev/null 2>&1; then
			echo "$port" >"$dir/port"
			echo "port=$port conninfo=host=127.0.0.1 port=$port user=escrow dbname=postgres"
			exit 0
		fi
	done
	tail -n 20 "$dir/postgres.log" >&2 || true
	exit 1 ;;
stop)
	[ -d "$dir/data" ] || exit 0
	"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true ;;
*) echo "pgtemp.sh: start|stop DIR" >&2; exit 2 ;;
esac
