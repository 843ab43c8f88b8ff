/*
 * proto_gen - how proto.c turns the tables of proto.h into code: for every
 * field type a store, a read and its sizes, and for every table row an
 * expansion (GEN_FIXED, GEN_EXACT, GEN_LARGEST, GEN_STORE, GEN_GET) that
 * calls them in wire order behind the row's version test; an event's
 * fields use GEN_EFIXED, GEN_EEXACT, GEN_ESTORE and GEN_EGET, which pick
 * the fixed or the compact encoding (PROTO_COMPACT_SINCE). Private to
 * proto.c and its unit test, which instantiates a table of its own to
 * check the version tests.
 *
 * A version test whose `since` is at most PROTO_VERSION_MIN is a constant,
 * so for today's tables the generated code is the straight-line code one
 * would write by hand. The decoder reads through a bounded cursor: every
 * read checks the bytes left first, so no input, however hostile, can
 * make it read past the buffer. All integers are little-endian, assembled
 * byte by byte so the code is correct on any host and any alignment.
 */
#ifndef TW_PROTO_GEN_H
#define TW_PROTO_GEN_H

#include <stdint.h>
#include <string.h>

#include "proto.h"

/* Whether a field or kind that appeared in `since` exists in `version`. */
#define GEN_HAS(since, version)                                                \
  ((since) <= PROTO_VERSION_MIN || (version) >= (since))

/* ---- field types --------------------------------------------------------- */

/* Encoded bytes of each type, strings without their text. */
#define SIZE_U8 1u
#define SIZE_U16 2u
#define SIZE_U32 4u
#define SIZE_U64 8u
#define SIZE_I64 8u
#define SIZE_ID ((size_t)PROTO_INSTANCE_SIZE)
#define SIZE_STR 2u
#define SIZE_LSTR 4u

/* The text bytes of a value (strings only; truncated to hi). */
#define TEXT_U8(v, hi) 0u
#define TEXT_U16(v, hi) 0u
#define TEXT_U32(v, hi) 0u
#define TEXT_U64(v, hi) 0u
#define TEXT_I64(v, hi) 0u
#define TEXT_ID(v, hi) 0u
#define TEXT_STR(v, hi) clamp(v, hi)
#define TEXT_LSTR(v, hi) clamp(v, hi)

/* The most text bytes a field may hold. */
#define TEXT_MAX_U8(hi) 0u
#define TEXT_MAX_U16(hi) 0u
#define TEXT_MAX_U32(hi) 0u
#define TEXT_MAX_U64(hi) 0u
#define TEXT_MAX_I64(hi) 0u
#define TEXT_MAX_ID(hi) 0u
#define TEXT_MAX_STR(hi) ((size_t)(hi))
#define TEXT_MAX_LSTR(hi) ((size_t)(hi))

static inline uint32_t clamp(proto_str s, uint64_t max) {
  uint32_t n = s.ptr ? s.len : 0;
  return n > max ? (uint32_t)max : n;
}

/* Little-endian integers of 1 to 8 bytes. On a little-endian host a
 * memcpy of the value's low bytes is the same bytes and compiles to one
 * move (the agent's encoder spends most of its time here); elsewhere they
 * are taken apart byte by byte. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define GEN_HOST_LE 1
#else
#define GEN_HOST_LE 0
#endif

static inline uint8_t *le(uint8_t *p, uint64_t v, int bytes) {
  if (GEN_HOST_LE) {
    memcpy(p, &v, (size_t)bytes);
  } else {
    for (int i = 0; i < bytes; i++)
      p[i] = (uint8_t)(v >> (8 * i));
  }
  return p + bytes;
}

/* Stores into room already checked; each returns the end. `hi` is the
 * field's limit (strings are truncated to it, never rejected: the
 * encoder's callers are the agent, which must not fail a host over a long
 * message). */
static inline uint8_t *store_U8(uint8_t *p, uint8_t v, uint64_t hi) {
  (void)hi;
  *p = v;
  return p + 1;
}
static inline uint8_t *store_U16(uint8_t *p, uint16_t v, uint64_t hi) {
  (void)hi;
  return le(p, v, 2);
}
static inline uint8_t *store_U32(uint8_t *p, uint32_t v, uint64_t hi) {
  (void)hi;
  return le(p, v, 4);
}
static inline uint8_t *store_U64(uint8_t *p, uint64_t v, uint64_t hi) {
  (void)hi;
  return le(p, v, 8);
}
static inline uint8_t *store_I64(uint8_t *p, int64_t v, uint64_t hi) {
  (void)hi;
  return le(p, (uint64_t)v, 8);
}
static inline uint8_t *store_ID(uint8_t *p, const uint8_t *v, uint64_t hi) {
  (void)hi;
  memcpy(p, v, PROTO_INSTANCE_SIZE);
  return p + PROTO_INSTANCE_SIZE;
}
static inline uint8_t *store_text(uint8_t *p, proto_str s, uint32_t n) {
  if (n > 0)
    memcpy(p, s.ptr, n);
  return p + n;
}
static inline uint8_t *store_STR(uint8_t *p, proto_str s, uint64_t hi) {
  uint32_t n = clamp(s, hi);
  return store_text(le(p, n, 2), s, n);
}
static inline uint8_t *store_LSTR(uint8_t *p, proto_str s, uint64_t hi) {
  uint32_t n = clamp(s, hi);
  return store_text(le(p, n, 4), s, n);
}

/*
 * The decoder's cursor. Reads past the end return zeros and set `bad`.
 * Errors are reported in a fixed order, whatever field came first: a
 * string longer than its limit, then truncation, then an integer out of
 * range, then (for whole messages) trailing bytes.
 */
typedef struct cursor {
  const uint8_t *p;
  const uint8_t *end;
  int bad;       /* a read ran out of bytes */
  int long_text; /* a string was longer than its limit */
  int range;     /* an integer was out of its range */
} cursor;

static inline int need(cursor *c, size_t n) {
  if (c->bad || (size_t)(c->end - c->p) < n) {
    c->bad = 1;
    return 0;
  }
  return 1;
}

static inline uint64_t get_le(cursor *c, int bytes) {
  uint64_t v = 0;
  if (!need(c, (size_t)bytes))
    return 0;
  if (GEN_HOST_LE) {
    memcpy(&v, c->p, (size_t)bytes);
  } else {
    for (int i = 0; i < bytes; i++)
      v |= (uint64_t)c->p[i] << (8 * i);
  }
  c->p += bytes;
  return v;
}

static inline void check_range(cursor *c, uint64_t v, uint64_t lo,
                               uint64_t hi) {
  if (!c->bad && (v < lo || v > hi))
    c->range = 1;
}

static inline void get_U8(cursor *c, uint8_t *v, uint64_t lo, uint64_t hi) {
  *v = (uint8_t)get_le(c, 1);
  check_range(c, *v, lo, hi);
}
static inline void get_U16(cursor *c, uint16_t *v, uint64_t lo, uint64_t hi) {
  *v = (uint16_t)get_le(c, 2);
  check_range(c, *v, lo, hi);
}
static inline void get_U32(cursor *c, uint32_t *v, uint64_t lo, uint64_t hi) {
  *v = (uint32_t)get_le(c, 4);
  check_range(c, *v, lo, hi);
}
static inline void get_U64(cursor *c, uint64_t *v, uint64_t lo, uint64_t hi) {
  *v = get_le(c, 8);
  check_range(c, *v, lo, hi);
}
static inline void get_I64(cursor *c, int64_t *v, uint64_t lo, uint64_t hi) {
  (void)lo, (void)hi;
  *v = (int64_t)get_le(c, 8);
}
static inline void get_ID(cursor *c, uint8_t *v, uint64_t lo, uint64_t hi) {
  (void)lo, (void)hi;
  if (!need(c, PROTO_INSTANCE_SIZE)) {
    memset(v, 0, PROTO_INSTANCE_SIZE);
    return;
  }
  memcpy(v, c->p, PROTO_INSTANCE_SIZE);
  c->p += PROTO_INSTANCE_SIZE;
}
static inline void get_text(cursor *c, proto_str *s, uint64_t n, uint64_t hi) {
  s->ptr = NULL;
  s->len = 0;
  if (c->bad)
    return;
  if (n > hi) {
    c->long_text = 1; /* its bytes are not consumed: the result is decided */
    return;
  }
  if (!need(c, (size_t)n))
    return;
  s->ptr = (const char *)c->p;
  s->len = (uint32_t)n;
  c->p += n;
}
static inline void get_STR(cursor *c, proto_str *s, uint64_t lo, uint64_t hi) {
  (void)lo;
  get_text(c, s, get_le(c, 2), hi);
}
static inline void get_LSTR(cursor *c, proto_str *s, uint64_t lo, uint64_t hi) {
  (void)lo;
  get_text(c, s, get_le(c, 4), hi);
}

/* The cursor's verdict; `exact`: the bytes must be used up. */
static inline int verdict(const cursor *c, int exact) {
  if (c->long_text)
    return PROTO_E_FIELD;
  if (c->bad)
    return PROTO_E_TRUNCATED;
  if (c->range)
    return PROTO_E_FIELD;
  if (exact && c->p != c->end)
    return PROTO_E_TRAILING;
  return 0;
}

/* ---- compact event fields (PROTO_COMPACT_SINCE on) ----------------------
 * An event's fields go through these: with `compact` 0 they are the
 * fixed-width stores and reads above; with it set, u16, u32 and u64 are
 * LEB128 varints (7 bits a byte, least significant first, the top bit
 * set on every byte but the last) and an i64 (the time) is the zigzag
 * varint of its difference from `base` (the frame's base_time), counted
 * modulo 2^64 so that any two times round-trip. The decoder takes only
 * the shortest encoding of a value, of at most PROTO_VARINT_MAX bytes:
 * a longer one, or one past 64 bits, is out of range. */

static inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static inline uint8_t *varint_store(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

static inline uint64_t get_varint(cursor *c) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    if (!need(c, 1))
      return 0;
    uint8_t b = *c->p++;
    if (shift == 63 && b > 1) {
      c->range = 1; /* past 64 bits */
      return 0;
    }
    v |= (uint64_t)(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      if (b == 0 && shift > 0)
        c->range = 1; /* not the shortest encoding */
      return v;
    }
  }
}

static inline uint64_t zigzag(int64_t v, int64_t base) {
  uint64_t d = (uint64_t)v - (uint64_t)base;
  return (d << 1) ^ (0 - (d >> 63));
}

static inline int64_t unzigzag(uint64_t z, int64_t base) {
  uint64_t d = (z >> 1) ^ (0 - (z & 1));
  return (int64_t)((uint64_t)base + d);
}

/* The fewest bytes of a field (strings without their text). */
#define EFIXED_U8(compact) SIZE_U8
#define EFIXED_U16(compact) ((compact) ? 1u : SIZE_U16)
#define EFIXED_U32(compact) ((compact) ? 1u : SIZE_U32)
#define EFIXED_U64(compact) ((compact) ? 1u : SIZE_U64)
#define EFIXED_I64(compact) ((compact) ? 1u : SIZE_I64)
#define EFIXED_STR(compact) SIZE_STR
#define EFIXED_LSTR(compact) SIZE_LSTR

/* The bytes of a value, text included. */
#define ESIZE_U8(v, hi, compact, base) SIZE_U8
#define ESIZE_U16(v, hi, compact, base) ((compact) ? varint_size(v) : SIZE_U16)
#define ESIZE_U32(v, hi, compact, base) ((compact) ? varint_size(v) : SIZE_U32)
#define ESIZE_U64(v, hi, compact, base) ((compact) ? varint_size(v) : SIZE_U64)
#define ESIZE_I64(v, hi, compact, base)                                        \
  ((compact) ? varint_size(zigzag(v, base)) : SIZE_I64)
#define ESIZE_STR(v, hi, compact, base) (SIZE_STR + clamp(v, hi))
#define ESIZE_LSTR(v, hi, compact, base) (SIZE_LSTR + clamp(v, hi))

/* At least the bytes of a value, from its type alone where it can be (a
 * varint's longest encoding): what an encoder checks its room against
 * before it sizes a value exactly. */
#define VARINT_BYTES(bits) (((bits) + 6u) / 7u)
#define EBOUND_U8(v, hi, compact) SIZE_U8
#define EBOUND_U16(v, hi, compact) ((compact) ? VARINT_BYTES(16) : SIZE_U16)
#define EBOUND_U32(v, hi, compact) ((compact) ? VARINT_BYTES(32) : SIZE_U32)
#define EBOUND_U64(v, hi, compact) ((compact) ? VARINT_BYTES(64) : SIZE_U64)
#define EBOUND_I64(v, hi, compact) ((compact) ? VARINT_BYTES(64) : SIZE_I64)
_Static_assert(VARINT_BYTES(64) == PROTO_VARINT_MAX,
               "a 64-bit varint's longest encoding is the decoder's limit");
#define EBOUND_STR(v, hi, compact) (SIZE_STR + clamp(v, hi))
#define EBOUND_LSTR(v, hi, compact) (SIZE_LSTR + clamp(v, hi))

/* An event field's store and read: fixed-width, or compact (varints);
 * strings and u8 are the same in both. */
#define EFIELD_AS_FIXED(T, CTYPE)                                              \
  static inline uint8_t *estore_##T(uint8_t *p, CTYPE v, uint64_t hi,          \
                                    int compact, int64_t base) {               \
    (void)compact, (void)base;                                                 \
    return store_##T(p, v, hi);                                                \
  }                                                                            \
  static inline void eget_##T(cursor *c, CTYPE *v, uint64_t lo, uint64_t hi,   \
                              int compact, int64_t base) {                     \
    (void)compact, (void)base;                                                 \
    get_##T(c, v, lo, hi);                                                     \
  }
/* Unsigned fields of at most MAX: a varint, within the type and the
 * field's range. */
#define EFIELD_VARINT(T, CTYPE, MAX)                                           \
  static inline uint8_t *estore_##T(uint8_t *p, CTYPE v, uint64_t hi,          \
                                    int compact, int64_t base) {               \
    (void)base;                                                                \
    return compact ? varint_store(p, v) : store_##T(p, v, hi);                 \
  }                                                                            \
  static inline void eget_##T(cursor *c, CTYPE *v, uint64_t lo, uint64_t hi,   \
                              int compact, int64_t base) {                     \
    (void)base;                                                                \
    if (!compact) {                                                            \
      get_##T(c, v, lo, hi);                                                   \
      return;                                                                  \
    }                                                                          \
    uint64_t x = get_varint(c);                                                \
    *v = (CTYPE)x;                                                             \
    check_range(c, x, lo, hi < (MAX) ? hi : (MAX));                            \
  }
EFIELD_AS_FIXED(U8, uint8_t)
EFIELD_VARINT(U16, uint16_t, UINT16_MAX)
EFIELD_VARINT(U32, uint32_t, UINT32_MAX)
EFIELD_VARINT(U64, uint64_t, UINT64_MAX)
EFIELD_AS_FIXED(STR, proto_str)
EFIELD_AS_FIXED(LSTR, proto_str)

/* The time: the zigzag varint of its difference from the base. */
static inline uint8_t *estore_I64(uint8_t *p, int64_t v, uint64_t hi,
                                  int compact, int64_t base) {
  return compact ? varint_store(p, zigzag(v, base)) : store_I64(p, v, hi);
}
static inline void eget_I64(cursor *c, int64_t *v, uint64_t lo, uint64_t hi,
                            int compact, int64_t base) {
  if (!compact) {
    get_I64(c, v, lo, hi);
    return;
  }
  *v = unzigzag(get_varint(c), base);
}

/* ---- what the tables expand into ----------------------------------------
 * In every generated function `m` is the struct the fields live in,
 * `version` the version to encode or decode at, `p` the store pointer and
 * `c` the cursor. */

/* Bytes of a field without its text (the smallest it can be). */
#define GEN_FIXED(T, name, member, lo, hi, since)                              \
  +(GEN_HAS(since, version) ? SIZE_##T : 0u)
/* Bytes of the field as encoded from m. */
#define GEN_EXACT(T, name, member, lo, hi, since)                              \
  +(GEN_HAS(since, version) ? SIZE_##T + TEXT_##T(m->member, hi) : 0u)
/* The most bytes the field can take. */
#define GEN_LARGEST(T, name, member, lo, hi, since)                            \
  +(GEN_HAS(since, version) ? SIZE_##T + TEXT_MAX_##T(hi) : 0u)
#define GEN_STORE(T, name, member, lo, hi, since)                              \
  if (GEN_HAS(since, version))                                                 \
    p = store_##T(p, m->member, hi);
#define GEN_GET(T, name, member, lo, hi, since)                                \
  if (GEN_HAS(since, version))                                                 \
    get_##T(c, ADDR_##T(m->member), lo, hi);
#define ADDR_U8(x) &(x)
#define ADDR_U16(x) &(x)
#define ADDR_U32(x) &(x)
#define ADDR_U64(x) &(x)
#define ADDR_I64(x) &(x)
#define ADDR_ID(x) (x)
#define ADDR_STR(x) &(x)
#define ADDR_LSTR(x) &(x)

/* The same for an event's fields, which go through the compact-aware
 * stores and reads: `compact` and `base` are in scope. */
#define GEN_EFIXED(T, name, member, lo, hi, since)                             \
  +(GEN_HAS(since, version) ? EFIXED_##T(compact) : 0u)
#define GEN_EEXACT(T, name, member, lo, hi, since)                             \
  +(GEN_HAS(since, version) ? ESIZE_##T(m->member, hi, compact, base) : 0u)
#define GEN_EBOUND(T, name, member, lo, hi, since)                             \
  +(GEN_HAS(since, version) ? EBOUND_##T(m->member, hi, compact) : 0u)
#define GEN_ESTORE(T, name, member, lo, hi, since)                             \
  if (GEN_HAS(since, version))                                                 \
    p = estore_##T(p, m->member, hi, compact, base);
#define GEN_EGET(T, name, member, lo, hi, since)                               \
  if (GEN_HAS(since, version))                                                 \
    eget_##T(c, ADDR_##T(m->member), lo, hi, compact, base);

/* For one message NAME held in struct TYPE, whose fields are the table
 * FIELDS: its exact and largest sizes, its stores and its reads, at a
 * version. */
#define GEN_MESSAGE(NAME, TYPE, FIELDS)                                        \
  static inline size_t exact_##NAME(const TYPE *m, uint16_t version) {         \
    (void)m, (void)version;                                                    \
    return 0u FIELDS(GEN_EXACT);                                               \
  }                                                                            \
  static inline size_t largest_##NAME(uint16_t version) {                      \
    (void)version;                                                             \
    return 0u FIELDS(GEN_LARGEST);                                             \
  }                                                                            \
  static inline uint8_t *store_##NAME(uint8_t *p, const TYPE *m,               \
                                      uint16_t version) {                      \
    (void)m, (void)version;                                                    \
    FIELDS(GEN_STORE) return p;                                                \
  }                                                                            \
  static inline void get_##NAME(cursor *c, TYPE *m, uint16_t version) {        \
    (void)version;                                                             \
    FIELDS(GEN_GET)                                                            \
  }

#endif /* TW_PROTO_GEN_H */
