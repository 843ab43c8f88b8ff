/*
 * schema - the DDL of the taskwatch store and the names of task states.
 * docs/schema.md explains every column; keep the two in step.
 */
#include "schema.h"

#include <stdlib.h>

#include <string.h>

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define SCHEMA_VERSION_TEXT STRINGIFY(SCHEMA_VERSION)
#define SCHEMA_APPLICATION_ID_TEXT STRINGIFY(SCHEMA_APPLICATION_ID)

static const char *const status_names[] = {
#define STATUS_NAME(state, name) [SCHEMA_##state] = name,
    SCHEMA_STATUS_MAP(STATUS_NAME)
#undef STATUS_NAME
};

/* The codes are dense, 0 to SCHEMA_STATUS_COUNT - 1, one row each: the
 * name table and every array indexed by status rely on it. */
#define STATUS_ROW(state, name) +1
_Static_assert(0 SCHEMA_STATUS_MAP(STATUS_ROW) == SCHEMA_STATUS_COUNT &&
                   sizeof(status_names) / sizeof(status_names[0]) ==
                       SCHEMA_STATUS_COUNT,
               "status codes must be 0..SCHEMA_STATUS_COUNT - 1");
#undef STATUS_ROW

const char *schema_status_name(int status) {
  if (status < 0 || status >= SCHEMA_STATUS_COUNT)
    return NULL;
  return status_names[status];
}

int schema_status_severity(int status) {
#define SCHEMA_SEVERITY_CASE(state, severity)                                  \
  case SCHEMA_##state:                                                         \
    return severity;
  switch (status) {
    SCHEMA_SEVERITY_MAP(SCHEMA_SEVERITY_CASE)
  default:
    return 0;
  }
#undef SCHEMA_SEVERITY_CASE
}

int schema_status_code(const char *name) {
  for (int i = 0; i < SCHEMA_STATUS_COUNT; i++)
    if (strcmp(status_names[i], name) == 0)
      return i;
  return -1;
}

const char *schema_mode_name(int mode) {
  switch (mode) {
  case 0:
    return "loop";
  case 1:
    return "threadpool";
  default:
    return NULL;
  }
}

/* A table of rollups per `column` (minute or hour), service and name
 * (docs/schema.md). */
#define ROLLUP_TABLE(table, column)                                            \
  "CREATE TABLE IF NOT EXISTS " table " (\n"                                   \
  "  " column " INTEGER NOT NULL,\n"                                           \
  "  service TEXT NOT NULL,\n"                                                 \
  "  name TEXT NOT NULL,\n"                                                    \
  "  succeeded INTEGER NOT NULL DEFAULT 0,\n"                                  \
  "  failed INTEGER NOT NULL DEFAULT 0,\n"                                     \
  "  skipped INTEGER NOT NULL DEFAULT 0,\n"                                    \
  "  dropped INTEGER NOT NULL DEFAULT 0,\n"                                    \
  "  lost INTEGER NOT NULL DEFAULT 0,\n"                                       \
  "  wait_hist BLOB,\n"                                                        \
  "  run_hist BLOB,\n"                                                         \
  "  PRIMARY KEY (" column ", service, name)\n"                                \
  ") WITHOUT ROWID;\n"

static const char ddl[] =
    "CREATE TABLE IF NOT EXISTS agents (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  instance BLOB NOT NULL UNIQUE,\n"
    "  service TEXT NOT NULL,\n"
    "  host TEXT NOT NULL,\n"
    "  pid INTEGER NOT NULL,\n"
    "  started_at INTEGER NOT NULL,\n"
    "  connected_at INTEGER,\n"
    "  disconnected_at INTEGER,\n"
    "  connected INTEGER NOT NULL DEFAULT 0,\n"
    "  ended INTEGER NOT NULL DEFAULT 0,\n"
    "  next_seq INTEGER NOT NULL DEFAULT 1,\n"
    "  events INTEGER NOT NULL DEFAULT 0,\n"
    "  dropped INTEGER NOT NULL DEFAULT 0,\n"
    "  reconnects INTEGER NOT NULL DEFAULT 0,\n"
    "  last_event_at INTEGER,\n"
    "  last_received_at INTEGER\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS strings (\n"
    "  agent INTEGER NOT NULL,\n"
    "  id INTEGER NOT NULL,\n"
    "  text TEXT NOT NULL,\n"
    "  PRIMARY KEY (agent, id)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE IF NOT EXISTS batches (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  agent INTEGER NOT NULL,\n"
    "  label TEXT,\n"
    "  created_at INTEGER NOT NULL,\n"
    "  traceparent TEXT\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS tasks (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  agent INTEGER NOT NULL,\n"
    "  batch INTEGER NOT NULL,\n"
    "  position INTEGER NOT NULL,\n"
    "  name TEXT NOT NULL,\n"
    "  mode INTEGER NOT NULL,\n"
    "  status INTEGER NOT NULL,\n"
    "  thread INTEGER,\n"
    "  enqueued_at INTEGER NOT NULL,\n"
    "  started_at INTEGER,\n"
    "  finished_at INTEGER,\n"
    "  wait_us INTEGER,\n"
    "  run_us INTEGER,\n"
    "  error_type TEXT,\n"
    "  error_message TEXT,\n"
    "  error_detail TEXT,\n"
    "  skipped_after INTEGER,\n"
    "  drop_reason TEXT\n"
    ");\n" ROLLUP_TABLE("rollups", "minute") ROLLUP_TABLE(
        "rollups_hour", "hour") "CREATE TABLE IF NOT EXISTS meta (\n"
                                "  key TEXT PRIMARY KEY,\n"
                                "  value\n"
                                ") WITHOUT ROWID;\n"
                                "CREATE TABLE IF NOT EXISTS export_queue (\n"
                                "  seq INTEGER PRIMARY KEY,\n"
                                "  batch INTEGER NOT NULL\n"
                                ");\n"
                                /* Version 6: the collector's tasks in
                                 * flight (collector/inflight.h); a log
                                 * of blobs from version 8. */
                                "CREATE TABLE IF NOT EXISTS inflight (\n"
                                "  id INTEGER PRIMARY KEY,\n"
                                "  tasks BLOB NOT NULL\n"
                                ");\n"
                                /* Version 7: the slowest tasks of each
                                 * minute (schema.h). */
                                "CREATE TABLE IF NOT EXISTS slowest (\n"
                                "  minute INTEGER NOT NULL,\n"
                                "  run_us INTEGER NOT NULL,\n"
                                "  id INTEGER NOT NULL,\n"
                                "  batch INTEGER NOT NULL,\n"
                                "  enqueued_at INTEGER NOT NULL,\n"
                                "  PRIMARY KEY (minute, run_us, id)\n"
                                ") WITHOUT ROWID;\n";

/* The indexes of tasks. docs/schema.md says which query each serves; the
 * collector pays for every one of them on each insert. */
static const char indexes[] =
    "CREATE INDEX IF NOT EXISTS tasks_time ON tasks (" SCHEMA_TIME_COLUMNS
    ");\n"
    "CREATE INDEX IF NOT EXISTS tasks_batch ON tasks (batch);\n"
    "CREATE INDEX IF NOT EXISTS tasks_unusual ON tasks (" SCHEMA_UNUSUAL_COLUMNS
    ") WHERE " SCHEMA_SQL_UNUSUAL ";\n"
    "CREATE INDEX IF NOT EXISTS agents_gone ON agents (disconnected_at)"
    " WHERE connected = 0;\n";

/* Indexes of older versions that the current ones replace. */
static const char obsolete[] = "DROP INDEX IF EXISTS tasks_enqueued;\n"
                               "DROP INDEX IF EXISTS tasks_name;\n";

const char *schema_index_sql(void) {
  return indexes;
}

/* Keep in step with indexes[] (test_store checks the two). */
const char *schema_drop_index_sql(void) {
  return "DROP INDEX IF EXISTS tasks_time;\n"
         "DROP INDEX IF EXISTS tasks_batch;\n"
         "DROP INDEX IF EXISTS tasks_unusual;\n"
         "DROP INDEX IF EXISTS agents_gone;\n";
}

/* The one integer a query returns (0 when it returns no row). */
static int query_int(sqlite3 *db, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  *out = 0;
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
    *out = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The statements of an upgrade from `version` that come before the DDL:
 * version 4 keeps the old rollups as rollups_v3 for its `fill`, and
 * replaces tasks_time and tasks_unusual with covering ones of the same
 * names. */
static int before_ddl(sqlite3 *db, int version, char **err) {
  int64_t old = 0;
  if (version >= 4)
    return SQLITE_OK;
  int rc = sqlite3_exec(db,
                        "DROP INDEX IF EXISTS tasks_time;"
                        "DROP INDEX IF EXISTS tasks_unusual;",
                        NULL, NULL, err);
  if (rc == SQLITE_OK)
    rc = query_int(db,
                   "SELECT count(*) FROM sqlite_master WHERE "
                   "type = 'table' AND name = 'rollups'",
                   &old);
  if (rc == SQLITE_OK && old)
    rc = sqlite3_exec(db, "ALTER TABLE rollups RENAME TO rollups_v3", NULL,
                      NULL, err);
  return rc;
}

/* SQLite's own tables (sqlite_sequence, sqlite_stat1, autoindexes) are
 * not counted: any database may have them. */
static const char objects_sql[] =
    "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' "
    "ESCAPE '\\'";
static const char core_tables_sql[] =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
    "('agents', 'strings', 'batches', 'tasks', 'meta')";
#define CORE_TABLES 5

int schema_identify(sqlite3 *db, int *identity, const char **why) {
  int64_t app, version, objects, core;
  int rc;
  *identity = SCHEMA_ID_FOREIGN;
  *why = NULL;
  if ((rc = query_int(db, "PRAGMA application_id", &app)) != SQLITE_OK ||
      (rc = query_int(db, "PRAGMA user_version", &version)) != SQLITE_OK ||
      (rc = query_int(db, objects_sql, &objects)) != SQLITE_OK ||
      (rc = query_int(db, core_tables_sql, &core)) != SQLITE_OK)
    return rc;
  if (app == SCHEMA_APPLICATION_ID)
    *identity = SCHEMA_ID_TASKWATCH;
  else if (app != 0)
    *why = "its application_id is another application's";
  else if (objects == 0 && version == 0)
    *identity = SCHEMA_ID_EMPTY;
  else if (objects == 0)
    *why = "it has a user_version but no tables";
  else if (core == CORE_TABLES && version >= 1)
    *identity = SCHEMA_ID_TASKWATCH;
  else
    *why = "its tables are another application's";
  return SQLITE_OK;
}

int schema_check_ours(sqlite3 *db, char **err) {
  int identity;
  const char *why;
  int rc = schema_identify(db, &identity, &why);
  if (rc != SQLITE_OK) {
    *err = sqlite3_mprintf("%s", sqlite3_errmsg(db));
    return rc;
  }
  if (identity != SCHEMA_ID_FOREIGN)
    return SQLITE_OK;
  *err = sqlite3_mprintf("not a taskwatch store (%s); left unchanged", why);
  return SQLITE_MISMATCH;
}

/* Columns added after a table's first version: ALTER TABLE for a store
 * made before them (CREATE TABLE IF NOT EXISTS leaves its tables as they
 * are). Asked of the table itself, so it holds whatever the version
 * number says. */
static const struct {
  const char *table, *column, *alter;
} added_columns[] = {
    {"batches", "traceparent",
     "ALTER TABLE batches ADD COLUMN traceparent TEXT"}, /* version 4 */
    {"agents", "last_received_at",                       /* version 5 */
     "ALTER TABLE agents ADD COLUMN last_received_at INTEGER"},
    /* Version 5 too: who owns an instance (docs/collector.md,
     * "Authentication"): its Ed25519 public key, and the subject of its
     * TLS client certificate. */
    {"agents", "auth_key", "ALTER TABLE agents ADD COLUMN auth_key BLOB"},
    {"agents", "tls_subject", "ALTER TABLE agents ADD COLUMN tls_subject TEXT"},
    /* Version 6: the batches and tasks the agent refused whole (HEALTH of
     * protocol version 3). */
    {"agents", "dropped_batches",
     "ALTER TABLE agents ADD COLUMN dropped_batches INTEGER NOT NULL "
     "DEFAULT 0"},
    {"agents", "dropped_tasks",
     "ALTER TABLE agents ADD COLUMN dropped_tasks INTEGER NOT NULL DEFAULT 0"},
};

static int add_columns(sqlite3 *db, char **err) {
  for (size_t i = 0; i < sizeof(added_columns) / sizeof(added_columns[0]);
       i++) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db, "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2", -1,
        &st, NULL);
    if (rc != SQLITE_OK) {
      *err = sqlite3_mprintf("%s", sqlite3_errmsg(db));
      return rc;
    }
    sqlite3_bind_text(st, 1, added_columns[i].table, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, added_columns[i].column, -1, SQLITE_STATIC);
    int present = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (!present && (rc = sqlite3_exec(db, added_columns[i].alter, NULL, NULL,
                                       err)) != SQLITE_OK)
      return rc;
  }
  return SQLITE_OK;
}

int schema_apply_upgrade(sqlite3 *db, schema_upgrade_fn fill, void *arg,
                         char **err) {
  int64_t version, app;
  int rc = schema_check_ours(db, err);
  if (rc != SQLITE_OK)
    return rc;
  if ((rc = query_int(db, "PRAGMA user_version", &version)) != SQLITE_OK ||
      (rc = query_int(db, "PRAGMA application_id", &app)) != SQLITE_OK)
    goto fail;
  if (version > SCHEMA_VERSION) {
    *err = sqlite3_mprintf("store schema version %lld is newer than this "
                           "taskwatch understands (%d)",
                           (long long)version, SCHEMA_VERSION);
    return SQLITE_MISMATCH;
  }
  if (version == SCHEMA_VERSION && app == SCHEMA_APPLICATION_ID)
    return SQLITE_OK;
  /* Only an upgrade derives rows (a store of the current version gets no
   * more than its application_id here). */
  int upgrade = version > 0 && version < SCHEMA_VERSION;
  if (upgrade && fill == NULL) {
    *err = sqlite3_mprintf("store schema version %lld is older than %d; open "
                           "it with the collector to upgrade it",
                           (long long)version, SCHEMA_VERSION);
    return SQLITE_MISUSE;
  }
  /* Takes effect only while the file is still empty (a new store);
   * SCHEMA_PAGE_SIZE explains the choice. */
  if (version == 0) {
    rc = sqlite3_exec(db, "PRAGMA page_size = " SCHEMA_PAGE_SIZE, NULL, NULL,
                      err);
    if (rc != SQLITE_OK)
      return rc;
  }
  rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, err);
  if (rc != SQLITE_OK)
    return rc;
  if (upgrade)
    rc = before_ddl(db, (int)version, err);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, ddl, NULL, NULL, err);
  if (rc == SQLITE_OK)
    rc = add_columns(db, err);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, obsolete, NULL, NULL, err);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, indexes, NULL, NULL, err);
  /* The rollups of version 4 on are kept as they are; `fill` fills what
   * later versions added (version 7: slowest). */
  if (rc == SQLITE_OK && upgrade && version < 7)
    rc = fill(db, (int)version, arg, err);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, "PRAGMA user_version = " SCHEMA_VERSION_TEXT, NULL,
                      NULL, err);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, "PRAGMA application_id = " SCHEMA_APPLICATION_ID_TEXT,
                      NULL, NULL, err);
  if (rc != SQLITE_OK) {
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
  }
  return sqlite3_exec(db, "COMMIT", NULL, NULL, err);
fail:
  *err = sqlite3_mprintf("%s", sqlite3_errmsg(db));
  return rc;
}

int schema_apply(sqlite3 *db, char **err) {
  return schema_apply_upgrade(db, NULL, NULL, err);
}

const char *schema_default_db(void) {
  const char *env = getenv("TASKWATCH_DB");
  return env != NULL && env[0] != '\0' ? env : SCHEMA_DEFAULT_DB;
}
