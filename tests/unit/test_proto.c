/*
 * test_proto - the wire protocol: every message round-trips, the documented
 * example encodes byte for byte, and truncated, oversized, trailing and
 * garbage input is rejected without reading past the buffer. The agent's
 * in-place encoder and the EVENTS header patches give the general
 * encoder's bytes exactly; versions are negotiated as docs/protocol.md
 * says, and a table row marked for a later version is left out before it;
 * docs/protocol.md (the first argument) lists every table's fields.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"
#include "proto_gen.h" /* a table of the test's own (fields_follow_...) */

static const char *docs_path;

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
  tw__proto_buf_init(&b);
  proto_hello h = {0};
  for (int i = 0; i < PROTO_INSTANCE_SIZE; i++)
    h.instance[i] = (uint8_t)(i * 7 + 1);
  h.pid = 4242;
  h.started_at_ns = 1700000000123456789LL;
  h.service = S("api");
  h.host = S("web-1");
  h.token = S("");
  tw__proto_put_hello(&b, &h);
  assert_false(tw__proto_buf_failed(&b));

  proto_frame f;
  assert_int_equal(tw__proto_frame_next(b.data, b.len, 0, &f), 0);
  assert_int_equal(f.type, PROTO_HELLO);
  assert_int_equal(f.frame_len, b.len);
  proto_hello d;
  assert_int_equal(tw__proto_decode_hello(f.payload, f.payload_len, &d), 0);
  assert_int_equal(d.version, PROTO_VERSION);
  assert_memory_equal(d.instance, h.instance, PROTO_INSTANCE_SIZE);
  assert_int_equal(d.pid, 4242);
  assert_true(d.started_at_ns == h.started_at_ns);
  assert_true(str_eq(d.service, "api"));
  assert_true(str_eq(d.host, "web-1"));
  assert_int_equal(d.token.len, 0);
  tw__proto_buf_fini(&b);
}

static void hello_rejects_bad_magic_and_version(void **state) {
  (void)state;
  proto_buf b;
  tw__proto_buf_init(&b);
  proto_hello h = {0};
  h.service = S("s");
  h.host = S("h");
  tw__proto_put_hello(&b, &h);
  proto_frame f;
  assert_int_equal(tw__proto_frame_next(b.data, b.len, 0, &f), 0);
  uint8_t *payload = (uint8_t *)f.payload;
  proto_hello d;
  payload[0] ^= 0xff;
  assert_int_equal(tw__proto_decode_hello(f.payload, f.payload_len, &d),
                   PROTO_E_MAGIC);
  payload[0] ^= 0xff;
  payload[4] = 0; /* version 0: no agent speaks it */
  assert_int_equal(tw__proto_decode_hello(f.payload, f.payload_len, &d),
                   PROTO_E_VERSION);
  tw__proto_buf_fini(&b);
  /* An agent that speaks 9 only. */
  tw__proto_buf_init(&b);
  h.version = h.version_min = 9;
  tw__proto_put_hello(&b, &h);
  assert_int_equal(tw__proto_frame_next(b.data, b.len, 0, &f), 0);
  assert_int_equal(tw__proto_decode_hello(f.payload, f.payload_len, &d),
                   PROTO_E_VERSION);
  assert_int_equal(d.version, 9);
  assert_int_equal(d.version_min, 9);
  tw__proto_buf_fini(&b);
}

static void control_frames_round_trip(void **state) {
  (void)state;
  proto_buf b;
  tw__proto_buf_init(&b);
  proto_welcome w = {PROTO_VERSION, 77, 65536};
  tw__proto_put_welcome(&b, &w);
  proto_ack ack = {1234567890123ULL, 100};
  tw__proto_put_ack(&b, PROTO_VERSION, &ack);
  proto_ack ack5 = {42, 100};
  tw__proto_put_ack(&b, PROTO_HOLD_SINCE - 1, &ack5);
  tw__proto_put_goodbye(&b, PROTO_VERSION, 99);
  tw__proto_put_flush(&b, PROTO_VERSION, 98);
  tw__proto_put_error(&b, "bad token");

  const uint8_t *p = b.data;
  size_t left = b.len;
  proto_frame f;
  assert_int_equal(tw__proto_frame_next(p, left, 0, &f), 0);
  assert_int_equal(f.type, PROTO_WELCOME);
  proto_welcome wd;
  assert_int_equal(tw__proto_decode_welcome(f.payload, f.payload_len, &wd), 0);
  assert_int_equal(wd.next_seq, 77);
  assert_int_equal(wd.max_frame, 65536);
  p += f.frame_len;
  left -= f.frame_len;

  uint64_t v;
  proto_ack ad;
  assert_int_equal(tw__proto_frame_next(p, left, 0, &f), 0);
  assert_int_equal(f.type, PROTO_ACK);
  assert_int_equal(
      tw__proto_decode_ack(f.payload, f.payload_len, PROTO_VERSION, &ad), 0);
  assert_true(ad.next_seq == 1234567890123ULL);
  assert_int_equal(ad.hold_ms, 100);
  /* Before version 6 it has no hold_ms: its four bytes are left over. */
  assert_int_equal(tw__proto_decode_ack(f.payload, f.payload_len,
                                        PROTO_HOLD_SINCE - 1, &ad),
                   PROTO_E_TRAILING);
  p += f.frame_len;
  left -= f.frame_len;

  /* Encoded at version 5, the hold is left out; read at 6 it is missing. */
  assert_int_equal(tw__proto_frame_next(p, left, 0, &f), 0);
  assert_int_equal(f.type, PROTO_ACK);
  assert_int_equal(f.payload_len, 8);
  assert_int_equal(tw__proto_decode_ack(f.payload, f.payload_len,
                                        PROTO_HOLD_SINCE - 1, &ad),
                   0);
  assert_true(ad.next_seq == 42 && ad.hold_ms == 0);
  assert_int_not_equal(tw__proto_decode_ack(f.payload, f.payload_len,
                                            PROTO_HOLD_SINCE, &ad),
                       0);
  p += f.frame_len;
  left -= f.frame_len;

  assert_int_equal(tw__proto_frame_next(p, left, 0, &f), 0);
  assert_int_equal(f.type, PROTO_GOODBYE);
  assert_int_equal(
      tw__proto_decode_goodbye(f.payload, f.payload_len, PROTO_VERSION, &v), 0);
  assert_int_equal(v, 99);
  p += f.frame_len;
  left -= f.frame_len;

  assert_int_equal(tw__proto_frame_next(p, left, 0, &f), 0);
  assert_int_equal(f.type, PROTO_FLUSH);
  assert_int_equal(f.payload_len, 8);
  assert_int_equal(
      tw__proto_decode_flush(f.payload, f.payload_len, PROTO_VERSION, &v), 0);
  assert_int_equal(v, 98);
  /* Before version 5 it has no field: its sequence number is left over. */
  assert_int_equal(tw__proto_decode_flush(f.payload, f.payload_len,
                                          PROTO_FLUSH_SINCE - 1, &v),
                   PROTO_E_TRAILING);
  p += f.frame_len;
  left -= f.frame_len;

  proto_str reason;
  assert_int_equal(tw__proto_frame_next(p, left, 0, &f), 0);
  assert_int_equal(f.type, PROTO_ERROR);
  assert_int_equal(tw__proto_decode_error(f.payload, f.payload_len, &reason), 0);
  assert_true(str_eq(reason, "bad token"));
  assert_int_equal(left, f.frame_len);
  tw__proto_buf_fini(&b);
}

/* Every event kind, encoded then decoded, comes back field for field, in
 * the fixed encoding (version 3) and the compact one (PROTO_VERSION):
 * times on either side of the frame's base, the extremes included. */
static void events_round_trip_at(uint16_t version) {
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
  in[8].dropped_batches = 5, in[8].dropped_tasks = UINT64_MAX;
  for (int i = 0; i < 9; i++)
    in[i].time_ns = 1000 + i;
  in[3].time_ns = INT64_MAX;
  in[4].time_ns = INT64_MIN;
  in[5].time_ns = 999;
  in[2].task = UINT64_MAX;

  proto_buf b;
  tw__proto_buf_init(&b);
  tw__proto_events_open(&b, version, 41);
  size_t expect =
      PROTO_HEADER_SIZE + 12 + (version >= PROTO_COMPACT_SINCE ? 8 : 0);
  for (int i = 0; i < 9; i++) {
    tw__proto_put_event(&b, &in[i]);
    expect += tw__proto_event_size(&in[i], version, in[0].time_ns);
  }
  tw__proto_events_close(&b);
  assert_int_equal(b.len, expect);
  assert_true(b.base_time == in[0].time_ns);

  proto_frame f;
  assert_int_equal(tw__proto_frame_next(b.data, b.len, 0, &f), 0);
  assert_int_equal(f.type, PROTO_EVENTS);
  proto_events it;
  assert_int_equal(
      tw__proto_events_begin(&it, f.payload, f.payload_len, version), 0);
  assert_int_equal(it.first_seq, 41);
  assert_int_equal(it.count, 9);
  proto_event ev;
  for (int i = 0; i < 9; i++) {
    assert_int_equal(tw__proto_events_next(&it, &ev), 0);
    assert_int_equal(ev.kind, in[i].kind);
    assert_true(ev.time_ns == in[i].time_ns);
    assert_int_equal(ev.task, in[i].task);
    assert_int_equal(ev.batch, in[i].batch);
    assert_int_equal(ev.other, in[i].other);
    assert_int_equal(ev.other2, in[i].other2);
    assert_true(ev.dropped_batches == in[i].dropped_batches);
    assert_true(ev.dropped_tasks == in[i].dropped_tasks);
    assert_int_equal(ev.position, in[i].position);
    assert_int_equal(ev.string, in[i].string);
    assert_int_equal(ev.mode, in[i].mode);
    assert_int_equal(ev.text.len, in[i].text.len);
    if (ev.text.len)
      assert_memory_equal(ev.text.ptr, in[i].text.ptr, ev.text.len);
    assert_int_equal(ev.message.len, in[i].message.len);
    assert_int_equal(ev.detail.len, in[i].detail.len);
  }
  assert_int_equal(tw__proto_events_next(&it, &ev), 1);
  tw__proto_buf_fini(&b);
}

static void events_round_trip(void **state) {
  (void)state;
  events_round_trip_at(3);
  events_round_trip_at(PROTO_VERSION);
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
  tw__proto_buf_init(&b);
  tw__proto_events_open(&b, 3, 1);
  tw__proto_put_event(&b, &ev);
  tw__proto_events_close(&b);
  size_t start = PROTO_HEADER_SIZE + 12;
  assert_int_equal(b.len, start + tw__proto_event_size(&ev, 3, 5));
  assert_int_equal(tw__proto_event_size(&ev, 3, 5), 1 + 8 + 8 + 2 + 55);
  assert_int_equal(b.data[start], 10);
  assert_int_equal(b.data[start + 9], 7); /* batch, little-endian */
  assert_int_equal(b.data[start + 17], 55);
  assert_memory_equal(b.data + start + 19, tp, 55);
  proto_events it;
  assert_int_equal(
      tw__proto_events_begin(&it, b.data + PROTO_HEADER_SIZE, b.len - 6,
                             3), 0);
  assert_int_equal(tw__proto_events_next(&it, &out), 0);
  assert_int_equal(out.kind, PROTO_EV_LINK);
  assert_int_equal(out.batch, 7);
  assert_int_equal(out.task, 0);
  assert_int_equal(out.text.len, 55);
  assert_memory_equal(out.text.ptr, tp, 55);
  /* Batch 0. */
  b.data[start + 9] = 0;
  assert_int_equal(
      tw__proto_events_begin(&it, b.data + PROTO_HEADER_SIZE, b.len - 6,
                             3), 0);
  assert_int_equal(tw__proto_events_next(&it, &out), PROTO_E_FIELD);
  /* A text longer than PROTO_LINK_MAX. */
  b.data[start + 9] = 7;
  b.data[start + 17] = 0x01;
  b.data[start + 18] = 0x01; /* 257 */
  assert_int_equal(
      tw__proto_events_begin(&it, b.data + PROTO_HEADER_SIZE, b.len - 6,
                             3), 0);
  assert_int_equal(tw__proto_events_next(&it, &out), PROTO_E_FIELD);
  /* A version 1 frame has no LINK: its size there is 0 (the agent leaves
   * it out for such a collector) and a version 1 decoder refuses it. */
  assert_int_equal(tw__proto_event_size(&ev, 1, 5), 0);
  b.data[start + 18] = 0;
  assert_int_equal(tw__proto_events_begin(&it, b.data + PROTO_HEADER_SIZE,
                                          b.len - 6, 1),
                   0);
  assert_int_equal(tw__proto_events_next(&it, &out), PROTO_E_KIND);
  /* Compact: kind, time (the frame's base: 0), batch 7, the string. */
  assert_int_equal(tw__proto_event_size(&ev, PROTO_COMPACT_SINCE, 5),
                   1 + 1 + 1 + 2 + 55);
  tw__proto_buf_fini(&b);
}

/* The example in docs/protocol.md, byte for byte. */
static void documented_example(void **state) {
  (void)state;
  static const uint8_t want[] = {
      0x37, 0x00, 0x00, 0x00, 0xc8, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x05, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00};
  proto_buf b;
  tw__proto_buf_init(&b);
  proto_event ev = {0};
  ev.kind = PROTO_EV_HEALTH;
  ev.time_ns = 5;
  ev.other = 2;
  ev.other2 = 1;
  ev.dropped_batches = 1;
  tw__proto_events_open(&b, 3, 7);
  tw__proto_put_event(&b, &ev);
  tw__proto_events_close(&b);
  assert_int_equal(b.len, sizeof(want));
  assert_memory_equal(b.data, want, sizeof(want));
  /* At version 2 the event ends after reconnects: the length is 39. */
  tw__proto_buf_reset(&b);
  tw__proto_events_open(&b, 2, 7);
  tw__proto_put_event(&b, &ev);
  tw__proto_events_close(&b);
  assert_int_equal(b.len, sizeof(want) - 16);
  assert_int_equal(b.data[0], 0x27);
  assert_memory_equal(b.data + 4, want + 4, sizeof(want) - 20);
  tw__proto_buf_fini(&b);
}

/* HEALTH of version 3 carries the batches and tasks refused whole; a
 * version 2 peer (an older agent or collector) reads and writes the first
 * two counters only, and reads the others as 0. */
static void health_follows_its_version(void **state) {
  (void)state;
  proto_event ev = {0}, out;
  ev.kind = PROTO_EV_HEALTH;
  ev.time_ns = 9;
  ev.other = 7;
  ev.other2 = 1;
  ev.dropped_batches = 3;
  ev.dropped_tasks = 2;
  for (uint16_t v = PROTO_VERSION_MIN; v <= PROTO_VERSION; v++) {
    proto_buf b;
    tw__proto_buf_init(&b);
    tw__proto_events_open(&b, v, 1);
    tw__proto_put_event(&b, &ev);
    tw__proto_events_close(&b);
    assert_false(tw__proto_buf_failed(&b));
    /* Compact: kind, time (the base), four one-byte counters. */
    assert_int_equal(tw__proto_event_size(&ev, v, 9),
                     v >= PROTO_COMPACT_SINCE ? 6 : v >= 3 ? 41 : 25);
    proto_events it;
    assert_int_equal(tw__proto_events_begin(&it, b.data + PROTO_HEADER_SIZE,
                                            b.len - PROTO_HEADER_SIZE, v),
                     0);
    assert_int_equal(tw__proto_events_next(&it, &out), 0);
    assert_int_equal(tw__proto_events_next(&it, &out), 1);
    assert_int_equal(out.other, 7);
    assert_int_equal(out.other2, 1);
    assert_int_equal(out.dropped_batches, v >= 3 ? 3 : 0);
    assert_int_equal(out.dropped_tasks, v >= 3 ? 2 : 0);
    /* Read at the other version, the frame is malformed: a version 3
     * reader misses 16 bytes, a version 2 reader finds them left over (a
     * compact frame read at version 2 is refused from its header on). */
    uint16_t other = v >= 3 ? 2 : 3;
    int rc = tw__proto_events_begin(&it, b.data + PROTO_HEADER_SIZE,
                                    b.len - PROTO_HEADER_SIZE, other);
    assert_int_equal(rc, v >= PROTO_COMPACT_SINCE ? PROTO_E_TRUNCATED : 0);
    if (rc == 0)
      rc = tw__proto_events_next(&it, &out);
    if (rc == 0)
      rc = tw__proto_events_next(&it, &out);
    assert_true(rc < 0);
    tw__proto_buf_fini(&b);
  }
}

static void frame_limits(void **state) {
  (void)state;
  uint8_t hdr[8] = {0};
  proto_frame f;
  /* Fewer than four bytes: wait. */
  assert_int_equal(tw__proto_frame_next(hdr, 3, 0, &f), PROTO_NEED_MORE);
  /* Length 1: below the type field. */
  hdr[0] = 1;
  assert_int_equal(tw__proto_frame_next(hdr, 8, 0, &f), PROTO_E_UNDERSIZED);
  /* Length above 1 MiB: rejected from the header alone. */
  uint32_t big = PROTO_FRAME_MAX + 1;
  memcpy(hdr, &big, 4);
  hdr[0] = (uint8_t)big, hdr[1] = (uint8_t)(big >> 8);
  hdr[2] = (uint8_t)(big >> 16), hdr[3] = (uint8_t)(big >> 24);
  assert_int_equal(tw__proto_frame_next(hdr, 8, 0, &f), PROTO_E_OVERSIZED);
  /* A smaller limit set by the caller applies too. */
  hdr[0] = 0x00, hdr[1] = 0x10, hdr[2] = 0, hdr[3] = 0; /* 4096 */
  assert_int_equal(tw__proto_frame_next(hdr, 8, 1024, &f), PROTO_E_OVERSIZED);
  /* Complete header, incomplete body: wait. */
  assert_int_equal(tw__proto_frame_next(hdr, 8, 0, &f), PROTO_NEED_MORE);
}

/* Cutting an EVENTS payload anywhere gives an error, never a read past the
 * end (ASan in CI watches the reads: the copy is exactly sized). */
static void events_truncated_everywhere_at(uint16_t version) {
  proto_buf b;
  tw__proto_buf_init(&b);
  proto_event ev = {0};
  ev.kind = PROTO_EV_FAIL;
  ev.task = 3;
  ev.text = S("TimeoutError");
  ev.message = S("smtp timed out");
  ev.detail = S("line 1\nline 2\n");
  ev.time_ns = 1700000000123456789;
  tw__proto_events_open(&b, version, 1);
  tw__proto_put_event(&b, &ev);
  ev.kind = PROTO_EV_SKIP;
  ev.task = 4;
  ev.other = 3;
  ev.time_ns -= 300000;
  tw__proto_put_event(&b, &ev);
  tw__proto_events_close(&b);
  proto_frame f;
  assert_int_equal(tw__proto_frame_next(b.data, b.len, 0, &f), 0);
  for (size_t cut = 0; cut < f.payload_len; cut++) {
    uint8_t *copy = malloc(cut ? cut : 1);
    memcpy(copy, f.payload, cut);
    proto_events it;
    proto_event out;
    int rc = tw__proto_events_begin(&it, copy, cut, version);
    while (rc == 0)
      rc = tw__proto_events_next(&it, &out);
    assert_true(rc < 0);
    free(copy);
  }
  tw__proto_buf_fini(&b);
}

static void events_truncated_everywhere(void **state) {
  (void)state;
  events_truncated_everywhere_at(3);
  events_truncated_everywhere_at(PROTO_VERSION);
}

/* At version 3 (fixed widths: the offsets below); compact_fields_are_strict
 * checks the compact encoding. */
static void events_trailing_and_bad_fields(void **state) {
  (void)state;
  proto_buf b;
  tw__proto_buf_init(&b);
  proto_event ev = {0};
  ev.kind = PROTO_EV_FINISH;
  ev.task = 1;
  tw__proto_events_open(&b, 3, 1);
  tw__proto_put_event(&b, &ev);
  tw__proto_events_close(&b);
  proto_frame f;
  assert_int_equal(tw__proto_frame_next(b.data, b.len, 0, &f), 0);

  /* One extra byte after the announced events. */
  uint8_t buf[64];
  memcpy(buf, f.payload, f.payload_len);
  buf[f.payload_len] = 0;
  proto_events it;
  proto_event out;
  assert_int_equal(
      tw__proto_events_begin(&it, buf, f.payload_len + 1, 3), 0);
  assert_int_equal(tw__proto_events_next(&it, &out), 0);
  assert_int_equal(tw__proto_events_next(&it, &out), PROTO_E_TRAILING);

  /* Unknown kind. */
  memcpy(buf, f.payload, f.payload_len);
  buf[12] = 0x7f;
  assert_int_equal(tw__proto_events_begin(&it, buf, f.payload_len, 3),
                   0);
  assert_int_equal(tw__proto_events_next(&it, &out), PROTO_E_KIND);

  /* Task id 0 is never valid. */
  memcpy(buf, f.payload, f.payload_len);
  memset(buf + 12 + 9, 0, 8);
  assert_int_equal(tw__proto_events_begin(&it, buf, f.payload_len, 3),
                   0);
  assert_int_equal(tw__proto_events_next(&it, &out), PROTO_E_FIELD);

  /* A count that cannot fit in the payload. */
  memcpy(buf, f.payload, f.payload_len);
  buf[8] = 0xff, buf[9] = 0xff, buf[10] = 0xff, buf[11] = 0x7f;
  assert_int_equal(tw__proto_events_begin(&it, buf, f.payload_len, 3),
                   PROTO_E_TRUNCATED);

  /* Count 0 and first_seq 0 are malformed. */
  memcpy(buf, f.payload, f.payload_len);
  memset(buf + 8, 0, 4);
  assert_int_equal(tw__proto_events_begin(&it, buf, f.payload_len, 3),
                   PROTO_E_FIELD);
  memcpy(buf, f.payload, f.payload_len);
  memset(buf, 0, 8);
  assert_int_equal(tw__proto_events_begin(&it, buf, f.payload_len, 3),
                   PROTO_E_FIELD);
  tw__proto_buf_fini(&b);
}

/* The second example in docs/protocol.md: a HELLO and a START at version
 * 4, byte for byte, and back. */
static void documented_compact_example(void **state) {
  (void)state;
  static const uint8_t want[] = {
      0x23, 0x00, 0x00, 0x00, 0xc8, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x09, 0x00, 0x02, 0x01, 0x01, 0x00, 0x04, 0xce, 0x04, 0xe8,
      0x07, 0x92, 0x21};
  proto_event health = {.kind = PROTO_EV_HEALTH,
                        .time_ns = 5,
                        .other = 2,
                        .other2 = 1,
                        .dropped_batches = 1};
  proto_event start = {
      .kind = PROTO_EV_START, .time_ns = 300, .task = 1000, .other = 4242};
  proto_buf b;
  tw__proto_buf_init(&b);
  tw__proto_events_open(&b, 4, 7);
  tw__proto_put_event(&b, &health);
  tw__proto_put_event(&b, &start);
  tw__proto_events_close(&b);
  assert_int_equal(b.len, sizeof(want));
  assert_memory_equal(b.data, want, sizeof(want));
  proto_events it;
  proto_event out;
  assert_int_equal(tw__proto_events_begin(&it, want + PROTO_HEADER_SIZE,
                                          sizeof(want) - PROTO_HEADER_SIZE, 4),
                   0);
  assert_true(it.base_time == 5);
  assert_int_equal(tw__proto_events_next(&it, &out), 0);
  assert_true(out.time_ns == 5 && out.other == 2 && out.dropped_batches == 1);
  assert_int_equal(tw__proto_events_next(&it, &out), 0);
  assert_true(out.time_ns == 300 && out.task == 1000 && out.other == 4242);
  assert_int_equal(tw__proto_events_next(&it, &out), 1);
  tw__proto_buf_fini(&b);
}

/* Decodes one compact event (a version 4 payload: first_seq 1, count 1,
 * base_time 1000, then `ev`). */
static int decode_compact(const uint8_t *ev, size_t n, proto_event *out) {
  uint8_t p[64] = {1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xe8, 0x03};
  memcpy(p + 20, ev, n);
  proto_events it;
  int rc = tw__proto_events_begin(&it, p, 20 + n, 4);
  if (rc == 0)
    rc = tw__proto_events_next(&it, out);
  if (rc == 0)
    rc = tw__proto_events_next(&it, out) == 1 ? 0 : PROTO_E_TRAILING;
  return rc;
}

/* The compact decoder is as strict as the fixed one: a varint longer than
 * the shortest encoding of its value, past 64 bits or past its field's
 * type, a value outside the field's range, and a varint cut short are
 * refused; the largest values and both ends of the time pass. */
static void compact_fields_are_strict(void **state) {
  (void)state;
  proto_event out;
  /* FINISH (kind 5), time +1 (zigzag 2), task 1. */
  static const uint8_t ok[] = {5, 2, 1};
  assert_int_equal(decode_compact(ok, sizeof(ok), &out), 0);
  assert_true(out.time_ns == 1001 && out.task == 1);
  /* Task 1 written in two bytes. */
  static const uint8_t overlong[] = {5, 2, 0x81, 0x00};
  assert_int_equal(decode_compact(overlong, sizeof(overlong), &out),
                   PROTO_E_FIELD);
  /* A zero time written in two bytes. */
  static const uint8_t overlong_time[] = {5, 0x80, 0x00, 1};
  assert_int_equal(decode_compact(overlong_time, sizeof(overlong_time), &out),
                   PROTO_E_FIELD);
  /* UINT64_MAX: nine bytes of 0xff then 0x01; 0x02 passes 64 bits. */
  uint8_t max[12] = {5, 2, 0xff, 0xff, 0xff, 0xff, 0xff,
                     0xff, 0xff, 0xff, 0xff, 0x01};
  assert_int_equal(decode_compact(max, sizeof(max), &out), 0);
  assert_true(out.task == UINT64_MAX);
  max[11] = 0x02;
  assert_int_equal(decode_compact(max, sizeof(max), &out), PROTO_E_FIELD);
  max[11] = 0x81; /* an eleventh byte announced */
  assert_int_equal(decode_compact(max, sizeof(max), &out), PROTO_E_FIELD);
  /* Task 0, and a task cut short. */
  static const uint8_t zero[] = {5, 2, 0};
  assert_int_equal(decode_compact(zero, sizeof(zero), &out), PROTO_E_FIELD);
  static const uint8_t cut[] = {5, 2, 0x81};
  assert_int_equal(decode_compact(cut, sizeof(cut), &out), PROTO_E_TRUNCATED);
  /* ENQUEUE (kind 3): task 1, batch 1, position 2^32 (past u32). */
  static const uint8_t wide[] = {3, 2, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x10,
                                 1, 1, 7};
  assert_int_equal(decode_compact(wide, sizeof(wide), &out), PROTO_E_FIELD);
  uint8_t fits[sizeof(wide)];
  memcpy(fits, wide, sizeof(wide));
  fits[4] = 0xff, fits[5] = 0xff, fits[6] = 0xff, fits[7] = 0xff;
  fits[8] = 0x0f; /* UINT32_MAX */
  assert_int_equal(decode_compact(fits, sizeof(fits), &out), 0);
  assert_true(out.position == UINT32_MAX && out.mode == 1 && out.other == 7);
  /* A mode outside 0..1 is refused as at version 3. */
  fits[10] = 2;
  assert_int_equal(decode_compact(fits, sizeof(fits), &out), PROTO_E_FIELD);
}

/* What the compact encoding saves on what a server records: a batch of
 * three tasks (BATCH, then ENQUEUE, START and FINISH of each), with the
 * agent's ids and times (millions of tasks in, spread over 82 ms), is 273
 * bytes at version 3 and under 45 % of that at version 4 (117). */
static void compact_batch_is_small(void **state) {
  (void)state;
  int64_t t = INT64_C(1796287327895651303);
  proto_event ev[10];
  size_t n = 0;
  ev[n++] = (proto_event){
      .kind = PROTO_EV_BATCH, .time_ns = t, .batch = 1234567, .string = 4};
  for (uint64_t k = 0; k < 3; k++) {
    uint64_t task = 3703701 + k;
    ev[n++] = (proto_event){.kind = PROTO_EV_ENQUEUE,
                            .time_ns = t + 900 + (int64_t)k * 400,
                            .task = task,
                            .batch = 1234567,
                            .position = (uint32_t)k,
                            .string = 1 + (uint32_t)k,
                            .mode = 1,
                            .other = 48213};
  }
  for (uint64_t k = 0; k < 3; k++) {
    /* Each task runs after the last one: 2 ms queued, 20 ms running. */
    int64_t at = t + INT64_C(2000000) + (int64_t)k * INT64_C(20000000);
    ev[n++] = (proto_event){.kind = PROTO_EV_START,
                            .time_ns = at,
                            .task = 3703701 + k,
                            .other = 48220};
    ev[n++] = (proto_event){.kind = PROTO_EV_FINISH,
                            .time_ns = at + INT64_C(20000000),
                            .task = 3703701 + k};
  }
  size_t size[2];
  for (int i = 0; i < 2; i++) {
    proto_buf b;
    tw__proto_buf_init(&b);
    tw__proto_events_open(&b, i == 0 ? 3 : 4, 1);
    size_t start = b.len;
    for (size_t k = 0; k < n; k++)
      tw__proto_put_event(&b, &ev[k]);
    size[i] = b.len - start;
    tw__proto_buf_fini(&b);
  }
  assert_int_equal(size[0], 273);
  printf("a batch of three tasks: %zu bytes at version 3, %zu at 4\n",
         size[0], size[1]);
  assert_true(size[1] * 100 < size[0] * 45);
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
  p[4] = 1; /* a version 1 HELLO: no version_min after the version */
  size_t at = 4 + 2 + 16 + 4 + 8;
  p[at] = (uint8_t)((PROTO_IDENT_MAX + 1) & 0xff);
  p[at + 1] = (uint8_t)((PROTO_IDENT_MAX + 1) >> 8);
  proto_hello h;
  assert_int_equal(tw__proto_decode_hello(p, n, &h), PROTO_E_FIELD);
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
    int rc = tw__proto_frame_next(buf, n, 0, &f);
    if (rc != 0)
      continue;
    assert_true(f.frame_len <= n);
    proto_hello h;
    proto_events it;
    proto_event ev;
    (void)tw__proto_decode_hello(f.payload, f.payload_len, &h);
    rc = tw__proto_events_begin(&it, f.payload, f.payload_len, PROTO_VERSION);
    while (rc == 0)
      rc = tw__proto_events_next(&it, &ev);
  }
}

static void strerror_covers_codes(void **state) {
  (void)state;
  for (int rc = -9; rc <= 1; rc++)
    assert_string_not_equal(tw__proto_strerror(rc), "unknown protocol error");
  assert_string_equal(tw__proto_strerror(-100), "unknown protocol error");
}

/* ---- the agent's encoder and the header patches -------------------------- */

static char big[PROTO_DETAIL_MAX + 100];

/* Events of every kind: strings empty, ordinary, at their limits and past
 * them (both encoders truncate). */
static size_t sample_events(proto_event *ev) {
  proto_str at_short = {big, PROTO_SHORT_MAX};
  proto_str past_short = {big, PROTO_SHORT_MAX + 1};
  proto_str past_detail = {big, PROTO_DETAIL_MAX + 50};
  size_t n = 0;
  memset(big, 'x', sizeof(big));
  memset(ev, 0, 16 * sizeof(*ev));
  ev[n++] = (proto_event){.kind = PROTO_EV_STRING, .string = 1, .text = S("a")};
  ev[n++] = (proto_event){.kind = PROTO_EV_STRING, .string = 2};
  ev[n++] =
      (proto_event){.kind = PROTO_EV_STRING, .string = 3, .text = past_short};
  ev[n++] = (proto_event){.kind = PROTO_EV_BATCH, .batch = 5, .string = 2};
  ev[n++] = (proto_event){.kind = PROTO_EV_ENQUEUE,
                          .task = 6,
                          .batch = 5,
                          .position = 70000,
                          .string = 1,
                          .mode = 1,
                          .other = UINT64_MAX};
  ev[n++] = (proto_event){.kind = PROTO_EV_START, .task = 6, .other = 99};
  ev[n++] = (proto_event){.kind = PROTO_EV_FINISH, .task = 6};
  ev[n++] = (proto_event){.kind = PROTO_EV_FAIL,
                          .task = 7,
                          .text = S("E"),
                          .message = at_short,
                          .detail = past_detail};
  ev[n++] = (proto_event){.kind = PROTO_EV_FAIL, .task = 8};
  ev[n++] = (proto_event){.kind = PROTO_EV_SKIP, .task = 9, .other = 7};
  ev[n++] = (proto_event){.kind = PROTO_EV_DROP, .task = 9, .text = S("no")};
  ev[n++] = (proto_event){.kind = PROTO_EV_HEALTH,
                          .other = 3,
                          .other2 = 2,
                          .dropped_batches = 4,
                          .dropped_tasks = 1};
  for (size_t i = 0; i < n; i++)
    ev[i].time_ns = -5 + (int64_t)i * 1000000007LL;
  return n;
}

/* A buffer of exactly `cap` bytes, the rest of its block a sentinel. */
static proto_buf fixed_buf(uint8_t *block, size_t block_size, size_t cap) {
  proto_buf b;
  tw__proto_buf_init(&b);
  memset(block, 0xa5, block_size);
  b.data = block;
  b.cap = cap;
  return b;
}

/* tw__proto_events_append() writes what tw__proto_put_event() writes, byte for
 * byte, for every kind; it fits an event in exactly its size and, one
 * byte short, writes nothing at all. */
static void append_matches_put_at(uint16_t version) {
  proto_event ev[16];
  size_t n = sample_events(ev);
  static uint8_t block[2 * PROTO_DETAIL_MAX];
  for (size_t i = 0; i < n; i++) {
    proto_buf general;
    tw__proto_buf_init(&general);
    tw__proto_events_open(&general, version, 41);
    size_t header = general.len;
    tw__proto_put_event(&general, &ev[i]);
    tw__proto_events_close(&general);
    assert_false(tw__proto_buf_failed(&general));
    assert_int_equal(general.len - header,
                     tw__proto_event_size(&ev[i], version, ev[i].time_ns));

    proto_buf fast = fixed_buf(block, sizeof(block), general.len - 1);
    tw__proto_events_open(&fast, version, 41);
    assert_int_equal(tw__proto_events_append(&fast, &ev[i]), -1);
    assert_int_equal(fast.len, header);
    assert_int_equal(fast.count, 0);
    assert_int_equal(block[header], 0xa5);
    fast.cap = general.len;
    assert_int_equal(tw__proto_events_append(&fast, &ev[i]), 0);
    tw__proto_events_close(&fast);
    assert_int_equal(fast.len, general.len);
    assert_memory_equal(fast.data, general.data, general.len);
    assert_int_equal(block[general.len], 0xa5);
    tw__proto_buf_fini(&general);
  }
  /* All of them in one frame, and kinds no version has. */
  proto_buf general, fast = fixed_buf(block, sizeof(block), sizeof(block));
  tw__proto_buf_init(&general);
  tw__proto_events_open(&general, version, 1);
  tw__proto_events_open(&fast, version, 1);
  for (size_t i = 0; i < n; i++) {
    tw__proto_put_event(&general, &ev[i]);
    assert_int_equal(tw__proto_events_append(&fast, &ev[i]), 0);
  }
  proto_event odd = {.kind = 0};
  assert_int_equal(tw__proto_events_append(&fast, &odd), -1);
  odd.kind = 77;
  assert_int_equal(tw__proto_events_append(&fast, &odd), -1);
  assert_int_equal(tw__proto_event_size(&odd, version, 0), 0);
  tw__proto_events_close(&general);
  tw__proto_events_close(&fast);
  assert_int_equal(fast.count, n);
  assert_int_equal(fast.len, general.len);
  assert_memory_equal(fast.data, general.data, general.len);
  tw__proto_put_event(&general, &odd); /* the general one says so too */
  assert_true(tw__proto_buf_failed(&general));
  tw__proto_buf_fini(&general);
}

static void append_matches_put_byte_for_byte(void **state) {
  (void)state;
  append_matches_put_at(3);
  append_matches_put_at(PROTO_VERSION);
}

/* The events of two closed frames are the same, field for field, under
 * the same header (first_seq and count). */
static void same_events(const proto_buf *a, const proto_buf *b) {
  proto_events ia, ib;
  proto_event ea, eb;
  assert_int_equal(tw__proto_events_begin(&ia, a->data + PROTO_HEADER_SIZE,
                                          a->len - PROTO_HEADER_SIZE,
                                          a->version),
                   0);
  assert_int_equal(tw__proto_events_begin(&ib, b->data + PROTO_HEADER_SIZE,
                                          b->len - PROTO_HEADER_SIZE,
                                          b->version),
                   0);
  assert_true(ia.first_seq == ib.first_seq);
  assert_int_equal(ia.count, ib.count);
  int ra, rb;
  while ((ra = tw__proto_events_next(&ia, &ea)) == 0) {
    rb = tw__proto_events_next(&ib, &eb);
    assert_int_equal(rb, 0);
    assert_int_equal(ea.kind, eb.kind);
    assert_true(ea.time_ns == eb.time_ns && ea.task == eb.task &&
                ea.batch == eb.batch && ea.other == eb.other &&
                ea.other2 == eb.other2 && ea.position == eb.position &&
                ea.string == eb.string && ea.mode == eb.mode &&
                ea.dropped_batches == eb.dropped_batches &&
                ea.dropped_tasks == eb.dropped_tasks);
    assert_int_equal(ea.text.len, eb.text.len);
    assert_int_equal(ea.message.len, eb.message.len);
    assert_int_equal(ea.detail.len, eb.detail.len);
    if (ea.text.len)
      assert_memory_equal(ea.text.ptr, eb.text.ptr, ea.text.len);
  }
  assert_int_equal(ra, 1);
  assert_int_equal(tw__proto_events_next(&ib, &eb), 1);
}

/* Cutting k events off a frame, or renumbering it, gives the frame the
 * general encoder makes of what is left: byte for byte in the fixed
 * encoding; in the compact one the same events (the cut frame keeps its
 * base_time, the first event it had, so its times' bytes may differ). */
static void cut_and_renumber_at(uint16_t version) {
  proto_event ev[16];
  size_t n = sample_events(ev);
  int fixed = version < PROTO_COMPACT_SINCE;
  proto_buf whole;
  tw__proto_buf_init(&whole);
  tw__proto_events_open(&whole, version, 10);
  for (size_t i = 0; i < n; i++)
    tw__proto_put_event(&whole, &ev[i]);
  tw__proto_events_close(&whole);
  for (size_t k = 0; k <= n; k++) {
    proto_buf cut = whole;
    cut.data = malloc(whole.len);
    memcpy(cut.data, whole.data, whole.len);
    assert_int_equal(tw__proto_events_cut(&cut, (uint32_t)k), 0);
    proto_buf fresh;
    tw__proto_buf_init(&fresh);
    tw__proto_events_open(&fresh, version, 10 + k);
    for (size_t i = k; i < n; i++)
      tw__proto_put_event(&fresh, &ev[i]);
    tw__proto_events_close(&fresh);
    assert_int_equal(cut.first_seq, 10 + k);
    assert_int_equal(cut.count, n - k);
    if (k < n)
      same_events(&cut, &fresh);
    if (fixed) {
      assert_int_equal(cut.len, fresh.len);
      assert_memory_equal(cut.data, fresh.data, fresh.len);
    }
    tw__proto_events_renumber(&cut, 1000000);
    tw__proto_events_renumber(&fresh, 1000000);
    if (k < n)
      same_events(&cut, &fresh);
    if (fixed)
      assert_memory_equal(cut.data, fresh.data, fresh.len);
    proto_buf reopened;
    tw__proto_buf_init(&reopened);
    tw__proto_events_open(&reopened, version, 1000000);
    for (size_t i = k; i < n; i++)
      tw__proto_put_event(&reopened, &ev[i]);
    tw__proto_events_close(&reopened);
    if (k < n)
      same_events(&cut, &reopened);
    if (fixed)
      assert_memory_equal(cut.data, reopened.data, reopened.len);
    tw__proto_buf_fini(&reopened);
    tw__proto_buf_fini(&fresh);
    free(cut.data);
  }
  /* More than the frame holds is refused, the frame left alone. */
  assert_true(tw__proto_events_cut(&whole, (uint32_t)n + 1) < 0);
  assert_int_equal(whole.count, n);
  tw__proto_buf_fini(&whole);
}

static void cut_and_renumber_match_fresh_frames(void **state) {
  (void)state;
  cut_and_renumber_at(3);
  cut_and_renumber_at(PROTO_VERSION);
}

/* ---- versions --------------------------------------------------------------
 */

static void version_pick_and_refusal(void **state) {
  (void)state;
  uint16_t v = 0;
  assert_int_equal(tw__proto_version_pick(PROTO_VERSION_MIN, PROTO_VERSION, &v), 0);
  assert_int_equal(v, PROTO_VERSION);
  assert_int_equal(tw__proto_version_pick(1, 60000, &v), 0);
  assert_int_equal(v, PROTO_VERSION);
  assert_int_equal(tw__proto_version_pick(PROTO_VERSION + 1, PROTO_VERSION + 5, &v),
                   PROTO_E_VERSION);
  assert_int_equal(tw__proto_version_pick(0, 0, &v), PROTO_E_VERSION);
  assert_int_equal(tw__proto_version_pick(3, 2, &v), PROTO_E_VERSION);
  char got[128], want[128];
  tw__proto_version_refusal(got, sizeof(got), "agent", 3, 4, "collector");
  snprintf(want, sizeof(want),
           "unsupported protocol version: agent speaks 3..4, collector %d..%d",
           PROTO_VERSION_MIN, PROTO_VERSION);
  assert_string_equal(got, want);
}

/* A HELLO of a newer agent (1..3) that grew fields of its own: read at the
 * version both speak, its own tail skipped. From an agent this code fully
 * knows, trailing bytes stay an error. */
static void newer_hello_is_read_at_the_shared_version(void **state) {
  (void)state;
  proto_hello h = {0};
  h.version = PROTO_VERSION + 2;
  h.version_min = PROTO_VERSION_MIN;
  memset(h.instance, 7, sizeof(h.instance));
  h.pid = 12;
  h.started_at_ns = 34;
  h.service = S("svc");
  h.host = S("host");
  h.token = S("tok");
  proto_buf b;
  tw__proto_buf_init(&b);
  tw__proto_put_hello(&b, &h);
  uint8_t grown[512];
  size_t n = b.len - PROTO_HEADER_SIZE;
  memcpy(grown, b.data + PROTO_HEADER_SIZE, n);
  memcpy(grown + n, "\x20\x00future", 8);
  /* magic, version, version_min */
  assert_int_equal(grown[4], PROTO_VERSION + 2);
  assert_int_equal(grown[6], PROTO_VERSION_MIN);
  proto_hello d;
  assert_int_equal(tw__proto_decode_hello(grown, n + 8, &d), 0);
  assert_int_equal(d.version, PROTO_VERSION + 2);
  assert_int_equal(d.version_min, PROTO_VERSION_MIN);
  assert_memory_equal(d.instance, h.instance, PROTO_INSTANCE_SIZE);
  assert_int_equal(d.pid, 12);
  assert_true(str_eq(d.service, "svc") && str_eq(d.host, "host") &&
              str_eq(d.token, "tok"));
  /* One whose oldest is newer than this code's newest shares nothing
   * with it; one this code fully knows with trailing bytes is malformed. */
  grown[6] = PROTO_VERSION + 1;
  assert_int_equal(tw__proto_decode_hello(grown, n + 8, &d), PROTO_E_VERSION);
  assert_int_equal(d.version_min, PROTO_VERSION + 1);
  tw__proto_buf_reset(&b);
  h.version = h.version_min = 0;
  tw__proto_put_hello(&b, &h);
  n = b.len - PROTO_HEADER_SIZE;
  memcpy(grown, b.data + PROTO_HEADER_SIZE, n);
  grown[n] = 0;
  assert_int_equal(tw__proto_decode_hello(grown, n, &d), 0);
  assert_int_equal(tw__proto_decode_hello(grown, n + 1, &d), PROTO_E_TRAILING);
  tw__proto_buf_fini(&b);
}

static void welcome_names_a_version(void **state) {
  (void)state;
  proto_buf b;
  tw__proto_buf_init(&b);
  proto_welcome w = {PROTO_VERSION + 1, 5, 100}, d;
  tw__proto_put_welcome(&b, &w);
  proto_frame f;
  assert_int_equal(tw__proto_frame_next(b.data, b.len, 0, &f), 0);
  assert_int_equal(tw__proto_decode_welcome(f.payload, f.payload_len, &d),
                   PROTO_E_VERSION);
  assert_int_equal(d.version, PROTO_VERSION + 1);
  tw__proto_buf_reset(&b);
  w.version = 0; /* the encoder's own */
  tw__proto_put_welcome(&b, &w);
  assert_int_equal(tw__proto_frame_next(b.data, b.len, 0, &f), 0);
  assert_int_equal(tw__proto_decode_welcome(f.payload, f.payload_len, &d), 0);
  assert_int_equal(d.version, PROTO_VERSION);
  assert_int_equal(d.next_seq, 5);
  uint8_t ev[32] = {0};
  proto_events it;
  assert_int_equal(tw__proto_events_begin(&it, ev, sizeof(ev), PROTO_VERSION + 1),
                   PROTO_E_VERSION);
  tw__proto_buf_fini(&b);
}

/* A table of the test's own, two of whose rows appear in version 2: the
 * expansions size, store and read them from version 2 on and leave them
 * out before, range and length checks included. */
#define TEST_FIELDS_GROWN(F)                                                   \
  F(U32, a, a, 0, UINT32_MAX, 1)                                               \
  F(U64, b, b, 1, 100, 2)                                                      \
  F(STR, c, c, 0, 8, 2)                                                        \
  F(U8, d, d, 0, UINT8_MAX, 1)
typedef struct grown_msg {
  uint32_t a;
  uint64_t b;
  proto_str c;
  uint8_t d;
} grown_msg;
GEN_MESSAGE(GROWN, grown_msg, TEST_FIELDS_GROWN)

static int read_grown(const uint8_t *p, size_t n, uint16_t version,
                      grown_msg *out) {
  cursor c = {p, p + n, 0, 0, 0};
  memset(out, 0, sizeof(*out));
  get_GROWN(&c, out, version);
  return verdict(&c, 1);
}

static void fields_follow_their_version(void **state) {
  (void)state;
  grown_msg g = {7, 42, S("hello"), 9}, d;
  uint8_t p[64];
  assert_int_equal(exact_GROWN(&g, 1), 5);
  assert_int_equal(largest_GROWN(1), 5);
  assert_int_equal(store_GROWN(p, &g, 1) - p, 5);
  assert_memory_equal(p, "\x07\x00\x00\x00\x09", 5);
  assert_int_equal(read_grown(p, 5, 1, &d), 0);
  assert_true(d.a == 7 && d.d == 9 && d.b == 0 && d.c.len == 0);
  assert_int_equal(read_grown(p, 5, 2, &d), PROTO_E_TRUNCATED);

  assert_int_equal(exact_GROWN(&g, 2), 4 + 8 + 2 + 5 + 1);
  assert_int_equal(largest_GROWN(2), 4 + 8 + 2 + 8 + 1);
  assert_int_equal(store_GROWN(p, &g, 2) - p, 20);
  assert_memory_equal(p, "\x07\0\0\0\x2a\0\0\0\0\0\0\0\x05\0hello\x09", 20);
  assert_int_equal(read_grown(p, 20, 2, &d), 0);
  assert_true(d.a == 7 && d.b == 42 && str_eq(d.c, "hello") && d.d == 9);
  assert_int_equal(read_grown(p, 20, 1, &d), PROTO_E_TRAILING);
  /* Checks apply where the row does: b above 100, c above 8 bytes. */
  g.b = 101;
  store_GROWN(p, &g, 2);
  assert_int_equal(read_grown(p, 20, 2, &d), PROTO_E_FIELD);
  g.b = 1;
  g.c = S("123456789"); /* the encoder cuts it to its limit */
  assert_int_equal(store_GROWN(p, &g, 2) - p, 4 + 8 + 2 + 8 + 1);
  assert_int_equal(read_grown(p, 23, 2, &d), 0);
  assert_true(str_eq(d.c, "12345678"));
  p[12] = 9; /* a length above the limit */
  assert_int_equal(read_grown(p, 23, 2, &d), PROTO_E_FIELD);
}

/* ---- sizes --------------------------------------------------------------- */

/* The largest frames are what the tables say; the collector's limit before
 * HELLO is the largest HELLO plus the spare for later versions. */
static void sizes_follow_the_table(void **state) {
  (void)state;
  memset(big, 'y', sizeof(big));
  proto_hello h = {0};
  proto_str past_ident = {big, PROTO_IDENT_MAX + 40};
  h.service = h.host = h.token = past_ident;
  h.key.ptr = big;
  h.key.len = PROTO_KEY_MAX + 40;
  proto_buf b;
  tw__proto_buf_init(&b);
  tw__proto_put_hello(&b, &h);
  assert_int_equal(b.len, tw__proto_frame_max(PROTO_HELLO, PROTO_VERSION));
  proto_frame f;
  assert_int_equal(tw__proto_frame_next(b.data, b.len,
                                    tw__proto_hello_limit() - PROTO_HELLO_SPARE,
                                    &f),
                   0);
  assert_int_equal(tw__proto_frame_next(b.data, b.len,
                                    tw__proto_hello_limit() - PROTO_HELLO_SPARE - 1,
                                    &f),
                   PROTO_E_OVERSIZED);
  proto_hello d;
  assert_int_equal(tw__proto_decode_hello(f.payload, f.payload_len, &d), 0);
  assert_int_equal(d.service.len, PROTO_IDENT_MAX);
  tw__proto_buf_reset(&b);
  proto_ack one = {1, PROTO_HOLD_MAX_MS};
  tw__proto_put_ack(&b, PROTO_VERSION, &one);
  assert_int_equal(b.len, tw__proto_frame_max(PROTO_ACK, PROTO_VERSION));
  assert_int_equal(b.len, PROTO_HEADER_SIZE + 8 + 4);
  tw__proto_buf_reset(&b);
  tw__proto_put_goodbye(&b, PROTO_VERSION, 1);
  assert_int_equal(b.len, tw__proto_frame_max(PROTO_GOODBYE, PROTO_VERSION));
  tw__proto_buf_reset(&b);
  tw__proto_put_flush(&b, PROTO_VERSION, 1);
  assert_int_equal(b.len, tw__proto_frame_max(PROTO_FLUSH, PROTO_VERSION));
  tw__proto_buf_reset(&b);
  proto_welcome w = {0, 1, 2};
  tw__proto_put_welcome(&b, &w);
  assert_int_equal(b.len, tw__proto_frame_max(PROTO_WELCOME, PROTO_VERSION));
  tw__proto_buf_reset(&b);
  big[PROTO_SHORT_MAX + 10] = '\0';
  tw__proto_put_error(&b, big);
  assert_int_equal(b.len, tw__proto_frame_max(PROTO_ERROR, PROTO_VERSION));
  assert_int_equal(tw__proto_frame_max(999, PROTO_VERSION), 0);
  tw__proto_buf_fini(&b);
}

/* ---- the documentation --------------------------------------------------- */

static const char *wire_type(const char *t) {
  static const char *const names[][2] = {
      {"U8", "u8"},      {"U16", "u16"},         {"U32", "u32"},
      {"U64", "u64"},    {"I64", "i64"},         {"ID", "16 bytes"},
      {"STR", "string"}, {"LSTR", "long string"}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strcmp(t, names[i][0]) == 0)
      return names[i][1];
  return "?";
}

/* One row of a table as text: "TYPE name". */
typedef struct doc_field {
  const char *type;
  const char *name;
} doc_field;

#define DOC_FIELD(T, name, member, lo, hi, since) {#T, #name},
#define DOC_KIND(NAME, number, since)                                          \
  {number, #NAME, {PROTO_FIELDS_##NAME(DOC_FIELD){NULL, NULL}}},
#define DOC_MESSAGE(NAME) {#NAME, {PROTO_FIELDS_##NAME(DOC_FIELD){NULL, NULL}}},

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char text[1 << 17];
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = '\0';
  return text;
}

/* docs/protocol.md: the event table's row of each kind names its fields in
 * order ("u64 `task`, ..."), and each message's table lists its fields in
 * order ("| pid | u32 |"). A table edit without a docs edit fails here. */
static void docs_follow_the_table(void **state) {
  (void)state;
  char *doc = read_all(docs_path);
  static const struct {
    int number;
    const char *name;
    doc_field f[8];
  } kinds[] = {PROTO_EVENT_MAP(DOC_KIND)};
  char want[160];
  for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
    snprintf(want, sizeof(want), "| %d | `%s` | ", kinds[k].number,
             kinds[k].name);
    const char *at = strstr(doc, want);
    assert_non_null(at);
    const char *end = strchr(at + strlen(want), '\n');
    for (const doc_field *f = kinds[k].f; f->name; f++) {
      snprintf(want, sizeof(want), "%s `%s`", wire_type(f->type), f->name);
      const char *hit = strstr(at, want);
      if (hit == NULL || hit > end)
        fail_msg("docs: %s lacks %s in order", kinds[k].name, want);
      at = hit + strlen(want);
    }
  }
  static const struct {
    const char *name;
    doc_field f[8];
  } messages[] = {DOC_MESSAGE(HELLO) DOC_MESSAGE(GOODBYE) DOC_MESSAGE(FLUSH)
                      DOC_MESSAGE(EVENTS)
                      DOC_MESSAGE(WELCOME) DOC_MESSAGE(ACK) DOC_MESSAGE(ERROR)
                          DOC_MESSAGE(CHALLENGE) DOC_MESSAGE(PROOF)};
  for (size_t m = 0; m < sizeof(messages) / sizeof(messages[0]); m++) {
    snprintf(want, sizeof(want), "### %s (", messages[m].name);
    const char *at = strstr(doc, want);
    assert_non_null(at);
    const char *end = strstr(at + 4, "\n### ");
    for (const doc_field *f = messages[m].f; f->name; f++) {
      snprintf(want, sizeof(want), "| %s | %s |", f->name, wire_type(f->type));
      const char *hit = strstr(at, want);
      if (hit == NULL || (end != NULL && hit > end))
        fail_msg("docs: %s lacks the row %s in order", messages[m].name, want);
      at = hit + strlen(want);
    }
  }
}

int main(int argc, char **argv) {
  docs_path = argc > 1 ? argv[1] : "docs/protocol.md";
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(append_matches_put_byte_for_byte),
      cmocka_unit_test(cut_and_renumber_match_fresh_frames),
      cmocka_unit_test(version_pick_and_refusal),
      cmocka_unit_test(newer_hello_is_read_at_the_shared_version),
      cmocka_unit_test(welcome_names_a_version),
      cmocka_unit_test(fields_follow_their_version),
      cmocka_unit_test(sizes_follow_the_table),
      cmocka_unit_test(docs_follow_the_table),
      cmocka_unit_test(link_event),
      cmocka_unit_test(health_follows_its_version),
      cmocka_unit_test(hello_round_trip),
      cmocka_unit_test(hello_rejects_bad_magic_and_version),
      cmocka_unit_test(control_frames_round_trip),
      cmocka_unit_test(events_round_trip),
      cmocka_unit_test(documented_example),
      cmocka_unit_test(documented_compact_example),
      cmocka_unit_test(compact_fields_are_strict),
      cmocka_unit_test(compact_batch_is_small),
      cmocka_unit_test(frame_limits),
      cmocka_unit_test(events_truncated_everywhere),
      cmocka_unit_test(events_trailing_and_bad_fields),
      cmocka_unit_test(oversized_string),
      cmocka_unit_test(garbage),
      cmocka_unit_test(strerror_covers_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
