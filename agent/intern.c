/*
 * intern - the agent's table of task names and batch labels. Recording
 * threads turn a string into a small id that the records carry; the sender
 * sends each id's text once per instance (a STRING event) before its first
 * use.
 *
 * The table is lock-free and allocation-free after tw__intern_init(): an
 * open-addressing array of 64-bit words (hash << 32 | id) published with a
 * single compare-and-swap, a fixed arena for the text, and an id counter. An
 * inserter copies the text and takes an id first, then tries to claim a
 * slot; when another thread wins the slot with the same string the loser's
 * id is simply never used (ids may have gaps, which the protocol allows). A
 * reader that sees a slot never sees it change again, so no reader ever
 * waits for a writer. When the table or the arena is full, new strings map
 * to INTERN_OVERFLOW_ID, whose text says so: a bounded table beats an
 * unbounded one inside someone else's server.
 */
#include <stdlib.h>
#include <string.h>

#include "agent_internal.h"

static const char overflow_text[] = "(too many distinct names)";

size_t tw__intern_footprint(void) {
  return INTERN_SLOTS * sizeof(uint64_t) + INTERN_MAX_IDS * sizeof(uint32_t) +
         INTERN_ARENA;
}

static uint32_t hash_bytes(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (uint8_t)s[i];
    h *= 16777619u;
  }
  return h;
}

/* Copies the text into the arena and takes an id for it. Returns the id,
 * or 0 when the arena or the ids are used up. */
static uint32_t add_text(intern *t, const char *s, size_t len) {
  uint32_t need = (uint32_t)(2 + len + 1);
  need = (need + 7u) & ~7u;
  /* Claim the bytes with a compare-and-swap, not a fetch_add: once the
   * arena is full every new distinct name would otherwise still advance
   * arena_top, and after 4 GiB of such attempts the u32 wraps and new text
   * lands on entries other threads are reading. This way arena_top never
   * passes INTERN_ARENA. */
  uint32_t at = atomic_load_explicit(&t->arena_top, memory_order_relaxed);
  do {
    if (at > INTERN_ARENA || INTERN_ARENA - at < need)
      return 0;
  } while (!atomic_compare_exchange_weak_explicit(&t->arena_top, &at, at + need,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed));
  uint32_t id = atomic_fetch_add_explicit(&t->next_id, 1, memory_order_relaxed);
  if (id >= INTERN_MAX_IDS)
    return 0;
  char *p = t->arena + at;
  uint16_t n16 = (uint16_t)len;
  memcpy(p, &n16, sizeof(n16));
  memcpy(p + 2, s, len);
  p[2 + len] = '\0';
  atomic_store_explicit(&t->by_id[id], at, memory_order_relaxed);
  return id;
}

/* Zeroed memory in whole cache lines of its own: every enqueue reads an
 * id's offset and text, and a neighbour on the heap written by another
 * thread would make those reads cache misses. */
static void *lines_alloc(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
  if (p != NULL)
    memset(p, 0, bytes);
  return p;
}

int tw__intern_init(intern *t) {
  memset(t, 0, sizeof(*t));
  t->slots = lines_alloc(INTERN_SLOTS * sizeof(*t->slots));
  t->by_id = lines_alloc(INTERN_MAX_IDS * sizeof(*t->by_id));
  t->arena = lines_alloc(INTERN_ARENA);
  if (t->slots == NULL || t->by_id == NULL || t->arena == NULL) {
    tw__intern_fini(t);
    return TW_ENOMEM;
  }
  atomic_init(&t->arena_top, 0);
  atomic_init(&t->next_id, INTERN_OVERFLOW_ID);
  add_text(t, overflow_text, sizeof(overflow_text) - 1);
  return 0;
}

void tw__intern_fini(intern *t) {
  free(t->slots);
  free(t->by_id);
  free(t->arena);
  t->slots = NULL;
  t->by_id = NULL;
  t->arena = NULL;
}

const char *tw__intern_text(const intern *t, uint32_t id, uint32_t *len) {
  uint32_t at = atomic_load_explicit(&t->by_id[id], memory_order_relaxed);
  uint16_t n16;
  memcpy(&n16, t->arena + at, sizeof(n16));
  *len = n16;
  return t->arena + at + 2;
}

static bool text_equal(const intern *t, uint32_t id, const char *s,
                       size_t len) {
  uint32_t n;
  const char *text = tw__intern_text(t, id, &n);
  return n == len && memcmp(text, s, len) == 0;
}

uint32_t tw__intern_get(intern *t, const char *s, size_t len) {
  if (len > LIMIT_NAME)
    len = LIMIT_NAME;
  uint32_t h = hash_bytes(s, len);
  uint32_t mine = 0; /* our own id, once we have copied the text */
  for (uint32_t probe = 0; probe < INTERN_SLOTS; probe++) {
    _Atomic uint64_t *slot = &t->slots[(h + probe) & (INTERN_SLOTS - 1)];
    uint64_t word = atomic_load_explicit(slot, memory_order_acquire);
    while (word == 0) {
      if (mine == 0 && (mine = add_text(t, s, len)) == 0)
        return INTERN_OVERFLOW_ID;
      uint64_t want = (uint64_t)h << 32 | mine;
      if (atomic_compare_exchange_strong_explicit(
              slot, &word, want, memory_order_acq_rel, memory_order_acquire))
        return mine;
      /* Lost the slot: word now holds the winner's entry. */
    }
    uint32_t id = (uint32_t)word;
    if ((uint32_t)(word >> 32) == h && text_equal(t, id, s, len))
      return id;
  }
  return INTERN_OVERFLOW_ID;
}
