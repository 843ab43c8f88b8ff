/*
 * test_filter - the filter language, judged by what it selects: each filter
 * runs against the fixture store (test_query_fixture.h) and must return
 * exactly the expected tasks. Hostile input (quotes, SQL, unicode, control
 * bytes, huge numbers) must either select by its literal text or be refused
 * with a one-line reason, and never change the database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "filter.h"
#include "test_query_fixture.h"

static int setup(void **state) {
  sqlite3 *db = fixture_open(":memory:");
  *state = db;
  return db == NULL ? -1 : 0;
}

static int teardown(void **state) {
  sqlite3_close(*state);
  return 0;
}

/* Runs `text` and returns the matching tasks' local ids, "1,2,3", or
 * "ERR" when the filter does not parse. */
static const char *run(sqlite3 *db, const char *text) {
  static char out[256];
  char err[256] = "";
  filter *f = NULL;
  if (filter_parse(text, FIX_NOW, &f, err, sizeof(err)) != 0) {
    assert_null(f);
    assert_true(strlen(err) > 0);
    assert_null(strchr(err, '\n'));
    return "ERR";
  }
  char sql[4096];
  snprintf(sql, sizeof(sql),
           "SELECT t.id FROM tasks t JOIN agents a ON a.id = t.agent"
           " LEFT JOIN batches b ON b.id = t.batch WHERE %s ORDER BY t.id",
           filter_sql(f));
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    fail_msg("bad SQL for '%s': %s\n%s", text, sqlite3_errmsg(db), sql);
  assert_int_equal(filter_bind(f, st, 1), filter_param_count(f) + 1);
  out[0] = '\0';
  while (sqlite3_step(st) == SQLITE_ROW) {
    size_t n = strlen(out);
    snprintf(out + n, sizeof(out) - n, "%s%lld", n ? "," : "",
             (long long)(sqlite3_column_int64(st, 0) & SCHEMA_LOCAL_MASK));
  }
  sqlite3_finalize(st);
  filter_free(f);
  return out;
}

#define CHECK(text, want) assert_string_equal(run(db, text), want)

static void empty_matches_all(void **state) {
  sqlite3 *db = *state;
  CHECK("", "1,2,3,4,5,6,7,8,9");
  CHECK("   \t ", "1,2,3,4,5,6,7,8,9");
  filter *f = NULL;
  char err[64];
  assert_int_equal(filter_parse("", 0, &f, err, sizeof(err)), 0);
  assert_string_equal(filter_sql(f), "1");
  assert_true(filter_is_empty(f));
  filter_free(f);
}

static void status_terms(void **state) {
  sqlite3 *db = *state;
  CHECK("status:failed", "2,9");
  CHECK("status:failed,skipped", "2,3,9");
  CHECK("status=succeeded", "1,4");
  CHECK("!status:succeeded", "2,3,5,6,7,8,9");
  CHECK("not status:succeeded,failed", "3,5,6,7,8");
  CHECK("not  status:succeeded status:failed", "2,9");
  /* '-' is how options start: a negation written so is refused, in any
   * place, rather than read one way here and another on a command line. */
  CHECK("-status:succeeded,failed", "ERR");
  CHECK("status:failed -name:x", "ERR");
  CHECK("-email", "ERR");
  CHECK("not", "ERR");
  CHECK("status:failed not", "ERR");
  CHECK("! status:failed", "ERR");
  CHECK("!!status:failed", "ERR");
  CHECK("not !status:failed", "ERR");
  CHECK("!not status:failed", "ERR");
  /* "not" is a word like any other when a term does not follow it. */
  CHECK("notify", "");
  CHECK("\"not\"", "1"); /* write_notification */
  CHECK("status:queued status:running", "");
  CHECK("status:lost", "8");
  CHECK("status:dropped", "7");
  CHECK("status:Failed", "ERR");
  CHECK("status:bogus", "ERR");
  CHECK("status:", "ERR");
  CHECK("status:failed,", "ERR");
}

static void name_globs(void **state) {
  sqlite3 *db = *state;
  CHECK("name:send_*", "2,5,9");
  CHECK("name:send_email", "2,9");
  CHECK("name:send_?ms", "5");
  CHECK("name:*log", "3");
  CHECK("name:write_*,fetch", "1,3,4");
  CHECK("name:SEND_EMAIL", "");
  CHECK("!name:send_*", "1,3,4,6,7,8");
  /* A literal star: escaped, or quoted with an escape. */
  CHECK("name:a\\*b", "7");
  CHECK("name:\"a\\*b\"", "7");
  CHECK("name:a?b", "7");
  CHECK("name:a\\?b", "");
  /* '[' is not a character class in our globs. */
  CHECK("name:[a]*", "");
  /* Unicode, by prefix, infix and whole. */
  CHECK("name:na\xc3\xaf*", "6");
  CHECK("name:*\xc3\xaf*", "6");
  CHECK("name:'na\xc3\xafve_task'", "6");
  CHECK("name:naive_task", "");
  /* A bare word is a name substring. */
  CHECK("email", "2,9");
  CHECK("!email", "1,3,4,5,6,7,8");
}

static void agent_and_batch_terms(void **state) {
  sqlite3 *db = *state;
  CHECK("service:api", "1,2,3,4,5");
  CHECK("service:work*", "6,7,8,9");
  CHECK("host:web-2", "6,7,8,9");
  CHECK("host:web-*", "1,2,3,4,5,6,7,8,9");
  CHECK("pid:200", "6,7,8,9");
  CHECK("pid:100,200", "1,2,3,4,5,6,7,8,9");
  CHECK("label:\"POST /send*\"", "1,2,3,9");
  CHECK("label:POST\\ /send*", "1,2,3,9");
  /* A value with a blank, unquoted (one shell word: query 'label:POST
   * /send*'), would be two terms that match nothing: refused instead. */
  CHECK("label:POST /send*", "ERR");
  CHECK("!label:POST /send*", "ERR");
  CHECK("error:connection refused", "ERR");
  /* Other terms after a value, and words after a quoted value, stay. */
  CHECK("label:POST* status:failed", "2,9");
  CHECK("label:'POST /send*' email", "2,9");
  CHECK("email label:POST*", "2,9");
  CHECK("label:POST* !email", "1,3");
  CHECK("label:'GET /items'", "4,5");
  /* Tasks of an unlabelled batch do not match a label, and do match its
   * negation. */
  CHECK("!label:GET*", "1,2,3,6,7,8,9");
  CHECK("label:*", "1,2,3,4,5,9");
  char text[64];
  snprintf(text, sizeof(text), "batch:%lld", (long long)FIX_BATCH(2));
  CHECK(text, "4,5");
  snprintf(text, sizeof(text), "batch:%lld,%lld", (long long)FIX_BATCH(2),
           (long long)FIX_BATCH(3));
  CHECK(text, "4,5,6,7,8");
  CHECK("batch:'GET *'", "4,5");
  snprintf(text, sizeof(text), "id:%lld", (long long)FIX_ID(3));
  CHECK(text, "3");
  CHECK("mode:loop", "1,4,5,7,8");
  CHECK("mode:threadpool", "2,3,6,9");
  CHECK("mode:fiber", "ERR");
  CHECK("position>0", "2,3,5,7,8");
  CHECK("pos:0", "1,4,6,9");
  CHECK("position<=1 position>=1", "2,5,7");
}

static void error_substring(void **state) {
  sqlite3 *db = *state;
  CHECK("error:timeout", "2,9");
  CHECK("error:TIMEOUT", "2,9");
  CHECK("error:smtp", "2");
  CHECK("error:'timed out'", "9");
  CHECK("!error:timeout", "1,3,4,5,6,7,8");
  /* LIKE's own wildcards are literal here. */
  CHECK("error:%", "");
  CHECK("error:_", "");
  CHECK("error:T_me", "");
}

static void time_terms(void **state) {
  sqlite3 *db = *state;
  /* now is T0 + 2h */
  CHECK("since:1h", "6,7,8");
  CHECK("until:1h", "1,2,3,4,5,9");
  CHECK("since:2h", "1,2,3,4,5,6,7,8,9");
  CHECK("since:90m until:30m", "6,7");
  CHECK("since:1h1s", "6,7,8");
  CHECK("since:2026-11-22T10:01:00Z", "4,5,6,7,8,9");
  CHECK("until:2026-11-22T10:01:00Z", "1,2,3");
  CHECK("since:2026-11-22T11:01:00+01:00", "4,5,6,7,8,9");
  CHECK("since:'2026-11-22 10:00:00.001'", "2,3,4,5,6,7,8,9");
  CHECK("since:2026-11-22T10:00:00.001000Z until:2026-11-22T10:00:00.002Z",
        "2");
  CHECK("since:2026-11-23", "");
  CHECK("until:2026-11-22", "");
  CHECK("since:now", "8");
  CHECK("!since:1h", "1,2,3,4,5,9");
  CHECK("since:2026-13-01", "ERR");
  CHECK("since:2026-02-29", "ERR");
  CHECK("since:2026-11-22T25:00:00Z", "ERR");
  CHECK("since:yesterday", "ERR");
  CHECK("since>1h", "ERR");
}

static void duration_terms(void **state) {
  sqlite3 *db = *state;
  CHECK("wait>200ms", "4");
  CHECK("wait<2ms", "1");
  CHECK("wait<=2ms", "1,2");
  CHECK("wait:>=5ms", "4,5,9");
  CHECK("run>=1.5s", "4,9");
  CHECK("run>1.5s", "4");
  CHECK("run<1s", "1,2");
  CHECK("!run>1s", "1,2,3,5,6,7,8");
  CHECK("run>0.25s run<=250ms", "");
  CHECK("run>=250000us run<=250ms", "2");
  CHECK("run>1m", "");
  CHECK("wait:200ms", "ERR");
  CHECK("wait>", "ERR");
  CHECK("wait>fast", "ERR");
  CHECK("wait>-1s", "ERR");
  CHECK("wait>10", "ERR");
}

static void combinations(void **state) {
  sqlite3 *db = *state;
  CHECK("status:failed name:send_* service:api", "2");
  CHECK("status:failed since:1h", "");
  CHECK("status:failed,skipped label:POST* until:10m !error:smtp", "3,9");
  CHECK("service:api run>100ms", "2,4");
}

static void hostile_input(void **state) {
  sqlite3 *db = *state;
  /* SQL in values is only ever text to compare with. */
  CHECK("name:\"evil'; DROP TABLE tasks; --\"", "8");
  CHECK("name:\"'; DROP TABLE tasks; --\"", "");
  CHECK("name:\"1' OR '1'='1\"", "");
  CHECK("error:\"' OR 1=1 --\"", "");
  CHECK("service:\"api' OR '1'='1\"", "");
  CHECK("label:\"); DELETE FROM tasks; --\"", "");
  CHECK("\"evil';\"", "8");
  /* SQL or junk in keys is refused. */
  CHECK("na'me:x", "ERR");
  CHECK("nosuchkey:x", "ERR");
  CHECK("1=1", ""); /* a bare word: no task name contains "1=1" */
  /* Quoting errors. */
  CHECK("name:\"unterminated", "ERR");
  CHECK("name:'x", "ERR");
  CHECK("name:x\\", "ERR");
  CHECK("!", "ERR");
  CHECK("name:x:y", "");
  /* Huge numbers. */
  CHECK("id:99999999999999999999999999", "ERR");
  CHECK("pid:-99999999999999999999", "ERR");
  CHECK("wait>99999999999999999999us", "ERR");
  CHECK("run>9999999999999d", "ERR");
  CHECK("since:99999999999999999h", "ERR");
  CHECK("position>1e9", "ERR");
  /* Control bytes and escape sequences are plain text. */
  CHECK("name:\"\x1b[31m\"", "");
  CHECK("error:\"\x07\x1b]52;c;aGk=\x07\"", "");
  CHECK("name:\xff\xfe", "");
  /* The tables are all still there. */
  sqlite3_stmt *st = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(db, "SELECT count(*) FROM tasks", -1, &st, NULL),
      SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 9);
  sqlite3_finalize(st);
}

static void values_are_bound_not_spliced(void **state) {
  (void)state;
  filter *f = NULL;
  char err[128];
  assert_int_equal(filter_parse("name:\"x'y\" error:zzz_ since:1h status:lost",
                                FIX_NOW, &f, err, sizeof(err)),
                   0);
  const char *sql = filter_sql(f);
  assert_null(strstr(sql, "x'y"));
  assert_null(strstr(sql, "zzz"));
  assert_null(strstr(sql, "lost"));
  assert_non_null(strstr(sql, "?1"));
  filter_free(f);
}

static void renumbered_parameters(void **state) {
  sqlite3 *db = *state;
  filter *f = NULL;
  char err[128];
  assert_int_equal(
      filter_parse("status:failed name:send_*", FIX_NOW, &f, err, sizeof(err)),
      0);
  char *where = filter_sql_at(f, 3);
  assert_null(strstr(where, "?1 "));
  char sql[2048];
  snprintf(sql, sizeof(sql),
           "SELECT count(*) FROM tasks t JOIN agents a ON a.id = t.agent"
           " LEFT JOIN batches b ON b.id = t.batch"
           " WHERE t.position >= ?1 AND t.position <= ?2 AND %s",
           where);
  free(where);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  sqlite3_bind_int(st, 1, 1);
  sqlite3_bind_int(st, 2, 1);
  assert_int_equal(filter_bind(f, st, 3), 3 + filter_param_count(f));
  assert_int_equal(sqlite3_bind_parameter_count(st), 2 + filter_param_count(f));
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 1); /* task 2 */
  sqlite3_finalize(st);
  filter_free(f);
}

/* What a filter uses, as the rollups' callers read it. */
static void uses_kinds_of_terms(void **state) {
  (void)state;
  static const struct {
    const char *text;
    unsigned uses;
  } cases[] = {
      {"", 0},
      {"email name:send_*", FILTER_USES_NAME},
      {"service:api", FILTER_USES_SERVICE | FILTER_USES_JOIN},
      {"since:1h until:now", FILTER_USES_TIME},
      {"!since:1h", FILTER_USES_OTHER},
      {"host:web-1 label:x", FILTER_USES_OTHER | FILTER_USES_JOIN},
      {"status:failed service:w* since:1d",
       FILTER_USES_OTHER | FILTER_USES_SERVICE | FILTER_USES_TIME |
           FILTER_USES_JOIN},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    filter *f = NULL;
    char err[128];
    assert_int_equal(filter_parse(cases[i].text, FIX_NOW, &f, err, sizeof(err)),
                     0);
    if (filter_uses(f) != cases[i].uses)
      fail_msg("'%s' uses %u, not %u", cases[i].text, filter_uses(f),
               cases[i].uses);
    filter_free(f);
  }
}

/* Columns mapped to a summary's own, whole names only, parameters
 * renumbered: the filter runs over a table that is not tasks. */
static void mapped_columns(void **state) {
  sqlite3 *db = *state;
  filter *f = NULL;
  char err[128];
  assert_int_equal(filter_parse("name:send_* !service:worker since:1h", FIX_NOW,
                                &f, err, sizeof(err)),
                   0);
  static const char *const map[][2] = {
      {"t.name", "s.n"}, {"a.service", "s.svc"}, {"t.enqueued_at", "s.at"}};
  char *where = filter_sql_map(f, 2, map, 3);
  assert_null(strstr(where, "t.name"));
  assert_null(strstr(where, "a.service"));
  assert_null(strstr(where, "t.enqueued_at"));
  char sql[2048];
  snprintf(sql, sizeof(sql),
           "SELECT count(*) FROM (SELECT 'send_email' AS n, 'api' AS svc, "
           "?1 AS at UNION ALL SELECT 'send_email', 'worker', ?1 UNION ALL "
           "SELECT 'fetch', 'api', ?1) s WHERE %s",
           where);
  free(where);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  sqlite3_bind_int64(st, 1, FIX_NOW - 60000000);
  assert_int_equal(filter_bind(f, st, 2), 2 + filter_param_count(f));
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 1);
  sqlite3_reset(st);
  sqlite3_bind_int64(st, 1, FIX_NOW - 7200000000);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 0);
  sqlite3_finalize(st);
  filter_free(f);
}

static void add_matches_text(void **state) {
  sqlite3 *db = *state;
  (void)db;
  char err[128];
  /* filter_add takes values literally (no quotes or escapes) and splits
   * lists on commas, like the typed form. */
  filter *a = filter_new(FIX_NOW);
  assert_int_equal(
      filter_add(a, "status", ":", "failed,skipped", 0, err, sizeof(err)), 0);
  assert_int_equal(filter_add(a, "run", ">=", "1s", 1, err, sizeof(err)), 0);
  assert_int_equal(
      filter_add(a, "label", ":", "POST /send*", 0, err, sizeof(err)), 0);
  filter *b = NULL;
  assert_int_equal(filter_parse("status:failed,skipped !run>=1s "
                                "label:\"POST /send*\"",
                                FIX_NOW, &b, err, sizeof(err)),
                   0);
  assert_string_equal(filter_sql(a), filter_sql(b));
  /* A bad term leaves the filter as it was. */
  const char *before = filter_sql(a);
  char *copy = strdup(before);
  int params = filter_param_count(a);
  assert_int_equal(filter_add(a, "wait", ">", "soon", 0, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "wait"));
  assert_int_equal(filter_add(a, "color", ":", "red", 0, err, sizeof(err)), -1);
  assert_int_equal(filter_add(a, "name", "~", "x", 0, err, sizeof(err)), -1);
  assert_int_equal(filter_add_text(a, "name:ok status:nope", err, sizeof(err)),
                   -1);
  assert_int_equal(filter_param_count(a), params + 1); /* name:ok stayed */
  assert_int_equal(strncmp(filter_sql(a), copy, strlen(copy)), 0);
  free(copy);
  filter_free(a);
  filter_free(b);
}

/* Which filters need the agents or batches join (FILTER_USES_JOIN): the
 * dashboard leaves the join out of its counts otherwise. */
/* The states a filter lets through: every status term narrows them, and
 * an error term to failed. */
static void status_sets(void **state) {
  (void)state;
#define BIT(state) (1u << SCHEMA_##state)
  static const struct {
    const char *text;
    unsigned set;
  } cases[] = {
      {"", FILTER_ALL_STATUSES},
      {"name:x since:1h", FILTER_ALL_STATUSES},
      {"status:failed,lost", BIT(FAILED) | BIT(LOST)},
      {"status:failed,lost !status:lost", BIT(FAILED)},
      {"!status:succeeded", FILTER_ALL_STATUSES & ~BIT(SUCCEEDED)},
      {"status:failed status:lost", 0},
      {"state:queued,running mode:loop", BIT(QUEUED) | BIT(RUNNING)},
      {"error:timeout", BIT(FAILED)},
      {"status:failed,lost error:timeout", BIT(FAILED)},
      {"!error:timeout", FILTER_ALL_STATUSES},
      {"status:skipped error:timeout", 0},
  };
#undef BIT
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    filter *f = NULL;
    char err[128];
    assert_int_equal(filter_parse(cases[i].text, FIX_NOW, &f, err, sizeof(err)),
                     0);
    if (filter_statuses(f) != cases[i].set)
      fail_msg("'%s': %#x, not %#x", cases[i].text, filter_statuses(f),
               cases[i].set);
    filter_free(f);
  }
}

static void join_use(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int join;
  } cases[] = {
      {"name:send_* status:failed since:1h run>1s", 0},
      {"email !error:timeout id:5 mode:loop position>0", 0},
      {"batch:123", 0},
      {"service:api", 1},
      {"host:web-1", 1},
      {"pid:100", 1},
      {"label:POST*", 1},
      {"batch:'GET *'", 1},
      {"!service:api", 1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    filter *f = NULL;
    char err[128];
    assert_int_equal(filter_parse(cases[i].text, FIX_NOW, &f, err, sizeof(err)),
                     0);
    if (((filter_uses(f) & FILTER_USES_JOIN) != 0) != cases[i].join)
      fail_msg("'%s': join %d", cases[i].text, !cases[i].join);
    filter_free(f);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(empty_matches_all, setup, teardown),
      cmocka_unit_test_setup_teardown(status_terms, setup, teardown),
      cmocka_unit_test_setup_teardown(name_globs, setup, teardown),
      cmocka_unit_test_setup_teardown(agent_and_batch_terms, setup, teardown),
      cmocka_unit_test_setup_teardown(error_substring, setup, teardown),
      cmocka_unit_test_setup_teardown(time_terms, setup, teardown),
      cmocka_unit_test_setup_teardown(duration_terms, setup, teardown),
      cmocka_unit_test_setup_teardown(combinations, setup, teardown),
      cmocka_unit_test_setup_teardown(hostile_input, setup, teardown),
      cmocka_unit_test_setup_teardown(values_are_bound_not_spliced, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(renumbered_parameters, setup, teardown),
      cmocka_unit_test_setup_teardown(add_matches_text, setup, teardown),
      cmocka_unit_test_setup_teardown(uses_kinds_of_terms, setup, teardown),
      cmocka_unit_test_setup_teardown(mapped_columns, setup, teardown),
      cmocka_unit_test(join_use),
      cmocka_unit_test(status_sets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
