/*
 * test_proto - the wire protocol: every message round-trips, the documented
 * example encodes byte for byte, and truncated, oversized, trailing and
 * garbage input is rejected without reading past the buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"

static proto_str S(const char *s) {
  proto_str r = {s, (uint32_t)strlen(s)};
  return r;
}

static int str_eq(proto_str s, const char *want) {
  return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static void hello_round_trip(void **state) {
  (void)state;
  proto_buf b;
  proto_buf_init(&b);
  proto_hello h = {0};
  for (int i = 0; i < PROTO_INSTANCE_SIZE; i++)
    h.instance[i] = (uint8_t)(i * 7 + 1);
  h.pid = 4242;
  h.started_at_ns = 1700000000123456789LL;
  h.service = S("api");
  h.host = S("web-1");
  h.token = S("");
  proto_put_hello(&b, &h);
  assert_false(proto_buf_failed(&b));

  proto_frame f;
  assert_int_equal(proto_frame_next(b.data, b.len, 0, &f), 0);
  assert_int_equal(f.type, PROTO_HELLO);
  assert_int_equal(f.frame_len, b.len);
  proto_hello d;
  assert_int_equal(proto_decode_hello(f.payload, f.payload_len, &d), 0);
  assert_int_equal(d.version, PROTO_VERSION);
  assert_memory_equal(d.instance, h.instance, PROTO_INSTANCE_SIZE);
  assert_int_equal(d.pid, 4242);
  assert_true(d.started_at_ns == h.started_at_ns);
  assert_true(str_eq(d.service, "api"));
  assert_true(str_eq(d.host, "web-1"));
  assert_int_equal(d.token.len, 0);
  proto_buf_fini(&b);
}

static void hello_rejects_bad_magic_and_version(void **state) {
  (void)state;
  proto_buf b;
  proto_buf_init(&b);
  proto_hello h = {0};
  h.service = S("s");
  h.host = S("h");
  proto_put_hello(&b, &h);
  proto_frame f;
  assert_int_equal(proto_frame_next(b.data, b.len, 0, &f), 0);
  uint8_t *payload = (uint8_t *)f.payload;
  proto_hello d;
  payload[0] ^= 0xff;
  assert_int_equal(proto_decode_hello(f.payload, f.payload_len, &d),
                   PROTO_E_MAGIC);
  payload[0] ^= 0xff;
  payload[4] = 9; /* version 9 */
  assert_int_equal(proto_decode_hello(f.payload, f.payload_len, &d),
                   PROTO_E_VERSION);
  proto_buf_fini(&b);
}

static void control_frames_round_trip(void **state) {
  (void)state;
  proto_buf b;
  proto_buf_init(&b);
  proto_welcome w = {PROTO_VERSION, 77, 65536};
  proto_put_welcome(&b, &w);
  proto_put_ack(&b, 1234567890123ULL);
  proto_put_goodbye(&b, 99);
  proto_put_error(&b, "bad token");

  const uint8_t *p = b.data;
  size_t left = b.len;
  proto_frame f;
  assert_int_equal(proto_frame_next(p, left, 0, &f), 0);
  assert_int_equal(f.type, PROTO_WELCOME);
  proto_welcome wd;
  assert_int_equal(proto_decode_welcome(f.payload, f.payload_len, &wd), 0);
  assert_int_equal(wd.next_seq, 77);
  assert_int_equal(wd.max_frame, 65536);
  p += f.frame_len;
  left -= f.frame_len;

  uint64_t v;
  assert_int_equal(proto_frame_next(p, left, 0, &f), 0);
  assert_int_equal(f.type, PROTO_ACK);
  assert_int_equal(proto_decode_u64(f.payload, f.payload_len, &v), 0);
  assert_true(v == 1234567890123ULL);
  p += f.frame_len;
  left -= f.frame_len;

  assert_int_equal(proto_frame_next(p, left, 0, &f), 0);
  assert_int_equal(f.type, PROTO_GOODBYE);
  assert_int_equal(proto_decode_u64(f.payload, f.payload_len, &v), 0);
  assert_int_equal(v, 99);
  p += f.frame_len;
  left -= f.frame_len;

  proto_str reason;
  assert_int_equal(proto_frame_next(p, left, 0, &f), 0);
  assert_int_equal(f.type, PROTO_ERROR);
  assert_int_equal(proto_decode_error(f.payload, f.payload_len, &reason), 0);
  assert_true(str_eq(reason, "bad token"));
  assert_int_equal(left, f.frame_len);
  proto_buf_fini(&b);
}

/* Every event kind, encoded then decoded, comes back field for field. */
static void events_round_trip(void **state) {
  (void)state;
  proto_event in[9];
  memset(in, 0, sizeof(in));
  in[0].kind = PROTO_EV_STRING, in[0].string = 1, in[0].text = S("send_email");
  in[1].kind = PROTO_EV_BATCH, in[1].batch = 5, in[1].string = 2;
  in[2].kind = PROTO_EV_ENQUEUE, in[2].task = 6, in[2].batch = 5;
  in[2].position = 1, in[2].string = 1, in[2].mode = 1, in[2].other = 1234;
  in[3].kind = PROTO_EV_START, in[3].task = 6, in[3].other = 99;
  in[4].kind = PROTO_EV_FINISH, in[4].task = 6;
  in[5].kind = PROTO_EV_FAIL, in[5].task = 7, in[5].text = S("ValueError");
  in[5].message = S("bad address"), in[5].detail = S("Traceback...\n");
  in[6].kind = PROTO_EV_SKIP, in[6].task = 8, in[6].other = 7;
  in[7].kind = PROTO_EV_DROP, in[7].task = 9, in[7].text = S("status 500");
  in[8].kind = PROTO_EV_HEALTH, in[8].other = 3, in[8].other2 = 2;
  for (int i = 0; i < 9; i++)
    in[i].time_ns = 1000 + i;

  proto_buf b;
  proto_buf_init(&b);
  proto_events_open(&b, 41);
  size_t expect = PROTO_HEADER_SIZE + 12;
  for (int i = 0; i < 9; i++) {
    proto_put_event(&b, &in[i]);
    expect += proto_event_size(&in[i]);
  }
  proto_events_close(&b);
  assert_int_equal(b.len, expect);

  proto_frame f;
  assert_int_equal(proto_frame_next(b.data, b.len, 0, &f), 0);
  assert_int_equal(f.type, PROTO_EVENTS);
  proto_events it;
  assert_int_equal(proto_events_begin(&it, f.payload, f.payload_len), 0);
  assert_int_equal(it.first_seq, 41);
  assert_int_equal(it.count, 9);
  proto_event ev;
  for (int i = 0; i < 9; i++) {
    assert_int_equal(proto_events_next(&it, &ev), 0);
    assert_int_equal(ev.kind, in[i].kind);
    assert_true(ev.time_ns == in[i].time_ns);
    assert_int_equal(ev.task, in[i].task);
    assert_int_equal(ev.batch, in[i].batch);
    assert_int_equal(ev.other, in[i].other);
    assert_int_equal(ev.other2, in[i].other2);
    assert_int_equal(ev.position, in[i].position);
    assert_int_equal(ev.string, in[i].string);
    assert_int_equal(ev.mode, in[i].mode);
    assert_int_equal(ev.text.len, in[i].text.len);
    if (ev.text.len)
      assert_memory_equal(ev.text.ptr, in[i].text.ptr, ev.text.len);
    assert_int_equal(ev.message.len, in[i].message.len);
    assert_int_equal(ev.detail.len, in[i].detail.len);
  }
  assert_int_equal(proto_events_next(&it, &ev), 1);
  proto_buf_fini(&b);
}

/* LINK (kind 10): a batch id and its request's traceparent, laid out as
 * docs/protocol.md says; batch 0 and a text over PROTO_LINK_MAX are
 * refused. */
static void link_event(void **state) {
  (void)state;
  static const char tp[] =
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  proto_event ev = {0}, out;
  ev.kind = PROTO_EV_LINK;
  ev.time_ns = 5;
  ev.batch = 7;
  ev.text.ptr = tp;
  ev.text.len = sizeof(tp) - 1;
  proto_buf b;
  proto_buf_init(&b);
  proto_events_open(&b, 1);
  proto_put_event(&b, &ev);
  proto_events_close(&b);
  size_t start = PROTO_HEADER_SIZE + 12;
  assert_int_equal(b.len, start + proto_event_size(&ev));
  assert_int_equal(proto_event_size(&ev), 1 + 8 + 8 + 2 + 55);
  assert_int_equal(b.data[start], 10);
  assert_int_equal(b.data[start + 9], 7); /* batch, little-endian */
  assert_int_equal(b.data[start + 17], 55);
  assert_memory_equal(b.data + start + 19, tp, 55);
  proto_events it;
  assert_int_equal(
      proto_events_begin(&it, b.data + PROTO_HEADER_SIZE, b.len - 6), 0);
  assert_int_equal(proto_events_next(&it, &out), 0);
  assert_int_equal(out.kind, PROTO_EV_LINK);
  assert_int_equal(out.batch, 7);
  assert_int_equal(out.task, 0);
  assert_int_equal(out.text.len, 55);
  assert_memory_equal(out.text.ptr, tp, 55);
  /* Batch 0. */
  b.data[start + 9] = 0;
  assert_int_equal(
      proto_events_begin(&it, b.data + PROTO_HEADER_SIZE, b.len - 6), 0);
  assert_int_equal(proto_events_next(&it, &out), PROTO_E_FIELD);
  /* A text longer than PROTO_LINK_MAX. */
  b.data[start + 9] = 7;
  b.data[start + 17] = 0x01;
  b.data[start + 18] = 0x01; /* 257 */
  assert_int_equal(
      proto_events_begin(&it, b.data + PROTO_HEADER_SIZE, b.len - 6), 0);
  assert_int_equal(proto_events_next(&it, &out), PROTO_E_FIELD);
  proto_buf_fini(&b);
}

/* The example in docs/protocol.md, byte for byte. */
static void documented_example(void **state) {
  (void)state;
  static const uint8_t want[] = {
      0x27, 0x00, 0x00, 0x00, 0xc8, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x05, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  proto_buf b;
  proto_buf_init(&b);
  proto_event ev = {0};
  ev.kind = PROTO_EV_HEALTH;
  ev.time_ns = 5;
  ev.other = 2;
  ev.other2 = 1;
  proto_events_open(&b, 7);
  proto_put_event(&b, &ev);
  proto_events_close(&b);
  assert_int_equal(b.len, sizeof(want));
  assert_memory_equal(b.data, want, sizeof(want));
  proto_buf_fini(&b);
}

static void frame_limits(void **state) {
  (void)state;
  uint8_t hdr[8] = {0};
  proto_frame f;
  /* Fewer than four bytes: wait. */
  assert_int_equal(proto_frame_next(hdr, 3, 0, &f), PROTO_NEED_MORE);
  /* Length 1: below the type field. */
  hdr[0] = 1;
  assert_int_equal(proto_frame_next(hdr, 8, 0, &f), PROTO_E_UNDERSIZED);
  /* Length above 1 MiB: rejected from the header alone. */
  uint32_t big = PROTO_FRAME_MAX + 1;
  memcpy(hdr, &big, 4);
  hdr[0] = (uint8_t)big, hdr[1] = (uint8_t)(big >> 8);
  hdr[2] = (uint8_t)(big >> 16), hdr[3] = (uint8_t)(big >> 24);
  assert_int_equal(proto_frame_next(hdr, 8, 0, &f), PROTO_E_OVERSIZED);
  /* A smaller limit set by the caller applies too. */
  hdr[0] = 0x00, hdr[1] = 0x10, hdr[2] = 0, hdr[3] = 0; /* 4096 */
  assert_int_equal(proto_frame_next(hdr, 8, 1024, &f), PROTO_E_OVERSIZED);
  /* Complete header, incomplete body: wait. */
  assert_int_equal(proto_frame_next(hdr, 8, 0, &f), PROTO_NEED_MORE);
}

/* Cutting an EVENTS payload anywhere gives an error, never a read past the
 * end (ASan in CI watches the reads: the copy is exactly sized). */
static void events_truncated_everywhere(void **state) {
  (void)state;
  proto_buf b;
  proto_buf_init(&b);
  proto_event ev = {0};
  ev.kind = PROTO_EV_FAIL;
  ev.task = 3;
  ev.text = S("TimeoutError");
  ev.message = S("smtp timed out");
  ev.detail = S("line 1\nline 2\n");
  proto_events_open(&b, 1);
  proto_put_event(&b, &ev);
  ev.kind = PROTO_EV_SKIP;
  ev.task = 4;
  ev.other = 3;
  proto_put_event(&b, &ev);
  proto_events_close(&b);
  proto_frame f;
  assert_int_equal(proto_frame_next(b.data, b.len, 0, &f), 0);
  for (size_t cut = 0; cut < f.payload_len; cut++) {
    uint8_t *copy = malloc(cut ? cut : 1);
    memcpy(copy, f.payload, cut);
    proto_events it;
    proto_event out;
    int rc = proto_events_begin(&it, copy, cut);
    while (rc == 0)
      rc = proto_events_next(&it, &out);
    assert_true(rc < 0);
    free(copy);
  }
  proto_buf_fini(&b);
}

static void events_trailing_and_bad_fields(void **state) {
  (void)state;
  proto_buf b;
  proto_buf_init(&b);
  proto_event ev = {0};
  ev.kind = PROTO_EV_FINISH;
  ev.task = 1;
  proto_events_open(&b, 1);
  proto_put_event(&b, &ev);
  proto_events_close(&b);
  proto_frame f;
  assert_int_equal(proto_frame_next(b.data, b.len, 0, &f), 0);

  /* One extra byte after the announced events. */
  uint8_t buf[64];
  memcpy(buf, f.payload, f.payload_len);
  buf[f.payload_len] = 0;
  proto_events it;
  proto_event out;
  assert_int_equal(proto_events_begin(&it, buf, f.payload_len + 1), 0);
  assert_int_equal(proto_events_next(&it, &out), 0);
  assert_int_equal(proto_events_next(&it, &out), PROTO_E_TRAILING);

  /* Unknown kind. */
  memcpy(buf, f.payload, f.payload_len);
  buf[12] = 0x7f;
  assert_int_equal(proto_events_begin(&it, buf, f.payload_len), 0);
  assert_int_equal(proto_events_next(&it, &out), PROTO_E_KIND);

  /* Task id 0 is never valid. */
  memcpy(buf, f.payload, f.payload_len);
  memset(buf + 12 + 9, 0, 8);
  assert_int_equal(proto_events_begin(&it, buf, f.payload_len), 0);
  assert_int_equal(proto_events_next(&it, &out), PROTO_E_FIELD);

  /* A count that cannot fit in the payload. */
  memcpy(buf, f.payload, f.payload_len);
  buf[8] = 0xff, buf[9] = 0xff, buf[10] = 0xff, buf[11] = 0x7f;
  assert_int_equal(proto_events_begin(&it, buf, f.payload_len),
                   PROTO_E_TRUNCATED);

  /* Count 0 and first_seq 0 are malformed. */
  memcpy(buf, f.payload, f.payload_len);
  memset(buf + 8, 0, 4);
  assert_int_equal(proto_events_begin(&it, buf, f.payload_len), PROTO_E_FIELD);
  memcpy(buf, f.payload, f.payload_len);
  memset(buf, 0, 8);
  assert_int_equal(proto_events_begin(&it, buf, f.payload_len), PROTO_E_FIELD);
  proto_buf_fini(&b);
}

/* A string length larger than its limit is a field error, even when the
 * bytes are there. */
static void oversized_string(void **state) {
  (void)state;
  size_t n = 4 + 2 + 16 + 4 + 8 + 2 + PROTO_IDENT_MAX + 1 + 2 + 2;
  uint8_t *p = calloc(1, n);
  uint32_t magic = PROTO_MAGIC;
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(magic >> (8 * i));
  p[4] = PROTO_VERSION;
  size_t at = 4 + 2 + 16 + 4 + 8;
  p[at] = (uint8_t)((PROTO_IDENT_MAX + 1) & 0xff);
  p[at + 1] = (uint8_t)((PROTO_IDENT_MAX + 1) >> 8);
  proto_hello h;
  assert_int_equal(proto_decode_hello(p, n, &h), PROTO_E_FIELD);
  free(p);
}

/* Garbage of every length never crashes and never decodes into a frame
 * that claims more bytes than were given. */
static void garbage(void **state) {
  (void)state;
  uint32_t seed = 12345;
  uint8_t buf[512];
  for (int round = 0; round < 20000; round++) {
    size_t n = (size_t)(round % (int)sizeof(buf));
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      buf[i] = (uint8_t)(seed >> 16);
    }
    proto_frame f;
    int rc = proto_frame_next(buf, n, 0, &f);
    if (rc != 0)
      continue;
    assert_true(f.frame_len <= n);
    proto_hello h;
    proto_events it;
    proto_event ev;
    (void)proto_decode_hello(f.payload, f.payload_len, &h);
    rc = proto_events_begin(&it, f.payload, f.payload_len);
    while (rc == 0)
      rc = proto_events_next(&it, &ev);
  }
}

static void strerror_covers_codes(void **state) {
  (void)state;
  for (int rc = -9; rc <= 1; rc++)
    assert_string_not_equal(proto_strerror(rc), "unknown protocol error");
  assert_string_equal(proto_strerror(-100), "unknown protocol error");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(link_event),
      cmocka_unit_test(hello_round_trip),
      cmocka_unit_test(hello_rejects_bad_magic_and_version),
      cmocka_unit_test(control_frames_round_trip),
      cmocka_unit_test(events_round_trip),
      cmocka_unit_test(documented_example),
      cmocka_unit_test(frame_limits),
      cmocka_unit_test(events_truncated_everywhere),
      cmocka_unit_test(events_trailing_and_bad_fields),
      cmocka_unit_test(oversized_string),
      cmocka_unit_test(garbage),
      cmocka_unit_test(strerror_covers_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
