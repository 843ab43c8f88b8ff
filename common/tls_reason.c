/*
 * tls_reason - see tls_reason.h.
 */
#include "tls_reason.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

char *tw__tls_reason(const SSL *ssl, int ssl_error, char *buf, size_t len) {
  /* The first error queued is the cause; later ones are its callers'. */
  unsigned long e = ERR_get_error();
  const char *why = e ? ERR_reason_error_string(e) : NULL;
  char code[128];
  if (len == 0)
    return buf;
  if (e != 0 && why == NULL) {
    ERR_error_string_n(e, code, sizeof(code));
    why = code;
  }
  if (why == NULL)
    why = ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN
              ? "the peer closed the connection during the TLS handshake"
              : "TLS error";
  long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
  if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
      ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
      verify != X509_V_OK)
    snprintf(buf, len, "%s (%s)", why, X509_verify_cert_error_string(verify));
  else
    snprintf(buf, len, "%s", why);
  ERR_clear_error();
  return buf;
}

void tw__tls_load_error(char *err, size_t len, const char *name,
                        const char *path) {
  FILE *f = fopen(path, "rb");
  char why[160];
  if (f == NULL) {
    snprintf(err, len, "cannot load %s %s: %s", name, path, strerror(errno));
    ERR_clear_error();
    return;
  }
  fclose(f);
  tw__tls_reason(NULL, SSL_ERROR_SSL, why, sizeof(why));
  snprintf(err, len, "cannot load %s %s: %s", name, path, why);
}
