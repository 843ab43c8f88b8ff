/*
 * conn_tls - OpenSSL client sessions over memory BIOs (see conn_tls.h).
 */
#include "conn_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls_reason.h"

struct conn_tls {
  SSL *ssl;
  BIO *in, *out;
  int failed;
  char error[192];
};

SSL_CTX *tw__conn_tls_context(const char *ca, const char *cert, const char *key,
                              char *err, size_t len) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) {
    snprintf(err, len, "cannot create a TLS context: out of memory");
    ERR_clear_error();
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  int ok = 1;
  if (ca != NULL && *ca != '\0') {
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
      tw__tls_load_error(err, len, "TASKWATCH_TLS_CA", ca);
      ok = 0;
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    snprintf(err, len, "cannot load the system's trusted certificates");
    ok = 0;
  }
  if (ok && (cert != NULL && *cert != '\0') != (key != NULL && *key != '\0')) {
    snprintf(err, len,
             "TASKWATCH_TLS_CERT and TASKWATCH_TLS_KEY go "
             "together");
    ok = 0;
  }
  if (ok && cert != NULL && *cert != '\0') {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
      tw__tls_load_error(err, len, "TASKWATCH_TLS_CERT", cert);
      ok = 0;
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
      tw__tls_load_error(err, len, "TASKWATCH_TLS_KEY", key);
      ok = 0;
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
      snprintf(err, len,
               "TASKWATCH_TLS_KEY %s is not the key of "
               "TASKWATCH_TLS_CERT %s",
               key, cert);
      ok = 0;
    }
  }
  ERR_clear_error();
  if (!ok) {
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

/* The host the certificate must name: an IP address or a DNS name. */
static int expect_host(SSL *ssl, const char *host) {
  unsigned char addr[16];
  if (inet_pton(AF_INET, host, addr) == 1 ||
      inet_pton(AF_INET6, host, addr) == 1)
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
  return SSL_set_tlsext_host_name(ssl, host) == 1 &&
         SSL_set1_host(ssl, host) == 1;
}

conn_tls *tw__conn_tls_new(SSL_CTX *ctx, const char *host) {
  conn_tls *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return NULL;
  t->ssl = SSL_new(ctx);
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->in == NULL || t->out == NULL ||
      !expect_host(t->ssl, host)) {
    BIO_free(t->in); /* not yet the session's */
    BIO_free(t->out);
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return NULL;
  }
  BIO_set_mem_eof_return(t->in, -1); /* empty: more later */
  SSL_set_bio(t->ssl, t->in, t->out);
  SSL_set_connect_state(t->ssl);
  return t;
}

void tw__conn_tls_free(conn_tls *t) {
  if (t == NULL)
    return;
  SSL_free(t->ssl);
  free(t);
}

int tw__conn_tls_feed(conn_tls *t, const uint8_t *p, size_t n) {
  if (n == 0)
    return 0;
  return BIO_write(t->in, p, (int)n) == (int)n ? 0 : -1;
}

/* Records why the session failed. Returns -1. */
static int failed(conn_tls *t, int rc) {
  tw__tls_reason(t->ssl, SSL_get_error(t->ssl, rc), t->error, sizeof(t->error));
  t->failed = 1;
  return -1;
}

int tw__conn_tls_handshake(conn_tls *t) {
  if (t->failed)
    return -1;
  if (SSL_is_init_finished(t->ssl))
    return 1;
  ERR_clear_error();
  int rc = SSL_do_handshake(t->ssl);
  if (rc == 1)
    return 1;
  int e = SSL_get_error(t->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return 0;
  return failed(t, rc);
}

int tw__conn_tls_read(conn_tls *t, uint8_t *out, size_t cap) {
  if (t->failed)
    return -1;
  ERR_clear_error();
  int n = SSL_read(t->ssl, out, cap > INT32_MAX ? INT32_MAX : (int)cap);
  if (n > 0)
    return n;
  int e = SSL_get_error(t->ssl, n);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return 0;
  if (e == SSL_ERROR_ZERO_RETURN) { /* a clean close: no reason */
    t->error[0] = '\0';
    t->failed = 1;
    return -1;
  }
  return failed(t, n);
}

int tw__conn_tls_write(conn_tls *t, const uint8_t *p, size_t n) {
  if (t->failed)
    return -1;
  ERR_clear_error();
  while (n > 0) {
    int w = SSL_write(t->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (w <= 0)
      return failed(t, w);
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

long tw__conn_tls_output(conn_tls *t, uint8_t **out) {
  char *data = NULL;
  long n = BIO_get_mem_data(t->out, &data);
  *out = NULL;
  if (n <= 0)
    return 0;
  if ((*out = malloc((size_t)n)) == NULL)
    return -1;
  memcpy(*out, data, (size_t)n);
  (void)BIO_reset(t->out);
  return n;
}

const char *tw__conn_tls_error(const conn_tls *t) {
  return t->error;
}
