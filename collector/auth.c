/*
 * auth - the token table and Ed25519 checks, through OpenSSL (libcrypto).
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "xalloc.h"

/* A token file is a few lines; a bigger one is a mistake. */
#define TOKEN_FILE_MAX ((size_t)1 << 20)

typedef struct entry {
  uint8_t digest[AUTH_DIGEST_SIZE];
  int any; /* speaks for every service */
  char **services;
  size_t nservices;
} entry;

struct token_table {
  entry *entries;
  size_t n, cap;
};

static void digest_of(const void *p, size_t n, uint8_t out[AUTH_DIGEST_SIZE]) {
  unsigned int len = AUTH_DIGEST_SIZE;
  if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1)
    abort(); /* SHA-256 of memory fails only when memory does */
}

void auth_tokens_free(token_table *t) {
  if (t == NULL)
    return;
  for (size_t i = 0; i < t->n; i++) {
    for (size_t k = 0; k < t->entries[i].nservices; k++)
      free(t->entries[i].services[k]);
    free(t->entries[i].services);
  }
  free(t->entries);
  free(t);
}

size_t auth_tokens_count(const token_table *t) {
  return t->n;
}

/* The next field of a line (spaces and tabs separate them); NULL at the
 * end. *len gets its length. */
static const char *field(const char **p, const char *end, size_t *len) {
  const char *s = *p;
  while (s < end && (*s == ' ' || *s == '\t'))
    s++;
  const char *e = s;
  while (e < end && *e != ' ' && *e != '\t')
    e++;
  *p = e;
  *len = (size_t)(e - s);
  return e > s ? s : NULL;
}

/* One line of the file into t. Returns NULL or the reason it is wrong. */
static const char *parse_line(token_table *t, const char *p, const char *end) {
  size_t n;
  const char *token = field(&p, end, &n);
  if (token == NULL || *token == '#')
    return NULL;
  if (n > PROTO_IDENT_MAX)
    return "token longer than 256 bytes";
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 8;
    t->entries = xrealloc(t->entries, t->cap * sizeof(*t->entries));
  }
  entry *e = &t->entries[t->n];
  memset(e, 0, sizeof(*e));
  digest_of(token, n, e->digest);
  for (size_t i = 0; i < t->n; i++)
    if (CRYPTO_memcmp(t->entries[i].digest, e->digest, AUTH_DIGEST_SIZE) == 0)
      return "the same token twice";
  t->n++;
  const char *svc;
  int star = 0;
  while ((svc = field(&p, end, &n)) != NULL) {
    if (n > PROTO_IDENT_MAX)
      return "service name longer than 256 bytes";
    if (n == 1 && *svc == '*') {
      star = 1;
      continue;
    }
    e->services =
        xrealloc(e->services, (e->nservices + 1) * sizeof(*e->services));
    e->services[e->nservices++] = xstrndup(svc, n);
  }
  /* A token alone, or with `*` among its services, speaks for any. */
  e->any = star || e->nservices == 0;
  return NULL;
}

static char *read_file(const char *path, size_t *len, char *err, size_t elen) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    snprintf(err, elen, "cannot read token file %s: %s", path, strerror(errno));
    return NULL;
  }
  char *text = xmalloc(TOKEN_FILE_MAX + 1);
  size_t n = fread(text, 1, TOKEN_FILE_MAX + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || n > TOKEN_FILE_MAX) {
    snprintf(err, elen, "cannot read token file %s: %s", path,
             bad ? "read error" : "larger than 1 MiB");
    free(text);
    return NULL;
  }
  *len = n;
  return text;
}

token_table *auth_tokens_load(const char *path, char *err, size_t len) {
  size_t size;
  char *text = read_file(path, &size, err, len);
  if (text == NULL)
    return NULL;
  token_table *t = auth_tokens_parse(text, size, path, err, len);
  free(text);
  return t;
}

token_table *auth_tokens_parse(const char *text, size_t size, const char *path,
                               char *err, size_t len) {
  token_table *t = xcalloc(1, sizeof(*t));
  const char *p = text, *end = text + size;
  const char *why = NULL;
  int line = 0;
  while (p < end && why == NULL) {
    const char *eol = p;
    while (eol < end && *eol != '\n' && *eol != '\r')
      eol++;
    line++;
    why = parse_line(t, p, eol);
    if (eol < end && *eol == '\r' && eol + 1 < end && eol[1] == '\n')
      eol++;
    p = eol + 1;
  }
  if (why == NULL && t->n == 0) {
    snprintf(err, len, "token file %s holds no token", path);
    auth_tokens_free(t);
    return NULL;
  }
  if (why != NULL) {
    snprintf(err, len, "token file %s line %d: %s", path, line, why);
    auth_tokens_free(t);
    return NULL;
  }
  return t;
}

int auth_token_find(const token_table *t, proto_str token,
                    uint8_t digest[AUTH_DIGEST_SIZE]) {
  int found = -1;
  digest_of(token.ptr ? token.ptr : "", token.len, digest);
  /* Every entry is compared, whatever matched before. */
  for (size_t i = 0; i < t->n; i++) {
    int same =
        CRYPTO_memcmp(t->entries[i].digest, digest, AUTH_DIGEST_SIZE) == 0;
    found = same ? (int)i : found;
  }
  /* An empty token never matches: the file holds none. */
  return token.len > 0 ? found : -1;
}

int auth_token_allows(const token_table *t, int entry_index,
                      proto_str service) {
  if (entry_index < 0 || (size_t)entry_index >= t->n)
    return 0;
  const entry *e = &t->entries[entry_index];
  if (e->any)
    return 1;
  for (size_t i = 0; i < e->nservices; i++)
    if (strlen(e->services[i]) == service.len &&
        memcmp(e->services[i], service.ptr, service.len) == 0)
      return 1;
  return 0;
}

void auth_nonce(uint8_t out[PROTO_NONCE_SIZE]) {
  /* OpenSSL's DRBG, seeded from the kernel; it fails only when the
   * kernel's source does, and then no nonce is safe to send. */
  if (RAND_bytes(out, PROTO_NONCE_SIZE) != 1)
    abort();
}

int auth_verify(const uint8_t key[PROTO_KEY_SIZE],
                const uint8_t instance[PROTO_INSTANCE_SIZE],
                const uint8_t nonce[PROTO_NONCE_SIZE], proto_str signature) {
  uint8_t message[PROTO_PROOF_MESSAGE_SIZE];
  int ok = 0;
  if (signature.len != PROTO_SIGNATURE_SIZE)
    return 0;
  tw__proto_proof_message(message, instance, nonce);
  EVP_PKEY *pkey =
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, PROTO_KEY_SIZE);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (pkey != NULL && ctx != NULL &&
      EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1)
    ok = EVP_DigestVerify(ctx, (const unsigned char *)signature.ptr,
                          signature.len, message, sizeof(message)) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  ERR_clear_error();
  return ok;
}
