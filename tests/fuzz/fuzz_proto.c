/*
 * fuzz_proto - libFuzzer target for everything the collector does with
 * bytes from the network before SQLite: the frame splitter, every message
 * decoder, and ingest's validation and coalescing of EVENTS (sequence
 * numbers, string ids, id ranges, GOODBYE). The input is one connection's
 * byte stream after a handshake; the first input byte picks whether a
 * HELLO is sent for it (of version 3 or of this version) or the stream
 * must bring its own.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ingest.h"
#include "log.h"
#include "proto.h"
#include "schema.h"

static sqlite3 *db;

/* Every event that decodes encodes back to the very bytes it came from,
 * through the general encoder and through the agent's in-place one, at
 * the version and in a frame of the base_time it was decoded with (a
 * first event of that time sets the base). */
static void reencode(const uint8_t *from, const uint8_t *to,
                     const proto_event *ev, uint16_t version, int64_t base) {
  static proto_buf general, fixed;
  static uint8_t room[PROTO_FRAME_MAX];
  proto_event first = {.kind = PROTO_EV_FINISH, .time_ns = base, .task = 1};
  size_t n = (size_t)(to - from);
  tw__proto_buf_reset(&general);
  tw__proto_events_open(&general, version, 1);
  tw__proto_put_event(&general, &first);
  size_t start = general.len;
  tw__proto_put_event(&general, ev);
  if (tw__proto_buf_failed(&general) || general.len - start != n ||
      memcmp(general.data + start, from, n) != 0 ||
      tw__proto_event_size(ev, version, base) != n)
    __builtin_trap();
  fixed.data = room;
  fixed.cap = sizeof(room);
  tw__proto_buf_reset(&fixed);
  tw__proto_events_open(&fixed, version, 1);
  if (tw__proto_events_append(&fixed, &first) != 0)
    __builtin_trap();
  start = fixed.len;
  if (tw__proto_events_append(&fixed, ev) != 0 || fixed.len - start != n ||
      memcmp(fixed.data + start, from, n) != 0)
    __builtin_trap();
}

static void decode_any(const proto_frame *f) {
  proto_hello h;
  proto_welcome w;
  proto_str s;
  uint64_t v;
  proto_events it;
  proto_event ev;
  tw__proto_decode_hello(f->payload, f->payload_len, &h);
  tw__proto_decode_welcome(f->payload, f->payload_len, &w);
  tw__proto_decode_error(f->payload, f->payload_len, &s);
  proto_ack ack;
  for (uint16_t at = PROTO_VERSION_MIN; at <= PROTO_VERSION; at++)
    tw__proto_decode_ack(f->payload, f->payload_len, at, &ack);
  tw__proto_decode_goodbye(f->payload, f->payload_len, PROTO_VERSION, &v);
  /* The fixed encoding (versions 1 to 3) and the compact one. */
  for (uint16_t v = 3; v <= PROTO_VERSION; v++) {
    if (tw__proto_events_begin(&it, f->payload, f->payload_len, v) != 0)
      continue;
    const uint8_t *at = it.p;
    while (tw__proto_events_next(&it, &ev) == 0) {
      reencode(at, it.p, &ev, v, it.base_time);
      at = it.p;
    }
  }
}

static agent *synthetic_hello(ingest *in, uint16_t version) {
  proto_hello h;
  memset(&h, 0, sizeof(h));
  memset(h.instance, 0x5a, sizeof(h.instance));
  h.version = version;
  const char *reason = NULL;
  return ingest_hello(in, &h, NULL, NULL, 1, &reason);
}

/* Feeds one connection's frames to ingest as server.c does: the first
 * error ends the connection. */
static void run_stream(ingest *in, agent *a, uint16_t version,
                       const uint8_t *p, size_t n) {
  size_t off = 0;
  proto_frame f;
  while (tw__proto_frame_next(p + off, n - off, a ? 0 : tw__proto_hello_limit(), &f) ==
         0) {
    off += f.frame_len;
    decode_any(&f);
    const char *reason = NULL;
    if (a == NULL) {
      proto_hello h;
      char why[160];
      int rc = f.type == PROTO_HELLO
                   ? tw__proto_decode_hello(f.payload, f.payload_len, &h)
                   : PROTO_E_TYPE;
      if (rc == PROTO_E_VERSION)
        tw__proto_version_refusal(why, sizeof(why), "agent", h.version_min,
                              h.version, "collector");
      if (rc != 0 || tw__proto_version_pick(h.version_min, h.version, &version))
        return;
      a = ingest_hello(in, &h, NULL, NULL, 1, &reason);
      if (a == NULL)
        return;
      continue;
    }
    if (f.type == PROTO_EVENTS) {
      if (ingest_events(in, a, version, f.payload, f.payload_len, &reason) != 0)
        return;
    } else if (f.type == PROTO_GOODBYE) {
      uint64_t last;
      if (tw__proto_decode_goodbye(f.payload, f.payload_len, version, &last) != 0 ||
          ingest_goodbye(in, a, last, &reason) != 0)
        return;
    } else if (f.type == PROTO_FLUSH && version >= PROTO_FLUSH_SINCE) {
      uint64_t last;
      if (tw__proto_decode_flush(f.payload, f.payload_len, version, &last) != 0 ||
          ingest_flush(in, a, last, &reason) != 0)
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
  ingest *in = ingest_new(db, 1000, INT64_C(300000000), 0);
  /* Bit 1 of the first byte: a synthetic HELLO of version 3 (fixed-width
   * events) rather than this version's (compact ones). */
  uint16_t version = (data[0] & 2) ? 3 : PROTO_VERSION;
  agent *a = (data[0] & 1) ? NULL : synthetic_hello(in, version);
  run_stream(in, a, version, data + 1, size - 1);
  wbatch_free(ingest_take(in));
  ingest_free(in);
  return 0;
}
