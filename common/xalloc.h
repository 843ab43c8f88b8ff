/*
 * xalloc - allocation for the collector and the tools, which may abort when
 * memory runs out (the agent never does; it has its own error paths).
 */
#ifndef TW_XALLOC_H
#define TW_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Exactly n bytes of s, NUL bytes included, plus a terminating NUL. */
char *xmemdup(const void *s, size_t n);

#endif /* TW_XALLOC_H */
