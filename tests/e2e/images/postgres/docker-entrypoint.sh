#!/bin/bash
# Entrypoint of the postgres:16-alpine stand-in. Same environment contract as
# the official image: POSTGRES_USER / POSTGRES_DB / POSTGRES_PASSWORD (each also
# as *_FILE, never both), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD,
# /docker-entrypoint-initdb.d/*.sh|*.sql on first start. Never echoes secrets.
set -Eeuo pipefail

die() { echo "error: $*" >&2; exit 1; }

# file_env VAR [default]: VAR from VAR or from the file named by VAR_FILE.
file_env() {
	local var="$1" file_var="${1}_FILE" default="${2:-}" value
	if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
		die "both $var and $file_var are set (but are exclusive)"
	fi
	value="$default"
	if [ -n "${!var:-}" ]; then
		value="${!var}"
	elif [ -n "${!file_var:-}" ]; then
		[ -r "${!file_var}" ] || die "$file_var names an unreadable file: ${!file_var}"
		value="$(< "${!file_var}")"
	fi
	export "$var"="$value"
	unset "$file_var"
}

# Options only: run the server with them, as the official image does.
if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" != 'postgres' ]; then
	exec "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"

mkdir -p "$PGDATA"
chmod 00700 "$PGDATA" 2>/dev/null || :
mkdir -p /var/run/postgresql
chmod 03775 /var/run/postgresql 2>/dev/null || :

# Started as root: hand the directories to postgres and drop to 70:70.
if [ "$(id -u)" = '0' ]; then
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	find /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
		die "Database is uninitialized and superuser password is not specified.
       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value."
	fi
	[ -w "$PGDATA" ] || die "$PGDATA is not writable by uid $(id -u)"

	echo "initialising database in $PGDATA"
	# The password travels through a pipe, never through argv or a file.
	# shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list
	initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		--auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" \
		$POSTGRES_INITDB_ARGS > /dev/null
	printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

	# Temporary server on the unix socket only, for database creation and init scripts.
	# Like the official image, psql gets the password from PGPASSWORD (environment,
	# not argv) so POSTGRES_INITDB_ARGS may require passwords on local connections.
	export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -t 60 start > /dev/null
	psql_run=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" -q)
	if [ "$POSTGRES_DB" != 'postgres' ]; then
		"${psql_run[@]}" --dbname postgres --set db="$POSTGRES_DB" \
			<<< 'CREATE DATABASE :"db";'
	fi
	shopt -s nullglob
	for f in /docker-entrypoint-initdb.d/*; do
		# shellcheck disable=SC1090  # init scripts are supplied at run time
		case "$f" in
			*.sh) echo "running $f"; . "$f" ;;
			*.sql) echo "running $f"; "${psql_run[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
			*) echo "ignoring $f" ;;
		esac
	done
	shopt -u nullglob
	pg_ctl -D "$PGDATA" -m fast -w -t 60 stop > /dev/null
	unset PGPASSWORD
	echo "PostgreSQL init process complete; ready for start up."
else
	echo "PostgreSQL database directory appears to contain a database; skipping initialization"
fi

unset POSTGRES_PASSWORD
exec "$@"
