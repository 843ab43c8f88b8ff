/*
 * proto - encoder and strict decoder of the taskwatch wire protocol.
 *
 * The decoder reads through a bounded cursor: every read checks the bytes
 * left first, so no input, however hostile, can make it read past the
 * buffer. All integers are little-endian; they are assembled byte by byte
 * so the code is correct on any host and any alignment.
 */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

const char *proto_strerror(int result) {
  switch (result) {
  case 0:
    return "ok";
  case PROTO_NEED_MORE:
    return "incomplete frame";
  case PROTO_E_OVERSIZED:
    return "frame larger than the limit";
  case PROTO_E_UNDERSIZED:
    return "frame shorter than its header";
  case PROTO_E_TRUNCATED:
    return "payload ends inside a field";
  case PROTO_E_TRAILING:
    return "payload has trailing bytes";
  case PROTO_E_MAGIC:
    return "bad handshake magic";
  case PROTO_E_VERSION:
    return "unsupported protocol version";
  case PROTO_E_KIND:
    return "unknown event kind";
  case PROTO_E_FIELD:
    return "field value out of range";
  case PROTO_E_TYPE:
    return "unexpected message type";
  default:
    return "unknown protocol error";
  }
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct cursor {
  const uint8_t *p;
  const uint8_t *end;
  int bad; /* set once a read ran out of bytes; later reads return zeros */
} cursor;

static int need(cursor *c, size_t n) {
  if (c->bad || (size_t)(c->end - c->p) < n) {
    c->bad = 1;
    return 0;
  }
  return 1;
}

static uint8_t get_u8(cursor *c) {
  if (!need(c, 1))
    return 0;
  return *c->p++;
}

static uint16_t get_u16(cursor *c) {
  if (!need(c, 2))
    return 0;
  uint16_t v = (uint16_t)(c->p[0] | (c->p[1] << 8));
  c->p += 2;
  return v;
}

static uint32_t get_u32(cursor *c) {
  if (!need(c, 4))
    return 0;
  uint32_t v = (uint32_t)c->p[0] | ((uint32_t)c->p[1] << 8) |
               ((uint32_t)c->p[2] << 16) | ((uint32_t)c->p[3] << 24);
  c->p += 4;
  return v;
}

static uint64_t get_u64(cursor *c) {
  uint64_t lo = get_u32(c);
  uint64_t hi = get_u32(c);
  return lo | (hi << 32);
}

static void get_bytes(cursor *c, void *dst, size_t n) {
  if (!need(c, n)) {
    memset(dst, 0, n);
    return;
  }
  memcpy(dst, c->p, n);
  c->p += n;
}

/* A string with a u16 (long_form 0) or u32 count, no longer than max. */
static int get_str(cursor *c, proto_str *s, int long_form, uint32_t max) {
  uint32_t n = long_form ? get_u32(c) : get_u16(c);
  s->ptr = NULL;
  s->len = 0;
  if (c->bad)
    return 0;
  if (n > max)
    return PROTO_E_FIELD;
  if (!need(c, n))
    return 0;
  s->ptr = (const char *)c->p;
  s->len = n;
  c->p += n;
  return 0;
}

static int finish(const cursor *c) {
  if (c->bad)
    return PROTO_E_TRUNCATED;
  if (c->p != c->end)
    return PROTO_E_TRAILING;
  return 0;
}

int proto_frame_next(const uint8_t *buf, size_t len, uint32_t max_frame,
                     proto_frame *out) {
  if (max_frame == 0 || max_frame > PROTO_FRAME_MAX)
    max_frame = PROTO_FRAME_MAX;
  if (len < 4)
    return PROTO_NEED_MORE;
  cursor c = {buf, buf + len, 0};
  uint32_t n = get_u32(&c);
  if (n > max_frame)
    return PROTO_E_OVERSIZED;
  if (n < 2)
    return PROTO_E_UNDERSIZED;
  if (len - 4 < n)
    return PROTO_NEED_MORE;
  out->type = get_u16(&c);
  out->payload = c.p;
  out->payload_len = n - 2;
  out->frame_len = (size_t)n + 4;
  return 0;
}

int proto_decode_hello(const uint8_t *p, size_t n, proto_hello *out) {
  cursor c = {p, p + n, 0};
  int rc;
  memset(out, 0, sizeof(*out));
  uint32_t magic = get_u32(&c);
  out->version = get_u16(&c);
  if (c.bad)
    return PROTO_E_TRUNCATED;
  if (magic != PROTO_MAGIC)
    return PROTO_E_MAGIC;
  if (out->version != PROTO_VERSION)
    return PROTO_E_VERSION;
  get_bytes(&c, out->instance, sizeof(out->instance));
  out->pid = get_u32(&c);
  out->started_at_ns = (int64_t)get_u64(&c);
  if ((rc = get_str(&c, &out->service, 0, PROTO_IDENT_MAX)) != 0 ||
      (rc = get_str(&c, &out->host, 0, PROTO_IDENT_MAX)) != 0 ||
      (rc = get_str(&c, &out->token, 0, PROTO_IDENT_MAX)) != 0)
    return rc;
  return finish(&c);
}

int proto_decode_welcome(const uint8_t *p, size_t n, proto_welcome *out) {
  cursor c = {p, p + n, 0};
  out->version = get_u16(&c);
  out->next_seq = get_u64(&c);
  out->max_frame = get_u32(&c);
  int rc = finish(&c);
  if (rc == 0 && out->version != PROTO_VERSION)
    return PROTO_E_VERSION;
  return rc;
}

int proto_decode_u64(const uint8_t *p, size_t n, uint64_t *out) {
  cursor c = {p, p + n, 0};
  *out = get_u64(&c);
  return finish(&c);
}

int proto_decode_error(const uint8_t *p, size_t n, proto_str *reason) {
  cursor c = {p, p + n, 0};
  int rc = get_str(&c, reason, 0, PROTO_SHORT_MAX);
  return rc ? rc : finish(&c);
}

int proto_events_begin(proto_events *it, const uint8_t *p, size_t n) {
  cursor c = {p, p + n, 0};
  it->first_seq = get_u64(&c);
  it->count = get_u32(&c);
  it->index = 0;
  it->p = c.p;
  it->end = c.end;
  if (c.bad)
    return PROTO_E_TRUNCATED;
  if (it->count == 0 || it->first_seq == 0)
    return PROTO_E_FIELD;
  /* The smallest event is 15 bytes (a STRING with empty text: kind, time,
   * u32 id, u16 length): a count that cannot fit is malformed, whatever
   * follows. */
  if ((size_t)(it->end - it->p) / 15 < it->count)
    return PROTO_E_TRUNCATED;
  return 0;
}

static int decode_event(cursor *c, proto_event *ev) {
  int rc = 0;
  memset(ev, 0, sizeof(*ev));
  ev->kind = get_u8(c);
  ev->time_ns = (int64_t)get_u64(c);
  switch (ev->kind) {
  case PROTO_EV_STRING:
    ev->string = get_u32(c);
    rc = get_str(c, &ev->text, 0, PROTO_SHORT_MAX);
    if (rc == 0 && !c->bad && ev->string == 0)
      rc = PROTO_E_FIELD;
    break;
  case PROTO_EV_BATCH:
    ev->batch = get_u64(c);
    ev->string = get_u32(c);
    break;
  case PROTO_EV_ENQUEUE:
    ev->task = get_u64(c);
    ev->batch = get_u64(c);
    ev->position = get_u32(c);
    ev->string = get_u32(c);
    ev->mode = get_u8(c);
    ev->other = get_u64(c);
    if (!c->bad && (ev->mode > 1 || ev->string == 0))
      rc = PROTO_E_FIELD;
    break;
  case PROTO_EV_START:
    ev->task = get_u64(c);
    ev->other = get_u64(c);
    break;
  case PROTO_EV_FINISH:
    ev->task = get_u64(c);
    break;
  case PROTO_EV_FAIL:
    ev->task = get_u64(c);
    if ((rc = get_str(c, &ev->text, 0, PROTO_SHORT_MAX)) == 0 &&
        (rc = get_str(c, &ev->message, 0, PROTO_SHORT_MAX)) == 0)
      rc = get_str(c, &ev->detail, 1, PROTO_DETAIL_MAX);
    break;
  case PROTO_EV_SKIP:
    ev->task = get_u64(c);
    ev->other = get_u64(c);
    break;
  case PROTO_EV_DROP:
    ev->task = get_u64(c);
    rc = get_str(c, &ev->text, 0, PROTO_SHORT_MAX);
    break;
  case PROTO_EV_HEALTH:
    ev->other = get_u64(c);
    ev->other2 = get_u64(c);
    break;
  case PROTO_EV_LINK:
    ev->batch = get_u64(c);
    rc = get_str(c, &ev->text, 0, PROTO_LINK_MAX);
    break;
  default:
    return c->bad ? PROTO_E_TRUNCATED : PROTO_E_KIND;
  }
  if (rc)
    return rc;
  if (c->bad)
    return PROTO_E_TRUNCATED;
  if (((ev->kind == PROTO_EV_BATCH || ev->kind == PROTO_EV_LINK) &&
       ev->batch == 0) ||
      (ev->kind >= PROTO_EV_ENQUEUE && ev->kind <= PROTO_EV_DROP &&
       ev->task == 0) ||
      (ev->kind == PROTO_EV_ENQUEUE && ev->batch == 0))
    return PROTO_E_FIELD;
  return 0;
}

int proto_events_next(proto_events *it, proto_event *ev) {
  if (it->index == it->count)
    return it->p == it->end ? 1 : PROTO_E_TRAILING;
  cursor c = {it->p, it->end, 0};
  int rc = decode_event(&c, ev);
  if (rc)
    return rc;
  it->p = c.p;
  it->index++;
  return 0;
}

/* ---- encoding ---------------------------------------------------------- */

void proto_buf_init(proto_buf *b) {
  memset(b, 0, sizeof(*b));
}

void proto_buf_fini(proto_buf *b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

void proto_buf_reset(proto_buf *b) {
  b->len = 0;
  b->failed = 0;
  b->frame_start = 0;
  b->count_at = 0;
  b->count = 0;
}

int proto_buf_reserve(proto_buf *b, size_t extra) {
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

static void put_u8(proto_buf *b, uint8_t v) {
  if (proto_buf_reserve(b, 1) == 0)
    b->data[b->len++] = v;
}

static void put_u16(proto_buf *b, uint16_t v) {
  if (proto_buf_reserve(b, 2) != 0)
    return;
  b->data[b->len++] = (uint8_t)v;
  b->data[b->len++] = (uint8_t)(v >> 8);
}

static void put_u32(proto_buf *b, uint32_t v) {
  if (proto_buf_reserve(b, 4) != 0)
    return;
  for (int i = 0; i < 4; i++)
    b->data[b->len++] = (uint8_t)(v >> (8 * i));
}

static void put_u64(proto_buf *b, uint64_t v) {
  put_u32(b, (uint32_t)v);
  put_u32(b, (uint32_t)(v >> 32));
}

static void put_bytes(proto_buf *b, const void *p, size_t n) {
  if (n == 0 || proto_buf_reserve(b, n) != 0)
    return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

/* Strings longer than max are truncated, never rejected: the encoder's
 * callers are the agent, which must not fail a host over a long message. */
static void put_str(proto_buf *b, proto_str s, int long_form, uint32_t max) {
  uint32_t n = s.ptr ? s.len : 0;
  if (n > max)
    n = max;
  if (long_form)
    put_u32(b, n);
  else
    put_u16(b, (uint16_t)n);
  put_bytes(b, s.ptr, n);
}

static void patch_u32(proto_buf *b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; i++)
    b->data[at + i] = (uint8_t)(v >> (8 * i));
}

static void frame_open(proto_buf *b, uint16_t type) {
  b->frame_start = b->len;
  put_u32(b, 0);
  put_u16(b, type);
}

static void frame_close(proto_buf *b) {
  if (b->failed)
    return;
  patch_u32(b, b->frame_start, (uint32_t)(b->len - b->frame_start - 4));
}

static proto_str cstr(const char *s) {
  proto_str r = {s, s ? (uint32_t)strnlen(s, PROTO_FRAME_MAX) : 0};
  return r;
}

void proto_put_hello(proto_buf *b, const proto_hello *h) {
  frame_open(b, PROTO_HELLO);
  put_u32(b, PROTO_MAGIC);
  put_u16(b, h->version ? h->version : PROTO_VERSION);
  put_bytes(b, h->instance, sizeof(h->instance));
  put_u32(b, h->pid);
  put_u64(b, (uint64_t)h->started_at_ns);
  put_str(b, h->service, 0, PROTO_IDENT_MAX);
  put_str(b, h->host, 0, PROTO_IDENT_MAX);
  put_str(b, h->token, 0, PROTO_IDENT_MAX);
  frame_close(b);
}

void proto_put_welcome(proto_buf *b, const proto_welcome *w) {
  frame_open(b, PROTO_WELCOME);
  put_u16(b, w->version ? w->version : PROTO_VERSION);
  put_u64(b, w->next_seq);
  put_u32(b, w->max_frame);
  frame_close(b);
}

void proto_put_ack(proto_buf *b, uint64_t next_seq) {
  frame_open(b, PROTO_ACK);
  put_u64(b, next_seq);
  frame_close(b);
}

void proto_put_goodbye(proto_buf *b, uint64_t last_seq) {
  frame_open(b, PROTO_GOODBYE);
  put_u64(b, last_seq);
  frame_close(b);
}

void proto_put_error(proto_buf *b, const char *reason) {
  frame_open(b, PROTO_ERROR);
  put_str(b, cstr(reason), 0, PROTO_SHORT_MAX);
  frame_close(b);
}

void proto_events_open(proto_buf *b, uint64_t first_seq) {
  frame_open(b, PROTO_EVENTS);
  put_u64(b, first_seq);
  b->count_at = b->len;
  b->count = 0;
  put_u32(b, 0);
}

void proto_put_event(proto_buf *b, const proto_event *ev) {
  put_u8(b, ev->kind);
  put_u64(b, (uint64_t)ev->time_ns);
  switch (ev->kind) {
  case PROTO_EV_STRING:
    put_u32(b, ev->string);
    put_str(b, ev->text, 0, PROTO_SHORT_MAX);
    break;
  case PROTO_EV_BATCH:
    put_u64(b, ev->batch);
    put_u32(b, ev->string);
    break;
  case PROTO_EV_ENQUEUE:
    put_u64(b, ev->task);
    put_u64(b, ev->batch);
    put_u32(b, ev->position);
    put_u32(b, ev->string);
    put_u8(b, ev->mode);
    put_u64(b, ev->other);
    break;
  case PROTO_EV_START:
  case PROTO_EV_SKIP:
    put_u64(b, ev->task);
    put_u64(b, ev->other);
    break;
  case PROTO_EV_FINISH:
    put_u64(b, ev->task);
    break;
  case PROTO_EV_FAIL:
    put_u64(b, ev->task);
    put_str(b, ev->text, 0, PROTO_SHORT_MAX);
    put_str(b, ev->message, 0, PROTO_SHORT_MAX);
    put_str(b, ev->detail, 1, PROTO_DETAIL_MAX);
    break;
  case PROTO_EV_DROP:
    put_u64(b, ev->task);
    put_str(b, ev->text, 0, PROTO_SHORT_MAX);
    break;
  case PROTO_EV_HEALTH:
    put_u64(b, ev->other);
    put_u64(b, ev->other2);
    break;
  case PROTO_EV_LINK:
    put_u64(b, ev->batch);
    put_str(b, ev->text, 0, PROTO_LINK_MAX);
    break;
  default:
    break;
  }
  b->count++;
}

void proto_events_close(proto_buf *b) {
  if (b->failed)
    return;
  patch_u32(b, b->count_at, b->count);
  b->count_at = 0;
  frame_close(b);
}

static uint32_t clamp(proto_str s, uint32_t max) {
  uint32_t n = s.ptr ? s.len : 0;
  return n > max ? max : n;
}

size_t proto_event_size(const proto_event *ev) {
  size_t n = 1 + 8;
  switch (ev->kind) {
  case PROTO_EV_STRING:
    return n + 4 + 2 + clamp(ev->text, PROTO_SHORT_MAX);
  case PROTO_EV_BATCH:
    return n + 8 + 4;
  case PROTO_EV_ENQUEUE:
    return n + 8 + 8 + 4 + 4 + 1 + 8;
  case PROTO_EV_START:
  case PROTO_EV_SKIP:
  case PROTO_EV_HEALTH:
    return n + 16;
  case PROTO_EV_FINISH:
    return n + 8;
  case PROTO_EV_FAIL:
    return n + 8 + 2 + clamp(ev->text, PROTO_SHORT_MAX) + 2 +
           clamp(ev->message, PROTO_SHORT_MAX) + 4 +
           clamp(ev->detail, PROTO_DETAIL_MAX);
  case PROTO_EV_DROP:
    return n + 8 + 2 + clamp(ev->text, PROTO_SHORT_MAX);
  case PROTO_EV_LINK:
    return n + 8 + 2 + clamp(ev->text, PROTO_LINK_MAX);
  default:
    return n;
  }
}
