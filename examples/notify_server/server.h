/*
 * server - a small HTTP/1.1 server on libuv for the example.
 *
 * It owns the listening socket and the connections: reading, parsing with
 * http-parser (the maintained parser Node.js used for a decade), keep-alive,
 * pipelining, and writing responses in order. What a request means is the
 * application's business: the server hands each complete request to a
 * handler, which fills in a response and may attach an opaque `after`
 * pointer; once that response has been written (or could not be), the
 * server gives `after` back through the sent callback. That is the hook the
 * example uses to run background tasks only after the client has its
 * answer, as Starlette does.
 *
 * Malformed input gets a 400 and the connection is closed; nothing a client
 * sends can make the server abort. Everything runs on the loop's thread.
 */
#ifndef NOTIFY_SERVER_H
#define NOTIFY_SERVER_H

#include <stddef.h>

#include <uv.h>

typedef struct server server;

/* A response the handler fills in. body is copied by the server. */
typedef struct server_response {
  int status;
  const char *content_type;
  const char *body;
  void *after;
} server_response;

/* Called for each complete request. method is e.g. "POST"; path is the
 * percent-encoded path of the target without its query string, NUL
 * terminated, valid for the call only. */
typedef void (*server_handler)(void *data, const char *method, const char *path,
                               server_response *out);

/* Called once per response that carried an `after` pointer: status 0 when
 * the response was written, a libuv error code when it could not be. */
typedef void (*server_sent_cb)(void *data, void *after, int status);

/* Called once when server_stop() has closed every handle. */
typedef void (*server_closed_cb)(void *data);

/* Binds host:port (port 0 picks a free one) and starts accepting. Returns 0
 * or a negative libuv error code; *out is set only on success. */
int server_start(uv_loop_t *loop, const char *host, int port,
                 server_handler handler, server_sent_cb sent, void *data,
                 server **out);

/* The port the server listens on. */
int server_port(const server *srv);

/* Stops accepting, lets every connection finish writing what it owes, closes
 * them and calls closed_cb; the server frees itself after the callback. */
void server_stop(server *srv, server_closed_cb closed_cb);

#endif /* NOTIFY_SERVER_H */
