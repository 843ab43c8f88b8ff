/*
 * test_agent_tls - the agent's side of tls:// against the real collector
 * (its path is the first argument): delivery with the collector's CA, and
 * the reason the agent keeps as its last refusal when it refuses the
 * collector (a CA it does not trust, a certificate for another host, an
 * expired one, a plaintext listener, a CA file it cannot read).
 * Certificates are made with the openssl tool at test time.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../agent/agent_internal.h"
#include "taskwatch.h"

static const char *collector_bin;
static char dir[64];

static void sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  assert_int_equal(system(cmd), 0);
}

/* CA `ca`, and a server certificate `name` it signs for san (expired when
 * asked: only `openssl ca` sets both dates). */
static void make_ca(const char *ca) {
  sh("cd %s && openssl req -x509 -newkey ec -pkeyopt "
     "ec_paramgen_curve:P-256 -nodes -keyout %s.key -out %s.pem -subj /CN=%s "
     "-days 2 -addext basicConstraints=critical,CA:TRUE 2>/dev/null",
     dir, ca, ca, ca);
}

static void make_cert(const char *name, const char *ca, const char *san,
                      int expired) {
  sh("cd %s && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
     "-nodes -keyout %s.key -out %s.csr -subj /CN=%s 2>/dev/null && "
     "printf 'subjectAltName=%s\\n' > %s.ext",
     dir, name, name, name, san, name);
  if (!expired) {
    sh("cd %s && openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key "
       "-CAcreateserial -out %s.pem -days 2 -extfile %s.ext 2>/dev/null",
       dir, name, ca, ca, name, name);
    return;
  }
  sh("cd %s && : > index && echo 1000 > serial && printf '[ca]\\ndefault_ca "
     "= d\\n[d]\\ndatabase = index\\nnew_certs_dir = .\\nserial = serial\\n"
     "default_md = sha256\\npolicy = p\\n[p]\\ncommonName = supplied\\n' > "
     "ca.cnf && openssl ca -batch -notext -config ca.cnf -cert %s.pem "
     "-keyfile %s.key -in %s.csr -out %s.pem -startdate 20200101000000Z "
     "-enddate 20200102000000Z -extfile %s.ext 2>/dev/null",
     dir, ca, ca, name, name, name);
}

typedef struct collector {
  pid_t pid;
  char url[128];
} collector;

/* Starts the collector on a free port (tls:// with cert NAME, or tcp://
 * when name is NULL) and reads its URL from its log. */
static void start(collector *c, const char *name) {
  char log[128], db[128], cert[128], key[128];
  snprintf(log, sizeof(log), "%s/collector.log", dir);
  snprintf(db, sizeof(db), "%s/store-%s.db", dir, name ? name : "plain");
  snprintf(cert, sizeof(cert), "%s/%s.pem", dir, name ? name : "");
  snprintf(key, sizeof(key), "%s/%s.key", dir, name ? name : "");
  unlink(log);
  c->pid = fork();
  assert_true(c->pid >= 0);
  if (c->pid == 0) {
    if (freopen(log, "w", stderr) == NULL)
      _exit(127);
    if (name)
      execl(collector_bin, collector_bin, "collector", "--db", db, "--listen",
            "tls://127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
            (char *)NULL);
    else
      execl(collector_bin, collector_bin, "collector", "--db", db, "--listen",
            "tcp://127.0.0.1:0", (char *)NULL);
    _exit(127);
  }
  for (int waited = 0; waited < 10000; waited += 10) {
    char text[4096] = "";
    FILE *f = fopen(log, "r");
    if (f != NULL) {
      size_t n = fread(text, 1, sizeof(text) - 1, f);
      text[n] = '\0';
      fclose(f);
    }
    const char *at = strstr(text, "listening url=");
    if (at != NULL && strchr(at, '\n') != NULL) {
      sscanf(at + strlen("listening url="), "%127s", c->url);
      return;
    }
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, NULL);
  }
  fail_msg("the collector did not start");
}

static void stop(collector *c) {
  kill(c->pid, SIGTERM);
  int status;
  waitpid(c->pid, &status, 0);
}

static tw_agent *agent(const char *url, const char *ca) {
  char path[128];
  tw_config cfg;
  tw_config_init(&cfg);
  cfg.collector = url;
  cfg.service = "tls-agent";
  cfg.flush_timeout_ms = 100;
  if (ca != NULL) {
    snprintf(path, sizeof(path), "%s/%s.pem", ca[0] == '/' ? "" : dir, ca);
    cfg.tls_ca = ca[0] == '/' ? ca : path;
  }
  tw_agent *a = NULL;
  assert_int_equal(tw_agent_new(&cfg, &a), 0);
  tw_id batch;
  assert_int_equal(tw_batch_begin(a, "tls", &batch), 0);
  return a;
}

/* The agent's last refusal comes to contain want. */
static void refused(tw_agent *a, const char *want) {
  char why[LIMIT_REFUSAL_TEXT] = "";
  for (int waited = 0; waited < 10000; waited += 5) {
    if (tw__sender_refusal(a, why, sizeof(why)) == TW_REFUSAL_TLS &&
        strstr(why, want) != NULL)
      return;
    struct timespec ts = {0, 5 * 1000000};
    nanosleep(&ts, NULL);
  }
  fail_msg("last refusal %s, not %s", why, want);
}

static void refusals_say_why(void **state) {
  (void)state;
  make_ca("ca");
  make_ca("other");
  make_cert("good", "ca", "IP:127.0.0.1", 0);
  make_cert("elsewhere", "ca", "DNS:collector.invalid", 0);
  make_cert("expired", "ca", "IP:127.0.0.1", 1);
  collector c;
  start(&c, "good");
  tw_agent *a = agent(c.url, "ca");
  assert_int_equal(tw_agent_flush(a, 20000), 0);
  tw_agent_free(a);
  a = agent(c.url, "other");
  refused(a, "handshake: certificate verify failed (unable to "
             "get local issuer certificate)");
  tw_agent_free(a);
  a = agent(c.url, "/nonexistent/ca.pem");
  refused(a, "cannot load TASKWATCH_TLS_CA /nonexistent/ca.pem: No such "
             "file or directory");
  tw_agent_free(a);
  stop(&c);
  start(&c, "elsewhere");
  a = agent(c.url, "ca");
  refused(a, "handshake: certificate verify failed (IP address "
             "mismatch)");
  tw_agent_free(a);
  stop(&c);
  start(&c, "expired");
  a = agent(c.url, "ca");
  refused(a, "handshake: certificate verify failed (certificate "
             "has expired)");
  tw_agent_free(a);
  stop(&c);
  start(&c, NULL);
  char url[160];
  snprintf(url, sizeof(url), "tls://%s", c.url + strlen("tcp://"));
  a = agent(url, "ca");
  refused(a, "handshake: ");
  tw_agent_free(a);
  stop(&c);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_agent_tls TASKWATCH_BIN\n");
    return 2;
  }
  collector_bin = argv[1];
  snprintf(dir, sizeof(dir), "/tmp/tw-agent-tls-XXXXXX");
  if (mkdtemp(dir) == NULL)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(refusals_say_why),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    rc = 1;
  return rc;
}
