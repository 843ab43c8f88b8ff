/*
 * rows - eponymous virtual tables over the writer's in-memory rows.
 * See rows.h; sqlite.org/vtab.html for the module interface.
 */
#include "rows.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* The module's client data, one per kind. */
typedef struct rows_aux {
  rows *rows;
  int kind;
} rows_aux;

struct rows {
  const void *items[ROWS_KINDS];
  size_t n[ROWS_KINDS];
  rows_aux aux[ROWS_KINDS];
};

typedef struct rows_table {
  sqlite3_vtab base;
  rows *rows;
  int kind;
} rows_table;

typedef struct rows_cursor {
  sqlite3_vtab_cursor base;
  size_t i;
} rows_cursor;

static const char *const declarations[ROWS_KINDS] = {
    [ROWS_TASKS] = "CREATE TABLE x (id, agent, batch, position, name, mode, "
                   "status, thread, enqueued_at, started_at, finished_at, "
                   "wait_us, run_us, error_type, error_message, "
                   "error_detail, skipped_after, drop_reason)",
    [ROWS_BATCHES] = "CREATE TABLE x (id, agent, label, created_at)",
};

static const char *const names[ROWS_KINDS] = {
    [ROWS_TASKS] = "taskwatch_new_tasks",
    [ROWS_BATCHES] = "taskwatch_new_batches",
};

static int connect_table(sqlite3 *db, void *aux, int argc,
                         const char *const *argv, sqlite3_vtab **out,
                         char **err) {
  (void)argc;
  (void)argv;
  (void)err;
  const rows_aux *a = aux;
  int rc = sqlite3_declare_vtab(db, declarations[a->kind]);
  if (rc != SQLITE_OK)
    return rc;
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  rows_table *t = sqlite3_malloc(sizeof(*t));
  if (t == NULL)
    return SQLITE_NOMEM;
  memset(t, 0, sizeof(*t));
  t->rows = a->rows;
  t->kind = a->kind;
  *out = &t->base;
  return SQLITE_OK;
}

/* Must not touch the rows: when the connection closes, SQLite may free
 * them (the last module's destructor) before it disconnects a table. */
static int disconnect_table(sqlite3_vtab *vt) {
  sqlite3_free(vt);
  return SQLITE_OK;
}

static int best_index(sqlite3_vtab *vt, sqlite3_index_info *info) {
  const rows_table *t = (const rows_table *)vt;
  info->estimatedCost = (double)t->rows->n[t->kind] + 1;
  info->estimatedRows = (sqlite3_int64)t->rows->n[t->kind];
  return SQLITE_OK;
}

static int open_cursor(sqlite3_vtab *vt, sqlite3_vtab_cursor **out) {
  (void)vt;
  rows_cursor *c = sqlite3_malloc(sizeof(*c));
  if (c == NULL)
    return SQLITE_NOMEM;
  memset(c, 0, sizeof(*c));
  *out = &c->base;
  return SQLITE_OK;
}

static int close_cursor(sqlite3_vtab_cursor *c) {
  sqlite3_free(c);
  return SQLITE_OK;
}

static int filter_rows(sqlite3_vtab_cursor *c, int idx, const char *idx_str,
                       int argc, sqlite3_value **argv) {
  (void)idx;
  (void)idx_str;
  (void)argc;
  (void)argv;
  ((rows_cursor *)c)->i = 0;
  return SQLITE_OK;
}

static int next_row(sqlite3_vtab_cursor *c) {
  ((rows_cursor *)c)->i++;
  return SQLITE_OK;
}

static int at_end(sqlite3_vtab_cursor *c) {
  const rows_table *t = (const rows_table *)c->pVtab;
  return ((rows_cursor *)c)->i >= t->rows->n[t->kind];
}

static void result_opt(sqlite3_context *ctx, int have, sqlite3_int64 v) {
  if (have)
    sqlite3_result_int64(ctx, v);
  else
    sqlite3_result_null(ctx);
}

static void result_blob_text(sqlite3_context *ctx, int have, blob b) {
  if (have)
    sqlite3_result_text(ctx, b.ptr, (int)b.len, SQLITE_STATIC);
  else
    sqlite3_result_null(ctx);
}

/* The values of a tasks row, as docs/schema.md defines them; the only
 * place the collector turns a task_row into columns. */
static void task_column(sqlite3_context *ctx, const task_row *r, int col) {
  int started = (r->have & HAVE_START) != 0;
  int ended = (r->have & HAVE_END) != 0;
  int error = (r->have & HAVE_ERROR) != 0;
  switch (col) {
  case 0:
    sqlite3_result_int64(ctx, r->id);
    break;
  case 1:
    sqlite3_result_int64(ctx, r->agent);
    break;
  case 2:
    sqlite3_result_int64(ctx, r->batch);
    break;
  case 3:
    sqlite3_result_int64(ctx, r->position);
    break;
  case 4:
    sqlite3_result_text(ctx, r->name->text, (int)r->name->len, SQLITE_STATIC);
    break;
  case 5:
    sqlite3_result_int(ctx, r->mode);
    break;
  case 6:
    sqlite3_result_int(ctx, r->status);
    break;
  case 7:
    result_opt(ctx, r->have & HAVE_THREAD, r->thread);
    break;
  case 8:
    sqlite3_result_int64(ctx, r->enqueued_at);
    break;
  case 9:
    result_opt(ctx, started, r->started_at);
    break;
  case 10:
    result_opt(ctx, ended, r->finished_at);
    break;
  case 11:
    result_opt(ctx, started, r->started_at - r->enqueued_at);
    break;
  case 12:
    result_opt(ctx, started && ended, r->finished_at - r->started_at);
    break;
  case 13:
    result_blob_text(ctx, error, r->error_type);
    break;
  case 14:
    result_blob_text(ctx, error, r->error_message);
    break;
  case 15:
    result_blob_text(ctx, error, r->error_detail);
    break;
  case 16:
    result_opt(ctx, r->have & HAVE_SKIP, r->skipped_after);
    break;
  default:
    result_blob_text(ctx, r->have & HAVE_DROP, r->drop_reason);
    break;
  }
}

static void batch_column(sqlite3_context *ctx, const batch_row *r, int col) {
  switch (col) {
  case 0:
    sqlite3_result_int64(ctx, r->id);
    break;
  case 1:
    sqlite3_result_int64(ctx, r->agent);
    break;
  case 2:
    if (r->label)
      sqlite3_result_text(ctx, r->label->text, (int)r->label->len,
                          SQLITE_STATIC);
    else
      sqlite3_result_null(ctx);
    break;
  default:
    sqlite3_result_int64(ctx, r->created_at);
    break;
  }
}

static int column_of(sqlite3_vtab_cursor *c, sqlite3_context *ctx, int col) {
  const rows_table *t = (const rows_table *)c->pVtab;
  size_t i = ((rows_cursor *)c)->i;
  if (t->kind == ROWS_TASKS)
    task_column(ctx, ((const task_row *const *)t->rows->items[ROWS_TASKS])[i],
                col);
  else
    batch_column(ctx, &((const batch_row *)t->rows->items[ROWS_BATCHES])[i],
                 col);
  return SQLITE_OK;
}

static int rowid_of(sqlite3_vtab_cursor *c, sqlite3_int64 *out) {
  *out = (sqlite3_int64)((rows_cursor *)c)->i;
  return SQLITE_OK;
}

/* Eponymous-only (no xCreate): the table exists without CREATE VIRTUAL
 * TABLE and cannot be created in the schema. */
static const sqlite3_module module = {
    .iVersion = 1,
    .xConnect = connect_table,
    .xBestIndex = best_index,
    .xDisconnect = disconnect_table,
    .xOpen = open_cursor,
    .xClose = close_cursor,
    .xFilter = filter_rows,
    .xNext = next_row,
    .xEof = at_end,
    .xColumn = column_of,
    .xRowid = rowid_of,
};

static void free_rows(void *aux) {
  free(((rows_aux *)aux)->rows);
}

int rows_register(sqlite3 *db, rows **out) {
  rows *r = xcalloc(1, sizeof(*r));
  for (int k = 0; k < ROWS_KINDS; k++) {
    r->aux[k].rows = r;
    r->aux[k].kind = k;
  }
  *out = NULL;
  /* The last registration owns r: SQLite frees it when db closes, or at
   * once if that registration fails. */
  int rc = sqlite3_create_module_v2(db, names[ROWS_TASKS], &module,
                                    &r->aux[ROWS_TASKS], NULL);
  if (rc != SQLITE_OK) {
    free(r);
    return rc;
  }
  rc = sqlite3_create_module_v2(db, names[ROWS_BATCHES], &module,
                                &r->aux[ROWS_BATCHES], free_rows);
  if (rc != SQLITE_OK) {
    /* r is freed: the first table must not keep pointing into it. */
    sqlite3_create_module_v2(db, names[ROWS_TASKS], NULL, NULL, NULL);
    return rc;
  }
  *out = r;
  return rc;
}

void rows_feed(rows *r, int kind, const void *items, size_t n) {
  r->items[kind] = items;
  r->n[kind] = n;
}
