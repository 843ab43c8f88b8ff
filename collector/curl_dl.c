/*
 * curl_dl - see curl_dl.h.
 */
#define CURL_DL_NO_REDIRECT
#include "curl_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define CURL_SONAME "libcurl.so.4"

curl_dl tw__curl;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char failure[256] = "not loaded"; /* empty once loaded */

static void load(void) {
  void *h = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    snprintf(failure, sizeof(failure), "cannot load %s: %s", CURL_SONAME,
             dlerror());
    return;
  }
  void *sym;
#define CURL_DL_RESOLVE(name, ret, params)                                     \
  sym = dlsym(h, #name);                                                       \
  if (sym == NULL) {                                                           \
    snprintf(failure, sizeof(failure), "%s lacks %s", CURL_SONAME, #name);     \
    return;                                                                    \
  }                                                                            \
  memcpy(&tw__curl.name, &sym, sizeof(sym));
  CURL_DL_MAP(CURL_DL_RESOLVE)
#undef CURL_DL_RESOLVE
  failure[0] = '\0';
}

int curl_dl_load(char *err, size_t errlen) {
  pthread_once(&once, load);
  if (failure[0] == '\0')
    return 0;
  if (err != NULL && errlen > 0)
    snprintf(err, errlen, "%s", failure);
  return -1;
}
