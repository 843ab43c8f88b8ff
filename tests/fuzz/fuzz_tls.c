/*
 * fuzz_tls - libFuzzer target for the collector's TLS read path (tls.h):
 * the first byte picks where the rest goes.
 *
 *   0: raw bytes into a fresh session, as a peer's handshake;
 *   1: raw bytes into a session whose handshake with an in-process client
 *      is done, as records;
 *   2: bytes the client encrypts, as application data: the plaintext the
 *      session gives is split into frames as the server splits them.
 *
 * Whatever comes in, the session reads, fails or waits, never crashes,
 * and never gives more plaintext than it was asked for. The server's
 * certificate and key are made in memory at start (a throwaway
 * self-signed pair, written to temporary files for tls_server_new()).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "proto.h"
#include "tls.h"

static tls_server *server;
static SSL_CTX *client_ctx;

static void write_pair(const char *cert_path, const char *key_path) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  if (key == NULL || x == NULL)
    abort();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             (const unsigned char *)"fuzz", -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_set_pubkey(x, key);
  if (X509_sign(x, key, EVP_sha256()) == 0)
    abort();
  FILE *f = fopen(cert_path, "w");
  FILE *k = fopen(key_path, "w");
  if (f == NULL || k == NULL || PEM_write_X509(f, x) != 1 ||
      PEM_write_PrivateKey(k, key, NULL, NULL, 0, NULL, NULL) != 1)
    abort();
  fclose(f);
  fclose(k);
  X509_free(x);
  EVP_PKEY_free(key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  char cert[] = "/tmp/fuzz-tls-cert-XXXXXX", key[] = "/tmp/fuzz-tls-key-XXXXXX";
  int fc = mkstemp(cert), fk = mkstemp(key);
  if (fc < 0 || fk < 0)
    abort();
  close(fc);
  close(fk);
  write_pair(cert, key);
  tls_files files = {cert, key, NULL};
  char err[256];
  server = tls_server_new(&files, err, sizeof(err));
  unlink(cert);
  unlink(key);
  client_ctx = SSL_CTX_new(TLS_client_method());
  if (server == NULL || client_ctx == NULL)
    abort();
  SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
  return 0;
}

/* Moves what s has for the peer into the client's input BIO (or drops it
 * when there is no client). */
static void to_client(tls_conn *s, BIO *client_in) {
  const uint8_t *p;
  size_t n = tls_conn_output(s, &p);
  if (n > 0 && client_in != NULL)
    BIO_write(client_in, p, (int)n);
  if (n > 0)
    tls_conn_output_done(s);
}

/* Moves what the client wrote into s. */
static void to_server(BIO *client_out, tls_conn *s) {
  char *p;
  long n = BIO_get_mem_data(client_out, &p);
  if (n > 0) {
    tls_conn_feed(s, (const uint8_t *)p, (size_t)n);
    (void)BIO_reset(client_out);
  }
}

/* Reads s dry; its plaintext is split into frames as the server does. */
static void drain(tls_conn *s, BIO *client_in) {
  static uint8_t buf[1 << 17];
  size_t len = 0;
  for (int i = 0; i < 1024; i++) {
    int n = tls_conn_read(s, buf + len, sizeof(buf) - len);
    to_client(s, client_in);
    if (n <= 0)
      break;
    if ((size_t)n > sizeof(buf) - len)
      abort();
    len += (size_t)n;
    size_t at = 0;
    proto_frame f;
    while (tw__proto_frame_next(buf + at, len - at, PROTO_FRAME_MAX, &f) == 0)
      at += f.frame_len;
    memmove(buf, buf + at, len - at);
    len -= at;
    if (len == sizeof(buf))
      len = 0;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  uint8_t mode = data[0] % 3;
  data++;
  size--;
  tls_conn *s = tls_conn_new(server);
  if (s == NULL)
    abort();
  if (mode == 0) {
    tls_conn_feed(s, data, size);
    drain(s, NULL);
    tls_conn_free(s);
    return 0;
  }
  SSL *c = SSL_new(client_ctx);
  BIO *cin = BIO_new(BIO_s_mem()), *cout = BIO_new(BIO_s_mem());
  SSL_set_bio(c, cin, cout);
  SSL_set_connect_state(c);
  for (int i = 0; i < 16 && !tls_conn_established(s); i++) {
    SSL_do_handshake(c);
    to_server(cout, s);
    drain(s, cin);
  }
  if (!tls_conn_established(s))
    abort(); /* a well-behaved client always gets through */
  if (mode == 1) {
    tls_conn_feed(s, data, size);
  } else {
    if (size > 0 && SSL_write(c, data, (int)size) <= 0)
      abort();
    to_server(cout, s);
  }
  drain(s, cin);
  SSL_free(c);
  tls_conn_free(s);
  return 0;
}
