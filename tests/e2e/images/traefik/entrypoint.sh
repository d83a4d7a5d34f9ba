#!/bin/sh
# Like the official traefik image's entrypoint: options or a traefik
# subcommand run traefik; anything else is executed as given.
set -e
case "${1:-}" in
	-*) set -- traefik "$@" ;;
	version|healthcheck|help) set -- traefik "$@" ;;
esac
exec "$@"
