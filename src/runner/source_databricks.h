/*
 * source_databricks.h - tables from a Databricks SQL warehouse (type
 * "databricks"), through the SQL Statement Execution API 2.0 over HTTPS.
 *
 * Connection url: https://<workspace-host>/<anything>, naming the SQL
 * warehouse either way Databricks shows it:
 *   - its "HTTP path": https://<host>/sql/1.0/warehouses/<id>
 *     (the older /sql/1.0/endpoints/<id> too), or
 *   - a query parameter: https://<host>/any/path?warehouse_id=<id>.
 * Optional query parameters catalog=<c> and schema=<s> set the statement's
 * default catalog and schema (for one- and two-part table names).
 *
 * Credentials: when user looks like a service principal's application id
 * (a UUID) and password is set, OAuth machine-to-machine: the client
 * credentials grant at https://<host>/oidc/v1/token (basic auth
 * <application id>:<OAuth secret>, scope all-apis), the access token kept
 * until a minute before it expires. Otherwise password is a personal access
 * token (Authorization: Bearer). Tokens never reach messages or files and
 * are wiped when the source closes.
 *
 * Table names "catalog.schema.table", "schema.table" or "table", each part
 * quoted with backticks (doubled inside): a name is data, never SQL.
 *
 * check() runs "SELECT * FROM <table> LIMIT 0" (INLINE); a missing table's
 * message lists the tables of its schema (SHOW TABLES). export_table runs
 * "SELECT * FROM <table>" with disposition EXTERNAL_LINKS and format
 * JSON_ARRAY, polls until SUCCEEDED (back-off 0.25 s doubling to 5 s, at most
 * SOURCE_DATABRICKS_MAX_WAIT_S), then streams every chunk in order from its
 * pre-signed link (fetched without the Authorization header, as Databricks
 * requires, with the link's own http_headers) through a streaming parser
 * into the csv_writer: memory stays flat whatever the chunk or table size
 * (one value is bounded by SOURCE_DATABRICKS_FIELD_MAX). JSON_ARRAY is used,
 * not CSV, because it keeps NULL (JSON null -> csv_writer_null) apart from
 * the empty string. Every value arrives as a string and is written as text
 * (UTF-8 validated by csv.h); BINARY arrives base64-encoded from Databricks
 * and is written as received (not re-encoded). A local failure cancels the statement (best
 * effort).
 */
#ifndef AL_RUNNER_SOURCE_DATABRICKS_H
#define AL_RUNNER_SOURCE_DATABRICKS_H

#include "common/buf.h"
#include "runner/csv.h"
#include "runner/source.h"

#include <stddef.h>
#include <stdint.h>

#define SOURCE_DATABRICKS_FIELD_MAX ((size_t)64 << 20)   /* one value, decoded */
#define SOURCE_DATABRICKS_MAX_WAIT_S (2 * 3600)         /* one statement, queued + running */
#define SOURCE_DATABRICKS_RESPONSE_MAX ((size_t)16 << 20) /* one API response (not the data) */

/* The parts of a connection url (owned strings; free with ..._url_free). */
struct source_databricks_url {
	char *origin;    /* "https://host[:port]" */
	char *host;
	int port;        /* 0 when not given */
	char *warehouse; /* the SQL warehouse id */
	char *catalog;   /* or NULL */
	char *schema;    /* or NULL */
};

int source_databricks_url_parse(const char *url, int allow_http, struct source_databricks_url *out);
void source_databricks_url_free(struct source_databricks_url *u);

/* Appends `a`.`b`.`c` for "a.b.c" (one to three non-empty parts). */
int source_databricks_quote_table(const char *name, struct buf *out);
/* Appends the SHOW TABLES statement for the schema a table name points at. */
int source_databricks_show_tables(const char *name, struct buf *out);

/* 1 when s is a UUID (8-4-4-4-12 hex digits): a service principal's id. */
int source_databricks_is_uuid(const char *s);

/* The AL_ERR_* for a Databricks error: a statement's status.error
 * (error_code, message, sql_state) or an API error body (error_code,
 * message); any may be NULL. TABLE_OR_VIEW_NOT_FOUND & co. ->
 * AL_ERR_NOT_FOUND, PERMISSION_DENIED / INSUFFICIENT_PERMISSIONS ->
 * AL_ERR_FORBIDDEN, temporary conditions -> AL_ERR_UNAVAILABLE, else
 * AL_ERR_IO. */
int source_databricks_error_code(const char *error_code, const char *message, const char *sql_state);

/*
 * A streaming reader of JSON_ARRAY result data ([["v", null, ...], ...]),
 * one document per chunk, fed in arbitrary pieces, writing each row to a csv_writer as it ends:
 * strings as text, null as NULL, bare numbers/true/false (which Databricks
 * does not send, but JSON allows) as plain fields. Every row must have
 * exactly ncols values. Memory: one value at a time, at most field_max
 * bytes. Errors are AL_ERR_IO ("row 12: ...") or the writer's.
 */
struct source_databricks_rows {
	struct csv_writer *w; /* borrowed */
	size_t ncols;
	size_t col;           /* values so far in the current row */
	uint64_t rows;        /* rows written */
	int state;
	int literal;          /* the value being read is a bare literal */
	struct buf field;
	uint32_t code;        /* \uXXXX being read */
	int code_digits;
	uint32_t high;        /* a high surrogate waiting for its low half, or 0 */
};

void source_databricks_rows_init(struct source_databricks_rows *r, struct csv_writer *w, size_t ncols,
				 size_t field_max);
int source_databricks_rows_feed(struct source_databricks_rows *r, const char *data, size_t n);
/* Ends one JSON document (a chunk): the input must have ended with the
 * outer array's ']'. The reader is then ready for the next chunk. */
int source_databricks_rows_finish(struct source_databricks_rows *r);
void source_databricks_rows_free(struct source_databricks_rows *r);

#endif
