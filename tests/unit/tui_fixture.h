/*
 * tui_fixture - a small store with fixed times for the dashboard tests:
 * two agents, seven /send-notification batches (one failed with the rest
 * skipped, one running, one queued), and task strings carrying hostile
 * bytes (CSI, OSC 52, C1, CR, bidi, invalid UTF-8) and CJK text.
 */
#ifndef TW_TUI_FIXTURE_H
#define TW_TUI_FIXTURE_H

#include <stdint.h>

/* 2026-11-22T12:00:00Z, the fixture's "now". */
#define FIXTURE_NOW INT64_C(1795348800000000)

/* Creates the store at path; returns 0 or -1. last_event_ago_us sets how
 * long before FIXTURE_NOW the newest event was (STALE beyond 10 s). */
int fixture_build(const char *path, int64_t last_event_ago_us);

#endif
