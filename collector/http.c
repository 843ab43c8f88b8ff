/*
 * http - one request per connection: read until http-parser has a whole
 * request (or the bounds say no), stop reading, let the handler answer,
 * write the answer, shut the connection down. A timer bounds the time a
 * connection may take, from accept to the last byte of the answer, so an
 * idle or slow client holds a slot for HTTP_TIMEOUT_MS at most, and at
 * most HTTP_MAX_CONNECTIONS slots exist: the rest get 503 at once.
 */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "url.h"
#include "xalloc.h"

static const int status_codes[HTTP_ANSWER_COUNT] = {
#define STATUS_CODE(name, code, reason) [HTTP_##name] = code,
    HTTP_ANSWER_MAP(STATUS_CODE)
#undef STATUS_CODE
};

static const char *const status_reasons[HTTP_ANSWER_COUNT] = {
#define STATUS_REASON(name, code, reason) [HTTP_##name] = reason,
    HTTP_ANSWER_MAP(STATUS_REASON)
#undef STATUS_REASON
};

int http_status_code(int status) {
  return status >= 0 && status < HTTP_ANSWER_COUNT ? status_codes[status] : 500;
}

const char *http_status_reason(int status) {
  return status >= 0 && status < HTTP_ANSWER_COUNT ? status_reasons[status]
                                                   : "Internal Server Error";
}

/* ---- the request parser ------------------------------------------------- */

static int fail(http_parser *p, int status) {
  http_request *r = p->data;
  if (r->status == HTTP_OK)
    r->status = status;
  return -1; /* stops http_parser_execute */
}

static int on_url(http_parser *p, const char *at, size_t n) {
  http_request *r = p->data;
  if (r->path_done)
    return 0;
  const char *q = memchr(at, '?', n);
  size_t take = q ? (size_t)(q - at) : n;
  if (r->path_len + take > HTTP_MAX_PATH)
    return fail(p, HTTP_URI_TOO_LONG);
  memcpy(r->path + r->path_len, at, take);
  r->path_len += take;
  r->path[r->path_len] = '\0';
  r->path_done = q != NULL;
  return 0;
}

static int on_headers_complete(http_parser *p) {
  /* GET and HEAD carry no body; one that announces one is refused rather
   * than read. */
  if (p->upgrade)
    return fail(p, HTTP_BAD_REQUEST);
  if ((p->flags & F_CHUNKED) ||
      (p->content_length > 0 && p->content_length != ULLONG_MAX))
    return fail(p, HTTP_BODY);
  return 0;
}

static int on_message_complete(http_parser *p) {
  http_request *r = p->data;
  r->done = 1;
  r->method = (int)p->method;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

void http_request_init(http_request *r) {
  memset(r, 0, sizeof(*r));
  http_parser_init(&r->parser, HTTP_REQUEST);
  r->parser.data = r;
  r->status = HTTP_OK;
}

int http_request_feed(http_request *r, const char *data, size_t n) {
  if (r->done)
    return HTTP_OK;
  if (r->status != HTTP_OK)
    return r->status;
  if (n == 0)
    return HTTP_NEED_MORE; /* http-parser would read it as the end */
  /* A request is only its line and headers: once that many bytes came
   * without their end, the headers are too large. */
  size_t room = HTTP_MAX_REQUEST - r->bytes;
  int over = n > room;
  if (over)
    n = room;
  r->bytes += n;
  http_parser_execute(&r->parser, &settings, data, n);
  enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
  if (r->done)
    return HTTP_OK;
  if (r->status != HTTP_OK)
    return r->status;
  if (e != HPE_OK && e != HPE_PAUSED)
    return r->status = HTTP_BAD_REQUEST;
  if (over || r->bytes >= HTTP_MAX_REQUEST)
    return r->status = HTTP_HEADERS_TOO_LARGE;
  return HTTP_NEED_MORE;
}

/* ---- the server --------------------------------------------------------- */

struct http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  http_handler handler;
  void *arg;
  uint64_t *counts;
  http_conn *conns;
  size_t nconns;
  size_t open; /* handles not closed yet: the listener and the conns */
  int stopping;
  char url[80];
};

struct http_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  http_server *srv;
  http_conn *prev, *next;
  http_request req;
  char buf[1024];
  int handles;  /* open handles of this connection (tcp, timer) */
  int timer_ok; /* the timer was initialised */
  int pending;  /* the handler has not answered yet */
  int closing;
  int answered;
};

static void server_release(http_server *s) {
  if (--s->open == 0)
    free(s);
}

static void on_conn_handle_closed(uv_handle_t *h) {
  http_conn *c = h->data;
  if (--c->handles > 0)
    return;
  http_server *s = c->srv;
  free(c);
  server_release(s);
}

static void close_handles(http_conn *c) {
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  if (c->timer_ok)
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

/* Closes c; its memory stays while the handler still owes an answer. */
static void conn_close(http_conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  http_server *s = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  if (!c->pending)
    close_handles(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  http_conn *c = req->data;
  free(req);
  conn_close(c);
}

static void on_written(uv_write_t *req, int status) {
  http_conn *c = req->data;
  free(req);
  if (c->closing)
    return;
  uv_shutdown_t *sd = xmalloc(sizeof(*sd));
  sd->data = c;
  if (status != 0 || uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown)) {
    free(sd);
    conn_close(c);
  }
}

/* Writes the answer; the write request carries its own copy. */
static void on_timeout(uv_timer_t *t);

static void send_answer(http_conn *c, int status, const char *content_type,
                        const char *body, size_t len, int with_body) {
  c->answered = 1;
  /* A client that does not read its answer is not waited for either. */
  uv_timer_start(&c->timer, on_timeout, HTTP_TIMEOUT_MS, 0);
  c->srv->counts[status]++;
  char head[512];
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                   http_status_code(status), http_status_reason(status),
                   content_type, len,
                   status == HTTP_BAD_METHOD ? "Allow: GET, HEAD\r\n" : "");
  size_t body_len = with_body ? len : 0;
  uv_write_t *w = xmalloc(sizeof(*w) + (size_t)n + body_len);
  char *p = (char *)(w + 1);
  memcpy(p, head, (size_t)n);
  if (body_len)
    memcpy(p + n, body, body_len);
  w->data = c;
  uv_buf_t buf = uv_buf_init(p, (unsigned)((size_t)n + body_len));
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) {
    free(w);
    conn_close(c);
  }
}

/* An answer of the server's own: the status as a one-line text. */
static void answer_status(http_conn *c, int status) {
  char text[96];
  int n = snprintf(text, sizeof(text), "%d %s\n", http_status_code(status),
                   http_status_reason(status));
  send_answer(c, status, "text/plain; charset=utf-8", text, (size_t)n, 1);
}

void http_respond(http_conn *c, int status, const char *content_type,
                  const char *body, size_t len) {
  c->pending = 0;
  if (c->closing) {
    close_handles(c); /* the server stopped while the answer was made */
    return;
  }
  send_answer(c, status, content_type, body, len, c->req.method != HTTP_HEAD);
}

static void dispatch(http_conn *c) {
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (c->req.method != HTTP_GET && c->req.method != HTTP_HEAD) {
    answer_status(c, HTTP_BAD_METHOD);
    return;
  }
  c->pending = 1;
  c->srv->handler(c, c->req.path, c->srv->arg);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  http_conn *c = h->data;
  (void)suggested;
  *buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  http_conn *c = stream->data;
  if (nread == 0 || c->answered || c->pending)
    return;
  if (nread < 0) {
    /* The client went away before its request was whole. */
    conn_close(c);
    return;
  }
  int rc = http_request_feed(&c->req, buf->base, (size_t)nread);
  if (rc == HTTP_OK)
    dispatch(c);
  else if (rc != HTTP_NEED_MORE)
    answer_status(c, rc);
}

static void on_timeout(uv_timer_t *t) {
  http_conn *c = t->data;
  if (c->pending)
    return; /* the handler is bounded; its answer restarts the timer */
  if (!c->answered && c->req.bytes > 0) {
    answer_status(c, HTTP_TIMEOUT);
    return;
  }
  if (!c->answered)
    c->srv->counts[HTTP_TIMEOUT]++;
  conn_close(c);
}

static void on_connection(uv_stream_t *listener, int status) {
  http_server *s = listener->data;
  if (status != 0 || s->stopping)
    return;
  http_conn *c = xcalloc(1, sizeof(*c));
  c->srv = s;
  c->tcp.data = c->timer.data = c;
  http_request_init(&c->req);
  if (uv_tcp_init(s->loop, &c->tcp) != 0) {
    free(c);
    return;
  }
  c->handles = 1;
  s->open++;
  if (uv_timer_init(s->loop, &c->timer) == 0) {
    c->timer_ok = 1;
    c->handles++;
  }
  if (!c->timer_ok || uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    c->closing = 1;
    close_handles(c);
    return;
  }
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  uv_timer_start(&c->timer, on_timeout, HTTP_TIMEOUT_MS, 0);
  if (s->nconns > HTTP_MAX_CONNECTIONS) {
    answer_status(c, HTTP_UNAVAILABLE);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* tcp://HOST:PORT, HOST a numeric address (IPv6 in brackets), read by
 * the one URL parser (common/url.h) the agents' listeners use too. */
static int parse_address(const char *text, struct sockaddr_storage *ss) {
  url u;
  if (tw__url_parse(text, URL_LISTEN, &u) != 0 || u.scheme != URL_TCP)
    return UV_EINVAL;
  if (uv_ip4_addr(u.host, u.port, (struct sockaddr_in *)ss) != 0 &&
      uv_ip6_addr(u.host, u.port, (struct sockaddr_in6 *)ss) != 0)
    return UV_EINVAL;
  return 0;
}

static void record_url(http_server *s) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char ip[64] = "";
  if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0)
    return;
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
    snprintf(s->url, sizeof(s->url), "tcp://[%s]:%d", ip,
             ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
  } else {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
    snprintf(s->url, sizeof(s->url), "tcp://%s:%d", ip,
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
  }
}

static void on_listener_closed(uv_handle_t *h) {
  server_release(h->data);
}

http_server *http_start(uv_loop_t *loop, const char *url, http_handler handler,
                        void *arg, uint64_t *counts, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  int rc = parse_address(url, &ss);
  if (rc != 0) {
    snprintf(err, errlen, "expected tcp://HOST:PORT with an IP address");
    return NULL;
  }
  http_server *s = xcalloc(1, sizeof(*s));
  s->loop = loop;
  s->handler = handler;
  s->arg = arg;
  s->counts = counts;
  s->listener.data = s;
  if ((rc = uv_tcp_init(loop, &s->listener)) != 0) {
    snprintf(err, errlen, "%s", uv_strerror(rc));
    free(s);
    return NULL;
  }
  s->open = 1;
  if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&s->listener, 64, on_connection)) != 0) {
    snprintf(err, errlen, "%s", uv_strerror(rc));
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    return NULL;
  }
  record_url(s);
  return s;
}

const char *http_url(const http_server *s) {
  return s->url;
}

void http_stop(http_server *s) {
  if (s == NULL)
    return;
  s->stopping = 1;
  while (s->conns)
    conn_close(s->conns);
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}
