/*
 * http - a small HTTP/1.x server on the collector's loop, for the metrics
 * endpoint: requests are parsed by Debian's http-parser, bounded in size,
 * number and time, and answered once, then the connection closes. Anything
 * else than a well-formed GET or HEAD without a body is answered with its
 * 4xx status and costs nothing more; a client that does not finish its
 * request in time gets 408.
 *
 * The request parser (http_request_*) stands on its own, without libuv, so
 * the unit tests and the libFuzzer target drive it directly.
 */
#ifndef TW_COLLECTOR_HTTP_H
#define TW_COLLECTOR_HTTP_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The bounds of a request and of the server. */
#define HTTP_MAX_REQUEST 8192 /* request line and headers, in bytes */
#define HTTP_MAX_PATH 1024    /* the request target */
#define HTTP_MAX_CONNECTIONS 16
#define HTTP_TIMEOUT_MS                                                        \
  10000 /* to send the request, and to read the answer                         \
         */

/* Every status the server answers with: X(NAME, code, reason). */
#define HTTP_ANSWER_MAP(X)                                                     \
  X(OK, 200, "OK")                                                             \
  X(BAD_REQUEST, 400, "Bad Request")                                           \
  X(NOT_FOUND, 404, "Not Found")                                               \
  X(BAD_METHOD, 405, "Method Not Allowed")                                     \
  X(TIMEOUT, 408, "Request Timeout")                                           \
  X(BODY, 413, "Content Too Large")                                            \
  X(URI_TOO_LONG, 414, "URI Too Long")                                         \
  X(HEADERS_TOO_LARGE, 431, "Request Header Fields Too Large")                 \
  X(UNAVAILABLE, 503, "Service Unavailable")

#define HTTP_ANSWER_INDEX(name, code, reason) HTTP_##name,
enum http_answer { HTTP_ANSWER_MAP(HTTP_ANSWER_INDEX) HTTP_ANSWER_COUNT };
#undef HTTP_ANSWER_INDEX

/* The numeric code and the reason phrase of a status. */
int http_status_code(int status);
const char *http_status_reason(int status);

/* ---- the request parser ------------------------------------------------- */

enum { HTTP_NEED_MORE = -1 };

typedef struct http_request {
  http_parser parser;
  size_t bytes; /* fed so far */
  int done;     /* the message is complete */
  int status;   /* set on a bad request: the http_answer to answer */
  int method;   /* http_parser's HTTP_GET, HTTP_HEAD, ... */
  char path[HTTP_MAX_PATH + 1]; /* the target without its query string */
  size_t path_len;
  int path_done; /* the query string began: the rest of the URL is skipped */
} http_request;

void http_request_init(http_request *r);
/*
 * Feeds n bytes of the connection. Returns HTTP_NEED_MORE, HTTP_OK (0)
 * once a whole request without a body is read, or the http_answer to
 * answer a bad one with (and r->status says it again). Bytes after a
 * complete request are ignored.
 */
int http_request_feed(http_request *r, const char *data, size_t n);

/* ---- the server --------------------------------------------------------- */

typedef struct http_server http_server;
typedef struct http_conn http_conn;

/*
 * Called on the loop for each complete GET or HEAD request; path is the
 * target without its query string. The handler answers with
 * http_respond(), now or later (from an after-work callback, say); the
 * connection waits for it.
 */
typedef void (*http_handler)(http_conn *c, const char *path, void *arg);

/*
 * Listens on url (tcp://HOST:PORT; port 0 picks one). Returns the server,
 * or NULL with a one-line reason in err. Every answer the server gives is
 * counted in counts[status] (the caller's array of HTTP_ANSWER_COUNT).
 */
http_server *http_start(uv_loop_t *loop, const char *url, http_handler handler,
                        void *arg, uint64_t *counts, char *err, size_t errlen);
/* The address it listens on, as tcp://HOST:PORT (port 0 resolved). */
const char *http_url(const http_server *s);
/*
 * Answers c's request with status, content_type and the body (len bytes,
 * copied; left out for HEAD), then closes the connection. Exactly once
 * per handler call.
 */
void http_respond(http_conn *c, int status, const char *content_type,
                  const char *body, size_t len);
/* Closes the listener and every connection. The server is freed once
 * their handles are closed (the loop runs their callbacks); a response
 * still pending is dropped when it comes. */
void http_stop(http_server *s);

#endif /* TW_COLLECTOR_HTTP_H */
