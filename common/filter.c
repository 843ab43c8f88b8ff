/*
 * filter - parses the filter language (see filter.h) and compiles each term
 * to SQL at once, so a filter is just an SQL text plus its parameters.
 *
 * Values travel inside the parser in an "escaped form": the text with a
 * backslash before each literal '\', '*' and '?', so a glob knows which
 * stars the user escaped and every other kind of term can recover the plain
 * text. Parameters are written as ?N numbered from 1; since the generated
 * SQL holds no other '?', renumbering from another base is a plain scan.
 *
 * Two details exist for speed on big stores: a glob with a literal prefix
 * also gets a range on that prefix (so `name:send_*` walks the name index),
 * and a status term without "succeeded" also states SCHEMA_SQL_UNUSUAL
 * (`status <> 2`), the condition of the partial index tasks_unusual,
 * which SQLite can only use when the query states it literally. An error
 * term says SCHEMA_SQL_FAILED the same way, since only failed tasks have
 * error text.
 */
#include "filter.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "schema.h"
#include "xalloc.h"

typedef struct param {
  int is_text;
  int64_t num;
  char *text;
  size_t len;
} param;

struct filter {
  int64_t now_us;
  format_buf sql;
  param *params;
  int nparams;
  int cap;
  unsigned uses;
  int64_t since, until; /* from positive since:/until: terms */
  unsigned statuses;    /* the states status terms let through, a bit each */
};

typedef enum kind {
  K_STATUS,
  K_GLOB,
  K_BATCH,
  K_INT,
  K_POSITION,
  K_MODE,
  K_ERROR,
  K_SINCE,
  K_UNTIL,
  K_DURATION,
  K_WORD
} kind;

typedef struct key_def {
  const char *name;
  kind kind;
  const char *column;
} key_def;

static const key_def keys[] = {
    {"status", K_STATUS, "t.status"},
    {"state", K_STATUS, "t.status"},
    {"name", K_GLOB, "t.name"},
    {"service", K_GLOB, "a.service"},
    {"host", K_GLOB, "a.host"},
    {"label", K_GLOB, "b.label"},
    {"batch", K_BATCH, "t.batch"},
    {"id", K_INT, "t.id"},
    {"pid", K_INT, "a.pid"},
    {"position", K_POSITION, "t.position"},
    {"pos", K_POSITION, "t.position"},
    {"mode", K_MODE, "t.mode"},
    {"error", K_ERROR, NULL},
    {"since", K_SINCE, "t.enqueued_at"},
    {"until", K_UNTIL, "t.enqueued_at"},
    {"wait", K_DURATION, "t.wait_us"},
    {"run", K_DURATION, "t.run_us"},
};

static const key_def *find_key(const char *name, size_t len);

/* One parsed term on its way to SQL. */
typedef struct term {
  const key_def *key;
  const char *op; /* "=" for ':' and '=', else the comparison */
  char **items;   /* escaped form */
  int nitems;
  int negate;
} term;

/* ---- errors and parameters --------------------------------------------- */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* Quotes at most 40 bytes of user text for an error message, replacing
 * anything outside printable ASCII so the message is safe to print. */
static const char *shown(const char *s, char *buf, size_t len) {
  size_t j = 0;
  for (size_t i = 0; s[i] != '\0' && j + 4 < len; i++) {
    if (i == 40) {
      buf[j++] = '.', buf[j++] = '.', buf[j++] = '.';
      break;
    }
    unsigned char c = (unsigned char)s[i];
    buf[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  buf[j] = '\0';
  return buf;
}

static int add_param(filter *f, int is_text, int64_t num, const char *text,
                     size_t len) {
  if (f->nparams == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 8;
    f->params = xrealloc(f->params, (size_t)f->cap * sizeof(param));
  }
  param *p = &f->params[f->nparams++];
  p->is_text = is_text;
  p->num = num;
  p->text = NULL;
  p->len = len;
  if (is_text) {
    p->text = xmalloc(len + 1);
    memcpy(p->text, text, len);
    p->text[len] = '\0';
  }
  return f->nparams;
}

static int int_param(filter *f, int64_t v) {
  return add_param(f, 0, v, NULL, 0);
}

static int text_param(filter *f, const char *s, size_t len) {
  return add_param(f, 1, 0, s, len);
}

/* ---- escaped form -------------------------------------------------------- */

static int is_wild(char c) {
  return c == '*' || c == '?';
}

/* The plain text of an escaped-form value. */
static char *unescape(const char *e) {
  char *out = xmalloc(strlen(e) + 1);
  size_t j = 0;
  for (size_t i = 0; e[i] != '\0'; i++) {
    if (e[i] == '\\' && e[i + 1] != '\0')
      i++;
    out[j++] = e[i];
  }
  out[j] = '\0';
  return out;
}

static int has_wildcard(const char *e) {
  for (size_t i = 0; e[i] != '\0'; i++) {
    if (e[i] == '\\' && e[i + 1] != '\0')
      i++;
    else if (is_wild(e[i]))
      return 1;
  }
  return 0;
}

/* SQLite GLOB pattern: wildcards stay, literal '*', '?' and '[' become
 * one-character classes. The literal prefix goes to `prefix`. */
static void glob_pattern(const char *e, format_buf *glob, format_buf *prefix) {
  int in_prefix = 1;
  for (size_t i = 0; e[i] != '\0'; i++) {
    char c = e[i];
    int literal = 0;
    if (c == '\\' && e[i + 1] != '\0') {
      c = e[++i];
      literal = 1;
    }
    if (!literal && is_wild(c)) {
      in_prefix = 0;
      format_buf_putc(glob, c);
      continue;
    }
    if (in_prefix)
      format_buf_putc(prefix, c);
    if (c == '*' || c == '?' || c == '[') {
      format_buf_putc(glob, '[');
      format_buf_putc(glob, c);
      format_buf_putc(glob, ']');
    } else {
      format_buf_putc(glob, c);
    }
  }
}

/* ---- SQL for each kind of term ------------------------------------------ */

static void sql_glob_item(filter *f, const char *column, const char *e) {
  format_buf glob, prefix;
  format_buf_init(&glob);
  format_buf_init(&prefix);
  glob_pattern(e, &glob, &prefix);
  if (!has_wildcard(e)) {
    int n = text_param(f, prefix.data ? prefix.data : "", prefix.len);
    format_buf_printf(&f->sql, "%s = ?%d", column, n);
    goto out;
  }
  format_buf_puts(&f->sql, "(");
  if (prefix.len > 0) {
    int lo = text_param(f, prefix.data, prefix.len);
    format_buf_printf(&f->sql, "%s >= ?%d AND ", column, lo);
    /* The smallest string above every string with this prefix: drop
     * trailing 0xff bytes, then increment the last byte. */
    size_t n = prefix.len;
    while (n > 0 && (unsigned char)prefix.data[n - 1] == 0xff)
      n--;
    if (n > 0) {
      prefix.data[n - 1] = (char)((unsigned char)prefix.data[n - 1] + 1);
      int hi = text_param(f, prefix.data, n);
      format_buf_printf(&f->sql, "%s < ?%d AND ", column, hi);
    }
  }
  int g = text_param(f, glob.data, glob.len);
  format_buf_printf(&f->sql, "%s GLOB ?%d)", column, g);
out:
  format_buf_fini(&glob);
  format_buf_fini(&prefix);
}

static void sql_error_item(filter *f, const char *e) {
  char *plain = unescape(e);
  format_buf like;
  format_buf_init(&like);
  format_buf_putc(&like, '%');
  for (size_t i = 0; plain[i] != '\0'; i++) {
    if (plain[i] == '%' || plain[i] == '_' || plain[i] == '\\')
      format_buf_putc(&like, '\\');
    format_buf_putc(&like, plain[i]);
  }
  format_buf_putc(&like, '%');
  int n = text_param(f, like.data, like.len);
  format_buf_printf(&f->sql,
                    "(t.error_type LIKE ?%d ESCAPE '\\' OR "
                    "t.error_message LIKE ?%d ESCAPE '\\')",
                    n, n);
  format_buf_fini(&like);
  free(plain);
}

static int parse_int(const char *text, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0')
    return -1;
  *out = v;
  return 0;
}

/* Converts every item of a list term to a number (status and mode names,
 * ids); -1 with a reason when one does not convert. */
static int list_numbers(const term *t, int64_t *nums, char *err,
                        size_t errlen) {
  char show[64];
  for (int i = 0; i < t->nitems; i++) {
    char *plain = unescape(t->items[i]);
    int rc = 0;
    if (t->key->kind == K_STATUS) {
      int code = schema_status_code(plain);
      rc = code < 0 ? -1 : 0;
      nums[i] = code;
      if (rc)
        fail(err, errlen,
             "unknown status '%s' (queued, running, succeeded, failed, "
             "skipped, dropped, lost)",
             shown(plain, show, sizeof(show)));
    } else if (t->key->kind == K_MODE) {
      nums[i] = strcmp(plain, "loop") == 0         ? 0
                : strcmp(plain, "threadpool") == 0 ? 1
                                                   : -1;
      rc = nums[i] < 0 ? -1 : 0;
      if (rc)
        fail(err, errlen, "unknown mode '%s' (loop, threadpool)",
             shown(plain, show, sizeof(show)));
    } else if (parse_int(plain, &nums[i]) != 0) {
      rc = fail(err, errlen, "%s: '%s' is not an integer", t->key->name,
                shown(plain, show, sizeof(show)));
    }
    free(plain);
    if (rc)
      return -1;
  }
  return 0;
}

static int sql_list(filter *f, const term *t, char *err, size_t errlen) {
  int64_t *nums = xcalloc((size_t)t->nitems, sizeof(int64_t));
  if (list_numbers(t, nums, err, errlen) != 0) {
    free(nums);
    return -1;
  }
  int succeeded = 0;
  unsigned mask = 0;
  for (int i = 0; i < t->nitems; i++) {
    succeeded |= t->key->kind == K_STATUS && nums[i] == SCHEMA_SUCCEEDED;
    if (t->key->kind == K_STATUS)
      mask |= 1u << nums[i];
  }
  if (t->key->kind == K_STATUS)
    f->statuses &= t->negate ? ~mask : mask;
  if (t->key->kind == K_STATUS && !succeeded && !t->negate)
    format_buf_puts(&f->sql, SCHEMA_SQL_UNUSUAL " AND ");
  format_buf_printf(&f->sql, "%s IN (", t->key->column);
  for (int i = 0; i < t->nitems; i++)
    format_buf_printf(&f->sql, "%s?%d", i ? ", " : "", int_param(f, nums[i]));
  format_buf_puts(&f->sql, ")");
  free(nums);
  return 0;
}

/* Terms with one value compared by an operator: times, durations,
 * positions. */
static int sql_compare(filter *f, const term *t, char *err, size_t errlen) {
  char show[64];
  if (t->nitems != 1)
    return fail(err, errlen, "%s takes one value", t->key->name);
  char *plain = unescape(t->items[0]);
  int64_t v;
  int rc = 0;
  const char *op = t->op;
  if (t->key->kind == K_SINCE || t->key->kind == K_UNTIL) {
    op = t->key->kind == K_SINCE ? ">=" : "<";
    if (format_parse_time(plain, f->now_us, &v) != 0)
      rc =
          fail(err, errlen, "%s: bad time '%s' (e.g. 1h, 2026-11-22T10:00:00Z)",
               t->key->name, shown(plain, show, sizeof(show)));
  } else if (t->key->kind == K_DURATION) {
    if (format_parse_duration(plain, &v) != 0)
      rc = fail(err, errlen, "%s: bad duration '%s' (e.g. 200ms, 1.5s)",
                t->key->name, shown(plain, show, sizeof(show)));
  } else if (parse_int(plain, &v) != 0) {
    rc = fail(err, errlen, "%s: '%s' is not an integer", t->key->name,
              shown(plain, show, sizeof(show)));
  }
  free(plain);
  if (rc != 0)
    return rc;
  format_buf_printf(&f->sql, "%s %s ?%d", t->key->column, op, int_param(f, v));
  if (t->key->kind == K_SINCE && !t->negate && v > f->since)
    f->since = v;
  if (t->key->kind == K_UNTIL && !t->negate && v < f->until)
    f->until = v;
  return 0;
}

static int sql_term(filter *f, const term *t, char *err, size_t errlen) {
  switch (t->key->kind) {
  case K_STATUS:
  case K_MODE:
  case K_INT:
    return sql_list(f, t, err, errlen);
  case K_BATCH: {
    int64_t v;
    char *plain = unescape(t->items[0]);
    int numeric = parse_int(plain, &v) == 0;
    free(plain);
    if (numeric)
      return sql_list(f, t, err, errlen);
    term label = *t;
    label.key = find_key("label", 5);
    return sql_term(f, &label, err, errlen);
  }
  case K_POSITION:
    if (strcmp(t->op, "=") == 0)
      return sql_list(f, t, err, errlen);
    return sql_compare(f, t, err, errlen);
  case K_SINCE:
  case K_UNTIL:
  case K_DURATION:
    return sql_compare(f, t, err, errlen);
  case K_ERROR:
    /* Only failed tasks carry an error (docs/schema.md), and saying so
     * lets the partial index find them by time. */
    if (!t->negate)
      f->statuses &= 1u << SCHEMA_FAILED;
    format_buf_puts(&f->sql, SCHEMA_SQL_FAILED " AND (");
    for (int i = 0; i < t->nitems; i++) {
      format_buf_puts(&f->sql, i ? " OR " : "");
      sql_error_item(f, t->items[i]);
    }
    format_buf_puts(&f->sql, ")");
    return 0;
  case K_GLOB:
  case K_WORD:
    for (int i = 0; i < t->nitems; i++) {
      format_buf_puts(&f->sql, i ? " OR " : "");
      sql_glob_item(f, t->key->column, t->items[i]);
    }
    return 0;
  }
  return -1;
}

/* Which operators each kind takes; ':' arrives here as "=". */
static int op_allowed(const term *t) {
  int eq = strcmp(t->op, "=") == 0;
  switch (t->key->kind) {
  case K_DURATION:
    return !eq;
  case K_POSITION:
    return 1;
  default:
    return eq;
  }
}

/* 1 when SQL text names a column of agents `a` or batches `b` (a term's
 * own text: column names, ?NNN, operators, no quoted text but ESCAPE). */
static int names_joined(const char *sql) {
  for (const char *p = sql; *p != '\0'; p++)
    if ((*p == 'a' || *p == 'b') && p[1] == '.' &&
        (p == sql ||
         !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') ||
           (p[-1] >= 'A' && p[-1] <= 'Z') || (p[-1] >= '0' && p[-1] <= '9'))))
      return 1;
  return 0;
}

/* Appends one term's SQL, or leaves f as it was and returns -1. */
static int add_term(filter *f, const term *t, char *err, size_t errlen) {
  size_t sql_len = f->sql.len;
  int nparams = f->nparams;
  if (!op_allowed(t) && t->key->kind == K_DURATION)
    return fail(err, errlen, "%s needs a comparison, e.g. %s>200ms",
                t->key->name, t->key->name);
  if (!op_allowed(t))
    return fail(err, errlen, "%s does not take '%s' (use %s:VALUE)",
                t->key->name, t->op, t->key->name);
  if (t->nitems == 0)
    return fail(err, errlen, "%s: missing value", t->key->name);
  format_buf_puts(&f->sql, sql_len > 0 ? " AND " : "");
  format_buf_puts(&f->sql, t->negate ? "NOT coalesce((" : "(");
  if (sql_term(f, t, err, errlen) != 0) {
    f->sql.len = sql_len;
    if (f->sql.data != NULL)
      f->sql.data[sql_len] = '\0';
    for (int i = nparams; i < f->nparams; i++)
      free(f->params[i].text);
    f->nparams = nparams;
    return -1;
  }
  format_buf_puts(&f->sql, t->negate ? "), 0)" : ")");
  if (names_joined(f->sql.data + sql_len))
    f->uses |= FILTER_USES_JOIN;
  switch (t->key->kind) {
  case K_WORD:
    f->uses |= FILTER_USES_NAME;
    break;
  case K_GLOB:
    f->uses |= strcmp(t->key->column, "t.name") == 0      ? FILTER_USES_NAME
               : strcmp(t->key->column, "a.service") == 0 ? FILTER_USES_SERVICE
                                                          : FILTER_USES_OTHER;
    break;
  case K_SINCE:
  case K_UNTIL:
    /* A negated time term leaves a hole inside the range. */
    f->uses |= t->negate ? FILTER_USES_OTHER : FILTER_USES_TIME;
    break;
  default:
    f->uses |= FILTER_USES_OTHER;
  }
  return 0;
}

/* ---- the language -------------------------------------------------------- */

static const key_def *find_key(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (strlen(keys[i].name) == len && strncmp(keys[i].name, name, len) == 0)
      return &keys[i];
  return NULL;
}

static int is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

/* Reads one value item (up to a blank or an unquoted comma) into its
 * escaped form. */
static int lex_item(const char **p, format_buf *out, char *err, size_t errlen) {
  const char *s = *p;
  char quote = 0;
  format_buf_putc(out, '\0');
  format_buf_reset(out);
  while (*s != '\0' && (quote || (!is_blank(*s) && *s != ','))) {
    char c = *s++;
    if (!quote && (c == '"' || c == '\'')) {
      quote = c;
    } else if (quote && c == quote) {
      quote = 0;
    } else if (c == '\\') {
      if (*s == '\0')
        return fail(err, errlen, "backslash at the end of the filter");
      c = *s++;
      if (c == '\\' || is_wild(c))
        format_buf_putc(out, '\\');
      format_buf_putc(out, c);
    } else {
      format_buf_putc(out, c);
    }
  }
  if (quote)
    return fail(err, errlen, "unterminated %c quote", quote);
  *p = s;
  return 0;
}

static void term_fini(term *t) {
  for (int i = 0; i < t->nitems; i++)
    free(t->items[i]);
  free(t->items);
  t->items = NULL;
  t->nitems = 0;
}

static void term_push(term *t, const char *e) {
  t->items = xrealloc(t->items, (size_t)(t->nitems + 1) * sizeof(char *));
  t->items[t->nitems++] = xstrdup(e);
}

static int lex_items(const char **p, term *t, char *err, size_t errlen) {
  format_buf item;
  format_buf_init(&item);
  int rc = 0;
  for (;;) {
    if ((rc = lex_item(p, &item, err, errlen)) != 0)
      break;
    if (item.len == 0) {
      rc = fail(err, errlen, "%s: missing value", t->key->name);
      break;
    }
    term_push(t, item.data);
    if (**p != ',')
      break;
    (*p)++;
  }
  format_buf_fini(&item);
  return rc;
}

static const char *lex_op(const char **p) {
  static const char *const ops[] = {">=", "<=", ">", "<", "="};
  const char *s = *p;
  if (*s == ':')
    s++;
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
    size_t n = strlen(ops[i]);
    if (strncmp(s, ops[i], n) == 0) {
      *p = s + n;
      return ops[i];
    }
  }
  if (**p == ':') {
    *p = s;
    return "=";
  }
  return NULL;
}

static const key_def word_key = {"word", K_WORD, "t.name"};

/* The length of a term's key when it has one (letters and '_' followed
 * by an operator), else 0. */
static size_t key_length(const char *s) {
  size_t n = 0;
  while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
         s[n] == '_')
    n++;
  const char *after = s + n;
  return n > 0 && lex_op(&after) != NULL ? n : 0;
}

/* The negation in front of a term, "!" or the word "not" and blanks:
 * the bytes it takes, or 0. */
static size_t negation_length(const char *s) {
  if (*s == '!')
    return 1;
  if (strncmp(s, "not", 3) != 0 || !is_blank(s[3]))
    return 0;
  size_t n = 3;
  while (is_blank(s[n]))
    n++;
  return n;
}

/* A bare word: the task name contains it. */
static int lex_word(const char **p, term *t, char *err, size_t errlen) {
  format_buf item;
  format_buf_init(&item);
  t->key = &word_key;
  t->op = "=";
  int rc = lex_item(p, &item, err, errlen);
  if (rc == 0 && item.len > 0) {
    format_buf glob;
    format_buf_init(&glob);
    format_buf_printf(&glob, "*%s*", item.data);
    term_push(t, glob.data);
    format_buf_fini(&glob);
  } else if (rc == 0) {
    rc = fail(err, errlen, "empty term");
  }
  format_buf_fini(&item);
  return rc;
}

/* Parses one term starting at *p (no leading blanks). */
static int parse_term(filter *f, const char **p, char *err, size_t errlen) {
  term t = {0};
  char show[64];
  const char *s = *p;
  size_t neg = negation_length(s);
  if (*s == '-')
    return fail(err, errlen,
                "'%s': a term cannot start with '-' (it reads as an "
                "option); negate with !TERM or not TERM",
                shown(s, show, sizeof(show)));
  if (strcmp(s, "not") == 0)
    return fail(err, errlen, "'not' needs a term after it");
  t.negate = neg > 0;
  s += neg;
  if (t.negate && (*s == '!' || negation_length(s) > 0 || *s == '-'))
    return fail(err, errlen, "'%s': one negation at a time",
                shown(*p, show, sizeof(show)));
  if (t.negate && (*s == '\0' || is_blank(*s)))
    return fail(err, errlen, "'%s' needs a term after it",
                **p == '!' ? "!" : "not");
  const char *key = s;
  size_t keylen = key_length(s);
  int rc;
  if (keylen == 0) {
    rc = lex_word(&s, &t, err, errlen);
  } else {
    s += keylen;
    t.op = lex_op(&s);
    t.key = find_key(key, keylen);
    char name[64];
    snprintf(name, sizeof(name), "%.*s", (int)keylen, key);
    rc = t.key == NULL ? fail(err, errlen, "unknown filter key '%s'",
                              shown(name, show, sizeof(show)))
                       : lex_items(&s, &t, err, errlen);
  }
  if (rc == 0 && *s != '\0' && !is_blank(*s))
    rc = fail(err, errlen, "unexpected '%c' after %s", *s, t.key->name);
  if (rc == 0)
    rc = add_term(f, &t, err, errlen);
  term_fini(&t);
  *p = s;
  return rc;
}

/* 1 when the term at s is a bare word without negation. */
static int is_bare_word(const char *s) {
  return *s != '!' && *s != '-' && negation_length(s) == 0 &&
         strcmp(s, "not") != 0 && key_length(s) == 0;
}

/* 1 when the term text [from, to) has a key and no quote: a value that
 * a blank may have cut short. */
static int is_open_value(const char *from, const char *to) {
  from += negation_length(from);
  return key_length(from) > 0 &&
         memchr(from, '"', (size_t)(to - from)) == NULL &&
         memchr(from, '\'', (size_t)(to - from)) == NULL;
}

/* ---- public ----------------------------------------------------------------
 */

filter *filter_new(int64_t now_us) {
  filter *f = xcalloc(1, sizeof(*f));
  f->now_us = now_us;
  f->since = INT64_MIN;
  f->until = INT64_MAX;
  f->statuses = FILTER_ALL_STATUSES;
  format_buf_init(&f->sql);
  return f;
}

void filter_free(filter *f) {
  if (f == NULL)
    return;
  for (int i = 0; i < f->nparams; i++)
    free(f->params[i].text);
  free(f->params);
  format_buf_fini(&f->sql);
  free(f);
}

/* The reason for a value cut at a blank: the term [from, to), the word
 * after it at `word`, and the same written with quotes. */
static int refuse_split_value(const char *from, const char *to,
                              const char *word, char *err, size_t errlen) {
  const char *end = word;
  while (*end != '\0' && !is_blank(*end))
    end++;
  const char *value = from + negation_length(from);
  value += key_length(value);
  lex_op(&value);
  char typed[96], quoted[96], a[64], b[64];
  snprintf(typed, sizeof(typed), "%.*s %.*s", (int)(to - from), from,
           (int)(end - word), word);
  snprintf(quoted, sizeof(quoted), "%.*s\"%.*s %.*s\"", (int)(value - from),
           from, (int)(to - value), value, (int)(end - word), word);
  return fail(err, errlen,
              "'%s' splits at the blank; to keep it, quote the value: %s",
              shown(typed, a, sizeof(a)), shown(quoted, b, sizeof(b)));
}

/*
 * A bare word right after a keyed term with an unquoted value is refused:
 * `label:POST /send*` (one shell word in `query 'label:POST /send*'`) is
 * almost surely a value with a blank, and as two terms it would match
 * nothing without a word of why.
 */
int filter_add_text(filter *f, const char *text, char *err, size_t errlen) {
  const char *s = text, *prev = NULL, *prev_end = NULL;
  for (;;) {
    while (is_blank(*s))
      s++;
    if (*s == '\0')
      return 0;
    if (prev && is_bare_word(s) && is_open_value(prev, prev_end))
      return refuse_split_value(prev, prev_end, s, err, errlen);
    prev = s;
    if (parse_term(f, &s, err, errlen) != 0)
      return -1;
    prev_end = s;
  }
}

int filter_is_keyed_term(const char *text) {
  size_t n = key_length(text);
  return n > 0 && find_key(text, n) != NULL;
}

int filter_parse(const char *text, int64_t now_us, filter **out, char *err,
                 size_t errlen) {
  filter *f = filter_new(now_us);
  if (filter_add_text(f, text != NULL ? text : "", err, errlen) != 0) {
    filter_free(f);
    *out = NULL;
    return -1;
  }
  *out = f;
  return 0;
}

int filter_add(filter *f, const char *key, const char *op, const char *value,
               int negate, char *err, size_t errlen) {
  char show[64];
  term t = {0};
  t.negate = negate;
  t.key = find_key(key, strlen(key));
  if (t.key == NULL)
    return fail(err, errlen, "unknown filter key '%s'",
                shown(key, show, sizeof(show)));
  t.op = strcmp(op, ":") == 0 ? "=" : op;
  const char *ops[] = {"=", ">", ">=", "<", "<="};
  int known = 0;
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
    if (strcmp(t.op, ops[i]) == 0)
      t.op = ops[i], known = 1;
  if (!known)
    return fail(err, errlen, "unknown operator '%s'",
                shown(op, show, sizeof(show)));
  /* Split on commas; escape backslashes so the value stays literal
   * (wildcards keep their meaning). */
  format_buf item;
  format_buf_init(&item);
  int rc = 0;
  for (const char *s = value;; s++) {
    if (*s == ',' || *s == '\0') {
      if (item.len == 0)
        rc = fail(err, errlen, "%s: missing value", t.key->name);
      else
        term_push(&t, item.data);
      format_buf_reset(&item);
      if (*s == '\0' || rc != 0)
        break;
      continue;
    }
    if (*s == '\\')
      format_buf_putc(&item, '\\');
    format_buf_putc(&item, *s);
  }
  format_buf_fini(&item);
  if (rc == 0)
    rc = add_term(f, &t, err, errlen);
  term_fini(&t);
  return rc;
}

const char *filter_sql(const filter *f) {
  return f->sql.len > 0 ? f->sql.data : "1";
}

static int is_name_char(char c) {
  return c == '_' || c == '.' || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* The column of map that starts at s, as a whole name; -1 when none. */
static int mapped_column(const char *s, const char *const (*map)[2], size_t n) {
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(map[i][0]);
    if (strncmp(s, map[i][0], len) == 0 && !is_name_char(s[len]))
      return (int)i;
  }
  return -1;
}

char *filter_sql_map(const filter *f, int first, const char *const (*map)[2],
                     size_t n) {
  const char *s = filter_sql(f);
  format_buf out;
  format_buf_init(&out);
  int in_name = 0;
  while (*s != '\0') {
    int m = in_name ? -1 : mapped_column(s, map, n);
    if (*s == '?') {
      char *end;
      long k = strtol(s + 1, &end, 10);
      format_buf_printf(&out, "?%ld", k + first - 1);
      s = end;
    } else if (m >= 0) {
      format_buf_puts(&out, map[m][1]);
      s += strlen(map[m][0]);
    } else {
      in_name = is_name_char(*s);
      format_buf_putc(&out, *s++);
    }
  }
  char *r = xstrdup(format_buf_str(&out));
  format_buf_fini(&out);
  return r;
}

char *filter_sql_at(const filter *f, int first) {
  return filter_sql_map(f, first, NULL, 0);
}

int filter_param_count(const filter *f) {
  return f->nparams;
}

void filter_time_range(const filter *f, int64_t *since, int64_t *until) {
  *since = f->since;
  *until = f->until;
}

unsigned filter_uses(const filter *f) {
  return f->uses;
}

unsigned filter_statuses(const filter *f) {
  return f->statuses;
}

int filter_is_empty(const filter *f) {
  return f->sql.len == 0;
}

int filter_bind(const filter *f, sqlite3_stmt *st, int first) {
  for (int i = 0; i < f->nparams; i++) {
    const param *p = &f->params[i];
    int rc = p->is_text ? sqlite3_bind_text(st, first + i, p->text, (int)p->len,
                                            SQLITE_TRANSIENT)
                        : sqlite3_bind_int64(st, first + i, p->num);
    if (rc != SQLITE_OK)
      return -1;
  }
  return first + f->nparams;
}
