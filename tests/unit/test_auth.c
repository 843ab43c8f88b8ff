/*
 * test_auth - the token file (formats, refusals with their line, services
 * per token) and the check of an instance's proof (auth.h), against
 * signatures made with libcrypto as the agent makes them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "auth.h"

#define S(text) ((proto_str){(text), sizeof(text) - 1})

static token_table *parse(const char *text, char *err, size_t len) {
  return auth_tokens_parse(text, strlen(text), "tokens.txt", err, len);
}

static int find(const token_table *t, proto_str token) {
  uint8_t digest[AUTH_DIGEST_SIZE];
  return auth_token_find(t, token, digest);
}

/* A file of one bare token (the format before services) still reads. */
static void bare_token_speaks_for_any_service(void **state) {
  (void)state;
  char err[256];
  token_table *t = parse("s3cret\n", err, sizeof(err));
  assert_non_null(t);
  assert_int_equal(auth_tokens_count(t), 1);
  int e = find(t, S("s3cret"));
  assert_int_equal(e, 0);
  assert_true(auth_token_allows(t, e, S("anything")));
  assert_int_equal(find(t, S("s3cre")), -1);
  assert_int_equal(find(t, S("s3cret2")), -1);
  assert_int_equal(find(t, S("")), -1);
  auth_tokens_free(t);
}

static void services_per_token(void **state) {
  (void)state;
  char err[256];
  token_table *t = parse("# token services\r\n"
                         "\n"
                         "  alpha\tapi  worker\r\n"
                         "beta *\n"
                         "gamma api *\n"
                         "delta",
                         err, sizeof(err));
  assert_non_null(t);
  assert_int_equal(auth_tokens_count(t), 4);
  int alpha = find(t, S("alpha"));
  assert_true(alpha >= 0);
  assert_true(auth_token_allows(t, alpha, S("api")));
  assert_true(auth_token_allows(t, alpha, S("worker")));
  assert_false(auth_token_allows(t, alpha, S("work")));
  assert_false(auth_token_allows(t, alpha, S("apiworker")));
  assert_false(auth_token_allows(t, alpha, S("")));
  assert_true(auth_token_allows(t, find(t, S("beta")), S("x")));
  assert_true(auth_token_allows(t, find(t, S("gamma")), S("y")));
  assert_true(auth_token_allows(t, find(t, S("delta")), S("z")));
  assert_int_equal(find(t, S("#")), -1);
  assert_false(auth_token_allows(t, -1, S("api")));
  auth_tokens_free(t);
}

/* Each refusal names the file and the line. */
static void refusals_name_the_line(void **state) {
  (void)state;
  char err[512], text[600];
  assert_null(parse("# only a comment\n\n", err, sizeof(err)));
  assert_string_equal(err, "token file tokens.txt holds no token");
  assert_null(parse("a\nb\na x\n", err, sizeof(err)));
  assert_string_equal(err,
                      "token file tokens.txt line 3: the same token twice");
  memset(text, 't', 257);
  strcpy(text + 257, " api\n");
  assert_null(parse(text, err, sizeof(err)));
  assert_string_equal(
      err, "token file tokens.txt line 1: token longer than 256 bytes");
  memset(text, 's', 3 + 257);
  memcpy(text, "ok ", 3);
  strcpy(text + 3 + 257, "\n");
  assert_null(parse(text, err, sizeof(err)));
  assert_string_equal(
      err, "token file tokens.txt line 1: service name longer than 256 bytes");
  memset(text, 't', 256);
  strcpy(text + 256, "\n");
  token_table *t = parse(text, err, sizeof(err));
  assert_non_null(t);
  auth_tokens_free(t);
  assert_null(auth_tokens_load("/nonexistent/tokens", err, sizeof(err)));
  assert_string_equal(
      err, "cannot read token file /nonexistent/tokens: No such file or "
           "directory");
}

/* ---- proofs -------------------------------------------------------------- */

typedef struct signer {
  EVP_PKEY *key;
  uint8_t public_key[PROTO_KEY_SIZE];
} signer;

static void signer_init(signer *s, uint8_t seed_byte) {
  uint8_t seed[32];
  size_t len = PROTO_KEY_SIZE;
  memset(seed, seed_byte, sizeof(seed));
  s->key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
  assert_non_null(s->key);
  assert_int_equal(EVP_PKEY_get_raw_public_key(s->key, s->public_key, &len), 1);
}

static void sign(const signer *s, const uint8_t *instance, const uint8_t *nonce,
                 uint8_t *out) {
  uint8_t message[PROTO_PROOF_MESSAGE_SIZE];
  size_t len = PROTO_SIGNATURE_SIZE;
  tw__proto_proof_message(message, instance, nonce);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->key), 1);
  assert_int_equal(EVP_DigestSign(ctx, out, &len, message, sizeof(message)), 1);
  EVP_MD_CTX_free(ctx);
}

static void proof_verifies_for_its_key_instance_and_nonce(void **state) {
  (void)state;
  signer a, b;
  uint8_t instance[PROTO_INSTANCE_SIZE], other[PROTO_INSTANCE_SIZE];
  uint8_t nonce[PROTO_NONCE_SIZE], nonce2[PROTO_NONCE_SIZE];
  uint8_t sig[PROTO_SIGNATURE_SIZE];
  signer_init(&a, 1);
  signer_init(&b, 2);
  memset(instance, 7, sizeof(instance));
  memset(other, 8, sizeof(other));
  auth_nonce(nonce);
  auth_nonce(nonce2);
  assert_memory_not_equal(nonce, nonce2, sizeof(nonce));
  sign(&a, instance, nonce, sig);
  proto_str s = {(const char *)sig, sizeof(sig)};
  assert_true(auth_verify(a.public_key, instance, nonce, s));
  assert_false(auth_verify(b.public_key, instance, nonce, s));
  assert_false(auth_verify(a.public_key, other, nonce, s));
  assert_false(auth_verify(a.public_key, instance, nonce2, s));
  proto_str shorter = {(const char *)sig, sizeof(sig) - 1};
  assert_false(auth_verify(a.public_key, instance, nonce, shorter));
  sig[10] ^= 1;
  assert_false(auth_verify(a.public_key, instance, nonce, s));
  EVP_PKEY_free(a.key);
  EVP_PKEY_free(b.key);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bare_token_speaks_for_any_service),
      cmocka_unit_test(services_per_token),
      cmocka_unit_test(refusals_name_the_line),
      cmocka_unit_test(proof_verifies_for_its_key_instance_and_nonce),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
