/*
 * conn_tls - the agent's side of a tls:// connection (docs/tls.md): an
 * OpenSSL client session over memory BIOs, so the sender's libuv loop
 * moves the bytes and nothing here touches a socket or blocks. It runs on
 * the sender's thread only, never on a recording path.
 *
 * The context verifies the collector's certificate against the system's
 * trust store or TASKWATCH_TLS_CA (tw_config.tls_ca) and its host name
 * against the URL's host; with TASKWATCH_TLS_CERT and TASKWATCH_TLS_KEY the
 * agent presents a certificate of its own (mutual TLS). TLS 1.2 at least,
 * 1.3 preferred.
 */
#ifndef TW_AGENT_CONN_TLS_H
#define TW_AGENT_CONN_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

typedef struct conn_tls conn_tls;

/* The context of a sender: NULL with a one-line reason in err when a file
 * cannot be loaded ("cannot load TASKWATCH_TLS_CA /x.pem: ..."). */
SSL_CTX *tw__conn_tls_context(const char *ca, const char *cert, const char *key,
                              char *err, size_t len);

/* A session to host (the URL's: checked against the certificate, and sent
 * as SNI when it is a name). NULL when out of memory. */
conn_tls *tw__conn_tls_new(SSL_CTX *ctx, const char *host);
void tw__conn_tls_free(conn_tls *t);

/* Bytes read from the socket. 0, or -1 when out of memory. */
int tw__conn_tls_feed(conn_tls *t, const uint8_t *p, size_t n);
/* Drives the handshake: 1 done, 0 more bytes needed, -1 failed
 * (tw__conn_tls_error()). */
int tw__conn_tls_handshake(conn_tls *t);
/* Plaintext into out: a count > 0, 0 when more bytes are needed, -1 when
 * the session failed (tw__conn_tls_error()) or the collector closed it
 * cleanly (tw__conn_tls_error() is then ""). */
int tw__conn_tls_read(conn_tls *t, uint8_t *out, size_t cap);
/* Encrypts n bytes. 0, or -1 (tw__conn_tls_error()). */
int tw__conn_tls_write(conn_tls *t, const uint8_t *p, size_t n);
/* What the session has for the socket, moved into a malloc'd buffer
 * (*out, freed by the caller): its length, 0 when nothing, and -1 when out
 * of memory. */
long tw__conn_tls_output(conn_tls *t, uint8_t **out);
/* Why the session failed ("certificate verify failed (Hostname
 * mismatch)"); "" when it did not, or was closed cleanly. */
const char *tw__conn_tls_error(const conn_tls *t);

#endif /* TW_AGENT_CONN_TLS_H */
