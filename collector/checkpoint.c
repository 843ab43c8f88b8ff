/*
 * checkpoint - a condition variable between the writer's WAL hook and
 * the checkpointing thread.
 */
#include "checkpoint.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "xalloc.h"

/* The writer checkpoints itself past this many thresholds of WAL. */
#define FALLBACK_FACTOR 4

struct checkpointer {
  sqlite3 *writer_db;
  sqlite3 *db;
  int threshold;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  int pages; /* WAL size the writer last reported */
  int stopping;
};

static int on_wal(void *arg, sqlite3 *db, const char *name, int pages) {
  checkpointer *c = arg;
  (void)name;
  if (pages >= c->threshold * FALLBACK_FACTOR) {
    sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
  }
  if (pages >= c->threshold) {
    pthread_mutex_lock(&c->lock);
    c->pages = pages;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
  }
  return SQLITE_OK;
}

static void *thread_main(void *arg) {
  checkpointer *c = arg;
  pthread_setname_np(pthread_self(), "tw-checkpoint");
  pthread_mutex_lock(&c->lock);
  while (!c->stopping) {
    if (c->pages < c->threshold) {
      pthread_cond_wait(&c->wake, &c->lock);
      continue;
    }
    c->pages = 0;
    pthread_mutex_unlock(&c->lock);
    int log_frames = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                       &log_frames, &done);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_INTERRUPT)
      log_msg(LOG_WARN, "checkpoint failed error=\"%s\"",
              sqlite3_errmsg(c->db));
    pthread_mutex_lock(&c->lock);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

checkpointer *checkpointer_start(sqlite3 *writer_db, const char *path,
                                 int threshold_pages) {
  checkpointer *c = xcalloc(1, sizeof(*c));
  c->writer_db = writer_db;
  c->threshold = threshold_pages;
  if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                      NULL) != SQLITE_OK) {
    sqlite3_close(c->db);
    free(c);
    return NULL;
  }
  sqlite3_busy_timeout(c->db, 1000);
  /* A connection that has not read the database yet does not know it is
   * in WAL mode, and sqlite3_wal_checkpoint_v2() then does nothing (it
   * reports a log of -1 frames). One read opens the WAL for good. */
  if (sqlite3_exec(c->db, "SELECT count(*) FROM sqlite_master", NULL, NULL,
                   NULL) != SQLITE_OK) {
    log_msg(LOG_WARN, "checkpointer disabled error=\"%s\"",
            sqlite3_errmsg(c->db));
    sqlite3_close(c->db);
    free(c);
    return NULL;
  }
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->wake, NULL);
  if (pthread_create(&c->thread, NULL, thread_main, c) != 0) {
    sqlite3_close(c->db);
    free(c);
    return NULL;
  }
  sqlite3_wal_hook(writer_db, on_wal, c);
  return c;
}

void checkpointer_stop(checkpointer *c) {
  if (c == NULL)
    return;
  sqlite3_wal_hook(c->writer_db, NULL, NULL);
  pthread_mutex_lock(&c->lock);
  c->stopping = 1;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
  /* A checkpoint under way is not waited for (the collector's stop is
   * bounded): it ends at its next page, and what it copied stays copied;
   * the next checkpoint goes on from there. */
  sqlite3_interrupt(c->db);
  pthread_join(c->thread, NULL);
  sqlite3_close(c->db);
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->wake);
  free(c);
}
