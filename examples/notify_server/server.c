/*
 * server - connections, parsing and responses of the example HTTP server.
 * See server.h for what it promises.
 *
 * Each connection owns an http_parser. Requests are dispatched from the
 * parser's on_message_complete callback, so pipelined requests in one read
 * are answered in order; libuv keeps writes of one stream in order too. A
 * connection that must close (a parse error, "Connection: close", EOF or
 * shutdown) stops reading at once but is only closed when its pending writes
 * are done, so every answered request is answered completely.
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

/* Request targets longer than this get 414: nothing this server serves needs
 * more, and a bound keeps a connection's memory fixed. */
#define URL_MAX 2048
/* Bodies are ignored, but a client may not make us read without end. */
#define BODY_MAX (1024 * 1024)
#define READ_BUFFER 65536

typedef struct conn conn;

struct server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  server_handler handler;
  server_sent_cb sent;
  server_closed_cb closed_cb;
  void *data;
  conn *conns;
  int port;
  int stopping;
  int listener_open;
  /* One read buffer serves every connection: libuv calls the read callback
   * right after the allocation, on this thread, before reading again. */
  char read_buffer[READ_BUFFER];
};

struct conn {
  uv_tcp_t tcp;
  http_parser parser;
  server *srv;
  conn *prev;
  conn *next;
  size_t url_len;
  size_t body_len;
  int url_too_long;
  int body_too_long;
  int pending_writes;
  /* Set once the connection must not read again; it closes as soon as
   * pending_writes drops to zero. */
  int draining;
  int closed;
  char url[URL_MAX + 1];
};

typedef struct write_req {
  uv_write_t req;
  conn *c;
  void *after;
  uv_buf_t buf;
  char data[];
} write_req;

static void maybe_finish_stop(server *srv);

static const char *status_text(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 413:
    return "Payload Too Large";
  case 414:
    return "URI Too Long";
  case 500:
    return "Internal Server Error";
  case 503:
    return "Service Unavailable";
  default:
    return "Unknown";
  }
}

static void on_conn_closed(uv_handle_t *handle) {
  conn *c = handle->data;
  server *srv = c->srv;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  free(c);
  maybe_finish_stop(srv);
}

static void conn_close(conn *c) {
  if (c->closed)
    return;
  c->closed = 1;
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* Stops the parser from dispatching the rest of a read. http-parser
 * asserts when a parser in an error state is paused, so only a healthy one
 * is. */
static void parser_stop(http_parser *p) {
  if (HTTP_PARSER_ERRNO(p) == HPE_OK)
    http_parser_pause(p, 1);
}

/* Stops reading; the connection closes once what it owes is written. */
static void conn_drain(conn *c) {
  if (!c->draining) {
    c->draining = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    parser_stop(&c->parser);
  }
  if (c->pending_writes == 0)
    conn_close(c);
}

static void on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  conn *c = w->c;
  server *srv = c->srv;
  c->pending_writes--;
  if (w->after != NULL)
    srv->sent(srv->data, w->after, status);
  free(w);
  if (status != 0)
    conn_drain(c);
  else if (c->draining && c->pending_writes == 0)
    conn_close(c);
}

/* Writes one complete response. If the write cannot even be queued, the
 * `after` pointer still goes back through the sent callback, so the
 * application always learns the fate of what it attached. An answer to HEAD
 * keeps the Content-Length of the body but not the body, or a keep-alive
 * client would read the body as the start of its next response. */
static void conn_respond(conn *c, const server_response *r, int keep_alive,
                         int head) {
  server *srv = c->srv;
  const char *body = r->body != NULL ? r->body : "";
  const char *type = r->content_type != NULL ? r->content_type : "text/plain";
  size_t body_len = strlen(body);
  size_t cap = body_len + 256;
  write_req *w = malloc(sizeof(*w) + cap);
  if (w == NULL) {
    if (r->after != NULL)
      srv->sent(srv->data, r->after, UV_ENOMEM);
    conn_drain(c);
    return;
  }
  int n = snprintf(w->data, cap,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\nConnection: %s\r\n\r\n%s",
                   r->status, status_text(r->status), type, body_len,
                   keep_alive ? "keep-alive" : "close", head ? "" : body);
  w->c = c;
  w->after = r->after;
  w->buf = uv_buf_init(w->data, (unsigned)n);
  int err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written);
  if (err != 0) {
    if (r->after != NULL)
      srv->sent(srv->data, r->after, err);
    free(w);
    conn_drain(c);
    return;
  }
  c->pending_writes++;
  if (!keep_alive)
    conn_drain(c);
}

static void respond_error(conn *c, int status, const char *body) {
  server_response r = {status, "text/plain", body, NULL};
  conn_respond(c, &r, 0, 0);
}

static int on_message_begin(http_parser *p) {
  conn *c = p->data;
  c->url_len = 0;
  c->body_len = 0;
  c->url_too_long = 0;
  c->body_too_long = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  if (c->url_len + len > URL_MAX) {
    c->url_too_long = 1;
    return 0;
  }
  memcpy(c->url + c->url_len, at, len);
  c->url_len += len;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  (void)at;
  c->body_len += len;
  if (c->body_len > BODY_MAX) {
    c->body_too_long = 1;
    return 1;
  }
  return 0;
}

/* Refuses a protocol upgrade or CONNECT before the request reaches the
 * handler: the server speaks nothing but HTTP/1.1, and a request the handler
 * had answered must not get a second answer. http-parser sets `upgrade`
 * before this callback runs. */
static int on_headers_complete(http_parser *p) {
  conn *c = p->data;
  if (p->upgrade) {
    respond_error(c, 400, "bad request: protocol upgrade not supported\n");
    parser_stop(p);
  }
  return 0;
}

/* Dispatches one complete request to the handler and answers it. */
static int on_message_complete(http_parser *p) {
  conn *c = p->data;
  server *srv = c->srv;
  int keep_alive = http_should_keep_alive(p) && !srv->stopping;
  if (c->url_too_long) {
    respond_error(c, 414, "request target too long\n");
    return 0;
  }
  c->url[c->url_len] = '\0';
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 ||
      !(u.field_set & (1 << UF_PATH))) {
    respond_error(c, 400, "bad request target\n");
    return 0;
  }
  char *path = c->url + u.field_data[UF_PATH].off;
  path[u.field_data[UF_PATH].len] = '\0';
  server_response r = {404, "text/plain", "not found\n", NULL};
  srv->handler(srv->data, http_method_str(p->method), path, &r);
  conn_respond(c, &r, keep_alive, p->method == HTTP_HEAD);
  if (!keep_alive)
    parser_stop(p);
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  conn *c = handle->data;
  (void)suggested;
  *buf = uv_buf_init(c->srv->read_buffer, READ_BUFFER);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn *c = stream->data;
  if (nread == 0)
    return;
  if (nread < 0) {
    /* EOF or a reset: answer nothing more, finish what is being written. */
    conn_drain(c);
    return;
  }
  size_t used = http_parser_execute(&c->parser, &parser_settings, buf->base,
                                    (size_t)nread);
  enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
  if (c->draining || err == HPE_PAUSED)
    return;
  if (c->body_too_long) {
    respond_error(c, 413, "request body too large\n");
  } else if (err != HPE_OK) {
    char body[160];
    snprintf(body, sizeof(body), "bad request: %s\n", http_errno_name(err));
    respond_error(c, 400, body);
  } else if (c->parser.upgrade || used != (size_t)nread) {
    respond_error(c, 400, "bad request: protocol upgrade not supported\n");
  }
}

static void on_connection(uv_stream_t *listener, int status) {
  server *srv = listener->data;
  if (status != 0 || srv->stopping)
    return;
  conn *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return;
  c->srv = srv;
  uv_tcp_init(srv->loop, &c->tcp);
  c->tcp.data = c;
  c->next = srv->conns;
  if (srv->conns != NULL)
    srv->conns->prev = c;
  srv->conns = c;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    conn_close(c);
}

int server_start(uv_loop_t *loop, const char *host, int port,
                 server_handler handler, server_sent_cb sent, void *data,
                 server **out) {
  struct sockaddr_storage addr;
  int err = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  if (err != 0)
    err = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
  if (err != 0)
    return err;
  server *srv = calloc(1, sizeof(*srv));
  if (srv == NULL)
    return UV_ENOMEM;
  srv->loop = loop;
  srv->handler = handler;
  srv->sent = sent;
  srv->data = data;
  uv_tcp_init(loop, &srv->listener);
  srv->listener.data = srv;
  srv->listener_open = 1;
  err = uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  if (err == 0)
    err = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
  if (err != 0) {
    /* The listener is closed and the server freed by server_stop(). */
    server_stop(srv, NULL);
    return err;
  }
  srv->port = ntohs(bound.ss_family == AF_INET6
                        ? ((struct sockaddr_in6 *)&bound)->sin6_port
                        : ((struct sockaddr_in *)&bound)->sin_port);
  *out = srv;
  return 0;
}

int server_port(const server *srv) {
  return srv->port;
}

static void maybe_finish_stop(server *srv) {
  if (!srv->stopping || srv->listener_open || srv->conns != NULL)
    return;
  if (srv->closed_cb != NULL)
    srv->closed_cb(srv->data);
  free(srv);
}

static void on_listener_closed(uv_handle_t *handle) {
  server *srv = handle->data;
  srv->listener_open = 0;
  maybe_finish_stop(srv);
}

void server_stop(server *srv, server_closed_cb closed_cb) {
  if (srv->stopping)
    return;
  srv->stopping = 1;
  srv->closed_cb = closed_cb;
  uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
  for (conn *c = srv->conns, *next; c != NULL; c = next) {
    next = c->next;
    conn_drain(c);
  }
}
