/*
 * size - byte counts as people write them: "8388608", "8MiB", "512k",
 * "8MB". Shared by the agent (TASKWATCH_BUFFER_BYTES) and the tools, so it
 * carries the library's internal prefix.
 *
 * Units follow GNU coreutils: a bare multiplier letter (k, M, G, T) and the
 * IEC forms (KiB, MiB, GiB, TiB) are powers of 1024; kB, MB, GB, TB are
 * powers of 1000; B or nothing is bytes. Letters may be of either case.
 * Only whole numbers: "1.5M" is refused rather than rounded.
 */
#ifndef TW_SIZE_H
#define TW_SIZE_H

#include <stdint.h>

/* Parses text into *out. Returns 0, or -1 on bad syntax, an unknown unit,
 * or a value above max (*out is then unchanged). Thread-safe. */
int tw__size_parse(const char *text, uint64_t max, uint64_t *out);

#endif /* TW_SIZE_H */
