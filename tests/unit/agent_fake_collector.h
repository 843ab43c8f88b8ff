/*
 * agent_fake_collector - a small in-test collector for the agent's tests
 * and benchmark: a thread with a unix-socket listener that decodes what the
 * agent sends with common/proto.h, keeps it in memory, and acks. It can be
 * killed (connections dropped, unacked events forgotten, as a collector
 * killed with SIGKILL would) and restarted at the same path, and it can hold
 * its acks, so the tests observe the agent from outside, as the real
 * collector does, with no hooks in the agent.
 */
#ifndef TW_AGENT_FAKE_COLLECTOR_H
#define TW_AGENT_FAKE_COLLECTOR_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define FAKE_MAX_STRINGS 4096

typedef struct fake_event {
  uint64_t seq;
  uint8_t kind;
  uint8_t mode;
  uint32_t position;
  uint32_t string;
  int64_t time_ns;
  uint64_t task;
  uint64_t batch;
  uint64_t other;
  uint64_t other2;
  uint64_t dropped_batches, dropped_tasks; /* HEALTH, version 3 */
  char *text;    /* STRING text, FAIL type, DROP reason; NUL-terminated */
  char *message; /* FAIL */
  char *detail;  /* FAIL */
  size_t text_len, message_len, detail_len;
} fake_event;

typedef struct fake_instance {
  uint8_t id[PROTO_INSTANCE_SIZE];
  uint32_t pid;
  char service[257];
  uint64_t next_seq; /* committed: events 1 .. next_seq - 1 are kept */
  fake_event *events;
  size_t count;
  size_t cap;
  size_t committed; /* events[0 .. committed) are acked */
  bool ended;       /* GOODBYE received */
  bool forgotten;   /* fake_forget() lost it: a HELLO with its id is new */
  unsigned hellos;
  uint64_t duplicates; /* events received again (resends), ignored */
  uint64_t gaps;       /* frames that skipped sequence numbers */
  unsigned flushes;    /* FLUSH frames (version 5) */
  unsigned frames;     /* EVENTS frames that decoded */
  uint64_t flush_last_seq; /* the last FLUSH's last_seq */
  uint64_t flush_received; /* the events received when it came */
  char *strings[FAKE_MAX_STRINGS];
} fake_instance;

typedef struct fake_collector fake_collector;

/* Starts a collector on a fresh socket in a fresh temp directory. */
fake_collector *fake_start(void);
/* Called first on the collector's thread when set (a test that fails
 * allocations tells that thread from the agent's). */
extern void (*fake_thread_start)(void);
/* Stops it and frees everything, the temp directory included. */
void fake_free(fake_collector *fc);
/* "unix:/tmp/.../c.sock" */
const char *fake_url(const fake_collector *fc);
/* Closes the listener and every connection; forgets unacked events. */
void fake_kill(fake_collector *fc);
/* A SIGKILL that also loses the store: every instance known so far is
 * forgotten (kept for inspection), as if the database had been deleted. */
void fake_forget(fake_collector *fc);
/* Listens again at the same path, with the state that was acked. */
void fake_restart(fake_collector *fc);
/* While held, events are received but neither committed nor acked;
 * released, what was received is committed and acked at once, as a
 * collector that catches up does. */
void fake_hold_acks(fake_collector *fc, bool hold);
/* While reason is not NULL (copied), every HELLO is answered with an ERROR
 * frame saying it, and the connection is closed. */
void fake_refuse(fake_collector *fc, const char *reason);
/* WELCOME names this protocol version (0: PROTO_VERSION). */
void fake_welcome_version(fake_collector *fc, uint16_t version);
/* The hold_ms its acks advise from now on (0, the default: none). */
void fake_ack_hold(fake_collector *fc, uint32_t hold_ms);
/* Connections that the agent's side ended, since the start. Lock held. */
uint64_t fake_hangups(fake_collector *fc);

/* The state is shared with the collector thread: lock it to read. */
void fake_lock(fake_collector *fc);
void fake_unlock(fake_collector *fc);
size_t fake_instance_count(fake_collector *fc);
fake_instance *fake_instance_at(fake_collector *fc, size_t i);
/* Text of a string id of an instance, or NULL. Lock held. */
const char *fake_string(fake_collector *fc, size_t instance, uint32_t id);
/* Events received in total (committed or not), all instances. */
uint64_t fake_received(fake_collector *fc);

/* Waits (up to timeout_ms) until pred returns true; pred runs with the
 * lock held. Returns pred's last answer. */
bool fake_wait(fake_collector *fc, bool (*pred)(fake_collector *, void *),
               void *arg, int timeout_ms);

#endif /* TW_AGENT_FAKE_COLLECTOR_H */
