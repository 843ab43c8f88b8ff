/*
 * otlp - the export thread: read a round of queued batches in one read
 * transaction, encode, POST until the endpoint says yes (or no for good),
 * persist the cursor, repeat; sleep when the queue is empty until the loop
 * says more was committed.
 *
 * The cursor is written through a connection of its own in a short
 * transaction (the collector's writer waits for it at most that long),
 * together with the deletion of the rows it passed.
 */
#include "otlp.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "curl_dl.h"
#include "format.h"
#include "log.h"
#include "otlp_json.h"
#include "reader.h"
#include "schema.h"
#include "taskwatch.h"
#include "xalloc.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define RETRY_AFTER_MAX_S 300
#define IDLE_POLL_MS 1000
#define RESPONSE_MAX 65536

struct otlp {
  char *url;
  struct curl_slist *headers;
  char *db_path;
  int64_t timeout_ms;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  int woken;
  int stop;
  int64_t stop_deadline_ms; /* monotonic; set with stop */
  int64_t start_cursor;
  _Atomic uint64_t spans_exported, spans_rejected, requests_failed,
      batches_expired;
  _Atomic int64_t cursor;
  /* The thread's own. */
  reader *reader;
  sqlite3 *rw;
  sqlite3_stmt *q_queue, *q_tasks, *q_batch, *q_agent, *q_save, *q_trim;
  CURL *curl;
  format_buf body;
  format_buf response;
  int64_t retry_after_s; /* from the last answer; -1: none */
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int stopping(otlp *o) {
  pthread_mutex_lock(&o->lock);
  int s = o->stop;
  pthread_mutex_unlock(&o->lock);
  return s;
}

/* Waits up to ms, or until woken (wake_ok) or stopped. Returns stop. */
static int wait_for(otlp *o, int64_t ms, int wake_ok) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)(ms / 1000);
  until.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&o->lock);
  while (!o->stop && !(wake_ok && o->woken))
    if (pthread_cond_timedwait(&o->wake, &o->lock, &until) == ETIMEDOUT)
      break;
  if (wake_ok)
    o->woken = 0;
  int s = o->stop;
  pthread_mutex_unlock(&o->lock);
  return s;
}

/* ---- the store ------------------------------------------------------------
 */

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st) {
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) ==
      SQLITE_OK)
    return 0;
  log_msg(LOG_ERROR, "otlp: cannot prepare a statement error=\"%s\"",
          sqlite3_errmsg(db));
  return -1;
}

static int open_store(otlp *o, char *err, size_t errlen) {
  if (reader_open(o->db_path, &o->reader, err, errlen) != 0)
    return -1;
  if (sqlite3_open_v2(o->db_path, &o->rw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                      NULL) != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s: %s", o->db_path,
             o->rw ? sqlite3_errmsg(o->rw) : "out of memory");
    return -1;
  }
  sqlite3_busy_timeout(o->rw, READER_BUSY_TIMEOUT_MS);
  /* As the writer's: in WAL mode a commit survives a crash of the
   * process; only the machine's crash may take the last cursor back
   * (those spans go again, with the same ids). */
  sqlite3_exec(o->rw, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
  sqlite3 *db = reader_db(o->reader);
  if (prepare(db,
              "SELECT seq, batch FROM export_queue WHERE seq > ?1 ORDER BY "
              "seq LIMIT " SCHEMA_SQL_TEXT(OTLP_MAX_BATCHES),
              &o->q_queue) ||
      prepare(db,
              "SELECT " READER_TASK_COLUMNS READER_TASK_FROM
              " WHERE t.batch = ?1 ORDER BY t.position, t.id",
              &o->q_tasks) ||
      prepare(db,
              "SELECT label, created_at, traceparent FROM batches WHERE "
              "id = ?1",
              &o->q_batch) ||
      prepare(db, "SELECT instance FROM agents WHERE id = ?1", &o->q_agent) ||
      prepare(o->rw,
              "INSERT INTO meta (key, value) VALUES ('otlp_cursor', ?1) "
              "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
              &o->q_save) ||
      prepare(o->rw, "DELETE FROM export_queue WHERE seq <= ?1", &o->q_trim)) {
    snprintf(err, errlen, "cannot read the export queue of %s (schema?)",
             o->db_path);
    return -1;
  }
  sqlite3_stmt *st;
  o->start_cursor = 0;
  if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'otlp_cursor'",
                         -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW)
      o->start_cursor = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  atomic_store(&o->cursor, o->start_cursor);
  return 0;
}

static void close_store(otlp *o) {
  sqlite3_stmt **all[] = {&o->q_queue, &o->q_tasks, &o->q_batch,
                          &o->q_agent, &o->q_save,  &o->q_trim};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
    sqlite3_finalize(*all[i]);
    *all[i] = NULL;
  }
  if (o->rw)
    sqlite3_close(o->rw);
  o->rw = NULL;
  reader_close(o->reader);
  o->reader = NULL;
}

/* Records that everything up to seq is done, and forgets those rows. */
static void save_cursor(otlp *o, int64_t seq) {
  atomic_store(&o->cursor, seq);
  int rc = sqlite3_exec(o->rw, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(o->q_save, 1, seq);
    sqlite3_bind_int64(o->q_trim, 1, seq);
    if (sqlite3_step(o->q_save) != SQLITE_DONE ||
        sqlite3_step(o->q_trim) != SQLITE_DONE)
      rc = sqlite3_errcode(o->rw);
    sqlite3_reset(o->q_save);
    sqlite3_reset(o->q_trim);
  }
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(o->rw, "COMMIT", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    /* Kept in memory: this run does not send them again; a restart
     * before the next save would (with the same ids). */
    log_msg(LOG_WARN, "otlp: cannot save the cursor seq=%lld error=\"%s\"",
            (long long)seq, sqlite3_errmsg(o->rw));
    sqlite3_exec(o->rw, "ROLLBACK", NULL, NULL, NULL);
  }
}

/* ---- one round: the batches after the cursor ------------------------------
 */

typedef struct round {
  otlp_batch batches[OTLP_MAX_BATCHES];
  size_t n;
  int64_t last_seq;
  reader_task *tasks;
  size_t ntasks, captasks;
  size_t bytes; /* text held, roughly */
} round;

static void round_clear(round *r) {
  for (size_t i = 0; i < r->ntasks; i++)
    reader_task_fini(&r->tasks[i]);
  for (size_t i = 0; i < r->n; i++) {
    free((void *)r->batches[i].label.ptr);
    free((void *)r->batches[i].traceparent.ptr);
  }
  r->n = r->ntasks = 0;
  r->bytes = 0;
}

static size_t text_bytes(const reader_task *t) {
  return t->name.len + t->label.len + t->service.len + t->host.len +
         t->error_type.len + t->error_message.len + t->error_detail.len +
         t->drop_reason.len + 256;
}

/* A text column as a copy the caller frees ({NULL, 0} for NULL). */
static reader_text column_copy(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL)
    return (reader_text){NULL, 0};
  size_t n = (size_t)sqlite3_column_bytes(st, i);
  char *text = xmalloc(n + 1);
  memcpy(text, sqlite3_column_blob(st, i), n);
  text[n] = '\0';
  return (reader_text){text, n};
}

/* Reads one batch's tasks, row and agent; 0, or -1 when retention removed
 * it before its export. */
static int read_batch(otlp *o, round *r, int64_t id) {
  size_t first = r->ntasks;
  sqlite3_stmt *st = o->q_tasks;
  sqlite3_bind_int64(st, 1, id);
  while (sqlite3_step(st) == SQLITE_ROW) {
    if (r->ntasks == r->captasks) {
      r->captasks = r->captasks ? r->captasks * 2 : 1024;
      r->tasks = xrealloc(r->tasks, r->captasks * sizeof(*r->tasks));
    }
    reader_task t;
    reader_task_read(st, 0, &t);
    reader_task_copy(&r->tasks[r->ntasks], &t);
    r->bytes += text_bytes(&t);
    r->ntasks++;
  }
  sqlite3_reset(st);
  if (r->ntasks == first)
    return -1;
  otlp_batch *b = &r->batches[r->n];
  memset(b, 0, sizeof(*b));
  b->id = id;
  b->ntasks = r->ntasks - first;
  b->created_at = READER_NULL;
  st = o->q_batch;
  sqlite3_bind_int64(st, 1, id);
  if (sqlite3_step(st) == SQLITE_ROW) {
    b->label = column_copy(st, 0);
    b->created_at = sqlite3_column_int64(st, 1);
    b->traceparent = column_copy(st, 2);
  }
  sqlite3_reset(st);
  st = o->q_agent;
  sqlite3_bind_int64(st, 1, r->tasks[first].agent);
  if (sqlite3_step(st) == SQLITE_ROW &&
      sqlite3_column_bytes(st, 0) == PROTO_INSTANCE_SIZE)
    memcpy(b->instance, sqlite3_column_blob(st, 0), PROTO_INSTANCE_SIZE);
  sqlite3_reset(st);
  r->n++;
  return 0;
}

/* Fills r from the queue after the cursor. Returns the rows read. */
static size_t read_round(otlp *o, round *r, int64_t cursor) {
  size_t rows = 0;
  sqlite3 *db = reader_db(o->reader);
  sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  sqlite3_bind_int64(o->q_queue, 1, cursor);
  int64_t ids[OTLP_MAX_BATCHES], seqs[OTLP_MAX_BATCHES];
  while (rows < OTLP_MAX_BATCHES && sqlite3_step(o->q_queue) == SQLITE_ROW) {
    seqs[rows] = sqlite3_column_int64(o->q_queue, 0);
    ids[rows] = sqlite3_column_int64(o->q_queue, 1);
    rows++;
  }
  sqlite3_reset(o->q_queue);
  for (size_t i = 0; i < rows; i++) {
    if (r->n > 0 && r->bytes > OTLP_MAX_BYTES) {
      rows = i; /* the rest goes in the next request */
      break;
    }
    if (read_batch(o, r, ids[i]) != 0)
      atomic_fetch_add(&o->batches_expired, 1);
    r->last_seq = seqs[i];
  }
  /* Set the pointers once the array stopped moving. */
  size_t at = 0;
  for (size_t i = 0; i < r->n; i++) {
    r->batches[i].tasks = r->tasks + at;
    at += r->batches[i].ntasks;
  }
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  return rows;
}

/* ---- HTTP -----------------------------------------------------------------
 */

int64_t otlp_retry_after(const char *value, int64_t now_s) {
  while (*value == ' ' || *value == '\t')
    value++;
  char *end;
  errno = 0;
  long long s = strtoll(value, &end, 10);
  if (end != value && errno == 0) {
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
      end++;
    return *end == '\0' && s >= 0 ? (int64_t)s : -1;
  }
  if (curl_dl_load(NULL, 0) != 0)
    return -1; /* no date parser: as if the header were malformed */
  time_t when = curl_getdate(value, NULL);
  if (when == (time_t)-1)
    return -1;
  return when > now_s ? (int64_t)when - now_s : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg) {
  otlp *o = arg;
  size_t len = size * n;
  static const char name[] = "retry-after:";
  if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
    char value[128];
    size_t vlen = len - (sizeof(name) - 1);
    if (vlen >= sizeof(value))
      vlen = sizeof(value) - 1;
    memcpy(value, p + sizeof(name) - 1, vlen);
    value[vlen] = '\0';
    o->retry_after_s = otlp_retry_after(value, (int64_t)time(NULL));
  }
  return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  otlp *o = arg;
  size_t len = size * n;
  if (o->response.len + len <= RESPONSE_MAX)
    format_buf_append(&o->response, p, len);
  return len;
}

/* Ends a transfer once a stop's grace ran out. */
static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c,
                       curl_off_t d) {
  otlp *o = arg;
  (void)a, (void)b, (void)c, (void)d;
  pthread_mutex_lock(&o->lock);
  int give_up = o->stop && now_ms() > o->stop_deadline_ms;
  pthread_mutex_unlock(&o->lock);
  return give_up;
}

/* Spans the endpoint turned down in a partial success, from its answer. */
static uint64_t rejected_spans(const format_buf *response) {
  const char *p = strstr(format_buf_str(response), "\"rejectedSpans\"");
  if (p == NULL)
    return 0;
  p += strlen("\"rejectedSpans\"");
  while (*p == ' ' || *p == ':' || *p == '"')
    p++;
  return strtoull(p, NULL, 10);
}

enum { SENT, RETRY, REFUSED };

/* One POST of o->body. */
static int post(otlp *o, long *code) {
  CURL *c = o->curl;
  format_buf_reset(&o->response);
  o->retry_after_s = -1;
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body.data);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body.len);
  CURLcode rc = curl_easy_perform(c);
  *code = 0;
  if (rc != CURLE_OK) {
    log_msg(LOG_WARN, "otlp: export failed url=%s error=\"%s\"", o->url,
            curl_easy_strerror(rc));
    return RETRY;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
  if (*code >= 200 && *code < 300)
    return SENT;
  if (*code == 429 || *code == 502 || *code == 503 || *code == 504) {
    log_msg(LOG_WARN, "otlp: endpoint busy url=%s status=%ld", o->url, *code);
    return RETRY;
  }
  log_msg(LOG_WARN, "otlp: endpoint refused the spans url=%s status=%ld",
          o->url, *code);
  return REFUSED;
}

/*
 * Sends o->body until the endpoint answers for good. Returns 0 when it
 * did (the spans are counted), -1 when a stop came first (the cursor must
 * not move: the next run sends them again).
 */
static int deliver(otlp *o, uint64_t spans) {
  int64_t backoff = BACKOFF_MIN_MS;
  for (;;) {
    long code;
    int result = post(o, &code);
    if (result == SENT) {
      uint64_t rejected = rejected_spans(&o->response);
      if (rejected > spans)
        rejected = spans;
      atomic_fetch_add(&o->spans_exported, spans - rejected);
      atomic_fetch_add(&o->spans_rejected, rejected);
      return 0;
    }
    if (result == REFUSED) {
      atomic_fetch_add(&o->spans_rejected, spans);
      return 0;
    }
    atomic_fetch_add(&o->requests_failed, 1);
    int64_t delay = backoff;
    if (o->retry_after_s >= 0)
      delay = (o->retry_after_s < RETRY_AFTER_MAX_S ? o->retry_after_s
                                                    : RETRY_AFTER_MAX_S) *
              1000;
    backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
    if (wait_for(o, delay, 0))
      return -1;
  }
}

static int setup_curl(otlp *o) {
  o->curl = curl_easy_init();
  if (o->curl == NULL)
    return -1;
  CURL *c = o->curl;
  curl_easy_setopt(c, CURLOPT_URL, o->url);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, o->headers);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "taskwatch/" TW_VERSION_STRING);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)o->timeout_ms);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, o);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, o);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, o);
  return 0;
}

/* ---- configuration --------------------------------------------------------
 */

char *otlp_traces_url(const char *base) {
  size_t n = strlen(base);
  const char *rest = strncmp(base, "http://", 7) == 0    ? base + 7
                     : strncmp(base, "https://", 8) == 0 ? base + 8
                                                         : NULL;
  if (rest == NULL || *rest == '\0' || *rest == '/' ||
      strpbrk(base, " \t\r\n") != NULL)
    return NULL;
  static const char suffix[] = "/v1/traces";
  size_t k = sizeof(suffix) - 1;
  if (n >= k && strcmp(base + n - k, suffix) == 0)
    return xstrdup(base);
  while (n > 0 && base[n - 1] == '/')
    n--;
  char *url = xmalloc(n + k + 1);
  memcpy(url, base, n);
  memcpy(url + n, suffix, k + 1);
  return url;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = (char)(c | 0x20);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Appends s[0..n) trimmed of blanks; percent-decoded when `decode`.
 * Returns -1 for a bad escape or a control character. */
static int put_trimmed(format_buf *b, const char *s, size_t n, int decode) {
  while (n > 0 && (*s == ' ' || *s == '\t'))
    s++, n--;
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (decode && c == '%') {
      if (i + 2 >= n)
        return -1;
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0)
        return -1;
      c = (unsigned char)(hi << 4 | lo);
      i += 2;
    }
    if (c < 0x20 || c == 0x7f)
      return -1;
    format_buf_putc(b, (char)c);
  }
  return 0;
}

int otlp_parse_headers(const char *text, char **out, size_t max,
                       const char **why) {
  size_t n = 0;
  const char *p = text;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    const char *eq = memchr(p, '=', len);
    format_buf line;
    format_buf_init(&line);
    *why = NULL;
    if (eq == NULL)
      *why = "expected key=value pairs separated by commas";
    else if (put_trimmed(&line, p, (size_t)(eq - p), 0) != 0 || line.len == 0 ||
             strpbrk(line.data, " :()<>@,;\\\"/[]?={}") != NULL)
      *why = "a header name must be a token";
    else if (format_buf_puts(&line, ": "),
             put_trimmed(&line, eq + 1, len - (size_t)(eq - p) - 1, 1) != 0)
      *why = "a header value has a bad %-escape or a control character";
    else if (n == max)
      *why = "too many headers";
    if (*why) {
      format_buf_fini(&line);
      for (size_t i = 0; i < n; i++)
        free(out[i]);
      return -1;
    }
    out[n++] = line.data;
    p = end ? end + 1 : p + len;
  }
  return (int)n;
}

/* ---- the thread -----------------------------------------------------------
 */

static void *thread_main(void *arg) {
  otlp *o = arg;
  pthread_setname_np(pthread_self(), "tw-otlp");
  /* Ingest first: the export takes the CPU the collector leaves, and its
   * backlog waits in the store meanwhile. */
  if (setpriority(PRIO_PROCESS, (id_t)gettid(), OTLP_NICE) != 0)
    log_msg(LOG_DEBUG, "otlp: cannot lower the export thread's priority");
  round *r = xcalloc(1, sizeof(*r));
  int64_t cursor = o->start_cursor;
  while (!stopping(o)) {
    size_t rows = read_round(o, r, cursor);
    if (rows == 0) {
      round_clear(r);
      wait_for(o, IDLE_POLL_MS, 1);
      continue;
    }
    int done = 0;
    if (r->n == 0) {
      done = 1; /* every batch of the round had been pruned */
    } else {
      format_buf_reset(&o->body);
      uint64_t spans = otlp_encode(&o->body, r->batches, r->n);
      done = deliver(o, spans) == 0;
    }
    if (done) {
      cursor = r->last_seq;
      save_cursor(o, cursor);
    }
    round_clear(r);
  }
  round_clear(r);
  free(r->tasks);
  free(r);
  return NULL;
}

otlp *otlp_start(const otlp_config *cfg, char *err, size_t errlen) {
  if (curl_dl_load(err, errlen) != 0)
    return NULL;
  otlp *o = xcalloc(1, sizeof(*o));
  o->url = xstrdup(cfg->url);
  o->db_path = xstrdup(cfg->db_path);
  o->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : OTLP_TIMEOUT_MS;
  format_buf_init(&o->body);
  format_buf_init(&o->response);
  pthread_mutex_init(&o->lock, NULL);
  pthread_cond_init(&o->wake, NULL);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  o->headers = curl_slist_append(NULL, "Content-Type: application/json");
  /* No "Expect: 100-continue" round trip before each body. */
  o->headers = curl_slist_append(o->headers, "Expect:");
  for (size_t i = 0; i < cfg->nheaders; i++)
    o->headers = curl_slist_append(o->headers, cfg->headers[i]);
  if (open_store(o, err, errlen) != 0 || setup_curl(o) != 0 ||
      pthread_create(&o->thread, NULL, thread_main, o) != 0) {
    if (err[0] == '\0')
      snprintf(err, errlen, "cannot start the export thread");
    close_store(o);
    if (o->curl)
      curl_easy_cleanup(o->curl);
    curl_slist_free_all(o->headers);
    format_buf_fini(&o->body);
    format_buf_fini(&o->response);
    free(o->url);
    free(o->db_path);
    free(o);
    return NULL;
  }
  return o;
}

void otlp_wake(otlp *o) {
  pthread_mutex_lock(&o->lock);
  o->woken = 1;
  pthread_cond_signal(&o->wake);
  pthread_mutex_unlock(&o->lock);
}

void otlp_get_stats(otlp *o, otlp_stats *out) {
  out->spans_exported = atomic_load(&o->spans_exported);
  out->spans_rejected = atomic_load(&o->spans_rejected);
  out->requests_failed = atomic_load(&o->requests_failed);
  out->batches_expired = atomic_load(&o->batches_expired);
  out->cursor = atomic_load(&o->cursor);
}

int64_t otlp_start_cursor(const otlp *o) {
  return o->start_cursor;
}

void otlp_request_stop(otlp *o) {
  pthread_mutex_lock(&o->lock);
  if (!o->stop) {
    o->stop = 1;
    o->stop_deadline_ms = now_ms() + OTLP_STOP_GRACE_MS;
    pthread_cond_signal(&o->wake);
  }
  pthread_mutex_unlock(&o->lock);
}

void otlp_stop(otlp *o) {
  if (o == NULL)
    return;
  otlp_request_stop(o);
  pthread_join(o->thread, NULL);
  close_store(o);
  curl_easy_cleanup(o->curl);
  curl_slist_free_all(o->headers);
  curl_global_cleanup();
  format_buf_fini(&o->body);
  format_buf_fini(&o->response);
  pthread_mutex_destroy(&o->lock);
  pthread_cond_destroy(&o->wake);
  free(o->url);
  free(o->db_path);
  free(o);
}
