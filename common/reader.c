/*
 * reader - opening a store read-only, its identity and version check,
 * change detection and the task row (see reader.h).
 *
 * Opening looks at the file before SQLite does: SQLite opens a missing or
 * unreadable path lazily and reports it later as "unable to open database
 * file", which names neither the cause nor the difference between a typo
 * and a permission; open(2) and fstat(2) name both.
 */
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "schema.h"
#include "xalloc.h"

struct reader {
  sqlite3 *db;
  sqlite3_stmt *data_version;
  int64_t last_version;
  int seen_version;
  int has_received_at; /* agents.last_received_at (version 4 on) */
  int has_refused;     /* agents.dropped_batches, dropped_tasks (version 6) */
};

static const char *const error_texts[READER_ERRNO_COUNT] = {
#define ERROR_TEXT(name, what) [READER_INDEX_##name] = what,
    READER_ERRNO_MAP(ERROR_TEXT)
#undef ERROR_TEXT
};

const char *reader_strerror(int code) {
  int i = -1 - code;
  if (code >= 0 || i >= READER_ERRNO_COUNT)
    return "unknown error";
  return error_texts[i];
}

/* Writes the reason into err and returns code. */
static int refuse(int code, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(int code, char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return code;
}

/* The file itself: there, readable, and a regular file (a FIFO would
 * block SQLite, a directory is a typo). */
static int check_file(const char *path, char *err, size_t errlen) {
  struct stat sb;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    int code =
        e == ENOENT || e == ENOTDIR ? READER_EMISSING : READER_EUNREADABLE;
    return refuse(code, err, errlen, "cannot open %s: %s", path, strerror(e));
  }
  int rc = fstat(fd, &sb);
  int e = errno;
  close(fd);
  if (rc != 0)
    return refuse(READER_EUNREADABLE, err, errlen, "cannot open %s: %s", path,
                  strerror(e));
  if (S_ISDIR(sb.st_mode))
    return refuse(READER_EUNREADABLE, err, errlen, "cannot open %s: %s", path,
                  strerror(EISDIR));
  if (!S_ISREG(sb.st_mode))
    return refuse(READER_EUNREADABLE, err, errlen,
                  "cannot open %s: not a regular file", path);
  return READER_OK;
}

/* Runs a statement whose first row's first column is an integer. Returns
 * an SQLite result code (SQLITE_OK with *out, or the failure). */
static int single_int(sqlite3 *db, const char *sql, int *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      *out = sqlite3_column_int(st, 0);
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(st);
  return rc;
}

int reader_check_store(sqlite3 *db, const char *path, char *err,
                       size_t errlen) {
  int version = 0, identity = SCHEMA_ID_FOREIGN;
  const char *why = NULL;
  /* The first statement reads the file's header: this is where a file
   * that is not SQLite shows. The identity test is the collector's own
   * (schema_identify), so both sides agree on what a store is. */
  int rc = schema_identify(db, &identity, &why);
  if (rc == SQLITE_OK)
    rc = single_int(db, "PRAGMA user_version", &version);
  if (rc == SQLITE_NOTADB)
    return refuse(READER_ENOT_SQLITE, err, errlen,
                  "%s is not a database (not an SQLite file)", path);
  if (rc != SQLITE_OK)
    return refuse(READER_EUNREADABLE, err, errlen, "cannot read %s: %s", path,
                  sqlite3_errmsg(db));
  if (identity != SCHEMA_ID_TASKWATCH)
    return refuse(READER_EFOREIGN, err, errlen,
                  "%s is not a taskwatch store%s%s%s", path, why ? " (" : "",
                  why ? why : "", why ? ")" : "");
  if (version > SCHEMA_VERSION)
    return refuse(READER_ETOO_NEW, err, errlen,
                  "%s has store schema version %d, newer than this taskwatch "
                  "understands (%d)",
                  path, version, SCHEMA_VERSION);
  if (version < SCHEMA_READ_MIN)
    return refuse(READER_ETOO_OLD, err, errlen,
                  "%s has store schema version %d, older than this taskwatch "
                  "reads (%d); open it once with the current collector to "
                  "upgrade it",
                  path, version, SCHEMA_READ_MIN);
  return READER_OK;
}

/* 1 when the table has the column (a store of an earlier version may
 * not, until a collector upgrades it). */
static int has_column(sqlite3 *db, const char *table, const char *column) {
  sqlite3_stmt *st = NULL;
  int found = 0;
  if (sqlite3_prepare_v2(db,
                         "SELECT count(*) FROM pragma_table_info(?1) WHERE "
                         "name = ?2",
                         -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
    found = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
  }
  sqlite3_finalize(st);
  return found;
}

const char *reader_agent_seen_sql(const reader *r) {
  return r->has_received_at ? "coalesce(last_received_at, last_event_at)"
                            : "last_event_at";
}

const char *reader_agent_dropped_batches_sql(const reader *r) {
  return r->has_refused ? "dropped_batches" : "0";
}

const char *reader_agent_dropped_tasks_sql(const reader *r) {
  return r->has_refused ? "dropped_tasks" : "0";
}

/* The page cache of the read-only tools: READER_CACHE_BYTES of slots of
 * one page of the store's size (SCHEMA_PAGE_SIZE for a new store) and
 * SQLite's header, in one region asked for as transparent huge pages. */
#define READER_CACHE_BYTES ((size_t)8 << 20)
#define READER_CACHE_MIN_PAGE 16384
#define HUGE_PAGE ((size_t)2 << 20)

/* The page size of the region's slots once reader_page_cache_init() gave
 * SQLite the region, else 0. */
static long page_cache_page;

/* The page size an SQLite file's header states (bytes 16 and 17, big
 * endian; 1 means 65536), or 0 when it cannot be read or is not a regular
 * file (a FIFO would block the open: O_NONBLOCK; reader_open() then says
 * what it is). */
static long header_page_size(const char *path) {
  unsigned char b[2];
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return 0;
  ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
                  ? pread(fd, b, sizeof b, 16)
                  : -1;
  close(fd);
  if (n != (ssize_t)sizeof b)
    return 0;
  long size = (long)b[0] << 8 | b[1];
  return size == 1 ? 65536 : size;
}

int reader_page_cache_init(const char *path) {
  long page = path != NULL ? header_page_size(path)
                           : strtol(SCHEMA_PAGE_SIZE, NULL, 10);
  if (page < READER_CACHE_MIN_PAGE)
    return -1;
  if (page_cache_page != 0)
    return page == page_cache_page ? 0 : -1;
  int header = 0;
  if (sqlite3_config(SQLITE_CONFIG_PCACHE_HDRSZ, &header) != SQLITE_OK)
    return -1;
  int pages = (int)(READER_CACHE_BYTES / (size_t)page);
  size_t slot = ((size_t)page + (size_t)header + 7) & ~(size_t)7;
  size_t size = slot * (size_t)pages;
  /* Room to start the region at a huge page boundary. */
  char *raw = mmap(NULL, size + HUGE_PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    return -1;
  char *base = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1));
  /* Advice only: without huge pages the region faults in 4 KiB at a time,
   * as malloc's would. */
  madvise(base, size, MADV_HUGEPAGE);
  if (sqlite3_config(SQLITE_CONFIG_PAGECACHE, base, (int)slot, pages) !=
      SQLITE_OK) {
    munmap(raw, size + HUGE_PAGE);
    return -1;
  }
  /* SQLite keeps the region to the end of the process. */
  page_cache_page = page;
  return 0;
}

int reader_open(const char *path, reader **out, char *err, size_t errlen) {
  *out = NULL;
  int code = check_file(path, err, errlen);
  if (code != READER_OK)
    return code;
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db,
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    code = refuse(READER_EUNREADABLE, err, errlen, "cannot open %s: %s", path,
                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return code;
  }
  sqlite3_busy_timeout(db, READER_BUSY_TIMEOUT_MS);
  if (page_cache_page != 0) {
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size = %d",
             (int)(READER_CACHE_BYTES / (size_t)page_cache_page));
    sqlite3_exec(db, pragma, NULL, NULL, NULL);
  }
  code = reader_check_store(db, path, err, errlen);
  sqlite3_stmt *st = NULL;
  if (code == READER_OK &&
      sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK)
    code = refuse(READER_EUNREADABLE, err, errlen, "cannot read %s: %s", path,
                  sqlite3_errmsg(db));
  if (code != READER_OK) {
    sqlite3_close(db);
    return code;
  }
  reader *r = xcalloc(1, sizeof *r);
  r->db = db;
  r->data_version = st;
  r->has_received_at = has_column(db, "agents", "last_received_at");
  r->has_refused = has_column(db, "agents", "dropped_batches") &&
                   has_column(db, "agents", "dropped_tasks");
  *out = r;
  return READER_OK;
}

void reader_close(reader *r) {
  if (r == NULL)
    return;
  sqlite3_finalize(r->data_version);
  sqlite3_close(r->db);
  free(r);
}

sqlite3 *reader_db(const reader *r) {
  return r->db;
}

int reader_changed(reader *r) {
  int64_t v = 0;
  int ok = sqlite3_step(r->data_version) == SQLITE_ROW;
  if (ok)
    v = sqlite3_column_int64(r->data_version, 0);
  sqlite3_reset(r->data_version);
  int changed = !ok || !r->seen_version || v != r->last_version;
  r->seen_version = 1;
  if (ok)
    r->last_version = v;
  return changed;
}

/* ---- the task row ------------------------------------------------------ */

static int64_t column_int(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL)
    return READER_NULL;
  return sqlite3_column_int64(st, i);
}

/* sqlite3_column_text() first, then _bytes(): that order gives the length
 * of the text it returned (NUL-terminated, NULs inside kept). */
static reader_text column_text(sqlite3_stmt *st, int i) {
  reader_text t = {NULL, 0};
  if (sqlite3_column_type(st, i) == SQLITE_NULL)
    return t;
  t.ptr = (const char *)sqlite3_column_text(st, i);
  t.len = t.ptr ? (size_t)sqlite3_column_bytes(st, i) : 0;
  return t;
}

void reader_task_read(sqlite3_stmt *st, int c, reader_task *t) {
  memset(t, 0, sizeof *t);
  t->id = column_int(st, c + 0);
  t->batch = column_int(st, c + 1);
  t->agent = column_int(st, c + 2);
  t->thread = column_int(st, c + 3);
  t->pid = column_int(st, c + 4);
  t->enqueued_at = column_int(st, c + 5);
  t->started_at = column_int(st, c + 6);
  t->finished_at = column_int(st, c + 7);
  t->wait_us = column_int(st, c + 8);
  t->run_us = column_int(st, c + 9);
  t->skipped_after = column_int(st, c + 10);
  t->position = sqlite3_column_int(st, c + 11);
  t->status = sqlite3_column_int(st, c + 12);
  t->mode = sqlite3_column_int(st, c + 13);
  t->name = column_text(st, c + 14);
  t->label = column_text(st, c + 15);
  t->service = column_text(st, c + 16);
  t->host = column_text(st, c + 17);
  t->error_type = column_text(st, c + 18);
  t->error_message = column_text(st, c + 19);
  t->error_detail = column_text(st, c + 20);
  t->drop_reason = column_text(st, c + 21);
}

/* The texts of a task, for copying them all alike. */
#define TASK_TEXTS(t)                                                          \
  {                                                                            \
    &(t)->name, &(t)->label, &(t)->service, &(t)->host, &(t)->error_type,      \
        &(t)->error_message, &(t)->error_detail, &(t)->drop_reason             \
  }
#define NTEXTS 8

void reader_task_copy(reader_task *dst, const reader_task *src) {
  *dst = *src;
  reader_text *texts[NTEXTS] = TASK_TEXTS(dst);
  size_t size = 0;
  for (int i = 0; i < NTEXTS; i++)
    if (texts[i]->ptr)
      size += texts[i]->len + 1;
  char *block = size ? xmalloc(size) : NULL, *p = block;
  for (int i = 0; i < NTEXTS; i++) {
    if (texts[i]->ptr == NULL)
      continue;
    memcpy(p, texts[i]->ptr, texts[i]->len);
    p[texts[i]->len] = '\0';
    texts[i]->ptr = p;
    p += texts[i]->len + 1;
  }
  dst->owned = block;
}

void reader_task_fini(reader_task *t) {
  free(t->owned);
  memset(t, 0, sizeof *t);
}
