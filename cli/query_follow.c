/* query_follow - placeholder until --follow lands. */
#include "query.h"

int query_follow(sqlite3 *db, const query_opts *o, query_out *out) {
  (void)db;
  (void)o;
  (void)out;
  fprintf(stderr, "taskwatch query: --follow is not built yet\n");
  return 2;
}
