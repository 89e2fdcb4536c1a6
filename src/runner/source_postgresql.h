/*
 * source_postgresql.h - reads tables out of PostgreSQL for the job runner
 * (connection types "postgresql" and "postgres"; the source itself is
 * source_postgresql_ops in source.h).
 *
 * What it promises, beyond source.h:
 *  - url: postgresql://host[:port]/database[?sslmode=MODE] (also postgres://;
 *    host may be [IPv6]; host and database may be percent-encoded). The user
 *    and password come only from the job's credentials: a url carrying a
 *    user or password is refused, and never echoed;
 *  - libpq is loaded at run time (pq_dl.h), never linked;
 *  - open() connects (client_encoding UTF8, application_name airlock-runner)
 *    and starts one BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY
 *    transaction, taking its snapshot at once, held until close(): every
 *    table of the connection comes from that one moment;
 *  - values are PostgreSQL's own text output (what `psql \copy ... csv`
 *    writes) under fixed session settings (DateStyle ISO, IntervalStyle
 *    postgres, TimeZone UTC, extra_float_digits 3, row_security off), except
 *    bytea, which is written as standard base64 (csv.h). Columns holding
 *    bytea inside an array, composite or range are refused by check();
 *  - a table is exported with COPY (SELECT <columns> FROM <schema>.<table>)
 *    TO STDOUT (FORMAT csv), streamed record by record (PQgetCopyData) and
 *    rewritten into csv.h's exact form; memory is one record at a time.
 *  - the password is handed to libpq and never copied by this module (libpq
 *    wipes its own copy in PQfinish).
 */
#ifndef AL_RUNNER_SOURCE_POSTGRESQL_H
#define AL_RUNNER_SOURCE_POSTGRESQL_H

#include "common/buf.h"
#include "runner/csv.h"
#include "runner/source.h"

#include <stddef.h>

/* A parsed connection url: every field a new string (NULL when absent). */
struct pg_url {
	char *host;    /* never NULL after a successful parse */
	char *port;    /* decimal 1..65535; "5432" when the url gives none */
	char *dbname;  /* never NULL after a successful parse */
	char *sslmode; /* one of libpq's sslmode values, or NULL (libpq's default) */
};

/* Parses a postgresql:// or postgres:// url into *out (free with
 * source_postgresql_url_free, also after a failure). AL_ERR_INVALID with a
 * message that never quotes the url: a user or password in it, no host, no
 * database, a bad port, an unknown parameter or sslmode. */
int source_postgresql_parse_url(struct pg_url *out, const char *url);
void source_postgresql_url_free(struct pg_url *u);

/* Splits an object name: "schema.table" at its first '.', or just "table"
 * (*schema NULL). New strings (free them). */
int source_postgresql_split_name(const char *object, char **schema, char **table);

/* The reason in a libpq connection error, on one line: the last attempt's
 * text after "connection to server ... failed: ", without "FATAL:" and
 * libpq's indented hints, whitespace collapsed. Appended to out. */
int source_postgresql_error_line(struct buf *out, const char *libpq_message);

/* Writes one record of COPY ... (FORMAT csv) output - rec[0..n) ending in
 * '\n', exactly as PQgetCopyData returns it - to w as one csv.h record of
 * ncols fields. PostgreSQL's CSV differs from csv.h only in the record end
 * (LF), a lone \. quoted in one-column tables and text not checked as
 * UTF-8, so a record without quotes, CR or LF is copied as is after a UTF-8
 * check, and any other is parsed and each field rewritten (may modify rec).
 * AL_ERR_INVALID: text not UTF-8 (message from csv_writer_text); AL_ERR_IO:
 * a malformed record or the wrong number of fields - for both, *bad_col is
 * the 0-based column at fault; otherwise (size_t)-1, e.g. for csv.h's write
 * errors, returned as they are. */
int source_postgresql_copy_record(struct csv_writer *w, char *rec, size_t n, size_t ncols, size_t *bad_col);

#endif
