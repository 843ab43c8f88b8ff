/*
 * curl_dl - libcurl, loaded when the OTLP export first needs it.
 *
 * `taskwatch` is one binary for every subcommand, and libcurl brings some
 * thirty shared libraries with it: linked, they cost every `taskwatch
 * query` and `top` start 20-30 ms of loading before any work. So the
 * collector's export code is compiled against curl.h as usual but calls
 * libcurl through this table, filled by dlopen(3) of libcurl.so.4 (the
 * ABI Debian's libcurl4 packages provide) the first time a caller asks.
 *
 * Include this header instead of <curl/curl.h>: after it, the usual curl_*
 * names call through the table. curl_dl_load() must have returned 0 first.
 */
#ifndef TW_COLLECTOR_CURL_DL_H
#define TW_COLLECTOR_CURL_DL_H

#include <stddef.h>
#include <time.h>

/* curl's type-checking macros wrap curl_easy_setopt and friends; the
 * redirection below replaces those names, so they are off here. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

/* XX(name, return type, parameters): every libcurl function used. */
#define CURL_DL_MAP(XX)                                                        \
  XX(curl_global_init, CURLcode, (long flags))                                 \
  XX(curl_global_cleanup, void, (void))                                        \
  XX(curl_easy_init, CURL *, (void))                                           \
  XX(curl_easy_cleanup, void, (CURL * curl))                                   \
  XX(curl_easy_setopt, CURLcode, (CURL * curl, CURLoption option, ...))        \
  XX(curl_easy_getinfo, CURLcode, (CURL * curl, CURLINFO info, ...))           \
  XX(curl_easy_perform, CURLcode, (CURL * curl))                               \
  XX(curl_easy_strerror, const char *, (CURLcode code))                        \
  XX(curl_slist_append, struct curl_slist *,                                   \
     (struct curl_slist * list, const char *string))                           \
  XX(curl_slist_free_all, void, (struct curl_slist * list))                    \
  XX(curl_getdate, time_t, (const char *p, const time_t *unused))

typedef struct curl_dl {
#define CURL_DL_MEMBER(name, ret, params) ret(*name) params;
  CURL_DL_MAP(CURL_DL_MEMBER)
#undef CURL_DL_MEMBER
} curl_dl;

extern curl_dl tw__curl;

/* Loads libcurl once (thread-safe). 0, or -1 with a one-line reason in
 * err ("cannot load libcurl.so.4: ..."). Later calls give the same. */
int curl_dl_load(char *err, size_t errlen);

#ifndef CURL_DL_NO_REDIRECT /* curl_dl.c names the members themselves */
#define curl_global_init (*tw__curl.curl_global_init)
#define curl_global_cleanup (*tw__curl.curl_global_cleanup)
#define curl_easy_init (*tw__curl.curl_easy_init)
#define curl_easy_cleanup (*tw__curl.curl_easy_cleanup)
/* curl.h makes these two macros that check their count of arguments. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_easy_setopt (*tw__curl.curl_easy_setopt)
#define curl_easy_getinfo (*tw__curl.curl_easy_getinfo)
#define curl_easy_perform (*tw__curl.curl_easy_perform)
#define curl_easy_strerror (*tw__curl.curl_easy_strerror)
#define curl_slist_append (*tw__curl.curl_slist_append)
#define curl_slist_free_all (*tw__curl.curl_slist_free_all)
#define curl_getdate (*tw__curl.curl_getdate)
#endif

#endif /* TW_COLLECTOR_CURL_DL_H */
