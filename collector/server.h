/*
 * server - the collector's event loop: listeners, connections, framing,
 * the handshake (token, proof of instance ownership), backpressure, acks,
 * the reload on SIGHUP and the orderly shutdown on SIGTERM or SIGINT.
 * Events go to ingest.h; batches to writer.h; tokens and proofs to auth.h;
 * TLS sessions to tls.h.
 */
#ifndef TW_COLLECTOR_SERVER_H
#define TW_COLLECTOR_SERVER_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "export.h"
#include "store.h"
#include "tls.h"

typedef struct server_config {
  const char *const *listen; /* URLs: tcp://, tls://HOST:PORT, unix:/PATH */
  size_t nlisten;
  int socket_mode; /* permissions of unix sockets, e.g. 0600 */
  long socket_gid; /* their group; -1: the collector's own */
  /* The server takes both: it replaces them on SIGHUP and frees them. */
  token_table *tokens;    /* NULL: no token required */
  const char *token_file; /* where tokens are reloaded from */
  tls_server *tls;        /* NULL: no tls:// listener */
  int require_proof;      /* refuse HELLOs without a proof (version 1) */
  int max_agents_per_token;
  int max_connections;
  int64_t handshake_timeout_ms; /* also the limit for finishing a frame */
  int64_t lost_after_ms;
  int64_t flush_ms; /* how long a batch that is due early may fill before
                       its commit (batch.h, wbatch_commit_wait_ms()) */
  size_t high_watermark; /* batch bytes that pause reading */
  int prune;             /* run retention steps */
  const export_config *exports; /* metrics and OTLP; NULL: none */
  int64_t max_clock_skew_us;    /* events further ahead are clamped */
} server_config;

/* Figures printed at exit. */
typedef struct server_summary {
  int started; /* the listeners were up */
  uint64_t connections;
  uint64_t rejected;
  int64_t latency_p50_us, latency_p99_us;
} server_summary;

/*
 * Runs until SIGTERM or SIGINT. st is the open store (the writer thread
 * uses it); db a read-only connection to the same file. Returns 0 after a
 * clean shutdown, 1 when a listener could not be set up (logged) or a
 * batch could not be written.
 */
int server_run(const server_config *cfg, store *st, sqlite3 *db,
               server_summary *summary);

#endif /* TW_COLLECTOR_SERVER_H */
