/*
 * tls - OpenSSL sessions over memory BIOs. The input BIO holds what the
 * socket gave and SSL has not read yet (at most one read of the loop: the
 * server reads it all out before reading the socket again); the output
 * BIO what SSL wrote for the peer until the loop takes it. Sessions
 * release their record buffers while idle (SSL_MODE_RELEASE_BUFFERS), so
 * a thousand quiet agents cost little.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls_reason.h"
#include "xalloc.h"

struct tls_server {
  SSL_CTX *ctx; /* the current context; sessions hold their own reference */
  char *cert, *key, *client_ca;
};

struct tls_conn {
  SSL *ssl;
  BIO *in, *out;
  int failed;
  char error[192];
  char *subject;
};

static SSL_CTX *make_context(const tls_server *s, char *err, size_t len) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL) {
    snprintf(err, len, "cannot create a TLS context: out of memory");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  /* Resumed sessions of client certificates need an id context. */
  SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"taskwatch", 9);
  if (SSL_CTX_use_certificate_chain_file(ctx, s->cert) != 1) {
    tw__tls_load_error(err, len, "--tls-cert", s->cert);
  } else if (SSL_CTX_use_PrivateKey_file(ctx, s->key, SSL_FILETYPE_PEM) != 1) {
    tw__tls_load_error(err, len, "--tls-key", s->key);
  } else if (SSL_CTX_check_private_key(ctx) != 1) {
    snprintf(err, len, "--tls-key %s is not the key of --tls-cert %s", s->key,
             s->cert);
    ERR_clear_error();
  } else if (s->client_ca != NULL &&
             SSL_CTX_load_verify_locations(ctx, s->client_ca, NULL) != 1) {
    tw__tls_load_error(err, len, "--tls-client-ca", s->client_ca);
  } else {
    if (s->client_ca != NULL) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->client_ca);
      if (names != NULL)
        SSL_CTX_set_client_CA_list(ctx, names);
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                         NULL);
    }
    return ctx;
  }
  SSL_CTX_free(ctx);
  return NULL;
}

tls_server *tls_server_new(const tls_files *files, char *err, size_t len) {
  tls_server *s = xcalloc(1, sizeof(*s));
  s->cert = xstrdup(files->cert);
  s->key = xstrdup(files->key);
  s->client_ca = files->client_ca ? xstrdup(files->client_ca) : NULL;
  if ((s->ctx = make_context(s, err, len)) == NULL) {
    tls_server_free(s);
    return NULL;
  }
  return s;
}

int tls_server_reload(tls_server *s, char *err, size_t len) {
  SSL_CTX *ctx = make_context(s, err, len);
  if (ctx == NULL)
    return -1;
  SSL_CTX_free(s->ctx);
  s->ctx = ctx;
  return 0;
}

void tls_server_free(tls_server *s) {
  if (s == NULL)
    return;
  SSL_CTX_free(s->ctx);
  free(s->cert);
  free(s->key);
  free(s->client_ca);
  free(s);
}

int tls_server_mutual(const tls_server *s) {
  return s->client_ca != NULL;
}

tls_conn *tls_conn_new(tls_server *s) {
  tls_conn *c = xcalloc(1, sizeof(*c));
  c->ssl = SSL_new(s->ctx);
  c->in = BIO_new(BIO_s_mem());
  c->out = BIO_new(BIO_s_mem());
  if (c->ssl == NULL || c->in == NULL || c->out == NULL) {
    BIO_free(c->in);
    BIO_free(c->out);
    SSL_free(c->ssl);
    free(c);
    ERR_clear_error();
    return NULL;
  }
  /* An empty input BIO means "more later", not the end of the stream. */
  BIO_set_mem_eof_return(c->in, -1);
  SSL_set_bio(c->ssl, c->in, c->out);
  SSL_set_accept_state(c->ssl);
  return c;
}

void tls_conn_free(tls_conn *c) {
  if (c == NULL)
    return;
  SSL_free(c->ssl); /* and its BIOs */
  free(c->subject);
  free(c);
}

int tls_conn_feed(tls_conn *c, const uint8_t *p, size_t n) {
  if (n == 0)
    return 0;
  return BIO_write(c->in, p, (int)n) == (int)n ? 0 : -1;
}

/* The subject of the peer's certificate, once: "" when it sent none. */
static int take_subject(tls_conn *c) {
  X509 *peer = SSL_get0_peer_certificate(c->ssl);
  if (peer == NULL) {
    c->subject = xstrdup("");
    return 0;
  }
  BIO *b = BIO_new(BIO_s_mem());
  char *text = NULL;
  long n = -1;
  if (b != NULL && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0,
                                      XN_FLAG_RFC2253) >= 0)
    n = BIO_get_mem_data(b, &text);
  if (n < 0 || n > TLS_SUBJECT_MAX) {
    BIO_free(b);
    snprintf(c->error, sizeof(c->error),
             n < 0 ? "cannot read the client certificate's subject"
                   : "client certificate subject longer than %d bytes",
             TLS_SUBJECT_MAX);
    return -1;
  }
  c->subject = xmemdup(text, (size_t)n);
  BIO_free(b);
  return 0;
}

int tls_conn_read(tls_conn *c, uint8_t *out, size_t cap) {
  if (c->failed)
    return TLS_FAILED;
  ERR_clear_error();
  int n = SSL_read(c->ssl, out, cap > INT32_MAX ? INT32_MAX : (int)cap);
  int e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);
  if (c->subject == NULL && SSL_is_init_finished(c->ssl) &&
      take_subject(c) != 0) {
    c->failed = 1;
    return TLS_FAILED;
  }
  if (n > 0)
    return n;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return TLS_WANT;
  if (e == SSL_ERROR_ZERO_RETURN)
    return TLS_CLOSED;
  tw__tls_reason(c->ssl, e, c->error, sizeof(c->error));
  c->failed = 1;
  return TLS_FAILED;
}

int tls_conn_write(tls_conn *c, const uint8_t *p, size_t n) {
  if (c->failed || !SSL_is_init_finished(c->ssl))
    return TLS_FAILED;
  ERR_clear_error();
  /* The output BIO grows as needed, so a write is whole or fails. */
  while (n > 0) {
    int chunk = n > INT32_MAX ? INT32_MAX : (int)n;
    int w = SSL_write(c->ssl, p, chunk);
    if (w <= 0) {
      tw__tls_reason(c->ssl, SSL_get_error(c->ssl, w), c->error,
                     sizeof(c->error));
      c->failed = 1;
      return TLS_FAILED;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

size_t tls_conn_output(tls_conn *c, const uint8_t **p) {
  char *data = NULL;
  long n = BIO_get_mem_data(c->out, &data);
  *p = (const uint8_t *)data;
  return n > 0 ? (size_t)n : 0;
}

void tls_conn_output_done(tls_conn *c) {
  (void)BIO_reset(c->out);
}

void tls_conn_close_notify(tls_conn *c) {
  if (!c->failed && SSL_is_init_finished(c->ssl)) {
    SSL_shutdown(c->ssl);
    ERR_clear_error();
  }
}

int tls_conn_established(const tls_conn *c) {
  return !c->failed && c->subject != NULL;
}

const char *tls_conn_error(const tls_conn *c) {
  return c->error;
}

const char *tls_conn_subject(const tls_conn *c) {
  return c->subject ? c->subject : "";
}

const char *tls_conn_version(const tls_conn *c) {
  return SSL_get_version(c->ssl);
}
