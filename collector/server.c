/*
 * server - one libuv loop for every connection.
 *
 * Received bytes accumulate in a per-connection buffer; every complete
 * frame is decoded and validated in place and its events coalesced into
 * the current batch (ingest.c), so nothing from the wire outlives the read
 * callback. The batch goes to the writer thread when it is old enough
 * (flush_ms, or five times that for a batch of few events: batch.h) or big
 * enough, and only one batch is written at a time: while
 * the writer works the next one fills, which is what makes coalescing
 * effective under load. If the filling batch passes the high watermark,
 * every connection stops reading until the writer takes it: agents then
 * buffer, and at their cap drop and count, instead of this process growing
 * without bound.
 *
 * A tls:// connection reads into one scratch buffer of the server's, feeds
 * it to its session (tls.h) and takes the plaintext into its receive
 * buffer, from where it is processed as any other; what it sends is
 * encrypted on the way out. The handshake of the protocol is HELLO, then
 * (an agent of version 2 with a key) CHALLENGE and PROOF, then WELCOME:
 * nothing of a connection reaches the instance's state before the token,
 * the proof and the owner check (auth.h, ingest_owner_check()) passed.
 */
#include "server.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "format.h"
#include "guard.h"
#include "ingest.h"
#include "log.h"
#include "stop.h"
#include "url.h"
#include "writer.h"
#include "xalloc.h"

#define READ_CHUNK (64 * 1024)

/* Receive buffers an idle connection gives back are kept for the next
 * read of any connection, up to this many: a connection that has read a
 * whole frame holds no buffer, and malloc()/free() of 64 KiB for every
 * read of every agent made the heap's top grow and shrink, with a page
 * fault for each page it grew by. */
#define SPARE_BUFFERS 16

/*
 * The loop waits for sockets at most once per PACE_NS while agents keep it
 * busy. Each wait that ends costs a context switch and a read per socket
 * (about 20 µs of CPU on a virtual machine), and many agents each sending
 * a small frame every millisecond woke the loop once per frame: 16 agents
 * at 100,000 events/s (bench/ingest realistic) cost the loop 1.2-1.6 µs
 * per event, 0.6 with a pace of 2 ms (0.7 at 1 ms, 0.4 at 4 ms). When a
 * wait lasted less than PACE_NS and the pass after it read, the loop
 * sleeps for the rest of PACE_NS before it waits again, and then reads
 * every socket that became readable meanwhile at once. A sparse sender
 * (one frame per wait longer than PACE_NS) is never delayed; a busy one's
 * events reach the batch at most PACE_NS later, against the batch's
 * flush_ms (50 ms by default). The writer finishing a batch ends the
 * sleep (writer_nap()), so the pace never keeps it waiting for the next.
 */
#define PACE_NS 2000000
/* The sweep (handshakes and frames past their time, instances past
 * --lost-after, pruning) runs a tenth of the shorter of those limits
 * apart, between SWEEP_MIN_MS and SWEEP_MAX_MS: at the defaults (10 s,
 * 30 s) once a second. Each run is a wakeup of the loop, tens of
 * microseconds of CPU on a virtual machine: ten a second were about a
 * quarter of an idle collector's wakeups, and of one that takes 10,000
 * events a second from one agent. */
#define SWEEP_MIN_MS 100
#define SWEEP_MAX_MS 1000
#define PRUNE_EVERY_MS 1000
/* How long a closing connection may take to write what is queued for it
 * (acks, the ERROR frame) before it is closed regardless. */
#define CLOSE_LINGER_MS 1000

typedef struct server server;
typedef struct conn conn;

typedef struct listener {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  server *srv;
  char *url;
  char *unix_path; /* unlinked at exit */
  int tls;
} listener;

/* A HELLO with a key, waiting for the PROOF of it: its strings copied. */
typedef struct pending {
  proto_hello hello;
  uint8_t key[PROTO_KEY_SIZE];
  uint8_t nonce[PROTO_NONCE_SIZE];
  uint64_t token_key;
  char text[2 * PROTO_IDENT_MAX];
} pending;

struct conn {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  server *srv;
  conn *prev, *next;
  agent *agent;
  uint8_t *buf;
  size_t len, cap;
  int64_t opened_ms;
  int64_t partial_since_ms; /* 0: no partial frame buffered */
  int closing;
  int closed;       /* uv_close called on the handles below */
  int open_handles; /* the stream, plus linger once conn_close ran */
  uv_timer_t linger;
  int reading;
  uint16_t version; /* the protocol version agreed in the handshake */
  uint64_t number;
  tls_conn *tls;      /* NULL: plaintext */
  pending *pending;   /* a HELLO awaiting its PROOF */
  uint64_t token_key; /* nonzero: counted among its token's agents */
  char peer[80];
};

struct server {
  const server_config *cfg;
  uv_loop_t loop;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t sweep, flush;
  uv_timer_t stop_timer; /* STOP_COMMIT_MS after the signal */
  /* Pacing of the loop's wakeups (on_pace()). */
  uv_prepare_t pace;
  uv_check_t woke;
  uint64_t poll_from_ns; /* when the loop last began to wait, 0: never */
  uint64_t polled_ns;    /* how long that wait lasted */
  int read_in_pass;      /* the last pass of the loop read agents' bytes */
  /* Receive buffers of READ_CHUNK kept for the next read of any
   * connection (release_buffer()), at most SPARE_BUFFERS. */
  uint8_t *spare[SPARE_BUFFERS];
  size_t nspare;
  listener *listeners;
  size_t nlisteners;
  conn *conns; /* doubly linked list of open connections */
  size_t nconns;
  uint64_t next_number;
  ingest *in;
  writer *writer;
  int64_t batch_since_ms; /* when the filling batch got its first item */
  /* When a task the writer holds is due to be written (batch.h): a batch
   * is committed then even if it is empty; 0: none held. */
  int64_t held_due_ms;
  int after_full; /* the last batch handed to the writer was full (batch.h) */
  /* The hold_ms of the acks being sent (batch.h): zeroed, no advice
   * until a first window measured the rate. */
  hold_advice hold;
  int64_t last_prune_ms;
  size_t buffered; /* receive buffer bytes beyond READ_CHUNK each */
  int paused;
  int stopping; /* 1: draining; 2: connections closed, final flush */
  int failed;
  server_summary *summary;
  hist latency;
  token_table *tokens; /* NULL: none required */
  tls_server *tls;
  u64map token_agents; /* token_key -> agents connected (uintptr_t) */
  uint8_t *cipher;     /* what a TLS connection read, before its session */
  exporter *exports;
};

/* ---- connection lifetime ------------------------------------------------ */

/* Bytes of c's buffer that count against BUFFER_BUDGET. */
static size_t over_chunk(size_t cap) {
  return cap > READ_CHUNK ? cap - READ_CHUNK : 0;
}

static void release_buffer(conn *c) {
  server *s = c->srv;
  s->buffered -= over_chunk(c->cap);
  if (c->cap == READ_CHUNK && s->nspare < SPARE_BUFFERS)
    s->spare[s->nspare++] = c->buf;
  else
    free(c->buf);
  c->buf = NULL;
  c->cap = 0;
}

/* Called for the stream and for the linger timer; the last one frees. */
static void on_conn_closed(uv_handle_t *handle) {
  conn *c = handle->data;
  if (--c->open_handles > 0)
    return;
  release_buffer(c);
  tls_conn_free(c->tls);
  free(c->pending);
  free(c);
}

static void conn_close_handles(conn *c) {
  if (c->closed)
    return;
  c->closed = 1;
  uv_close(&c->h.handle, on_conn_closed);
  if (c->open_handles > 1)
    uv_close((uv_handle_t *)&c->linger, on_conn_closed);
}

/* Also called with UV_ECANCELED when the linger timer closed the stream
 * first. */
static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  conn *c = req->data;
  free(req);
  conn_close_handles(c);
}

/* A peer that does not read what is queued for it is not waited for. */
static void on_linger(uv_timer_t *t) {
  conn_close_handles(t->data);
}

static void maybe_flush(server *s);
static void raw_send(conn *c, const uint8_t *data, size_t len);
static void tls_flush(conn *c);

/* One agent more (delta 1) or less (-1) connected with a token. */
static void count_token_agent(server *s, uint64_t token_key, int delta) {
  uintptr_t n = (uintptr_t)u64map_get(&s->token_agents, token_key);
  n = (uintptr_t)((intptr_t)n + delta);
  if (n)
    u64map_put(&s->token_agents, token_key, (void *)n);
  else
    u64map_del(&s->token_agents, token_key);
}

/* Closes c after the bytes already queued for it are written. */
static void conn_close(conn *c) {
  if (c->closing)
    return;
  server *s = c->srv;
  if (c->tls) {
    tls_conn_close_notify(c->tls);
    tls_flush(c);
  }
  c->closing = 1;
  if (c->token_key) {
    count_token_agent(s, c->token_key, -1);
    c->token_key = 0;
  }
  if (c->agent && agent_conn(c->agent) == c) {
    agent_set_conn(c->agent, NULL);
    ingest_disconnect(s->in, c->agent, format_now_us(),
                      (int64_t)uv_now(&s->loop));
  }
  c->agent = NULL;
  uv_read_stop(&c->h.stream);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  /* uv_shutdown waits for the queued writes (acks, an ERROR frame), so
   * they are not cancelled; the linger timer bounds that wait. */
  if (uv_timer_init(&s->loop, &c->linger) == 0) {
    c->linger.data = c;
    c->open_handles++;
  }
  uv_shutdown_t *req = xmalloc(sizeof(*req));
  req->data = c;
  if (c->open_handles < 2 || uv_shutdown(req, &c->h.stream, on_shutdown) != 0) {
    free(req);
    conn_close_handles(c);
    return;
  }
  uv_timer_start(&c->linger, on_linger, CLOSE_LINGER_MS, 0);
}

static void on_written(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

/* Queues bytes for c's socket; the write request carries its own copy. */
static void raw_send(conn *c, const uint8_t *data, size_t len) {
  if (c->closing)
    return;
  uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
  int n = uv_try_write(&c->h.stream, &buf, 1);
  if (n == (int)len)
    return;
  if (n < 0 && n != UV_EAGAIN)
    return; /* the read side will see the error and close */
  size_t done = n > 0 ? (size_t)n : 0;
  uv_write_t *req = xmalloc(sizeof(*req) + len - done);
  memcpy(req + 1, data + done, len - done);
  buf = uv_buf_init((char *)(req + 1), (unsigned)(len - done));
  if (uv_write(req, &c->h.stream, &buf, 1, on_written) != 0)
    free(req);
}

/* What c's TLS session has for the peer, to the socket. */
static void tls_flush(conn *c) {
  const uint8_t *p;
  size_t n = tls_conn_output(c->tls, &p);
  if (n > 0) {
    raw_send(c, p, n);
    tls_conn_output_done(c->tls);
  }
}

/* Queues a frame for c, encrypted on a TLS connection. */
static void conn_send(conn *c, const uint8_t *data, size_t len) {
  if (c->closing)
    return;
  if (c->tls == NULL)
    raw_send(c, data, len);
  else if (tls_conn_write(c->tls, data, len) == 0)
    tls_flush(c);
}

/* Whether c can still be sent a frame (a TLS session past its handshake). */
static int conn_can_send(const conn *c) {
  return c->tls == NULL || tls_conn_established(c->tls);
}

/* Closes a connection that broke the protocol or was refused, with one
 * logged line (reason is static text; `extra`, pairs already quoted, may
 * add what the peer said) and, when the peer can still take it, an ERROR
 * frame. */
static void conn_fail_with(conn *c, const char *reason, const char *extra) {
  if (c->closing)
    return;
  c->srv->summary->rejected++;
  log_msg(LOG_WARN,
          "connection closed peer=%s conn=%llu agent=%lld "
          "reason=\"%s\"%s",
          c->peer, (unsigned long long)c->number,
          c->agent ? (long long)agent_id(c->agent) : 0LL, reason, extra);
  if (uv_stream_get_write_queue_size(&c->h.stream) == 0 && conn_can_send(c)) {
    proto_buf b;
    tw__proto_buf_init(&b);
    tw__proto_put_error(&b, reason);
    if (!tw__proto_buf_failed(&b))
      conn_send(c, b.data, b.len);
    tw__proto_buf_fini(&b);
  }
  conn_close(c);
}

static void conn_fail(conn *c, const char *reason) {
  conn_fail_with(c, reason, "");
}

/* conn_fail() counting a refusal of guard.h. */
static void conn_refuse(conn *c, enum guard_counter which, const char *reason,
                        const char *extra) {
  guard_count(which);
  conn_fail_with(c, reason, extra);
}

static void send_ack(void *conn_ptr, uint64_t next_seq, void *arg) {
  conn *c = conn_ptr;
  const server *s = arg;
  proto_buf b;
  tw__proto_buf_init(&b);
  proto_ack a = {next_seq, s->hold.hold_ms};
  tw__proto_put_ack(&b, c->version, &a);
  if (!tw__proto_buf_failed(&b))
    conn_send(c, b.data, b.len);
  tw__proto_buf_fini(&b);
  if (uv_stream_get_write_queue_size(&c->h.stream) > GUARD_WRITE_QUEUE)
    conn_refuse(c, GUARD_write_queue_closed, "peer does not read its acks", "");
}

/* ---- the handshake ------------------------------------------------------ */

/* ` service="..."`, quoted for the log: the service a HELLO named. */
static void quoted_service(char *out, size_t size, const proto_hello *h) {
  char q[LOG_QUOTE_SIZE(PROTO_IDENT_MAX)];
  snprintf(out, size, " service=%s",
           log_quote(q, sizeof(q), h->service.ptr, h->service.len));
}

/* The token of a HELLO: known, allowed to speak for the service, and not
 * over its cap of agents. Returns 0 with *token_key set, or -1 (closed). */
static int authorize(conn *c, const proto_hello *h, uint64_t *token_key) {
  server *s = c->srv;
  uint8_t digest[AUTH_DIGEST_SIZE];
  char extra[LOG_QUOTE_SIZE(PROTO_IDENT_MAX) + 16];
  int entry = auth_token_find(s->tokens, h->token, digest);
  quoted_service(extra, sizeof(extra), h);
  if (entry < 0) {
    conn_refuse(c, GUARD_auth_refused, "authentication failed", extra);
    return -1;
  }
  if (!auth_token_allows(s->tokens, entry, h->service)) {
    conn_refuse(c, GUARD_auth_refused,
                "authentication failed: the token may not speak for this "
                "service",
                extra);
    return -1;
  }
  memcpy(token_key, digest, sizeof(*token_key));
  *token_key |= 1; /* never 0, a u64map key */
  return 0;
}

/* Whether one more agent may connect with the token of token_key. */
static int token_has_room(conn *c, uint64_t token_key) {
  server *s = c->srv;
  if (token_key == 0 || (uintptr_t)u64map_get(&s->token_agents, token_key) <
                            (uintptr_t)s->cfg->max_agents_per_token)
    return 1;
  conn_refuse(c, GUARD_token_agents_refused,
              "too many agents connected with this token", "");
  return 0;
}

static void send_welcome(conn *c, uint64_t next_seq) {
  proto_welcome w = {c->version, next_seq, PROTO_FRAME_MAX};
  proto_buf b;
  tw__proto_buf_init(&b);
  tw__proto_put_welcome(&b, &w);
  if (!tw__proto_buf_failed(&b))
    conn_send(c, b.data, b.len);
  tw__proto_buf_fini(&b);
}

/* The HELLO h passed its token and (key not NULL) its proof: the owner
 * check, then the instance is c's. Returns 0, or -1 (closed). */
static int admit(conn *c, const proto_hello *h, const uint8_t *key,
                 uint64_t token_key) {
  server *s = c->srv;
  const char *reason = NULL;
  int rc = ingest_owner_check(s->in, h->instance, key, &reason);
  if (rc == -1) {
    char extra[LOG_QUOTE_SIZE(PROTO_IDENT_MAX) + 16];
    quoted_service(extra, sizeof(extra), h);
    conn_refuse(c, GUARD_proof_refused, reason, extra);
    return -1;
  }
  if (rc != 0) {
    conn_fail(c, reason);
    return -1;
  }
  if (!token_has_room(c, token_key))
    return -1;
  const char *subject =
      c->tls && *tls_conn_subject(c->tls) ? tls_conn_subject(c->tls) : NULL;
  agent *a = ingest_hello(s->in, h, key, subject, format_now_us(), &reason);
  if (a == NULL) {
    conn_fail(c, reason);
    return -1;
  }
  /* Only an owner the checks above let through replaces a connection. */
  conn *old = agent_conn(a);
  if (old) {
    old->agent = NULL;
    conn_fail(old, "replaced by a newer connection of the same instance");
  }
  agent_set_conn(a, c);
  c->agent = a;
  if (token_key) {
    c->token_key = token_key;
    count_token_agent(s, token_key, 1);
  }
  send_welcome(c, agent_commit_seq(a));
  char service[LOG_QUOTE_SIZE(PROTO_IDENT_MAX)];
  char quoted_subject[LOG_QUOTE_SIZE(TLS_SUBJECT_MAX)] = "";
  if (subject)
    log_quote(quoted_subject, sizeof(quoted_subject), subject, strlen(subject));
  log_msg(LOG_INFO,
          "agent connected peer=%s conn=%llu agent=%lld "
          "service=%s pid=%u version=%u next_seq=%llu proof=%s%s%s%s%s",
          c->peer, (unsigned long long)c->number, (long long)agent_id(a),
          log_quote(service, sizeof(service), h->service.ptr, h->service.len),
          h->pid, (unsigned)c->version, (unsigned long long)agent_commit_seq(a),
          key ? "key" : "none", c->tls ? " tls=" : "",
          c->tls ? tls_conn_version(c->tls) : "", subject ? " subject=" : "",
          subject ? quoted_subject : "");
  return 0;
}

/* A HELLO with a key: its strings kept, a CHALLENGE sent. */
static int challenge(conn *c, const proto_hello *h, uint64_t token_key) {
  pending *p = xcalloc(1, sizeof(*p));
  p->hello = *h;
  memcpy(p->text, h->service.ptr ? h->service.ptr : "", h->service.len);
  memcpy(p->text + h->service.len, h->host.ptr ? h->host.ptr : "", h->host.len);
  p->hello.service.ptr = p->text;
  p->hello.host.ptr = p->text + h->service.len;
  p->hello.token.ptr = NULL;
  p->hello.token.len = 0;
  p->hello.key.ptr = (const char *)p->key;
  memcpy(p->key, h->key.ptr, PROTO_KEY_SIZE);
  auth_nonce(p->nonce);
  p->token_key = token_key;
  c->pending = p;
  proto_buf b;
  tw__proto_buf_init(&b);
  proto_str nonce = {(const char *)p->nonce, PROTO_NONCE_SIZE};
  tw__proto_put_challenge(&b, PROTO_PROOF_SINCE, nonce);
  if (!tw__proto_buf_failed(&b))
    conn_send(c, b.data, b.len);
  tw__proto_buf_fini(&b);
  return 0;
}

static int on_hello(conn *c, const proto_frame *f) {
  server *s = c->srv;
  proto_hello h;
  char why[160];
  uint64_t token_key = 0;
  int rc = tw__proto_decode_hello(f->payload, f->payload_len, &h);
  if (rc == PROTO_E_VERSION) {
    tw__proto_version_refusal(why, sizeof(why), "agent", h.version_min,
                              h.version, "collector");
    conn_fail(c, why);
    return -1;
  }
  if (rc != 0) {
    conn_fail(c, tw__proto_strerror(rc));
    return -1;
  }
  if (s->tokens && authorize(c, &h, &token_key) != 0)
    return -1;
  tw__proto_version_pick(h.version_min, h.version, &c->version);
  if (h.key.len == 0) {
    if (s->cfg->require_proof) {
      conn_refuse(c, GUARD_proof_refused,
                  "this collector requires a proof of instance ownership "
                  "(agents of protocol version 2 or later)",
                  "");
      return -1;
    }
    return admit(c, &h, NULL, token_key);
  }
  if (h.key.len != PROTO_KEY_SIZE) {
    conn_fail(c, "instance key of the wrong size");
    return -1;
  }
  return challenge(c, &h, token_key);
}

static int on_proof(conn *c, const proto_frame *f) {
  proto_str signature;
  pending *p = c->pending;
  int rc = tw__proto_decode_proof(f->payload, f->payload_len, PROTO_PROOF_SINCE,
                                  &signature);
  if (rc != 0) {
    conn_fail(c, tw__proto_strerror(rc));
    return -1;
  }
  if (!auth_verify(p->key, p->hello.instance, p->nonce, signature)) {
    conn_refuse(c, GUARD_proof_refused, "proof of instance ownership failed",
                "");
    return -1;
  }
  rc = admit(c, &p->hello, p->key, p->token_key);
  c->pending = NULL;
  free(p);
  return rc;
}

/* GOODBYE and FLUSH: one last_seq each, decoded at the connection's
 * version and handed to its ingest function. 0, or -1 with *reason. */
static int
last_seq_frame(conn *c, const proto_frame *f,
               int (*decode)(const uint8_t *, size_t, uint16_t, uint64_t *),
               int (*apply)(ingest *, agent *, uint64_t, const char **),
               const char **reason) {
  uint64_t last;
  int rc = decode(f->payload, f->payload_len, c->version, &last);
  if (rc != 0) {
    *reason = tw__proto_strerror(rc);
    return -1;
  }
  return apply(c->srv->in, c->agent, last, reason);
}

static int on_frame(conn *c, const proto_frame *f) {
  const char *reason = NULL;
  if (c->agent == NULL) {
    if (f->type == PROTO_HELLO && c->pending == NULL)
      return on_hello(c, f);
    if (f->type == PROTO_PROOF && c->pending != NULL)
      return on_proof(c, f);
    conn_fail(c, c->pending == NULL       ? "expected HELLO first"
                 : f->type == PROTO_HELLO ? "second HELLO on one connection"
                                          : "expected PROOF");
    return -1;
  }
  if (f->type == PROTO_EVENTS) {
    if (ingest_events(c->srv->in, c->agent, c->version, f->payload,
                      f->payload_len, &reason) == 0)
      return 0;
  } else if (f->type == PROTO_GOODBYE) {
    if (last_seq_frame(c, f, tw__proto_decode_goodbye, ingest_goodbye,
                       &reason) == 0)
      return 0;
  } else if (f->type == PROTO_FLUSH && c->version >= PROTO_FLUSH_SINCE) {
    if (last_seq_frame(c, f, tw__proto_decode_flush, ingest_flush, &reason) ==
        0)
      return 0;
  } else if (f->type == PROTO_HELLO) {
    reason = "second HELLO on one connection";
  } else {
    reason = "unexpected message type";
  }
  conn_fail(c, reason);
  return -1;
}

/* The first bytes of a TLS ClientHello: a handshake record of TLS 1.x. */
static int looks_like_tls(const conn *c) {
  return c->tls == NULL && c->agent == NULL && c->pending == NULL &&
         c->len >= 2 && c->buf[0] == 0x16 && c->buf[1] == 0x03;
}

/* Decodes every complete frame in c's buffer and keeps the rest. */
static void process(conn *c) {
  size_t off = 0;
  if (looks_like_tls(c)) {
    conn_fail(c, "TLS handshake on a plaintext listener (the agent's URL is "
                 "tls://, this listener's is not)");
    return;
  }
  while (!c->closing) {
    proto_frame f;
    uint32_t max = c->agent ? PROTO_FRAME_MAX : tw__proto_hello_limit();
    int rc = tw__proto_frame_next(c->buf + off, c->len - off, max, &f);
    if (rc == PROTO_NEED_MORE)
      break;
    if (rc == PROTO_E_OVERSIZED && c->agent == NULL) {
      conn_fail(c, "frame larger than the limit for a HELLO");
      return;
    }
    if (rc < 0) {
      conn_fail(c, tw__proto_strerror(rc));
      return;
    }
    if (on_frame(c, &f) != 0)
      return;
    off += f.frame_len;
  }
  if (c->closing)
    return;
  if (off > 0) {
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
  }
  if (c->len == 0) {
    /* Idle connections hold no buffer at all. */
    release_buffer(c);
    c->partial_since_ms = 0;
  } else if (c->partial_since_ms == 0 || off > 0)
    c->partial_since_ms = (int64_t)uv_now(&c->srv->loop);
}

/* Room in c's receive buffer for one more read: before the handshake,
 * for the longest HELLO and no more. Returns 0, or -1 when the buffers
 * are over their budget. */
static int buffer_room(conn *c) {
  server *s = c->srv;
  size_t want = c->agent ? READ_CHUNK : 4 + (size_t)tw__proto_hello_limit();
  if (c->cap - c->len >= want)
    return 0;
  size_t cap = c->len + want;
  size_t extra = over_chunk(cap) - over_chunk(c->cap);
  if (s->buffered + extra > GUARD_BUFFER_BUDGET)
    return -1;
  s->buffered += extra;
  if (c->buf == NULL && cap == READ_CHUNK && s->nspare > 0) {
    c->buf = s->spare[--s->nspare];
  } else {
    c->buf = xrealloc(c->buf, cap);
  }
  c->cap = cap;
  return 0;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  conn *c = handle->data;
  (void)suggested;
  /* A TLS connection reads into the server's scratch buffer: on_read
   * hands all of it to the session before the next read of any. */
  if (c->tls)
    *buf = uv_buf_init((char *)c->srv->cipher, READ_CHUNK);
  else if (buffer_room(c) != 0)
    *buf = uv_buf_init(NULL, 0); /* on_read gets UV_ENOBUFS */
  else
    *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* A TLS session failed: before its handshake, one line and the alert for
 * the peer; after, as any broken connection. */
static void tls_failed(conn *c) {
  if (tls_conn_established(c->tls)) {
    conn_fail(c, tls_conn_error(c->tls));
    return;
  }
  guard_count(GUARD_tls_failures);
  c->srv->summary->rejected++;
  log_msg(LOG_WARN, "TLS handshake failed peer=%s conn=%llu reason=\"%s\"",
          c->peer, (unsigned long long)c->number, tls_conn_error(c->tls));
  tls_flush(c); /* the alert */
  conn_close(c);
}

static void tls_established(conn *c) {
  char subject[LOG_QUOTE_SIZE(TLS_SUBJECT_MAX)];
  const char *text = tls_conn_subject(c->tls);
  guard_count(GUARD_tls_handshakes);
  if (log_enabled(LOG_DEBUG))
    log_msg(LOG_DEBUG,
            "TLS established peer=%s conn=%llu version=%s subject=%s", c->peer,
            (unsigned long long)c->number, tls_conn_version(c->tls),
            log_quote(subject, sizeof(subject), text, strlen(text)));
}

/* Takes the plaintext out of c's session and processes it, while c reads
 * (a pause leaves the rest in the session until reading resumes). */
static void tls_pump(conn *c) {
  while (!c->closing && c->reading) {
    if (buffer_room(c) != 0) {
      conn_refuse(c, GUARD_buffers_refused, "receive buffers over budget", "");
      return;
    }
    int was = tls_conn_established(c->tls);
    int n = tls_conn_read(c->tls, c->buf + c->len, c->cap - c->len);
    if (!was && tls_conn_established(c->tls))
      tls_established(c);
    if (n == TLS_FAILED) {
      tls_failed(c);
      return;
    }
    tls_flush(c);
    if (n > 0) {
      c->len += (size_t)n;
      process(c);
    } else {
      if (n == TLS_CLOSED)
        conn_close(c);
      else if (c->len == 0)
        release_buffer(c); /* idle: no buffer while the session waits */
      return;
    }
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn *c = stream->data;
  server *s = c->srv;
  (void)buf;
  if (nread == 0 || c->closing)
    return;
  if (nread < 0) {
    if (nread == UV_EOF && c->len == 0) {
      log_msg(LOG_INFO, "connection ended peer=%s conn=%llu agent=%lld",
              c->peer, (unsigned long long)c->number,
              c->agent ? (long long)agent_id(c->agent) : 0LL);
      conn_close(c);
    } else {
      if (nread == UV_ENOBUFS)
        guard_count(GUARD_buffers_refused);
      conn_fail(c, nread == UV_EOF       ? "connection ended inside a frame"
                   : nread == UV_ENOBUFS ? "receive buffers over budget"
                                         : uv_strerror((int)nread));
    }
    maybe_flush(s);
    return;
  }
  s->read_in_pass = 1;
  if (c->tls == NULL) {
    c->len += (size_t)nread;
    process(c);
  } else if (tls_conn_feed(c->tls, s->cipher, (size_t)nread) != 0) {
    conn_fail(c, "out of memory");
  } else {
    tls_pump(c);
  }
  maybe_flush(s);
}

static void conn_start_reading(conn *c) {
  if (!c->reading && !c->closing &&
      uv_read_start(&c->h.stream, on_alloc, on_read) == 0) {
    c->reading = 1;
    /* What the session took in before a pause. */
    if (c->tls)
      tls_pump(c);
  }
}

static void conn_stop_reading(conn *c) {
  if (c->reading) {
    uv_read_stop(&c->h.stream);
    c->reading = 0;
  }
  /* A partial frame cannot complete while reading is paused. */
  c->partial_since_ms = 0;
}

/* ---- flushing and backpressure ----------------------------------------- */

static void set_paused(server *s, int paused) {
  if (s->paused == paused)
    return;
  s->paused = paused;
  log_msg(LOG_DEBUG, "%s reading", paused ? "pausing" : "resuming");
  for (conn *c = s->conns; c; c = c->next) {
    if (paused) {
      conn_stop_reading(c);
    } else {
      conn_start_reading(c);
      if (c->len > 0)
        c->partial_since_ms = (int64_t)uv_now(&s->loop);
    }
  }
}

static void on_flush_timer(uv_timer_t *t) {
  maybe_flush(t->data);
}

/* Hands the filling batch to the writer when the writer is idle and the
 * batch is old or big enough; pauses reading when it is too big. */
static void maybe_flush(server *s) {
  wbatch *b = ingest_current(s->in);
  int64_t now = (int64_t)uv_now(&s->loop);
  int held_due = s->held_due_ms != 0 && now >= s->held_due_ms;
  if (wbatch_empty(b) && !held_due)
    return;
  size_t bytes = wbatch_bytes(b);
  if (s->batch_since_ms == 0)
    s->batch_since_ms = now;
  if (s->stopping == 0 && writer_in_flight(s->writer) > 0) {
    if (bytes >= s->cfg->high_watermark)
      set_paused(s, 1);
    return;
  }
  int64_t age = now - s->batch_since_ms;
  /* Tasks held in memory that are due to be written wait flush_ms, as
   * the batch after a full one does. */
  int64_t wait = wbatch_commit_wait_ms(b, age, s->cfg->flush_ms,
                                       s->after_full || held_due);
  if (s->stopping == 0 && wait > 0 &&
      bytes < s->cfg->high_watermark / 2) {
    /* Again when it is due as it is, or when held tasks fall due: every
     * frame that fills it more comes through here and brings the timer
     * forward (a batch that turns full is due at flush_ms, not at
     * BATCH_IDLE_FACTOR times that), so a quiet batch costs the loop one
     * wakeup, not one at flush_ms and another at its due time. */
    int64_t again = wait;
    if (s->held_due_ms > now && s->held_due_ms - now < again)
      again = s->held_due_ms - now;
    if (!uv_is_active((uv_handle_t *)&s->flush) ||
        uv_timer_get_due_in(&s->flush) > (uint64_t)again)
      uv_timer_start(&s->flush, on_flush_timer, (uint64_t)again, 0);
    return;
  }
  uv_timer_stop(&s->flush);
  s->batch_since_ms = 0;
  s->held_due_ms = 0;
  s->after_full = b->events >= BATCH_FULL_EVENTS;
  /* The advice its events came under, before they count in the next. */
  int64_t advised = s->hold.hold_ms;
  hold_advice_count(&s->hold, now, b->events, s->cfg->flush_ms);
  wbatch *next = ingest_take(s->in);
  next->agent_hold_ms = advised;
  export_submit(s->exports, next);
  writer_submit(s->writer, next);
  if (s->stopping == 0)
    set_paused(s, 0);
}

static void finish(server *s);

static void on_batch_done(wbatch *b, void *arg) {
  server *s = arg;
  /* The writer first: it starts on the filling batch (if that is due)
   * while this thread sends the acks and frees the batch it finished. */
  if (b->held_due_ms >= 0 && s->held_due_ms == 0)
    s->held_due_ms = (int64_t)uv_now(&s->loop) + b->held_due_ms;
  if (s->stopping == 0)
    maybe_flush(s);
  export_committed(s->exports, b);
  if (b->failed)
    s->failed = 1;
  else
    ingest_committed(s->in, b, send_ack, s);
  ingest_recycle(s->in, b);
  if (s->stopping && writer_in_flight(s->writer) == 0) {
    finish(s);
    return;
  }
  if (s->stopping)
    maybe_flush(s);
}

/* ---- accepting ---------------------------------------------------------- */

static void peer_name(conn *c, const listener *l) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (l->unix_path) {
    /* Unix peers have no address of their own: name the socket. */
    snprintf(c->peer, sizeof(c->peer), "unix:%s", l->unix_path);
    return;
  }
  snprintf(c->peer, sizeof(c->peer), "?");
  if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  char ip[64] = "";
  int port = 0;
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    uv_ip6_name(a, ip, sizeof(ip));
    port = ntohs(a->sin6_port);
    snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip, port);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, ip, sizeof(ip));
    port = ntohs(a->sin_port);
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
  }
}

/* A connection refused as it is accepted: one line, closed at once. */
static void refuse_connection(conn *c, const char *reason) {
  log_msg(LOG_WARN, "connection refused peer=%s conn=%llu reason=\"%s\"",
          c->peer, (unsigned long long)c->number, reason);
  uv_close(&c->h.handle, on_conn_closed);
}

static void on_connection(uv_stream_t *server_stream, int status) {
  listener *l = server_stream->data;
  server *s = l->srv;
  if (status != 0 || s->stopping) {
    if (status != 0)
      log_msg(LOG_WARN, "accept failed error=\"%s\"", uv_strerror(status));
    return;
  }
  conn *c = xcalloc(1, sizeof(*c));
  c->srv = s;
  c->number = ++s->next_number;
  c->h.handle.data = c;
  c->open_handles = 1;
  int rc = l->unix_path ? uv_pipe_init(&s->loop, &c->h.pipe, 0)
                        : uv_tcp_init(&s->loop, &c->h.tcp);
  if (rc == 0)
    rc = uv_accept(server_stream, &c->h.stream);
  if (rc != 0) {
    log_msg(LOG_WARN, "accept failed error=\"%s\"", uv_strerror(rc));
    uv_close(&c->h.handle, on_conn_closed);
    return;
  }
  peer_name(c, l);
  if (s->nconns >= (size_t)s->cfg->max_connections) {
    s->summary->rejected++;
    refuse_connection(c, "too many connections");
    return;
  }
  if (!l->unix_path)
    uv_tcp_nodelay(&c->h.tcp, 1);
  if (l->tls && (c->tls = tls_conn_new(s->tls)) == NULL) {
    refuse_connection(c, "out of memory for a TLS session");
    return;
  }
  c->opened_ms = (int64_t)uv_now(&s->loop);
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  s->summary->connections++;
  log_msg(LOG_DEBUG, "connection accepted peer=%s conn=%llu", c->peer,
          (unsigned long long)c->number);
  if (!s->paused)
    conn_start_reading(c);
}

/* ---- listeners ---------------------------------------------------------- */

/* A unix socket file left by a collector that died is removed; one that a
 * live process still accepts on is not. */
static int clear_stale_socket(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return 0;
  if (!S_ISSOCK(st.st_mode))
    return UV_EEXIST;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sa.sun_path))
    return UV_ENAMETOOLONG;
  memcpy(sa.sun_path, path, strlen(path));
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0)
    return UV_EMFILE;
  int live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  close(fd);
  if (live)
    return UV_EADDRINUSE;
  unlink(path);
  return 0;
}

/* After a failed bind: the true reason when the socket's directory is
 * missing (libuv reports ENOENT from bind(2) as "permission denied"). */
static int bind_failure(const char *path, int rc, char *why, size_t len) {
  const char *slash = strrchr(path, '/');
  if ((rc != UV_EACCES && rc != UV_ENOTDIR) || slash == NULL || slash == path)
    return rc;
  char *dir = xstrndup(path, (size_t)(slash - path));
  struct stat st;
  if (stat(dir, &st) != 0 && errno == ENOENT) {
    snprintf(why, len, "directory %s does not exist", dir);
    rc = UV_ENOENT;
  } else if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
    snprintf(why, len, "%s is not a directory", dir);
    rc = UV_ENOTDIR;
  }
  free(dir);
  return rc;
}

/* Gives the bound socket its group, then its mode: never wider than 0600
 * before the group is right. */
static int socket_access(const server_config *cfg, const char *path, char *why,
                         size_t len) {
  int rc = 0;
  if (cfg->socket_gid >= 0 &&
      chown(path, (uid_t)-1, (gid_t)cfg->socket_gid) != 0) {
    rc = uv_translate_sys_error(errno);
    snprintf(why, len, "cannot give the socket to group %ld: %s%s",
             cfg->socket_gid, uv_strerror(rc),
             rc == UV_EPERM ? " (the collector must be a member)" : "");
  } else if (chmod(path, (mode_t)cfg->socket_mode) != 0) {
    rc = uv_translate_sys_error(errno);
    snprintf(why, len, "cannot set mode %04o: %s", cfg->socket_mode,
             uv_strerror(rc));
  }
  return rc;
}

static int listen_unix(server *s, listener *l, const char *path, char *why,
                       size_t len) {
  int rc = clear_stale_socket(path);
  if (rc != 0)
    return rc;
  if ((rc = uv_pipe_init(&s->loop, &l->h.pipe, 0)) != 0)
    return rc;
  l->h.handle.data = l;
  /* The socket is created with mode 0600 (only this user's agents), and
   * opened up to --socket-mode and --socket-group once bound. */
  mode_t old = umask(0177);
  rc = uv_pipe_bind(&l->h.pipe, path);
  umask(old);
  if (rc != 0)
    return bind_failure(path, rc, why, len);
  l->unix_path = xstrdup(path);
  if ((rc = socket_access(s->cfg, path, why, len)) == 0)
    rc = uv_listen(&l->h.stream, 4096, on_connection);
  return rc;
}

static int listen_tcp(server *s, listener *l, const url *u) {
  int port = u->port, rc;
  struct sockaddr_storage ss;
  if (uv_ip4_addr(u->host, port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(u->host, port, (struct sockaddr_in6 *)&ss) != 0)
    return UV_EINVAL;
  if ((rc = uv_tcp_init(&s->loop, &l->h.tcp)) != 0)
    return rc;
  l->h.handle.data = l;
  if ((rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0)) != 0 ||
      (rc = uv_listen(&l->h.stream, 4096, on_connection)) != 0)
    return rc;
  int len = sizeof(ss);
  if (uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
    url bound = *u;
    char text[URL_HOST_MAX + 32];
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, bound.host, sizeof(bound.host));
      bound.port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
      bound.ipv6 = 1;
    } else {
      uv_ip4_name((struct sockaddr_in *)&ss, bound.host, sizeof(bound.host));
      bound.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
      bound.ipv6 = 0;
    }
    tw__url_format(&bound, text, sizeof(text));
    free(l->url);
    l->url = xstrdup(text);
  }
  return 0;
}

static int open_listeners(server *s) {
  s->listeners = xcalloc(s->cfg->nlisten, sizeof(*s->listeners));
  for (size_t i = 0; i < s->cfg->nlisten; i++) {
    const char *url_text = s->cfg->listen[i];
    listener *l = &s->listeners[i];
    l->srv = s;
    l->url = xstrdup(url_text);
    url u;
    char why[PATH_MAX + 64] = "";
    int rc = tw__url_parse(url_text, URL_LISTEN | URL_TLS_OK, &u);
    if (rc != 0) {
      log_msg(LOG_ERROR, "cannot listen url=%s error=\"%s\"", url_text,
              tw__url_strerror(rc));
      return -1;
    }
    l->tls = u.scheme == URL_TLS;
    rc = u.scheme == URL_UNIX ? listen_unix(s, l, u.path, why, sizeof(why))
                              : listen_tcp(s, l, &u);
    if (l->h.handle.data)
      s->nlisteners = i + 1;
    if (rc != 0) {
      log_msg(LOG_ERROR, "cannot listen url=%s error=\"%s\"", url_text,
              why[0] ? why : uv_strerror(rc));
      return -1;
    }
    log_msg(LOG_INFO, "listening url=%s", l->url);
  }
  return 0;
}

/* What the metrics endpoint asks of the loop at a scrape. */
static void export_sample_of(void *arg, export_sample *out) {
  server *s = arg;
  wbatch *b = ingest_current(s->in);
  out->events_pending = b->events;
  out->bytes_pending = wbatch_bytes(b);
  out->connections = s->nconns;
  out->rejected = s->summary->rejected;
  out->hold_ms = s->hold.hold_ms;
}

/* ---- timers, signals, shutdown ----------------------------------------- */

static void on_sweep(uv_timer_t *t) {
  server *s = t->data;
  int64_t now = (int64_t)uv_now(&s->loop);
  int64_t limit = s->cfg->handshake_timeout_ms;
  conn *c = s->conns;
  while (c) {
    conn *next = c->next;
    if (!s->paused && c->agent == NULL && now - c->opened_ms > limit)
      conn_fail(c, "handshake timeout");
    else if (!s->paused && c->partial_since_ms &&
             now - c->partial_since_ms > limit)
      conn_fail(c, "frame not completed in time");
    c = next;
  }
  ingest_tick(s->in, format_now_us(), now);
  if (s->cfg->prune && now - s->last_prune_ms >= PRUNE_EVERY_MS) {
    s->last_prune_ms = now;
    ingest_request_prune(s->in);
  }
  maybe_flush(s);
}

static void close_handle(uv_handle_t *h) {
  if (h->data != NULL && !uv_is_closing(h))
    uv_close(h, NULL);
}

static void close_listeners(server *s) {
  for (size_t i = 0; s->listeners && i < s->cfg->nlisten; i++) {
    listener *l = &s->listeners[i];
    close_handle(&l->h.handle);
    if (l->unix_path)
      unlink(l->unix_path);
  }
}

/* Last step of a shutdown: every batch is committed and acked. */
static void finish(server *s) {
  if (s->stopping == 1) {
    /* Acks are queued; closing now flushes them before the FIN. The
     * disconnects this records get one more transaction. */
    s->stopping = 2;
    while (s->conns)
      conn_close(s->conns);
    if (!wbatch_empty(ingest_current(s->in))) {
      maybe_flush(s);
      return;
    }
  }
  if (s->writer) {
    writer_stop(s->writer, &s->latency);
    s->writer = NULL;
  }
  export_stop(s->exports);
  s->exports = NULL;
  uv_timer_stop(&s->sweep);
  uv_timer_stop(&s->flush);
  close_handle((uv_handle_t *)&s->sweep);
  close_handle((uv_handle_t *)&s->flush);
  close_handle((uv_handle_t *)&s->pace);
  close_handle((uv_handle_t *)&s->woke);
  close_handle((uv_handle_t *)&s->stop_timer);
  close_handle((uv_handle_t *)&s->sigterm);
  close_handle((uv_handle_t *)&s->sigint);
  close_handle((uv_handle_t *)&s->sighup);
}

/* The store had its time: what it has not committed is given up (the
 * agents keep it, unacked), so the shutdown goes on to its end. */
static void give_up(server *s, const char *why) {
  if (s->writer == NULL)
    return;
  log_msg(LOG_WARN,
          "giving up the writes not committed reason=\"%s\" "
          "uncommitted=%llu",
          why, (unsigned long long)stop_uncommitted());
  writer_abort(s->writer);
}

static void on_stop_timer(uv_timer_t *t) {
  give_up(t->data, "not committed within the shutdown's time");
}

/* SIGTERM or SIGINT: stop accepting and reading, commit what was received
 * and ack it, then close - within the bound stop.h sets, whatever the
 * store does. A second signal gives up the writes at once. */
static void on_signal(uv_signal_t *sig, int signum) {
  server *s = sig->data;
  const char *name = signum == SIGINT ? "INT" : "TERM";
  if (s->stopping) {
    log_msg(LOG_INFO, "second signal signal=%s", name);
    give_up(s, "a second signal");
    return;
  }
  stop_begin();
  log_msg(LOG_INFO, "shutting down signal=%s", name);
  s->stopping = 1;
  export_stopping(s->exports);
  uv_timer_start(&s->stop_timer, on_stop_timer, STOP_COMMIT_MS, 0);
  close_listeners(s);
  for (conn *c = s->conns; c; c = c->next)
    conn_stop_reading(c);
  maybe_flush(s);
  if (writer_in_flight(s->writer) == 0)
    finish(s);
}

/* SIGHUP: the TLS certificate, key and client CAs and the token file are
 * read again. What cannot be read is logged and what was loaded before
 * stays in use; connections already open keep their session and their
 * admission. */
static void on_sighup(uv_signal_t *sig, int signum) {
  server *s = sig->data;
  char err[PATH_MAX + 256];
  const char *tls = s->tls ? "reloaded" : "none";
  (void)signum;
  if (s->tls && tls_server_reload(s->tls, err, sizeof(err)) != 0) {
    log_msg(LOG_ERROR,
            "reload failed what=tls error=\"%s\" note=\"the certificates "
            "loaded before stay in use\"",
            err);
    tls = "kept";
  }
  token_table *t = NULL;
  if (s->cfg->token_file &&
      (t = auth_tokens_load(s->cfg->token_file, err, sizeof(err))) == NULL)
    log_msg(LOG_ERROR,
            "reload failed what=tokens error=\"%s\" note=\"the "
            "tokens loaded before stay in use\"",
            err);
  if (t != NULL) {
    auth_tokens_free(s->tokens);
    s->tokens = t;
  }
  char tokens[32] = "none";
  if (s->tokens)
    snprintf(tokens, sizeof(tokens), "%zu", auth_tokens_count(s->tokens));
  log_msg(LOG_INFO, "reloaded on SIGHUP tokens=%s tls=%s", tokens, tls);
}

/* Before the loop waits (PACE_NS above). */
static void on_pace(uv_prepare_t *h) {
  server *s = h->data;
  if (s->read_in_pass && s->poll_from_ns != 0 && s->polled_ns < PACE_NS &&
      s->stopping == 0) {
    /* The writer's end of a batch cuts the sleep short: the loop hands
     * it the next batch at once, as without pacing. */
    writer_nap(s->writer, PACE_NS - s->polled_ns);
  }
  s->read_in_pass = 0;
  s->poll_from_ns = uv_hrtime();
}

/* After the wait. */
static void on_woke(uv_check_t *h) {
  server *s = h->data;
  if (s->poll_from_ns != 0)
    s->polled_ns = uv_hrtime() - s->poll_from_ns;
}

static int start_handles(server *s) {
  s->sweep.data = s->flush.data = s->sigterm.data = s->sigint.data = s;
  s->stop_timer.data = s->sighup.data = s;
  s->pace.data = s->woke.data = s;
  if (uv_prepare_init(&s->loop, &s->pace) ||
      uv_check_init(&s->loop, &s->woke) ||
      uv_timer_init(&s->loop, &s->sweep) ||
      uv_timer_init(&s->loop, &s->flush) ||
      uv_timer_init(&s->loop, &s->stop_timer) ||
      uv_signal_init(&s->loop, &s->sigterm) ||
      uv_signal_init(&s->loop, &s->sigint) ||
      uv_signal_init(&s->loop, &s->sighup))
    return -1;
  int64_t tenth = (s->cfg->handshake_timeout_ms < s->cfg->lost_after_ms
                       ? s->cfg->handshake_timeout_ms
                       : s->cfg->lost_after_ms) /
                  10;
  uint64_t sweep_ms = tenth < SWEEP_MIN_MS   ? SWEEP_MIN_MS
                      : tenth > SWEEP_MAX_MS ? SWEEP_MAX_MS
                                             : (uint64_t)tenth;
  uv_timer_start(&s->sweep, on_sweep, sweep_ms, sweep_ms);
  uv_prepare_start(&s->pace, on_pace);
  uv_check_start(&s->woke, on_woke);
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  uv_signal_start(&s->sigint, on_signal, SIGINT);
  uv_signal_start(&s->sighup, on_sighup, SIGHUP);
  return 0;
}

static void record_listeners(server *s, store *st) {
  const char **urls = xcalloc(s->nlisteners, sizeof(*urls));
  for (size_t i = 0; i < s->nlisteners; i++)
    urls[i] = s->listeners[i].url;
  store_set_listeners(st, urls, s->nlisteners);
  free(urls);
}

static void free_listeners(server *s) {
  for (size_t i = 0; s->listeners && i < s->cfg->nlisten; i++) {
    free(s->listeners[i].url);
    free(s->listeners[i].unix_path);
  }
  free(s->listeners);
}

int server_run(const server_config *cfg, store *st, sqlite3 *db,
               server_summary *summary) {
  server *s = xcalloc(1, sizeof(*s));
  int rc = 1;
  hist_init(&s->latency);
  memset(summary, 0, sizeof(*summary));
  s->cfg = cfg;
  s->summary = summary;
  s->tokens = cfg->tokens;
  s->tls = cfg->tls;
  if (s->tls)
    s->cipher = xmalloc(READ_CHUNK);
  u64map_init(&s->token_agents);
  signal(SIGPIPE, SIG_IGN);
  /* A file size limit (ulimit -f) reached by the store is a full disk
   * (writes fail with EFBIG, commits are retried), not a crash. */
  signal(SIGXFSZ, SIG_IGN);
  if (uv_loop_init(&s->loop) != 0) {
    auth_tokens_free(s->tokens);
    tls_server_free(s->tls);
    free(s->cipher);
    u64map_fini(&s->token_agents);
    free(s);
    return 1;
  }
  s->in = ingest_new(db, cfg->lost_after_ms, cfg->max_clock_skew_us,
                     (int64_t)uv_now(&s->loop));
  /* The exports' endpoint listens before the agents' listeners, so it is
   * up once they are. */
  int export_failed = 0;
  if (s->in)
    s->exports = export_start(cfg->exports, &s->loop, export_sample_of, s,
                              &export_failed);
  /* The listeners before the writer thread: the store is this thread's
   * until then, to record the addresses a second collector names.
   * Nothing is accepted before uv_run(). */
  if (s->in && !export_failed && start_handles(s) == 0 &&
      open_listeners(s) == 0) {
    record_listeners(s, st);
    s->writer = writer_start(st, &s->loop, on_batch_done, s);
  }
  if (s->writer) {
    summary->started = 1;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    /* A batch given up at the stop fails the exit only if it held events
     * (they are what the agents must resend); the disconnects the stop
     * records are not. */
    rc = s->failed && stop_uncommitted() > 0 ? 1 : 0;
  } else {
    close_listeners(s);
    finish(s);
  }
  /* Runs the close callbacks of the handles closed above. */
  uv_run(&s->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&s->loop) != 0)
    log_msg(LOG_WARN, "event loop closed with handles open");
  summary->latency_p50_us = hist_quantile(&s->latency, 0.50);
  summary->latency_p99_us = hist_quantile(&s->latency, 0.99);
  ingest_free(s->in);
  free_listeners(s);
  auth_tokens_free(s->tokens);
  tls_server_free(s->tls);
  free(s->cipher);
  while (s->nspare > 0)
    free(s->spare[--s->nspare]);
  u64map_fini(&s->token_agents);
  free(s);
  return rc;
}
