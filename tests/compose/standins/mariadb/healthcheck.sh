#!/bin/sh
# Stand-in for the official image's healthcheck.sh with --connect --innodb_initialized: a TCP
# connection as the healthcheck account works and InnoDB is initialised. Other options are refused.
set -e
for option in "$@"; do
    case "$option" in
        --connect|--innodb_initialized) ;;
        *) echo "stand-in healthcheck.sh: unsupported option $option" >&2; exit 2 ;;
    esac
done
answer=$(mariadb --defaults-extra-file=/var/lib/mysql/.my-healthcheck.cnf -N -e \
    "SELECT 1 FROM information_schema.ENGINES WHERE ENGINE='InnoDB' AND SUPPORT IN ('YES','DEFAULT','ENABLED')")
[ "$answer" = "1" ]
