/*
 * proof - Ed25519 keys of instances and their signatures, via libcrypto.
 */
#include "proof.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

int tw__proof_key(proof_key *k, const uint8_t instance[PROTO_INSTANCE_SIZE]) {
  if (k->ready && memcmp(k->instance, instance, PROTO_INSTANCE_SIZE) == 0)
    return 0;
  tw__proof_forget(k);
  size_t len = PROTO_KEY_SIZE;
  EVP_PKEY *pkey = NULL;
  int ok =
      RAND_bytes(k->secret, sizeof(k->secret)) == 1 &&
      (pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, k->secret,
                                           sizeof(k->secret))) != NULL &&
      EVP_PKEY_get_raw_public_key(pkey, k->public_key, &len) == 1 &&
      len == PROTO_KEY_SIZE;
  EVP_PKEY_free(pkey);
  ERR_clear_error();
  if (!ok) {
    tw__proof_forget(k);
    return -1;
  }
  memcpy(k->instance, instance, PROTO_INSTANCE_SIZE);
  k->ready = true;
  return 0;
}

int tw__proof_sign(const proof_key *k, const uint8_t nonce[PROTO_NONCE_SIZE],
                   uint8_t out[PROTO_SIGNATURE_SIZE]) {
  uint8_t message[PROTO_PROOF_MESSAGE_SIZE];
  size_t len = PROTO_SIGNATURE_SIZE;
  int ok = 0;
  if (!k->ready)
    return -1;
  tw__proto_proof_message(message, k->instance, nonce);
  EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
                                                k->secret, sizeof(k->secret));
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (pkey != NULL && ctx != NULL &&
      EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) == 1)
    ok = EVP_DigestSign(ctx, out, &len, message, sizeof(message)) == 1 &&
         len == PROTO_SIGNATURE_SIZE;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  ERR_clear_error();
  return ok ? 0 : -1;
}

void tw__proof_forget(proof_key *k) {
  OPENSSL_cleanse(k->secret, sizeof(k->secret));
  k->ready = false;
}
