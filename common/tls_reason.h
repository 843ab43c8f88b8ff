/*
 * tls_reason - one line saying why an OpenSSL session failed, for the
 * collector's log and the agent's last refusal alike: OpenSSL's reason
 * ("certificate verify failed", "wrong version number", "tlsv1 alert
 * unknown ca"), with the certificate check's own words when that was it
 * ("certificate verify failed (certificate has expired)"). Linked into the
 * agent library, hence the tw__ name.
 */
#ifndef TW_TLS_REASON_H
#define TW_TLS_REASON_H

#include <stddef.h>

#include <openssl/ssl.h>

/* Takes the thread's OpenSSL error queue (and clears it) and the result
 * of SSL_get_error() for ssl, and writes the reason into buf (always
 * NUL-terminated when len > 0). Returns buf. */
char *tw__tls_reason(const SSL *ssl, int ssl_error, char *buf, size_t len);

/* A file of a TLS context that would not load: "cannot load NAME PATH:
 * reason", the reason from errno when the file cannot be opened, else
 * from OpenSSL's error queue (which it clears). */
void tw__tls_load_error(char *err, size_t len, const char *name,
                        const char *path);

#endif /* TW_TLS_REASON_H */
