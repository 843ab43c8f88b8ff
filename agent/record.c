/*
 * record - the recording path: the low-level trace calls of the public API,
 * the per-thread rings they write into, and the registration that gives a
 * thread its ring.
 *
 * A thread finds its ring through a thread-local cache holding the agent's
 * serial and the ring. On a miss (first event of the thread, or a thread that
 * switches agents) it walks the agent's lock-free ring list for a ring it
 * already owns, adopts a ring left by an exited thread, or allocates a new
 * one and pushes it with a compare-and-swap. That slow path is the only one
 * that may allocate; everything after it is a few plain stores and one
 * release store of the ring's head (a failure whose strings do not fit the
 * ring adds one compare-and-swap, for a spill block: spill.c). Task and
 * batch ids come from the agent's atomic counter in blocks of
 * RING_ID_BLOCK, so the counter's cache line is not fought over on every
 * enqueue.
 *
 * A ring's slots are faulted in when it is registered, not by the records
 * that first reach each page: a first touch costs a page fault (about 12 µs
 * a page on a VM), which would land on the recording path hundreds of times
 * per ring. They are mapped on their own, on huge pages where the kernel
 * offers them (fewer faults at registration, fewer TLB misses after), and
 * wiped rather than shared in a forked child: a copy-on-write page would
 * fault again in the parent at its next record after every fork().
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "agent_internal.h"
#include "pace.h"

typedef struct tls_state {
  uint64_t serial; /* agent whose ring is cached; 0 = none */
  ring *ring;
  uint64_t thread; /* the thread's kernel id, taken once */
} tls_state;

static __thread tls_state tls __attribute__((tls_model("initial-exec")));

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

/* At thread exit, hand the thread's rings back so a later thread can adopt
 * them; the agent may be gone already, which the registry tells. Every ring
 * the thread owns is released, not only the last one bound (the key's
 * value), so a thread that recorded for several agents leaves none held. */
static void on_thread_exit(void *value) {
  (void)value;
  uintptr_t me = (uintptr_t)&tls;
  /* Forget the cached ring first: a later thread-exit destructor of the
   * same thread that records again must not write into a ring that another
   * thread may adopt as soon as it is released (two producers on a
   * single-producer ring). Such a record goes through bind_ring() again,
   * which re-adopts a ring and sets the key, so this destructor runs once
   * more in the next round; after the last round glibc leaves the ring
   * held, which costs a ring, never a corrupted one. */
  tls.serial = 0;
  tls.ring = NULL;
  tw__registry_lock();
  for (tw_agent *a = tw__registry_first(); a != NULL; a = a->registry_next)
    for (ring *r = atomic_load(&a->rings); r != NULL; r = r->next) {
      uintptr_t mine = me;
      atomic_compare_exchange_strong_explicit(
          &r->owner, &mine, 0, memory_order_release, memory_order_relaxed);
    }
  tw__registry_unlock();
}

static void make_exit_key(void) {
  pthread_key_create(&exit_key, on_thread_exit);
}

/* The slot bytes of a new ring when rings already hold `used` bytes. */
static size_t ring_size_for(const tw_agent *agent, size_t used) {
  size_t left = used < agent->cap / 2 ? agent->cap / 2 - used : 0;
  size_t size = RING_MIN_BYTES;
  size_t share = used == 0 ? RING_SHARE_FIRST : RING_SHARE;
  while (size < RING_MAX_BYTES && size * 2 <= left / share)
    size *= 2;
  return size;
}

#define RING_HUGE_BYTES ((size_t)2 << 20) /* a huge page on x86-64, arm64 */

/* Maps `bytes` of slot memory, aligned for huge pages when it spans one.
 * NULL when the kernel gives none. Advice the kernel does not take (no
 * transparent huge pages, no MADV_WIPEONFORK before Linux 4.14) costs
 * only the faults it would have saved. */
static ring_record *slots_map(size_t bytes) {
  size_t align = bytes >= RING_HUGE_BYTES ? RING_HUGE_BYTES : 0;
  size_t len = bytes + align;
  char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  if (align != 0) {
    char *start =
        (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    if (start > p)
      munmap(p, (size_t)(start - p));
    if (start + bytes < p + len)
      munmap(start + bytes, (size_t)(p + len - (start + bytes)));
    p = start;
    madvise(p, bytes, MADV_HUGEPAGE);
  }
  madvise(p, bytes, MADV_WIPEONFORK);
  return (ring_record *)p;
}

/* A ring's header is aligned to a power of two at least its size, so it
 * never straddles a page: after a fork(), the parent's first record
 * writes the page its producer side is on, and with it takes the one
 * copy-on-write fault of the header. A header across two pages kept a
 * second one for later: reserve()'s slow path (soft_fill) took it in the
 * middle of recording when the sender had not yet written the second
 * page (its tail) since the fork. */
#define RING_HEADER_ALIGN 1024u
_Static_assert(sizeof(ring) <= RING_HEADER_ALIGN,
               "a ring's header fits in its alignment (raise it)");
_Static_assert(4096 % RING_HEADER_ALIGN == 0,
               "a ring's header within one page");

static size_t slots_bytes(const ring *r) {
  return (size_t)(r->mask + 1) * RING_SLOT_BYTES;
}

/* Faults in every page of a ring's slots. Only for a ring that holds no
 * record (new, or emptied by a fork): every page gets a zero byte. The
 * kernel's MADV_POPULATE_WRITE (Linux 5.14) fills the page tables in one
 * call, far cheaper than a fault per page; the writes that follow are
 * still needed on a VM, where the hypervisor backs or maps each page at
 * the guest's first access to it (5-10 µs a 4 KiB page measured here,
 * which MADV_POPULATE_WRITE alone left to the recording path), and they
 * are the whole work where the kernel lacks MADV_POPULATE_WRITE. */
static void slots_fault_in(ring *r) {
  size_t bytes = slots_bytes(r);
  long page = sysconf(_SC_PAGESIZE);
  size_t step = page > 0 ? (size_t)page : 4096;
  madvise(r->slots, bytes, MADV_POPULATE_WRITE);
  for (size_t off = 0; off < bytes; off += step)
    ((volatile char *)r->slots)[off] = 0;
  r->slots_cold = false;
}

/* A ring's size and its share of the rings' half are claimed in one
 * compare-and-swap: threads that register at the same moment (a thread
 * pool starting) each size their ring from what the others have already
 * claimed, so together they never take more than the sizing allows. */
static ring *ring_new(tw_agent *agent, uintptr_t me) {
  size_t used =
      atomic_load_explicit(&agent->ring_reserved, memory_order_relaxed);
  size_t bytes, total, most = RING_MAX_BYTES;
  for (;;) {
    do {
      bytes = ring_size_for(agent, used);
      bytes = bytes < most ? bytes : most;
      total = sizeof(ring) + bytes;
      if (used + total > agent->cap / 2)
        return NULL;
    } while (!atomic_compare_exchange_weak_explicit(
        &agent->ring_reserved, &used, used + total, memory_order_relaxed,
        memory_order_relaxed));
    /* A ring larger than a late one leaves the room kept for late rings
     * (tw__record_late_keep()) to them: taking the largest that fit, the
     * first thread to register once the resend buffer had filled the
     * budget took part of that room, and a fourth found none (test_agent
     * late_threads_get_a_ring, under load; at the failure 6.9 KiB of the
     * budget was left and the late rings held 137 KiB, not 4 x 33). */
    if ((bytes > RING_LATE_BYTES
             ? tw__agent_reserve_leaving(agent, total,
                                         tw__record_late_keep(agent))
             : tw__agent_reserve(agent, total)) == 0)
      break;
    /* The resend buffer holds the rest of the budget: a smaller ring
     * (it leaves RING_LATE_KEEP for them, tw__record_late_keep()). */
    used = atomic_fetch_sub(&agent->ring_reserved, total) - total;
    if (bytes == RING_MIN_BYTES)
      return NULL;
    most = bytes / 2;
  }
  ring *r = aligned_alloc(RING_HEADER_ALIGN, RING_HEADER_ALIGN);
  ring_record *slots = r != NULL ? slots_map(bytes) : NULL;
  if (slots == NULL) {
    free(r);
    tw__agent_release(agent, total);
    atomic_fetch_sub(&agent->ring_reserved, total);
    return NULL;
  }
  memset(r, 0, sizeof(*r));
  r->slots = slots;
  r->mask = bytes / RING_SLOT_BYTES - 1;
  r->bytes = total;
  r->soft_fill = tw__pace_nudge_mark(r->mask + 1);
  slots_fault_in(r);
  atomic_init(&r->owner, me);
  ring *head = atomic_load_explicit(&agent->rings, memory_order_relaxed);
  do
    r->next = head;
  while (!atomic_compare_exchange_weak_explicit(
      &agent->rings, &head, r, memory_order_release, memory_order_relaxed));
  return r;
}

size_t tw__record_late_keep(const tw_agent *agent) {
  size_t used =
      atomic_load_explicit(&agent->ring_reserved, memory_order_relaxed);
  size_t unclaimed = used < agent->cap / 2 ? agent->cap / 2 - used : 0;
  size_t keep = RING_LATE_RINGS * (sizeof(ring) + RING_LATE_BYTES);
  return unclaimed < keep ? unclaimed : keep;
}

/* The slow path: find, adopt or create the calling thread's ring. */
static ring *bind_ring(tw_agent *agent) {
  uintptr_t me = (uintptr_t)&tls;
  ring *first = atomic_load_explicit(&agent->rings, memory_order_acquire);
  ring *r;
  if (tls.thread == 0)
    tls.thread = (uint64_t)gettid();
  for (r = first; r != NULL; r = r->next)
    if (atomic_load_explicit(&r->owner, memory_order_relaxed) == me)
      goto bound;
  for (r = first; r != NULL; r = r->next) {
    uintptr_t free_owner = 0;
    if (atomic_compare_exchange_strong_explicit(&r->owner, &free_owner, me,
                                                memory_order_acquire,
                                                memory_order_relaxed)) {
      if (r->slots_cold)
        slots_fault_in(r);
      goto bound;
    }
  }
  if ((r = ring_new(agent, me)) == NULL)
    return NULL;
bound:
  pthread_once(&exit_key_once, make_exit_key);
  pthread_setspecific(exit_key, r);
  tls.serial = agent->serial;
  tls.ring = r;
  return r;
}

static inline ring *thread_ring(tw_agent *agent) {
  if (__builtin_expect(tls.serial == agent->serial, 1))
    return tls.ring;
  return bind_ring(agent);
}

/* reserve() when the ring looks more than r->soft_fill full by the tail
 * last seen: reads the tail again, wakes a sleeping sender if the ring
 * just passed the nudge mark (pace.h), and says whether the slots up to
 * `end` fit. */
__attribute__((noinline, cold)) static bool reserve_slow(tw_agent *agent,
                                                         ring *r,
                                                         uint64_t end) {
  r->cached_tail = atomic_load_explicit(&r->tail, memory_order_acquire);
  uint64_t fill = end - r->cached_tail;
  if (tw__pace_nudge(fill, r->mask + 1, &r->soft_fill,
                     atomic_load_explicit(&agent->sender_asleep,
                                          memory_order_relaxed)))
    tw__sender_nudge(agent);
  return fill <= r->mask + 1;
}

/* Returns the first of n free slots, or NULL when the ring is full. */
static inline ring_record *reserve(tw_agent *agent, ring *r, uint64_t n) {
  uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  if (__builtin_expect(head + n - r->cached_tail > r->soft_fill, 0) &&
      !reserve_slow(agent, r, head + n))
    return NULL;
  return &r->slots[head & r->mask];
}

static inline void commit(ring *r, uint64_t n) {
  uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  atomic_store_explicit(&r->head, head + n, memory_order_release);
  uint64_t rec = atomic_load_explicit(&r->recorded, memory_order_relaxed);
  atomic_store_explicit(&r->recorded, rec + 1, memory_order_relaxed);
}

static int drop(tw_agent *agent, ring *r) {
  if (r == NULL) {
    atomic_fetch_add_explicit(&agent->dropped_unbound, 1, memory_order_relaxed);
    return TW_EFULL;
  }
  uint64_t d = atomic_load_explicit(&r->dropped, memory_order_relaxed);
  atomic_store_explicit(&r->dropped, d + 1, memory_order_relaxed);
  return TW_EFULL;
}

static inline tw_id take_id(tw_agent *agent, ring *r) {
  if (r == NULL)
    return atomic_fetch_add_explicit(&agent->next_id, 1, memory_order_relaxed);
  if (r->next_id == r->end_id) {
    r->next_id = atomic_fetch_add_explicit(&agent->next_id, RING_ID_BLOCK,
                                           memory_order_relaxed);
    r->end_id = r->next_id + RING_ID_BLOCK;
  }
  return r->next_id++;
}

/* Adds n to a counter only the calling thread writes: a relaxed load and
 * store, no atomic add. */
static inline void own_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

/* One-slot events: everything but ENQUEUE, FAIL and DROP. START carries
 * the thread id, known once the thread has its ring. Inlined into each
 * caller, where `kind` is a constant: out of line, its tests of the kind
 * cost a START about 2 ns (bench/agent_overhead). */
__attribute__((always_inline)) static inline int
record1(tw_agent *agent, uint8_t kind, uint32_t x, uint64_t a, uint64_t b) {
  ring *r = thread_ring(agent);
  if (kind == PROTO_EV_START)
    b = tls.thread;
  ring_record *w;
  if (__builtin_expect(r == NULL || (w = reserve(agent, r, 1)) == NULL, 0))
    return drop(agent, r);
  w->kind = kind;
  w->mode = 0;
  w->slots = 1;
  w->x = x;
  w->time = tw__clock_now();
  w->a = a;
  w->b = b;
  commit(r, 1);
  if (kind == PROTO_EV_FINISH || kind == PROTO_EV_SKIP)
    own_add(&r->closed, 1);
  return 0;
}

/* Adds n to a counter of the calling thread: its ring's (only it writes
 * them: a relaxed load and store), or the agent's for a thread without a
 * ring (atomic adds). */
static inline void count(_Atomic uint64_t *mine, _Atomic uint64_t *shared,
                         uint64_t n) {
  if (mine != NULL)
    own_add(mine, n);
  else
    atomic_fetch_add_explicit(shared, n, memory_order_relaxed);
}
#define COUNT(agent, r, field, n)                                              \
  count((r) != NULL ? &(r)->field : NULL, &(agent)->field##_unbound, (n))

static const char ellipsis[] = "\xe2\x80\xa6"; /* U+2026, "…" */
#define ELLIPSIS_BYTES (sizeof(ellipsis) - 1)

/* How many bytes of s (longer than max) a cut to at most `max` bytes,
 * the mark included, keeps: the longest prefix of at most
 * max - ELLIPSIS_BYTES bytes that ends at a UTF-8 character boundary (the
 * first byte dropped is not a continuation byte). */
static size_t cut_keep(const char *s, size_t max) {
  size_t keep = max > ELLIPSIS_BYTES ? max - ELLIPSIS_BYTES : 0;
  while (keep > 0 && ((unsigned char)s[keep] & 0xc0) == 0x80)
    keep--;
  return keep;
}

/* The id of a name or label of `len` bytes (at most LIMIT_NAME + 1: one
 * more means longer than the limit), cut to LIMIT_NAME and marked when
 * longer. */
static uint32_t intern_name(tw_agent *agent, ring *r, const char *s,
                            size_t len) {
  char cut[LIMIT_NAME];
  if (len > LIMIT_NAME) {
    size_t keep = cut_keep(s, LIMIT_NAME);
    memcpy(cut, s, keep);
    memcpy(cut + keep, ellipsis, ELLIPSIS_BYTES);
    s = cut;
    len = keep + ELLIPSIS_BYTES;
    COUNT(agent, r, cut, 1);
  }
  uint32_t id = tw__intern_get(&agent->strings, s, len);
  if (id == INTERN_OVERFLOW_ID)
    COUNT(agent, r, renamed, 1);
  return id;
}

static uint32_t name_id(tw_agent *agent, ring *r, const char *s) {
  uintptr_t p = (uintptr_t)s;
  ring_name_cache *c = &r->cache[((p >> 3) ^ (p >> 9)) & (RING_CACHE_SIZE - 1)];
  if (c->ptr == s) {
    uint32_t n;
    const char *text = tw__intern_text(&agent->strings, c->id, &n);
    if (n == c->len && memcmp(text, s, n) == 0 && s[n] == '\0')
      return c->id;
  }
  size_t len = strnlen(s, LIMIT_NAME + 1);
  uint32_t id = intern_name(agent, r, s, len);
  /* A name cut or replaced is not cached: its text is not the caller's,
   * and each use is counted. */
  if (len <= LIMIT_NAME && id != INTERN_OVERFLOW_ID) {
    c->ptr = s;
    c->id = id;
    c->len = (uint32_t)len;
  }
  return id;
}

static uint32_t string_id(tw_agent *agent, ring *r, const char *s) {
  if (r != NULL)
    return name_id(agent, r, s);
  return intern_name(agent, r, s, strnlen(s, LIMIT_NAME + 1));
}

/* ---- admission ----------------------------------------------------------
 *
 * A batch (tw_batch_begin()) or a task (tw_task_enqueue()) is admitted
 * whole or refused whole, when it begins. An admitted task's ENQUEUE takes
 * two slots, and its START and its final event (FINISH, SKIP; a FAIL or
 * DROP without strings) two more, later: admission keeps those two for
 * every task of the thread still open. A new batch is refused while the
 * sender says the resend buffer is full, or while the thread's ring, its
 * records and two slots for each of its open tasks, would be more than
 * RING_ADMIT_BATCH/RING_ADMIT_DEN full (or the thread has none). A task
 * of an admitted batch is refused only past RING_ADMIT_TASK/RING_ADMIT_DEN:
 * the room between the two marks is for the tasks of batches admitted
 * before (a thousand at the default budget's first ring), the last eighth
 * for BATCH and LINK records. So while the host ends each task with one of
 * those events, a stored task never misses its start or its end, however
 * much of the ring the sender drained before it stopped (a collector
 * away). A refused batch or task gets an id with TW_ID_REFUSED set; every
 * later call on it (a task enqueued into a refused batch included) only
 * counts one dropped event.
 *
 * A thread's open tasks are those it admitted and did not end itself
 * (opened - closed), less the sync tasks it handed to the runner's pool
 * and that ended elsewhere (pool_in - pool_out: their START and end are
 * another ring's, which the runner's backlog bound keeps room in). Tasks
 * of the low-level API that end on another thread would stay counted; so
 * where that count leaves no room, admission takes the smaller of it and
 * the tasks open on every ring (a sum, walked only then). */

/* The calling thread's own open tasks (above); never below 0 (a task
 * ended twice by a host's mistake, a parent's task ended in a forked
 * child). Its counters are its own: plain loads. */
static inline uint64_t own_open(const ring *r) {
  int64_t open =
      (int64_t)(atomic_load_explicit(&r->opened, memory_order_relaxed) -
                atomic_load_explicit(&r->closed, memory_order_relaxed)) -
      (int64_t)(atomic_load_explicit(&r->pool_in, memory_order_relaxed) -
                atomic_load_explicit(&r->pool_out, memory_order_relaxed));
  return open > 0 ? (uint64_t)open : 0;
}

/* Tasks admitted and not yet ended, over every ring. A final event
 * dropped for lack of room leaves its task counted open, which only keeps
 * more room. */
static uint64_t open_tasks(tw_agent *agent) {
  uint64_t opened = 0, closed = 0;
  for (ring *r = atomic_load_explicit(&agent->rings, memory_order_acquire);
       r != NULL; r = r->next) {
    opened += atomic_load_explicit(&r->opened, memory_order_relaxed);
    closed += atomic_load_explicit(&r->closed, memory_order_relaxed);
  }
  return opened > closed ? opened - closed : 0;
}

/* admit_room() when the room looked short: reads the tail again, and
 * counts every ring's open tasks when the thread's own count is more. */
__attribute__((noinline, cold)) static bool
admit_room_slow(tw_agent *agent, ring *r, uint64_t n, uint64_t more,
                uint64_t limit, uint64_t open) {
  r->cached_tail = atomic_load_explicit(&r->tail, memory_order_acquire);
  uint64_t fill = atomic_load_explicit(&r->head, memory_order_relaxed) -
                  r->cached_tail + n;
  if (fill + 2 * (open + more) <= limit)
    return true;
  uint64_t all = open_tasks(agent);
  return fill + 2 * ((all < open ? all : open) + more) <= limit;
}

/* Whether the ring may take a record of n slots that opens `more` tasks
 * and still keep two slots for each open task, within `num`/RING_ADMIT_DEN
 * of it. */
static inline bool admit_room(tw_agent *agent, ring *r, uint64_t n,
                              uint64_t more, uint64_t num) {
  if (__builtin_expect(r == NULL, 0))
    return false;
  uint64_t limit = (r->mask + 1) / RING_ADMIT_DEN * num;
  uint64_t open = own_open(r);
  uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  if (__builtin_expect(head - r->cached_tail + n + 2 * (open + more) <= limit,
                       1))
    return true;
  return admit_room_slow(agent, r, n, more, limit, open);
}

/* Sums the pool's backlog (sync tasks of the batches the runner runs, not
 * yet ended) and the room of the smallest ring that may run it:
 * the other threads' (the calling thread's own ring keeps room for what
 * it runs itself by its marks, admit_room), or a ring yet to be made, if
 * the budget has room for one. The calling thread may admit half of what
 * is left (RING_BACKLOG_*, agent_internal.h): threads that sum at the same
 * moment take no more than the room between them, and the sums come more
 * often only near the limit. */
static void admit_window(tw_agent *agent, ring *mine) {
  size_t used =
      atomic_load_explicit(&agent->ring_reserved, memory_order_relaxed);
  size_t next = ring_size_for(agent, used);
  /* As ring_new() would make it now: no larger than the budget has. */
  size_t held = atomic_load_explicit(&agent->reserved, memory_order_relaxed);
  size_t fit = held < agent->cap ? agent->cap - held : 0;
  while (next > RING_MIN_BYTES && sizeof(ring) + next > fit)
    next /= 2;
  uint64_t room =
      used + sizeof(ring) + next <= agent->cap / 2 && sizeof(ring) + next <= fit
          ? next / RING_SLOT_BYTES
          : UINT64_MAX; /* no new ring: only the rings there are */
  uint64_t in = atomic_load_explicit(&agent->pool_in_unbound,
                                     memory_order_relaxed),
           out = atomic_load_explicit(&agent->pool_out_unbound,
                                      memory_order_relaxed);
  ring *head = atomic_load_explicit(&agent->rings, memory_order_acquire);
  for (ring *r = head; r != NULL; r = r->next) {
    in += atomic_load_explicit(&r->pool_in, memory_order_relaxed);
    out += atomic_load_explicit(&r->pool_out, memory_order_relaxed);
    if (r == mine)
      continue;
    uint64_t fill = atomic_load_explicit(&r->head, memory_order_relaxed) -
                    atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t free = fill < r->mask + 1 ? r->mask + 1 - fill : 0;
    if (free < room)
      room = free;
  }
  if (room == UINT64_MAX)
    room = 0; /* no other ring, and no room for one */
  int64_t backlog = in > out ? (int64_t)(in - out) : 0;
  mine->admit_base = atomic_load_explicit(&mine->pool_in, memory_order_relaxed);
  mine->admit_allow =
      ((int64_t)(room * RING_BACKLOG_BATCH / RING_ADMIT_DEN) - backlog + 1) / 2;
}

/* Whether the calling thread may admit a batch: the pool's backlog, as it
 * stood at its last sum plus what it started since, is within the
 * allowance of that sum, or of a new one. */
static inline bool backlog_below(tw_agent *agent, ring *r) {
  int64_t since =
      (int64_t)(atomic_load_explicit(&r->pool_in, memory_order_relaxed) -
                r->admit_base);
  if (__builtin_expect(since < r->admit_allow, 1))
    return true;
  admit_window(agent, r);
  return 0 < r->admit_allow;
}

/* Tracing off (tw_agent_new): calls return 0 once their arguments are
 * checked; ids stay distinct and nonzero, so callers see no difference. */
#define OFF(agent) __builtin_expect((agent)->disabled, 0)

void tw__record_pool_in(tw_agent *agent, tw_id batch, uint64_t tasks) {
  if (OFF(agent) || (batch & TW_ID_REFUSED) || tasks == 0)
    return;
  ring *r = thread_ring(agent);
  COUNT(agent, r, pool_in, tasks);
}

void tw__record_pool_out(tw_agent *agent, tw_id task) {
  if (OFF(agent) || (task & TW_ID_REFUSED))
    return;
  ring *r = thread_ring(agent);
  COUNT(agent, r, pool_out, 1);
}

static tw_id off_id(tw_agent *agent) {
  return atomic_fetch_add_explicit(&agent->next_id, 1, memory_order_relaxed);
}

/* A call on a refused batch or task: one event counted as dropped. */
static int refused_call(tw_agent *agent) {
  return drop(agent, thread_ring(agent));
}

int tw_batch_begin(tw_agent *agent, const char *label, tw_id *batch) {
  if (agent == NULL || batch == NULL)
    return TW_EINVAL;
  if (OFF(agent)) {
    *batch = off_id(agent);
    return 0;
  }
  ring *r = thread_ring(agent);
  *batch = take_id(agent, r);
  refused_why why =
      atomic_load_explicit(&agent->admit_pressure, memory_order_relaxed)
          ? REFUSED_PRESSURE
      : !admit_room(agent, r, 1, 0, RING_ADMIT_BATCH) ? REFUSED_RING
      : !backlog_below(agent, r) ? REFUSED_BACKLOG
                                 : REFUSED_WHY_COUNT;
  if (why != REFUSED_WHY_COUNT) {
    *batch |= TW_ID_REFUSED;
    COUNT(agent, r, refused_batches, 1);
    count(r != NULL ? &r->refused_by[why] : NULL,
          &agent->refused_by_unbound[why], 1);
    return drop(agent, r);
  }
  uint32_t label_id = label != NULL ? string_id(agent, r, label) : 0;
  return record1(agent, PROTO_EV_BATCH, label_id, *batch, 0);
}

int tw_task_enqueue(tw_agent *agent, tw_id batch, uint32_t position,
                    const char *name, tw_mode mode, tw_id *task) {
  if (agent == NULL || task == NULL || name == NULL || batch == 0 ||
      (mode != TW_MODE_LOOP && mode != TW_MODE_THREADPOOL))
    return TW_EINVAL;
  if (OFF(agent)) {
    *task = off_id(agent);
    return 0;
  }
  ring *r = thread_ring(agent);
  *task = take_id(agent, r);
  if ((batch & TW_ID_REFUSED) ||
      !admit_room(agent, r, 2, 1, RING_ADMIT_TASK)) {
    *task |= TW_ID_REFUSED;
    COUNT(agent, r, refused_tasks, 1);
    return drop(agent, r);
  }
  /* Admitted, the ring has the two slots. */
  uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  ring_record *w = &r->slots[head & r->mask];
  uint32_t name_ref = name_id(agent, r, name);
  w->kind = PROTO_EV_ENQUEUE;
  w->mode = (uint8_t)mode;
  w->slots = 2;
  w->x = position;
  w->time = tw__clock_now();
  w->a = *task;
  w->b = batch;
  ring_enqueue_tail *t = (ring_enqueue_tail *)&r->slots[(head + 1) & r->mask];
  t->name = name_ref;
  t->thread = tls.thread;
  commit(r, 2);
  own_add(&r->opened, 1);
  return 0;
}

int tw_task_start(tw_agent *agent, tw_id task) {
  if (agent == NULL || task == 0)
    return TW_EINVAL;
  if (OFF(agent))
    return 0;
  if (__builtin_expect(task & TW_ID_REFUSED, 0))
    return refused_call(agent);
  return record1(agent, PROTO_EV_START, 0, task, 0);
}

int tw_task_finish(tw_agent *agent, tw_id task) {
  if (agent == NULL || task == 0)
    return TW_EINVAL;
  if (OFF(agent))
    return 0;
  if (__builtin_expect(task & TW_ID_REFUSED, 0))
    return refused_call(agent);
  return record1(agent, PROTO_EV_FINISH, 0, task, 0);
}

int tw_task_skip(tw_agent *agent, tw_id task, tw_id cause) {
  if (agent == NULL || task == 0)
    return TW_EINVAL;
  if (OFF(agent))
    return 0;
  if (__builtin_expect(task & TW_ID_REFUSED, 0))
    return refused_call(agent);
  /* A refused cause was never stored: the skip names none. */
  return record1(agent, PROTO_EV_SKIP, 0, task,
                 cause & TW_ID_REFUSED ? 0 : cause);
}

/* Copies n bytes into the ring's slot memory at byte offset `at`,
 * wrapping at the end. */
static void copy_in(ring *r, uint64_t at, const void *src, size_t n) {
  if (n == 0)
    return;
  size_t size = (r->mask + 1) * RING_SLOT_BYTES;
  size_t off = (size_t)(at % size);
  size_t first = n < size - off ? n : size - off;
  memcpy((char *)r->slots + off, src, first);
  if (n > first)
    memcpy(r->slots, (const char *)src + first, n - first);
}

void tw__ring_copy_out(const ring *r, uint64_t at, void *dst, size_t n) {
  if (n == 0)
    return;
  size_t size = (r->mask + 1) * RING_SLOT_BYTES;
  size_t off = (size_t)(at % size);
  size_t first = n < size - off ? n : size - off;
  memcpy(dst, (const char *)r->slots + off, first);
  if (n > first)
    memcpy((char *)dst + first, r->slots, n - first);
}

/* Copies the strings (each its first keep[i] bytes, then the mark when it
 * was cut: len[i] bytes in all) one after another, through `put`, from
 * byte `at` on. */
typedef void put_fn(void *to, uint64_t at, const void *src, size_t n);

static void put_strings(put_fn *put, void *to, uint64_t at,
                        const char *const s[3], const size_t keep[3],
                        const size_t len[3]) {
  for (int i = 0; i < 3; i++) {
    put(to, at, s[i], keep[i]);
    if (keep[i] < len[i])
      put(to, at + keep[i], ellipsis, ELLIPSIS_BYTES);
    at += len[i];
  }
}

static void put_ring(void *to, uint64_t at, const void *src, size_t n) {
  copy_in(to, at, src, n);
}

static void put_block(void *to, uint64_t at, const void *src, size_t n) {
  if (n > 0)
    memcpy((uint8_t *)to + at, src, n);
}

/* The first slot of a record with strings. */
static void strings_head(ring_record *w, uint8_t kind, tw_id task,
                         const size_t len[3], uint64_t slots) {
  w->kind = kind;
  w->mode = 0;
  w->slots = (uint16_t)slots;
  w->x = (uint32_t)(len[0] | (len[1] << 16));
  w->time = tw__clock_now();
  w->a = task;
  w->b = len[2];
}

/* The strings in a spill block, the record one slot: 0, or -1 when the
 * ring has no slot or no block can be had. */
static int record_spilled(tw_agent *agent, ring *r, uint8_t kind, tw_id task,
                          const char *const s[3], const size_t keep[3],
                          const size_t len[3]) {
  ring_record *w = reserve(agent, r, 1);
  int block;
  if (w == NULL || (block = tw__spill_take(agent)) < 0)
    return -1;
  put_strings(put_block, tw__spill_block(&agent->spill, (unsigned)block), 0, s,
              keep, len);
  strings_head(w, kind, task, len, 1);
  w->mode = RING_SPILLED;
  w->b |= (uint64_t)block << RING_SPILL_SHIFT;
  commit(r, 1);
  return 0;
}

/* A record with up to three strings (FAIL, DROP, LINK). A string longer
 * than its limit is cut to it at a character boundary and marked. The
 * strings go in the slots after the record's first when they fit: at most
 * half the ring, and the ring has the room now. Else they go in a spill
 * block and the record takes one slot. When no block can be had, the
 * detail (then the message) is cut to fit half the ring, marked, and the
 * record dropped if the ring has no room for it. Each cut is counted. */
static int record_strings(tw_agent *agent, uint8_t kind, tw_id task,
                          const char *s[3], const size_t max[3]) {
  if (__builtin_expect(task & TW_ID_REFUSED, 0))
    return refused_call(agent);
  ring *r = thread_ring(agent);
  if (r == NULL)
    return drop(agent, r);
  size_t len[3], keep[3], total = 0;
  bool cut[3];
  for (int i = 0; i < 3; i++) {
    len[i] = keep[i] = s[i] != NULL ? strnlen(s[i], max[i] + 1) : 0;
    cut[i] = len[i] > max[i];
    if (cut[i]) {
      keep[i] = cut_keep(s[i], max[i]);
      len[i] = keep[i] + ELLIPSIS_BYTES;
    }
    total += len[i];
  }
  size_t room = (r->mask + 1) * RING_SLOT_BYTES / 2 - RING_SLOT_BYTES;
  uint64_t n = 1 + (total + RING_SLOT_BYTES - 1) / RING_SLOT_BYTES;
  /* In the ring where that leaves the open tasks their room, else in a
   * spill block. */
  ring_record *w = total <= room && admit_room(agent, r, n, 0, RING_ADMIT_DEN)
                       ? reserve(agent, r, n)
                       : NULL;
  if (w == NULL && total > 0 &&
      record_spilled(agent, r, kind, task, s, keep, len) == 0)
    goto counted;
  /* No block: a long detail is cut to fit half the ring rather than never
   * fitting. */
  for (int i = 2; i >= 0 && total > room; i--) {
    if (len[i] == 0)
      continue;
    size_t others = total - len[i];
    size_t fit = others >= room ? 0 : room - others;
    if (fit <= ELLIPSIS_BYTES) {
      len[i] = keep[i] = 0;
    } else {
      keep[i] = cut_keep(s[i], fit);
      len[i] = keep[i] + ELLIPSIS_BYTES;
    }
    cut[i] = true;
    total = others + len[i];
  }
  n = 1 + (total + RING_SLOT_BYTES - 1) / RING_SLOT_BYTES;
  if (w == NULL && (total > room || (w = reserve(agent, r, n)) == NULL))
    return drop(agent, r);
  uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  strings_head(w, kind, task, len, n);
  put_strings(put_ring, r, (head + 1) * RING_SLOT_BYTES, s, keep, len);
  commit(r, n);
counted:
  if (kind != PROTO_EV_LINK)
    own_add(&r->closed, 1);
  uint64_t cuts = (uint64_t)cut[0] + cut[1] + cut[2];
  if (cuts > 0)
    COUNT(agent, r, cut, cuts);
  return 0;
}

int tw_task_fail(tw_agent *agent, tw_id task, const char *error_type,
                 const char *message, const char *detail) {
  if (agent == NULL || task == 0)
    return TW_EINVAL;
  if (OFF(agent))
    return 0;
  const char *s[3] = {error_type, message, detail};
  const size_t max[3] = {LIMIT_ERROR_TYPE, LIMIT_ERROR_MESSAGE,
                         LIMIT_ERROR_DETAIL};
  return record_strings(agent, PROTO_EV_FAIL, task, s, max);
}

int tw_task_drop(tw_agent *agent, tw_id task, const char *reason) {
  if (agent == NULL || task == 0)
    return TW_EINVAL;
  if (OFF(agent))
    return 0;
  const char *s[3] = {reason, NULL, NULL};
  const size_t max[3] = {LIMIT_DROP_REASON, 0, 0};
  return record_strings(agent, PROTO_EV_DROP, task, s, max);
}

int tw_batch_link(tw_agent *agent, tw_id batch, const char *traceparent) {
  if (agent == NULL || batch == 0 || traceparent == NULL)
    return TW_EINVAL;
  if (OFF(agent))
    return 0;
  const char *s[3] = {traceparent, NULL, NULL};
  const size_t max[3] = {PROTO_LINK_MAX, 0, 0};
  return record_strings(agent, PROTO_EV_LINK, batch, s, max);
}

/* The child's rings are empty from here on, and their slot pages are
 * wiped (or shared copy-on-write): the forking thread's own rings are
 * faulted in again now, the others when a thread adopts them. */
void tw__record_fork_child(tw_agent *agent) {
  uintptr_t me = (uintptr_t)&tls;
  tls.thread = (uint64_t)gettid();
  for (ring *r = atomic_load(&agent->rings); r != NULL; r = r->next) {
    r->slots_cold = true;
    if (atomic_load(&r->owner) != me)
      atomic_store(&r->owner, 0);
    else
      slots_fault_in(r);
    uint64_t head = atomic_load(&r->head);
    atomic_store(&r->tail, head);
    r->cached_tail = head;
    r->soft_fill = tw__pace_nudge_mark(r->mask + 1);
    r->flush_mark = head;
    atomic_store(&r->recorded, 0);
    atomic_store(&r->dropped, 0);
    atomic_store(&r->cut, 0);
    atomic_store(&r->renamed, 0);
    atomic_store(&r->refused_batches, 0);
    atomic_store(&r->refused_tasks, 0);
    for (int i = 0; i < REFUSED_WHY_COUNT; i++)
      atomic_store(&r->refused_by[i], 0);
    atomic_store(&r->opened, 0);
    atomic_store(&r->closed, 0);
    atomic_store(&r->pool_in, 0);
    atomic_store(&r->pool_out, 0);
    r->admit_base = 0;
    r->admit_allow = 0;
  }
  atomic_store(&agent->pool_in_unbound, 0);
  atomic_store(&agent->pool_out_unbound, 0);
  atomic_store(&agent->dropped_unbound, 0);
  atomic_store(&agent->cut_unbound, 0);
  atomic_store(&agent->renamed_unbound, 0);
  atomic_store(&agent->refused_batches_unbound, 0);
  atomic_store(&agent->refused_tasks_unbound, 0);
  for (int i = 0; i < REFUSED_WHY_COUNT; i++)
    atomic_store(&agent->refused_by_unbound[i], 0);
}

void tw__record_free_rings(tw_agent *agent) {
  ring *r = atomic_load(&agent->rings);
  while (r != NULL) {
    ring *next = r->next;
    tw__agent_release(agent, r->bytes);
    atomic_fetch_sub(&agent->ring_reserved, r->bytes);
    munmap(r->slots, slots_bytes(r));
    free(r);
    r = next;
  }
  atomic_store(&agent->rings, NULL);
}

uint64_t tw__record_dropped_total(tw_agent *agent) {
  uint64_t n =
      atomic_load_explicit(&agent->dropped_unbound, memory_order_relaxed);
  for (ring *r = atomic_load(&agent->rings); r != NULL; r = r->next)
    n += atomic_load_explicit(&r->dropped, memory_order_relaxed);
  return n;
}

void tw__record_cuts(tw_agent *agent, uint64_t *cut, uint64_t *renamed) {
  *cut = atomic_load_explicit(&agent->cut_unbound, memory_order_relaxed);
  *renamed =
      atomic_load_explicit(&agent->renamed_unbound, memory_order_relaxed);
  for (ring *r = atomic_load(&agent->rings); r != NULL; r = r->next) {
    *cut += atomic_load_explicit(&r->cut, memory_order_relaxed);
    *renamed += atomic_load_explicit(&r->renamed, memory_order_relaxed);
  }
}

void tw__record_refused(tw_agent *agent, uint64_t *batches, uint64_t *tasks) {
  *batches = atomic_load_explicit(&agent->refused_batches_unbound,
                                  memory_order_relaxed);
  *tasks =
      atomic_load_explicit(&agent->refused_tasks_unbound, memory_order_relaxed);
  for (ring *r = atomic_load(&agent->rings); r != NULL; r = r->next) {
    *batches += atomic_load_explicit(&r->refused_batches, memory_order_relaxed);
    *tasks += atomic_load_explicit(&r->refused_tasks, memory_order_relaxed);
  }
}

uint64_t tw__record_recorded_total(tw_agent *agent) {
  uint64_t n = 0;
  for (ring *r = atomic_load(&agent->rings); r != NULL; r = r->next)
    n += atomic_load_explicit(&r->recorded, memory_order_relaxed);
  return n;
}

void tw__record_refused_why(tw_agent *agent,
                            uint64_t out[REFUSED_WHY_COUNT]) {
  for (int i = 0; i < REFUSED_WHY_COUNT; i++) {
    out[i] = atomic_load_explicit(&agent->refused_by_unbound[i],
                                  memory_order_relaxed);
    for (ring *r = atomic_load(&agent->rings); r != NULL; r = r->next)
      out[i] += atomic_load_explicit(&r->refused_by[i], memory_order_relaxed);
  }
}
