/*
 * export - the glue: a track.h table works out each submitted batch's
 * changes, which wait in a FIFO (batches commit in submit order) until
 * their commit applies them to the registry; a scrape copies the registry
 * on the loop and renders the copy on libuv's thread pool.
 */
#include "export.h"

#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "reader.h"
#include "track.h"
#include "xalloc.h"

/* The changes of a batch between its submission and its commit. */
typedef struct pending {
  struct pending *next;
  uint64_t generation;
  size_t bytes;
  track_ops ops;
} pending;

struct exporter {
  uv_loop_t *loop;
  metrics *metrics;
  reader *reader; /* the loop's, for track.c's lookups */
  track *track;
  http_server *http;
  otlp *otlp;
  export_sample_fn sample;
  void *sample_arg;
  pending *head, *tail, *spare;
  uint64_t events_received; /* in submitted batches */
  uint64_t events_committed;
  uint64_t transactions;
  size_t bytes_in_flight;
  int64_t next_export_seq;
  int64_t committed_export_seq; /* the highest one committed */
  uint64_t http_counts[HTTP_ANSWER_COUNT];
};

/* ---- scrapes --------------------------------------------------------------
 */

typedef struct scrape {
  uv_work_t work;
  http_conn *conn;
  metrics *copy;
  format_buf text;
} scrape;

static void render(uv_work_t *w) {
  scrape *s = w->data;
  metrics_render(s->copy, &s->text);
}

static void rendered(uv_work_t *w, int status) {
  scrape *s = w->data;
  (void)status;
  http_respond(s->conn, HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
               s->text.data ? s->text.data : "", s->text.len);
  format_buf_fini(&s->text);
  metrics_free(s->copy);
  free(s);
}

/* The collector's own figures as of now. */
static void update_collector(exporter *x) {
  export_sample smp = {0};
  metrics_collector c;
  memset(&c, 0, sizeof(c));
  x->sample(x->sample_arg, &smp);
  c.events_received = x->events_received + smp.events_pending;
  c.events_committed = x->events_committed;
  c.transactions = x->transactions;
  c.write_queue_bytes = x->bytes_in_flight + smp.bytes_pending;
  c.connections = smp.connections;
  c.rejected_connections = smp.rejected;
  c.ack_hold_ms = smp.hold_ms;
  c.tasks_tracked = track_count(x->track);
  c.tasks_untracked = track_untracked(x->track);
  guard_get(&c.guard);
  memcpy(c.http, x->http_counts, sizeof(c.http));
  if (x->otlp) {
    otlp_stats st;
    otlp_get_stats(x->otlp, &st);
    c.otlp = 1;
    c.otlp_spans_exported = st.spans_exported;
    c.otlp_spans_rejected = st.spans_rejected;
    c.otlp_requests_failed = st.requests_failed;
    c.otlp_batches_expired = st.batches_expired;
    c.otlp_queue_batches = x->committed_export_seq > st.cursor
                               ? (uint64_t)(x->committed_export_seq - st.cursor)
                               : 0;
  }
  metrics_set_collector(x->metrics, &c);
}

static void on_request(http_conn *c, const char *path, void *arg) {
  exporter *x = arg;
  if (strcmp(path, "/metrics") == 0) {
    update_collector(x);
    scrape *s = xcalloc(1, sizeof(*s));
    s->conn = c;
    s->copy = metrics_copy(x->metrics);
    format_buf_init(&s->text);
    s->work.data = s;
    if (uv_queue_work(x->loop, &s->work, render, rendered) != 0) {
      render(&s->work); /* no thread pool: render here, once */
      rendered(&s->work, 0);
    }
    return;
  }
  if (strcmp(path, "/") == 0) {
    static const char text[] = "taskwatch collector: metrics at /metrics\n";
    http_respond(c, HTTP_OK, "text/plain; charset=utf-8", text,
                 sizeof(text) - 1);
    return;
  }
  static const char text[] = "404 Not Found (metrics are at /metrics)\n";
  http_respond(c, HTTP_NOT_FOUND, "text/plain; charset=utf-8", text,
               sizeof(text) - 1);
}

/* ---- batches --------------------------------------------------------------
 */

void export_submit(exporter *x, wbatch *b) {
  if (x == NULL)
    return;
  pending *p = x->spare;
  if (p)
    x->spare = NULL;
  else
    p = xcalloc(1, sizeof(*p));
  p->next = NULL;
  p->generation = b->generation;
  track_batch(x->track, b, &p->ops, x->otlp != NULL);
  b->export_seq = x->next_export_seq;
  x->next_export_seq += (int64_t)b->nexports;
  p->bytes = wbatch_bytes(b);
  x->bytes_in_flight += p->bytes;
  x->events_received += b->events;
  if (x->tail)
    x->tail->next = p;
  else
    x->head = p;
  x->tail = p;
}

/* One node is kept for the next batch; the rest go. */
static void release_pending(exporter *x, pending *p) {
  if (x->spare == NULL) {
    x->spare = p;
  } else {
    track_ops_fini(&p->ops);
    free(p);
  }
}

void export_committed(exporter *x, const wbatch *b) {
  if (x == NULL)
    return;
  pending *p = x->head;
  if (p == NULL || p->generation != b->generation) {
    log_msg(LOG_ERROR, "exports: a batch committed out of order");
    return;
  }
  x->head = p->next;
  if (x->head == NULL)
    x->tail = NULL;
  x->bytes_in_flight -= p->bytes;
  if (b->failed) {
    /* Given up at a shutdown: nothing of it counts (the collector exits;
     * the next one rebuilds from the store what the agents resend). */
    p->ops.n = 0;
    release_pending(x, p);
    return;
  }
  track_apply(x->metrics, &p->ops);
  x->events_committed += b->events;
  x->transactions++;
  for (uint32_t i = 0; i < b->nsamples; i++)
    metrics_commit_latency(x->metrics,
                           (b->committed_ns - b->samples[i]) / 1000);
  if (b->nexports > 0) {
    x->committed_export_seq = b->export_seq + (int64_t)b->nexports - 1;
    otlp_wake(x->otlp);
  }
  release_pending(x, p);
}

/* ---- lifetime -------------------------------------------------------------
 */

/* The next export_queue number: after every row and the cursor. */
static int64_t next_seq(sqlite3 *db, int64_t cursor) {
  sqlite3_stmt *st;
  int64_t max = cursor;
  if (sqlite3_prepare_v2(db, "SELECT max(seq) FROM export_queue", -1, &st,
                         NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > max)
      max = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  return max + 1;
}

static int start_otlp(exporter *x, const export_config *cfg) {
  char err[512] = "";
  x->otlp = otlp_start(cfg->otlp, err, sizeof(err));
  if (x->otlp == NULL) {
    log_msg(LOG_ERROR, "cannot export to OTLP url=%s error=\"%s\"",
            cfg->otlp->url, err);
    return -1;
  }
  int64_t cursor = otlp_start_cursor(x->otlp);
  x->next_export_seq = next_seq(reader_db(x->reader), cursor);
  x->committed_export_seq = x->next_export_seq - 1;
  log_msg(LOG_INFO, "exporting to OTLP url=%s queued=%lld", cfg->otlp->url,
          (long long)(x->committed_export_seq - cursor));
  return 0;
}

static int start_metrics(exporter *x, const export_config *cfg) {
  char err[256] = "";
  x->http = http_start(x->loop, cfg->metrics_listen, on_request, x,
                       x->http_counts, err, sizeof(err));
  if (x->http == NULL) {
    log_msg(LOG_ERROR, "cannot listen url=%s error=\"%s\"", cfg->metrics_listen,
            err);
    return -1;
  }
  log_msg(LOG_INFO, "serving metrics url=%s/metrics", http_url(x->http));
  return 0;
}

exporter *export_start(const export_config *cfg, uv_loop_t *loop,
                       export_sample_fn sample, void *arg, int *failed) {
  *failed = 0;
  if (cfg == NULL || (cfg->metrics_listen == NULL && cfg->otlp == NULL))
    return NULL;
  exporter *x = xcalloc(1, sizeof(*x));
  x->loop = loop;
  x->sample = sample;
  x->sample_arg = arg;
  x->next_export_seq = 1;
  metrics_config mc = {cfg->buckets, cfg->nbuckets, cfg->max_series};
  x->metrics = metrics_new(&mc);
  char err[512];
  if (reader_open(cfg->db_path, &x->reader, err, sizeof(err)) != 0) {
    log_msg(LOG_ERROR, "exports cannot read the store error=\"%s\"", err);
    *failed = 1;
  } else if ((x->track = track_new(x->metrics, reader_db(x->reader),
                                   cfg->max_tasks)) == NULL ||
             (cfg->otlp && start_otlp(x, cfg) != 0) ||
             (cfg->metrics_listen && start_metrics(x, cfg) != 0)) {
    *failed = 1;
  }
  if (*failed) {
    export_stop(x);
    return NULL;
  }
  return x;
}

void export_stopping(exporter *x) {
  if (x != NULL && x->otlp != NULL)
    otlp_request_stop(x->otlp);
}

void export_stop(exporter *x) {
  if (x == NULL)
    return;
  http_stop(x->http);
  otlp_stop(x->otlp);
  track_free(x->track);
  reader_close(x->reader);
  metrics_free(x->metrics);
  pending *p = x->head;
  if (x->spare) {
    x->spare->next = p;
    p = x->spare;
  }
  while (p) {
    pending *next = p->next;
    track_ops_fini(&p->ops);
    free(p);
    p = next;
  }
  free(x);
}
