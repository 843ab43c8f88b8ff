/*
 * fuzz_proto - libFuzzer target for everything the collector does with
 * bytes from the network before SQLite: the frame splitter, every message
 * decoder, and ingest's validation and coalescing of EVENTS (sequence
 * numbers, string ids, id ranges, GOODBYE). The input is one connection's
 * byte stream after a handshake; the first input byte picks whether a
 * HELLO is sent for it or the stream must bring its own.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ingest.h"
#include "log.h"
#include "proto.h"
#include "schema.h"

static sqlite3 *db;

static void decode_any(const proto_frame *f) {
  proto_hello h;
  proto_welcome w;
  proto_str s;
  uint64_t v;
  proto_events it;
  proto_event ev;
  proto_decode_hello(f->payload, f->payload_len, &h);
  proto_decode_welcome(f->payload, f->payload_len, &w);
  proto_decode_error(f->payload, f->payload_len, &s);
  proto_decode_u64(f->payload, f->payload_len, &v);
  if (proto_events_begin(&it, f->payload, f->payload_len) == 0)
    while (proto_events_next(&it, &ev) == 0)
      ;
}

static agent *synthetic_hello(ingest *in) {
  proto_hello h;
  memset(&h, 0, sizeof(h));
  memset(h.instance, 0x5a, sizeof(h.instance));
  h.version = PROTO_VERSION;
  const char *reason = NULL;
  return ingest_hello(in, &h, 1, &reason);
}

/* Feeds one connection's frames to ingest as server.c does: the first
 * error ends the connection. */
static void run_stream(ingest *in, agent *a, const uint8_t *p, size_t n) {
  size_t off = 0;
  proto_frame f;
  while (proto_frame_next(p + off, n - off, 0, &f) == 0) {
    off += f.frame_len;
    decode_any(&f);
    const char *reason = NULL;
    if (a == NULL) {
      proto_hello h;
      if (f.type != PROTO_HELLO ||
          proto_decode_hello(f.payload, f.payload_len, &h) != 0)
        return;
      a = ingest_hello(in, &h, 1, &reason);
      if (a == NULL)
        return;
      continue;
    }
    if (f.type == PROTO_EVENTS) {
      if (ingest_events(in, a, f.payload, f.payload_len, &reason) != 0)
        return;
    } else if (f.type == PROTO_GOODBYE) {
      uint64_t last;
      if (proto_decode_u64(f.payload, f.payload_len, &last) != 0 ||
          ingest_goodbye(in, a, last, &reason) != 0)
        return;
    } else {
      return;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (db == NULL) {
    char *err = NULL;
    log_set_level(LOG_ERROR);
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        schema_apply(db, &err) != SQLITE_OK)
      __builtin_trap();
  }
  if (size == 0)
    return 0;
  ingest *in = ingest_new(db, 1000, 0);
  agent *a = (data[0] & 1) ? NULL : synthetic_hello(in);
  run_stream(in, a, data + 1, size - 1);
  wbatch_free(ingest_take(in));
  ingest_free(in);
  return 0;
}
