/*
 * tls - the collector's TLS (docs/tls.md): a server context built from
 * --tls-cert, --tls-key and --tls-client-ca, reloadable on SIGHUP, and per
 * connection an OpenSSL session driven through memory BIOs, so the event
 * loop moves the bytes and nothing here touches a socket or blocks.
 *
 * A connection's life: the loop feeds what it read from the socket
 * (tls_conn_feed), takes plaintext out (tls_conn_read, which also drives
 * the handshake), encrypts what it sends (tls_conn_write), and after each
 * of these writes to the socket what the session has for the peer
 * (tls_conn_output): handshake messages, records, alerts.
 *
 * TLS 1.2 at least; 1.3 when the peer speaks it (OpenSSL's default
 * preference). With a client CA the peer must present a certificate it
 * signed (mutual TLS); its subject is the agent's authenticated identity.
 */
#ifndef TW_COLLECTOR_TLS_H
#define TW_COLLECTOR_TLS_H

#include <stddef.h>
#include <stdint.h>

/* A client certificate's subject, as text (RFC 2253), at most this long;
 * a longer one fails the handshake. */
#define TLS_SUBJECT_MAX 1024

typedef struct tls_server tls_server;
typedef struct tls_conn tls_conn;

typedef struct tls_files {
  const char *cert;      /* PEM: the certificate, then its chain */
  const char *key;       /* PEM: its private key */
  const char *client_ca; /* PEM: CAs of client certificates; NULL: none */
} tls_files;

/*
 * Loads the files (copying their paths for tls_server_reload()). Returns
 * NULL with a one-line reason in err when one cannot be read or they do
 * not fit together ("cannot load --tls-key /etc/k.pem: ...").
 */
tls_server *tls_server_new(const tls_files *files, char *err, size_t len);
/* Loads the same files again: new connections get them, connections
 * already open keep what they have. Returns 0, or -1 with err (the old
 * ones stay in use). */
int tls_server_reload(tls_server *s, char *err, size_t len);
void tls_server_free(tls_server *s);
/* Whether connections must present a client certificate. */
int tls_server_mutual(const tls_server *s);

/* A session on s's current context; NULL when out of memory. */
tls_conn *tls_conn_new(tls_server *s);
void tls_conn_free(tls_conn *c);

/* Bytes from the socket. 0, or -1 when out of memory. */
int tls_conn_feed(tls_conn *c, const uint8_t *p, size_t n);

/* tls_conn_read() results besides a byte count. */
#define TLS_WANT 0      /* nothing more until more bytes are fed */
#define TLS_CLOSED (-1) /* the peer closed the session cleanly */
#define TLS_FAILED (-2) /* handshake or record error: tls_conn_error() */

/* Up to cap bytes of plaintext into out: a count > 0, TLS_WANT,
 * TLS_CLOSED or TLS_FAILED. Drives the handshake as it goes. */
int tls_conn_read(tls_conn *c, uint8_t *out, size_t cap);
/* Encrypts n bytes (the handshake must be done). 0 or TLS_FAILED. */
int tls_conn_write(tls_conn *c, const uint8_t *p, size_t n);
/* What the session has for the peer: *p and the byte count (0: nothing).
 * Valid until the next call on c; tls_conn_output_done() consumes it. */
size_t tls_conn_output(tls_conn *c, const uint8_t **p);
void tls_conn_output_done(tls_conn *c);
/* Queues a close_notify alert for the peer (once the handshake is done). */
void tls_conn_close_notify(tls_conn *c);

/* Whether the handshake is complete. */
int tls_conn_established(const tls_conn *c);
/* Why the session failed: OpenSSL's reason ("certificate verify failed
 * (certificate has expired)", "wrong version number", ...). Static or c's
 * storage; "" when it did not fail. */
const char *tls_conn_error(const tls_conn *c);
/* The peer certificate's subject (RFC 2253), "" when it sent none. Valid
 * once established. */
const char *tls_conn_subject(const tls_conn *c);
/* The protocol version agreed ("TLSv1.3"). */
const char *tls_conn_version(const tls_conn *c);

#endif /* TW_COLLECTOR_TLS_H */
