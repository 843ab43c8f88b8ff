/*
 * runner - the batch runner: Starlette/FastAPI BackgroundTasks on libuv.
 *
 * A batch is the list of tasks added while one request was handled. Run, it
 * executes them one after another in the order they were added: a sync task
 * on the libuv thread pool (uv_queue_work), an async task on the loop, which
 * completes through tw_task_done(). The first failure ends the batch: every
 * later task is recorded as skipped, naming the failed task as the cause,
 * and the done callback gets the failed position. A batch freed without
 * being run records each of its tasks as dropped. Every event goes through
 * the low-level trace calls, so the runner needs nothing from the agent
 * that a server with its own executor would not have.
 *
 * Only the loop thread touches a batch, except the task being run by the
 * thread pool, which touches its own tw_task until its after-work callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "agent_internal.h"

struct tw_task {
  tw_batch *batch;
  tw_id id;
  uint32_t position;
  bool async;
  bool done; /* async: tw_task_done() was called */
  tw_sync_fn sync_fn;
  tw_async_fn async_fn;
  void *arg;
  tw_free_fn free_arg;
  int status;
  char *error_type;
  char *message;
  char *detail;
  uv_work_t work;
};

struct tw_batch {
  tw_agent *agent;
  uv_loop_t *loop;
  tw_id id;
  tw_task **tasks;
  uint32_t count;
  uint32_t cap;
  uint32_t current;
  bool running;
  bool in_call; /* the current async task's function is on the stack */
  tw_batch_done_cb cb;
  void *data;
};

static void run_next(tw_batch *b);

int tw_batch_new(tw_agent *agent, struct uv_loop_s *loop, const char *label,
                 tw_batch **out) {
  if (agent == NULL || loop == NULL || out == NULL)
    return TW_EINVAL;
  tw_batch *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return TW_ENOMEM;
  b->agent = agent;
  b->loop = loop;
  /* A full buffer is not the batch's problem: the drop is counted and the
   * batch runs all the same. */
  tw_batch_begin(agent, label, &b->id);
  *out = b;
  return 0;
}

static int add_task(tw_batch *b, const char *name, tw_sync_fn sync_fn,
                    tw_async_fn async_fn, void *arg, tw_free_fn free_arg) {
  bool async = async_fn != NULL;
  if (b == NULL || name == NULL || (sync_fn == NULL && async_fn == NULL))
    return TW_EINVAL;
  if (b->running)
    return TW_ESTATE;
  if (b->count == b->cap) {
    uint32_t cap = b->cap ? b->cap * 2 : 4;
    tw_task **tasks = realloc(b->tasks, cap * sizeof(*tasks));
    if (tasks == NULL)
      return TW_ENOMEM;
    b->tasks = tasks;
    b->cap = cap;
  }
  tw_task *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return TW_ENOMEM;
  t->batch = b;
  t->position = b->count;
  t->async = async;
  t->sync_fn = sync_fn;
  t->async_fn = async_fn;
  t->arg = arg;
  t->free_arg = free_arg;
  tw_task_enqueue(b->agent, b->id, t->position, name,
                  async ? TW_MODE_LOOP : TW_MODE_THREADPOOL, &t->id);
  b->tasks[b->count++] = t;
  return 0;
}

int tw_batch_add(tw_batch *batch, const char *name, tw_sync_fn fn, void *arg,
                 tw_free_fn free_arg) {
  return add_task(batch, name, fn, NULL, arg, free_arg);
}

int tw_batch_add_async(tw_batch *batch, const char *name, tw_async_fn fn,
                       void *arg, tw_free_fn free_arg) {
  return add_task(batch, name, NULL, fn, arg, free_arg);
}

static void batch_destroy(tw_batch *b) {
  for (uint32_t i = 0; i < b->count; i++) {
    tw_task *t = b->tasks[i];
    if (t->free_arg != NULL)
      t->free_arg(t->arg);
    free(t->error_type);
    free(t->message);
    free(t->detail);
    free(t);
  }
  free(b->tasks);
  free(b);
}

static void finish_batch(tw_batch *b, int failed) {
  if (b->cb != NULL)
    b->cb(b->data, failed);
  batch_destroy(b);
}

/* The task at b->current failed: skip the rest, report, free. */
static void fail_batch(tw_batch *b) {
  tw_id cause = b->tasks[b->current]->id;
  for (uint32_t i = b->current + 1; i < b->count; i++) {
    tw_task_skip(b->agent, b->tasks[i]->id, cause);
    if (!b->tasks[i]->async)
      tw__record_pool_out(b->agent, b->tasks[i]->id);
  }
  finish_batch(b, (int)b->current);
}

static void record_result(tw_task *t) {
  tw_agent *agent = t->batch->agent;
  if (t->status == 0) {
    tw_task_finish(agent, t->id);
    return;
  }
  char generic[64];
  const char *message = t->message;
  if (t->message == NULL && t->error_type == NULL) {
    snprintf(generic, sizeof(generic), "task returned status %d", t->status);
    message = generic;
  }
  tw_task_fail(agent, t->id, t->error_type ? t->error_type : "error", message,
               t->detail);
}

static void work_cb(uv_work_t *req) {
  tw_task *t = req->data;
  tw_agent *agent = t->batch->agent;
  tw_task_start(agent, t->id);
  t->status = t->sync_fn(t, t->arg);
  record_result(t);
  tw__record_pool_out(agent, t->id);
}

static void after_work_cb(uv_work_t *req, int status) {
  tw_task *t = req->data;
  tw_batch *b = t->batch;
  (void)status; /* the runner never cancels its work */
  if (t->status != 0) {
    fail_batch(b);
    return;
  }
  b->current++;
  run_next(b);
}

static void run_next(tw_batch *b) {
  while (b->current < b->count) {
    tw_task *t = b->tasks[b->current];
    if (!t->async) {
      t->work.data = t;
      if (uv_queue_work(b->loop, &t->work, work_cb, after_work_cb) == 0)
        return;
      t->status = TW_EUV;
      tw_task_set_error(t, "TW_EUV", "uv_queue_work failed", NULL);
      record_result(t);
      tw__record_pool_out(b->agent, t->id);
      fail_batch(b);
      return;
    }
    tw_task_start(b->agent, t->id);
    b->in_call = true;
    t->async_fn(t, b->loop, t->arg);
    b->in_call = false;
    if (!t->done)
      return; /* tw_task_done() continues the batch later */
    if (t->status != 0) {
      fail_batch(b);
      return;
    }
    b->current++;
  }
  finish_batch(b, -1);
}

void tw_task_done(tw_task *task, int status) {
  if (task == NULL || !task->async || task->done)
    return;
  tw_batch *b = task->batch;
  task->done = true;
  task->status = status;
  record_result(task);
  if (b->in_call)
    return; /* run_next() is below us on the stack and carries on */
  if (status != 0) {
    fail_batch(b);
    return;
  }
  b->current++;
  run_next(b);
}

int tw_batch_run(tw_batch *batch, tw_batch_done_cb cb, void *data) {
  if (batch == NULL)
    return TW_EINVAL;
  if (batch->running)
    return TW_ESTATE;
  batch->running = true;
  batch->cb = cb;
  batch->data = data;
  uint64_t sync = 0;
  for (uint32_t i = 0; i < batch->count; i++)
    sync += !batch->tasks[i]->async &&
            !(batch->tasks[i]->id & TW_ID_REFUSED);
  tw__record_pool_in(batch->agent, batch->id, sync);
  run_next(batch);
  return 0;
}

void tw_batch_drop(tw_batch *batch, const char *reason) {
  if (batch == NULL || batch->running)
    return;
  for (uint32_t i = 0; i < batch->count; i++)
    tw_task_drop(batch->agent, batch->tasks[i]->id,
                 reason != NULL ? reason : "not run");
  batch_destroy(batch);
}

void tw_batch_free(tw_batch *batch) {
  tw_batch_drop(batch, NULL);
}

static char *copy_limited(const char *s, size_t max) {
  return s != NULL ? strndup(s, max) : NULL;
}

void tw_task_set_error(tw_task *task, const char *error_type,
                       const char *message, const char *detail) {
  if (task == NULL)
    return;
  free(task->error_type);
  free(task->message);
  free(task->detail);
  task->error_type = copy_limited(error_type, LIMIT_ERROR_TYPE);
  task->message = copy_limited(message, LIMIT_ERROR_MESSAGE);
  task->detail = copy_limited(detail, LIMIT_ERROR_DETAIL);
}

tw_id tw_task_id(const tw_task *task) {
  return task != NULL ? task->id : 0;
}

uint32_t tw_task_position(const tw_task *task) {
  return task != NULL ? task->position : 0;
}
