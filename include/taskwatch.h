/*
 * taskwatch.h - the public API of libtaskwatch, the taskwatch agent.
 *
 * A server links this library to make its background tasks visible. It
 * offers three things:
 *
 *   - an agent handle (tw_agent) that owns the per-thread event rings and a
 *     sender thread streaming events to a taskwatch collector;
 *   - low-level trace calls (tw_task_enqueue, tw_task_start, ...) for servers
 *     that run tasks on executors of their own;
 *   - a batch runner on libuv (tw_batch_*) with the semantics of
 *     Starlette/FastAPI BackgroundTasks: the tasks of one batch run in the
 *     order they were added, sync tasks on the libuv thread pool, async tasks
 *     on the loop; when one fails the rest are skipped (and recorded as
 *     skipped); a batch freed without running is recorded as dropped.
 *
 * Conventions. Every function that can fail returns 0 or a negative TW_E*
 * code; tw_strerror() turns a code into text. The library never aborts or
 * exits its host: running out of memory is TW_ENOMEM. Strings passed in are
 * copied before the call returns; the caller keeps ownership of its memory.
 * Recording calls never block, never take a lock, never allocate and never
 * make a system call: when the agent's buffer is full the event is dropped,
 * counted, and the count is reported to the collector later.
 */
#ifndef TASKWATCH_H
#define TASKWATCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TW_BUILDING_LIBRARY) && defined(__GNUC__)
#define TW_EXTERN __attribute__((visibility("default")))
#else
#define TW_EXTERN
#endif

#define TW_VERSION_MAJOR 0
#define TW_VERSION_MINOR 1
#define TW_VERSION_PATCH 0
#define TW_VERSION_STRING "0.1.0"
#define TW_VERSION_HEX                                                         \
  ((TW_VERSION_MAJOR << 16) | (TW_VERSION_MINOR << 8) | TW_VERSION_PATCH)

/* Returns the library's version string, e.g. "0.1.0". Static storage. */
TW_EXTERN const char *tw_version(void);

/*
 * Error codes. One list, expanded into the enum, tw_strerror() and
 * tw_err_name(), so the three can never disagree.
 */
#define TW_ERRNO_MAP(XX)                                                       \
  XX(EINVAL, -1, "invalid argument")                                           \
  XX(ENOMEM, -2, "out of memory")                                              \
  XX(EFULL, -3, "agent buffer full; the event was dropped and counted")        \
  XX(ESTATE, -4, "operation not allowed in the current state")                 \
  XX(EURL, -5, "malformed collector URL")                                      \
  XX(ECLOSED, -6, "the agent is shut down")                                    \
  XX(ETIMEDOUT, -7, "timed out")                                               \
  XX(EPROTO, -8, "protocol error")                                             \
  XX(EIO, -9, "input/output error")                                            \
  XX(ETOOBIG, -10, "value too large")                                          \
  XX(ETASK, -11, "a task of the batch failed")                                 \
  XX(EUV, -12, "libuv call failed")

typedef enum tw_errno {
  TW_OK = 0,
#define TW__ERRNO_ENUM(name, value, text) TW_##name = (value),
  TW_ERRNO_MAP(TW__ERRNO_ENUM)
#undef TW__ERRNO_ENUM
} tw_errno;

/* Text for an error code ("invalid argument"). Static storage; unknown codes
 * give "unknown error". Thread-safe. */
TW_EXTERN const char *tw_strerror(int err);
/* Name of an error code ("TW_EINVAL"). Static storage. Thread-safe. */
TW_EXTERN const char *tw_err_name(int err);

/* Where a task runs: on the event loop (async) or in a thread pool (sync).
 * The values are part of the wire protocol and the store. */
typedef enum tw_mode { TW_MODE_LOOP = 0, TW_MODE_THREADPOOL = 1 } tw_mode;

/* ------------------------------------------------------------------------
 * Agent
 * ------------------------------------------------------------------------ */

typedef struct tw_agent tw_agent;

#define TW_DEFAULT_COLLECTOR "tcp://127.0.0.1:7460"
#define TW_DEFAULT_BUFFER_BYTES (8u * 1024u * 1024u)
#define TW_DEFAULT_FLUSH_TIMEOUT_MS 1000u

/*
 * Agent settings. Initialise with tw_config_init() (defaults) or
 * tw_config_from_env() (defaults overridden by the environment), then change
 * fields as needed. String fields are borrowed until tw_agent_new() returns;
 * the agent keeps copies.
 */
typedef struct tw_config {
  /* Collector URL: "tcp://HOST:PORT" ("tcp://[::1]:PORT" for IPv6),
   * "tls://HOST:PORT" (TLS, docs/tls.md) or "unix:/PATH". NULL: the
   * default. */
  const char *collector;
  /* Service name. NULL: the program name. */
  const char *service;
  /* Shared secret sent in the handshake. NULL: none. */
  const char *token;
  /* Upper bound on all memory the agent holds for events: the per-thread
   * rings (at most half of it), the resend buffer and the name table.
   * 0: TW_DEFAULT_BUFFER_BYTES; values below 1 MiB are raised to 1 MiB. */
  size_t buffer_bytes;
  /* How long tw_agent_free() waits for the collector to acknowledge what
   * was recorded. 0: TW_DEFAULT_FLUSH_TIMEOUT_MS. */
  unsigned flush_timeout_ms;
  /* For a tls:// collector (PEM files; paths copied by tw_agent_new()):
   * the CAs that sign the collector's certificate (NULL: the system's
   * trust store), and the agent's own certificate and key for mutual TLS
   * (NULL: none; both or neither). */
  const char *tls_ca;
  const char *tls_cert;
  const char *tls_key;
  /* Nonzero: tracing off (see tw_agent_new()). 0: on, unless the
   * environment says TASKWATCH_DISABLED=1. Takes one of the reserved
   * slots, so it has their size. */
  uintptr_t disabled;
  /* Room for the settings later versions add, so that the struct keeps
   * its size and layout across the soname's versions (a program built
   * against an older header passes a struct as large as the library
   * reads). tw_config_init() zeroes it; leave it zero. */
  void *reserved[12];
} tw_config;

/* Fills *cfg with the defaults. Never fails. */
TW_EXTERN void tw_config_init(tw_config *cfg);

/*
 * Fills *cfg with the defaults, then applies TASKWATCH_COLLECTOR,
 * TASKWATCH_SERVICE, TASKWATCH_TOKEN, TASKWATCH_TLS_CA, TASKWATCH_TLS_CERT,
 * TASKWATCH_TLS_KEY, TASKWATCH_BUFFER_BYTES, TASKWATCH_FLUSH_TIMEOUT_MS
 * and TASKWATCH_DISABLED ("1": disabled set; "0" or empty: left 0).
 * TASKWATCH_BUFFER_BYTES is a byte count with
 * an optional unit, as GNU coreutils reads them: "8388608", "8MiB" or
 * "8M" (powers of 1024: k, M, G, T and KiB, MiB, GiB, TiB), "8MB"
 * (powers of 1000: kB, MB, GB, TB); whole numbers only, letters of either
 * case. The string fields then point into the environment, so copy them
 * or call tw_agent_new() before changing it.
 * Returns TW_EINVAL when a numeric variable is malformed (the field keeps
 * its default) or TASKWATCH_CLOCK is not one of its values (see
 * tw_clock_source()). Not thread-safe against concurrent setenv().
 */
TW_EXTERN int tw_config_from_env(tw_config *cfg);

/*
 * Creates an agent and starts its sender thread. It never waits for the
 * collector: when it is absent, events are buffered up to the cap and then
 * dropped and counted. cfg NULL means tw_config_from_env(). On success
 * *out owns the agent; release it with tw_agent_free(). Errors: TW_EINVAL,
 * TW_EURL, TW_ENOMEM, TW_EUV. Thread-safe.
 *
 * Tracing off: when cfg->disabled is nonzero, or the environment has
 * TASKWATCH_DISABLED=1 (whichever way the agent is configured; another
 * value than "0", "1" or empty is ignored here and reported by
 * tw_config_from_env()), the agent records nothing: it starts no sender
 * thread, allocates no rings and never connects. The trace calls check
 * their arguments as usual, then return 0 at once (tw_batch_begin() and
 * tw_task_enqueue() still hand out distinct nonzero ids), and the batch
 * runner runs batches with the same semantics (order, skip after a
 * failure, callbacks). tw_agent_get_stats() gives all counters 0 and
 * conn_state TW_CONN_STOPPED; tw_agent_flush() returns 0 at once. For
 * measuring a server without tracing, or switching it off without a
 * rebuild.
 */
TW_EXTERN int tw_agent_new(const tw_config *cfg, tw_agent **out);

/*
 * Waits until every event recorded before the call is acknowledged by the
 * collector (stored and committed), or until timeout_ms passes. Returns 0,
 * or TW_ETIMEDOUT. Thread-safe; must not be called from a recording path.
 * The agent tells the collector it waits (FLUSH, protocol version 5), so
 * the collector commits those events within its --flush-ms.
 */
TW_EXTERN int tw_agent_flush(tw_agent *agent, unsigned timeout_ms);

/*
 * Flushes for at most the configured flush timeout, says goodbye to the
 * collector, stops the sender thread and frees the agent. NULL is a no-op.
 * No other call may use the agent during or after this one.
 */
TW_EXTERN void tw_agent_free(tw_agent *agent);

/*
 * The clock the recording calls stamp events with in this process:
 *
 *   "tsc"        the CPU's time-stamp counter (a few ns to read), converted
 *                to CLOCK_MONOTONIC by the sender thread, which calibrates
 *                it against that clock at every drain;
 *   "monotonic"  clock_gettime(CLOCK_MONOTONIC) (20-30 ns on a VM).
 *
 * Chosen once, when the first agent is created, by the environment
 * variable TASKWATCH_CLOCK: "auto" (or unset, the default) takes the
 * counter when the CPU says it is invariant (flags constant_tsc and
 * nonstop_tsc), the kernel has not replaced it with another timer (hpet,
 * acpi_pm) and it is cheaper to read than the clock, even when the
 * kernel's clocksource is kvm-clock; "tsc" forces the counter on any x86
 * CPU; "monotonic" forces clock_gettime, the fallback everywhere else. The
 * variable applies whichever way the agent is configured; a value other
 * than these three means "auto" (and tw_config_from_env() reports it).
 * "tsc" moves to "monotonic" once, for good, if the agent finds that the
 * counters of two CPUs disagree (a thread's times stepping back). Event
 * times are the same clock either way: wall-clock time of CLOCK_MONOTONIC
 * precision, never going backwards on a thread. Returns "monotonic" before
 * any agent exists. Static storage. Thread-safe.
 */
TW_EXTERN const char *tw_clock_source(void);

/*
 * The agent's connection to the collector (tw_agent_stats.conn_state).
 * XX(NAME, value, text), expanded into the enum and tw_conn_state_name().
 */
#define TW_CONN_STATE_MAP(XX)                                                  \
  XX(CONNECTING, 0, "connecting")                                              \
  XX(CONNECTED, 1, "connected")                                                \
  XX(WAITING, 2, "waiting to reconnect")                                       \
  XX(STOPPED, 3, "stopped")

typedef enum tw_conn_state {
#define TW__CONN_STATE_ENUM(name, value, text) TW_CONN_##name = (value),
  TW_CONN_STATE_MAP(TW__CONN_STATE_ENUM)
#undef TW__CONN_STATE_ENUM
} tw_conn_state;

/*
 * Why the collector last refused this agent, or could not be reached
 * (tw_agent_stats.refusal, tw_agent_refusal()): XX(NAME, value, text),
 * expanded into the enum and tw_refusal_name().
 *
 *   UNREACHABLE  no connection: nothing listens, no route, a name that
 *                does not resolve, no answer to the handshake
 *   AUTH         the collector refused the token
 *   VERSION      no protocol version both speak
 *   REFUSED      any other refusal the collector gave (an ERROR frame)
 *   STORE_LOST   the collector's store lost events it had acknowledged;
 *                the agent went on as a new instance
 *   PROTOCOL     the collector broke the protocol (a malformed frame)
 *   TLS          a tls:// connection failed its handshake (the collector's
 *                certificate, its host name, the agent's TLS files)
 */
#define TW_REFUSAL_MAP(XX)                                                     \
  XX(NONE, 0, "none")                                                          \
  XX(UNREACHABLE, 1, "collector unreachable")                                  \
  XX(AUTH, 2, "authentication failed")                                         \
  XX(VERSION, 3, "protocol version not supported")                             \
  XX(REFUSED, 4, "refused by the collector")                                   \
  XX(STORE_LOST, 5, "the collector's store lost acknowledged events")          \
  XX(PROTOCOL, 6, "protocol error")                                            \
  XX(TLS, 7, "TLS failure")

typedef enum tw_refusal {
#define TW__REFUSAL_ENUM(name, value, text) TW_REFUSAL_##name = (value),
  TW_REFUSAL_MAP(TW__REFUSAL_ENUM)
#undef TW__REFUSAL_ENUM
} tw_refusal;

/* Text of a tw_conn_state ("connected"); "unknown" for other values.
 * Static storage. Thread-safe. */
TW_EXTERN const char *tw_conn_state_name(int state);
/* Text of a tw_refusal ("authentication failed"); "unknown" for other
 * values. Static storage. Thread-safe. */
TW_EXTERN const char *tw_refusal_name(int code);

/* Counters kept by the agent, for the host's own health reporting. */
typedef struct tw_agent_stats {
  uint64_t recorded;        /* events accepted into a ring */
  uint64_t dropped;         /* events dropped because memory hit the cap */
  uint64_t sent;            /* events written to the collector (resends too) */
  uint64_t acked;           /* events acknowledged after commit */
  uint64_t reconnects;      /* connections made after the first */
  uint64_t buffered_bytes;  /* bytes held now: rings, resend buffer, names;
                              never above the configured buffer_bytes */
  uint64_t conn_state;      /* a tw_conn_state: connected now or not */
  uint64_t refusal;         /* the last tw_refusal since the agent started
                               (kept after a later connection works); the
                               reason's text: tw_agent_refusal() */
  uint64_t strings_cut;     /* names, labels and error strings cut to their
                               limit (see "Limits" below) */
  uint64_t names_replaced;  /* names and labels recorded as the overflow
                               name: the agent's name table was full */
  uint64_t dropped_batches; /* batches refused whole at tw_batch_begin() */
  uint64_t dropped_tasks;   /* tasks refused whole at tw_task_enqueue(),
                               those enqueued into refused batches too */
  /* dropped_batches by the rule that refused them: */
  uint64_t refused_ring;     /* the calling thread's ring was past its
                                mark (the sender had not drained it; or
                                the thread could get no ring) */
  uint64_t refused_pressure; /* the sender's last drain found the resend
                                buffer full (the collector behind or
                                away) or some ring nearly full */
  uint64_t refused_backlog;  /* the batch runner's thread pool was
                                behind by more than its rings can hold */
  /* Room for the counters later versions add, so that the struct keeps
   * its size across the soname's versions; zero until then. */
  uint64_t reserved[7];
} tw_agent_stats;

TW_EXTERN void tw_agent_get_stats(tw_agent *agent, tw_agent_stats *out);

/*
 * Why the collector last refused this agent or could not be reached: the
 * code (a tw_refusal; TW_REFUSAL_NONE when nothing went wrong since the
 * agent started) is returned, and one line saying why (the collector's
 * own reason, e.g. "authentication failed", or the system's, e.g.
 * "connection refused (tcp://127.0.0.1:7460)") is copied into buf,
 * NUL-terminated and cut to size (size 0: nothing copied; at most
 * 255 bytes and the NUL). The refusal stays until the next one;
 * tw_agent_stats.conn_state says whether the agent is connected now.
 * Thread-safe.
 */
TW_EXTERN int tw_agent_refusal(tw_agent *agent, char *buf, size_t size);

/* ------------------------------------------------------------------------
 * Low-level trace calls
 *
 * For servers with their own executors. Ids are per agent instance and
 * never 0; the collector turns them into store-wide ids. All calls are
 * thread-safe, lock-free, allocation-free and syscall-free; they return
 * TW_EFULL when the event had to be dropped (the drop is counted).
 *
 * Whole batches and tasks. When the agent must drop (its buffer is full:
 * a collector down or slower than the host), it drops whole batches and
 * tasks, decided when one begins. Each thread's ring keeps two slots for
 * every task the thread admitted that is still open (its START and its
 * final event: finish, skip; fail or drop); tw_batch_begin() refuses a
 * batch while the ring's records and that room would take more than 3/4
 * of it, while any ring is more than 7/8 full or the resend buffer is
 * full, or (tw_batch_run()'s batches) while the sync tasks of the running
 * batches not yet ended, which libuv's pool runs on threads of their own,
 * would take more than 3/4 of the smallest other ring at two events a
 * task; tw_task_enqueue() refuses a task of an admitted batch only past
 * 7/8 (a batch of over a thousand tasks recorded in one burst at the
 * default budget). So a stored task does not miss its start or its end
 * as long as each task ends with one of those events. The room kept
 * bounds the tasks a thread keeps open: at the default budget new
 * batches are refused while the first thread to record has about 12,000
 * open, another thread about 1,500 (tw_batch_run()'s sync tasks count on
 * their pool thread's ring once started). Tasks a thread admits and
 * another ends are counted over every ring, at the cost of a walk over
 * the rings on each admission past that bound. (A low-level caller
 * that queues many tasks for a pool of its own sizes the budget for their
 * events: the agent cannot see that queue.) A failure's or drop's
 * strings that the ring has no room for go to a spill block, below, and
 * the event takes one slot; calls beyond those take room of their own,
 * and are dropped and counted when there is none. A refused batch or
 * task still gets an id, with TW_ID_REFUSED set, and the call returns
 * TW_EFULL; every call on
 * that id, and every tw_task_enqueue() into a refused batch, returns
 * TW_EFULL at once (a flag test) and counts one dropped event
 * (tw_agent_stats: dropped_batches, dropped_tasks, dropped).
 *
 * Limits (their values live in common/limit.h; tw_limit_value() gives
 * them). Task names and batch labels: at most 1,024 bytes. An agent
 * instance keeps at most 4,094 distinct names and labels and 128 KiB of
 * their text; further new ones are recorded as "(too many distinct
 * names)" and counted in tw_agent_stats.names_replaced. tw_task_fail():
 * error type 256 bytes, message 4 KiB, detail 32 KiB; tw_task_drop():
 * reason 4 KiB; tw_batch_link(): 256 bytes. A string over its limit is
 * cut at a UTF-8 character boundary and ends in "…" (U+2026, 3 bytes; the
 * cut string, mark included, is within the limit), and counted in
 * tw_agent_stats.strings_cut; the call still returns 0.
 *
 * These sizes hold on every thread. A thread's ring holds a record of at
 * most half its size (at the default budget the first nine threads' rings
 * hold a failure at every limit, later threads' smaller rings do not):
 * a failure's or drop's strings too large for the ring, or for the room
 * it has left, go whole into a spill block the agent's threads share,
 * taken and given back without a lock (the sender frees it once the
 * event is encoded). At the default budget up to 64 blocks can be in use
 * at once, as the budget has room beside the rings and the resend
 * buffer, and 3 (the spares, kept ready) even when it is full; smaller
 * budgets have fewer (at the smallest, 1 MiB, one spare and one or two
 * more while the budget has room). Only when no block can be had is the
 * detail, then the message, cut to fit half the ring, marked and counted
 * as above.
 * ------------------------------------------------------------------------ */

/*
 * The limits above, as numbers: XX(NAME, value, text), expanded into the
 * enum; tw_limit_value() returns each one's value.
 *
 *   NAME           bytes of a task name or batch label
 *   NAMES          distinct names and labels an agent instance keeps
 *   NAME_TEXT      bytes of their text an agent instance keeps
 *   ERROR_TYPE     bytes of tw_task_fail()'s error type
 *   ERROR_MESSAGE  bytes of its message
 *   ERROR_DETAIL   bytes of its detail
 *   DROP_REASON    bytes of tw_task_drop()'s reason
 *   TRACEPARENT    bytes of tw_batch_link()'s traceparent
 *   REFUSAL_TEXT   bytes tw_agent_refusal() copies at most, its NUL included
 */
#define TW_LIMIT_MAP(XX)                                                       \
  XX(NAME, 0, "name or label bytes")                                           \
  XX(NAMES, 1, "distinct names and labels")                                    \
  XX(NAME_TEXT, 2, "bytes of name and label text")                             \
  XX(ERROR_TYPE, 3, "error type bytes")                                        \
  XX(ERROR_MESSAGE, 4, "error message bytes")                                  \
  XX(ERROR_DETAIL, 5, "error detail bytes")                                    \
  XX(DROP_REASON, 6, "drop reason bytes")                                      \
  XX(TRACEPARENT, 7, "traceparent bytes")                                      \
  XX(REFUSAL_TEXT, 8, "refusal reason bytes, NUL included")

typedef enum tw_limit {
#define TW__LIMIT_ENUM(name, value, text) TW_LIMIT_##name = (value),
  TW_LIMIT_MAP(TW__LIMIT_ENUM)
#undef TW__LIMIT_ENUM
} tw_limit;

/* The value of a tw_limit (bytes, or names for TW_LIMIT_NAMES); 0 for any
 * other value. For bindings that bound a string's cost before handing it
 * over. Thread-safe. */
TW_EXTERN size_t tw_limit_value(int limit);

typedef uint64_t tw_id;

/* Set in the id of a refused batch or task; such an id is never sent. */
#define TW_ID_REFUSED ((tw_id)1 << 63)

/* Starts a batch labelled e.g. "POST /send-notification/{email}" (copied;
 * may be NULL). Returns the batch id in *batch. */
TW_EXTERN int tw_batch_begin(tw_agent *agent, const char *label, tw_id *batch);

/* Records that a task named `name` was added to `batch` at `position`
 * (0-based). Returns the new task's id in *task. */
TW_EXTERN int tw_task_enqueue(tw_agent *agent, tw_id batch, uint32_t position,
                              const char *name, tw_mode mode, tw_id *task);

/* Records that the task began running on the calling thread. */
TW_EXTERN int tw_task_start(tw_agent *agent, tw_id task);

/* Records that the task returned normally. */
TW_EXTERN int tw_task_finish(tw_agent *agent, tw_id task);

/* Records that the task failed. error_type (e.g. "ValueError"), message and
 * detail (e.g. a traceback) are copied and may be NULL; over-long strings
 * are cut and marked with "…" (type 256 bytes, message 4 KiB, detail
 * 32 KiB; see "Limits" above). */
TW_EXTERN int tw_task_fail(tw_agent *agent, tw_id task, const char *error_type,
                           const char *message, const char *detail);

/* Records that the task was never run because `cause`, an earlier task of
 * the same batch, failed. */
TW_EXTERN int tw_task_skip(tw_agent *agent, tw_id task, tw_id cause);

/* Records that the task was discarded without running, e.g. because its
 * request failed; reason (copied, may be NULL) says why. */
TW_EXTERN int tw_task_drop(tw_agent *agent, tw_id task, const char *reason);

/* Records that `batch` was made while handling a request of a W3C trace:
 * traceparent is that request's header, "00-<trace-id>-<parent-id>-<flags>"
 * (copied; at most 256 bytes kept). The collector's OTLP export links the
 * batch's trace to it. Errors: TW_EINVAL (NULL agent or traceparent, batch
 * 0), TW_EFULL as the other trace calls. */
TW_EXTERN int tw_batch_link(tw_agent *agent, tw_id batch,
                            const char *traceparent);

/* ------------------------------------------------------------------------
 * Batch runner (libuv)
 * ------------------------------------------------------------------------ */

typedef struct tw_batch tw_batch;
typedef struct tw_task tw_task;
struct uv_loop_s;

/*
 * A sync task: runs on a libuv thread-pool thread. Return 0 on success;
 * anything else is a failure, described by tw_task_set_error() if the task
 * called it (otherwise error type "error" and a generic message).
 */
typedef int (*tw_sync_fn)(tw_task *task, void *arg);

/*
 * An async task: called on the loop thread; it starts its work and must call
 * tw_task_done() exactly once, on the loop thread, now or later.
 */
typedef void (*tw_async_fn)(tw_task *task, struct uv_loop_s *loop, void *arg);

/* Frees a task's argument when the batch is done with it. May be NULL. */
typedef void (*tw_free_fn)(void *arg);

/*
 * Called on the loop thread when the batch has finished. failed is the
 * 0-based position of the task that failed, or -1 when all succeeded. The
 * batch is freed right after the callback returns.
 */
typedef void (*tw_batch_done_cb)(void *data, int failed);

/* Creates an empty batch bound to `loop` (not owned). label is copied and
 * may be NULL. Records the batch's creation. Errors: TW_EINVAL, TW_ENOMEM.
 * A batch is used from its loop's thread only. */
TW_EXTERN int tw_batch_new(tw_agent *agent, struct uv_loop_s *loop,
                           const char *label, tw_batch **out);

/* Adds a sync task (thread pool) and records its enqueue. name is copied.
 * arg is owned by the batch from now on if free_arg is not NULL. Errors:
 * TW_EINVAL, TW_ENOMEM, TW_ESTATE (the batch is already running). */
TW_EXTERN int tw_batch_add(tw_batch *batch, const char *name, tw_sync_fn fn,
                           void *arg, tw_free_fn free_arg);

/* Adds an async task (event loop); otherwise as tw_batch_add(). */
TW_EXTERN int tw_batch_add_async(tw_batch *batch, const char *name,
                                 tw_async_fn fn, void *arg,
                                 tw_free_fn free_arg);

/*
 * Runs the batch's tasks in order, recording start, finish or fail of each
 * and skip of every task after a failure, then calls cb (may be NULL) and
 * frees the batch. The batch belongs to the runner from this call on. If
 * this returns an error the callback is never called and the batch is still
 * the caller's.
 */
TW_EXTERN int tw_batch_run(tw_batch *batch, tw_batch_done_cb cb, void *data);

/* Frees a batch that was never run, recording each task as dropped with
 * `reason` (copied; NULL means "not run"). NULL batch is a no-op. */
TW_EXTERN void tw_batch_drop(tw_batch *batch, const char *reason);

/* Same as tw_batch_drop(batch, NULL). */
TW_EXTERN void tw_batch_free(tw_batch *batch);

/* Sets the error a failing task reports; strings are copied, any may be
 * NULL. Call from the task itself, before it returns (sync) or before
 * tw_task_done() (async). */
TW_EXTERN void tw_task_set_error(tw_task *task, const char *error_type,
                                 const char *message, const char *detail);

/* Completes an async task: status 0 is success, anything else failure.
 * Loop thread only; exactly once per async task. */
TW_EXTERN void tw_task_done(tw_task *task, int status);

/* The task's id, as the low-level trace calls use it. */
TW_EXTERN tw_id tw_task_id(const tw_task *task);

/* The task's 0-based position in its batch. */
TW_EXTERN uint32_t tw_task_position(const tw_task *task);

#ifdef __cplusplus
}
#endif

#endif /* TASKWATCH_H */
