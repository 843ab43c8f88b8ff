/*
 * proto - the taskwatch wire protocol (docs/protocol.md): frame encoding for
 * the agent and the collector, and a strict decoder for everything that
 * arrives from outside. The decoder never reads past the bytes it is given,
 * never allocates, and rejects anything that is not exactly well formed.
 *
 * One owner. Every message and every event kind is described once, in the
 * tables below (X-macros, as TW_ERRNO_MAP does for errors): its fields in
 * wire order, each with its type, the range a decoder accepts and the
 * protocol version it appears in. proto.c generates from them the encoder,
 * the strict decoder, every size, the agent's in-place EVENTS encoder and
 * the patches of an EVENTS frame's header; no other file knows a layout.
 *
 * Versions, as the store has them. This code speaks PROTO_VERSION_MIN ..
 * PROTO_VERSION. The agent announces its range in HELLO; the collector
 * picks the highest version in both ranges and names it in WELCOME, or
 * refuses with an ERROR naming both ranges. Everything after the handshake
 * is encoded and decoded at the agreed version. A later change to a layout
 * is a table edit (a field or kind with a higher `since`) and a version
 * bump. Three things never change, so that peers of any versions can
 * always negotiate: the frame header, the start of HELLO (magic, version,
 * and from version 2 on version_min) and of WELCOME (version), and ERROR.
 * HELLO's other fields may only be appended.
 */
#ifndef TW_PROTO_H
#define TW_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limit.h"

#define PROTO_VERSION_MIN 1 /* the oldest version this code speaks */
#define PROTO_VERSION 6     /* the newest */
#define PROTO_MAGIC 0x31505754u
#define PROTO_HEADER_SIZE 6 /* u32 length + u16 type */
#define PROTO_INSTANCE_SIZE 16
/* HELLO carries version_min from this version on; before, a HELLO's
 * version is both ends of the agent's range. */
#define PROTO_HELLO_RANGE_SINCE 2
/* From this version on an event's fields are compact (docs/protocol.md):
 * its u16, u32 and u64 fields are LEB128 varints, its time a zigzag
 * varint of the difference from the frame's base_time (the EVENTS
 * header); u8 fields and strings are as before. The tables do not
 * change: the expansions of proto_gen.h pick the encoding. */
#define PROTO_COMPACT_SINCE 4
/* The longest varint: a u64 in groups of 7 bits. */
#define PROTO_VARINT_MAX 10

/*
 * The tables. A field is F(TYPE, name, member, lo, hi, since):
 *   TYPE   U8 U16 U32 U64 I64 (little-endian), ID (PROTO_INSTANCE_SIZE
 *          bytes), STR (u16 count + bytes), LSTR (u32 count + bytes);
 *   name   its name in docs/protocol.md;
 *   member the C struct member holding it;
 *   lo hi  integers: the range a decoder accepts (outside: PROTO_E_FIELD);
 *          strings: hi is the longest (longer: PROTO_E_FIELD; the encoder
 *          truncates); unused for I64 and ID;
 *   since  the first protocol version that has the field.
 */

/* Message types, numbered in ranges by direction. */
#define PROTO_MESSAGE_MAP(XX)                                                  \
  XX(HELLO, 100) /* agent -> collector, control */                             \
  XX(GOODBYE, 101)                                                             \
  XX(PROOF, 102)   /* from version 2 */                                        \
  XX(FLUSH, 103)   /* from version 5 */                                        \
  XX(EVENTS, 200)  /* agent -> collector, data */                              \
  XX(WELCOME, 300) /* collector -> agent */                                    \
  XX(ACK, 301)                                                                 \
  XX(ERROR, 302)                                                               \
  XX(CHALLENGE, 303) /* from version 2 */

/* HELLO after its fixed start (magic u32, version u16, version_min u16
 * from PROTO_HELLO_RANGE_SINCE on). Append only. */
#define PROTO_FIELDS_HELLO(F)                                                  \
  F(ID, instance, instance, 0, 0, 1)                                           \
  F(U32, pid, pid, 0, UINT32_MAX, 1)                                           \
  F(I64, started_at, started_at_ns, 0, 0, 1)                                   \
  F(STR, service, service, 0, PROTO_IDENT_MAX, 1)                              \
  F(STR, host, host, 0, PROTO_IDENT_MAX, 1)                                    \
  F(STR, token, token, 0, PROTO_IDENT_MAX, 1)                                  \
  F(STR, key, key, 0, PROTO_KEY_MAX, 2)

#define PROTO_FIELDS_GOODBYE(F) F(U64, last_seq, last_seq, 0, UINT64_MAX, 1)

/* FLUSH (version 5): the agent waits for the ack of every event up to
 * last_seq (tw_agent_flush()), so the collector commits the batch that
 * holds them as soon as it would a full one (docs/collector.md,
 * "Transactions"), not after the longer wait of a batch of few events. */
#define PROTO_FLUSH_SINCE 5
#define PROTO_FIELDS_FLUSH(F) F(U64, last_seq, last_seq, 0, UINT64_MAX, 5)

/* The EVENTS header; `count` events follow. From PROTO_COMPACT_SINCE on
 * it carries the time its events' times are counted from (the first
 * event's, as the agent encodes). */
#define PROTO_FIELDS_EVENTS(F)                                                 \
  F(U64, first_seq, first_seq, 1, UINT64_MAX, 1)                               \
  F(U32, count, count, 1, UINT32_MAX, 1)                                       \
  F(I64, base_time, base_time, 0, 0, 4)

/* WELCOME after its fixed start (version u16: the version chosen). */
#define PROTO_FIELDS_WELCOME(F)                                                \
  F(U64, next_seq, next_seq, 0, UINT64_MAX, 1)                                 \
  F(U32, max_frame, max_frame, 0, UINT32_MAX, 1)

/* ACK (hold_ms from version 6): every event before next_seq is committed;
 * hold_ms is how long the agent may keep new events before it writes
 * them (0: as its own pace has it). The collector says so when its
 * transactions are far apart anyway (docs/protocol.md, "ACK"). */
#define PROTO_HOLD_SINCE 6
#define PROTO_HOLD_MAX_MS 60000
#define PROTO_FIELDS_ACK(F)                                                    \
  F(U64, next_seq, next_seq, 0, UINT64_MAX, 1)                                 \
  F(U32, hold_ms, hold_ms, 0, PROTO_HOLD_MAX_MS, 6)

/* Proof of instance ownership (version 2): the collector may answer a
 * HELLO that carries a key with CHALLENGE; the agent answers PROOF, its
 * signature of tw__proto_proof_message() with the instance's key, and
 * only then gets WELCOME. Both come before WELCOME says the version
 * agreed, so both sides encode them at PROTO_PROOF_SINCE, always. */
#define PROTO_PROOF_SINCE 2
#define PROTO_FIELDS_CHALLENGE(F) F(STR, nonce, text, 0, PROTO_KEY_MAX, 2)
#define PROTO_FIELDS_PROOF(F) F(STR, signature, text, 0, PROTO_SIGNATURE_MAX, 2)

/* Never changes: a refusal must be readable whatever the versions. */
#define PROTO_FIELDS_ERROR(F) F(STR, reason, reason, 0, PROTO_SHORT_MAX, 1)

/* Event kinds: XX(NAME, number, since). Every event starts with
 * PROTO_FIELDS_EVENT; PROTO_FIELDS_<NAME> follow. */
#define PROTO_EVENT_MAP(XX)                                                    \
  XX(STRING, 1, 1)                                                             \
  XX(BATCH, 2, 1)                                                              \
  XX(ENQUEUE, 3, 1)                                                            \
  XX(START, 4, 1)                                                              \
  XX(FINISH, 5, 1)                                                             \
  XX(FAIL, 6, 1)                                                               \
  XX(SKIP, 7, 1)                                                               \
  XX(DROP, 8, 1)                                                               \
  XX(HEALTH, 9, 1)                                                             \
  XX(LINK, 10, 2) /* a batch's request trace (W3C traceparent) */

#define PROTO_FIELDS_EVENT(F)                                                  \
  F(U8, kind, kind, 0, UINT8_MAX, 1)                                           \
  F(I64, time, time_ns, 0, 0, 1)
#define PROTO_FIELDS_STRING(F)                                                 \
  F(U32, id, string, 1, UINT32_MAX, 1)                                         \
  F(STR, text, text, 0, PROTO_SHORT_MAX, 1)
#define PROTO_FIELDS_BATCH(F)                                                  \
  F(U64, batch, batch, 1, UINT64_MAX, 1)                                       \
  F(U32, label, string, 0, UINT32_MAX, 1)
#define PROTO_FIELDS_ENQUEUE(F)                                                \
  F(U64, task, task, 1, UINT64_MAX, 1)                                         \
  F(U64, batch, batch, 1, UINT64_MAX, 1)                                       \
  F(U32, position, position, 0, UINT32_MAX, 1)                                 \
  F(U32, name, string, 1, UINT32_MAX, 1)                                       \
  F(U8, mode, mode, 0, 1, 1)                                                   \
  F(U64, thread, other, 0, UINT64_MAX, 1)
#define PROTO_FIELDS_START(F)                                                  \
  F(U64, task, task, 1, UINT64_MAX, 1)                                         \
  F(U64, thread, other, 0, UINT64_MAX, 1)
#define PROTO_FIELDS_FINISH(F) F(U64, task, task, 1, UINT64_MAX, 1)
#define PROTO_FIELDS_FAIL(F)                                                   \
  F(U64, task, task, 1, UINT64_MAX, 1)                                         \
  F(STR, error_type, text, 0, PROTO_SHORT_MAX, 1)                              \
  F(STR, message, message, 0, PROTO_SHORT_MAX, 1)                              \
  F(LSTR, detail, detail, 0, PROTO_DETAIL_MAX, 1)
#define PROTO_FIELDS_SKIP(F)                                                   \
  F(U64, task, task, 1, UINT64_MAX, 1)                                         \
  F(U64, cause, other, 0, UINT64_MAX, 1)
#define PROTO_FIELDS_DROP(F)                                                   \
  F(U64, task, task, 1, UINT64_MAX, 1)                                         \
  F(STR, reason, text, 0, PROTO_SHORT_MAX, 1)
/* Cumulative counters of the instance; version 3 adds the batches and
 * tasks the agent refused whole (tw_agent_stats). */
#define PROTO_FIELDS_HEALTH(F)                                                 \
  F(U64, dropped, other, 0, UINT64_MAX, 1)                                     \
  F(U64, reconnects, other2, 0, UINT64_MAX, 1)                                 \
  F(U64, dropped_batches, dropped_batches, 0, UINT64_MAX, 3)                   \
  F(U64, dropped_tasks, dropped_tasks, 0, UINT64_MAX, 3)
#define PROTO_FIELDS_LINK(F)                                                   \
  F(U64, batch, batch, 1, UINT64_MAX, 2)                                       \
  F(STR, traceparent, text, 0, PROTO_LINK_MAX, 2)

enum proto_type {
#define PROTO__TYPE_ENUM(name, number) PROTO_##name = (number),
  PROTO_MESSAGE_MAP(PROTO__TYPE_ENUM)
#undef PROTO__TYPE_ENUM
};

enum proto_kind {
#define PROTO__KIND_ENUM(name, number, since) PROTO_EV_##name = (number),
  PROTO_EVENT_MAP(PROTO__KIND_ENUM)
#undef PROTO__KIND_ENUM
};

/* Decoder results (besides 0), each with its reason text. */
#define PROTO_RESULT_MAP(XX)                                                   \
  XX(NEED_MORE, 1, "incomplete frame")                                         \
  XX(E_OVERSIZED, -1, "frame larger than the limit")                           \
  XX(E_UNDERSIZED, -2, "frame shorter than its header")                        \
  XX(E_TRUNCATED, -3, "payload ends inside a field")                           \
  XX(E_TRAILING, -4, "payload has trailing bytes")                             \
  XX(E_MAGIC, -5, "bad handshake magic")                                       \
  XX(E_VERSION, -6, "unsupported protocol version")                            \
  XX(E_KIND, -7, "unknown event kind")                                         \
  XX(E_FIELD, -8, "field value out of range")                                  \
  XX(E_TYPE, -9, "unexpected message type")

enum proto_result {
#define PROTO__RESULT_ENUM(name, value, text) PROTO_##name = (value),
  PROTO_RESULT_MAP(PROTO__RESULT_ENUM)
#undef PROTO__RESULT_ENUM
};

/* Reason text for a proto_result code. Static storage. */
const char *tw__proto_strerror(int result);

/* A string inside a received buffer: not NUL-terminated, may hold any bytes. */
typedef struct proto_str {
  const char *ptr;
  uint32_t len;
} proto_str;

typedef struct proto_hello {
  uint16_t version;     /* the newest the agent speaks; 0: PROTO_VERSION */
  uint16_t version_min; /* the oldest; 0: PROTO_VERSION_MIN */
  uint8_t instance[PROTO_INSTANCE_SIZE];
  uint32_t pid;
  int64_t started_at_ns;
  proto_str service;
  proto_str host;
  proto_str token;
  proto_str key; /* version 2: the instance's public key; empty: none */
} proto_hello;

typedef struct proto_welcome {
  uint16_t version; /* the version chosen */
  uint64_t next_seq;
  uint32_t max_frame;
} proto_welcome;

/* An ACK. */
typedef struct proto_ack {
  uint64_t next_seq;
  uint32_t hold_ms; /* 0 below PROTO_HOLD_SINCE */
} proto_ack;

/* One decoded event; which fields are meaningful depends on kind (the
 * tables above name them). Strings point into the frame they were decoded
 * from. */
typedef struct proto_event {
  uint8_t kind;
  uint8_t mode;      /* ENQUEUE */
  uint32_t position; /* ENQUEUE */
  uint32_t string;   /* STRING: id; BATCH: label id; ENQUEUE: name id */
  int64_t time_ns;
  uint64_t task;   /* ENQUEUE START FINISH FAIL SKIP DROP */
  uint64_t batch;  /* BATCH ENQUEUE LINK */
  uint64_t other;  /* ENQUEUE/START: thread; SKIP: cause; HEALTH: dropped */
  uint64_t other2; /* HEALTH: reconnects */
  uint64_t dropped_batches; /* HEALTH, version 3 */
  uint64_t dropped_tasks;   /* HEALTH, version 3 */
  proto_str text;           /* STRING: text; FAIL: error_type; DROP: reason;
                               LINK: traceparent */
  proto_str message;        /* FAIL */
  proto_str detail;         /* FAIL */
} proto_event;

/* A frame located in a receive buffer. */
typedef struct proto_frame {
  uint16_t type;
  const uint8_t *payload;
  size_t payload_len;
  size_t frame_len; /* header + payload: bytes to consume */
} proto_frame;

/*
 * Looks at the start of buf. Returns 0 and fills *out when a whole frame is
 * there; PROTO_NEED_MORE when more bytes are needed (never with more than
 * PROTO_HEADER_SIZE + max_frame bytes outstanding); a negative proto_result
 * when the announced length is out of range. max_frame 0 means
 * PROTO_FRAME_MAX. The type is not checked here.
 */
int tw__proto_frame_next(const uint8_t *buf, size_t len, uint32_t max_frame,
                         proto_frame *out);

/* ---- versions ----------------------------------------------------------- */

/* The version to speak with a peer that speaks peer_min .. peer_max: the
 * newest both speak. 0 and *chosen set, or PROTO_E_VERSION. */
int tw__proto_version_pick(uint16_t peer_min, uint16_t peer_max,
                           uint16_t *chosen);

/* The one-line reason of a refused negotiation, naming both ranges, e.g.
 * "unsupported protocol version: agent speaks 3..4, collector 1..2".
 * `peer` names the other side ("agent"), `self` this one. snprintf's
 * return value. */
int tw__proto_version_refusal(char *buf, size_t size, const char *peer,
                              uint16_t peer_min, uint16_t peer_max,
                              const char *self);

/* ---- decoding ------------------------------------------------------------ */

/* A HELLO. Its start is read first: a bad magic is PROTO_E_MAGIC; an agent
 * range that shares no version with this code is PROTO_E_VERSION with
 * version and version_min filled (for tw__proto_version_refusal()). Fields of
 * versions newer than this code's are skipped, never an error. */
int tw__proto_decode_hello(const uint8_t *p, size_t n, proto_hello *out);
/* A WELCOME: a version this code does not speak is PROTO_E_VERSION with
 * out->version filled. */
int tw__proto_decode_welcome(const uint8_t *p, size_t n, proto_welcome *out);
int tw__proto_decode_ack(const uint8_t *p, size_t n, uint16_t version,
                         proto_ack *out);
int tw__proto_decode_goodbye(const uint8_t *p, size_t n, uint16_t version,
                             uint64_t *last_seq);
int tw__proto_decode_flush(const uint8_t *p, size_t n, uint16_t version,
                           uint64_t *last_seq);
int tw__proto_decode_error(const uint8_t *p, size_t n, proto_str *reason);
/* CHALLENGE and PROOF, each one string (the nonce, the signature) that
 * points into p. */
int tw__proto_decode_challenge(const uint8_t *p, size_t n, uint16_t version,
                               proto_str *nonce);
int tw__proto_decode_proof(const uint8_t *p, size_t n, uint16_t version,
                           proto_str *signature);

/* The bytes an agent signs to prove it owns `instance`, given the
 * collector's nonce: a fixed context string, the instance id and the
 * nonce. Writes PROTO_PROOF_MESSAGE_SIZE bytes to out. */
#define PROTO_PROOF_CONTEXT "taskwatch instance proof v2"
#define PROTO_PROOF_MESSAGE_SIZE                                               \
  (sizeof(PROTO_PROOF_CONTEXT) + PROTO_INSTANCE_SIZE + PROTO_NONCE_SIZE)
void tw__proto_proof_message(uint8_t *out,
                             const uint8_t instance[PROTO_INSTANCE_SIZE],
                             const uint8_t nonce[PROTO_NONCE_SIZE]);

/* Iterates the events of an EVENTS payload. */
typedef struct proto_events {
  const uint8_t *p;
  const uint8_t *end;
  uint64_t first_seq;
  uint32_t count;
  uint32_t index; /* events returned so far */
  uint16_t version;
  int64_t base_time; /* the header's, from PROTO_COMPACT_SINCE on */
} proto_events;

/* Validates the EVENTS header, for decoding at `version`. Returns 0 or a
 * negative proto_result. */
int tw__proto_events_begin(proto_events *it, const uint8_t *p, size_t n,
                           uint16_t version);
/* Returns 0 with *ev filled (its sequence number is first_seq + index - 1
 * after the call); 1 when all `count` events were read and the payload is
 * exactly consumed; or a negative proto_result. */
int tw__proto_events_next(proto_events *it, proto_event *ev);

/* ---- sizes --------------------------------------------------------------- */

/* Encoded size of one event at `version` in a frame whose base_time is
 * `base_time` (what tw__proto_put_event() appends; the first event of a
 * frame is its base); 0 for a kind that version does not have. */
size_t tw__proto_event_size(const proto_event *ev, uint16_t version,
                            int64_t base_time);
/* Whether `version` has events of `kind`. */
bool tw__proto_event_known(unsigned kind, uint16_t version);
/* The largest frame of a message type at a version, header included
 * (strings at their limits); 0 for an unknown type. */
size_t tw__proto_frame_max(uint16_t type, uint16_t version);
/* The longest length field a HELLO may announce before the handshake: the
 * largest HELLO of PROTO_VERSION plus PROTO_HELLO_SPARE. Anything longer
 * from a peer that has not said HELLO is refused unread. */
uint32_t tw__proto_hello_limit(void);

/* ---- encoding ------------------------------------------------------------ */

/*
 * A growable buffer; on allocation failure the buffer is marked failed,
 * further writes are ignored, and tw__proto_buf_failed() tells. The agent
 * pre-sizes its buffers and appends with tw__proto_events_append(), which
 * never grows one, so failure there means "drop and count".
 */
typedef struct proto_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
  int failed;
  size_t frame_start; /* offset of the last frame's header */
  /* The last EVENTS frame (tw__proto_events_open()): its header fields and the
   * version its events are encoded at. */
  uint64_t first_seq;
  uint32_t count;
  uint16_t version;
  int64_t base_time; /* the first event's time (PROTO_COMPACT_SINCE on) */
} proto_buf;

void tw__proto_buf_init(proto_buf *b);
void tw__proto_buf_fini(proto_buf *b);
void tw__proto_buf_reset(proto_buf *b); /* len 0, keeps memory */
int tw__proto_buf_reserve(proto_buf *b, size_t extra);
static inline int tw__proto_buf_failed(const proto_buf *b) {
  return b->failed;
}

/* Whole control frames. HELLO is encoded at h->version, WELCOME at
 * w->version (0: PROTO_VERSION); ACK, GOODBYE and FLUSH at the version
 * agreed. */
void tw__proto_put_hello(proto_buf *b, const proto_hello *h);
void tw__proto_put_welcome(proto_buf *b, const proto_welcome *w);
void tw__proto_put_ack(proto_buf *b, uint16_t version, const proto_ack *a);
void tw__proto_put_goodbye(proto_buf *b, uint16_t version, uint64_t last_seq);
void tw__proto_put_flush(proto_buf *b, uint16_t version, uint64_t last_seq);
void tw__proto_put_error(proto_buf *b, const char *reason);
void tw__proto_put_challenge(proto_buf *b, uint16_t version, proto_str nonce);
void tw__proto_put_proof(proto_buf *b, uint16_t version, proto_str signature);

/*
 * An EVENTS frame: open, put or append events, close. The frame stays
 * the last one of b, and its header follows b->first_seq and b->count
 * (and b->base_time, which the first event appended sets).
 */
void tw__proto_events_open(proto_buf *b, uint16_t version, uint64_t first_seq);
/* Appends, growing b as needed. */
void tw__proto_put_event(proto_buf *b, const proto_event *ev);
/* The agent's fast path: appends ev with straight stores, without ever
 * growing b. Returns 0, or -1 with nothing written when ev does not fit
 * in b->cap or the frame's version has no such kind. The bytes are those
 * tw__proto_put_event() writes. */
int tw__proto_events_append(proto_buf *b, const proto_event *ev);
/* Writes the frame's length and count. */
void tw__proto_events_close(proto_buf *b);

/* Patches of a closed EVENTS frame that is the whole of b (the agent's
 * resend buffer keeps one per chunk). */
/* Gives the frame's events sequence numbers from first_seq on. */
void tw__proto_events_renumber(proto_buf *b, uint64_t first_seq);
/* Drops the frame's first n events, keeping it well formed. Returns 0, or
 * a negative proto_result if the frame does not decode. */
int tw__proto_events_cut(proto_buf *b, uint32_t n);

#endif /* TW_PROTO_H */
