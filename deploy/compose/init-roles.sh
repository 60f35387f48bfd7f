#!/bin/sh
# PostgreSQL's first start (docker-entrypoint-initdb.d): the owner and app
# roles of deploy/postgres-roles.sql, passwords from compose secrets.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner=latchkey_owner -v owner_password="$(cat /run/secrets/db_owner_password)" \
    -v app=latchkey_app -v app_password="$(cat /run/secrets/db_app_password)" \
    -f /latchkey/postgres-roles.sql
