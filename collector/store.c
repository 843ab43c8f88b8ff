/*
 * store - transactions of the collector's writer.
 *
 * Speed comes from doing little per row: statements are prepared once,
 * a transaction holds a whole batch (thousands of rows), and the loop has
 * already coalesced each task's events into one row, so a task that starts
 * and ends within one batch costs one INSERT. Rows whose task is stored
 * already become one UPDATE that derives wait and run times from the
 * stored columns.
 *
 * One writer per store: store_open() takes an exclusive flock(2) on the
 * database file before SQLite opens it, and keeps it until store_close().
 * The lock belongs to this process's open file, so it goes with the
 * process however that ends (kill -9 included): no stale lock to clean.
 * It is on the file itself, not on a name, so every path to the store
 * (relative, symlinked, hard-linked) meets it, and the -wal and -shm files,
 * which only the store's own connections open, need none of their own.
 * Linux keeps flock locks apart from the fcntl locks SQLite takes on the
 * same file, so readers (top, query) never wait for it. The descriptor is
 * closed only after every connection of the store: closing any descriptor
 * of a file drops the process's fcntl locks on it, SQLite's included.
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "format.h"
#include "held.h"
#include "inflight.h"
#include "log.h"
#include "rollup.h"
#include "rows.h"
#include "sanitize.h"
#include "schema.h"
#include "xalloc.h"

/* Rows deleted per retention step beyond the rows the batch inserted. */
#define PRUNE_STEP 2000

enum {
  ST_BULK_TASKS,
  ST_BULK_BATCHES,
  ST_UPDATE_TASK,
  ST_TASK_EXISTS,
  ST_TASK_AFTER,
  ST_INSERT_ORPHAN,
  ST_FILL_ENQUEUE,
  ST_INSERT_STRING,
  ST_AGENT_NEW,
  ST_AGENT_CONNECT,
  ST_AGENT_DISCONNECT,
  ST_AGENT_ENDED,
  ST_AGENT_HEALTH,
  ST_AGENT_BIND,
  ST_AGENT_PROGRESS,
  ST_LOST,
  ST_EXPORT,
  ST_LINK,
  ST_PRUNE_OLD,
  ST_PRUNE_FAILED,
  ST_PRUNE_EXCESS,
  ST_PRUNE_SLOWEST,
  ST_PRUNE_BATCH,
  ST_PRUNE_AGENTS,
  ST_PRUNE_STRINGS,
  ST_HELD_PUT,
  ST_HELD_CLEAR,
  ST_BEGIN,
  ST_COMMIT,
  ST_COUNT
};

static const char *const sql_text[ST_COUNT] = {
    [ST_BULK_TASKS] =
        "INSERT OR FAIL INTO tasks (id, agent, batch, position, name, mode, "
        "status, thread, enqueued_at, started_at, finished_at, wait_us, "
        "run_us, error_type, error_message, error_detail, skipped_after, "
        "drop_reason)"
        " SELECT id, agent, batch, position, name, mode, status, thread, "
        "enqueued_at, started_at, finished_at, wait_us, run_us, error_type, "
        "error_message, error_detail, skipped_after, drop_reason FROM "
        "taskwatch_new_tasks",
    [ST_BULK_BATCHES] = "INSERT OR FAIL INTO batches (id, agent, label, "
                        "created_at) "
                        "SELECT id, agent, label, created_at FROM "
                        "taskwatch_new_batches",
    /* Forward only: a final state is never replaced (status < 2 is
     * queued or running), a start never moved; times kept in order
     * (enqueued <= started <= finished). The new started_at is
     * coalesce(started_at, max(?4, enqueued_at)); SET sees the old row. */
    [ST_UPDATE_TASK] =
        "UPDATE tasks SET status = max(status, coalesce(?2, status)),"
        " thread = CASE WHEN started_at IS NULL THEN coalesce(?3, thread)"
        " ELSE thread END,"
        " started_at = coalesce(started_at, max(?4, enqueued_at)),"
        " finished_at = coalesce(max(?5, coalesce(started_at, max(?4,"
        " enqueued_at), enqueued_at)), finished_at),"
        " wait_us = coalesce(started_at, max(?4, enqueued_at)) - enqueued_at,"
        " run_us = coalesce(max(?5, coalesce(started_at, max(?4,"
        " enqueued_at), enqueued_at)), finished_at) - coalesce(started_at,"
        " max(?4, enqueued_at)),"
        " error_type = coalesce(?6, error_type),"
        " error_message = coalesce(?7, error_message),"
        " error_detail = coalesce(?8, error_detail),"
        " skipped_after = coalesce(?9, skipped_after),"
        " drop_reason = coalesce(?10, drop_reason)"
        " WHERE id = ?1 AND status < " SCHEMA_SQL_CODE(SUCCEEDED),
    [ST_TASK_EXISTS] = "SELECT 1 FROM tasks WHERE id = ?1",
    /* The row ST_UPDATE_TASK changed, as it left it. A statement of its
     * own, not RETURNING: SQLite runs each RETURNING statement through an
     * ephemeral table of its own, which made an update cost four times
     * what it does this way (one rowid probe of a page just written). */
    [ST_TASK_AFTER] = "SELECT name, status, finished_at, wait_us, run_us, "
                      "agent, enqueued_at, started_at, id, batch FROM tasks "
                      "WHERE id = ?1",
    /* A task whose ENQUEUE the store never saw, stored with what its
     * events carry (docs/schema.md: batch 0 and ORPHAN_NAME until the
     * ENQUEUE arrives, if ever). */
    [ST_INSERT_ORPHAN] =
        "INSERT INTO tasks (id, agent, batch, position, name, mode, status, "
        "thread, enqueued_at, started_at, finished_at, run_us, error_type, "
        "error_message, error_detail, skipped_after, drop_reason) VALUES "
        "(?1, ?2, 0, 0, ?3, 0, ?4, ?5, coalesce(?6, ?7), ?6, ?7, ?7 - ?6, "
        "?8, ?9, ?10, ?11, ?12)",
    /* An ENQUEUE for a task stored already: it fills an orphan's place,
     * never a real task's name and position. */
    [ST_FILL_ENQUEUE] =
        "UPDATE tasks SET batch = ?2, position = ?3, name = ?4, mode = ?5, "
        "enqueued_at = min(?6, enqueued_at), wait_us = started_at - "
        "min(?6, enqueued_at) WHERE id = ?1 AND batch = 0",
    [ST_INSERT_STRING] =
        "INSERT OR REPLACE INTO strings (agent, id, text) VALUES (?1, ?2, ?3)",
    [ST_AGENT_NEW] = "INSERT INTO agents (id, instance, service, host, pid, "
                     "started_at, connected_at, connected, auth_key, "
                     "tls_subject) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, "
                     "?8, ?9)",
    [ST_AGENT_BIND] = "UPDATE agents SET auth_key = coalesce(auth_key, ?2), "
                      "tls_subject = coalesce(?3, tls_subject) WHERE id = ?1",
    [ST_AGENT_CONNECT] =
        "UPDATE agents SET connected = 1, connected_at = ?2, disconnected_at "
        "= NULL, ended = 0 WHERE id = ?1",
    [ST_AGENT_DISCONNECT] = "UPDATE agents SET connected = 0, "
                            "disconnected_at = ?2 WHERE id = ?1",
    [ST_AGENT_ENDED] = "UPDATE agents SET ended = 1 WHERE id = ?1",
    [ST_AGENT_HEALTH] =
        "UPDATE agents SET dropped = ?2, reconnects = ?3, dropped_batches = "
        "?4, dropped_tasks = ?5 WHERE id = ?1",
    /* max() of anything and NULL is NULL in SQLite: coalesce keeps the
     * newest time when a progress row carries no event time. */
    [ST_AGENT_PROGRESS] =
        "UPDATE agents SET next_seq = max(next_seq, ?2), events = events + "
        "?3, last_event_at = coalesce(max(last_event_at, ?4), last_event_at, "
        "?4), last_received_at = coalesce(max(last_received_at, ?5), "
        "last_received_at, ?5) WHERE id = ?1",
    /* SCHEMA_SQL_ACTIVE lets SQLite use the partial index tasks_unusual. */
    [ST_LOST] = "UPDATE tasks SET " SCHEMA_SQL_SET_LOST ", finished_at = "
                "max(?2, coalesce(started_at, enqueued_at)), "
                "run_us = CASE WHEN started_at IS NOT NULL THEN max(?2, "
                "started_at) - started_at END, "
                "drop_reason = printf(?3, (SELECT dropped FROM agents WHERE "
                "id = ?1)) "
                "WHERE " SCHEMA_SQL_ACTIVE " AND agent = ?1 "
                "RETURNING name, wait_us, run_us, agent, enqueued_at, id, "
                "batch",
    [ST_EXPORT] = "INSERT INTO export_queue (seq, batch) VALUES (?1, ?2)",
    [ST_LINK] = "UPDATE batches SET traceparent = ?2 WHERE id = ?1",
    [ST_PRUNE_OLD] =
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE "
        "enqueued_at >= ?1 AND enqueued_at < ?2 AND " SCHEMA_SQL_NOT_UNHAPPY " "
        "ORDER BY enqueued_at LIMIT ?3) RETURNING batch, enqueued_at",
    [ST_PRUNE_FAILED] = "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks "
                        "WHERE " SCHEMA_SQL_UNUSUAL
                        " AND status = ?1 AND enqueued_at < ?2 LIMIT ?3) "
                        "RETURNING batch, enqueued_at",
    [ST_PRUNE_EXCESS] =
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks ORDER BY "
        "enqueued_at LIMIT ?1) RETURNING batch, enqueued_at",
    /* The slowest of minutes before the oldest succeeded task's (whose
     * raw rows retention removed; readers read raw rows there). */
    [ST_PRUNE_SLOWEST] =
        "DELETE FROM slowest WHERE minute < (SELECT enqueued_at FROM tasks "
        "WHERE " SCHEMA_SQL_SUCCEEDED_NO_INDEX " ORDER BY enqueued_at LIMIT 1) "
        "- 60000000",
    [ST_PRUNE_BATCH] = "DELETE FROM batches WHERE id = ?1 AND NOT EXISTS "
                       "(SELECT 1 FROM tasks WHERE batch = ?1)",
    /* Ids of an agent's tasks and batches lie in [id << 40, (id + 1) << 40)
     * (docs/schema.md), so "none left" is two rowid probes. */
    [ST_PRUNE_AGENTS] =
        "DELETE FROM agents WHERE id IN (SELECT id FROM agents a WHERE "
        "connected = 0 AND disconnected_at < ?1 AND NOT EXISTS (SELECT 1 FROM "
        "tasks WHERE id >= a.id << 40 AND id < (a.id + 1) << 40) AND NOT "
        "EXISTS (SELECT 1 FROM batches WHERE id >= a.id << 40 AND id < "
        "(a.id + 1) << 40) ORDER BY disconnected_at LIMIT ?2) RETURNING id",
    [ST_PRUNE_STRINGS] = "DELETE FROM strings WHERE agent = ?1",
    /* The held set's log (inflight.h): one row appended per transaction
     * that changes the set, in id order. */
    [ST_HELD_PUT] = "INSERT INTO inflight (tasks) VALUES (?1)",
    [ST_HELD_CLEAR] = "DELETE FROM inflight",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
};

/* WAL bytes that make the checkpointer run, unless configured. */
#define CHECKPOINT_BYTES (128 << 20)

struct store {
  sqlite3 *db;
  int lock_fd;        /* the flock(2) on the database file, or -1 */
  atomic_int aborted; /* store_abort() */
  int64_t busy_since; /* monotonic ms of the first retry, in busy() */
  checkpointer *checkpointer;
  sqlite3_stmt *st[ST_COUNT];
  rows *rows;         /* the bulk statements' source (rows.h) */
  task_row **newrows; /* scratch: a batch's rows to insert */
  size_t capnew;
  task_row **updates; /* scratch: a batch's rows of stored tasks */
  size_t capupdates;
  inflight held;       /* tasks in flight held in memory (inflight.h) */
  int64_t log_rows;    /* rows in the table inflight */
  int64_t log_bytes;   /* their bytes */
  int settling;        /* write every held task (store_settle()) */
  unsigned char *blob; /* scratch: the held set's blob */
  size_t capblob;
  u64map ending; /* scratch: instances that end or vanish in a batch */
  store_config cfg;
  rollup *rollups;
  store_stats stats;
  int64_t task_count;    /* tracked only with max_tasks */
  int64_t prune_from;    /* enqueued_at below which nothing is left */
  u64map pruned_batches; /* scratch: batch ids touched by a prune step */
};

static int exec1(sqlite3 *db, const char *sql, char **err) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK && err) {
    *err = xstrdup(msg ? msg : sqlite3_errstr(rc));
  }
  sqlite3_free(msg);
  return rc;
}

/* SQL text never carries a runtime value (docs/design.md, non-negotiable
 * 4: SQL is always bound). PRAGMA values cannot be bound, so the pragmas are
 * constant strings: the only choice, synchronous, picks one of two of them. */
static const char pragmas_common[] =
    "PRAGMA page_size=" SCHEMA_PAGE_SIZE "; PRAGMA journal_mode=WAL; "
    "PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY; "
    "PRAGMA wal_autocheckpoint=8192; PRAGMA journal_size_limit=67108864";

/* Runs one prepared statement that returns no rows, with up to two
 * integer parameters. */
static int exec_int2(sqlite3 *db, const char *sql, int64_t a, int64_t b) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  sqlite3_bind_int64(st, 1, a);
  if (sqlite3_bind_parameter_count(st) > 1)
    sqlite3_bind_int64(st, 2, b);
  rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/*
 * The store becomes this process's: agents still marked connected were
 * left so by a crash and are disconnected as of now, and meta names this
 * process as the collector writing the store, so that a second collector
 * refused by the lock can say who holds it (store_set_listeners() adds
 * the addresses).
 */
static int claim(store *s, char **err) {
  int64_t now = format_now_us();
  int rc = exec1(s->db, "BEGIN IMMEDIATE", err);
  if (rc != SQLITE_OK)
    return -1;
  rc = exec_int2(s->db,
                 "UPDATE agents SET connected = 0, disconnected_at = ?1 WHERE "
                 "connected = 1",
                 now, 0);
  if (rc == SQLITE_OK)
    rc = exec_int2(s->db,
                   "INSERT OR REPLACE INTO meta (key, value) VALUES "
                   "('collector_pid', ?1), ('collector_started_at', ?2), "
                   "('collector_listen', NULL)",
                   (int64_t)getpid(), now);
  if (rc == SQLITE_OK)
    rc = exec1(s->db, "COMMIT", err);
  if (rc != SQLITE_OK) {
    if (*err == NULL)
      *err = xstrdup(sqlite3_errmsg(s->db));
    if (!sqlite3_get_autocommit(s->db))
      exec1(s->db, "ROLLBACK", NULL);
    return -1;
  }
  return 0;
}

int store_set_listeners(store *s, const char *const *urls, size_t n) {
  size_t len = 1;
  for (size_t i = 0; i < n; i++)
    len += strlen(urls[i]) + 1;
  char *list = xmalloc(len);
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    size_t k = strlen(urls[i]);
    if (i)
      list[used++] = ' ';
    memcpy(list + used, urls[i], k);
    used += k;
  }
  list[used] = '\0';
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(s->db,
                              "INSERT OR REPLACE INTO meta (key, value) "
                              "VALUES ('collector_listen', ?1)",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, list, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  if (rc != SQLITE_OK)
    log_msg(LOG_WARN, "cannot record the listen addresses error=\"%s\"",
            sqlite3_errmsg(s->db));
  free(list);
  return rc;
}

/* The integer a PRAGMA returns, or -1. */
static int64_t pragma_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return v;
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How long a statement waits for a lock another connection holds (a
 * reader's checkpoint, a sqlite3 shell in a transaction). */
#define BUSY_TIMEOUT_MS 5000

/* SQLite's busy timeout, with a way out: an aborted store stops waiting
 * at the next step (at most 100 ms later). */
static int busy(void *arg, int count) {
  static const int delays_ms[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50};
  store *s = arg;
  int64_t now = monotonic_ms();
  if (count == 0)
    s->busy_since = now;
  if (atomic_load(&s->aborted) || now - s->busy_since >= BUSY_TIMEOUT_MS)
    return 0;
  int n = (int)(sizeof(delays_ms) / sizeof(delays_ms[0]));
  int ms = count < n ? delays_ms[count] : 100;
  struct timespec ts = {0, (long)ms * 1000000L};
  nanosleep(&ts, NULL);
  return 1;
}

/* Called by SQLite every PROGRESS_OPS virtual machine steps: a nonzero
 * return interrupts the statement, so an aborted store lets go of a long
 * statement even between the statements sqlite3_interrupt() reaches. */
#define PROGRESS_OPS 1000
static int progress(void *arg) {
  store *s = arg;
  return atomic_load_explicit(&s->aborted, memory_order_relaxed);
}

/* A database that is not a taskwatch store is refused before anything is
 * written to it: the pragmas switch the journal to WAL, which would
 * change such a file too. */
static int configure(store *s, char **err) {
  sqlite3_busy_handler(s->db, busy, s);
  sqlite3_progress_handler(s->db, PROGRESS_OPS, progress, s);
  char *msg = NULL;
  if (schema_check_ours(s->db, &msg) != SQLITE_OK) {
    *err = xstrdup(msg ? msg : "cannot read the store");
    sqlite3_free(msg);
    return -1;
  }
  if (exec1(s->db, pragmas_common, err) != SQLITE_OK ||
      exec1(s->db,
            s->cfg.sync_full ? "PRAGMA synchronous=FULL"
                             : "PRAGMA synchronous=NORMAL",
            err) != SQLITE_OK)
    return -1;
  int64_t version = pragma_int(s->db, "PRAGMA user_version");
  int upgrade = version > 0 && version < SCHEMA_VERSION;
  int64_t started = format_now_us();
  if (upgrade)
    log_msg(LOG_INFO, "upgrading store from_version=%lld to_version=%d",
            (long long)version, SCHEMA_VERSION);
  if (schema_apply_upgrade(s->db, rollup_upgrade, NULL, &msg) != SQLITE_OK) {
    *err = xstrdup(msg ? msg : "cannot create the schema");
    sqlite3_free(msg);
    return -1;
  }
  if (upgrade)
    log_msg(LOG_INFO, "store upgraded to_version=%d seconds=%.1f",
            SCHEMA_VERSION, (double)(format_now_us() - started) / 1e6);
  if (rows_register(s->db, &s->rows) != SQLITE_OK) {
    *err = xstrdup(sqlite3_errmsg(s->db));
    return -1;
  }
  for (int i = 0; i < ST_COUNT; i++) {
    if (sqlite3_prepare_v3(s->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT,
                           &s->st[i], NULL) != SQLITE_OK) {
      *err = xstrdup(sqlite3_errmsg(s->db));
      return -1;
    }
  }
  if (rollup_open(s->db, &s->rollups) != SQLITE_OK) {
    *err = xstrdup(sqlite3_errmsg(s->db));
    return -1;
  }
  return claim(s, err);
}

static void count_tasks(store *s) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM tasks", -1, &st, NULL) !=
      SQLITE_OK)
    return;
  if (sqlite3_step(st) == SQLITE_ROW)
    s->task_count = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
}

/*
 * Names the holder of a locked store from the meta rows its collector
 * wrote (claim(), store_set_listeners()), reading through a read-only
 * connection. A pid is named only while it is alive: the rows of a
 * collector that died stay until the next one claims the store. What the
 * rows say is sanitized like any stored string. Returns a new string.
 */
static char *holder_text(const char *path) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  long long pid = 0;
  char listen[512] = "";
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_busy_timeout(db, 1000) == SQLITE_OK &&
      sqlite3_prepare_v2(db,
                         "SELECT (SELECT value FROM meta WHERE key = "
                         "'collector_pid'), (SELECT value FROM meta WHERE key "
                         "= 'collector_listen')",
                         -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    pid = sqlite3_column_int64(st, 0);
    if (sqlite3_column_type(st, 1) == SQLITE_TEXT)
      sanitize((const char *)sqlite3_column_text(st, 1),
               (size_t)sqlite3_column_bytes(st, 1), 160, SANITIZE_ELLIPSIS,
               listen, sizeof(listen));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  char text[700];
  if (pid <= 0 || pid == (long long)getpid() ||
      (kill((pid_t)pid, 0) != 0 && errno != EPERM))
    snprintf(text, sizeof(text),
             "another process holds its lock (one collector per store)");
  else
    snprintf(text, sizeof(text),
             "another collector is writing to it (pid %lld%s%s); one "
             "collector per store",
             pid, listen[0] ? ", listening on " : "", listen);
  return xstrdup(text);
}

/* Takes the store's lock (see the top of this file), creating the file
 * when there is none yet. Returns 0, or -1 with *err. */
static int lock_store(store *s, char **err) {
  int fd = open(s->cfg.path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  struct stat st;
  if (fd < 0) {
    *err = xstrdup(strerror(errno));
    return -1;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    *err = xstrdup("not a regular file");
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    /* Before any connection of this store: closing a descriptor of the
     * file drops the process's fcntl locks on it. */
    close(fd);
    *err = e == EWOULDBLOCK ? holder_text(s->cfg.path) : xstrdup(strerror(e));
    return -1;
  }
  s->lock_fd = fd;
  return 0;
}

static int replay_held(store *s, char **err);

int store_open(const store_config *cfg, store **out, char **err) {
  store *s = xcalloc(1, sizeof(*s));
  s->cfg = *cfg;
  s->lock_fd = -1;
  inflight_init(&s->held);
  u64map_init(&s->ending);
  u64map_init(&s->pruned_batches);
  *out = NULL;
  if (lock_store(s, err) != 0) {
    store_close(s);
    return -1;
  }
  int rc = sqlite3_open_v2(
      cfg->path, &s->db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    *err = xstrdup(s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    store_close(s);
    return -1;
  }
  if (configure(s, err) != 0) {
    store_close(s);
    return -1;
  }
  if (cfg->max_tasks > 0)
    count_tasks(s);
  if (replay_held(s, err) != 0) {
    store_close(s);
    return -1;
  }
  int64_t bytes =
      cfg->checkpoint_bytes > 0 ? cfg->checkpoint_bytes : CHECKPOINT_BYTES;
  int64_t page = pragma_int(s->db, "PRAGMA page_size");
  int pages = (int)(bytes / (page > 0 ? page : 4096));
  s->checkpointer = checkpointer_start(s->db, cfg->path, pages > 0 ? pages : 1);
  *out = s;
  return 0;
}

void store_close(store *s) {
  if (s == NULL)
    return;
  checkpointer_stop(s->checkpointer);
  for (int i = 0; i < ST_COUNT; i++)
    sqlite3_finalize(s->st[i]);
  /* The rollups' statements go first: a connection with statements left
   * does not close (nor checkpoint its WAL). */
  rollup_free(s->rollups);
  if (s->db)
    sqlite3_close(s->db);
  /* Last: see lock_store(). */
  if (s->lock_fd >= 0)
    close(s->lock_fd);
  free(s->newrows);
  free(s->updates);
  free(s->blob);
  inflight_fini(&s->held);
  u64map_fini(&s->ending);
  u64map_fini(&s->pruned_batches);
  free(s);
}

void store_abort(store *s) {
  atomic_store(&s->aborted, 1);
  sqlite3_interrupt(s->db);
}

void store_get_stats(const store *s, store_stats *out) {
  *out = s->stats;
}

/* Steps a statement that returns no rows. A constraint violation is one
 * bad row from a hostile or buggy agent: logged, not fatal. */
static int run(store *s, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc == SQLITE_DONE || rc == SQLITE_ROW)
    return SQLITE_OK;
  if ((rc & 0xff) == SQLITE_CONSTRAINT) {
    log_msg(LOG_DEBUG, "row skipped error=\"%s\"", sqlite3_errmsg(s->db));
    return SQLITE_OK;
  }
  return rc;
}

static void bind_blob_text(sqlite3_stmt *st, int i, blob b, int have) {
  if (have)
    sqlite3_bind_text(st, i, b.ptr, (int)b.len, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

static void bind_opt(sqlite3_stmt *st, int i, int have, int64_t v) {
  if (have)
    sqlite3_bind_int64(st, i, v);
  else
    sqlite3_bind_null(st, i);
}

static int is_final(int status) {
  return status >= SCHEMA_SUCCEEDED;
}

/* After a task row is stored: counts it and feeds the rollups. */
static void inserted_task(store *s, const task_row *r) {
  s->stats.rows_inserted++;
  s->task_count++;
  /* A task older than what retention has worked through (an agent that
   * held it through an outage, or whose clock runs behind) must still be
   * found by the next step. */
  if (r->enqueued_at < s->prune_from)
    s->prune_from = r->enqueued_at;
  if ((r->have & HAVE_END) && is_final(r->status)) {
    int started = (r->have & HAVE_START) != 0;
    rollup_add(s->rollups, r->agent, r->name->text, r->name->len,
               r->enqueued_at, r->status,
               started ? r->started_at - r->enqueued_at : ROLLUP_NONE,
               started ? r->finished_at - r->started_at : ROLLUP_NONE, r->id,
               r->batch);
  }
}

/* Steps an INSERT ... SELECT from a rows table. Returns SQLITE_OK,
 * SQLITE_CONSTRAINT when a row broke a constraint (the rows before it
 * stay inserted: OR FAIL; the transaction goes on), or another error. */
static int step_insert(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc == SQLITE_DONE)
    return SQLITE_OK;
  return (rc & 0xff) == SQLITE_CONSTRAINT ? SQLITE_CONSTRAINT : rc;
}

/*
 * Inserts n items of a rows table (rows.h) with one statement. When a row
 * breaks a constraint (a hostile agent repeating an id), the statement
 * stops there with the rows before it inserted; the bad row is logged and
 * handed to `conflict`, and the statement goes on from the row after it.
 * `inserted` is called for every item stored, in order.
 *
 * Why OR FAIL and not SQLite's default (ABORT, which undoes the whole
 * statement): to be able to undo a statement, SQLite copies every page
 * it is about to change for the first time in it into a statement
 * journal, in memory. With 64 KiB pages, 16 agents' ids and three indexes
 * that was a malloc and a 64 KiB copy for most pages the transaction
 * touches: about a seventh of the collector's CPU on bench/ingest's
 * realistic load. No statement of the bulk inserts may abort now, so
 * SQLite keeps no statement journal for them.
 */
static int insert_rows(store *s, int kind, const void *items, size_t n,
                       size_t size,
                       void (*inserted)(store *s, const void *item),
                       int (*conflict)(store *s, const void *item)) {
  sqlite3_stmt *st =
      s->st[kind == ROWS_TASKS ? ST_BULK_TASKS : ST_BULK_BATCHES];
  const char *p = items;
  int rc = SQLITE_OK;
  size_t done = 0;
  while (done < n && rc == SQLITE_OK) {
    rows_feed(s->rows, kind, p + done * size, n - done);
    rc = step_insert(st);
    /* The rows stored: all of them, or those before the bad one. */
    size_t k = n - done;
    if (rc == SQLITE_CONSTRAINT) {
      sqlite3_int64 changes = sqlite3_changes64(s->db);
      if (changes < 0 || (size_t)changes >= n - done) {
        rc = SQLITE_INTERNAL; /* no row of this run left to blame */
        break;
      }
      k = (size_t)changes;
    } else if (rc != SQLITE_OK) {
      break;
    }
    for (size_t i = done; inserted && i < done + k; i++)
      inserted(s, p + i * size);
    done += k;
    if (rc == SQLITE_CONSTRAINT) {
      log_msg(LOG_DEBUG, "row skipped table=%s error=\"%s\"",
              kind == ROWS_TASKS ? "tasks" : "batches", sqlite3_errmsg(s->db));
      rc = conflict ? conflict(s, p + done * size) : SQLITE_OK;
      done++;
    }
  }
  rows_feed(s->rows, kind, NULL, 0);
  return rc;
}

static int task_conflict(store *s, const void *item);

/* A new row's times in order: enqueued <= started <= finished (the
 * UPDATE keeps the same for stored rows). */
static void sane_order(task_row *r) {
  if ((r->have & HAVE_START) && r->started_at < r->enqueued_at)
    r->started_at = r->enqueued_at;
  int64_t floor = r->have & HAVE_START ? r->started_at : r->enqueued_at;
  if ((r->have & HAVE_END) && r->finished_at < floor)
    r->finished_at = floor;
}

static void inserted_task_item(store *s, const void *item) {
  inserted_task(s, *(task_row *const *)item);
}

static int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

static int64_t column_or(sqlite3_stmt *st, int i, int64_t dflt) {
  return sqlite3_column_type(st, i) == SQLITE_NULL
             ? dflt
             : sqlite3_column_int64(st, i);
}

/* Counts a late or repeated event found by the writer; logs at powers of
 * two. */
static void refused_row(store *s, const task_row *r, const char *why) {
  uint64_t n = ++s->stats.events_refused;
  if ((n & (n - 1)) == 0)
    log_msg(LOG_WARN,
            "event not applied task=%lld reason=\"%s\" refused_total=%llu",
            (long long)r->id, why, (unsigned long long)n);
}

static int task_exists(store *s, int64_t id, int *exists) {
  sqlite3_stmt *st = s->st[ST_TASK_EXISTS];
  sqlite3_bind_int64(st, 1, id);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  *exists = rc == SQLITE_ROW;
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * A task's events without its ENQUEUE, for a task the store does not
 * know (an agent's threads' buffers may drain a START ahead of the
 * ENQUEUE of another thread, a transaction apart): stored with what they
 * carry, so no event is ignored; the ENQUEUE fills in the rest if it
 * comes (task_conflict).
 */
static int insert_orphan(store *s, const task_row *r) {
  sqlite3_stmt *st = s->st[ST_INSERT_ORPHAN];
  int started = (r->have & HAVE_START) != 0;
  int ended = (r->have & HAVE_END) != 0;
  int error = (r->have & HAVE_ERROR) != 0;
  int64_t finished = r->finished_at;
  if (started && ended && finished < r->started_at)
    finished = r->started_at;
  sqlite3_bind_int64(st, 1, r->id);
  sqlite3_bind_int64(st, 2, r->agent);
  sqlite3_bind_text(st, 3, SCHEMA_ORPHAN_NAME, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 4, r->status);
  bind_opt(st, 5, r->have & HAVE_THREAD, r->thread);
  bind_opt(st, 6, started, r->started_at);
  bind_opt(st, 7, ended, finished);
  bind_blob_text(st, 8, r->error_type, error);
  bind_blob_text(st, 9, r->error_message, error);
  bind_blob_text(st, 10, r->error_detail, error);
  bind_opt(st, 11, r->have & HAVE_SKIP, r->skipped_after);
  bind_blob_text(st, 12, r->drop_reason, r->have & HAVE_DROP);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    if ((rc & 0xff) != SQLITE_CONSTRAINT)
      return rc;
    /* Nothing else is left to try: say so, at powers of two. */
    uint64_t n = ++s->stats.updates_unmatched;
    if ((n & (n - 1)) == 0)
      log_msg(LOG_WARN,
              "event for an unknown task not stored task=%lld error=\"%s\" "
              "unmatched_total=%llu",
              (long long)r->id, sqlite3_errmsg(s->db), (unsigned long long)n);
    return SQLITE_OK;
  }
  uint64_t n = ++s->stats.orphans;
  s->stats.rows_inserted++;
  s->task_count++;
  if ((n & (n - 1)) == 0)
    log_msg(LOG_WARN,
            "task stored without its ENQUEUE task=%lld orphans_total=%llu",
            (long long)r->id, (unsigned long long)n);
  if (ended && is_final(r->status))
    rollup_add(s->rollups, r->agent, SCHEMA_ORPHAN_NAME,
               strlen(SCHEMA_ORPHAN_NAME), started ? r->started_at : finished,
               r->status, ROLLUP_NONE,
               started ? finished - r->started_at : ROLLUP_NONE, r->id, 0);
  return SQLITE_OK;
}

/* After ST_UPDATE_TASK changed r's task: counts it, refuses a second
 * START, and feeds the rollups when r made it final. */
static int updated_task(store *s, const task_row *r) {
  sqlite3_stmt *st = s->st[ST_TASK_AFTER];
  sqlite3_bind_int64(st, 1, r->id);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  int status = sqlite3_column_int(st, 1);
  s->stats.rows_updated++;
  if ((r->have & HAVE_START) &&
      sqlite3_column_int64(st, 7) != max64(r->started_at,
                                           sqlite3_column_int64(st, 6)))
    refused_row(s, r, "task already started");
  /* The row was queued or running (the UPDATE's WHERE): an end makes it
   * final now, once. */
  if ((r->have & HAVE_END) && is_final(status) &&
      sqlite3_column_type(st, 2) != SQLITE_NULL)
    rollup_add(s->rollups, sqlite3_column_int64(st, 5),
               (const char *)sqlite3_column_text(st, 0),
               (size_t)sqlite3_column_bytes(st, 0), sqlite3_column_int64(st, 6),
               status, column_or(st, 3, ROLLUP_NONE),
               column_or(st, 4, ROLLUP_NONE), sqlite3_column_int64(st, 8),
               sqlite3_column_int64(st, 9));
  sqlite3_reset(st);
  return SQLITE_OK;
}

/* The row's START, end and error, applied to the stored task when it is
 * still queued or running. */
static int update_task(store *s, const task_row *r) {
  sqlite3_stmt *st = s->st[ST_UPDATE_TASK];
  sqlite3_bind_int64(st, 1, r->id);
  bind_opt(st, 2, r->have & (HAVE_START | HAVE_END), r->status);
  bind_opt(st, 3, r->have & HAVE_THREAD, r->thread);
  bind_opt(st, 4, r->have & HAVE_START, r->started_at);
  bind_opt(st, 5, r->have & HAVE_END, r->finished_at);
  bind_blob_text(st, 6, r->error_type, r->have & HAVE_ERROR);
  bind_blob_text(st, 7, r->error_message, r->have & HAVE_ERROR);
  bind_blob_text(st, 8, r->error_detail, r->have & HAVE_ERROR);
  bind_opt(st, 9, r->have & HAVE_SKIP, r->skipped_after);
  bind_blob_text(st, 10, r->drop_reason, r->have & HAVE_DROP);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return (rc & 0xff) == SQLITE_CONSTRAINT ? SQLITE_OK : rc;
  if (sqlite3_changes(s->db) > 0)
    return updated_task(s, r);
  int exists;
  if ((rc = task_exists(s, r->id, &exists)) != SQLITE_OK)
    return rc;
  if (!exists)
    return insert_orphan(s, r);
  refused_row(s, r, "task already ended");
  return SQLITE_OK;
}

/* A task row whose INSERT met a stored task of the same id: its ENQUEUE
 * fills an orphan's place or is refused (a second ENQUEUE never replaces
 * a task's name and position); its other events apply as an UPDATE. */
static int task_conflict(store *s, const void *item) {
  task_row *r = *(task_row *const *)item;
  sqlite3_stmt *st = s->st[ST_FILL_ENQUEUE];
  sqlite3_bind_int64(st, 1, r->id);
  sqlite3_bind_int64(st, 2, r->batch);
  sqlite3_bind_int64(st, 3, r->position);
  sqlite3_bind_text(st, 4, r->name->text, (int)r->name->len, SQLITE_STATIC);
  sqlite3_bind_int(st, 5, r->mode);
  sqlite3_bind_int64(st, 6, r->enqueued_at);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return (rc & 0xff) == SQLITE_CONSTRAINT ? SQLITE_OK : rc;
  if (sqlite3_changes(s->db) == 0)
    refused_row(s, r, "task enqueued again");
  if (!(r->have & (HAVE_START | HAVE_END)))
    return SQLITE_OK;
  /* The enqueuing thread is not the running one. */
  if (!(r->have & HAVE_START))
    r->have &= (uint8_t)~HAVE_THREAD;
  return update_task(s, r);
}

/* ---- tasks in flight (inflight.h) --------------------------------------- */

static int row_is_final(const task_row *r) {
  return (r->have & HAVE_END) && is_final(r->status);
}

/*
 * The columns a held task has, between its row and its place in the held
 * set: the one place that names them (inflight.c does the same between
 * the set and its blob). A held task keeps what its ENQUEUE and START
 * set; merge_held() gives its row the rest when it ends.
 */
static void row_from_held(task_row *r, const inflight_task *t) {
  memset(r, 0, sizeof(*r));
  r->id = t->id;
  r->agent = t->agent;
  r->batch = t->batch;
  r->thread = t->thread;
  r->enqueued_at = t->enqueued_at;
  r->started_at = t->started_at;
  r->name = t->name;
  r->position = t->position;
  r->mode = t->mode;
  r->status = t->status;
  r->have = t->have;
}

static void held_from_row(inflight_task *t, const task_row *r) {
  t->agent = r->agent;
  t->batch = r->batch;
  t->thread = r->thread;
  t->enqueued_at = r->enqueued_at;
  t->started_at = r->started_at;
  t->name = r->name;
  t->position = r->position;
  t->mode = r->mode;
  t->status = r->status;
  t->have = r->have & (HAVE_ENQUEUE | HAVE_START | HAVE_THREAD);
}

/* A held task as a new row, in b's arena (the writer's while it writes b). */
static task_row *held_row(wbatch *b, const inflight_task *t) {
  task_row *r = arena_alloc(&b->mem, sizeof(*r));
  row_from_held(r, t);
  return r;
}

static void hold(store *s, const task_row *r, int64_t now_ms) {
  inflight_task *t = inflight_add(&s->held, r->id);
  held_from_row(t, r);
  t->since_ms = now_ms;
  s->stats.rows_held++;
}

/*
 * r's events applied to a held task as ST_UPDATE_TASK applies them to a
 * stored one: a START only to a task not started yet (times kept in
 * order), an end makes it final. Returns the task's final row (in b's
 * arena; the caller lets t go) when r ends it, else NULL.
 */
static task_row *merge_held(store *s, wbatch *b, inflight_task *t,
                            const task_row *r) {
  if (r->have & HAVE_START) {
    if (t->have & HAVE_START) {
      refused_row(s, r, "task already started");
    } else {
      t->started_at = max64(r->started_at, t->enqueued_at);
      if (r->have & HAVE_THREAD)
        t->thread = r->thread;
      t->have |= HAVE_START | (r->have & HAVE_THREAD);
    }
  }
  if (r->have & (HAVE_START | HAVE_END) && r->status > t->status)
    t->status = r->status;
  inflight_touch(&s->held, t);
  if (!(r->have & HAVE_END))
    return NULL;
  task_row *row = held_row(b, t);
  row->finished_at = r->finished_at;
  row->error_type = r->error_type;
  row->error_message = r->error_message;
  row->error_detail = r->error_detail;
  row->skipped_after = r->skipped_after;
  row->drop_reason = r->drop_reason;
  row->have |= r->have & (HAVE_END | HAVE_ERROR | HAVE_SKIP | HAVE_DROP);
  sane_order(row);
  return row;
}

/* Whether a held task of this agent must be written now: its instance
 * ends or vanishes in the batch (mark_lost() turns it lost after the
 * rows). */
static int agent_ending(const store *s, int64_t agent) {
  return s->ending.count > 0 && u64map_get(&s->ending, (uint64_t)agent);
}

static void grow_scratch(task_row ***rows, size_t *cap, size_t need) {
  if (*cap < need) {
    *cap = need + need / 2;
    *rows = xrealloc(*rows, *cap * sizeof(**rows));
  }
}

/*
 * Sorts b's task rows: new and final rows to insert (s->newrows, *nnew),
 * later events of stored tasks to update (s->updates, *nupdates), and
 * tasks to hold or held already, whose events are merged into s->held.
 * Held tasks that are old enough, or whose instance ends in b, or all of
 * them when settling, join the rows to insert.
 */
static void sort_rows(store *s, wbatch *b, size_t *nnew, size_t *nupdates) {
  size_t n = 0, u = 0;
  int64_t now = monotonic_ms();
  /* A task whose agent held its events as the acks advise has been in
   * flight up to that long already: it is held that much less, and not
   * at all when that is the whole hold (its agent kept it as long as the
   * writer would have, and one that ended within it came final). `top`
   * then shows it within the hold of its events, not twice that. */
  int64_t agent_held = b->agent_hold_ms > 0 ? b->agent_hold_ms : 0;
  int holding = s->cfg.hold_ms > agent_held && !s->settling;
  grow_scratch(&s->newrows, &s->capnew, 2 * b->nrows + s->held.n + 1);
  grow_scratch(&s->updates, &s->capupdates, b->nrows + 1);
  u64map_clear(&s->ending);
  for (size_t i = 0; i < b->nops; i++)
    if (b->ops[i].kind == AGENT_OP_ENDED || b->ops[i].kind == AGENT_OP_LOST)
      u64map_put(&s->ending, (uint64_t)b->ops[i].agent, s);
  for (size_t i = 0; i < b->nrows; i++) {
    task_row *r = b->rows[i];
    inflight_task *t = inflight_get(&s->held, r->id);
    if (t && r->update) {
      task_row *done = merge_held(s, b, t, r);
      if (done) {
        s->newrows[n++] = done;
        inflight_remove(&s->held, t);
      }
      continue;
    }
    if (t) {
      /* Enqueued again: the held task is stored first, then this row
       * meets it as it would meet any stored task (task_conflict). */
      s->newrows[n++] = held_row(b, t);
      inflight_remove(&s->held, t);
    } else if (r->update) {
      s->updates[u++] = r;
      continue;
    }
    sane_order(r);
    if (holding && !t && (r->have & HAVE_ENQUEUE) && !row_is_final(r) &&
        s->held.n < INFLIGHT_MAX && !agent_ending(s, r->agent))
      hold(s, r, now - agent_held);
    else
      s->newrows[n++] = r;
  }
  b->held_due_ms = -1;
  for (size_t i = 0; i < s->held.n;) {
    inflight_task *t = &s->held.items[i];
    int64_t due = t->since_ms + s->cfg.hold_ms - now;
    if (!s->settling && due > 0 && !agent_ending(s, t->agent)) {
      if (b->held_due_ms < 0 || due < b->held_due_ms)
        b->held_due_ms = due;
      i++;
      continue;
    }
    s->newrows[n++] = held_row(b, t);
    inflight_remove(&s->held, t); /* the last one moves to i */
  }
  *nnew = n;
  *nupdates = u;
}

/* The log may grow to this many times the bytes of the whole set (and
 * this much more) before it is replaced by one blob of the set: a
 * transaction writes O(changes), and the log stays O(set). */
#define LOG_SET_RATIO 3
#define LOG_SLACK_BYTES (256 << 10)

/* What changed in the held set, appended to the table inflight; the whole
 * set instead of the log when the log has grown past its bound. */
static int write_held(store *s) {
  int rc;
  inflight *f = &s->held;
  if (f->n == 0) {
    f->ntouched = f->ngone = 0; /* nothing held: nothing to log */
    if (s->log_rows == 0)
      return SQLITE_OK;
    if ((rc = run(s, s->st[ST_HELD_CLEAR])) != SQLITE_OK)
      return rc;
    s->log_rows = s->log_bytes = 0;
    return SQLITE_OK;
  }
  if (!f->changed)
    return SQLITE_OK;
  int whole = s->log_rows == 0 ||
              s->log_bytes > LOG_SET_RATIO * (int64_t)inflight_whole_size(f) +
                                 LOG_SLACK_BYTES;
  if (whole && s->log_rows > 0) {
    if ((rc = run(s, s->st[ST_HELD_CLEAR])) != SQLITE_OK)
      return rc;
    s->log_rows = s->log_bytes = 0;
  }
  size_t n = inflight_encode(f, whole, &s->blob, &s->capblob);
  sqlite3_stmt *st = s->st[ST_HELD_PUT];
  sqlite3_bind_blob(st, 1, s->blob, (int)n, SQLITE_STATIC);
  rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return rc;
  s->log_rows++;
  s->log_bytes += (int64_t)n;
  return SQLITE_OK;
}

/* The batch's new batch rows, its task rows (new, final, updates) and what
 * it leaves held. */
static int write_tasks(store *s, wbatch *b) {
  size_t nnew, nupdates;
  int rc = insert_rows(s, ROWS_BATCHES, b->batches, b->nbatches,
                       sizeof(*b->batches), NULL, NULL);
  if (rc != SQLITE_OK)
    return rc;
  sort_rows(s, b, &nnew, &nupdates);
  rc = insert_rows(s, ROWS_TASKS, s->newrows, nnew, sizeof(*s->newrows),
                   inserted_task_item, task_conflict);
  for (size_t i = 0; i < b->nlinks && rc == SQLITE_OK; i++) {
    sqlite3_bind_int64(s->st[ST_LINK], 1, b->links[i].batch);
    bind_blob_text(s->st[ST_LINK], 2, b->links[i].traceparent, 1);
    rc = run(s, s->st[ST_LINK]);
  }
  for (size_t i = 0; i < nupdates && rc == SQLITE_OK; i++)
    rc = update_task(s, s->updates[i]);
  if (rc == SQLITE_OK)
    rc = write_held(s);
  return rc;
}

/* An instance's owner (auth.h) at parameters i and i + 1: its key and
 * its TLS client certificate's subject, NULL where unknown. */
static void bind_owner(sqlite3_stmt *st, int i, const agent_op *op) {
  if (op->has_key)
    sqlite3_bind_blob(st, i, op->key, PROTO_KEY_SIZE, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
  bind_blob_text(st, i + 1, op->subject, op->subject.ptr != NULL);
}

static int write_op(store *s, const agent_op *op) {
  sqlite3_stmt *st;
  switch (op->kind) {
  case AGENT_OP_NEW:
    st = s->st[ST_AGENT_NEW];
    sqlite3_bind_int64(st, 1, op->agent);
    sqlite3_bind_blob(st, 2, op->instance, PROTO_INSTANCE_SIZE, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, op->service.ptr, (int)op->service.len,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, 4, op->host.ptr, (int)op->host.len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, op->pid);
    sqlite3_bind_int64(st, 6, op->started_at);
    sqlite3_bind_int64(st, 7, op->at);
    bind_owner(st, 8, op);
    return run(s, st);
  case AGENT_OP_BIND:
    st = s->st[ST_AGENT_BIND];
    sqlite3_bind_int64(st, 1, op->agent);
    bind_owner(st, 2, op);
    return run(s, st);
  case AGENT_OP_CONNECT:
  case AGENT_OP_DISCONNECT:
    st = s->st[op->kind == AGENT_OP_CONNECT ? ST_AGENT_CONNECT
                                            : ST_AGENT_DISCONNECT];
    sqlite3_bind_int64(st, 1, op->agent);
    sqlite3_bind_int64(st, 2, op->at);
    return run(s, st);
  case AGENT_OP_ENDED:
    st = s->st[ST_AGENT_ENDED];
    sqlite3_bind_int64(st, 1, op->agent);
    return run(s, st);
  case AGENT_OP_HEALTH:
    st = s->st[ST_AGENT_HEALTH];
    sqlite3_bind_int64(st, 1, op->agent);
    sqlite3_bind_int64(st, 2, op->a);
    sqlite3_bind_int64(st, 3, op->b);
    sqlite3_bind_int64(st, 4, op->c);
    sqlite3_bind_int64(st, 5, op->d);
    return run(s, st);
  default:
    /* After the rows: mark_lost. */
    assert(op->kind == AGENT_OP_LOST);
    return SQLITE_OK;
  }
}

/* What a task left open by its instance is told (printf(), with the
 * events the agent reported dropping). */
static const char lost_vanished[] =
    "agent disconnected and did not return; it reported %,d events dropped";
static const char lost_ended[] =
    "agent ended before the task finished; it reported %,d events dropped";

static int mark_lost(store *s, const agent_op *op) {
  sqlite3_stmt *st = s->st[ST_LOST];
  int rc;
  int n = 0;
  sqlite3_bind_int64(st, 1, op->agent);
  sqlite3_bind_int64(st, 2, op->at);
  sqlite3_bind_text(st, 3,
                    op->kind == AGENT_OP_ENDED ? lost_ended : lost_vanished, -1,
                    SQLITE_STATIC);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    s->stats.tasks_lost++;
    n++;
    rollup_add(s->rollups, sqlite3_column_int64(st, 3),
               (const char *)sqlite3_column_text(st, 0),
               (size_t)sqlite3_column_bytes(st, 0), sqlite3_column_int64(st, 4),
               SCHEMA_LOST, column_or(st, 1, ROLLUP_NONE),
               column_or(st, 2, ROLLUP_NONE), sqlite3_column_int64(st, 5),
               sqlite3_column_int64(st, 6));
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return rc;
  if (n > 0 || op->kind == AGENT_OP_LOST)
    log_msg(LOG_INFO, "tasks marked lost agent=%lld count=%d reason=%s",
            (long long)op->agent, n,
            op->kind == AGENT_OP_ENDED ? "ended" : "vanished");
  return SQLITE_OK;
}

static int write_progress(store *s, const agent_progress *p) {
  sqlite3_stmt *st = s->st[ST_AGENT_PROGRESS];
  sqlite3_bind_int64(st, 1, p->agent);
  sqlite3_bind_int64(st, 2, (int64_t)p->next_seq);
  sqlite3_bind_int64(st, 3, p->events);
  bind_opt(st, 4, p->events > 0, p->last_event_at);
  bind_opt(st, 5, p->events > 0, p->received_at);
  return run(s, st);
}

/* Runs one DELETE ... RETURNING batch, enqueued_at; remembers the batches
 * it touched. Returns the rows deleted or a negative SQLite code. */
static int64_t prune_with(store *s, sqlite3_stmt *st, int64_t *newest) {
  int64_t n = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t batch = sqlite3_column_int64(st, 0);
    int64_t at = sqlite3_column_int64(st, 1);
    if (batch)
      u64map_put(&s->pruned_batches, (uint64_t)batch, s);
    if (newest && at > *newest)
      *newest = at;
    n++;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return -rc;
  s->task_count -= n;
  s->stats.tasks_pruned += (uint64_t)n;
  return n;
}

static int prune_batches(store *s) {
  sqlite3_stmt *st = s->st[ST_PRUNE_BATCH];
  u64map *m = &s->pruned_batches;
  int rc = SQLITE_OK;
  size_t pos = 0;
  uint64_t batch;
  while (rc == SQLITE_OK && u64map_next(m, &pos, &batch, NULL)) {
    sqlite3_bind_int64(st, 1, (int64_t)batch);
    rc = run(s, st);
  }
  u64map_clear(m);
  return rc;
}

/* Agents rows (and their names) of instances long gone, whose tasks and
 * batches retention has removed: a fleet that restarts its processes
 * often would otherwise grow them without end. At most PRUNE_AGENTS per
 * step. */
#define PRUNE_AGENTS 100
static int prune_agents(store *s, int64_t now) {
  if (s->cfg.agent_grace_us <= 0)
    return SQLITE_OK;
  sqlite3_stmt *st = s->st[ST_PRUNE_AGENTS];
  int64_t ids[PRUNE_AGENTS];
  int n = 0, rc;
  sqlite3_bind_int64(st, 1, now - s->cfg.agent_grace_us);
  sqlite3_bind_int(st, 2, PRUNE_AGENTS);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    if (n < PRUNE_AGENTS)
      ids[n++] = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return rc;
  rc = SQLITE_OK;
  for (int i = 0; i < n && rc == SQLITE_OK; i++) {
    sqlite3_bind_int64(s->st[ST_PRUNE_STRINGS], 1, ids[i]);
    rc = run(s, s->st[ST_PRUNE_STRINGS]);
  }
  if (rc == SQLITE_OK)
    s->stats.agents_pruned += (uint64_t)n;
  return rc;
}

/* One retention step: deletes at most `limit` rows per rule, oldest
 * first, so a big backlog is worked off over many transactions. */
static int prune(store *s, int64_t limit) {
  int64_t now = format_now_us(), n;
  sqlite3_stmt *st;
  if (s->cfg.retain_us > 0) {
    int64_t cutoff = now - s->cfg.retain_us, newest = s->prune_from;
    st = s->st[ST_PRUNE_OLD];
    sqlite3_bind_int64(st, 1, s->prune_from);
    sqlite3_bind_int64(st, 2, cutoff);
    sqlite3_bind_int64(st, 3, limit);
    if ((n = prune_with(s, st, &newest)) < 0)
      return (int)-n;
    s->prune_from = n < limit ? cutoff : newest;
  }
  int64_t keep_failed =
      s->cfg.retain_fail_us ? s->cfg.retain_fail_us : s->cfg.retain_us;
  for (int status = SCHEMA_FAILED; keep_failed > 0 && status <= SCHEMA_LOST;
       status++) {
    st = s->st[ST_PRUNE_FAILED];
    sqlite3_bind_int(st, 1, status);
    sqlite3_bind_int64(st, 2, now - keep_failed);
    sqlite3_bind_int64(st, 3, limit);
    if ((n = prune_with(s, st, NULL)) < 0)
      return (int)-n;
  }
  if (s->cfg.max_tasks > 0 && s->task_count > s->cfg.max_tasks) {
    int64_t excess = s->task_count - s->cfg.max_tasks;
    st = s->st[ST_PRUNE_EXCESS];
    sqlite3_bind_int64(st, 1, excess < limit ? excess : limit);
    if ((n = prune_with(s, st, NULL)) < 0)
      return (int)-n;
  }
  int rc = SQLITE_OK;
  if (s->cfg.retain_us > 0 || s->cfg.max_tasks > 0)
    rc = run(s, s->st[ST_PRUNE_SLOWEST]);
  if (rc == SQLITE_OK)
    rc = prune_batches(s);
  return rc == SQLITE_OK ? prune_agents(s, now) : rc;
}

static int write_all(store *s, wbatch *b) {
  int rc = SQLITE_OK;
  uint64_t inserted = s->stats.rows_inserted;
  for (size_t i = 0; i < b->nops && rc == SQLITE_OK; i++)
    rc = write_op(s, &b->ops[i]);
  for (size_t i = 0; i < b->nstrings && rc == SQLITE_OK; i++) {
    sqlite3_stmt *st = s->st[ST_INSERT_STRING];
    const string_row *r = &b->strings[i];
    sqlite3_bind_int64(st, 1, r->agent);
    sqlite3_bind_int64(st, 2, r->id);
    sqlite3_bind_text(st, 3, r->text->text, (int)r->text->len, SQLITE_STATIC);
    rc = run(s, st);
  }
  if (rc == SQLITE_OK)
    rc = write_tasks(s, b);
  for (size_t i = 0; i < b->nprogress && rc == SQLITE_OK; i++)
    rc = write_progress(s, &b->progress[i]);
  /* Instances that ended or vanished leave no task open: after the rows,
   * so a task that ended in the same transaction keeps its end. */
  for (size_t i = 0; i < b->nops && rc == SQLITE_OK; i++)
    if (b->ops[i].kind == AGENT_OP_LOST || b->ops[i].kind == AGENT_OP_ENDED)
      rc = mark_lost(s, &b->ops[i]);
  for (size_t i = 0; i < b->nexports && rc == SQLITE_OK; i++) {
    sqlite3_bind_int64(s->st[ST_EXPORT], 1, b->export_seq + (int64_t)i);
    sqlite3_bind_int64(s->st[ST_EXPORT], 2, b->exports[i]);
    rc = run(s, s->st[ST_EXPORT]);
  }
  if (rc == SQLITE_OK)
    rc = rollup_flush(s->rollups);
  if (rc == SQLITE_OK && b->prune)
    rc = prune(s, PRUNE_STEP + (int64_t)(s->stats.rows_inserted - inserted));
  return rc;
}

int store_write(store *s, wbatch *b) {
  int64_t count_before = s->task_count, prune_from_before = s->prune_from;
  int64_t log_rows_before = s->log_rows, log_bytes_before = s->log_bytes;
  store_stats before = s->stats;
  if (atomic_load(&s->aborted))
    return SQLITE_INTERRUPT;
  inflight_save(&s->held);
  int rc = run(s, s->st[ST_BEGIN]);
  if (rc == SQLITE_OK)
    rc = write_all(s, b);
  if (rc == SQLITE_OK)
    rc = run(s, s->st[ST_COMMIT]);
  if (rc != SQLITE_OK) {
    log_msg(LOG_ERROR, "transaction failed error=\"%s\"",
            sqlite3_errmsg(s->db));
    if (!sqlite3_get_autocommit(s->db))
      exec1(s->db, "ROLLBACK", NULL);
    /* The batch is written again, and its rows counted then. */
    rollup_rollback(s->rollups);
    s->stats = before;
    s->task_count = count_before;
    s->prune_from = prune_from_before;
    u64map_clear(&s->pruned_batches);
    inflight_restore(&s->held);
    s->log_rows = log_rows_before;
    s->log_bytes = log_bytes_before;
    return rc;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  b->committed_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  s->stats.transactions++;
  s->stats.events += b->events;
  s->stats.events_refused += b->refused;
  s->stats.times_clamped += b->clamped;
  return SQLITE_OK;
}

int store_settle(store *s) {
  if (s->held.n == 0 && s->log_rows == 0)
    return SQLITE_OK;
  wbatch *b = wbatch_new(0);
  s->settling = 1;
  int rc = store_write(s, b);
  s->settling = 0;
  wbatch_free(b);
  return rc;
}

/* The replay of the table inflight: the set its log gives, the names in
 * b's arena. */
typedef struct replay {
  inflight set;
  wbatch *b;
} replay;

/* A task of the log: held, or changed. */
static void replay_task(const held_task *h, void *arg) {
  replay *r = arg;
  istr *text = arena_alloc(&r->b->mem, sizeof(*text) + h->name_len + 1);
  text->len = h->name_len;
  memcpy(text->text, h->name, h->name_len);
  text->text[h->name_len] = '\0';
  inflight_task *t = inflight_get(&r->set, h->id);
  if (t == NULL)
    t = inflight_add(&r->set, h->id);
  inflight_from_blob(t, h, text);
}

/* A task of the log let go: it has its row. */
static void replay_gone(int64_t id, void *arg) {
  replay *r = arg;
  inflight_task *t = inflight_get(&r->set, id);
  if (t)
    inflight_remove(&r->set, t);
}

/*
 * The tasks an earlier run held when it ended without settling (kill -9,
 * a crash, a store that failed at the stop): the log of the table
 * inflight replayed in order, written as queued or running rows in one
 * transaction that also empties the table, before anything else reads the
 * store (the loop's open instances, the exports' table of open tasks find
 * them in tasks, as any open task). Their later events update the rows.
 * Returns 0, or -1 with *err.
 */
static int replay_held(store *s, char **err) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(s->db, "SELECT tasks FROM inflight ORDER BY id",
                              -1, &st, NULL);
  if (rc != SQLITE_OK) {
    *err = xstrdup(sqlite3_errmsg(s->db));
    return -1;
  }
  replay r;
  inflight_init(&r.set);
  r.b = wbatch_new(0);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    s->log_rows++;
    if (held_decode_log(sqlite3_column_blob(st, 0),
                        (size_t)sqlite3_column_bytes(st, 0), replay_task,
                        replay_gone, &r) < 0)
      log_msg(LOG_ERROR, "tasks in flight partly unreadable note=\"the "
                         "readable ones are written\"");
  }
  sqlite3_finalize(st);
  for (size_t i = 0; i < r.set.n; i++) {
    task_row *row = wbatch_add_row(r.b);
    row_from_held(row, &r.set.items[i]);
    /* A blob says what a held task may be: never final. */
    if (row->status >= SCHEMA_SUCCEEDED)
      row->status = SCHEMA_QUEUED;
    row->have &= HAVE_ENQUEUE | HAVE_START | HAVE_THREAD;
  }
  inflight_fini(&r.set);
  if (rc == SQLITE_DONE && s->log_rows > 0) {
    s->settling = 1;
    rc = store_write(s, r.b);
    s->settling = 0;
    if (rc == SQLITE_OK)
      log_msg(LOG_INFO, "tasks in flight written as open rows count=%zu",
              r.b->nrows);
  }
  wbatch_free(r.b);
  if (rc != SQLITE_OK && rc != SQLITE_DONE) {
    *err = xstrdup(sqlite3_errmsg(s->db));
    return -1;
  }
  return 0;
}
