/*
 * source_sqlite.h - reads tables out of a SQLite database for the job runner.
 *
 * The database is opened read-only (SQLITE_OPEN_READONLY, untrusted schema
 * features off) and one read transaction is held from open to close, so every
 * table exported through one handle comes from the same snapshot.
 *
 * Table names are always quoted as identifiers (double quotes doubled) and
 * checked against sqlite_schema first, so a missing table gives a message
 * listing the tables that do exist.
 */
#ifndef AL_RUNNER_SOURCE_SQLITE_H
#define AL_RUNNER_SOURCE_SQLITE_H

#include "runner/csv.h"

#include <jansson.h>
#include <stdint.h>

struct source_sqlite;

/* Called about once a second during an export (and never with a secret). */
typedef void (*source_progress_fn)(void *ctx, const char *table, uint64_t rows);

/* Accepts "sqlite:///abs/path.db", "sqlite:relative/path.db",
 * "sqlite://relative" (as SQLAlchemy writes it) or a plain path. *path is a new
 * string (free it). */
int source_sqlite_path_from_url(const char *url, char **path);

/* Opens the database named by `url` and begins the read transaction. */
int source_sqlite_open(struct source_sqlite **out, const char *url);
/* The database file's base name, for messages and metadata. Borrowed. */
const char *source_sqlite_basename(const struct source_sqlite *s);
/* AL_ERR_NOT_FOUND with "table 'x' not found in db; tables present: a, b". */
int source_sqlite_check_table(struct source_sqlite *s, const char *table);
/* Streams `SELECT * FROM "table"` into the writer (header row first).
 * *columns gets a new array of the column names; *rows the data rows. */
int source_sqlite_export(struct source_sqlite *s, const char *table, struct csv_writer *w,
			 source_progress_fn progress, void *ctx, json_t **columns, uint64_t *rows);
/* Ends the transaction and closes. NULL is fine. */
void source_sqlite_close(struct source_sqlite *s);

#endif
