/*
 * sender - the agent's sender thread: its own libuv loop drains the
 * per-thread rings into EVENTS frames, streams them to the collector, keeps
 * every sent event in a resend buffer until the collector acks it after
 * COMMIT, and reconnects with exponential backoff and jitter.
 *
 * The resend buffer is a list of chunks, each one pre-encoded EVENTS frame
 * of at most CHUNK_BYTES, oldest first; the last chunk is open for appending
 * until it is sent. Sequence numbers are assigned as events are encoded,
 * starting at 1 and without gaps, so a chunk is a contiguous range. On
 * WELCOME the chunks below the collector's next_seq are freed, the one that
 * straddles it is cut, and the rest are sent again in order. Chunks are
 * charged to the agent's budget; when a chunk cannot be had, the sender
 * stops draining, the rings fill, and the recording threads drop and count.
 *
 * While sent events await their ack, the last chunk is held back until it
 * is full, the ack comes, or it is HOLD_MS old. A chunk costs CHUNK_BYTES of
 * the budget however few events it holds, so sending the last chunk on
 * every poll tick would fill the buffer with nearly empty chunks within a
 * few dozen ticks of a slow ack (a collector busy committing), and the
 * rings would then drop; held, each chunk spans at least HOLD_MS, and the
 * buffer rides out a stall of seconds at any rate it can hold.
 *
 * Producers never wake the sender (that would be a system call on the
 * recording path): it polls the rings on a timer that speeds up while there
 * is traffic and slows down when idle. flush and stop requests come from
 * other threads through a mutex, a condition variable and a uv_async.
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "agent_internal.h"

#define CHUNK_BYTES (64u * 1024u)
#define EVENTS_HEADER 18u /* frame header, first_seq, count */
#define READ_BYTES 8192u
#define POLL_MIN_MS 1u
#define BUSY_RECORDS 512u
#define POLL_MAX_MS 16u
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 30000u
#define HANDSHAKE_MS 5000u
#define HOLD_MS 50u
#define SCRATCH_BYTES (256u + 4096u + 32768u)

enum conn_state {
  CONN_IDLE,
  CONN_CONNECTING,
  CONN_HANDSHAKE,
  CONN_READY,
  CONN_CLOSING
};

typedef struct chunk {
  struct chunk *next;
  struct sender *owner;
  uint64_t first_seq;
  uint64_t opened_ms; /* the sender loop's time when it was opened */
  uint32_t count;
  bool sealed;
  bool writing;
  uv_write_t req;
  proto_buf buf;
} chunk;

#define CHUNK_COST (sizeof(chunk) + CHUNK_BYTES)
#define SPARE_CHUNKS 2u

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
  uv_write_t goodbye_req;
  uv_write_t health_req;
  proto_buf hello;
  proto_buf goodbye;
  proto_buf final_health; /* see send_final_health() */
  int state;
  /* Where to connect. */
  bool is_unix;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char host[256];
  int port;
  uint8_t rbuf[READ_BYTES];
  size_t rlen;
  /* The resend buffer, oldest first. */
  chunk *first;
  chunk *last;
  chunk *spare; /* acked chunks kept for reuse */
  unsigned nspare;
  uint64_t next_seq;  /* the next event's sequence number */
  uint64_t acked;     /* everything below is committed by the collector */
  uint64_t sent_upto; /* everything below is written on this connection */
  unsigned backoff_ms;
  unsigned poll_ms;
  bool welcomed_once;
  clock_map clock;  /* record ticks to monotonic ns */
  uint8_t *emitted; /* per string id: STRING already sent */
  struct drain_cursor *cursors;
  size_t ncursors_cap;
  char *scratch;
  uint64_t health_dropped;
  uint64_t health_reconnects;
  uint64_t rng;
  /* Flush bookkeeping, sender-private. */
  uint64_t flush_active;
  uint64_t flush_signalled;
  uint64_t flush_target;
  bool flush_target_set;
  bool stopping;
  bool goodbye_sent;
  /* Shared with other threads. */
  _Atomic uint64_t sent;
  _Atomic uint64_t acked_events;
  _Atomic uint64_t reconnects;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t flush_req;  /* guarded by mu */
  uint64_t flush_done; /* guarded by mu */
  bool stop_req;       /* guarded by mu */
  unsigned goodbye_ms; /* guarded by mu */
} sender;

static void connect_start(sender *s);
static void disconnect(sender *s);
static void send_pending(sender *s);
static void check_flush(sender *s);
static void on_poll(uv_timer_t *t);

/* ---- URLs ---------------------------------------------------------------- */

static int parse_url(const char *url, sender *s) {
  if (strncmp(url, "unix:", 5) == 0) {
    const char *p = url + 5;
    size_t n = strlen(p);
    if (n == 0 || p[0] != '/' || n >= sizeof(s->path))
      return -1;
    s->is_unix = true;
    memcpy(s->path, p, n + 1);
    return 0;
  }
  if (strncmp(url, "tcp://", 6) != 0)
    return -1;
  const char *h = url + 6, *colon;
  size_t hlen;
  if (*h == '[') {
    const char *close = strchr(h, ']');
    if (close == NULL || close[1] != ':')
      return -1;
    h++;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(h, ':');
    if (colon == NULL)
      return -1;
    hlen = (size_t)(colon - h);
  }
  if (hlen == 0 || hlen >= sizeof(s->host))
    return -1;
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 ||
      port < 1 || port > 65535)
    return -1;
  memcpy(s->host, h, hlen);
  s->host[hlen] = '\0';
  s->port = (int)port;
  s->is_unix = false;
  return 0;
}

int sender_check_url(const char *url) {
  sender probe;
  return parse_url(url, &probe);
}

/* ---- the resend buffer --------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* Events may fill the budget up to one chunk short of the cap; that last
 * chunk is kept for HEALTH, which must get through exactly when the buffer
 * is full, since that is when it has drops to report (and should an
 * earlier HEALTH have taken it, the one at shutdown goes in a frame of its
 * own: send_final_health()). Acked chunks are
 * kept as spares (still charged to the budget) rather than freed, so a
 * sender in steady state does not call the allocator at all. */
static chunk *chunk_new(sender *s, bool health) {
  size_t held = atomic_load_explicit(&s->agent->reserved, memory_order_relaxed);
  size_t room = held > s->agent->cap ? 0 : s->agent->cap - held;
  room += s->nspare * CHUNK_COST;
  if (room < (health ? 1u : 2u) * CHUNK_COST)
    return NULL;
  chunk *c = s->spare;
  if (c != NULL) {
    s->spare = c->next;
    s->nspare--;
    uint8_t *data = c->buf.data;
    memset(c, 0, sizeof(*c));
    c->buf.data = data;
  } else {
    if (agent_reserve(s->agent, CHUNK_COST) != 0)
      return NULL;
    c = calloc(1, sizeof(*c));
    uint8_t *data = malloc(CHUNK_BYTES);
    if (c == NULL || data == NULL) {
      free(c);
      free(data);
      agent_release(s->agent, CHUNK_COST);
      return NULL;
    }
    c->buf.data = data;
  }
  c->owner = s;
  c->buf.cap = CHUNK_BYTES;
  c->first_seq = s->next_seq;
  c->opened_ms = uv_now(&s->loop);
  proto_events_open(&c->buf, c->first_seq);
  if (s->last != NULL)
    s->last->next = c;
  else
    s->first = c;
  s->last = c;
  return c;
}

static void chunk_destroy(sender *s, chunk *c) {
  free(c->buf.data);
  free(c);
  agent_release(s->agent, CHUNK_COST);
}

static void chunk_free(sender *s, chunk *c) {
  if (s->nspare < SPARE_CHUNKS) {
    c->next = s->spare;
    s->spare = c;
    s->nspare++;
    return;
  }
  chunk_destroy(s, c);
}

static void free_spares(sender *s) {
  while (s->spare != NULL) {
    chunk *c = s->spare;
    s->spare = c->next;
    chunk_destroy(s, c);
  }
  s->nspare = 0;
}

static void chunk_seal(chunk *c) {
  if (!c->sealed) {
    proto_events_close(&c->buf);
    c->sealed = true;
  }
}

/* Drops the events of c below seq, keeping the frame well formed. */
static void chunk_cut(chunk *c, uint64_t seq) {
  proto_events it;
  proto_event ev;
  chunk_seal(c);
  uint8_t *payload = c->buf.data + PROTO_HEADER_SIZE;
  if (proto_events_begin(&it, payload, c->buf.len - PROTO_HEADER_SIZE) != 0)
    return;
  for (uint64_t i = c->first_seq; i < seq; i++)
    if (proto_events_next(&it, &ev) != 0)
      return;
  size_t from = (size_t)(it.p - c->buf.data);
  memmove(c->buf.data + EVENTS_HEADER, c->buf.data + from, c->buf.len - from);
  c->buf.len -= from - EVENTS_HEADER;
  c->count -= (uint32_t)(seq - c->first_seq);
  c->first_seq = seq;
  put_le(c->buf.data, c->buf.len - 4, 4);
  put_le(c->buf.data + PROTO_HEADER_SIZE, c->first_seq, 8);
  put_le(c->buf.data + PROTO_HEADER_SIZE + 8, c->count, 4);
}

static void free_acked(sender *s) {
  while (s->first != NULL && s->first->sealed && !s->first->writing &&
         s->first->first_seq + s->first->count <= s->acked) {
    chunk *c = s->first;
    s->first = c->next;
    if (s->first == NULL)
      s->last = NULL;
    chunk_free(s, c);
  }
}

static uint8_t *le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
  return p + 8;
}

static uint8_t *le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
  return p + 4;
}

/*
 * The sender's own encoder for the fixed-size events, which are nearly all
 * of the stream: straight stores into the chunk, whose room was checked,
 * instead of proto_put_event()'s checked byte-by-byte appends (a third of
 * the sender's time). The layouts are docs/protocol.md's EVENTS table;
 * every test that decodes what the agent sends with the strict decoder
 * checks them. Returns the bytes written, 0 for a kind it does not do.
 */
static size_t encode_fixed(uint8_t *p, const proto_event *ev) {
  uint8_t *q = p;
  *q++ = ev->kind;
  q = le64(q, (uint64_t)ev->time_ns);
  switch (ev->kind) {
  case PROTO_EV_BATCH:
    q = le32(le64(q, ev->batch), ev->string);
    break;
  case PROTO_EV_ENQUEUE:
    q = le32(le32(le64(le64(q, ev->task), ev->batch), ev->position),
             ev->string);
    *q++ = ev->mode;
    q = le64(q, ev->other);
    break;
  case PROTO_EV_START:
  case PROTO_EV_SKIP:
    q = le64(le64(q, ev->task), ev->other);
    break;
  case PROTO_EV_FINISH:
    q = le64(q, ev->task);
    break;
  default:
    return 0;
  }
  return (size_t)(q - p);
}

/* Appends one event; false when no chunk space could be had. */
static bool put_event(sender *s, const proto_event *ev) {
  size_t need = proto_event_size(ev);
  chunk *c = s->last;
  if (c == NULL || c->sealed || c->buf.len + need > CHUNK_BYTES) {
    if (c != NULL && c->count > 0)
      chunk_seal(c);
    if ((c = chunk_new(s, ev->kind == PROTO_EV_HEALTH)) == NULL)
      return false;
  }
  size_t n = encode_fixed(c->buf.data + c->buf.len, ev);
  if (n > 0) {
    c->buf.len += n;
    c->buf.count++; /* what proto_events_close() writes as the count */
  } else {
    proto_put_event(&c->buf, ev);
  }
  c->count++;
  s->next_seq++;
  return true;
}

/* ---- draining the rings -------------------------------------------------- */

static bool ensure_string(sender *s, uint32_t id, int64_t time) {
  if (id == 0 || id >= INTERN_MAX_IDS || s->emitted[id])
    return true;
  proto_event ev = {0};
  ev.kind = PROTO_EV_STRING;
  ev.time_ns = time;
  ev.string = id;
  ev.text.ptr = intern_text(&s->agent->strings, id, &ev.text.len);
  if (!put_event(s, &ev))
    return false;
  s->emitted[id] = 1;
  return true;
}

/* Turns the record at `tail` into wire events; false when out of space. */
static bool encode_record(sender *s, ring *r, uint64_t tail,
                          const ring_record *rec) {
  proto_event ev = {0};
  ev.kind = rec->kind;
  ev.time_ns = clock_map_ring(&s->clock, rec->time, &r->time_floor) +
               s->agent->wall_offset_ns;
  ev.task = rec->a;
  switch (rec->kind) {
  case PROTO_EV_BATCH:
    ev.task = 0;
    ev.batch = rec->a;
    ev.string = rec->x;
    if (!ensure_string(s, ev.string, ev.time_ns))
      return false;
    break;
  case PROTO_EV_ENQUEUE: {
    const ring_enqueue_tail *t =
        (const ring_enqueue_tail *)&r->slots[(tail + 1) & r->mask];
    ev.batch = rec->b;
    ev.position = rec->x;
    ev.mode = rec->mode;
    ev.string = t->name;
    ev.other = t->thread;
    if (!ensure_string(s, ev.string, ev.time_ns))
      return false;
    break;
  }
  case PROTO_EV_START:
  case PROTO_EV_SKIP:
    ev.other = rec->b;
    break;
  case PROTO_EV_FINISH:
    break;
  case PROTO_EV_FAIL:
  case PROTO_EV_DROP:
  case PROTO_EV_LINK: {
    size_t l0 = rec->x & 0xffff, l1 = rec->x >> 16, l2 = (size_t)rec->b;
    if (rec->kind != PROTO_EV_FAIL)
      l1 = l2 = 0;
    if (rec->kind == PROTO_EV_LINK) {
      ev.batch = rec->a;
      ev.task = 0;
    }
    ring_copy_out(r, (tail + 1) * RING_SLOT_BYTES, s->scratch, l0 + l1 + l2);
    ev.text.ptr = s->scratch;
    ev.text.len = (uint32_t)l0;
    ev.message.ptr = s->scratch + l0;
    ev.message.len = (uint32_t)l1;
    ev.detail.ptr = s->scratch + l0 + l1;
    ev.detail.len = (uint32_t)l2;
    break;
  }
  default:
    return true; /* not produced by record.c; skip it */
  }
  return put_event(s, &ev);
}

/* A ring being drained: its records [tail, head) up to the time limit. */
typedef struct drain_cursor {
  ring *r;
  uint64_t tail;
  uint64_t head;
} drain_cursor;

/* The cursor's next record if it is complete and not after `limit`. */
static const ring_record *cursor_next(drain_cursor *c, int64_t limit) {
  if (c->tail >= c->head)
    return NULL;
  const ring_record *rec = &c->r->slots[c->tail & c->r->mask];
  if (rec->slots == 0 || rec->slots > c->head - c->tail) {
    c->tail = c->head; /* cannot happen; never loop on a bad record */
    return NULL;
  }
  return rec->time <= limit ? rec : NULL;
}

static bool gather_cursors(sender *s, int64_t limit, size_t *count) {
  size_t n = 0;
  ring *first = atomic_load_explicit(&s->agent->rings, memory_order_acquire);
  for (ring *r = first; r != NULL; r = r->next)
    n++;
  if (n > s->ncursors_cap) {
    drain_cursor *c = realloc(s->cursors, n * sizeof(*c));
    if (c == NULL)
      return false;
    s->cursors = c;
    s->ncursors_cap = n;
  }
  n = 0;
  for (ring *r = first; r != NULL; r = r->next) {
    drain_cursor *c = &s->cursors[n];
    c->r = r;
    c->tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    c->head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (cursor_next(c, limit) != NULL)
      n++;
    else
      atomic_store_explicit(&r->tail, c->tail, memory_order_release);
  }
  *count = n;
  return true;
}

/*
 * Moves what the rings hold into the resend buffer, merged across rings in
 * time order, so that a task's enqueue (on the request's thread) precedes
 * its start (on a pool thread) in the stream. Only records stamped before
 * the drain began are taken: a record that causally precedes one of them
 * was published before that one was even stamped, so it is visible too and
 * cannot be overtaken. Returns the number of records taken.
 */
static uint64_t drain(sender *s) {
  int64_t limit = clock_map_mark(&s->clock);
  size_t n;
  uint64_t taken = 0;
  if (!gather_cursors(s, limit, &n))
    return 0;
  while (n > 0) {
    size_t best = 0;
    const ring_record *rec = cursor_next(&s->cursors[0], limit);
    for (size_t i = 1; i < n; i++) {
      const ring_record *other = cursor_next(&s->cursors[i], limit);
      if (other->time < rec->time) {
        rec = other;
        best = i;
      }
    }
    drain_cursor *c = &s->cursors[best];
    if (!encode_record(s, c->r, c->tail, rec))
      break;
    c->tail += rec->slots;
    taken++;
    if (cursor_next(c, limit) == NULL) {
      atomic_store_explicit(&c->r->tail, c->tail, memory_order_release);
      s->cursors[best] = s->cursors[--n];
    }
  }
  for (size_t i = 0; i < n; i++)
    atomic_store_explicit(&s->cursors[i].r->tail, s->cursors[i].tail,
                          memory_order_release);
  return taken;
}

/* The HEALTH event of the counters now, when they changed. */
static bool health_event(sender *s, proto_event *ev) {
  uint64_t dropped = record_dropped_total(s->agent);
  uint64_t reconnects = atomic_load(&s->reconnects);
  if (dropped == s->health_dropped && reconnects == s->health_reconnects)
    return false;
  memset(ev, 0, sizeof(*ev));
  ev->kind = PROTO_EV_HEALTH;
  ev->time_ns = clock_mono_ns() + s->agent->wall_offset_ns;
  ev->other = dropped;
  ev->other2 = reconnects;
  return true;
}

/* Queues a HEALTH event when the counters changed. False when it did not
 * fit in the resend buffer (it is tried again later). */
static bool maybe_health(sender *s) {
  proto_event ev;
  if (!health_event(s, &ev))
    return true;
  if (!put_event(s, &ev))
    return false;
  s->health_dropped = ev.other;
  s->health_reconnects = ev.other2;
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
  unsigned half = s->backoff_ms / 2;
  unsigned delay = half + (unsigned)(next_random(s) % (half + 1));
  s->backoff_ms =
      s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
  uv_timer_start(&s->retry, on_retry, delay, 0);
}

static void finish_stop(sender *s);

static void on_conn_closed(uv_handle_t *h) {
  sender *s = h->data;
  s->state = CONN_IDLE;
  s->rlen = 0;
  if (s->stopping)
    finish_stop(s);
  else
    schedule_retry(s);
}

static void disconnect(sender *s) {
  if (s->state == CONN_IDLE || s->state == CONN_CLOSING)
    return;
  s->state = CONN_CLOSING;
  uv_timer_stop(&s->retry);
  uv_close(&s->conn.handle, on_conn_closed);
}

static void on_handshake_timeout(uv_timer_t *t) {
  disconnect(t->data);
}

static void on_write(uv_write_t *req, int status) {
  chunk *c = req->data;
  sender *s = c->owner;
  c->writing = false;
  if (status < 0)
    disconnect(s);
  free_acked(s);
}

static void on_control_write(uv_write_t *req, int status) {
  if (status < 0)
    disconnect(req->data);
}

static void send_pending(sender *s) {
  if (s->state != CONN_READY)
    return;
  for (chunk *c = s->first; c != NULL; c = c->next) {
    if (c->first_seq + c->count <= s->sent_upto || c->writing)
      continue;
    if (c->count == 0)
      break;
    if (c == s->last && !c->sealed && s->acked < s->sent_upto &&
        !s->stopping && uv_now(&s->loop) - c->opened_ms < HOLD_MS)
      break; /* held back: see the top of the file */
    chunk_seal(c);
    uv_buf_t b = uv_buf_init((char *)c->buf.data, (unsigned)c->buf.len);
    c->req.data = c;
    if (uv_write(&c->req, &s->conn.stream, &b, 1, on_write) != 0) {
      disconnect(s);
      return;
    }
    c->writing = true;
    s->sent_upto = c->first_seq + c->count;
    atomic_fetch_add_explicit(&s->sent, c->count, memory_order_relaxed);
  }
}

/* Gives chunk c (and the events in it) sequence numbers from first_seq. */
static void chunk_renumber(chunk *c, uint64_t first_seq) {
  c->first_seq = first_seq;
  put_le(c->buf.data + PROTO_HEADER_SIZE, first_seq, 8);
}

/* Sends, at the head of the new instance's sequence, the text of every
 * name sent so far: the events still held may use them. False when the
 * memory cap leaves no room. */
static bool resend_strings(sender *s) {
  int64_t now = clock_mono_ns() + s->agent->wall_offset_ns;
  for (uint32_t id = 1; id < INTERN_MAX_IDS; id++) {
    if (!s->emitted[id])
      continue;
    proto_event ev = {0};
    ev.kind = PROTO_EV_STRING;
    ev.time_ns = now;
    ev.string = id;
    ev.text.ptr = intern_text(&s->agent->strings, id, &ev.text.len);
    if (!put_event(s, &ev))
      return false;
  }
  return true;
}

/*
 * WELCOME asked for events below what the collector had acked: its store
 * lost committed events of this instance (deleted, replaced, restored from
 * a backup). They are gone from here as well, and resuming after them
 * would be a sequence gap on every connection, forever. So the agent goes
 * on as a new instance: the next HELLO introduces it, its sequence starts
 * again at 1 with the text of every name sent so far, and then come the
 * events not yet acked, renumbered (events carry no sequence number of
 * their own, only each EVENTS frame's first one). Tasks that span the
 * change arrive in part; the collector counts their events as unmatched.
 * If the memory cap leaves no room for the names, the held events are
 * dropped and counted instead, and names go again before their next use.
 */
static void restart_instance(sender *s) {
  uint64_t old_acked = s->acked;
  free_acked(s);
  if (s->first != NULL && s->first->first_seq < s->acked)
    chunk_cut(s->first, s->acked);
  chunk *held = s->first, *held_last = s->last;
  if (held_last != NULL)
    chunk_seal(held_last);
  s->first = s->last = NULL;
  s->next_seq = 1;
  agent_new_instance(s->agent);
  bool kept = resend_strings(s);
  if (s->last != NULL)
    chunk_seal(s->last);
  uint64_t first_held = s->next_seq, seq = first_held;
  for (chunk *c = held; c != NULL; c = c->next) {
    chunk_renumber(c, seq);
    seq += c->count;
  }
  if (held != NULL) {
    if (s->last != NULL)
      s->last->next = held;
    else
      s->first = held;
    s->last = held_last;
  }
  if (!kept) {
    atomic_fetch_add_explicit(&s->agent->dropped_unbound, seq - first_held,
                              memory_order_relaxed);
    while (s->first != NULL) {
      chunk *c = s->first;
      s->first = c->next;
      chunk_free(s, c);
    }
    s->last = NULL;
    memset(s->emitted, 0, INTERN_MAX_IDS);
    seq = 1;
  }
  /* A flush waits for the same events under their new numbers. */
  if (s->flush_target_set)
    s->flush_target = kept ? s->flush_target + first_held - old_acked : 0;
  s->next_seq = seq;
  s->acked = s->sent_upto = 1;
  check_flush(s);
  /* The new instance's agents row gets the counters too. */
  s->health_dropped = s->health_reconnects = UINT64_MAX;
  disconnect(s);
}

static void handle_welcome(sender *s, const proto_welcome *w) {
  if (w->next_seq > s->next_seq || w->next_seq == 0) {
    disconnect(s); /* it claims events this instance never made */
    return;
  }
  if (w->next_seq < s->acked) {
    restart_instance(s);
    return;
  }
  uv_timer_stop(&s->retry);
  if (w->next_seq > s->acked) {
    atomic_fetch_add(&s->acked_events, w->next_seq - s->acked);
    s->acked = w->next_seq;
  }
  free_acked(s);
  if (s->first != NULL && s->first->first_seq < s->acked)
    chunk_cut(s->first, s->acked);
  s->sent_upto = s->acked;
  s->state = CONN_READY;
  if (s->welcomed_once)
    atomic_fetch_add(&s->reconnects, 1);
  s->welcomed_once = true;
  s->backoff_ms = BACKOFF_MIN_MS;
  send_pending(s);
}

static void handle_ack(sender *s, uint64_t next_seq) {
  if (next_seq > s->acked && next_seq <= s->next_seq) {
    atomic_fetch_add(&s->acked_events, next_seq - s->acked);
    s->acked = next_seq;
    free_acked(s);
    check_flush(s);
    send_pending(s); /* the chunk held back for this ack */
  }
  if (s->stopping && s->goodbye_sent && s->acked >= s->next_seq)
    finish_stop(s);
}

/* Handles one frame from the collector; false closes the connection. */
static bool handle_frame(sender *s, const proto_frame *f) {
  proto_welcome w;
  uint64_t v;
  if (f->type == PROTO_WELCOME && s->state == CONN_HANDSHAKE) {
    if (proto_decode_welcome(f->payload, f->payload_len, &w) != 0)
      return false;
    handle_welcome(s, &w);
    return true;
  }
  if (f->type == PROTO_ACK && s->state == CONN_READY) {
    if (proto_decode_u64(f->payload, f->payload_len, &v) != 0)
      return false;
    handle_ack(s, v);
    return true;
  }
  return false; /* ERROR, or anything out of place */
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  sender *s = h->data;
  (void)hint;
  *buf = uv_buf_init((char *)s->rbuf + s->rlen,
                     (unsigned)(sizeof(s->rbuf) - s->rlen));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  sender *s = stream->data;
  (void)buf;
  if (nread < 0) {
    disconnect(s);
    return;
  }
  s->rlen += (size_t)nread;
  size_t at = 0;
  proto_frame f;
  int rc;
  while ((rc = proto_frame_next(s->rbuf + at, s->rlen - at,
                                READ_BYTES - PROTO_HEADER_SIZE, &f)) == 0) {
    at += f.frame_len;
    if (!handle_frame(s, &f) || s->state == CONN_CLOSING ||
        s->state == CONN_IDLE) {
      disconnect(s);
      return;
    }
  }
  if (rc < 0) {
    disconnect(s);
    return;
  }
  memmove(s->rbuf, s->rbuf + at, s->rlen - at);
  s->rlen -= at;
}

static void send_hello(sender *s) {
  tw_agent *a = s->agent;
  proto_hello h = {0};
  memcpy(h.instance, a->instance, sizeof(h.instance));
  h.pid = (uint32_t)getpid();
  h.started_at_ns = a->started_at_ns;
  h.service.ptr = a->service;
  h.service.len = (uint32_t)strlen(a->service);
  h.host.ptr = a->host;
  h.host.len = (uint32_t)strlen(a->host);
  h.token.ptr = a->token;
  h.token.len = (uint32_t)strlen(a->token);
  proto_buf_reset(&s->hello);
  proto_put_hello(&s->hello, &h);
  if (proto_buf_failed(&s->hello)) {
    disconnect(s);
    return;
  }
  uv_buf_t b = uv_buf_init((char *)s->hello.data, (unsigned)s->hello.len);
  s->hello_req.data = s;
  if (uv_write(&s->hello_req, &s->conn.stream, &b, 1, on_control_write) != 0)
    disconnect(s);
}

static void on_connect(uv_connect_t *req, int status) {
  sender *s = req->data;
  if (status < 0 || s->stopping) {
    disconnect(s);
    return;
  }
  s->state = CONN_HANDSHAKE;
  s->rlen = 0;
  if (uv_read_start(&s->conn.stream, on_alloc, on_read) != 0) {
    disconnect(s);
    return;
  }
  send_hello(s);
  if (s->state == CONN_HANDSHAKE)
    uv_timer_start(&s->retry, on_handshake_timeout, HANDSHAKE_MS, 0);
}

/* Resolves the TCP address. Names are looked up here, on the sender
 * thread, so the lookup never uses the libuv thread pool the host's own
 * tasks run on. */
static int resolve(sender *s, struct sockaddr_storage *addr) {
  struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
  if (uv_ip4_addr(s->host, s->port, v4) == 0 ||
      uv_ip6_addr(s->host, s->port, v6) == 0)
    return 0;
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(s->host, NULL, &hints, &res) != 0 || res == NULL)
    return -1;
  memcpy(addr, res->ai_addr, res->ai_addrlen);
  if (res->ai_family == AF_INET)
    v4->sin_port = htons((uint16_t)s->port);
  else
    v6->sin6_port = htons((uint16_t)s->port);
  freeaddrinfo(res);
  return 0;
}

static void connect_start(sender *s) {
  struct sockaddr_storage addr;
  int rc;
  if (s->stopping || s->state != CONN_IDLE)
    return;
  s->connect_req.data = s;
  if (s->is_unix) {
    uv_pipe_init(&s->loop, &s->conn.pipe, 0);
    s->conn.handle.data = s;
    s->state = CONN_CONNECTING;
    uv_pipe_connect(&s->connect_req, &s->conn.pipe, s->path, on_connect);
    return;
  }
  if (resolve(s, &addr) != 0) {
    schedule_retry(s);
    return;
  }
  uv_tcp_init(&s->loop, &s->conn.tcp);
  s->conn.handle.data = s;
  uv_tcp_nodelay(&s->conn.tcp, 1);
  s->state = CONN_CONNECTING;
  rc = uv_tcp_connect(&s->connect_req, &s->conn.tcp,
                      (const struct sockaddr *)&addr, on_connect);
  if (rc != 0)
    disconnect(s);
}

/* ---- flush, stop, the poll timer ----------------------------------------- */

static bool rings_past_marks(sender *s) {
  ring *r = atomic_load_explicit(&s->agent->rings, memory_order_acquire);
  for (; r != NULL; r = r->next)
    if (atomic_load_explicit(&r->tail, memory_order_relaxed) < r->flush_mark)
      return false;
  return true;
}

static void check_flush(sender *s) {
  if (s->flush_active == s->flush_signalled)
    return;
  if (!s->flush_target_set && rings_past_marks(s)) {
    s->flush_target = s->next_seq - 1;
    s->flush_target_set = true;
  }
  if (s->flush_target_set && s->flush_target < s->acked) {
    pthread_mutex_lock(&s->mu);
    s->flush_done = s->flush_active;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    s->flush_signalled = s->flush_active;
  }
}

static void take_requests(sender *s, bool *stop, unsigned *goodbye_ms) {
  pthread_mutex_lock(&s->mu);
  uint64_t req = s->flush_req;
  *stop = s->stop_req;
  *goodbye_ms = s->goodbye_ms;
  pthread_mutex_unlock(&s->mu);
  if (req == s->flush_active)
    return;
  s->flush_active = req;
  s->flush_target_set = false;
  ring *r = atomic_load_explicit(&s->agent->rings, memory_order_acquire);
  for (; r != NULL; r = r->next)
    r->flush_mark = atomic_load_explicit(&r->head, memory_order_acquire);
}

static void close_all(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void finish_stop(sender *s) {
  if (s->state != CONN_IDLE)
    s->state = CONN_CLOSING;
  uv_walk(&s->loop, close_all, NULL);
}

static void on_goodbye_deadline(uv_timer_t *t) {
  finish_stop(t->data);
}

/* At shutdown, records the rings still hold (the resend buffer was full)
 * can never be sent: they are counted as dropped, so the last HEALTH
 * reports them. */
static void count_leftovers(sender *s) {
  uint64_t n = 0;
  ring *r = atomic_load_explicit(&s->agent->rings, memory_order_acquire);
  for (; r != NULL; r = r->next) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    while (tail < head) {
      uint16_t slots = r->slots[tail & r->mask].slots;
      if (slots == 0 || slots > head - tail)
        break;
      tail += slots;
      n++;
    }
    atomic_store_explicit(&r->tail, head, memory_order_release);
  }
  atomic_fetch_add_explicit(&s->agent->dropped_unbound, n,
                            memory_order_relaxed);
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
  proto_buf_reset(&s->final_health);
  proto_events_open(&s->final_health, s->next_seq);
  proto_put_event(&s->final_health, &ev);
  proto_events_close(&s->final_health);
  if (proto_buf_failed(&s->final_health))
    return false;
  uv_buf_t b = uv_buf_init((char *)s->final_health.data,
                           (unsigned)s->final_health.len);
  s->health_req.data = s;
  if (uv_write(&s->health_req, &s->conn.stream, &b, 1, on_control_write) != 0)
    return false;
  s->next_seq++;
  atomic_fetch_add_explicit(&s->sent, 1, memory_order_relaxed);
  s->health_dropped = ev.other;
  s->health_reconnects = ev.other2;
  return true;
}

static void begin_stop(sender *s, unsigned goodbye_ms) {
  s->stopping = true;
  uv_timer_stop(&s->poll);
  uv_timer_stop(&s->retry);
  drain(s);
  count_leftovers(s);
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
  proto_buf_reset(&s->goodbye);
  proto_put_goodbye(&s->goodbye, s->next_seq - 1);
  uv_buf_t b = uv_buf_init((char *)s->goodbye.data, (unsigned)s->goodbye.len);
  s->goodbye_req.data = s;
  if (proto_buf_failed(&s->goodbye) ||
      uv_write(&s->goodbye_req, &s->conn.stream, &b, 1, on_control_write)) {
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
    return;
  }
  uint64_t taken = drain(s);
  maybe_health(s);
  send_pending(s);
  check_flush(s);
  /* A busy drain goes round again at once (after the loop has looked at
   * the socket): under a burst the sender must not sleep while rings
   * fill. Idle, it backs off to POLL_MAX_MS. */
  s->poll_ms = taken > 0                      ? POLL_MIN_MS
               : s->poll_ms * 2 > POLL_MAX_MS ? POLL_MAX_MS
                                              : s->poll_ms * 2;
  uv_timer_start(&s->poll, on_poll, taken >= BUSY_RECORDS ? 0 : s->poll_ms, 0);
}

static void on_poll(uv_timer_t *t) {
  tick(t->data);
}
static void on_wake(uv_async_t *a) {
  tick(a->data);
}

static void *sender_main(void *arg) {
  sender *s = arg;
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
  return NULL;
}

/* ---- public to the agent ------------------------------------------------- */

static void sender_free(sender *s) {
  while (s->first != NULL) {
    chunk *c = s->first;
    s->first = c->next;
    chunk_destroy(s, c);
  }
  free_spares(s);
  proto_buf_fini(&s->hello);
  proto_buf_fini(&s->goodbye);
  proto_buf_fini(&s->final_health);
  free(s->emitted);
  free(s->scratch);
  free(s->cursors);
  free(s);
}

static int sender_init(sender *s, tw_agent *agent) {
  s->agent = agent;
  s->next_seq = 1;
  s->acked = 1;
  s->sent_upto = 1;
  s->backoff_ms = BACKOFF_MIN_MS;
  s->poll_ms = POLL_MIN_MS;
  clock_map_init(&s->clock);
  memcpy(&s->rng, agent->instance, sizeof(s->rng));
  s->rng |= 1;
  proto_buf_init(&s->hello);
  proto_buf_init(&s->goodbye);
  proto_buf_init(&s->final_health);
  if (parse_url(agent->collector, s) != 0)
    return TW_EURL;
  s->emitted = calloc(INTERN_MAX_IDS, 1);
  s->scratch = malloc(SCRATCH_BYTES);
  if (s->emitted == NULL || s->scratch == NULL)
    return TW_ENOMEM;
  if (uv_loop_init(&s->loop) != 0)
    return TW_EUV;
  uv_async_init(&s->loop, &s->wake, on_wake);
  uv_timer_init(&s->loop, &s->poll);
  uv_timer_init(&s->loop, &s->retry);
  s->wake.data = s->poll.data = s->retry.data = s;
  uv_timer_start(&s->poll, on_poll, 0, 0);
  uv_timer_start(&s->retry, on_retry, 0, 0);
  return 0;
}

int sender_start(tw_agent *agent) {
  sender *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return TW_ENOMEM;
  int rc = sender_init(s, agent);
  if (rc != 0) {
    sender_free(s); /* sender_init fails only before the loop exists */
    return rc;
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cv, &ca);
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
    uv_walk(&s->loop, close_all, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    sender_free(s);
    return TW_ENOMEM;
  }
  agent->sender = s;
  return 0;
}

int sender_flush(tw_agent *agent, unsigned timeout_ms) {
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
  pthread_mutex_lock(&s->mu);
  uint64_t mine = ++s->flush_req;
  pthread_mutex_unlock(&s->mu);
  uv_async_send(&s->wake);
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  while (s->flush_done < mine && rc == 0)
    if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT)
      rc = TW_ETIMEDOUT;
  if (s->flush_done >= mine)
    rc = 0;
  pthread_mutex_unlock(&s->mu);
  return rc;
}

void sender_stop(tw_agent *agent, unsigned goodbye_ms) {
  sender *s = agent->sender;
  if (s == NULL)
    return;
  pthread_mutex_lock(&s->mu);
  s->stop_req = true;
  s->goodbye_ms = goodbye_ms;
  pthread_mutex_unlock(&s->mu);
  uv_async_send(&s->wake);
  pthread_join(s->thread, NULL);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  sender_free(s);
  agent->sender = NULL;
}

void sender_fork_child(tw_agent *agent) {
  sender *old = agent->sender;
  agent->sender = NULL;
  if (old != NULL) {
    /* The parent's sender thread does not exist here. Its loop cannot be
     * run or closed safely, so the child only closes the descriptors that
     * matter to others (the collector connection, the epoll instance) and
     * abandons the rest of it. */
    uv_os_fd_t fd;
    if (old->state != CONN_IDLE && uv_fileno(&old->conn.handle, &fd) == 0)
      close(fd);
    close(uv_backend_fd(&old->loop));
    /* The loop's wakeup eventfd and signal pipe: fields of the unix loop
     * struct that libuv's public header exposes. */
    if (old->loop.async_io_watcher.fd >= 0)
      close(old->loop.async_io_watcher.fd);
    for (int i = 0; i < 2; i++)
      if (old->loop.signal_pipefd[i] >= 0)
        close(old->loop.signal_pipefd[i]);
    while (old->first != NULL) {
      chunk *c = old->first;
      old->first = c->next;
      chunk_destroy(old, c);
    }
    free_spares(old);
    proto_buf_fini(&old->hello);
    proto_buf_fini(&old->goodbye);
    proto_buf_fini(&old->final_health);
    free(old->emitted);
    free(old->scratch);
    free(old->cursors);
  }
  sender_start(agent);
}

void sender_stats(tw_agent *agent, tw_agent_stats *out) {
  sender *s = agent->sender;
  if (s == NULL)
    return;
  out->sent = atomic_load_explicit(&s->sent, memory_order_relaxed);
  out->acked = atomic_load_explicit(&s->acked_events, memory_order_relaxed);
  out->reconnects = atomic_load_explicit(&s->reconnects, memory_order_relaxed);
}
