/*
 * auth - who may speak for what (docs/collector.md, "Authentication"):
 * the token file, with the services each token may speak for, and the
 * proof that a HELLO comes from the agent that owns its instance.
 *
 * The token file: one token per line, then, optionally, the services it
 * may speak for, separated by spaces or tabs; a token alone (or followed
 * by `*`) speaks for any service. Blank lines and lines starting with `#`
 * are ignored. Tokens are 1 to 256 bytes without spaces, services at most
 * 256 bytes. A file of one bare token - the format of earlier versions -
 * reads as before.
 *
 *     # token                        services
 *     9f2c0e3d7a1b4c85a2e6f0d1b3c4   api worker
 *     51d8a7c2e9f04b6b8e1a3d5c7f90   *
 *
 * Tokens are compared by their SHA-256 digests, in constant time over
 * every entry, so neither the time taken nor the order of the file tells
 * how much of a guess was right.
 *
 * Instance ownership: an agent of protocol version 2 sends the Ed25519
 * public key of its instance in HELLO; the collector answers CHALLENGE
 * with a random nonce, the agent signs it (tw__proto_proof_message()) and
 * the collector checks the signature before anything else happens. The
 * store keeps the public key, so whoever reads the store cannot speak for
 * an instance, and a nonce is never reused, so a recorded PROOF is worth
 * nothing.
 */
#ifndef TW_COLLECTOR_AUTH_H
#define TW_COLLECTOR_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define AUTH_DIGEST_SIZE 32

typedef struct token_table token_table;

/* Reads a token file. NULL with a one-line reason in err (the path and
 * the line: "tokens.txt line 3: token longer than 256 bytes"). */
token_table *auth_tokens_load(const char *path, char *err, size_t len);
/* The same for a file's text already in memory (size bytes, not
 * NUL-terminated); path names it in err. */
token_table *auth_tokens_parse(const char *text, size_t size, const char *path,
                               char *err, size_t len);
void auth_tokens_free(token_table *t);
/* Entries (tokens) in the table. */
size_t auth_tokens_count(const token_table *t);
/* The entry that holds this token, or -1. *digest gets the token's
 * SHA-256, a key for counting its agents that survives a reload. */
int auth_token_find(const token_table *t, proto_str token,
                    uint8_t digest[AUTH_DIGEST_SIZE]);
/* Whether entry may speak for service. */
int auth_token_allows(const token_table *t, int entry, proto_str service);

/* Fills out with random bytes for a CHALLENGE. */
void auth_nonce(uint8_t out[PROTO_NONCE_SIZE]);
/* Whether signature is key's Ed25519 signature of the proof message of
 * instance and nonce. */
int auth_verify(const uint8_t key[PROTO_KEY_SIZE],
                const uint8_t instance[PROTO_INSTANCE_SIZE],
                const uint8_t nonce[PROTO_NONCE_SIZE], proto_str signature);

#endif /* TW_COLLECTOR_AUTH_H */
