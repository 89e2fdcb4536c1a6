/*
 * source_mariadb.h - reads tables out of MariaDB or MySQL for the job runner
 * (connection types "mariadb" and "mysql"; the source is source_mariadb_ops,
 * source.h).
 *
 * url: mariadb://host[:port]/database or mysql://host[:port]/database
 * ("mysql+pymysql://..." as SQLAlchemy writes it is accepted too), port 3306
 * by default, host a name, an IPv4 address or [IPv6]. Parameters:
 *   ?ssl=disabled|required|verify_identity  TLS: off (the default), on without
 *                                     checking the certificate, or on with the
 *                                     certificate checked against the CA and
 *                                     the host name;
 *   &sslca=/path/ca.pem               the CA for verify_identity (implies it);
 *   ?socket=/run/mysqld/mysqld.sock   a Unix socket instead of TCP (the host
 *                                     must then be "localhost").
 * The user and password come from the job's credentials (source_conn); a url
 * that carries a password is refused (and never echoed). A user in the url
 * (mariadb://reader@host/db) is used only when the credentials give none.
 *
 * What it promises, beyond source.h:
 *  - one connection (utf8mb4, TCP unless socket=, LOAD DATA LOCAL disabled,
 *    session time zone +00:00 so TIMESTAMPs read the same wherever the server
 *    is) holding one REPEATABLE READ, START TRANSACTION WITH CONSISTENT
 *    SNAPSHOT, READ ONLY transaction from open to close: every table comes
 *    from the same snapshot (for InnoDB tables; MyISAM has no snapshots);
 *  - an object is "table" in the url's database, or "db.table" when no table
 *    of that full name exists there; tables and columns are looked up in
 *    information_schema with escaped literals and always quoted with
 *    backticks (doubled inside);
 *  - the columns are those SELECT * returns (INVISIBLE ones are left out), in
 *    order; each column's kind decides its CSV form (see mariadb_kind);
 *  - rows are streamed with mysql_use_result: memory is one row at a time;
 *  - libmariadb's copy of the password is wiped as soon as the connection is
 *    made (the source never copies it); server messages quoted in errors
 *    have the password masked should a server echo it.
 */
#ifndef AL_RUNNER_SOURCE_MARIADB_H
#define AL_RUNNER_SOURCE_MARIADB_H

#include "common/buf.h"
#include "runner/source.h"

#include <stddef.h>
#include <stdint.h>

/* How a column's values become CSV fields. */
enum mariadb_kind {
	MARIADB_KIND_UNSUPPORTED = 0, /* refused by check() naming column and type */
	MARIADB_KIND_NUMBER,          /* integers, DECIMAL, FLOAT, DOUBLE, YEAR: the server's text, unquoted */
	MARIADB_KIND_TEXT,            /* character types, ENUM, SET, JSON, dates and times, UUID, INET4/6:
	                               * the server's text (UTF-8, validated) */
	MARIADB_KIND_BINARY,          /* BINARY, VARBINARY, BLOBs and character types in the binary
	                               * charset: base64 */
	MARIADB_KIND_BIT,             /* BIT(n): its unsigned integer value in decimal */
};

/* The kind of a column from information_schema.COLUMNS DATA_TYPE (e.g.
 * "varchar") and CHARACTER_SET_NAME (may be NULL). Unknown types, and the
 * spatial ones (geometry, point, ...) and vector, are unsupported. */
enum mariadb_kind source_mariadb_kind(const char *data_type, const char *charset);

enum mariadb_ssl { MARIADB_SSL_DISABLED = 0, MARIADB_SSL_REQUIRED, MARIADB_SSL_VERIFY_IDENTITY };

struct mariadb_url {
	char *host;         /* name or address, IPv6 without brackets */
	unsigned int port;  /* 3306 when not given */
	char *database;     /* percent-decoded */
	char *user;         /* percent-decoded user from the url, or NULL */
	char *socket;       /* ?socket=, or NULL */
	char *ssl_ca;       /* ?sslca=, or NULL */
	enum mariadb_ssl ssl;
};

/* Parses a connection url as above into *u (free with
 * source_mariadb_url_free, also after a failure). AL_ERR_INVALID with a
 * message that never quotes the url. */
int source_mariadb_parse_url(const char *url, struct mariadb_url *u);
void source_mariadb_url_free(struct mariadb_url *u);

/* Appends name as a MariaDB identifier: `name` with backticks doubled. */
int source_mariadb_quote_ident(struct buf *b, const char *name);

/* The value of a BIT column as the text protocol sends it (n big-endian
 * bytes, n <= 8). AL_ERR_INVALID when n > 8. */
int source_mariadb_bit_value(const char *data, size_t n, uint64_t *out);

/* 1 when s[0..n) is a non-empty run of digits, signs, '.', 'e'/'E' - what the
 * server sends for a number - so it can be written unquoted; else 0. */
int source_mariadb_is_number(const char *s, size_t n);

/* Appends msg to out with every occurrence of secret (when non-empty)
 * replaced by "***". */
int source_mariadb_redact(struct buf *out, const char *msg, const char *secret);

#endif
