-- latchkey on PostgreSQL with least privilege: two roles.
--
--   owner  owns the schema; `latchkey migrate` runs as this role.
--   app    what `latchkey serve` runs as (LATCHKEY_MIGRATE_ON_START=false):
--          SELECT, INSERT, UPDATE, DELETE on latchkey's tables and what
--          their sequences need; it cannot CREATE, ALTER, DROP or TRUNCATE.
--
-- Run it once as a superuser (or a role with CREATEROLE) connected to the
-- database latchkey will use; psql variables name the roles and passwords:
--
--   psql "postgres://postgres@db/latchkey" \
--     -v owner=latchkey_owner -v owner_password='...' \
--     -v app=latchkey_app -v app_password='...' \
--     -f deploy/postgres-roles.sql
--
-- Then migrate as the owner and serve as the app role:
--
--   LATCHKEY_DATABASE_URL=postgres://latchkey_owner:...@db/latchkey latchkey migrate
--   LATCHKEY_DATABASE_URL=postgres://latchkey_app:...@db/latchkey \
--     LATCHKEY_MIGRATE_ON_START=false latchkey serve
--
-- Default privileges make every table and sequence a later migration
-- creates (as the owner) usable by the app role without running this again.

\set ON_ERROR_STOP on

CREATE ROLE :"owner" LOGIN PASSWORD :'owner_password';
CREATE ROLE :"app" LOGIN PASSWORD :'app_password';

-- The database: both may connect; only the owner may create in it.
SELECT current_database() AS db \gset
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"owner";
GRANT CONNECT ON DATABASE :"db" TO :"app";

-- A schema of latchkey's own, owned by the owner role, first on both roles'
-- search path. (PostgreSQL 15 and later no longer let every role create in
-- `public`; a dedicated schema works the same on every version.)
CREATE SCHEMA latchkey AUTHORIZATION :"owner";
ALTER ROLE :"owner" IN DATABASE :"db" SET search_path = latchkey;
ALTER ROLE :"app" IN DATABASE :"db" SET search_path = latchkey;
REVOKE ALL ON SCHEMA latchkey FROM PUBLIC;
GRANT USAGE ON SCHEMA latchkey TO :"app";

-- Whatever the owner has created already (a database migrated before the
-- roles were split must first be moved into the schema by its owner).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA latchkey TO :"app";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA latchkey TO :"app";

-- And whatever later migrations create.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA latchkey
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA latchkey
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO :"app";
