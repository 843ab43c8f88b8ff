/*
 * proto - encoder and strict decoder of the taskwatch wire protocol,
 * generated from the tables in proto.h through the expansions of
 * proto_gen.h. The encoder computes a frame's exact size from the table,
 * reserves it once, then stores without further checks; the agent's
 * in-place encoder is the same stores behind a room check. What is
 * written here by hand is only what the tables cannot say: the fixed
 * starts of HELLO and WELCOME, the version negotiation, and the patches
 * of an EVENTS frame's header.
 */
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_gen.h"

const char *tw__proto_strerror(int result) {
  switch (result) {
  case 0:
    return "ok";
#define PROTO__STRERROR(name, value, text)                                     \
  case value:                                                                  \
    return text;
    PROTO_RESULT_MAP(PROTO__STRERROR)
#undef PROTO__STRERROR
  default:
    return "unknown protocol error";
  }
}

/* GOODBYE and FLUSH: one sequence number. */
typedef struct goodbye_msg {
  uint64_t last_seq;
} goodbye_msg;
typedef struct error_msg {
  proto_str reason;
} error_msg;
/* CHALLENGE and PROOF: one string each. */
typedef struct text_msg {
  proto_str text;
} text_msg;
/* The EVENTS header as proto_buf (encoding) and proto_events (decoding)
 * both hold it: first_seq, count and (PROTO_COMPACT_SINCE on) base_time. */
typedef struct events_msg {
  uint64_t first_seq;
  uint32_t count;
  int64_t base_time;
} events_msg;

GEN_MESSAGE(HELLO, proto_hello, PROTO_FIELDS_HELLO)
GEN_MESSAGE(GOODBYE, goodbye_msg, PROTO_FIELDS_GOODBYE)
GEN_MESSAGE(FLUSH, goodbye_msg, PROTO_FIELDS_FLUSH)
GEN_MESSAGE(EVENTS, events_msg, PROTO_FIELDS_EVENTS)
GEN_MESSAGE(WELCOME, proto_welcome, PROTO_FIELDS_WELCOME)
GEN_MESSAGE(ACK, proto_ack, PROTO_FIELDS_ACK)
GEN_MESSAGE(ERROR, error_msg, PROTO_FIELDS_ERROR)
GEN_MESSAGE(CHALLENGE, text_msg, PROTO_FIELDS_CHALLENGE)
GEN_MESSAGE(PROOF, text_msg, PROTO_FIELDS_PROOF)

/* ---- framing ------------------------------------------------------------- */

int tw__proto_frame_next(const uint8_t *buf, size_t len, uint32_t max_frame,
                         proto_frame *out) {
  if (max_frame == 0 || max_frame > PROTO_FRAME_MAX)
    max_frame = PROTO_FRAME_MAX;
  if (len < 4)
    return PROTO_NEED_MORE;
  cursor c = {buf, buf + len, 0, 0, 0};
  uint32_t n = (uint32_t)get_le(&c, 4);
  if (n > max_frame)
    return PROTO_E_OVERSIZED;
  if (n < 2)
    return PROTO_E_UNDERSIZED;
  if (len - 4 < n)
    return PROTO_NEED_MORE;
  out->type = (uint16_t)get_le(&c, 2);
  out->payload = c.p;
  out->payload_len = n - 2;
  out->frame_len = (size_t)n + 4;
  return 0;
}

/* ---- versions ------------------------------------------------------------ */

int tw__proto_version_pick(uint16_t peer_min, uint16_t peer_max,
                           uint16_t *chosen) {
  uint16_t hi = peer_max < PROTO_VERSION ? peer_max : PROTO_VERSION;
  uint16_t lo = peer_min > PROTO_VERSION_MIN ? peer_min : PROTO_VERSION_MIN;
  if (peer_min > peer_max || hi < lo)
    return PROTO_E_VERSION;
  *chosen = hi;
  return 0;
}

int tw__proto_version_refusal(char *buf, size_t size, const char *peer,
                              uint16_t peer_min, uint16_t peer_max,
                              const char *self) {
  return snprintf(buf, size, "%s: %s speaks %u..%u, %s %u..%u",
                  tw__proto_strerror(PROTO_E_VERSION), peer, (unsigned)peer_min,
                  (unsigned)peer_max, self, (unsigned)PROTO_VERSION_MIN,
                  (unsigned)PROTO_VERSION);
}

/* ---- decoding ------------------------------------------------------------ */

int tw__proto_decode_hello(const uint8_t *p, size_t n, proto_hello *out) {
  cursor cur = {p, p + n, 0, 0, 0}, *c = &cur;
  uint32_t magic;
  uint16_t version;
  memset(out, 0, sizeof(*out));
  get_U32(c, &magic, 0, UINT32_MAX);
  get_U16(c, &out->version, 0, UINT16_MAX);
  if (!c->bad && magic != PROTO_MAGIC)
    return PROTO_E_MAGIC;
  out->version_min = out->version;
  if (out->version >= PROTO_HELLO_RANGE_SINCE)
    get_U16(c, &out->version_min, 0, UINT16_MAX);
  if (c->bad)
    return PROTO_E_TRUNCATED;
  if (tw__proto_version_pick(out->version_min, out->version, &version) != 0)
    return PROTO_E_VERSION;
  /* HELLO's fields are only ever appended: a newer agent's HELLO starts
   * with the fields of `version`, and what follows them is its own. */
  get_HELLO(c, out, version);
  return verdict(c, out->version <= PROTO_VERSION);
}

int tw__proto_decode_welcome(const uint8_t *p, size_t n, proto_welcome *out) {
  cursor cur = {p, p + n, 0, 0, 0}, *c = &cur;
  memset(out, 0, sizeof(*out));
  get_U16(c, &out->version, 0, UINT16_MAX);
  if (c->bad)
    return PROTO_E_TRUNCATED;
  if (out->version < PROTO_VERSION_MIN || out->version > PROTO_VERSION)
    return PROTO_E_VERSION;
  get_WELCOME(c, out, out->version);
  return verdict(c, 1);
}

int tw__proto_decode_error(const uint8_t *p, size_t n, proto_str *reason) {
  cursor cur = {p, p + n, 0, 0, 0};
  error_msg m;
  get_ERROR(&cur, &m, PROTO_VERSION_MIN);
  *reason = m.reason;
  return verdict(&cur, 1);
}

/* The smallest event of a version: a count of events that cannot fit in
 * the payload is malformed before any is read. */
static size_t event_min_size(uint16_t version) {
  size_t min = SIZE_MAX, n;
  int compact = version >= PROTO_COMPACT_SINCE;
#define MIN_OF_KIND(NAME, number, since)                                       \
  n = 0u PROTO_FIELDS_EVENT(GEN_EFIXED) PROTO_FIELDS_##NAME(GEN_EFIXED);       \
  if (GEN_HAS(since, version) && n < min)                                      \
    min = n;
  PROTO_EVENT_MAP(MIN_OF_KIND)
#undef MIN_OF_KIND
  return min;
}

int tw__proto_events_begin(proto_events *it, const uint8_t *p, size_t n,
                           uint16_t version) {
  cursor cur = {p, p + n, 0, 0, 0};
  events_msg m = {0, 0, 0};
  get_EVENTS(&cur, &m, version);
  it->first_seq = m.first_seq;
  it->count = m.count;
  it->base_time = m.base_time;
  it->index = 0;
  it->version = version;
  it->p = cur.p;
  it->end = cur.end;
  if (version < PROTO_VERSION_MIN || version > PROTO_VERSION)
    return PROTO_E_VERSION;
  int rc = verdict(&cur, 0);
  if (rc != 0)
    return rc;
  if ((size_t)(it->end - it->p) / event_min_size(version) < it->count)
    return PROTO_E_TRUNCATED;
  return 0;
}

static int decode_event(cursor *c, proto_event *m, uint16_t version,
                        int64_t base) {
  int compact = version >= PROTO_COMPACT_SINCE;
  memset(m, 0, sizeof(*m));
  PROTO_FIELDS_EVENT(GEN_EGET)
  switch (m->kind) {
#define DECODE_KIND(NAME, number, since)                                       \
  case PROTO_EV_##NAME:                                                        \
    if (!GEN_HAS(since, version))                                              \
      return c->bad ? PROTO_E_TRUNCATED : PROTO_E_KIND;                        \
    PROTO_FIELDS_##NAME(GEN_EGET) break;
    PROTO_EVENT_MAP(DECODE_KIND)
#undef DECODE_KIND
  default:
    return c->bad ? PROTO_E_TRUNCATED : PROTO_E_KIND;
  }
  return verdict(c, 0);
}

int tw__proto_events_next(proto_events *it, proto_event *ev) {
  if (it->index == it->count)
    return it->p == it->end ? 1 : PROTO_E_TRAILING;
  cursor c = {it->p, it->end, 0, 0, 0};
  int rc = decode_event(&c, ev, it->version, it->base_time);
  if (rc)
    return rc;
  it->p = c.p;
  it->index++;
  return 0;
}

/* ---- sizes --------------------------------------------------------------- */

size_t tw__proto_event_size(const proto_event *m, uint16_t version,
                            int64_t base) {
  int compact = version >= PROTO_COMPACT_SINCE;
  switch (m->kind) {
#define SIZE_OF_KIND(NAME, number, since)                                      \
  case PROTO_EV_##NAME:                                                        \
    return GEN_HAS(since, version) ? 0u PROTO_FIELDS_EVENT(GEN_EEXACT)         \
                                         PROTO_FIELDS_##NAME(GEN_EEXACT)       \
                                   : 0u;
    PROTO_EVENT_MAP(SIZE_OF_KIND)
#undef SIZE_OF_KIND
  default:
    return 0;
  }
}

/* HELLO's fixed start at a version: magic, version, version_min. */
static size_t hello_start(uint16_t version) {
  return SIZE_U32 + SIZE_U16 +
         (version >= PROTO_HELLO_RANGE_SINCE ? SIZE_U16 : 0u);
}

size_t tw__proto_frame_max(uint16_t type, uint16_t version) {
  size_t payload;
  switch (type) {
  case PROTO_HELLO:
    payload = hello_start(version) + largest_HELLO(version);
    break;
  case PROTO_GOODBYE:
    payload = largest_GOODBYE(version);
    break;
  case PROTO_FLUSH:
    payload = largest_FLUSH(version);
    break;
  case PROTO_WELCOME:
    payload = SIZE_U16 + largest_WELCOME(version);
    break;
  case PROTO_ACK:
    payload = largest_ACK(version);
    break;
  case PROTO_ERROR:
    payload = largest_ERROR(version);
    break;
  case PROTO_CHALLENGE:
    payload = largest_CHALLENGE(version);
    break;
  case PROTO_PROOF:
    payload = largest_PROOF(version);
    break;
  case PROTO_EVENTS:
    return 4 + (size_t)PROTO_FRAME_MAX;
  default:
    return 0;
  }
  return PROTO_HEADER_SIZE + payload;
}

uint32_t tw__proto_hello_limit(void) {
  /* The length field counts the type and the payload, not itself. */
  return (uint32_t)(tw__proto_frame_max(PROTO_HELLO, PROTO_VERSION) - 4 +
                    PROTO_HELLO_SPARE);
}

/* ---- encoding ------------------------------------------------------------ */

void tw__proto_buf_init(proto_buf *b) {
  memset(b, 0, sizeof(*b));
}

void tw__proto_buf_fini(proto_buf *b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

void tw__proto_buf_reset(proto_buf *b) {
  b->len = 0;
  b->failed = 0;
  b->frame_start = 0;
  b->first_seq = 0;
  b->count = 0;
}

int tw__proto_buf_reserve(proto_buf *b, size_t extra) {
  if (b->failed)
    return -1;
  if (b->cap - b->len >= extra)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra) {
    if (cap > SIZE_MAX / 2) {
      b->failed = 1;
      return -1;
    }
    cap *= 2;
  }
  uint8_t *d = realloc(b->data, cap);
  if (d == NULL) {
    b->failed = 1;
    return -1;
  }
  b->data = d;
  b->cap = cap;
  return 0;
}

/* Opens a frame of `type` with room for `payload` bytes; NULL when the
 * buffer failed. The length field is written by frame_close(). */
static uint8_t *frame_open(proto_buf *b, uint16_t type, size_t payload) {
  if (tw__proto_buf_reserve(b, PROTO_HEADER_SIZE + payload) != 0)
    return NULL;
  b->frame_start = b->len;
  uint8_t *p = store_U16(b->data + b->len + 4, type, 0);
  b->len += PROTO_HEADER_SIZE;
  return p;
}

/* Ends the frame whose payload ends at p. */
static void frame_close(proto_buf *b, const uint8_t *p) {
  b->len = (size_t)(p - b->data);
  le(b->data + b->frame_start, b->len - b->frame_start - 4, 4);
}

void tw__proto_put_hello(proto_buf *b, const proto_hello *h) {
  uint16_t version = h->version ? h->version : PROTO_VERSION;
  uint16_t version_min = h->version_min ? h->version_min : PROTO_VERSION_MIN;
  uint8_t *p = frame_open(b, PROTO_HELLO,
                          hello_start(version) + exact_HELLO(h, version));
  if (p == NULL)
    return;
  p = store_U32(p, PROTO_MAGIC, 0);
  p = store_U16(p, version, 0);
  if (version >= PROTO_HELLO_RANGE_SINCE)
    p = store_U16(p, version_min, 0);
  frame_close(b, store_HELLO(p, h, version));
}

void tw__proto_put_welcome(proto_buf *b, const proto_welcome *w) {
  proto_welcome m = *w;
  if (m.version == 0)
    m.version = PROTO_VERSION;
  uint8_t *p =
      frame_open(b, PROTO_WELCOME, SIZE_U16 + exact_WELCOME(&m, m.version));
  if (p != NULL)
    frame_close(b, store_WELCOME(store_U16(p, m.version, 0), &m, m.version));
}

void tw__proto_put_ack(proto_buf *b, uint16_t version, const proto_ack *a) {
  uint8_t *p = frame_open(b, PROTO_ACK, exact_ACK(a, version));
  if (p != NULL)
    frame_close(b, store_ACK(p, a, version));
}

int tw__proto_decode_ack(const uint8_t *p, size_t n, uint16_t version,
                         proto_ack *out) {
  cursor cur = {p, p + n, 0, 0, 0};
  memset(out, 0, sizeof(*out));
  get_ACK(&cur, out, version);
  return verdict(&cur, 1);
}

/* GOODBYE and FLUSH carry one sequence number each, CHALLENGE and
 * PROOF one string: their encoder and decoder, for message NAME in struct TYPE whose
 * one field is `member`, of C type FTYPE. */
#define ONE_FIELD_MESSAGE(NAME, TYPE, name, FTYPE, member)                     \
  void tw__proto_put_##name(proto_buf *b, uint16_t version, FTYPE member) {    \
    TYPE m = {member};                                                         \
    uint8_t *p = frame_open(b, PROTO_##NAME, exact_##NAME(&m, version));       \
    if (p != NULL)                                                             \
      frame_close(b, store_##NAME(p, &m, version));                            \
  }                                                                            \
  int tw__proto_decode_##name(const uint8_t *p, size_t n, uint16_t version,    \
                              FTYPE *member) {                                 \
    cursor cur = {p, p + n, 0, 0, 0};                                          \
    TYPE m;                                                                    \
    memset(&m, 0, sizeof(m));                                                  \
    get_##NAME(&cur, &m, version);                                             \
    *member = m.member;                                                        \
    return verdict(&cur, 1);                                                   \
  }
ONE_FIELD_MESSAGE(GOODBYE, goodbye_msg, goodbye, uint64_t, last_seq)
ONE_FIELD_MESSAGE(FLUSH, goodbye_msg, flush, uint64_t, last_seq)
ONE_FIELD_MESSAGE(CHALLENGE, text_msg, challenge, proto_str, text)
ONE_FIELD_MESSAGE(PROOF, text_msg, proof, proto_str, text)

void tw__proto_proof_message(uint8_t *out,
                             const uint8_t instance[PROTO_INSTANCE_SIZE],
                             const uint8_t nonce[PROTO_NONCE_SIZE]) {
  memcpy(out, PROTO_PROOF_CONTEXT, sizeof(PROTO_PROOF_CONTEXT));
  out += sizeof(PROTO_PROOF_CONTEXT);
  memcpy(out, instance, PROTO_INSTANCE_SIZE);
  memcpy(out + PROTO_INSTANCE_SIZE, nonce, PROTO_NONCE_SIZE);
}

void tw__proto_put_error(proto_buf *b, const char *reason) {
  error_msg m = {
      {reason, reason ? (uint32_t)strnlen(reason, PROTO_SHORT_MAX) : 0}};
  uint8_t *p = frame_open(b, PROTO_ERROR, exact_ERROR(&m, PROTO_VERSION_MIN));
  if (p != NULL)
    frame_close(b, store_ERROR(p, &m, PROTO_VERSION_MIN));
}

/* Rewrites the header of the EVENTS frame at b->frame_start from b->len,
 * b->first_seq and b->count. */
static void events_header(proto_buf *b) {
  events_msg m = {b->first_seq, b->count, b->base_time};
  uint8_t *p = b->data + b->frame_start;
  p = store_U32(p, (uint32_t)(b->len - b->frame_start - 4), 0);
  p = store_U16(p, PROTO_EVENTS, 0);
  store_EVENTS(p, &m, b->version);
}

void tw__proto_events_open(proto_buf *b, uint16_t version, uint64_t first_seq) {
  events_msg m = {first_seq, 0, 0};
  b->version = version;
  b->first_seq = first_seq;
  b->count = 0;
  b->base_time = 0;
  if (frame_open(b, PROTO_EVENTS, exact_EVENTS(&m, version)) == NULL)
    return;
  b->len += exact_EVENTS(&m, version);
  events_header(b);
}

/* Stores ev at p when it fits in `room`: the end, or NULL (nothing
 * written) when it does not or `version` has no such kind. `base` is the
 * frame's base_time. The event is sized exactly (each varint measured)
 * only when its bound does not fit: the end of a chunk. */
static inline uint8_t *event_store(uint8_t *p, size_t room,
                                   const proto_event *m, uint16_t version,
                                   int64_t base) {
  int compact = version >= PROTO_COMPACT_SINCE;
  switch (m->kind) {
#define STORE_KIND(NAME, number, since)                                        \
  case PROTO_EV_##NAME:                                                        \
    if (!GEN_HAS(since, version))                                              \
      return NULL;                                                             \
    if (0u PROTO_FIELDS_EVENT(GEN_EBOUND)                                      \
                PROTO_FIELDS_##NAME(GEN_EBOUND) > room &&                      \
        0u PROTO_FIELDS_EVENT(GEN_EEXACT)                                      \
                PROTO_FIELDS_##NAME(GEN_EEXACT) > room)                        \
      return NULL;                                                             \
    PROTO_FIELDS_EVENT(GEN_ESTORE)                                             \
    PROTO_FIELDS_##NAME(GEN_ESTORE) return p;
    PROTO_EVENT_MAP(STORE_KIND)
#undef STORE_KIND
  default:
    return NULL;
  }
}

/* The base_time of the frame an event is appended to: the first event
 * sets it. */
static inline int64_t frame_base(const proto_buf *b, const proto_event *ev) {
  return b->count == 0 ? ev->time_ns : b->base_time;
}

bool tw__proto_event_known(unsigned kind, uint16_t version) {
  switch (kind) {
#define KNOWN_KIND(NAME, number, since)                                        \
  case PROTO_EV_##NAME:                                                        \
    return GEN_HAS(since, version);
    PROTO_EVENT_MAP(KNOWN_KIND)
#undef KNOWN_KIND
  default:
    return false;
  }
}

void tw__proto_put_event(proto_buf *b, const proto_event *ev) {
  int64_t base = frame_base(b, ev);
  size_t need = tw__proto_event_size(ev, b->version, base);
  if (need == 0) {
    b->failed = 1; /* a kind the frame's version does not have */
    return;
  }
  if (tw__proto_buf_reserve(b, need) != 0)
    return;
  b->len = (size_t)(event_store(b->data + b->len, need, ev, b->version, base) -
                    b->data);
  b->base_time = base;
  b->count++;
}

int tw__proto_events_append(proto_buf *b, const proto_event *ev) {
  int64_t base = frame_base(b, ev);
  uint8_t *end =
      event_store(b->data + b->len, b->cap - b->len, ev, b->version, base);
  if (end == NULL)
    return -1;
  b->len = (size_t)(end - b->data);
  b->base_time = base;
  b->count++;
  return 0;
}

void tw__proto_events_close(proto_buf *b) {
  if (!b->failed)
    events_header(b);
}

void tw__proto_events_renumber(proto_buf *b, uint64_t first_seq) {
  b->first_seq = first_seq;
  events_header(b);
}

int tw__proto_events_cut(proto_buf *b, uint32_t n) {
  proto_events it;
  proto_event ev;
  const uint8_t *payload = b->data + b->frame_start + PROTO_HEADER_SIZE;
  size_t header = (size_t)(payload - b->data) + largest_EVENTS(b->version);
  int rc = tw__proto_events_begin(
      &it, payload, (size_t)(b->data + b->len - payload), b->version);
  for (uint32_t i = 0; i < n && rc == 0; i++)
    rc = tw__proto_events_next(&it, &ev);
  if (rc != 0)
    return rc < 0 ? rc : PROTO_E_FIELD;
  size_t from = (size_t)(it.p - b->data);
  memmove(b->data + header, b->data + from, b->len - from);
  b->len -= from - header;
  b->first_seq += n;
  b->count -= n;
  events_header(b);
  return 0;
}
