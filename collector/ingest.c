/*
 * ingest - loop-side agent state and event coalescing.
 *
 * Sequence numbers: recv_seq is the next sequence number this process
 * expects from an instance (everything below is in a batch or committed);
 * commit_seq is what the store holds. WELCOME announces commit_seq, so an
 * agent resends what is still in flight, and those resent events are
 * skipped here because they are below recv_seq: each event reaches the
 * store once.
 */
#include "ingest.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "guard.h"
#include "log.h"
#include "schema.h"
#include "xalloc.h"

/* One latency sample per this many events. */
#define SAMPLE_EVERY 32

struct agent {
  int64_t id;
  uint8_t instance[PROTO_INSTANCE_SIZE];
  uint64_t recv_seq;
  uint64_t commit_seq;
  int64_t started_at; /* µs, from HELLO: no event of it is older */
  void *conn;
  u64map strings; /* string id -> istr */
  istr **owned;   /* every istr ever defined, freed with the agent */
  size_t nowned, capowned;
  size_t string_bytes;
  int strings_capped; /* past a cap of guard.h: unknown ids read (other) */
  int has_key;        /* key: the instance's public key (auth.h) */
  uint8_t key[PROTO_KEY_SIZE];
  int ended;
  int lost; /* its open tasks were marked lost; it has not come back */
  int64_t lost_deadline_ms; /* 0: not waiting */
  uint64_t progress_generation;
  size_t progress_index;
  uint64_t health_generation; /* batch holding the agent's HEALTH op */
  size_t health_index;
  uint64_t touched_generation; /* newest batch that refers to the agent */
  int in_waiting;
  int in_ended;
  agent *next_same_hash;
};

struct ingest {
  sqlite3 *db;
  sqlite3_stmt *find_agent;
  sqlite3_stmt *load_strings;
  sqlite3_stmt *find_owner;
  istr *other; /* GUARD_OTHER_NAME */
  int64_t lost_after_ms;
  int64_t max_skew_us;
  int64_t last_agent_id;
  /* For the rate limit of their log lines (powers of two). */
  uint64_t refused_total, clamped_total;
  u64map agents; /* instance hash -> chain of agents */
  size_t nagents;
  agent **waiting; /* disconnected without GOODBYE */
  size_t nwaiting, capwaiting;
  /* Said GOODBYE and disconnected, or vanished and turned lost: to be
   * forgotten once committed. */
  agent **ended;
  size_t nended, capended;
  wbatch *current;
  wbatch *spare; /* a committed batch kept for reuse */
  uint64_t generation;
  size_t string_bytes; /* interned by every agent in memory */
};

static uint64_t instance_key(const uint8_t *inst) {
  uint64_t a, b;
  memcpy(&a, inst, 8);
  memcpy(&b, inst + 8, 8);
  uint64_t k = u64map_hash(a) ^ (u64map_hash(b) * 31);
  return k ? k : 1;
}

static agent *find_loaded(const ingest *in, const uint8_t *inst) {
  for (agent *a = u64map_get(&in->agents, instance_key(inst)); a;
       a = a->next_same_hash)
    if (memcmp(a->instance, inst, PROTO_INSTANCE_SIZE) == 0)
      return a;
  return NULL;
}

static agent *agent_add(ingest *in, int64_t id, const uint8_t *inst,
                        uint64_t next_seq) {
  agent *a = xcalloc(1, sizeof(*a));
  a->id = id;
  memcpy(a->instance, inst, PROTO_INSTANCE_SIZE);
  a->recv_seq = a->commit_seq = next_seq;
  u64map_init(&a->strings);
  uint64_t key = instance_key(inst);
  a->next_same_hash = u64map_get(&in->agents, key);
  u64map_put(&in->agents, key, a);
  in->nagents++;
  return a;
}

static void agent_free(agent *a) {
  for (size_t i = 0; i < a->nowned; i++)
    free(a->owned[i]);
  free(a->owned);
  u64map_fini(&a->strings);
  free(a);
}

static void intern(ingest *in, agent *a, uint32_t id, const char *p,
                   uint32_t len) {
  istr *s = xmalloc(sizeof(*s) + len + 1);
  s->len = len;
  memcpy(s->text, p, len);
  s->text[len] = '\0';
  if (a->nowned == a->capowned) {
    a->capowned = a->capowned ? a->capowned * 2 : 16;
    a->owned = xrealloc(a->owned, a->capowned * sizeof(*a->owned));
  }
  a->owned[a->nowned++] = s;
  a->string_bytes += len + GUARD_STRING_OVERHEAD;
  in->string_bytes += len + GUARD_STRING_OVERHEAD;
  u64map_put(&a->strings, id, s);
}

/* An interned string of a, or NULL when the id is undefined. Once a is
 * past a cap, ids it defined after are unknown and read (other). */
static const istr *lookup(const ingest *in, const agent *a, uint32_t id) {
  const istr *s = u64map_get(&a->strings, id);
  return s == NULL && a->strings_capped ? in->other : s;
}

/* Whether a string of len bytes would take a past a cap of guard.h. */
static int over_cap(const ingest *in, const agent *a, uint32_t id,
                    uint32_t len) {
  size_t cost = (size_t)len + GUARD_STRING_OVERHEAD;
  return (u64map_get(&a->strings, id) == NULL &&
          u64map_count(&a->strings) >= GUARD_AGENT_STRINGS) ||
         a->string_bytes + cost > GUARD_AGENT_STRING_BYTES ||
         in->string_bytes + cost > GUARD_TOTAL_STRING_BYTES;
}

/* Logs a failed read of the store (the loop's read-only connection). */
static int read_failed(ingest *in, const char *what, int rc) {
  log_msg(LOG_ERROR, "cannot read the store what=\"%s\" error=\"%s\"", what,
          sqlite3_errmsg(in->db));
  return rc;
}

/* Loads a's interned strings. Returns SQLITE_OK or the SQLite error. */
static int load_strings(ingest *in, agent *a) {
  sqlite3_stmt *st = in->load_strings;
  int rc;
  sqlite3_bind_int64(st, 1, a->id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    intern(in, a, (uint32_t)sqlite3_column_int64(st, 0),
           (const char *)sqlite3_column_blob(st, 1),
           (uint32_t)sqlite3_column_bytes(st, 1));
  sqlite3_reset(st);
  /* The strings a run before this one did not keep were not stored: an
   * instance that reached a cap then is past it again now. */
  a->strings_capped =
      u64map_count(&a->strings) >= GUARD_AGENT_STRINGS ||
      a->string_bytes + PROTO_SHORT_MAX + GUARD_STRING_OVERHEAD >
          GUARD_AGENT_STRING_BYTES;
  return rc == SQLITE_DONE ? SQLITE_OK : read_failed(in, "strings", rc);
}

/* The owner column of an agents row (its key) at column k of st, into a. */
static void owner_from_row(agent *a, sqlite3_stmt *st, int k) {
  if (sqlite3_column_bytes(st, k) == PROTO_KEY_SIZE) {
    memcpy(a->key, sqlite3_column_blob(st, k), PROTO_KEY_SIZE);
    a->has_key = 1;
  }
}

static void forget(ingest *in, agent *a);

/* Loads an instance stored by an earlier run, with its strings, into *out
 * (NULL when the store does not know it). Returns SQLITE_OK or the SQLite
 * error: a store that cannot be read says nothing about the instance. */
static int load_agent(ingest *in, const uint8_t *inst, agent **out) {
  sqlite3_stmt *st = in->find_agent;
  agent *a = NULL;
  *out = NULL;
  sqlite3_bind_blob(st, 1, inst, PROTO_INSTANCE_SIZE, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    a = agent_add(in, sqlite3_column_int64(st, 0), inst,
                  (uint64_t)sqlite3_column_int64(st, 1));
    a->ended = sqlite3_column_int(st, 2);
    a->started_at = sqlite3_column_int64(st, 3);
    owner_from_row(a, st, 4);
  }
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return read_failed(in, "agents", rc);
  if (a && (rc = load_strings(in, a)) != SQLITE_OK) {
    forget(in, a);
    return rc;
  }
  *out = a;
  return SQLITE_OK;
}

static void push_agent(agent ***list, size_t *n, size_t *cap, agent *a) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    *list = xrealloc(*list, *cap * sizeof(**list));
  }
  (*list)[(*n)++] = a;
}

/* Lists a disconnected agent that is done (ended or lost) for
 * forget_ended(). */
static void to_forget(ingest *in, agent *a) {
  if (!a->in_ended) {
    a->in_ended = 1;
    push_agent(&in->ended, &in->nended, &in->capended, a);
  }
}

static void wait_for_return(ingest *in, agent *a, int64_t now_ms) {
  if (!a->in_waiting) {
    a->in_waiting = 1;
    push_agent(&in->waiting, &in->nwaiting, &in->capwaiting, a);
  }
  a->lost_deadline_ms = now_ms + in->lost_after_ms;
}

static void touch(ingest *in, agent *a) {
  a->touched_generation = in->current->generation;
}

/* Unlinks a from the instance map and frees it. a is in its chain: every
 * agent is added to the map when it is created and leaves it only here. */
static void forget(ingest *in, agent *a) {
  uint64_t key = instance_key(a->instance);
  agent *head = u64map_get(&in->agents, key);
  assert(head != NULL);
  if (head == a) {
    head = a->next_same_hash;
  } else {
    agent *p = head;
    while (p->next_same_hash != a) {
      p = p->next_same_hash;
      assert(p != NULL);
    }
    p->next_same_hash = a->next_same_hash;
  }
  if (head)
    u64map_put(&in->agents, key, head);
  else
    u64map_del(&in->agents, key);
  in->nagents--;
  in->string_bytes -= a->string_bytes;
  agent_free(a);
}

/* Instances left with open tasks by an earlier run get their grace
 * period from now, as if they had just disconnected. Returns SQLITE_OK or
 * the SQLite error. */
static int load_open_instances(ingest *in, int64_t now_ms) {
  sqlite3_stmt *st;
  const char *sql =
      "SELECT a.id, a.instance, a.next_seq, a.ended, a.started_at, "
      "a.auth_key FROM agents a WHERE a.id IN (SELECT DISTINCT agent FROM "
      "tasks WHERE " SCHEMA_SQL_ACTIVE ")";
  int rc = sqlite3_prepare_v2(in->db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return read_failed(in, "open instances", rc);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (sqlite3_column_bytes(st, 1) != PROTO_INSTANCE_SIZE)
      continue;
    const uint8_t *inst = sqlite3_column_blob(st, 1);
    if (find_loaded(in, inst))
      continue;
    agent *a = agent_add(in, sqlite3_column_int64(st, 0), inst,
                         (uint64_t)sqlite3_column_int64(st, 2));
    a->ended = sqlite3_column_int(st, 3);
    a->started_at = sqlite3_column_int64(st, 4);
    owner_from_row(a, st, 5);
    if (a->ended)
      continue;
    wait_for_return(in, a, now_ms);
    if (load_strings(in, a) != SQLITE_OK)
      break;
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_ROW) /* a string load failed, and logged */
    return SQLITE_ERROR;
  return rc == SQLITE_DONE ? SQLITE_OK : read_failed(in, "open instances", rc);
}

/* The largest agents.id: new instances are numbered after it, so a store
 * that cannot tell it cannot take new instances either. */
static int load_last_agent_id(ingest *in) {
  sqlite3_stmt *st;
  int rc =
      sqlite3_prepare_v2(in->db, "SELECT max(id) FROM agents", -1, &st, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
    in->last_agent_id = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? SQLITE_OK : read_failed(in, "agent ids", rc);
}

ingest *ingest_new(sqlite3 *db, int64_t lost_after_ms, int64_t max_skew_us,
                   int64_t now_ms) {
  ingest *in = xcalloc(1, sizeof(*in));
  in->db = db;
  in->lost_after_ms = lost_after_ms;
  in->max_skew_us = max_skew_us;
  u64map_init(&in->agents);
  in->current = wbatch_new(++in->generation);
  in->other = xmalloc(sizeof(*in->other) + sizeof(GUARD_OTHER_NAME));
  in->other->len = sizeof(GUARD_OTHER_NAME) - 1;
  memcpy(in->other->text, GUARD_OTHER_NAME, sizeof(GUARD_OTHER_NAME));
  int rc = load_last_agent_id(in);
  if (rc == SQLITE_OK &&
      ((rc = sqlite3_prepare_v2(db,
                                "SELECT id, next_seq, ended, started_at, "
                                "auth_key FROM "
                                "agents WHERE instance = ?1",
                                -1, &in->find_agent, NULL)) != SQLITE_OK ||
       (rc = sqlite3_prepare_v2(db,
                                "SELECT id, text FROM strings WHERE agent = ?1",
                                -1, &in->load_strings, NULL)) != SQLITE_OK ||
       (rc = sqlite3_prepare_v2(db,
                                "SELECT auth_key FROM agents WHERE "
                                "instance = ?1",
                                -1, &in->find_owner, NULL)) != SQLITE_OK))
    read_failed(in, "lookups", rc);
  if (rc == SQLITE_OK)
    rc = load_open_instances(in, now_ms);
  if (rc != SQLITE_OK) {
    ingest_free(in);
    return NULL;
  }
  return in;
}

void ingest_free(ingest *in) {
  if (in == NULL)
    return;
  size_t pos = 0;
  void *head;
  while (u64map_next(&in->agents, &pos, NULL, &head)) {
    agent *a = head;
    while (a) {
      agent *next = a->next_same_hash;
      agent_free(a);
      a = next;
    }
  }
  u64map_fini(&in->agents);
  sqlite3_finalize(in->find_agent);
  sqlite3_finalize(in->load_strings);
  sqlite3_finalize(in->find_owner);
  free(in->other);
  free(in->waiting);
  free(in->ended);
  wbatch_free(in->current);
  wbatch_free(in->spare);
  free(in);
}

uint64_t agent_commit_seq(const agent *a) {
  return a->commit_seq;
}
int64_t agent_id(const agent *a) {
  return a->id;
}
void *agent_conn(const agent *a) {
  return a->conn;
}
void agent_set_conn(agent *a, void *conn) {
  a->conn = conn;
}
size_t ingest_agent_count(const ingest *in) {
  return in->nagents;
}
wbatch *ingest_current(ingest *in) {
  return in->current;
}

wbatch *ingest_take(ingest *in) {
  wbatch *b = in->current;
  wbatch *next = in->spare;
  in->spare = NULL;
  if (next)
    wbatch_reset(next, ++in->generation);
  else
    next = wbatch_new(++in->generation);
  /* The writer does not read the map of pending rows: the next batch
   * takes its memory, and b the next one's (empty) map. */
  u64map map = next->pending;
  next->pending = b->pending;
  b->pending = map;
  u64map_clear(&next->pending);
  in->current = next;
  return b;
}

void ingest_recycle(ingest *in, wbatch *b) {
  if (in->spare == NULL)
    in->spare = b;
  else
    wbatch_free(b);
}

void ingest_request_prune(ingest *in) {
  in->current->prune = 1;
}

/* Counts a clamped time for the batch; logs at powers of two. */
static void clamped(ingest *in, const agent *a, const char *what, int64_t was,
                    int64_t now) {
  in->current->clamped++;
  uint64_t n = ++in->clamped_total;
  if ((n & (n - 1)) == 0)
    log_msg(LOG_WARN,
            "time outside the sane window clamped agent=%lld what=%s "
            "time_us=%lld now_us=%lld clamped_total=%llu",
            (long long)a->id, what, (long long)was, (long long)now,
            (unsigned long long)n);
}

/*
 * An event's time, kept within what can be true: not before its instance
 * started (the agent's own clock, which stamps every event after
 * HELLO's started_at), not more than --max-clock-skew ahead of the
 * collector's clock. Outside, it becomes the nearer bound that can be
 * trusted: the instance's start, or the time it was received.
 */
static void sane_time(ingest *in, const agent *a, proto_event *ev,
                      int64_t now_us) {
  int64_t t = ev->time_ns / 1000;
  if (t >= a->started_at && t <= now_us + in->max_skew_us)
    return;
  int64_t to = t < a->started_at && a->started_at <= now_us + in->max_skew_us
                   ? a->started_at
                   : now_us;
  clamped(in, a, "event", t, now_us);
  ev->time_ns = to * 1000;
}

/* Counts an event that arrived and is not applied (a task's state only
 * moves forward); logs at powers of two. */
static void refused(ingest *in, const agent *a, const proto_event *ev,
                    const char *why) {
  in->current->refused++;
  uint64_t n = ++in->refused_total;
  if ((n & (n - 1)) == 0)
    log_msg(LOG_WARN,
            "event not applied agent=%lld task=%llu kind=%u reason=\"%s\" "
            "refused_total=%llu",
            (long long)a->id, (unsigned long long)ev->task, (unsigned)ev->kind,
            why, (unsigned long long)n);
}

#define STORE_UNREADABLE "the store cannot be read; try again later"

/* The owner of an instance in the store, when it is not in memory: its
 * key into a scratch agent. Returns 1 known, 0 unknown, -1 error. */
static int stored_owner(ingest *in, const uint8_t *instance, agent *out) {
  sqlite3_stmt *st = in->find_owner;
  sqlite3_bind_blob(st, 1, instance, PROTO_INSTANCE_SIZE, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    owner_from_row(out, st, 0);
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    read_failed(in, "agents", rc);
    return -1;
  }
  return rc == SQLITE_ROW;
}

int ingest_owner_check(ingest *in, const uint8_t *instance, const uint8_t *key,
                       const char **reason) {
  agent scratch;
  memset(&scratch, 0, sizeof(scratch));
  const agent *a = find_loaded(in, instance);
  int known = a != NULL;
  if (a == NULL && (known = stored_owner(in, instance, &scratch)) < 0) {
    *reason = STORE_UNREADABLE;
    return -2;
  }
  if (known && a == NULL)
    a = &scratch;
  if (known && a->has_key &&
      (key == NULL || memcmp(key, a->key, PROTO_KEY_SIZE) != 0)) {
    *reason = key == NULL ? "instance is bound to a key: HELLO without its "
                            "proof refused"
                          : "instance is bound to another key";
    return -1;
  }
  return 0;
}

/* Records who owns a: its key, where the store has none yet (a new
 * instance, or one whose agent spoke version 1 so far), and the subject of
 * its TLS client certificate. */
static void bind_owner(ingest *in, agent *a, agent_op *op, const uint8_t *key,
                       const char *subject) {
  if (key != NULL && !a->has_key) {
    memcpy(a->key, key, PROTO_KEY_SIZE);
    a->has_key = 1;
    memcpy(op->key, key, PROTO_KEY_SIZE);
    op->has_key = 1;
  }
  if (subject != NULL) {
    proto_str text = {subject, (uint32_t)strlen(subject)};
    op->subject = arena_copy(&in->current->mem, text);
  }
}

agent *ingest_hello(ingest *in, const proto_hello *h, const uint8_t *key,
                    const char *subject, int64_t now_us, const char **reason) {
  agent *a = find_loaded(in, h->instance);
  if (a == NULL && load_agent(in, h->instance, &a) != SQLITE_OK) {
    *reason = STORE_UNREADABLE;
    return NULL;
  }
  if (a) {
    touch(in, a);
    wbatch_add_op(in->current, AGENT_OP_CONNECT, a->id, now_us);
    if ((key != NULL && !a->has_key) || subject != NULL)
      bind_owner(in, a, wbatch_add_op(in->current, AGENT_OP_BIND, a->id, 0),
                 key, subject);
    a->ended = 0;
    a->lost = 0;
    a->lost_deadline_ms = 0;
    return a;
  }
  a = agent_add(in, ++in->last_agent_id, h->instance, 1);
  a->started_at = h->started_at_ns / 1000;
  if (a->started_at > now_us + in->max_skew_us) {
    clamped(in, a, "started_at", a->started_at, now_us);
    a->started_at = now_us;
  }
  touch(in, a);
  agent_op *op = wbatch_add_op(in->current, AGENT_OP_NEW, a->id, now_us);
  memcpy(op->instance, h->instance, PROTO_INSTANCE_SIZE);
  op->service = arena_copy(&in->current->mem, h->service);
  op->host = arena_copy(&in->current->mem, h->host);
  op->pid = h->pid;
  op->started_at = a->started_at;
  bind_owner(in, a, op, key, subject);
  return a;
}

static agent_progress *progress_of(ingest *in, agent *a) {
  wbatch *b = in->current;
  if (a->progress_generation != b->generation) {
    a->progress_generation = b->generation;
    a->progress_index = b->nprogress;
    agent_progress *p = wbatch_add_progress(b);
    p->agent = a->id;
    p->owner = a;
  }
  return &b->progress[a->progress_index];
}

/* The batch's row of a task, created on first use: an INSERT row when the
 * first event seen is its ENQUEUE, an UPDATE row otherwise. */
static task_row *row_of(ingest *in, agent *a, uint64_t task, int enqueue) {
  int64_t id = schema_global_id(a->id, task);
  wbatch *b = in->current;
  task_row *r = u64map_get(&b->pending, (uint64_t)id);
  if (r)
    return r;
  r = wbatch_add_row(b);
  r->id = id;
  r->agent = a->id;
  r->update = !enqueue;
  u64map_put(&b->pending, (uint64_t)id, r);
  return r;
}

static int set_end(task_row *r, int status, int64_t at) {
  r->status = (uint8_t)status;
  r->finished_at = at;
  r->have |= HAVE_END;
  return 0;
}

/* A string past a cap of guard.h is not kept: the instance's names and
 * labels that use it read (other), counted and logged, and its events go
 * on being stored. */
static void fold_string(agent *a) {
  uint64_t n = guard_count(GUARD_strings_folded);
  if (!a->strings_capped)
    log_msg(LOG_WARN,
            "instance past its cap of interned strings agent=%lld "
            "strings=%zu bytes=%zu note=\"its later names read %s\"",
            (long long)a->id, u64map_count(&a->strings), a->string_bytes,
            GUARD_OTHER_NAME);
  else if (guard_log_due(n))
    log_msg(LOG_WARN, "strings folded agent=%lld strings_folded_total=%llu",
            (long long)a->id, (unsigned long long)n);
  a->strings_capped = 1;
}

static int apply_string(ingest *in, agent *a, const proto_event *ev,
                        const char **reason) {
  (void)reason;
  if (over_cap(in, a, ev->string, ev->text.len)) {
    fold_string(a);
    return 0;
  }
  intern(in, a, ev->string, ev->text.ptr, ev->text.len);
  string_row *s = wbatch_add_string(in->current);
  s->agent = a->id;
  s->id = ev->string;
  s->text = u64map_get(&a->strings, ev->string);
  return 0;
}

static int apply_batch(ingest *in, agent *a, const proto_event *ev,
                       const char **reason) {
  const istr *label = NULL;
  if (ev->string) {
    label = lookup(in, a, ev->string);
    if (label == NULL) {
      *reason = "batch label uses an undefined string id";
      return -1;
    }
  }
  batch_row *br = wbatch_add_batch(in->current);
  br->id = schema_global_id(a->id, ev->batch);
  br->agent = a->id;
  br->created_at = ev->time_ns / 1000;
  br->label = label;
  return 0;
}

static int apply_enqueue(ingest *in, agent *a, const proto_event *ev,
                         const char **reason) {
  const istr *name = lookup(in, a, ev->string);
  if (name == NULL) {
    *reason = "task name uses an undefined string id";
    return -1;
  }
  task_row *r = row_of(in, a, ev->task, 1);
  if (r->have & HAVE_ENQUEUE) {
    refused(in, a, ev, "task enqueued again");
    return 0;
  }
  /* A START or end that came before its ENQUEUE in the same batch: the
   * row is new after all. */
  r->update = 0;
  r->batch = schema_global_id(a->id, ev->batch);
  r->position = ev->position;
  r->name = name;
  r->mode = ev->mode;
  r->thread = (int64_t)ev->other;
  r->enqueued_at = ev->time_ns / 1000;
  r->have |= HAVE_ENQUEUE | HAVE_THREAD;
  if (!(r->have & (HAVE_START | HAVE_END)))
    r->status = SCHEMA_QUEUED;
  return 0;
}

static int apply_task_event(ingest *in, agent *a, const proto_event *ev,
                            const char **reason) {
  wbatch *b = in->current;
  task_row *r = row_of(in, a, ev->task, 0);
  int64_t at = ev->time_ns / 1000;
  (void)reason;
  /* Forward only: queued -> running -> one final state. The store's
   * UPDATE holds to the same for rows of earlier transactions. */
  if (r->have & HAVE_END) {
    refused(in, a, ev, "task already ended");
    return 0;
  }
  switch (ev->kind) {
  case PROTO_EV_START:
    if (r->have & HAVE_START) {
      refused(in, a, ev, "task already started");
      return 0;
    }
    r->started_at = at;
    r->thread = (int64_t)ev->other;
    r->have |= HAVE_START | HAVE_THREAD;
    if (!(r->have & HAVE_END))
      r->status = SCHEMA_RUNNING;
    return 0;
  case PROTO_EV_FINISH:
    return set_end(r, SCHEMA_SUCCEEDED, at);
  case PROTO_EV_FAIL:
    r->error_type = arena_copy(&b->mem, ev->text);
    r->error_message = arena_copy(&b->mem, ev->message);
    r->error_detail = arena_copy(&b->mem, ev->detail);
    r->have |= HAVE_ERROR;
    return set_end(r, SCHEMA_FAILED, at);
  case PROTO_EV_SKIP:
    r->skipped_after = schema_global_id(a->id, ev->other);
    r->have |= HAVE_SKIP;
    return set_end(r, SCHEMA_SKIPPED, at);
  default:
    /* apply() sends every other kind elsewhere, and tw__proto_events_next()
     * refuses kinds it does not know. */
    assert(ev->kind == PROTO_EV_DROP);
    r->drop_reason = arena_copy(&b->mem, ev->text);
    r->have |= HAVE_DROP;
    return set_end(r, SCHEMA_DROPPED, at);
  }
}

/* The counters of HEALTH are cumulative, so only the newest matters: one
 * op per agent and batch, overwritten by later HEALTH events. Otherwise a
 * peer sending nothing but HEALTH would grow the batch by an op for every
 * 25 bytes it sends. */
static void apply_health(ingest *in, agent *a, const proto_event *ev) {
  wbatch *b = in->current;
  if (a->health_generation != b->generation) {
    a->health_generation = b->generation;
    a->health_index = b->nops;
    wbatch_add_op(b, AGENT_OP_HEALTH, a->id, 0);
  }
  agent_op *op = &b->ops[a->health_index];
  op->a = (int64_t)ev->other;
  op->b = (int64_t)ev->other2;
  /* 0 from an agent of protocol version 1 or 2, which cannot tell. */
  op->c = (int64_t)ev->dropped_batches;
  op->d = (int64_t)ev->dropped_tasks;
}

/* The request's trace of a batch (the Python binding sends it after the
 * BATCH event); the store keeps it with the batch for the OTLP export. */
static void apply_link(ingest *in, agent *a, const proto_event *ev) {
  link_row *l = wbatch_add_link(in->current);
  l->batch = schema_global_id(a->id, ev->batch);
  l->traceparent = arena_copy(&in->current->mem, ev->text);
}

static int ids_in_range(const proto_event *ev) {
  return ev->task <= SCHEMA_LOCAL_MASK && ev->batch <= SCHEMA_LOCAL_MASK &&
         (ev->kind != PROTO_EV_SKIP || ev->other <= SCHEMA_LOCAL_MASK);
}

static int apply(ingest *in, agent *a, const proto_event *ev,
                 const char **reason) {
  if (!ids_in_range(ev)) {
    *reason = "task or batch id does not fit in 40 bits";
    return -1;
  }
  switch (ev->kind) {
  case PROTO_EV_STRING:
    return apply_string(in, a, ev, reason);
  case PROTO_EV_BATCH:
    return apply_batch(in, a, ev, reason);
  case PROTO_EV_ENQUEUE:
    return apply_enqueue(in, a, ev, reason);
  case PROTO_EV_HEALTH:
    apply_health(in, a, ev);
    return 0;
  case PROTO_EV_LINK:
    apply_link(in, a, ev);
    return 0;
  default:
    return apply_task_event(in, a, ev, reason);
  }
}

static void count_event(ingest *in, agent *a, const proto_event *ev) {
  wbatch *b = in->current;
  agent_progress *p = progress_of(in, a);
  int64_t at = ev->time_ns / 1000;
  p->events++;
  if (at > p->last_event_at)
    p->last_event_at = at;
  if (b->events % SAMPLE_EVERY == 0 && b->nsamples < BATCH_LATENCY_SAMPLES)
    b->samples[b->nsamples++] = ev->time_ns;
  b->events++;
}

int ingest_events(ingest *in, agent *a, uint16_t version, const uint8_t *p,
                  size_t n, const char **reason) {
  proto_events it;
  proto_event ev;
  int rc = tw__proto_events_begin(&it, p, n, version);
  if (rc < 0) {
    *reason = tw__proto_strerror(rc);
    return -1;
  }
  if (it.first_seq > a->recv_seq) {
    *reason = "sequence gap";
    return -1;
  }
  uint64_t seq = it.first_seq;
  int64_t now_us = format_now_us();
  touch(in, a);
  while ((rc = tw__proto_events_next(&it, &ev)) == 0) {
    if (seq++ < a->recv_seq)
      continue;
    sane_time(in, a, &ev, now_us);
    if (apply(in, a, &ev, reason) != 0)
      break;
    count_event(in, a, &ev);
    a->recv_seq++;
    agent_progress *pr = progress_of(in, a);
    pr->next_seq = a->recv_seq;
    pr->received_at = now_us;
  }
  if (rc == 1)
    return 0;
  if (rc < 0)
    *reason = tw__proto_strerror(rc);
  return -1;
}

int ingest_goodbye(ingest *in, agent *a, uint64_t last_seq,
                   const char **reason) {
  if (last_seq + 1 != a->recv_seq) {
    *reason = last_seq + 1 > a->recv_seq ? "GOODBYE after a sequence gap"
                                         : "GOODBYE before its last event";
    return -1;
  }
  a->ended = 1;
  touch(in, a);
  wbatch_add_op(in->current, AGENT_OP_ENDED, a->id, format_now_us());
  progress_of(in, a)->next_seq = a->recv_seq;
  in->current->flush_wanted = 1; /* the agent waits for this ack to exit */
  return 0;
}

int ingest_flush(ingest *in, agent *a, uint64_t last_seq,
                 const char **reason) {
  if (last_seq >= a->recv_seq) {
    *reason = "FLUSH past the events received";
    return -1;
  }
  /* Its events are in the current batch or in one the writer has. */
  in->current->flush_wanted = 1;
  return 0;
}

void ingest_disconnect(ingest *in, agent *a, int64_t now_us, int64_t now_ms) {
  touch(in, a);
  wbatch_add_op(in->current, AGENT_OP_DISCONNECT, a->id, now_us);
  if (!a->ended) {
    wait_for_return(in, a, now_ms);
  } else {
    to_forget(in, a);
  }
}

void ingest_tick(ingest *in, int64_t now_us, int64_t now_ms) {
  size_t kept = 0;
  for (size_t i = 0; i < in->nwaiting; i++) {
    agent *a = in->waiting[i];
    if (a->lost_deadline_ms == 0 || a->conn || a->ended) {
      a->lost_deadline_ms = 0;
      a->in_waiting = 0;
      continue;
    }
    if (now_ms < a->lost_deadline_ms) {
      in->waiting[kept++] = a;
      continue;
    }
    a->lost_deadline_ms = 0;
    a->in_waiting = 0;
    /* Once this batch commits nothing about the instance is pending, so
     * it is forgotten like an ended one; without that, every instance
     * that ever vanished would keep its strings until the total string
     * budget refused all new agents. */
    a->lost = 1;
    touch(in, a);
    to_forget(in, a);
    wbatch_add_op(in->current, AGENT_OP_LOST, a->id, now_us);
    log_msg(LOG_INFO, "instance did not return agent=%lld", (long long)a->id);
  }
  in->nwaiting = kept;
}

/* Instances that ended cleanly or turned lost are forgotten once no batch
 * refers to them any more, so a collector serving many short-lived
 * processes keeps its memory; one that comes back is loaded from the store
 * again. */
static void forget_ended(ingest *in, uint64_t committed_generation) {
  size_t kept = 0;
  for (size_t i = 0; i < in->nended; i++) {
    agent *a = in->ended[i];
    if ((!a->ended && !a->lost) || a->conn) {
      a->in_ended = 0;
      continue;
    }
    if (a->in_waiting || a->touched_generation > committed_generation) {
      in->ended[kept++] = a;
      continue;
    }
    forget(in, a);
  }
  in->nended = kept;
}

void ingest_committed(ingest *in, wbatch *b,
                      void (*ack)(void *conn, uint64_t next_seq, void *arg),
                      void *arg) {
  for (size_t i = 0; i < b->nprogress; i++) {
    agent_progress *p = &b->progress[i];
    agent *a = p->owner;
    /* An agent is forgotten only once no batch refers to it
     * (forget_ended), so the batch's owner is still the same agent. */
    assert(a != NULL && a->id == p->agent);
    if (p->next_seq == 0)
      continue;
    if (p->next_seq > a->commit_seq)
      a->commit_seq = p->next_seq;
    if (a->conn)
      ack(a->conn, p->next_seq, arg);
  }
  forget_ended(in, b->generation);
}
