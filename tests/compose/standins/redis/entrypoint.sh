#!/bin/sh
# Like the official image's entrypoint: without a config file, Redis would refuse clients from
# other containers (protected mode), so it is switched off; everything else is passed through.
set -e
if [ "$1" = "redis-server" ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
