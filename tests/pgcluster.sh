#!/bin/sh
# A private PostgreSQL cluster in one directory, for the tests and the demo.
#
#   pgcluster.sh start  DIR         initdb on first use, then start; a running
#                                   cluster is left alone. Loads nothing.
#   pgcluster.sh stop   DIR         fast shutdown; no-op when not running
#   pgcluster.sh status DIR         exit 0 when running, 3 when not
#   pgcluster.sh env    DIR [DB]    PGHOST=... lines: eval "$(... env DIR)"
#   pgcluster.sh psql   DIR [ARGS]  the matching psql, connected as postgres
#
# DIR is the data directory. The server has no TCP listener
# (listen_addresses=''): its only socket is DIR/.s.PGSQL.<port>, with a port
# picked once at initdb and kept in DIR/port. Authentication is trust, user
# postgres. pg_stat_statements is preloaded (track=all, track_planning: the
# tests count plans); fsync is off: the data is disposable. PostgreSQL
# refuses to run as root, so as root the server runs as the postgres system
# user, which then owns DIR. Binaries come from the newest
# /usr/lib/postgresql/*/bin (PG_BINDIR overrides).
set -eu

usage() {
	echo "usage: $0 start|stop|status|env|psql DIR [ARGS]" >&2
	exit 2
}
die() {
	echo "pgcluster.sh: $*" >&2
	exit 1
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
shift 2

case $dir in
/*) ;;
*) dir=$(pwd)/$dir ;;
esac
dir=${dir%/}
# A symlinked DIR (see init_dir) is used through its real path.
[ -d "$dir" ] && dir=$(cd -P "$dir" && pwd)

osuser=postgres
is_root() {
	[ "$(id -u)" -eq 0 ]
}
# Runs a server-side command as the cluster's owner.
as_owner() {
	if is_root; then
		runuser -u "$osuser" -- "$@"
	else
		"$@"
	fi
}

find_bindir() {
	if [ -n "${PG_BINDIR:-}" ]; then
		echo "$PG_BINDIR"
		return
	fi
	# shellcheck disable=SC2012 # the names are plain version numbers
	b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	if [ -z "$b" ] && command -v pg_config >/dev/null 2>&1; then
		b=$(pg_config --bindir)
	fi
	if [ -z "$b" ] || [ ! -x "$b/pg_ctl" ]; then
		die "no PostgreSQL server binaries (install postgresql, or set PG_BINDIR)"
	fi
	echo "$b"
}
bin=$(find_bindir)

running() {
	[ -f "$dir/PG_VERSION" ] &&
		as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1
}

# A port is taken when something listens on it over TCP or a usual socket
# directory has it. The socket lives in DIR, so only a clash in DIR itself
# could really hurt; avoiding the others keeps psql -p unambiguous.
port_busy() {
	for d in /tmp /var/run/postgresql /run/postgresql; do
		[ -e "$d/.s.PGSQL.$1" ] && return 0
	done
	hex=$(printf '%04X' "$1")
	awk -v p="$hex" '$4 == "0A" && substr($2, index($2, ":") + 1) == p { f = 1 }
		END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

pick_port() {
	r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
	p=$((20000 + r % 20000))
	n=0
	while port_busy "$p"; do
		p=$((p + 1))
		[ "$p" -lt 40000 ] || p=20000
		n=$((n + 1))
		[ "$n" -lt 1000 ] || die "no free port found"
	done
	echo "$p"
}

ensure_osuser() {
	is_root || return 0
	getent passwd "$osuser" >/dev/null 2>&1 && return 0
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin "$osuser"
}

# Creates DIR for the server's owner. As root, when the postgres user cannot
# reach DIR's parent (a repository under /root), the cluster lives in
# /var/tmp and DIR becomes a symlink to it.
init_dir() {
	case $dir in
	*"'"*) die "DIR may not contain a single quote: $dir" ;;
	esac
	if is_root && ! runuser -u "$osuser" -- test -x "$(dirname "$dir")"; then
		if [ ! -e "$dir" ]; then
			real=$(mktemp -d /var/tmp/pgcluster.XXXXXX)
			ln -s "$real" "$dir"
			echo "pgcluster.sh: $osuser cannot reach $(dirname "$dir"); the cluster is in $real" >&2
			dir=$real
		else
			die "user $osuser cannot reach $dir: make its parents searchable (chmod o+x) or use another DIR"
		fi
	fi
	mkdir -p "$dir"
	if [ -n "$(ls -A "$dir")" ]; then
		die "$dir is not empty and holds no cluster"
	fi
	# The socket path must fit in sun_path (107 bytes).
	[ $((${#dir} + 17)) -le 107 ] || die "path too long for a unix socket: $dir"
	if is_root; then
		chown "$osuser:" "$dir"
	fi
	chmod 700 "$dir"
}

init_cluster() {
	ensure_osuser
	init_dir
	out=$(as_owner "$bin/initdb" -D "$dir" -A trust -U postgres -E UTF8 \
		--locale=C.UTF-8 2>&1) || {
		echo "$out" >&2
		die "initdb failed"
	}
	port=$(pick_port)
	cat >>"$dir/postgresql.conf" <<EOF

# pgcluster.sh: a private, disposable cluster
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.track_planning = on
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
	echo "$port" >"$dir/port"
}

start() {
	running && return 0
	[ -f "$dir/PG_VERSION" ] || init_cluster
	[ -f "$dir/port" ] || die "$dir/port is missing"
	if ! as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/postgres.log" -w -t 60 \
		-s start >/dev/null; then
		tail -n 20 "$dir/postgres.log" >&2 || true
		die "the server in $dir did not start"
	fi
}

stop() {
	running || return 0
	as_owner "$bin/pg_ctl" -D "$dir" -m fast -w -t 60 -s stop
}

env_lines() {
	[ -f "$dir/port" ] || die "no cluster in $dir (run: $0 start $dir)"
	printf "PGHOST='%s'\nPGPORT='%s'\nPGUSER='postgres'\nPGDATABASE='%s'\n" \
		"$dir" "$(cat "$dir/port")" "${1:-postgres}"
	echo "export PGHOST PGPORT PGUSER PGDATABASE"
}

case $cmd in
start) start ;;
stop) stop ;;
status)
	running || exit 3
	;;
env) env_lines "${1:-}" ;;
psql)
	[ -f "$dir/port" ] || die "no cluster in $dir (run: $0 start $dir)"
	PGHOST=$dir PGPORT=$(cat "$dir/port") PGUSER=postgres \
		exec "$bin/psql" -X "$@"
	;;
*) usage ;;
esac
