/*
 * sender - the agent's sender thread and its connection to the collector.
 * The thread runs its own libuv loop: it connects (tcp or unix), says
 * HELLO (with the instance's public key, and answers the collector's
 * CHALLENGE with its PROOF: proof.h), agrees on a protocol version through
 * WELCOME, writes the resend
 * buffer's chunks, reads ACK and ERROR, and reconnects with exponential
 * backoff and jitter. What it writes comes from drain.c (ring records to
 * events) through resend.c (every event until the collector acks it after
 * COMMIT); this file is the I/O and the bookkeeping around them.
 *
 * The last chunk is held back until it is full or PACE_WRITE_MS old (or
 * a flush or the stop wants it). Every write costs the sender tens of
 * microseconds however little it carries (the system call, waking the
 * collector, reading its ack), and a chunk costs a whole
 * RESEND_CHUNK_BYTES of the budget however few events it holds, so
 * writing the last chunk at every drain while acks are slow (a collector
 * busy committing) would fill the buffer with nearly empty chunks within
 * a few dozen drains, and the rings would then drop. Held, each chunk
 * spans at least PACE_WRITE_MS, and the buffer rides out a stall of
 * seconds at any rate it can hold. While acks keep up (a few chunks in
 * use at most) the hold is PACE_WRITE_LIVE_MS at most and none when the
 * next drain comes later than that (pace.h, tw__pace_hold()): the drain
 * writes what it took in the same wakeup. Drains come PACE_LIVE_MS apart
 * at a high rate and PACE_FLOW_MS apart at most while records come, so an
 * event is written within about 20-30 ms, which the collector's
 * event-to-commit target (p99 100 ms at 100k events/s, with its own 50 ms
 * batches) needs; a stall turns the hold back to PACE_WRITE_MS.
 *
 * Producers never wake the sender (that would be a system call on the
 * recording path): it drains the rings on a timer paced by what it saw
 * (pace.h): the rate records arrive at and how full the fullest ring got,
 * so that each wakeup carries many events but no ring comes close to
 * full. flush and stop requests come from other threads through a mutex,
 * a condition variable and a uv_async.
 */
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "agent_internal.h"
#include "conn_tls.h"
#include "drain.h"
#include "pace.h"
#include "proof.h"
#include "resend.h"
#include "url.h"

/* While the resend buffer is full, how often the rings are looked at
 * (an ack that frees a chunk drains at once). */
#define FULL_POLL_MS 10u
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 30000u
/* For FAST_RETRY_MS after a working connection is lost, retries come at
 * most BACKOFF_FAST_MS apart: a collector restarting (an upgrade, a crash
 * under systemd's Restart=) is back within a second or so, and every
 * second away fills the resend buffer with a second of events. A refused
 * connect costs the agent a system call and the collector nothing. */
#define BACKOFF_FAST_MS 200u
#define FAST_RETRY_MS 30000u
#define HANDSHAKE_MS 5000u
/* Ciphertext of chunks a TLS connection may have in flight: each chunk is
 * encrypted into a copy of its own on its way out, outside the resend
 * buffer, so more waits for these to be written. */
#define TLS_IN_FLIGHT (2 * (size_t)RESEND_CHUNK_BYTES)

enum conn_state {
  CONN_IDLE,
  CONN_CONNECTING,
  CONN_HANDSHAKE,
  CONN_READY,
  CONN_CLOSING
};

/* A write of one chunk. Kept on a free list once used, so a sender in
 * steady state does not call the allocator. */
typedef struct chunk_write {
  uv_write_t req;
  struct sender *owner;
  resend_chunk *chunk;
  struct chunk_write *next;
} chunk_write;

typedef struct sender {
  tw_agent *agent;
  pthread_t thread;
  uv_loop_t loop;
  uv_async_t wake;
  uv_timer_t poll;
  uv_timer_t retry; /* backoff, handshake timeout, goodbye deadline */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } conn;
  uv_connect_t connect_req;
  uv_write_t hello_req;
  uv_write_t proof_req;
  uv_write_t goodbye_req;
  uv_write_t health_req;
  uv_write_t flush_req;
  proto_buf hello;
  proto_buf proof;
  proof_key key; /* the instance's (proof.h) */
  proto_buf goodbye;
  proto_buf final_health; /* see send_final_health() */
  proto_buf flush_frame;  /* see send_flush() */
  bool flush_writing;     /* flush_req in flight */
  uint64_t flush_frame_for; /* the flush request whose FLUSH this
                               connection got; 0: none */
  chunk_write *free_writes;
  int state;
  bool reading; /* libuv reads the connection as data comes (see
                   sync_reading()) */
  url where;    /* the collector */
  /* A tls:// collector (conn_tls.h): the context, made on the first
   * connection; the session of the current one; whether its handshake is
   * done; what the socket gave, before the session reads it. */
  SSL_CTX *tls_ctx;
  conn_tls *tls;
  bool tls_up;
  size_t tls_in_flight; /* ciphertext of writes not yet written */
  uint8_t cipher[AGENT_READ_BYTES];
  uint8_t rbuf[AGENT_READ_BYTES];
  size_t rlen;
  resend buffer; /* its version is the one agreed with the collector */
  drain drain;
  uint64_t sent_upto; /* everything below is written on this connection */
  unsigned backoff_ms;
  uint64_t lost_ms; /* when a welcomed connection was last lost; 0: never */
  pace pace;
  /* How long the collector lets events wait here before they are
   * written, from its last ACK (PROTO_HOLD_SINCE on); 0: the pace's own
   * bounds. Dropped with the connection. */
  unsigned hold_ms;
  uint64_t next_tick_ms; /* when the poll timer fires next (uv_now) */
  bool welcomed_once;
  bool stopping;
  bool goodbye_sent;
  uint64_t health_dropped; /* the counters the last HEALTH reported */
  uint64_t health_reconnects;
  uint64_t health_batches; /* batches and tasks refused whole */
  uint64_t health_tasks;
  uint64_t rng;
  /* The flush being served, sender-private. */
  struct {
    uint64_t active;    /* the newest request taken */
    uint64_t signalled; /* the newest request answered */
    uint64_t target;    /* the last event it waits for */
    bool target_set;
  } flush;
  /* Counters other threads read (tw_agent_get_stats()). */
  struct {
    _Atomic uint64_t sent;
    _Atomic uint64_t acked;
    _Atomic uint64_t reconnects;
    _Atomic int conn_state; /* a tw_conn_state */
  } count;
  /* Requests from other threads and what they read back; under mu. */
  struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t flush_req;
    uint64_t flush_done;
    bool stop;
    unsigned goodbye_ms;
    int refusal_code;
    char refusal[LIMIT_REFUSAL_TEXT];
  } shared;
} sender;

static void connect_start(sender *s);
static void disconnect(sender *s);
static void send_pending(sender *s);
static void check_flush(sender *s);
static void send_flush(sender *s);
static void finish_stop(sender *s);
static void on_poll(uv_timer_t *t);

int tw__sender_check_url(const char *text) {
  url u;
  return tw__url_parse(text, URL_TLS_OK, &u) == 0 ? 0 : -1;
}

/* Keeps why the collector refused this agent, or broke the protocol with
 * it: one line, control bytes replaced, for the host to read later. */
static void refuse(sender *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(sender *s, int code, const char *fmt, ...) {
  char text[LIMIT_REFUSAL_TEXT];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  for (char *p = text; *p != '\0'; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      *p = '?';
  pthread_mutex_lock(&s->shared.mu);
  s->shared.refusal_code = code;
  memcpy(s->shared.refusal, text, sizeof(text));
  pthread_mutex_unlock(&s->shared.mu);
}

/* The connection's state, and what other threads read of it. */
static void set_state(sender *s, int state) {
  s->state = state;
  int pub = state == CONN_READY ? TW_CONN_CONNECTED
            : state == CONN_CONNECTING || state == CONN_HANDSHAKE
                ? TW_CONN_CONNECTING
            : s->stopping ? TW_CONN_STOPPED
                          : TW_CONN_WAITING;
  atomic_store_explicit(&s->count.conn_state, pub, memory_order_relaxed);
}

/* ---- health -------------------------------------------------------------- */

/* The HEALTH event of the counters now, when they changed. A connection
 * of version 1 or 2 carries the first two only (docs/protocol.md). */
static bool health_event(sender *s, proto_event *ev) {
  uint64_t dropped = tw__record_dropped_total(s->agent);
  uint64_t reconnects = atomic_load(&s->count.reconnects);
  uint64_t batches, tasks;
  tw__record_refused(s->agent, &batches, &tasks);
  if (dropped == s->health_dropped && reconnects == s->health_reconnects &&
      batches == s->health_batches && tasks == s->health_tasks)
    return false;
  memset(ev, 0, sizeof(*ev));
  ev->kind = PROTO_EV_HEALTH;
  ev->time_ns = tw__clock_mono_ns() + s->agent->wall_offset_ns;
  ev->other = dropped;
  ev->other2 = reconnects;
  ev->dropped_batches = batches;
  ev->dropped_tasks = tasks;
  return true;
}

/* The counters of a HEALTH on its way: the next one is made when they
 * change. */
static void health_reported(sender *s, const proto_event *ev) {
  s->health_dropped = ev->other;
  s->health_reconnects = ev->other2;
  s->health_batches = ev->dropped_batches;
  s->health_tasks = ev->dropped_tasks;
}

/* Queues a HEALTH event when the counters changed. False when it did not
 * fit in the resend buffer (it is tried again later). */
static bool maybe_health(sender *s) {
  proto_event ev;
  if (!health_event(s, &ev))
    return true;
  if (!tw__resend_append(&s->buffer, &ev, true))
    return false;
  health_reported(s, &ev);
  return true;
}

/* ---- connection ---------------------------------------------------------- */

static uint64_t next_random(sender *s) {
  s->rng ^= s->rng << 13;
  s->rng ^= s->rng >> 7;
  s->rng ^= s->rng << 17;
  return s->rng;
}

static void on_retry(uv_timer_t *t) {
  connect_start(t->data);
}

static void schedule_retry(sender *s) {
  if (s->stopping)
    return;
  /* Equal jitter: half the backoff fixed, half random, so agents that lost
   * the same collector do not come back in lockstep. */
  unsigned cap =
      s->lost_ms != 0 && uv_now(&s->loop) - s->lost_ms < FAST_RETRY_MS
          ? BACKOFF_FAST_MS
          : BACKOFF_MAX_MS;
  if (s->backoff_ms > cap)
    s->backoff_ms = cap;
  unsigned half = s->backoff_ms / 2;
  unsigned delay = half + (unsigned)(next_random(s) % (half + 1));
  s->backoff_ms = s->backoff_ms * 2 > cap ? cap : s->backoff_ms * 2;
  uv_timer_start(&s->retry, on_retry, delay, 0);
}

static void on_conn_closed(uv_handle_t *h) {
  sender *s = h->data;
  set_state(s, CONN_IDLE);
  s->reading = false;
  s->rlen = 0;
  tw__conn_tls_free(s->tls);
  s->tls = NULL;
  s->tls_up = false;
  if (s->stopping)
    finish_stop(s);
  else
    schedule_retry(s);
}

static void disconnect(sender *s) {
  if (s->state == CONN_IDLE || s->state == CONN_CLOSING)
    return;
  if (s->state == CONN_READY)
    s->lost_ms = uv_now(&s->loop);
  s->hold_ms = 0; /* that collector's advice goes with it */
  set_state(s, CONN_CLOSING);
  uv_timer_stop(&s->retry);
  uv_close(&s->conn.handle, on_conn_closed);
}

static void on_handshake_timeout(uv_timer_t *t) {
  sender *s = t->data;
  refuse(s, TW_REFUSAL_UNREACHABLE,
         "no answer to the handshake within %u ms (%s)", HANDSHAKE_MS,
         s->agent->collector);
  disconnect(s);
}

static void on_write(uv_write_t *req, int status) {
  chunk_write *w = req->data;
  sender *s = w->owner;
  w->chunk->pinned = false;
  w->next = s->free_writes;
  s->free_writes = w;
  if (status < 0)
    disconnect(s);
  tw__resend_ack(&s->buffer, s->buffer.acked); /* it may be acked already */
}

static void on_control_write(uv_write_t *req, int status) {
  if (status < 0)
    disconnect(req->data);
}

/* ---- writes, plaintext or through the TLS session ---------------------- */

/* A write of ciphertext, which completes the caller's request (NULL for
 * the session's own output: handshake messages, alerts). */
typedef struct tls_write {
  uv_write_t req;
  uv_write_t *user;
  uv_write_cb cb;
  uint8_t *data;
  size_t len;
} tls_write;

static void on_tls_written(uv_write_t *req, int status) {
  tls_write *w = req->data;
  sender *s = w->req.handle->data;
  if (w->user != NULL) {
    s->tls_in_flight -= w->len;
    w->cb(w->user, status);
    send_pending(s); /* what waited for TLS_IN_FLIGHT */
  } else if (status < 0) {
    disconnect(s);
  }
  free(w->data);
  free(w);
}

/* Writes what the session has for the socket; user's cb runs when it is
 * written. 0, or -1 (nothing was started, cb is never called). */
static int tls_flush(sender *s, uv_write_t *user, uv_write_cb cb) {
  uint8_t *data;
  long n = tw__conn_tls_output(s->tls, &data);
  if (n < 0 || (n == 0 && user != NULL))
    return -1;
  if (n == 0)
    return 0;
  tls_write *w = malloc(sizeof(*w));
  if (w == NULL) {
    free(data);
    return -1;
  }
  w->user = user;
  w->cb = cb;
  w->data = data;
  w->len = (size_t)n;
  w->req.data = w;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
  if (uv_write(&w->req, &s->conn.stream, &b, 1, on_tls_written) != 0) {
    free(data);
    free(w);
    return -1;
  }
  if (user != NULL)
    s->tls_in_flight += w->len;
  return 0;
}

/* Writes n bytes to the collector, encrypted on a TLS connection (at
 * once: p may change after); cb(req, status) once they are written.
 * Returns 0, or nonzero when nothing was started (cb is never called). */
static int conn_write(sender *s, uv_write_t *req, const uint8_t *p, size_t n,
                      uv_write_cb cb) {
  if (s->tls == NULL) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    return uv_write(req, &s->conn.stream, &b, 1, cb);
  }
  if (tw__conn_tls_write(s->tls, p, n) != 0) {
    refuse(s, TW_REFUSAL_TLS, "%s", tw__conn_tls_error(s->tls));
    return -1;
  }
  return tls_flush(s, req, cb);
}

static chunk_write *take_write(sender *s) {
  chunk_write *w = s->free_writes;
  if (w != NULL)
    s->free_writes = w->next;
  else
    w = malloc(sizeof(*w));
  return w;
}

/* Whether the open last chunk c stays back: see the top of the file and
 * tw__pace_hold(). */
static bool held_back(const sender *s, const resend_chunk *c) {
  return tw__pace_hold(uv_now(&s->loop), c->opened_ms, s->next_tick_ms,
                       s->buffer.charged - s->buffer.nspare);
}

static void send_pending(sender *s) {
  if (s->state != CONN_READY)
    return;
  for (resend_chunk *c = s->buffer.first; c != NULL; c = c->next) {
    if (tw__resend_chunk_end(c) <= s->sent_upto || c->pinned)
      continue;
    if (c->frame.count == 0)
      break;
    if (c == s->buffer.last && !c->sealed && !s->stopping &&
        s->flush.active == s->flush.signalled && held_back(s, c))
      break; /* held back: see the top of the file */
    if (s->tls != NULL && !s->stopping && s->tls_in_flight >= TLS_IN_FLIGHT)
      break; /* on_tls_written() goes on */
    chunk_write *w = take_write(s);
    if (w == NULL)
      return; /* the next tick tries again */
    tw__resend_seal(c);
    w->owner = s;
    w->chunk = c;
    w->req.data = w;
    if (conn_write(s, &w->req, c->frame.data, c->frame.len, on_write) != 0) {
      w->next = s->free_writes;
      s->free_writes = w;
      disconnect(s);
      return;
    }
    c->pinned = true;
    s->sent_upto = tw__resend_chunk_end(c);
    atomic_fetch_add_explicit(&s->count.sent, c->frame.count,
                              memory_order_relaxed);
  }
  send_flush(s); /* once a flush's last events are written */
}

/*
 * WELCOME asked for events below what the collector had acked: its store
 * lost committed events of this instance (deleted, replaced, restored from
 * a backup). They are gone from here as well, and resuming after them
 * would be a sequence gap on every connection, forever. So the agent goes
 * on as a new instance: the next HELLO introduces it, its sequence starts
 * again at 1 with the text of every name sent so far, and then come the
 * events not yet acked, renumbered. Tasks that span the change arrive in
 * part; the collector counts their events as unmatched. If the memory cap
 * leaves no room for the names, the held events are dropped and counted
 * instead, and names go again before their next use.
 */
static void restart_instance(sender *s) {
  resend *r = &s->buffer;
  uint64_t old_acked = r->acked;
  tw__resend_ack(r, r->acked);
  tw__resend_cut(r);
  resend_chunk *held = tw__resend_detach(r);
  r->next_seq = 1;
  tw__agent_new_instance(s->agent);
  bool kept = tw__drain_resend_names(&s->drain);
  uint64_t first_held = r->next_seq;
  uint64_t n = tw__resend_attach(r, held);
  if (!kept) {
    atomic_fetch_add_explicit(&s->agent->dropped_unbound, n,
                              memory_order_relaxed);
    tw__resend_clear(r);
    tw__drain_forget_names(&s->drain);
    r->next_seq = 1;
  }
  /* A flush waits for the same events under their new numbers. */
  if (s->flush.target_set)
    s->flush.target = kept ? s->flush.target + first_held - old_acked : 0;
  r->acked = s->sent_upto = 1;
  check_flush(s);
  /* The new instance's agents row gets the counters too. */
  s->health_dropped = s->health_reconnects = UINT64_MAX;
  s->health_batches = s->health_tasks = UINT64_MAX;
  disconnect(s);
}

static void handle_welcome(sender *s, const proto_welcome *w) {
  resend *r = &s->buffer;
  if (w->next_seq > r->next_seq || w->next_seq == 0) {
    refuse(s, TW_REFUSAL_PROTOCOL,
           "collector welcomed sequence %llu; this instance is at %llu",
           (unsigned long long)w->next_seq, (unsigned long long)r->next_seq);
    disconnect(s);
    return;
  }
  if (w->next_seq < r->acked) {
    refuse(s, TW_REFUSAL_STORE_LOST,
           "the collector's store lost events it had acknowledged (it "
           "welcomed sequence %llu after acking %llu); going on as a new "
           "instance",
           (unsigned long long)w->next_seq, (unsigned long long)r->acked);
    restart_instance(s);
    return;
  }
  uv_timer_stop(&s->retry);
  uint64_t before = r->acked;
  tw__resend_ack(r, w->next_seq);
  atomic_fetch_add(&s->count.acked, r->acked - before);
  tw__resend_cut(r);
  if (w->version != r->version) {
    uint64_t lost = tw__resend_recode(r, w->version);
    atomic_fetch_add_explicit(&s->agent->dropped_unbound, lost,
                              memory_order_relaxed);
    if (s->flush.target_set && s->flush.target >= r->next_seq)
      s->flush.target = r->next_seq - 1;
  }
  s->sent_upto = r->acked;
  s->flush_frame_for = 0;
  set_state(s, CONN_READY);
  if (s->welcomed_once)
    atomic_fetch_add(&s->count.reconnects, 1);
  s->welcomed_once = true;
  s->backoff_ms = BACKOFF_MIN_MS;
  send_pending(s);
  check_flush(s);
}

static void handle_ack(sender *s, const proto_ack *a) {
  resend *r = &s->buffer;
  uint64_t before = r->acked;
  s->hold_ms = a->hold_ms;
  tw__resend_ack(r, a->next_seq);
  if (r->acked != before) {
    atomic_fetch_add(&s->count.acked, r->acked - before);
    check_flush(s);
    send_pending(s);
    if (s->drain.out_of_room && !s->stopping)
      uv_timer_start(&s->poll, on_poll, 0, 0); /* room again: drain now */
  }
  if (s->stopping && s->goodbye_sent && r->acked >= r->next_seq)
    finish_stop(s);
}

static bool handle_welcome_frame(sender *s, const proto_frame *f) {
  proto_welcome w;
  char why[LIMIT_REFUSAL_TEXT];
  int rc = tw__proto_decode_welcome(f->payload, f->payload_len, &w);
  if (rc == PROTO_E_VERSION) {
    tw__proto_version_refusal(why, sizeof(why), "collector", w.version,
                              w.version, "agent");
    refuse(s, TW_REFUSAL_VERSION, "%s", why);
    return false;
  }
  if (rc != 0) {
    refuse(s, TW_REFUSAL_PROTOCOL, "malformed WELCOME from the collector: %s",
           tw__proto_strerror(rc));
    return false;
  }
  handle_welcome(s, &w);
  return true;
}

/* CHALLENGE: the instance's key signs the collector's nonce. */
static bool handle_challenge(sender *s, const proto_frame *f) {
  proto_str nonce;
  uint8_t signature[PROTO_SIGNATURE_SIZE];
  int rc = tw__proto_decode_challenge(f->payload, f->payload_len,
                                      PROTO_PROOF_SINCE, &nonce);
  if (rc != 0 || nonce.len != PROTO_NONCE_SIZE) {
    refuse(s, TW_REFUSAL_PROTOCOL, "malformed CHALLENGE from the collector: %s",
           rc != 0 ? tw__proto_strerror(rc) : "nonce of the wrong size");
    return false;
  }
  if (tw__proof_sign(&s->key, (const uint8_t *)nonce.ptr, signature) != 0)
    return false; /* out of memory: the next connection tries again */
  proto_str text = {(const char *)signature, PROTO_SIGNATURE_SIZE};
  tw__proto_buf_reset(&s->proof);
  tw__proto_put_proof(&s->proof, PROTO_PROOF_SINCE, text);
  if (tw__proto_buf_failed(&s->proof))
    return false;
  s->proof_req.data = s;
  return conn_write(s, &s->proof_req, s->proof.data, s->proof.len,
                    on_control_write) == 0;
}

/* The tw_refusal of an ERROR frame's reason: the collector's words for a
 * token it refused and a version it does not speak (collector/server.c,
 * tw__proto_version_refusal()), else a refusal of its own. */
static int error_code(proto_str reason) {
  static const char auth[] = "authentication failed";
  const char *version = tw__proto_strerror(PROTO_E_VERSION);
  size_t vlen = strlen(version);
  if (reason.len >= sizeof(auth) - 1 &&
      memcmp(reason.ptr, auth, sizeof(auth) - 1) == 0)
    return TW_REFUSAL_AUTH;
  if (reason.len >= vlen && memcmp(reason.ptr, version, vlen) == 0)
    return TW_REFUSAL_VERSION;
  return TW_REFUSAL_REFUSED;
}

/* Handles one frame from the collector; false closes the connection. */
static bool handle_frame(sender *s, const proto_frame *f) {
  proto_str reason;
  int rc;
  if (f->type == PROTO_WELCOME && s->state == CONN_HANDSHAKE)
    return handle_welcome_frame(s, f);
  if (f->type == PROTO_CHALLENGE && s->state == CONN_HANDSHAKE)
    return handle_challenge(s, f);
  if (f->type == PROTO_ACK && s->state == CONN_READY) {
    proto_ack a;
    rc =
        tw__proto_decode_ack(f->payload, f->payload_len, s->buffer.version, &a);
    if (rc != 0) {
      refuse(s, TW_REFUSAL_PROTOCOL, "malformed ACK from the collector: %s",
             tw__proto_strerror(rc));
      return false;
    }
    handle_ack(s, &a);
    return true;
  }
  if (f->type == PROTO_ERROR) {
    if (tw__proto_decode_error(f->payload, f->payload_len, &reason) == 0)
      refuse(s, error_code(reason), "%.*s", (int)reason.len, reason.ptr);
    else
      refuse(s, TW_REFUSAL_PROTOCOL, "malformed ERROR from the collector");
    return false;
  }
  refuse(s, TW_REFUSAL_PROTOCOL,
         "unexpected message type %u from the collector", (unsigned)f->type);
  return false;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  sender *s = h->data;
  (void)hint;
  if (s->tls != NULL)
    *buf = uv_buf_init((char *)s->cipher, sizeof(s->cipher));
  else
    *buf = uv_buf_init((char *)s->rbuf + s->rlen,
                       (unsigned)(sizeof(s->rbuf) - s->rlen));
}

static bool process_frames(sender *s);
static void send_hello(sender *s);
static void sync_reading(sender *s);

/* The session failed: its reason is the agent's last refusal (a clean
 * close, as a collector that stops, has none). */
static void tls_failed(sender *s) {
  const char *why = tw__conn_tls_error(s->tls);
  if (*why != '\0')
    refuse(s, TW_REFUSAL_TLS, "%s%s", s->tls_up ? "" : "handshake: ", why);
  disconnect(s);
}

/* Ciphertext from the socket: the handshake, then plaintext frames. */
static void tls_read(sender *s, size_t n) {
  if (tw__conn_tls_feed(s->tls, s->cipher, n) != 0) {
    disconnect(s);
    return;
  }
  if (!s->tls_up) {
    int rc = tw__conn_tls_handshake(s->tls);
    if (tls_flush(s, NULL, NULL) != 0 || rc < 0) {
      tls_failed(s);
      return;
    }
    if (rc == 0)
      return;
    s->tls_up = true;
    send_hello(s);
  }
  while (s->state == CONN_HANDSHAKE || s->state == CONN_READY) {
    int got =
        tw__conn_tls_read(s->tls, s->rbuf + s->rlen, sizeof(s->rbuf) - s->rlen);
    if (tls_flush(s, NULL, NULL) != 0 || got < 0) {
      tls_failed(s);
      return;
    }
    if (got == 0)
      return;
    s->rlen += (size_t)got;
    if (!process_frames(s))
      return;
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  sender *s = stream->data;
  (void)buf;
  if (nread < 0) {
    if (s->tls != NULL && !s->tls_up)
      refuse(s, TW_REFUSAL_TLS,
             "handshake: the collector closed the connection (is its "
             "listener tls://?)");
    disconnect(s);
    return;
  }
  if (s->tls != NULL) {
    tls_read(s, (size_t)nread);
  } else {
    s->rlen += (size_t)nread;
    process_frames(s);
  }
  sync_reading(s);
}

/* Handles every whole frame in the receive buffer and keeps the rest.
 * False when the connection is closing. */
static bool process_frames(sender *s) {
  size_t at = 0;
  proto_frame f;
  int rc;
  while ((rc = tw__proto_frame_next(s->rbuf + at, s->rlen - at,
                                    AGENT_READ_BYTES - PROTO_HEADER_SIZE,
                                    &f)) == 0) {
    at += f.frame_len;
    if (!handle_frame(s, &f) || s->state == CONN_CLOSING ||
        s->state == CONN_IDLE) {
      disconnect(s);
      return false;
    }
  }
  if (rc < 0) {
    refuse(s, TW_REFUSAL_PROTOCOL, "collector sent a bad frame: %s",
           tw__proto_strerror(rc));
    disconnect(s);
    return false;
  }
  memmove(s->rbuf, s->rbuf + at, s->rlen - at);
  s->rlen -= at;
  return true;
}

/*
 * Once welcomed, the sender reads what the collector says as it arrives
 * only while something waits for it: a flush or the goodbye for their
 * ack, a full buffer for room. Otherwise the socket is read without
 * waiting when the timer wakes the sender anyway (poll_socket()): an ack
 * read as it arrives is a wakeup of its own, and a wakeup costs the sender
 * more CPU than the thousands of events a drain takes (bench/agent_overhead
 * prints what one costs on the machine: thread_wakeup_cpu_us). An ack, a
 * refusal or the collector closing is then seen at most one drain late.
 */
static bool answer_awaited(const sender *s) {
  return s->state != CONN_READY || s->stopping ||
         s->flush.active != s->flush.signalled || s->drain.out_of_room;
}

static void sync_reading(sender *s) {
  if (s->state != CONN_READY && s->state != CONN_HANDSHAKE)
    return;
  bool want = answer_awaited(s);
  if (want == s->reading)
    return;
  int rc = want ? uv_read_start(&s->conn.stream, on_alloc, on_read)
                : uv_read_stop(&s->conn.stream);
  if (rc != 0) {
    disconnect(s);
    return;
  }
  s->reading = want;
}

/* What the collector sent since the last look, read without waiting,
 * through on_read() as libuv would have passed it. A read that fills
 * less than the buffer took all there was: reading again would only
 * return EAGAIN, a system call at each tick that brought an ack (about
 * 30 a second while records come). */
static void poll_socket(sender *s) {
  uv_os_fd_t fd;
  if (s->state != CONN_READY || s->reading ||
      uv_fileno(&s->conn.handle, &fd) != 0)
    return;
  while (s->state == CONN_READY && !s->reading) {
    uv_buf_t b;
    on_alloc(&s->conn.handle, 0, &b);
    if (b.len == 0) {
      on_read(&s->conn.stream, UV_ENOBUFS, &b);
      return;
    }
    ssize_t n = read(fd, b.base, b.len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    on_read(&s->conn.stream, n > 0 ? n : n == 0 ? UV_EOF : -errno, &b);
    if (n <= 0 || (size_t)n < b.len)
      return;
  }
}

static void send_hello(sender *s) {
  tw_agent *a = s->agent;
  proto_hello h = {0};
  h.version = PROTO_VERSION;
  h.version_min = PROTO_VERSION_MIN;
  memcpy(h.instance, a->instance, sizeof(h.instance));
  h.pid = (uint32_t)getpid();
  h.started_at_ns = a->started_at_ns;
  h.service.ptr = a->service;
  h.service.len = (uint32_t)strlen(a->service);
  h.host.ptr = a->host;
  h.host.len = (uint32_t)strlen(a->host);
  h.token.ptr = a->token;
  h.token.len = (uint32_t)strlen(a->token);
  /* Without a key (no randomness, out of memory) the HELLO is one of
   * version 1's: a collector that knows the instance's key refuses it,
   * and the next connection tries again. */
  if (tw__proof_key(&s->key, h.instance) == 0) {
    h.key.ptr = (const char *)s->key.public_key;
    h.key.len = PROTO_KEY_SIZE;
  }
  tw__proto_buf_reset(&s->hello);
  tw__proto_put_hello(&s->hello, &h);
  if (tw__proto_buf_failed(&s->hello)) {
    disconnect(s);
    return;
  }
  s->hello_req.data = s;
  if (conn_write(s, &s->hello_req, s->hello.data, s->hello.len,
                 on_control_write) != 0)
    disconnect(s);
}

static void on_connect(uv_connect_t *req, int status) {
  sender *s = req->data;
  if (status < 0 && !s->stopping)
    refuse(s, TW_REFUSAL_UNREACHABLE, "%s (%s)", uv_strerror(status),
           s->agent->collector);
  if (status < 0 || s->stopping) {
    disconnect(s);
    return;
  }
  set_state(s, CONN_HANDSHAKE);
  s->rlen = 0;
  if (s->where.scheme == URL_TLS &&
      (s->tls = tw__conn_tls_new(s->tls_ctx, s->where.host)) == NULL) {
    disconnect(s);
    return;
  }
  if (uv_read_start(&s->conn.stream, on_alloc, on_read) != 0) {
    disconnect(s);
    return;
  }
  s->reading = true;
  /* The timeout covers the TLS handshake too; HELLO follows it. */
  if (s->tls == NULL)
    send_hello(s);
  else if (tw__conn_tls_handshake(s->tls) < 0 || tls_flush(s, NULL, NULL) != 0)
    tls_failed(s);
  if (s->state == CONN_HANDSHAKE)
    uv_timer_start(&s->retry, on_handshake_timeout, HANDSHAKE_MS, 0);
}

/* The TLS context, made before the first tls:// connection; its files
 * are read again after a failure. False (the reason kept as the last
 * refusal) when they cannot be. */
static bool tls_context_ready(sender *s) {
  char err[LIMIT_REFUSAL_TEXT];
  tw_agent *a = s->agent;
  if (s->where.scheme != URL_TLS || s->tls_ctx != NULL)
    return true;
  s->tls_ctx = tw__conn_tls_context(a->tls_ca, a->tls_cert, a->tls_key, err,
                                    sizeof(err));
  if (s->tls_ctx == NULL)
    refuse(s, TW_REFUSAL_TLS, "%s", err);
  return s->tls_ctx != NULL;
}

/* Resolves the TCP address. Names are looked up here, on the sender
 * thread, so the lookup never uses the libuv thread pool the host's own
 * tasks run on. */
static int resolve(const url *u, struct sockaddr_storage *addr) {
  struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
  if (uv_ip4_addr(u->host, u->port, v4) == 0 ||
      uv_ip6_addr(u->host, u->port, v6) == 0)
    return 0;
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(u->host, NULL, &hints, &res) != 0 || res == NULL)
    return -1;
  memcpy(addr, res->ai_addr, res->ai_addrlen);
  if (res->ai_family == AF_INET)
    v4->sin_port = htons((uint16_t)u->port);
  else
    v6->sin6_port = htons((uint16_t)u->port);
  freeaddrinfo(res);
  return 0;
}

static void connect_start(sender *s) {
  struct sockaddr_storage addr;
  int rc;
  if (s->stopping || s->state != CONN_IDLE)
    return;
  s->connect_req.data = s;
  if (s->where.scheme == URL_UNIX) {
    uv_pipe_init(&s->loop, &s->conn.pipe, 0);
    s->conn.handle.data = s;
    set_state(s, CONN_CONNECTING);
    uv_pipe_connect(&s->connect_req, &s->conn.pipe, s->where.path, on_connect);
    return;
  }
  if (!tls_context_ready(s)) {
    schedule_retry(s);
    return;
  }
  if (resolve(&s->where, &addr) != 0) {
    refuse(s, TW_REFUSAL_UNREACHABLE, "cannot resolve host %s (%s)",
           s->where.host, s->agent->collector);
    schedule_retry(s);
    return;
  }
  uv_tcp_init(&s->loop, &s->conn.tcp);
  s->conn.handle.data = s;
  uv_tcp_nodelay(&s->conn.tcp, 1);
  set_state(s, CONN_CONNECTING);
  rc = uv_tcp_connect(&s->connect_req, &s->conn.tcp,
                      (const struct sockaddr *)&addr, on_connect);
  if (rc != 0) {
    refuse(s, TW_REFUSAL_UNREACHABLE, "%s (%s)", uv_strerror(rc),
           s->agent->collector);
    disconnect(s);
  }
}

/* ---- flush, stop, the poll timer ----------------------------------------- */

static void on_flush_write(uv_write_t *req, int status) {
  sender *s = req->data;
  s->flush_writing = false;
  if (status < 0)
    disconnect(s);
  else
    send_flush(s); /* a flush requested meanwhile */
}

/*
 * FLUSH (PROTO_FLUSH_SINCE on), once per flush and connection, when every
 * event the flush waits for is written: the collector then commits them
 * as it would a full batch, not after the longer wait of a batch of few
 * events (collector/batch.h), so tw_agent_flush() returns about as soon
 * at 10 events a second as at 100,000.
 */
static void send_flush(sender *s) {
  if (s->state != CONN_READY || s->buffer.version < PROTO_FLUSH_SINCE ||
      s->flush.active == s->flush.signalled || !s->flush.target_set ||
      s->flush.target < s->buffer.acked || s->sent_upto <= s->flush.target ||
      s->flush_frame_for == s->flush.active || s->flush_writing)
    return;
  tw__proto_buf_reset(&s->flush_frame);
  tw__proto_put_flush(&s->flush_frame, s->buffer.version, s->flush.target);
  if (tw__proto_buf_failed(&s->flush_frame))
    return;
  s->flush_req.data = s;
  if (conn_write(s, &s->flush_req, s->flush_frame.data, s->flush_frame.len,
                 on_flush_write) != 0) {
    disconnect(s);
    return;
  }
  s->flush_writing = true;
  s->flush_frame_for = s->flush.active;
}

static void check_flush(sender *s) {
  if (s->flush.active == s->flush.signalled)
    return;
  if (!s->flush.target_set && tw__drain_past_marks(&s->drain)) {
    s->flush.target = s->buffer.next_seq - 1;
    s->flush.target_set = true;
  }
  if (s->flush.target_set && s->flush.target < s->buffer.acked) {
    pthread_mutex_lock(&s->shared.mu);
    s->shared.flush_done = s->flush.active;
    pthread_cond_broadcast(&s->shared.cv);
    pthread_mutex_unlock(&s->shared.mu);
    s->flush.signalled = s->flush.active;
  }
  send_flush(s);
}

static void take_requests(sender *s, bool *stop, unsigned *goodbye_ms) {
  pthread_mutex_lock(&s->shared.mu);
  uint64_t req = s->shared.flush_req;
  *stop = s->shared.stop;
  *goodbye_ms = s->shared.goodbye_ms;
  pthread_mutex_unlock(&s->shared.mu);
  if (req == s->flush.active)
    return;
  s->flush.active = req;
  s->flush.target_set = false;
  tw__drain_mark(&s->drain);
}

static void close_all(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void finish_stop(sender *s) {
  if (s->state != CONN_IDLE)
    set_state(s, CONN_CLOSING);
  uv_walk(&s->loop, close_all, NULL);
}

static void on_goodbye_deadline(uv_timer_t *t) {
  finish_stop(t->data);
}

/*
 * The last HEALTH, when the resend buffer has no room for it: the buffer
 * is full of unacked events (a collector that stopped acking), and the
 * chunk reserved for HEALTH went to an earlier one. It is the event that
 * accounts for everything dropped, so it goes in a frame of its own,
 * outside the buffer, after the buffer's frames and before GOODBYE.
 */
static bool send_final_health(sender *s) {
  proto_event ev;
  if (!health_event(s, &ev))
    return true;
  tw__proto_buf_reset(&s->final_health);
  tw__proto_events_open(&s->final_health, s->buffer.version,
                        s->buffer.next_seq);
  tw__proto_put_event(&s->final_health, &ev);
  tw__proto_events_close(&s->final_health);
  if (tw__proto_buf_failed(&s->final_health))
    return false;
  s->health_req.data = s;
  if (conn_write(s, &s->health_req, s->final_health.data, s->final_health.len,
                 on_control_write) != 0)
    return false;
  s->buffer.next_seq++;
  atomic_fetch_add_explicit(&s->count.sent, 1, memory_order_relaxed);
  health_reported(s, &ev);
  return true;
}

static void begin_stop(sender *s, unsigned goodbye_ms) {
  s->stopping = true;
  uv_timer_stop(&s->poll);
  uv_timer_stop(&s->retry);
  tw__drain_run(&s->drain);
  /* What the rings still hold (the resend buffer was full) can never be
   * sent: it is counted as dropped, so the last HEALTH reports it. */
  tw__drain_discard(&s->drain);
  bool health_queued = maybe_health(s);
  if (s->state != CONN_READY) {
    finish_stop(s);
    return;
  }
  send_pending(s);
  if (!health_queued && !send_final_health(s)) {
    finish_stop(s);
    return;
  }
  tw__proto_buf_reset(&s->goodbye);
  tw__proto_put_goodbye(&s->goodbye, s->buffer.version, s->buffer.next_seq - 1);
  s->goodbye_req.data = s;
  if (tw__proto_buf_failed(&s->goodbye) ||
      conn_write(s, &s->goodbye_req, s->goodbye.data, s->goodbye.len,
                 on_control_write)) {
    finish_stop(s);
    return;
  }
  s->goodbye_sent = true;
  uv_timer_start(&s->retry, on_goodbye_deadline, goodbye_ms, 0);
}

static void tick(sender *s) {
  bool stop;
  unsigned goodbye_ms;
  if (s->stopping)
    return;
  take_requests(s, &stop, &goodbye_ms);
  if (stop) {
    begin_stop(s, goodbye_ms);
    sync_reading(s);
    return;
  }
  uint64_t now = uv_now(&s->loop);
  s->buffer.now_ms = now;
  poll_socket(s);
  uint64_t taken = tw__drain_run(&s->drain);
  /* A full resend buffer, or any ring past the pressure mark, refuses new
   * batches (record.c): the later events of admitted tasks may land in
   * another thread's ring (agent_internal.h, RING_ADMIT_PRESSURE). */
  int pressure = s->drain.out_of_room ||
                 s->drain.peak_fill * RING_ADMIT_DEN > RING_ADMIT_PRESSURE;
  if (atomic_load_explicit(&s->agent->admit_pressure, memory_order_relaxed) !=
      pressure)
    atomic_store_explicit(&s->agent->admit_pressure, pressure,
                          memory_order_relaxed);
  maybe_health(s);
  unsigned wait =
      s->drain.out_of_room
          ? FULL_POLL_MS
          : tw__pace_next(&s->pace, now, taken, s->drain.peak_fill, s->hold_ms);
  s->next_tick_ms = now + wait;
  send_pending(s);
  check_flush(s);
  /* Left as it was while a drain runs: a thread that wakes the sender
   * then only has it drain once more. */
  atomic_store_explicit(&s->agent->sender_asleep, wait >= PACE_ASLEEP_MS,
                        memory_order_relaxed);
  uv_timer_start(&s->poll, on_poll, wait, 0);
  sync_reading(s);
}

static void on_poll(uv_timer_t *t) {
  tick(t->data);
}
static void on_wake(uv_async_t *a) {
  tick(a->data);
}

static void *sender_main(void *arg) {
  sender *s = arg;
  /* What the host's operators see in top -H, ps -L and perf: the one
   * thread the agent adds (at most 15 characters). */
  pthread_setname_np(pthread_self(), "taskwatch-send");
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
  return NULL;
}

/* ---- life cycle ---------------------------------------------------------- */

/* The sender's memory: everything but its loop, its thread and its
 * synchronisation, which are for the caller to have ended first. */
static void sender_free(sender *s) {
  tw__resend_fini(&s->buffer);
  tw__drain_fini(&s->drain);
  tw__proto_buf_fini(&s->hello);
  tw__proto_buf_fini(&s->proof);
  tw__proof_forget(&s->key);
  tw__conn_tls_free(s->tls);
  SSL_CTX_free(s->tls_ctx);
  tw__proto_buf_fini(&s->goodbye);
  tw__proto_buf_fini(&s->final_health);
  tw__proto_buf_fini(&s->flush_frame);
  while (s->free_writes != NULL) {
    chunk_write *w = s->free_writes;
    s->free_writes = w->next;
    free(w);
  }
  free(s);
}

/* Everything that needs no loop. */
static int sender_init(sender *s, tw_agent *agent) {
  s->agent = agent;
  tw__resend_init(&s->buffer, agent);
  s->sent_upto = 1;
  s->backoff_ms = BACKOFF_MIN_MS;
  memcpy(&s->rng, agent->instance, sizeof(s->rng));
  s->rng |= 1;
  tw__proto_buf_init(&s->hello);
  tw__proto_buf_init(&s->proof);
  tw__proto_buf_init(&s->goodbye);
  tw__proto_buf_init(&s->final_health);
  tw__proto_buf_init(&s->flush_frame);
  /* Every frame a collector sends fits the receive buffer whole. */
  assert(tw__proto_frame_max(PROTO_ERROR, PROTO_VERSION) <= AGENT_READ_BYTES &&
         tw__proto_frame_max(PROTO_WELCOME, PROTO_VERSION) <=
             AGENT_READ_BYTES &&
         tw__proto_frame_max(PROTO_ACK, PROTO_VERSION) <= AGENT_READ_BYTES);
  if (tw__url_parse(agent->collector, URL_TLS_OK, &s->where) != 0)
    return TW_EURL;
  return tw__drain_init(&s->drain, agent, &s->buffer);
}

/* The loop and its handles; on failure nothing of them is left. */
static int loop_start(sender *s) {
  if (uv_loop_init(&s->loop) != 0)
    return TW_EUV;
  if (uv_async_init(&s->loop, &s->wake, on_wake) != 0) {
    uv_loop_close(&s->loop);
    return TW_EUV;
  }
  uv_timer_init(&s->loop, &s->poll);
  uv_timer_init(&s->loop, &s->retry);
  s->wake.data = s->poll.data = s->retry.data = s;
  uv_timer_start(&s->poll, on_poll, 0, 0);
  uv_timer_start(&s->retry, on_retry, 0, 0);
  return 0;
}

/* Closes every handle and runs the loop until they are, then closes it. */
static void loop_stop(sender *s) {
  uv_walk(&s->loop, close_all, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
}

int tw__sender_start(tw_agent *agent) {
  sender *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return TW_ENOMEM;
  int rc = sender_init(s, agent);
  if (rc == 0)
    rc = loop_start(s);
  if (rc != 0) {
    sender_free(s);
    return rc;
  }
  pthread_mutex_init(&s->shared.mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->shared.cv, &ca);
  pthread_condattr_destroy(&ca);
  /* The thread starts with every signal blocked: the host's signals belong
   * to the host's threads, and a SIGPIPE from a dead collector connection
   * stays pending here instead of killing the process. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&s->thread, NULL, sender_main, s);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    loop_stop(s);
    pthread_mutex_destroy(&s->shared.mu);
    pthread_cond_destroy(&s->shared.cv);
    sender_free(s);
    return TW_ENOMEM;
  }
  agent->sender = s;
  return 0;
}

int tw__sender_flush(tw_agent *agent, unsigned timeout_ms) {
  sender *s = agent->sender;
  if (s == NULL) /* a forked child whose sender could not start */
    return TW_ECLOSED;
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += timeout_ms / 1000;
  deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&s->shared.mu);
  uint64_t mine = ++s->shared.flush_req;
  pthread_mutex_unlock(&s->shared.mu);
  uv_async_send(&s->wake);
  int rc = 0;
  pthread_mutex_lock(&s->shared.mu);
  while (s->shared.flush_done < mine && rc == 0)
    if (pthread_cond_timedwait(&s->shared.cv, &s->shared.mu, &deadline) ==
        ETIMEDOUT)
      rc = TW_ETIMEDOUT;
  if (s->shared.flush_done >= mine)
    rc = 0;
  pthread_mutex_unlock(&s->shared.mu);
  return rc;
}

void tw__sender_stop(tw_agent *agent, unsigned goodbye_ms) {
  sender *s = agent->sender;
  if (s == NULL)
    return;
  pthread_mutex_lock(&s->shared.mu);
  s->shared.stop = true;
  s->shared.goodbye_ms = goodbye_ms;
  pthread_mutex_unlock(&s->shared.mu);
  uv_async_send(&s->wake);
  pthread_join(s->thread, NULL); /* the thread closed and ended the loop */
  pthread_mutex_destroy(&s->shared.mu);
  pthread_cond_destroy(&s->shared.cv);
  sender_free(s);
  agent->sender = NULL;
}

/*
 * In a forked child the parent's sender thread does not exist, and fork()
 * may have copied its loop in the middle of an update (the thread could
 * have been anywhere in uv_run), so the child neither runs nor walks that
 * loop. It closes, through libuv's public API, the two descriptors other
 * processes would notice: the collector connection (a copy here would keep
 * the parent's connection open after the parent closed it) and the epoll
 * instance. The loop's other descriptors (its wakeup eventfd; io_uring
 * rings on newer libuv) are beyond the public API's reach and are not
 * guessed at: libuv opens them close-on-exec, so a child that execs sheds
 * them, and one that does not keeps them, with the loop's few hundred
 * bytes of heap, rather than risk closing a descriptor that is not the
 * loop's. The sender's own memory goes the way tw__sender_stop() frees it.
 */
void tw__sender_fork_child(tw_agent *agent) {
  sender *old = agent->sender;
  agent->sender = NULL;
  if (old != NULL) {
    uv_os_fd_t fd;
    if (old->state != CONN_IDLE && uv_fileno(&old->conn.handle, &fd) == 0)
      close(fd);
    close(uv_backend_fd(&old->loop));
    sender_free(old);
  }
  tw__sender_start(agent);
}

void tw__sender_nudge(tw_agent *agent) {
  sender *s = agent->sender;
  if (s != NULL)
    uv_async_send(&s->wake);
}

void tw__sender_stats(tw_agent *agent, tw_agent_stats *out) {
  sender *s = agent->sender;
  if (s == NULL)
    return;
  out->sent = atomic_load_explicit(&s->count.sent, memory_order_relaxed);
  out->acked = atomic_load_explicit(&s->count.acked, memory_order_relaxed);
  out->reconnects =
      atomic_load_explicit(&s->count.reconnects, memory_order_relaxed);
  out->conn_state = (uint64_t)atomic_load_explicit(&s->count.conn_state,
                                                   memory_order_relaxed);
  pthread_mutex_lock(&s->shared.mu);
  out->refusal = (uint64_t)s->shared.refusal_code;
  pthread_mutex_unlock(&s->shared.mu);
}

int tw__sender_refusal(tw_agent *agent, char *buf, size_t size) {
  sender *s = agent->sender;
  int code = 0;
  if (size > 0)
    buf[0] = '\0';
  if (s == NULL)
    return 0;
  pthread_mutex_lock(&s->shared.mu);
  code = s->shared.refusal_code;
  if (size > 0)
    snprintf(buf, size, "%s", s->shared.refusal);
  pthread_mutex_unlock(&s->shared.mu);
  return code;
}
