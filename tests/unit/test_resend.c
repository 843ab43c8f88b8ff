/*
 * test_resend - the agent's resend buffer on its own, no thread, no
 * socket: sequence numbers without gaps across chunks, the budget and the
 * chunk kept for HEALTH, acks freeing whole chunks (never pinned ones),
 * the cut after a WELCOME, detach and renumbered attach (a new instance),
 * and re-encoding. Every check decodes the chunks with the strict decoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../agent/pace.h"
#include "../../agent/resend.h"

/* An agent as far as the buffer knows one: a budget (the default, unless a
 * test is about a smaller cap). */
static tw_agent *budget(size_t cap) {
  tw_agent *a = calloc(1, sizeof(*a));
  a->cap = cap;
  atomic_init(&a->reserved, 0);
  return a;
}

static proto_event start_event(uint64_t task) {
  proto_event ev = {.kind = PROTO_EV_START,
                    .time_ns = (int64_t)task * 10,
                    .task = task,
                    .other = 7};
  return ev;
}

/* Decodes every chunk (sealing the open one) and checks that the frames
 * are well formed, contiguous from `first` and hold START events whose
 * task ids follow their sequence numbers plus `offset`. Returns the number
 * of events. */
static uint64_t check_chain(resend *r, uint64_t first, int64_t offset) {
  uint64_t seq = first, n = 0;
  for (resend_chunk *c = r->first; c != NULL; c = c->next) {
    tw__resend_seal(c);
    proto_frame f;
    assert_int_equal(tw__proto_frame_next(c->frame.data, c->frame.len, 0, &f),
                     0);
    assert_int_equal(f.frame_len, c->frame.len);
    assert_int_equal(f.type, PROTO_EVENTS);
    proto_events it;
    proto_event ev;
    assert_int_equal(
        tw__proto_events_begin(&it, f.payload, f.payload_len, PROTO_VERSION),
        c->frame.count ? 0 : PROTO_E_FIELD);
    assert_int_equal(it.first_seq, seq);
    assert_int_equal(it.first_seq, c->frame.first_seq);
    int rc;
    while (c->frame.count && (rc = tw__proto_events_next(&it, &ev)) == 0) {
      assert_int_equal(ev.kind, PROTO_EV_START);
      assert_int_equal(ev.task, (uint64_t)((int64_t)seq + offset));
      seq++;
      n++;
    }
    if (c->frame.count)
      assert_int_equal(rc, 1);
    if (c->next == NULL)
      assert_ptr_equal(c, r->last);
  }
  assert_int_equal(seq, r->next_seq);
  return n;
}

static void fill(resend *r, uint64_t from_task, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    proto_event ev = start_event(from_task + i);
    assert_true(tw__resend_append(r, &ev, false));
  }
}

static size_t chunks(const resend *r) {
  size_t n = 0;
  for (resend_chunk *c = r->first; c != NULL; c = c->next)
    n++;
  return n;
}

static void appends_number_events_without_gaps(void **state) {
  (void)state;
  tw_agent *a = budget(TW_DEFAULT_BUFFER_BYTES);
  resend r;
  tw__resend_init(&r, a);
  assert_null(r.first);
  /* A START is 25 bytes in the fixed encoding, 6 or 7 in the compact
   * one (PROTO_VERSION's), a chunk 76 KiB. */
  fill(&r, 1, 40000);
  assert_int_equal(r.next_seq, 40001);
  assert_true(chunks(&r) >= 3);
  assert_int_equal(check_chain(&r, 1, 0), 40000);
  assert_int_equal(tw__resend_held(&r), 40000);
  assert_int_equal(atomic_load(&a->reserved), chunks(&r) * RESEND_CHUNK_COST);
  tw__resend_fini(&r);
  assert_int_equal(atomic_load(&a->reserved), 0);
  free(a);
}

/* A FAIL with its three strings at their limits, its numbers as large as
 * they come. */
static proto_event full_fail(char *text) {
  memset(text, 'x', LIMIT_FAIL_STRINGS);
  proto_event ev = {
      .kind = PROTO_EV_FAIL, .time_ns = INT64_MAX, .task = UINT64_MAX};
  ev.text.ptr = text;
  ev.text.len = LIMIT_ERROR_TYPE;
  ev.message.ptr = text + LIMIT_ERROR_TYPE;
  ev.message.len = LIMIT_ERROR_MESSAGE;
  ev.detail.ptr = text + LIMIT_ERROR_TYPE + LIMIT_ERROR_MESSAGE;
  ev.detail.len = LIMIT_ERROR_DETAIL;
  return ev;
}

/* Two failures at their limits share a chunk (RESEND_CHUNK_BYTES): a
 * burst of them takes half the chunks it took when each needed its own. */
static void two_full_failures_fit_a_chunk(void **state) {
  (void)state;
  tw_agent *a = budget(TW_DEFAULT_BUFFER_BYTES);
  resend r;
  tw__resend_init(&r, a);
  char *text = malloc(LIMIT_FAIL_STRINGS);
  assert_non_null(text);
  proto_event ev = full_fail(text);
  for (int i = 0; i < 2; i++)
    assert_true(tw__resend_append(&r, &ev, false));
  assert_int_equal(chunks(&r), 1);
  assert_int_equal(r.first->frame.count, 2);
  assert_true(tw__resend_append(&r, &ev, false));
  assert_int_equal(chunks(&r), 2);
  free(text);
  tw__resend_fini(&r);
  free(a);
}

/* Events stop one chunk short of the cap; HEALTH may take that chunk. */
static void budget_keeps_a_chunk_for_health(void **state) {
  (void)state;
  tw_agent *a = budget(4 * RESEND_CHUNK_COST + 100);
  /* The rings' half is claimed, so the buffer keeps nothing for rings yet
   * to be made (tw__record_late_keep(); test_agent's
   * late_threads_get_a_ring has the buffer leave that room). */
  atomic_store(&a->ring_reserved, a->cap / 2);
  resend r;
  tw__resend_init(&r, a);
  uint64_t n = 0;
  for (;; n++) {
    proto_event ev = start_event(n + 1);
    if (!tw__resend_append(&r, &ev, false))
      break;
  }
  assert_int_equal(chunks(&r), 3);
  assert_int_equal(r.next_seq, n + 1);
  proto_event health = {.kind = PROTO_EV_HEALTH, .other = 5};
  uint64_t more = 0;
  while (tw__resend_append(&r, &health, true))
    more++;
  assert_true(more > 0);
  assert_int_equal(chunks(&r), 4);
  assert_true(atomic_load(&a->reserved) <= a->cap);
  assert_int_equal(r.next_seq, n + more + 1);
  tw__resend_fini(&r);
  free(a);
}

/* Acks free whole sealed chunks, keep a few as spares (still charged),
 * give the rest back, and never free a pinned chunk. */
static void ack_frees_whole_chunks(void **state) {
  (void)state;
  tw_agent *a = budget(TW_DEFAULT_BUFFER_BYTES);
  resend r;
  tw__resend_init(&r, a);
  fill(&r, 1, 80000);
  size_t before = chunks(&r);
  assert_true(before >= 6);
  for (resend_chunk *c = r.first; c != NULL; c = c->next)
    tw__resend_seal(c);
  resend_chunk *second = r.first->next;
  uint64_t mid = second->frame.first_seq + 1; /* inside the second chunk */
  second->pinned = true;
  tw__resend_ack(&r, mid);
  assert_int_equal(r.acked, mid);
  assert_ptr_equal(r.first, second); /* the first went; the second is held */
  assert_int_equal(r.nspare, 1);
  /* Everything acked, but the pinned chunk (and those after it) stay. */
  tw__resend_ack(&r, r.next_seq);
  assert_ptr_equal(r.first, second);
  second->pinned = false;
  tw__resend_ack(&r, r.acked);
  assert_null(r.first);
  assert_null(r.last);
  /* At this budget every chunk stays a spare: the pool keeps them. */
  assert_true(r.max_spares >= before);
  assert_int_equal(r.nspare, before);
  assert_int_equal(atomic_load(&a->reserved), before * RESEND_CHUNK_COST);
  /* Acks outside what was appended are ignored. */
  tw__resend_ack(&r, r.next_seq + 5);
  assert_int_equal(r.acked, r.next_seq);
  /* The spares come back for the next events, without the allocator. */
  fill(&r, r.next_seq, 10);
  assert_int_equal(r.nspare, before - 1);
  assert_int_equal(atomic_load(&a->reserved), before * RESEND_CHUNK_COST);
  assert_int_equal(check_chain(&r, 80001, 0), 10);
  tw__resend_fini(&r);
  assert_int_equal(atomic_load(&a->reserved), 0);
  free(a);
}

/* Chunks come from one pool: an acked chunk's memory is the next chunk's
 * (no allocator, no fresh page), and spares beyond max_spares give their
 * charge back, so a buffer that grew in an outage shrinks after it. */
static void spares_reuse_the_pool(void **state) {
  (void)state;
  tw_agent *a = budget(1u << 20);
  resend r;
  tw__resend_init(&r, a);
  assert_int_equal(r.max_spares, RESEND_SPARES_MIN);
  fill(&r, 1, 1);
  uint64_t n = 1;
  while (chunks(&r) < 6) {
    fill(&r, n + 1, 1);
    n++;
  }
  uint8_t *lo = r.pool, *hi = r.pool + r.max_chunks * RESEND_CHUNK_BYTES;
  for (resend_chunk *c = r.first; c != NULL; c = c->next) {
    tw__resend_seal(c);
    assert_true(c->frame.data >= lo && c->frame.data < hi);
  }
  assert_int_equal(atomic_load(&a->reserved), 6 * RESEND_CHUNK_COST);
  tw__resend_ack(&r, r.next_seq);
  assert_null(r.first);
  assert_int_equal(r.nspare, RESEND_SPARES_MIN);
  assert_int_equal(atomic_load(&a->reserved),
                   RESEND_SPARES_MIN * RESEND_CHUNK_COST);
  /* The last chunk freed is the first reused: the pages are warm. */
  fill(&r, n + 1, 1);
  assert_true(r.first->frame.data >= lo && r.first->frame.data < hi);
  assert_int_equal(atomic_load(&a->reserved),
                   RESEND_SPARES_MIN * RESEND_CHUNK_COST);
  assert_int_equal(check_chain(&r, n + 1, 0), 1);
  tw__resend_fini(&r);
  assert_int_equal(atomic_load(&a->reserved), 0);
  free(a);
}

/* After a WELCOME below the first chunk's end, the first chunk starts at
 * the collector's next_seq: the frame of what is left (the same events;
 * in the compact encoding the cut frame keeps its first base_time, so
 * its bytes may differ from a fresh frame's). */
static void cut_starts_at_the_welcome(void **state) {
  (void)state;
  tw_agent *a = budget(TW_DEFAULT_BUFFER_BYTES);
  resend r;
  tw__resend_init(&r, a);
  fill(&r, 1, 40000); /* several chunks */
  tw__resend_ack(&r, 1234);
  tw__resend_cut(&r);
  assert_int_equal(r.first->frame.first_seq, 1234);
  assert_int_equal(check_chain(&r, 1234, 0), 40000 - 1233);
  proto_buf fresh;
  tw__proto_buf_init(&fresh);
  tw__proto_events_open(&fresh, PROTO_VERSION, 1234);
  for (uint64_t t = 1234; t < tw__resend_chunk_end(r.first); t++) {
    proto_event ev = start_event(t);
    tw__proto_put_event(&fresh, &ev);
  }
  tw__proto_events_close(&fresh);
  proto_events a_it, b_it;
  proto_event a_ev, b_ev;
  assert_int_equal(tw__proto_events_begin(&a_it, fresh.data + PROTO_HEADER_SIZE,
                                          fresh.len - PROTO_HEADER_SIZE,
                                          PROTO_VERSION),
                   0);
  assert_int_equal(tw__proto_events_begin(
                       &b_it, r.first->frame.data + PROTO_HEADER_SIZE,
                       r.first->frame.len - PROTO_HEADER_SIZE, PROTO_VERSION),
                   0);
  assert_int_equal(a_it.count, b_it.count);
  assert_true(a_it.first_seq == b_it.first_seq);
  int rc;
  while ((rc = tw__proto_events_next(&a_it, &a_ev)) == 0) {
    assert_int_equal(tw__proto_events_next(&b_it, &b_ev), 0);
    assert_true(a_ev.kind == b_ev.kind && a_ev.time_ns == b_ev.time_ns &&
                a_ev.task == b_ev.task && a_ev.other == b_ev.other);
  }
  assert_int_equal(rc, 1);
  assert_int_equal(tw__proto_events_next(&b_it, &b_ev), 1);
  tw__proto_buf_fini(&fresh);
  /* A cut that takes a whole chunk leaves none behind. */
  tw__resend_ack(&r, tw__resend_chunk_end(r.first));
  tw__resend_cut(&r);
  assert_int_equal(r.first->frame.first_seq, r.acked);
  tw__resend_fini(&r);
  free(a);
}

/* A new instance: the held events are detached, new ones (the names) come
 * first from sequence 1, and the held ones follow, renumbered. */
static void detach_and_attach_renumber(void **state) {
  (void)state;
  tw_agent *a = budget(TW_DEFAULT_BUFFER_BYTES);
  resend r;
  tw__resend_init(&r, a);
  fill(&r, 1, 6000);
  tw__resend_ack(&r, 100);
  tw__resend_cut(&r);
  resend_chunk *held = tw__resend_detach(&r);
  assert_null(r.first);
  r.next_seq = 1;
  fill(&r, 100 - 40, 40); /* task ids 60..99 at sequence 1..40 */
  assert_int_equal(tw__resend_attach(&r, held), 6000 - 99);
  assert_int_equal(r.next_seq, 41 + 6000 - 99);
  /* Sequence s holds task s + 59 throughout: renumbered, not reordered. */
  assert_int_equal(check_chain(&r, 1, 59), 40 + 6000 - 99);
  assert_int_equal(tw__resend_attach(&r, NULL), 0);
  tw__resend_clear(&r);
  assert_null(r.first);
  assert_null(r.last);
  tw__resend_fini(&r);
  assert_int_equal(atomic_load(&a->reserved), 0);
  free(a);
}

/* Re-encoding keeps every event and its sequence number, and gives the
 * general encoder's bytes. */
static void recode_keeps_events(void **state) {
  (void)state;
  tw_agent *a = budget(TW_DEFAULT_BUFFER_BYTES);
  resend r;
  tw__resend_init(&r, a);
  fill(&r, 1, 7000);
  tw__resend_ack(&r, 501);
  tw__resend_cut(&r);
  size_t n = chunks(&r);
  /* The cut first chunk had room left: it is filled up again. */
  assert_int_equal(tw__resend_recode(&r, PROTO_VERSION), 0);
  assert_int_equal(r.next_seq, 7001);
  assert_int_equal(check_chain(&r, 501, 0), 6500);
  assert_true(chunks(&r) <= n);
  proto_buf whole;
  tw__proto_buf_init(&whole);
  tw__proto_events_open(&whole, PROTO_VERSION, 501);
  for (uint64_t t = 501; t < tw__resend_chunk_end(r.first); t++) {
    proto_event ev = start_event(t);
    tw__proto_put_event(&whole, &ev);
  }
  tw__proto_events_close(&whole);
  assert_memory_equal(whole.data, r.first->frame.data, whole.len);
  tw__proto_buf_fini(&whole);
  /* An empty buffer only changes its version. */
  resend e;
  tw__resend_init(&e, a);
  assert_int_equal(tw__resend_recode(&e, PROTO_VERSION), 0);
  assert_int_equal(e.next_seq, 1);
  tw__resend_fini(&e);
  tw__resend_fini(&r);
  assert_int_equal(atomic_load(&a->reserved), 0);
  free(a);
}

/* Drains `n` intervals of `ms` each, taking `per` records each with the
 * fullest ring at `fill`, from *now on: the wait after the last. */
static unsigned pace_steady(pace *p, uint64_t *now, int n, uint64_t ms,
                            uint64_t per, double fill, unsigned hold) {
  unsigned w = 0;
  for (int i = 0; i < n; i++) {
    *now += ms;
    w = tw__pace_next(p, *now, per, fill, hold);
  }
  return w;
}

/* The sender's pace (agent/pace.h): idle, it waits the longest; at a
 * steady rate, long enough for PACE_BATCH records but not so long that
 * the fullest ring passes PACE_FILL; past PACE_FILL_NOW, at once. The
 * rate is the mean of about the last PACE_RATE_MS: bursts come as their
 * mean, a rate that falls is forgotten after about PACE_RATE_MS and a
 * drain, and a flood that fills a ring past PACE_FILL before the mean
 * sees it is paced by its own rate. */
static void pace_follows_rate_and_fill(void **state) {
  (void)state;
  pace p = {0};
  assert_int_equal(tw__pace_next(&p, 1000, 0, 0, 0), PACE_MAX_MS);
  assert_int_equal(tw__pace_next(&p, 1050, 0, 0, 0), PACE_MAX_MS);
  /* 1,000 records a ms for seconds: PACE_BATCH of them take about 8 ms. */
  uint64_t now = 1050;
  unsigned w = pace_steady(&p, &now, 1000, 8, 8000, 0.01, 0);
  assert_int_equal(w, (unsigned)(PACE_BATCH / 1000));
  /* The same rate with a ring 10% full after 10 ms: the fill bounds the
   * wait below PACE_BATCH's (12.5% in 12.5 ms is the limit), from the
   * first drain that sees it. */
  pace q = {0};
  tw__pace_next(&q, 1000, 0, 0, 0);
  assert_int_equal(tw__pace_next(&q, 1010, 100, 0.1, 0),
                   (unsigned)(10 * PACE_FILL / 0.1));
  /* Past PACE_LIVE_RATE, PACE_LIVE_MS apart at most, however few records
   * that is; below it, PACE_FLOW_MS while records come. */
  pace live = {0}, slow = {0};
  uint64_t t_live = 1000, t_slow = 1000;
  assert_int_equal(pace_steady(&live, &t_live, 500, 10,
                               (uint64_t)(10 * 2 * PACE_LIVE_RATE), 0.0001, 0),
                   PACE_LIVE_MS);
  assert_int_equal(pace_steady(&slow, &t_slow, 500, 10,
                               (uint64_t)(10 * PACE_LIVE_RATE / 2), 0.0001, 0),
                   PACE_FLOW_MS);
  /* A ring past PACE_FILL_NOW: at once. */
  assert_int_equal(tw__pace_next(&q, 1011, 100, PACE_FILL_NOW + 0.01, 0), 0);
  /* Bursts: 2,500 records every 250 ms (a thousand requests a second
   * from 256 connections at once), 10 records a ms on average, are that
   * mean rather than a flood: drains PACE_FLOW_MS apart, not the few ms
   * that PACE_BATCH would give at the rate of one burst. */
  pace burst = {0};
  uint64_t t = 1000;
  tw__pace_next(&burst, t, 0, 0, 0);
  for (int i = 0; i < 400; i++) {
    t += 10;
    w = tw__pace_next(&burst, t, i % 25 == 0 ? 2500 : 0, 0.001, 0);
  }
  t += 10;
  assert_int_equal(tw__pace_next(&burst, t, 2500, 0.001, 0), PACE_FLOW_MS);
  assert_true(burst.rate > 5 && burst.rate < 15);
  /* A low rate: never more than PACE_FLOW_MS while records come (4 in
   * 50 ms, a few events a second), PACE_MAX_MS once a drain takes none;
   * never less than the least. */
  pace r = {0};
  tw__pace_next(&r, 1000, 0, 0, 0);
  assert_int_equal(tw__pace_next(&r, 1050, 4, 0.0001, 0), PACE_FLOW_MS);
  pace idle = r;
  assert_int_equal(tw__pace_next(&idle, 1080, 0, 0, 0), PACE_MAX_MS);
  /* A flood for a second: short waits; then none for 10 ms (they stay
   * short), then none for seconds (it is forgotten: below PACE_LIVE_RATE,
   * and the longest wait). */
  now = 1050;
  w = pace_steady(&r, &now, 1000, 1, 100000, 0, 0);
  assert_int_equal(w, PACE_MIN_MS);
  double high = r.rate;
  assert_true(tw__pace_next(&r, now + 10, 0, 0, 0) <= PACE_MIN_MS);
  assert_true(r.rate >= high / 2);
  assert_int_equal(tw__pace_next(&r, now + 10 + 5 * PACE_RATE_MS, 0, 0, 0),
                   PACE_MAX_MS);
  assert_true(r.rate == 0);
  /* Quiet, then a flood that a ring's nudge (a quarter full) brings 40 ms
   * into it: the mean is still low, the ring's own rate (25 records a ms
   * in a ring of 4,096) sets the bound, PACE_LIVE_MS. */
  pace rise = {0};
  t = 1000;
  for (int i = 0; i < 20; i++) {
    t += 100;
    tw__pace_next(&rise, t, 0, 0, 0);
  }
  assert_true(tw__pace_next(&rise, t + 40, 1024, 0.25, 0) <= PACE_LIVE_MS);
  /* A drain at once (past PACE_FILL_NOW) is followed by one within the
   * same millisecond that finds little: the fill rate before it still
   * bounds the wait (PACE_FILL of the ring at 0.4 of it a ms: 0.3 ms). */
  pace now_again = {0};
  tw__pace_next(&now_again, 1000, 0, 0, 0);
  assert_int_equal(tw__pace_next(&now_again, 1001, 400, 0.4, 0), 0);
  assert_int_equal(tw__pace_next(&now_again, 1001, 1, 0.0001, 100),
                   PACE_MIN_MS);
}

/* The collector's advice (ACK hold_ms, protocol version 6): drains may
 * come that far apart whatever the rate, up to PACE_HOLD_MAX_MS, and no
 * closer than the pace's own rules would have them; the rings' fill and
 * PACE_BATCH still bound the wait. */
static void pace_takes_the_collectors_hold(void **state) {
  (void)state;
  pace slow = {0}, live = {0}, flood = {0}, full = {0};
  tw__pace_next(&slow, 1000, 0, 0, 100);
  assert_int_equal(tw__pace_next(&slow, 1010,
                                 (uint64_t)(10 * PACE_LIVE_RATE / 2), 0.0001,
                                 100),
                   100);
  tw__pace_next(&live, 1000, 0, 0, 100);
  assert_int_equal(tw__pace_next(&live, 1010,
                                 (uint64_t)(10 * 2 * PACE_LIVE_RATE), 0.0001,
                                 100),
                   100);
  /* The default advice of a collector (250 ms) is taken whole; more than
   * PACE_HOLD_MAX_MS is taken as PACE_HOLD_MAX_MS; less than the pace's
   * own bound changes nothing. */
  pace dflt = slow, far = slow, near = slow;
  assert_int_equal(tw__pace_next(&dflt, 1110, 50, 0.0001, 250), 250);
  assert_int_equal(tw__pace_next(&far, 1110, 50, 0.0001, 60000),
                   PACE_HOLD_MAX_MS);
  assert_int_equal(tw__pace_next(&near, 1110, 50, 0.0001, 5), PACE_FLOW_MS);
  /* 1,000 records a ms: PACE_BATCH of them come sooner than the hold. */
  uint64_t now = 1000;
  tw__pace_next(&flood, now, 0, 0, 100);
  assert_int_equal(pace_steady(&flood, &now, 1000, 8, 8000, 0.0001, 100),
                   (unsigned)(PACE_BATCH / 1000));
  /* A ring filling fast: its fill bounds the wait, and past
   * PACE_FILL_NOW it is at once. */
  tw__pace_next(&full, 1000, 0, 0, 100);
  assert_int_equal(tw__pace_next(&full, 1010, 100, 0.1, 100),
                   (unsigned)(10 * PACE_FILL / 0.1));
  assert_int_equal(tw__pace_next(&full, 1011, 100, PACE_FILL_NOW + 0.01, 100),
                   0);
}

/* The last chunk (agent/pace.h, tw__pace_hold()): while acks keep up it
 * waits for a drain due within PACE_WRITE_LIVE_MS of its opening and for
 * no other (drains at the pace's own bounds are further apart), and never
 * past PACE_WRITE_LIVE_MS; while they lag (more chunks in use) it waits
 * PACE_WRITE_MS, whenever the next drain is. */
static void pace_holds_last_chunk_for_a_near_drain_only(void **state) {
  (void)state;
  const uint64_t live = PACE_WRITE_LIVE_CHUNKS, lagging = live + 1;
  /* Opened at 1000 by a drain; the next drain within PACE_WRITE_LIVE_MS
   * (a filling ring brings it) takes its events into the same chunk,
   * which it then writes. */
  assert_true(tw__pace_hold(1000, 1000, 1000 + PACE_WRITE_LIVE_MS, live));
  assert_false(tw__pace_hold(1000 + PACE_WRITE_LIVE_MS, 1000,
                             1000 + 2 * PACE_WRITE_LIVE_MS, live));
  /* The next drain PACE_LIVE_MS away (a high rate) or PACE_FLOW_MS away
   * (a low one): written at once, by the drain that took its events. */
  assert_false(tw__pace_hold(1000, 1000, 1000 + PACE_LIVE_MS, live));
  assert_false(tw__pace_hold(1000, 1000, 1000 + PACE_FLOW_MS, live));
  assert_false(tw__pace_hold(1000, 1000, 1000 + PACE_MAX_MS, 1));
  /* Acks lag: held until PACE_WRITE_MS old, the next drain near or far. */
  assert_true(tw__pace_hold(1000, 1000, 1000 + PACE_FLOW_MS, lagging));
  assert_true(tw__pace_hold(1000 + PACE_WRITE_MS - 1, 1000,
                            1000 + PACE_WRITE_MS + PACE_LIVE_MS, lagging));
  assert_false(tw__pace_hold(1000 + PACE_WRITE_MS, 1000,
                             1000 + PACE_WRITE_MS + PACE_LIVE_MS, lagging));
}

/* A ring of 1,024 slots wakes a sleeping sender once when it passes its
 * quarter (a burst after a quiet spell), not at every record past it, and
 * not an awake one; below the mark again (drained), the next pass wakes
 * it again. *soft_fill is where the recording thread looks next. */
static void pace_nudge_wakes_once_per_pass(void **state) {
  (void)state;
  const uint64_t size = 1024, mark = size / PACE_NUDGE_DEN;
  uint64_t soft = tw__pace_nudge_mark(size);
  assert_int_equal(soft, 256);
  assert_int_equal(tw__pace_nudge(100, size, &soft, 1), 0);
  assert_int_equal(soft, mark);
  assert_int_equal(tw__pace_nudge(mark, size, &soft, 1), 0);
  assert_int_equal(tw__pace_nudge(mark + 1, size, &soft, 1), 1);
  assert_int_equal(soft, size); /* looks again when the ring seems full */
  assert_int_equal(tw__pace_nudge(500, size, &soft, 1), 0);
  assert_int_equal(tw__pace_nudge(size + 1, size, &soft, 1), 0);
  assert_int_equal(soft, size);
  /* Drained below the mark: the next pass counts again. */
  assert_int_equal(tw__pace_nudge(50, size, &soft, 1), 0);
  assert_int_equal(soft, mark);
  /* A pass while the sender is awake wakes nothing, then or later. */
  assert_int_equal(tw__pace_nudge(mark + 1, size, &soft, 0), 0);
  assert_int_equal(soft, size);
  assert_int_equal(tw__pace_nudge(900, size, &soft, 1), 0);
  assert_int_equal(tw__pace_nudge(10, size, &soft, 1), 0);
  assert_int_equal(tw__pace_nudge(300, size, &soft, 1), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(appends_number_events_without_gaps),
      cmocka_unit_test(two_full_failures_fit_a_chunk),
      cmocka_unit_test(budget_keeps_a_chunk_for_health),
      cmocka_unit_test(ack_frees_whole_chunks),
      cmocka_unit_test(spares_reuse_the_pool),
      cmocka_unit_test(pace_follows_rate_and_fill),
      cmocka_unit_test(pace_takes_the_collectors_hold),
      cmocka_unit_test(pace_holds_last_chunk_for_a_near_drain_only),
      cmocka_unit_test(pace_nudge_wakes_once_per_pass),
      cmocka_unit_test(cut_starts_at_the_welcome),
      cmocka_unit_test(detach_and_attach_renumber),
      cmocka_unit_test(recode_keeps_events),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
