/*
 * proof - the agent's side of instance ownership (docs/protocol.md,
 * "Ownership"): every instance gets its own Ed25519 key, made on the
 * sender's thread the first time the instance says HELLO; the public half
 * goes in HELLO, the private half never leaves this process and signs the
 * collector's CHALLENGE. A collector that has seen the key refuses any
 * other HELLO for the instance, so knowing an instance id (from the store,
 * a log) is not enough to speak for it.
 *
 * Through OpenSSL's libcrypto, on the sender's thread only: never on a
 * recording path.
 */
#ifndef TW_AGENT_PROOF_H
#define TW_AGENT_PROOF_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

typedef struct proof_key {
  uint8_t instance[PROTO_INSTANCE_SIZE]; /* the instance the key is for */
  uint8_t secret[32];                    /* the Ed25519 private key (seed) */
  uint8_t public_key[PROTO_KEY_SIZE];
  bool ready;
} proof_key;

/* Makes k the key of instance: the one it holds when it is already that
 * instance's, a new one otherwise. Returns 0, or -1 when no key can be
 * made (no randomness, out of memory): the HELLO then carries none. */
int tw__proof_key(proof_key *k, const uint8_t instance[PROTO_INSTANCE_SIZE]);
/* Signs the proof of k's instance for a CHALLENGE's nonce:
 * PROTO_SIGNATURE_SIZE bytes into out. 0, or -1 (out of memory). */
int tw__proof_sign(const proof_key *k, const uint8_t nonce[PROTO_NONCE_SIZE],
                   uint8_t out[PROTO_SIGNATURE_SIZE]);
/* Forgets the key (wipes its secret). */
void tw__proof_forget(proof_key *k);

#endif /* TW_AGENT_PROOF_H */
