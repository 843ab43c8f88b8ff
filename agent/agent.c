/*
 * agent - the agent handle: configuration, creation and shutdown, the
 * memory budget shared by rings and the resend buffer, the registry of live
 * agents, and what happens to them across fork().
 *
 * The registry exists for the two moments that are not the recording path:
 * a thread exiting (its ring is handed back, but only if the agent still
 * lives) and fork() (the child's copy of every agent becomes a new instance
 * with empty rings and a new sender thread). A mutex guards it; recording
 * never touches it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "agent_internal.h"
#include "size.h"

static pthread_mutex_t registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static tw_agent *registry_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t next_serial = 1;

const char *tw_version(void) {
  return TW_VERSION_STRING;
}

const char *tw_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define TW__STRERROR(name, value, text)                                        \
  case value:                                                                  \
    return text;
    TW_ERRNO_MAP(TW__STRERROR)
#undef TW__STRERROR
  default:
    return "unknown error";
  }
}

const char *tw_err_name(int err) {
  switch (err) {
  case 0:
    return "TW_OK";
#define TW__ERR_NAME(name, value, text)                                        \
  case value:                                                                  \
    return "TW_" #name;
    TW_ERRNO_MAP(TW__ERR_NAME)
#undef TW__ERR_NAME
  default:
    return "TW_UNKNOWN";
  }
}

/* The public structs' sizes are part of the soname's ABI: a field added
 * later takes a reserved slot instead of growing them (tw_config's 16:
 * tls_ca, tls_cert, tls_key, disabled and reserved[12]). */
_Static_assert(sizeof(tw_config) == 3 * sizeof(void *) + sizeof(size_t) +
                                        sizeof(void *) /* unsigned, padded */ +
                                        16 * sizeof(void *) ||
                   sizeof(void *) != 8,
               "tw_config changed size: take a reserved slot");
_Static_assert(sizeof(uintptr_t) == sizeof(void *),
               "tw_config.disabled takes a pointer-sized reserved slot");
_Static_assert(sizeof(tw_agent_stats) == 22 * sizeof(uint64_t),
               "tw_agent_stats changed size: take a reserved slot");

const char *tw_conn_state_name(int state) {
  switch (state) {
#define TW__CONN_STATE_NAME(name, value, text)                                 \
  case value:                                                                  \
    return text;
    TW_CONN_STATE_MAP(TW__CONN_STATE_NAME)
#undef TW__CONN_STATE_NAME
  default:
    return "unknown";
  }
}

const char *tw_refusal_name(int code) {
  switch (code) {
#define TW__REFUSAL_NAME(name, value, text)                                    \
  case value:                                                                  \
    return text;
    TW_REFUSAL_MAP(TW__REFUSAL_NAME)
#undef TW__REFUSAL_NAME
  default:
    return "unknown";
  }
}

size_t tw_limit_value(int limit) {
  switch (limit) {
  case TW_LIMIT_NAME:
    return LIMIT_NAME;
  case TW_LIMIT_NAMES:
    return INTERN_MAX_IDS - 1 - INTERN_OVERFLOW_ID; /* ids 2 .. max - 1 */
  case TW_LIMIT_NAME_TEXT:
    return INTERN_ARENA;
  case TW_LIMIT_ERROR_TYPE:
    return LIMIT_ERROR_TYPE;
  case TW_LIMIT_ERROR_MESSAGE:
    return LIMIT_ERROR_MESSAGE;
  case TW_LIMIT_ERROR_DETAIL:
    return LIMIT_ERROR_DETAIL;
  case TW_LIMIT_DROP_REASON:
    return LIMIT_DROP_REASON;
  case TW_LIMIT_TRACEPARENT:
    return PROTO_LINK_MAX;
  case TW_LIMIT_REFUSAL_TEXT:
    return LIMIT_REFUSAL_TEXT;
  default:
    return 0;
  }
}

void tw_config_init(tw_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->buffer_bytes = TW_DEFAULT_BUFFER_BYTES;
  cfg->flush_timeout_ms = TW_DEFAULT_FLUSH_TIMEOUT_MS;
}

/* Parses a whole decimal number; returns -1 on anything else. */
static int parse_number(const char *s, unsigned long long max,
                        unsigned long long *out) {
  if (s == NULL || *s < '0' || *s > '9')
    return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > max)
    return -1;
  *out = v;
  return 0;
}

/* TASKWATCH_DISABLED: 1 for "1", 0 for "0", empty or unset, -1 for
 * anything else. */
static int env_disabled(void) {
  const char *s = getenv("TASKWATCH_DISABLED");
  if (s == NULL || *s == '\0' || strcmp(s, "0") == 0)
    return 0;
  return strcmp(s, "1") == 0 ? 1 : -1;
}

int tw_config_from_env(tw_config *cfg) {
  int rc = 0;
  unsigned long long v;
  const char *s;
  tw_config_init(cfg);
  cfg->collector = getenv("TASKWATCH_COLLECTOR");
  cfg->service = getenv("TASKWATCH_SERVICE");
  cfg->token = getenv("TASKWATCH_TOKEN");
  cfg->tls_ca = getenv("TASKWATCH_TLS_CA");
  cfg->tls_cert = getenv("TASKWATCH_TLS_CERT");
  cfg->tls_key = getenv("TASKWATCH_TLS_KEY");
  if ((s = getenv("TASKWATCH_BUFFER_BYTES")) != NULL && *s != '\0') {
    uint64_t bytes;
    if (tw__size_parse(s, SIZE_MAX, &bytes) == 0)
      cfg->buffer_bytes = (size_t)bytes;
    else
      rc = TW_EINVAL;
  }
  clock_request clock;
  if (tw__clock_parse_request(getenv("TASKWATCH_CLOCK"), &clock) != 0)
    rc = TW_EINVAL;
  if ((s = getenv("TASKWATCH_FLUSH_TIMEOUT_MS")) != NULL && *s != '\0') {
    if (parse_number(s, 3600000, &v) == 0)
      cfg->flush_timeout_ms = (unsigned)v;
    else
      rc = TW_EINVAL;
  }
  int off = env_disabled();
  if (off < 0)
    rc = TW_EINVAL;
  cfg->disabled = off == 1;
  if (cfg->collector != NULL && *cfg->collector == '\0')
    cfg->collector = NULL;
  if (cfg->service != NULL && *cfg->service == '\0')
    cfg->service = NULL;
  return rc;
}

int tw__agent_reserve_leaving(tw_agent *agent, size_t n, size_t keep) {
  size_t cur = atomic_load_explicit(&agent->reserved, memory_order_relaxed);
  do {
    if (cur > agent->cap || agent->cap - cur < n || agent->cap - cur - n < keep)
      return -1;
  } while (!atomic_compare_exchange_weak_explicit(&agent->reserved, &cur,
                                                  cur + n, memory_order_relaxed,
                                                  memory_order_relaxed));
  return 0;
}

int tw__agent_reserve(tw_agent *agent, size_t n) {
  return tw__agent_reserve_leaving(agent, n, 0);
}

void tw__agent_release(tw_agent *agent, size_t n) {
  atomic_fetch_sub_explicit(&agent->reserved, n, memory_order_relaxed);
}

static int64_t wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void tw__agent_new_instance(tw_agent *agent) {
  uint8_t *id = agent->instance;
  if (getrandom(id, PROTO_INSTANCE_SIZE, GRND_NONBLOCK) !=
      PROTO_INSTANCE_SIZE) {
    /* Early boot without entropy: a clock, pid and address mix is still
     * unique enough to tell instances apart. */
    uint64_t a = (uint64_t)wall_now() ^ ((uint64_t)getpid() << 32);
    uint64_t b = (uint64_t)tw__clock_mono_ns() ^ (uint64_t)(uintptr_t)agent;
    memcpy(id, &a, 8);
    memcpy(id + 8, &b, 8);
  }
  int64_t mono = tw__clock_mono_ns();
  agent->started_at_ns = wall_now();
  agent->wall_offset_ns = agent->started_at_ns - mono;
}

void tw__registry_lock(void) {
  pthread_mutex_lock(&registry_mutex);
}
void tw__registry_unlock(void) {
  pthread_mutex_unlock(&registry_mutex);
}
tw_agent *tw__registry_first(void) {
  return registry_head;
}

static void atfork_prepare(void) {
  tw__registry_lock();
}

/* Writes every page of the agent's own struct once, without changing it
 * (an atomic add of 0 to a word of each page). fork() left those pages
 * shared copy-on-write, and the sender writes some of its fields at each
 * tick (sender_asleep, admit_pressure) while recording threads read the
 * others: the kernel swaps in the copy under a page table lock, with the
 * entry briefly absent, and a recording thread that reads the page then
 * takes a page fault (test_record's fork_keeps_rings_faulted_in saw one
 * in a child under stress-ng --cpu 2, whose new sender had just started).
 * Written here, by the forking thread, the copy is made before. */
static void own_agent_pages(tw_agent *a) {
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t step = page > 0 ? (uintptr_t)page : 4096;
  uintptr_t start = (uintptr_t)a, end = start + sizeof(*a);
  for (uintptr_t p = start; p < end; p = (p | (step - 1)) + 1) {
    uintptr_t w = (p + 7) & ~(uintptr_t)7;
    if (w + sizeof(uint64_t) <= end)
      __atomic_fetch_add((uint64_t *)w, 0, __ATOMIC_RELAXED);
  }
}

/* A recording thread that wakes a sleeping sender (pace.h) writes the
 * sender's uv_async_t, which fork() left shared copy-on-write: waking each
 * sender here takes that page fault inside fork(), not on the recording
 * path, and the sender, awake, writes the rest of its own pages itself. */
static void atfork_parent(void) {
  for (tw_agent *a = registry_head; a != NULL; a = a->registry_next) {
    own_agent_pages(a);
    tw__sender_nudge(a);
  }
  tw__registry_unlock();
}

/* The child has one thread: this one. Every agent becomes a new instance
 * that forgets the parent's events and gets its own sender thread. */
static void atfork_child(void) {
  pthread_mutex_init(&registry_mutex, NULL);
  for (tw_agent *a = registry_head; a != NULL; a = a->registry_next) {
    own_agent_pages(a);
    tw__agent_new_instance(a);
    tw__record_fork_child(a);
    tw__spill_fork_child(a);
    tw__sender_fork_child(a);
  }
}

static void install_atfork(void) {
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static char *copy_string(const char *s) {
  return s != NULL ? strdup(s) : NULL;
}

static int agent_setup(tw_agent *a, const tw_config *cfg) {
  char host[PROTO_IDENT_MAX + 1] = "";
  if (gethostname(host, sizeof(host)) != 0)
    host[0] = '\0';
  host[sizeof(host) - 1] = '\0';
  const char *collector =
      cfg->collector ? cfg->collector : TW_DEFAULT_COLLECTOR;
  const char *service =
      cfg->service ? cfg->service : program_invocation_short_name;
  a->collector = copy_string(collector);
  a->service = copy_string(service);
  a->host = copy_string(host);
  a->token = copy_string(cfg->token ? cfg->token : "");
  a->tls_ca = copy_string(cfg->tls_ca);
  a->tls_cert = copy_string(cfg->tls_cert);
  a->tls_key = copy_string(cfg->tls_key);
  if (!a->collector || !a->service || !a->host || !a->token ||
      (cfg->tls_ca && !a->tls_ca) || (cfg->tls_cert && !a->tls_cert) ||
      (cfg->tls_key && !a->tls_key))
    return TW_ENOMEM;
  a->cap = cfg->buffer_bytes ? cfg->buffer_bytes : TW_DEFAULT_BUFFER_BYTES;
  if (a->cap < LIMIT_AGENT_BUFFER_MIN)
    a->cap = LIMIT_AGENT_BUFFER_MIN;
  a->flush_timeout_ms = cfg->flush_timeout_ms ? cfg->flush_timeout_ms
                                              : TW_DEFAULT_FLUSH_TIMEOUT_MS;
  if (tw__intern_init(&a->strings) != 0)
    return TW_ENOMEM;
  tw__agent_reserve(a, tw__intern_footprint());
  a->serial = atomic_fetch_add(&next_serial, 1);
  atomic_init(&a->next_id, 1);
  tw__agent_new_instance(a);
  return 0;
}

static void agent_destroy(tw_agent *a) {
  tw__record_free_rings(a);
  tw__spill_fini(a);
  tw__intern_fini(&a->strings);
  free(a->collector);
  free(a->service);
  free(a->host);
  free(a->token);
  free(a->tls_ca);
  free(a->tls_cert);
  free(a->tls_key);
  free(a);
}

int tw_agent_new(const tw_config *cfg, tw_agent **out) {
  tw_config env;
  int rc;
  if (out == NULL)
    return TW_EINVAL;
  *out = NULL;
  tw__clock_init();
  if (cfg == NULL) {
    if ((rc = tw_config_from_env(&env)) != 0)
      return rc;
    cfg = &env;
  }
  if (tw__sender_check_url(cfg->collector ? cfg->collector
                                          : TW_DEFAULT_COLLECTOR))
    return TW_EURL;
  tw_agent *a = calloc(1, sizeof(*a));
  if (a == NULL)
    return TW_ENOMEM;
  if ((rc = agent_setup(a, cfg)) != 0) {
    agent_destroy(a);
    return rc;
  }
  /* Tracing off: the recording calls test this flag first and return.
   * No sender, no registry entry (a fork has nothing to renew). */
  a->disabled = cfg->disabled != 0 || env_disabled() == 1;
  if (a->disabled) {
    *out = a;
    return 0;
  }
  if ((rc = tw__spill_init(a)) != 0) {
    agent_destroy(a);
    return rc;
  }
  pthread_once(&atfork_once, install_atfork);
  tw__registry_lock();
  a->registry_next = registry_head;
  registry_head = a;
  rc = tw__sender_start(a);
  tw__registry_unlock();
  if (rc != 0) {
    tw__registry_lock();
    registry_head = a->registry_next;
    tw__registry_unlock();
    agent_destroy(a);
    return rc;
  }
  *out = a;
  return 0;
}

int tw_agent_flush(tw_agent *agent, unsigned timeout_ms) {
  if (agent == NULL)
    return TW_EINVAL;
  if (agent->disabled)
    return 0;
  return tw__sender_flush(agent, timeout_ms);
}

void tw_agent_free(tw_agent *agent) {
  if (agent == NULL)
    return;
  if (agent->disabled) {
    agent_destroy(agent);
    return;
  }
  int64_t start = tw__clock_mono_ns();
  tw__sender_flush(agent, agent->flush_timeout_ms);
  int64_t left_ms = (int64_t)agent->flush_timeout_ms -
                    (tw__clock_mono_ns() - start) / 1000000;
  /* The goodbye gets what is left of the flush budget, within limits: the
   * collector needs a moment to ack, and shutdown must stay bounded. */
  if (left_ms < 20)
    left_ms = 20;
  if (left_ms > 250)
    left_ms = 250;
  /* Leave the registry before the sender is stopped and freed: a fork()
   * on another thread runs atfork_child() over the registry, and an agent
   * still listed there while tw__sender_stop() frees its sender would have the
   * child's tw__sender_fork_child() close and free through a freed sender.
   * atfork_prepare() takes the registry lock, so a fork sees the agent
   * either whole (sender running) or not at all. */
  tw__registry_lock();
  for (tw_agent **p = &registry_head; *p != NULL; p = &(*p)->registry_next)
    if (*p == agent) {
      *p = agent->registry_next;
      break;
    }
  tw__registry_unlock();
  tw__sender_stop(agent, (unsigned)left_ms);
  agent_destroy(agent);
}

void tw_agent_get_stats(tw_agent *agent, tw_agent_stats *out) {
  memset(out, 0, sizeof(*out));
  if (agent == NULL)
    return;
  if (agent->disabled) {
    out->conn_state = TW_CONN_STOPPED;
    return;
  }
  out->recorded = tw__record_recorded_total(agent);
  out->dropped = tw__record_dropped_total(agent);
  tw__record_cuts(agent, &out->strings_cut, &out->names_replaced);
  tw__record_refused(agent, &out->dropped_batches, &out->dropped_tasks);
  uint64_t why[REFUSED_WHY_COUNT];
  tw__record_refused_why(agent, why);
  out->refused_ring = why[REFUSED_RING];
  out->refused_pressure = why[REFUSED_PRESSURE];
  out->refused_backlog = why[REFUSED_BACKLOG];
  tw__sender_stats(agent, out);
  out->buffered_bytes =
      atomic_load_explicit(&agent->reserved, memory_order_relaxed);
}

int tw_agent_refusal(tw_agent *agent, char *buf, size_t size) {
  if (buf == NULL)
    size = 0;
  if (size > 0)
    buf[0] = '\0';
  if (agent == NULL)
    return TW_REFUSAL_NONE;
  return tw__sender_refusal(agent, buf, size);
}
