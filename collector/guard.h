/*
 * guard - the caps on what a peer can make the collector hold, and the
 * counters of what they refused or folded. The caps are defined here once;
 * the counters are one table (GUARD_COUNTER_MAP), so the log's last line,
 * the warnings and a metrics exporter all read the same names with the same
 * meaning.
 *
 * The counters are process-wide and thread-safe (the loop and the writer
 * thread both count), as stop.h's are: a signal-bounded process has one of
 * each.
 */
#ifndef TW_COLLECTOR_GUARD_H
#define TW_COLLECTOR_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "schema.h"

/* ---- the caps ------------------------------------------------------------ */

/* Interned strings (names and labels) of one agent instance: distinct ids,
 * and bytes (text plus GUARD_STRING_OVERHEAD each, redefinitions
 * included). The agent library defines at most 4,095 ids and 128 KiB of
 * text per instance (common/limit.h), far below both. Past either cap the
 * instance's later strings are not kept: a name or label that uses one
 * reads "(other)" (GUARD_OTHER_NAME), and the STRING events are counted as
 * strings_folded. */
#define GUARD_AGENT_STRINGS 8192u
#define GUARD_AGENT_STRING_BYTES ((size_t)1 << 20)
/* The same for every instance in memory together. */
#define GUARD_TOTAL_STRING_BYTES ((size_t)32 << 20)
/* What one interned string costs beyond its text: its header, the
 * allocator's, and its entries in the instance's map and list. */
#define GUARD_STRING_OVERHEAD 64u
/* The name a folded name or label reads, in tasks and in the rollups. */
#define GUARD_OTHER_NAME SCHEMA_OTHER_NAME

/* Rollups (collector/rollup.c): rows (service, name) of one minute in the
 * store; a task whose name would be the minute's next row past the cap
 * counts under GUARD_OTHER_NAME (rollup_folded), in its hour too. (What
 * the rollups hold in memory is one transaction's deltas.) */
#define GUARD_ROLLUP_NAMES_PER_MINUTE 256u

/* Receive buffers beyond one read chunk each, over every connection: only
 * frames longer than a chunk need them. */
#define GUARD_BUFFER_BUDGET ((size_t)32 << 20)
/* Bytes queued for a peer (acks, an ERROR frame) before it counts as one
 * that does not read them and is closed. */
#define GUARD_WRITE_QUEUE ((size_t)256 << 10)
/* Connected agents per token of --token-file, unless
 * --max-agents-per-token says otherwise. */
#define GUARD_AGENTS_PER_TOKEN 256

/* ---- the counters -------------------------------------------------------- */

/* XX(name, help), in the order they are printed. */
#define GUARD_COUNTER_MAP(XX)                                                  \
  XX(tls_handshakes, "TLS handshakes completed")                               \
  XX(tls_failures, "TLS handshakes that failed (one log line each)")           \
  XX(auth_refused, "HELLOs refused for their token or service")                \
  XX(proof_refused, "HELLOs refused for an instance they did not prove "       \
                    "they own")                                                \
  XX(token_agents_refused, "HELLOs refused: their token's agents at the cap")  \
  XX(strings_folded, "STRING events past an instance's cap, not kept")         \
  XX(rollup_folded, "tasks counted under (other) in their minute's rollups")   \
  XX(buffers_refused, "connections closed: receive buffers over the budget")   \
  XX(write_queue_closed, "connections closed: a peer that does not read")

enum guard_counter {
#define GUARD__ENUM(name, help) GUARD_##name,
  GUARD_COUNTER_MAP(GUARD__ENUM)
#undef GUARD__ENUM
      GUARD_COUNT
};

/* A snapshot of every counter, for the log and a metrics exporter. */
typedef struct guard_stats {
#define GUARD__FIELD(name, help) uint64_t name;
  GUARD_COUNTER_MAP(GUARD__FIELD)
#undef GUARD__FIELD
} guard_stats;

/* Adds one to a counter; returns its new value. Thread-safe. */
uint64_t guard_count(enum guard_counter which);
/* Whether the n-th occurrence of something is logged: the 1st, 2nd, 4th,
 * 8th, ... so a peer repeating it cannot flood the log. */
int guard_log_due(uint64_t n);
/* Copies every counter (relaxed loads). Thread-safe. */
void guard_get(guard_stats *out);
/* The name ("strings_folded") and one-line help of a counter. */
const char *guard_name(enum guard_counter which);
const char *guard_help(enum guard_counter which);
/* Writes "name=value" pairs of every counter, space-separated, into buf
 * (snprintf's semantics). */
int guard_format(char *buf, size_t size);

#endif /* TW_COLLECTOR_GUARD_H */
