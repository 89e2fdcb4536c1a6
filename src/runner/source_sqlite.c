#include "runner/source_sqlite.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* How many table names a "not found" message lists before "and N more". */

struct source_sqlite {
	const struct source_ops *ops; /* first: a struct source */
	sqlite3 *db;
	char *path;
	const char *base;
	int in_txn;
};

int source_sqlite_path_from_url(const char *url, char **path)
{
	const char *p = url;

	*path = NULL;
	if (!url || !*url)
		return al_error_set(AL_ERR_INVALID, "sqlite connection has no url; give a path such as "
						    "sqlite:///data/source.db");
	if (!strncmp(p, "sqlite:", 7)) {
		p += 7;
		if (!strncmp(p, "///", 3)) {
			p += 2; /* keep one '/': absolute path; "////abs" collapses below */
			while (p[0] == '/' && p[1] == '/')
				p++;
		} else if (!strncmp(p, "//", 2)) {
			p += 2;
		}
	}
	if (!*p || !strcmp(p, ":memory:"))
		return al_error_set(AL_ERR_INVALID, "sqlite connection url names no database file; use "
						    "sqlite:///absolute/path.db");
	*path = util_strdup(p);
	return *path ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

static int db_error(struct source_sqlite *s, const char *what)
{
	return al_error_set(AL_ERR_IO, "sqlite database %s: %s: %s", s->base, what, sqlite3_errmsg(s->db));
}

static void sqlite_close(struct source *base);

static int sqlite_open(struct source **out, const struct source_conn *conn)
{
	struct source_sqlite *s;
	struct stat st;
	const char *slash;
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	s->ops = &source_sqlite_ops;
	if ((rc = source_sqlite_path_from_url(conn->url, &s->path)))
		goto fail;
	slash = strrchr(s->path, '/');
	s->base = slash ? slash + 1 : s->path;
	/* A clearer message than SQLite's "unable to open database file". */
	if (stat(s->path, &st) < 0) {
		rc = al_error_set(errno == ENOENT ? AL_ERR_NOT_FOUND : AL_ERR_IO,
				  "sqlite database %s: cannot open: %s (check the connection url)", s->path,
				  strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = al_error_set(AL_ERR_INVALID, "sqlite database %s is not a regular file", s->path);
		goto fail;
	}
	if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		rc = al_error_set(AL_ERR_IO, "sqlite database %s: cannot open: %s", s->path,
				  s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	/* The source may be untrusted: no functions with side effects from its
	 * schema (views, generated columns), no writes even through pragmas. */
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	sqlite3_busy_timeout(s->db, 10000);
	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		rc = db_error(s, "cannot begin a read transaction");
		goto fail;
	}
	s->in_txn = 1;
	/* A deferred transaction takes its snapshot at the first read: read now,
	 * which also proves the file is a database. */
	if (sqlite3_exec(s->db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK) {
		rc = db_error(s, "cannot read the schema (is it a SQLite database?)");
		goto fail;
	}
	*out = (struct source *)s;
	return AL_OK;
fail:
	sqlite_close((struct source *)s);
	return rc;
}

static int sqlite_describe(struct source *base, json_t **out)
{
	struct source_sqlite *s = (struct source_sqlite *)base;
	/* Only the file's base name: the path says where the airlock keeps it. */
	*out = json_pack("{s:s, s:s}", "database", s->base, "serverVersion", sqlite3_libversion());
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

static void sqlite_close(struct source *base)
{
	struct source_sqlite *s = (struct source_sqlite *)base;
	if (!s)
		return;
	if (s->db) {
		if (s->in_txn)
			sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
		sqlite3_close_v2(s->db);
	}
	free(s->path);
	free(s);
}

static int list_tables(struct source_sqlite *s, struct buf *b)
{
	sqlite3_stmt *st = NULL;
	struct source_list list;
	int rc = AL_OK, step;

	if (sqlite3_prepare_v2(s->db,
			       "SELECT name FROM sqlite_schema WHERE type IN ('table','view') "
			       "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
			       -1, &st, NULL) != SQLITE_OK)
		return db_error(s, "cannot list tables");
	source_list_init(&list, b);
	while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW)
		rc = source_list_add(&list, (const char *)sqlite3_column_text(st, 0));
	if (!rc && step != SQLITE_DONE)
		rc = db_error(s, "cannot list tables");
	if (!rc)
		rc = source_list_end(&list, 0);
	sqlite3_finalize(st);
	return rc;
}

static int sqlite_check(struct source *base, const char *table)
{
	struct source_sqlite *s = (struct source_sqlite *)base;
	sqlite3_stmt *st = NULL;
	struct buf names;
	int step, rc;

	/* Identifiers are case-insensitive in SQLite, so is this lookup. */
	if (sqlite3_prepare_v2(s->db,
			       "SELECT 1 FROM sqlite_schema WHERE type IN ('table','view') "
			       "AND name = ?1 COLLATE NOCASE",
			       -1, &st, NULL) != SQLITE_OK)
		return db_error(s, "cannot read the schema");
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	sqlite3_finalize(st);
	if (step == SQLITE_ROW)
		return AL_OK;
	if (step != SQLITE_DONE)
		return db_error(s, "cannot read the schema");
	buf_init(&names, 64 << 10);
	rc = list_tables(s, &names);
	if (!rc)
		rc = al_error_set(AL_ERR_NOT_FOUND, "table '%s' not found in %s; tables present: %s", table,
				  s->base, buf_cstr(&names));
	buf_free(&names);
	return rc;
}

static int quote_ident(struct buf *b, const char *name)
{
	int rc = buf_appendc(b, '"');
	for (const char *p = name; !rc && *p; p++)
		rc = *p == '"' ? buf_append(b, "\"\"", 2) : buf_appendc(b, *p);
	return rc ? rc : buf_appendc(b, '"');
}

static int sqlite_export(struct source *base, const char *table, struct csv_writer *w, source_progress_fn progress,
			 void *ctx, struct source_table_result *res)
{
	struct source_sqlite *s = (struct source_sqlite *)base;
	sqlite3_stmt *st = NULL;
	struct buf sql;
	json_t *cols = NULL;
	uint64_t nrows = 0;
	struct source_progress prog;
	int ncol, step, rc;

	source_progress_init(&prog, progress, ctx, table);
	res->columns = NULL;
	res->rows = 0;
	buf_init(&sql, 64 << 10);
	if ((rc = buf_appends(&sql, "SELECT * FROM ")) || (rc = quote_ident(&sql, table)))
		goto out;
	if (sqlite3_prepare_v2(s->db, sql.ptr, (int)sql.len, &st, NULL) != SQLITE_OK) {
		rc = al_error_set(AL_ERR_IO, "table '%s' in %s: cannot query: %s", table, s->base,
				  sqlite3_errmsg(s->db));
		goto out;
	}
	ncol = sqlite3_column_count(st);
	cols = json_array();
	if (!cols) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < ncol; i++) {
		const char *name = sqlite3_column_name(st, i);
		const char *type = sqlite3_column_decltype(st, i); /* NULL for expressions */
		json_t *js;
		if (!name) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		if ((rc = csv_writer_text(w, name, strlen(name)))) {
			al_error_wrap(rc, "table '%s' column %d name", table, i + 1);
			goto out;
		}
		if (!(js = json_pack("{s:s, s:s}", "name", name, "type", type ? type : "")) ||
		    json_array_append_new(cols, js)) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if ((rc = csv_writer_end_record(w)))
		goto out;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		for (int i = 0; i < ncol; i++) {
			switch (sqlite3_column_type(st, i)) {
			case SQLITE_INTEGER:
				rc = csv_writer_int64(w, sqlite3_column_int64(st, i));
				break;
			case SQLITE_FLOAT:
				rc = csv_writer_double(w, sqlite3_column_double(st, i));
				break;
			case SQLITE_TEXT: {
				const char *t = (const char *)sqlite3_column_text(st, i);
				int n = sqlite3_column_bytes(st, i);
				if (!t) {
					rc = al_error_set(AL_ERR_NOMEM, "out of memory");
					break;
				}
				if ((rc = csv_writer_text(w, t, (size_t)n)) == AL_ERR_INVALID)
					al_error_wrap(rc, "table '%s' row %llu column '%s'", table,
						      (unsigned long long)nrows + 1, sqlite3_column_name(st, i));
				break;
			}
			case SQLITE_BLOB: {
				const void *b = sqlite3_column_blob(st, i);
				int n = sqlite3_column_bytes(st, i);
				rc = csv_writer_base64(w, b, (size_t)n);
				break;
			}
			default:
				rc = csv_writer_null(w);
				break;
			}
			if (rc)
				goto out;
		}
		if ((rc = csv_writer_end_record(w)))
			goto out;
		nrows++;
		source_progress_rows(&prog, nrows);
	}
	if (step != SQLITE_DONE) {
		rc = al_error_set(AL_ERR_IO, "table '%s' in %s: read failed after %llu rows: %s", table, s->base,
				  (unsigned long long)nrows, sqlite3_errmsg(s->db));
		goto out;
	}
	res->columns = cols;
	cols = NULL;
	res->rows = nrows;
out:
	json_decref(cols);
	sqlite3_finalize(st);
	buf_free(&sql);
	return rc;
}

const struct source_ops source_sqlite_ops = {
	.type = "sqlite",
	.open = sqlite_open,
	.check = sqlite_check,
	.export_table = sqlite_export,
	.describe = sqlite_describe,
	.close = sqlite_close,
};
