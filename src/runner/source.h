/*
 * source.h - the job runner's sources: one per spec.connections[].type.
 *
 * A source is opened once per connection and serves every spec.objects[]
 * entry that names that connection. Two shapes:
 *
 *  - table sources (sqlite, postgresql, mysql/mariadb, databricks) stream a
 *    table into a csv_writer (csv.h: header row, RFC 4180, UTF-8, NULL as an
 *    empty field, binary as base64). Every table of one connection comes
 *    from one snapshot where the source has them (SQLite read transaction,
 *    PostgreSQL REPEATABLE READ READ ONLY, MariaDB START TRANSACTION WITH
 *    CONSISTENT SNAPSHOT, READ ONLY);
 *  - file sources (https) copy one remote file per object into a path the
 *    runner gives (a ".part" file the runner later fsyncs and renames).
 *
 * What every source promises:
 *  - open() connects and checks what can be checked (credentials, database)
 *    and fails with a message a data engineer can act on: the connection's
 *    name, host and database, what went wrong, what to do; never a password,
 *    a token or a url with credentials in it;
 *  - check() is called for every object before the first byte is written,
 *    so bad input (a missing table, a column type the source cannot convert,
 *    no permission) changes nothing; a missing table's message lists the
 *    tables that do exist (at most a few dozen);
 *  - memory stays flat whatever the table size: rows are streamed (libpq
 *    COPY TO STDOUT, libmariadb unbuffered mysql_use_result, SQLite step,
 *    HTTP chunks), never collected;
 *  - progress (may be NULL) is called about once a second with rows (or
 *    bytes, for files) so far;
 *  - identifiers are always quoted by the source's own rules (libpq
 *    PQescapeIdentifier, MariaDB backticks doubled, SQLite double quotes):
 *    a table name is data, never SQL.
 *
 * Table names: "schema.table" selects a schema where the source has them
 * (postgresql, databricks catalog.schema.table); otherwise the name is one
 * identifier. The output file is named after the object name as given.
 *
 * Errors follow common/error.h (AL_OK or a negative AL_ERR_*, message set).
 * AL_ERR_FORBIDDEN: bad credentials or no permission; AL_ERR_NOT_FOUND: no
 * such table/file/database; AL_ERR_UNAVAILABLE: the host cannot be reached;
 * AL_ERR_INVALID: a value the source cannot convert or a bad url;
 * AL_ERR_IO: anything else the server or the disk said.
 */
#ifndef AL_RUNNER_SOURCE_H
#define AL_RUNNER_SOURCE_H

#include "common/buf.h"
#include "runner/csv.h"

#include <jansson.h>
#include <stdint.h>

/* Called about once a second during an export or a download (never with a
 * secret): rows written so far, or bytes for a file. */
typedef void (*source_progress_fn)(void *ctx, const char *object, uint64_t count);

/* One connection, as the runner resolved it. Everything is borrowed and
 * lives until the source is closed. user/password come from the credentials
 * file by the connection's credentials.userKey / passwordKey: NULL when the
 * connection names no such key or the file lacks it. A source that needs one
 * fails open() naming the key (user_key/password_key), e.g. "connection 'db':
 * needs a password: credentials.passwordKey 'DbPassword' is not among the
 * job's credentials". The runner wipes the values after close. */
struct source_conn {
	const char *name;         /* spec.connections[].name */
	const char *type;         /* spec.connections[].type */
	const char *url;          /* spec.connections[].url (may be NULL) */
	const char *user;         /* or NULL */
	const char *password;     /* or NULL; for databricks: a personal access token, or the
	                           * OAuth client secret when user is a service principal id */
	const char *user_key;     /* credentials.userKey as written, or NULL (for messages) */
	const char *password_key; /* credentials.passwordKey as written, or NULL */
	int timeout_s;            /* connect/request timeout; 0 = the source's default (30 s) */
};

/* What an exported table turned out to be. */
struct source_table_result {
	json_t *columns;  /* new array of {"name": ..., "type": <the source's type name>} */
	uint64_t rows;    /* data rows written (not counting the header) */
};

/* What a fetched file turned out to be. */
struct source_file_result {
	uint64_t size;        /* bytes in the file */
	char sha256[65];      /* lower-case hex of the whole file */
	int verified_size;    /* 1 when the server announced the size and it matched */
	int verified_digest;  /* 1 when the server announced a digest and it matched */
	int resumed;          /* 1 when an earlier partial download was continued */
};

struct source;

struct source_ops {
	const char *type;  /* the connection type this serves, e.g. "postgresql" */
	int (*open)(struct source **out, const struct source_conn *conn);
	/* Table or file exists and can be read; for tables, every column has a
	 * type this source can convert. */
	int (*check)(struct source *s, const char *object);
	/* Table sources: streams the table (header first). NULL for files. */
	int (*export_table)(struct source *s, const char *table, struct csv_writer *w, source_progress_fn progress,
			    void *ctx, struct source_table_result *out);
	/* File sources: writes the object into part_path, continuing a partial
	 * file already there when the server supports ranges (and starting
	 * again when it does not, or the file changed). NULL for tables. */
	int (*fetch_file)(struct source *s, const char *object, const char *part_path, source_progress_fn progress,
			  void *ctx, struct source_file_result *out);
	/* Secret-free description for provenance: a new object such as
	 * {"host": "db.example.org", "port": 5432, "database": "gm",
	 *  "serverVersion": "16.4"}. */
	int (*describe)(struct source *s, json_t **out);
	void (*close)(struct source *s); /* NULL is a no-op */
};

/* A source is any struct whose first member is `const struct source_ops *ops`. */
struct source {
	const struct source_ops *ops;
};

/* The source for a connection type, or NULL (see source_types()). */
const struct source_ops *source_find(const char *type);
/* "sqlite, postgresql, mysql, mariadb, https, databricks": for messages. */
const char *source_types(void);

void source_table_result_free(struct source_table_result *r);

/* ---- helpers every source uses ------------------------------------------ */

/* Progress about once a second (SOURCE_PROGRESS_INTERVAL_MS), whatever the
 * row or byte rate: call source_progress_tick after each row or block. The
 * clock is read at most every SOURCE_PROGRESS_EVERY_ROWS calls when
 * counting rows, so the per-row cost is a compare. */
#define SOURCE_PROGRESS_INTERVAL_MS 1000
#define SOURCE_PROGRESS_EVERY_ROWS 8192

struct source_progress {
	source_progress_fn fn; /* may be NULL: then nothing is reported */
	void *ctx;
	const char *object;    /* borrowed */
	int64_t last;          /* monotonic ms of the last report (or the start) */
};

void source_progress_init(struct source_progress *p, source_progress_fn fn, void *ctx, const char *object);
/* count rows so far: reports when a second has passed since the last
 * report, looking at the clock every SOURCE_PROGRESS_EVERY_ROWS rows. */
void source_progress_rows(struct source_progress *p, uint64_t rows);
/* count bytes (or anything arriving in blocks): looks at the clock on every
 * call. */
void source_progress_tick(struct source_progress *p, uint64_t count);

/* Names in a message, "a, b, c and 12 more", or "(none)": at most
 * SOURCE_LIST_MAX names, and none past SOURCE_LIST_BYTES, so a one-line
 * message keeps its end (messages are cut at AL_ERROR_MSG_MAX). */
#define SOURCE_LIST_MAX 30
#define SOURCE_LIST_BYTES 500

struct source_list {
	struct buf *out; /* borrowed: appended to */
	size_t shown, seen;
};

void source_list_init(struct source_list *l, struct buf *out);
/* Counts name, and writes it while the list is short enough. */
int source_list_add(struct source_list *l, const char *name);
/* " and N more" (total: how many there are, or 0 for the ones added), or
 * "(none)" for an empty list. */
int source_list_end(struct source_list *l, size_t total);

/* The sources (each in its own source_<type>.c). */
extern const struct source_ops source_sqlite_ops;
extern const struct source_ops source_postgresql_ops;
extern const struct source_ops source_mariadb_ops;     /* also "mysql" */
extern const struct source_ops source_https_ops;
extern const struct source_ops source_databricks_ops;

#endif
