/*
 * fuzz_tokens - libFuzzer target for the collector's token file parser
 * (--token-file, auth.h): for any bytes, auth_tokens_parse() either refuses
 * with a one-line reason or gives a table of at least one token in which
 * the first token of the text is found, and lookups of any bytes are safe.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

/* The first field of the first line that is not blank or a comment. */
static proto_str first_token(const char *p, size_t n) {
  proto_str none = {NULL, 0};
  size_t i = 0;
  while (i < n) {
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
      i++;
    size_t start = i;
    while (i < n && p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
      i++;
    if (i > start && p[start] != '#') {
      proto_str s = {p + start, (uint32_t)(i - start)};
      return s;
    }
    while (i < n && p[i] != '\n' && p[i] != '\r')
      i++;
    i++;
  }
  return none;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512];
  uint8_t digest[AUTH_DIGEST_SIZE];
  const char *text = (const char *)data;
  err[0] = '\0';
  token_table *t = auth_tokens_parse(text, size, "fuzz", err, sizeof(err));
  if (t == NULL) {
    if (err[0] == '\0' || strchr(err, '\n') != NULL)
      abort();
    return 0;
  }
  proto_str first = first_token(text, size);
  if (auth_tokens_count(t) == 0 || first.len == 0 ||
      auth_token_find(t, first, digest) != 0)
    abort();
  proto_str any = {text, (uint32_t)(size < 300 ? size : 300)};
  int entry = auth_token_find(t, any, digest);
  (void)auth_token_allows(t, entry, any);
  auth_tokens_free(t);
  return 0;
}
