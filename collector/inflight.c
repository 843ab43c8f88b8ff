/*
 * inflight - the held set and its blob. See inflight.h.
 */
#include "inflight.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "held.h"
#include "xalloc.h"

void inflight_init(inflight *f) {
  memset(f, 0, sizeof(*f));
  u64map_init(&f->index);
}

void inflight_fini(inflight *f) {
  free(f->items);
  free(f->saved);
  free(f->touched);
  free(f->gone);
  u64map_fini(&f->index);
  memset(f, 0, sizeof(*f));
}

inflight_task *inflight_get(const inflight *f, int64_t id) {
  uintptr_t i = (uintptr_t)u64map_get(&f->index, (uint64_t)id);
  return i ? &f->items[i - 1] : NULL;
}

static void push_id(int64_t **ids, size_t *n, size_t *cap, int64_t id) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 256;
    *ids = xrealloc(*ids, *cap * sizeof(**ids));
  }
  (*ids)[(*n)++] = id;
}

void inflight_touch(inflight *f, inflight_task *t) {
  if (!t->touched) {
    t->touched = 1;
    push_id(&f->touched, &f->ntouched, &f->captouched, t->id);
  }
  f->changed = 1;
}

inflight_task *inflight_add(inflight *f, int64_t id) {
  if (f->n == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 256;
    f->items = xrealloc(f->items, f->cap * sizeof(*f->items));
  }
  inflight_task *t = &f->items[f->n++];
  memset(t, 0, sizeof(*t));
  t->id = id;
  u64map_put(&f->index, (uint64_t)id, (void *)(uintptr_t)f->n);
  inflight_touch(f, t);
  return t;
}

void inflight_remove(inflight *f, inflight_task *t) {
  size_t i = (size_t)(t - f->items);
  assert(i < f->n);
  if (t->logged)
    push_id(&f->gone, &f->ngone, &f->capgone, t->id);
  u64map_del(&f->index, (uint64_t)t->id);
  if (i != f->n - 1) {
    f->items[i] = f->items[f->n - 1];
    u64map_put(&f->index, (uint64_t)f->items[i].id, (void *)(uintptr_t)(i + 1));
  }
  f->n--;
  f->changed = 1;
}

void inflight_save(inflight *f) {
  if (f->capsaved < f->n) {
    f->capsaved = f->cap;
    f->saved = xrealloc(f->saved, f->capsaved * sizeof(*f->saved));
  }
  if (f->n)
    memcpy(f->saved, f->items, f->n * sizeof(*f->items));
  f->nsaved = f->n;
  f->changed = 0;
}

void inflight_restore(inflight *f) {
  if (f->cap < f->nsaved) {
    f->cap = f->nsaved;
    f->items = xrealloc(f->items, f->cap * sizeof(*f->items));
  }
  if (f->nsaved)
    memcpy(f->items, f->saved, f->nsaved * sizeof(*f->items));
  f->n = f->nsaved;
  u64map_clear(&f->index);
  for (size_t i = 0; i < f->n; i++)
    u64map_put(&f->index, (uint64_t)f->items[i].id, (void *)(uintptr_t)(i + 1));
  f->changed = 0;
  f->ntouched = f->ngone = 0;
}

/* The columns of a held task between the set and the blob: the one place
 * that names them both ways (store.c does the same between the set and a
 * task's row). */
static void blob_from_inflight(held_task *h, const inflight_task *t) {
  h->id = t->id;
  h->agent = t->agent;
  h->batch = t->batch;
  h->thread = t->thread;
  h->enqueued_at = t->enqueued_at;
  h->started_at = t->started_at;
  h->position = t->position;
  h->mode = t->mode;
  h->status = t->status;
  h->have = t->have;
  h->name = t->name->text;
  h->name_len = t->name->len;
}

void inflight_from_blob(inflight_task *t, const held_task *h,
                        const istr *name) {
  memset(t, 0, sizeof(*t));
  t->id = h->id;
  t->agent = h->agent;
  t->batch = h->batch;
  t->thread = h->thread;
  t->enqueued_at = h->enqueued_at;
  t->started_at = h->started_at;
  t->position = h->position;
  t->mode = h->mode;
  t->status = h->status;
  t->have = h->have;
  t->name = name;
}

size_t inflight_whole_size(const inflight *f) {
  size_t need = HELD_HEADER + held_gone_size(0);
  for (size_t i = 0; i < f->n; i++)
    need += held_task_size(f->items[i].name->len);
  return need;
}

size_t inflight_encode(inflight *f, int whole, unsigned char **buf,
                       size_t *cap) {
  size_t need = HELD_HEADER + held_gone_size(whole ? 0 : f->ngone);
  uint32_t count = 0;
  if (whole) {
    need = inflight_whole_size(f);
    count = (uint32_t)f->n;
  } else {
    for (size_t i = 0; i < f->ntouched; i++) {
      inflight_task *t = inflight_get(f, f->touched[i]);
      if (t && t->touched) {
        need += held_task_size(t->name->len);
        count++;
        t->touched = 2; /* counted once */
      }
    }
  }
  if (*cap < need) {
    *cap = need + need / 4;
    *buf = xrealloc(*buf, *cap);
  }
  unsigned char *p = held_put_header(*buf, count);
  held_task h;
  if (whole) {
    for (size_t i = 0; i < f->n; i++) {
      blob_from_inflight(&h, &f->items[i]);
      p = held_put(p, &h);
      f->items[i].logged = 1;
      f->items[i].touched = 0;
    }
  } else {
    for (size_t i = 0; i < f->ntouched; i++) {
      inflight_task *t = inflight_get(f, f->touched[i]);
      if (t && t->touched == 2) {
        blob_from_inflight(&h, t);
        p = held_put(p, &h);
        t->logged = 1;
        t->touched = 0;
      }
    }
  }
  p = held_put_gone(p, f->gone, whole ? 0 : f->ngone);
  assert((size_t)(p - *buf) == need);
  f->ntouched = f->ngone = 0;
  return need;
}
