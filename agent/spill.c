/*
 * spill - the blocks that carry a failure's strings when they are too
 * large for the recording thread's ring (see agent_internal.h, "spill
 * blocks"). Failures are rare and their tracebacks slow to make already,
 * so a record that does not fit its ring costs one compare-and-swap on a
 * word shared by all threads and a copy into a block instead of a cut;
 * every other record never looks here.
 *
 * Why two words of free bits and not a free list: a list popped by many
 * threads and pushed by the sender needs a tag against ABA; a bit taken
 * with a compare-and-swap of the whole word cannot be taken twice, and the
 * lowest bit first keeps the same few blocks in use.
 *
 * The budget. A warm block stays charged while it is free; a cold one is
 * charged by the thread that takes it and given back by the sender, its
 * pages with it (madvise on the sender's thread). A cold block is charged
 * only when what is left of the cap after it still holds what the rings
 * may claim (half the budget) and the resend buffer's last two chunks:
 * the blocks are freed by the drain, and the drain needs a chunk to write
 * into, so a burst of failures must never take the chunk that would free
 * them.
 *
 * fork(). The blocks are wiped in a child (MADV_WIPEONFORK, as the rings'
 * slots): the parent's records are discarded there, so every block is
 * free again. A thread frozen by the fork between charging a cold block
 * and taking its bit (or the parent's sender between giving a bit back
 * and its charge) leaves one block's charge behind in the child, never
 * less than what is held: it is charged first and released last.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agent_internal.h"
#include "resend.h"

static size_t spill_bytes(const spill *s) {
  return (size_t)s->nblocks * s->stride;
}

static size_t page_size(void) {
  long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? (size_t)page : 4096;
}

static uint64_t low_bits(unsigned n) {
  return n >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1;
}

/* Writes a byte to every page of the first n blocks: they are the
 * spares, taken on the recording path without a page fault. */
static void fault_in(spill *s, unsigned n) {
  size_t bytes = (size_t)n * s->stride;
  for (size_t off = 0; off < bytes; off += page_size())
    ((volatile uint8_t *)s->blocks)[off] = 0;
}

int tw__spill_init(tw_agent *agent) {
  spill *s = &agent->spill;
  size_t page = page_size();
  s->stride = (SPILL_BLOCK_BYTES + page - 1) / page * page;
  size_t fit = agent->cap / 2 / s->stride;
  size_t spares = agent->cap / SPILL_SPARE_SHARE / s->stride;
  s->nblocks = fit < SPILL_BLOCKS ? (unsigned)fit : SPILL_BLOCKS;
  if (spares < 1)
    spares = 1;
  if (spares > SPILL_SPARES_MAX)
    spares = SPILL_SPARES_MAX;
  if (spares > s->nblocks)
    spares = s->nblocks;
  s->spares = (unsigned)spares;
  void *p = mmap(NULL, spill_bytes(s), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return TW_ENOMEM;
  madvise(p, spill_bytes(s), MADV_WIPEONFORK);
  if (tw__agent_reserve(agent, (size_t)s->spares * s->stride) != 0) {
    munmap(p, spill_bytes(s));
    return TW_ENOMEM;
  }
  s->blocks = p;
  fault_in(s, s->spares);
  atomic_init(&s->warm, low_bits(s->spares));
  atomic_init(&s->cold, low_bits(s->nblocks) & ~low_bits(s->spares));
  return 0;
}

/* Blocks charged now: the free warm ones and every one held. */
static unsigned charged(spill *s) {
  uint64_t cold = atomic_load_explicit(&s->cold, memory_order_relaxed);
  return s->nblocks - (unsigned)__builtin_popcountll(cold);
}

void tw__spill_fini(tw_agent *agent) {
  spill *s = &agent->spill;
  if (s->blocks == NULL)
    return;
  tw__agent_release(agent, (size_t)charged(s) * s->stride);
  munmap(s->blocks, spill_bytes(s));
  s->blocks = NULL;
}

/* Takes the lowest bit of *word; -1 when it has none. */
static int take_bit(_Atomic uint64_t *word) {
  uint64_t m = atomic_load_explicit(word, memory_order_relaxed);
  while (m != 0) {
    int b = __builtin_ctzll(m);
    if (atomic_compare_exchange_weak_explicit(word, &m, m & ~((uint64_t)1 << b),
                                              memory_order_acquire,
                                              memory_order_relaxed))
      return b;
  }
  return -1;
}

int tw__spill_take(tw_agent *agent) {
  spill *s = &agent->spill;
  int b = take_bit(&s->warm);
  if (b >= 0 || atomic_load_explicit(&s->cold, memory_order_relaxed) == 0)
    return b;
  size_t rings =
      atomic_load_explicit(&agent->ring_reserved, memory_order_relaxed);
  size_t keep = (rings < agent->cap / 2 ? agent->cap / 2 - rings : 0) +
                2 * RESEND_CHUNK_COST;
  if (tw__agent_reserve_leaving(agent, s->stride, keep) != 0)
    return -1;
  if ((b = take_bit(&s->cold)) < 0)
    tw__agent_release(agent, s->stride);
  return b;
}

void tw__spill_release(tw_agent *agent, unsigned block) {
  spill *s = &agent->spill;
  uint64_t bit = (uint64_t)1 << block;
  uint64_t warm = atomic_load_explicit(&s->warm, memory_order_relaxed);
  if ((unsigned)__builtin_popcountll(warm) < s->spares) {
    atomic_fetch_or_explicit(&s->warm, bit, memory_order_release);
    return;
  }
  madvise(tw__spill_block(s, block), s->stride, MADV_DONTNEED);
  atomic_fetch_or_explicit(&s->cold, bit, memory_order_release);
  tw__agent_release(agent, s->stride);
}

void tw__spill_fork_child(tw_agent *agent) {
  spill *s = &agent->spill;
  if (s->blocks == NULL)
    return;
  unsigned held = charged(s);
  if (held > s->spares)
    tw__agent_release(agent, (size_t)(held - s->spares) * s->stride);
  atomic_store(&s->warm, low_bits(s->spares));
  atomic_store(&s->cold, low_bits(s->nblocks) & ~low_bits(s->spares));
  fault_in(s, s->spares);
}
