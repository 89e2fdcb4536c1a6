#include "runner/source_mariadb.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "runner/mariadb_dl.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* How many unsupported columns one message names. */
#define LIST_COLUMNS_MAX 10
#define DEFAULT_TIMEOUT_S 30
/* A read waits this many connect timeouts: long enough for a view that takes
 * a while before its first row, short enough to notice a vanished server. */
#define READ_TIMEOUT_FACTOR 10
/* Statements built here hold two identifiers of at most a few hundred bytes
 * each, or a column list: bounded by MariaDB's 4096 columns of 64 chars. */
#define SQL_MAX ((size_t)4 << 20)

struct source_mariadb {
	const struct source_ops *ops; /* first: a struct source */
	const struct mariadb_dl *api;
	MYSQL *db;
	struct mariadb_url url;
	const char *name;         /* borrowed: the connection's name */
	const char *user;         /* borrowed: the credentials' or url.user */
	const char *password;     /* borrowed from source_conn, only to mask it in messages */
	const char *user_key;     /* borrowed, for messages */
	const char *password_key; /* borrowed, for messages */
	char *where;              /* "MariaDB server h:p, database 'd'" for messages */
	char *server_version;
	int in_txn;
	int broken;               /* the connection is gone: no COMMIT at close */
};

/* One column as information_schema describes it. */
struct mdb_column {
	char *name;
	char *data_type;   /* DATA_TYPE, e.g. "int" */
	char *column_type; /* COLUMN_TYPE, e.g. "int(10) unsigned" */
	enum mariadb_kind kind;
};

struct mdb_table {
	char *schema;
	char *name;
	struct mdb_column *cols;
	size_t ncols;
};

/* ---- pure helpers (source_mariadb.h) ---------------------------------- */

enum mariadb_kind source_mariadb_kind(const char *data_type, const char *charset)
{
	/* DATA_TYPE as MariaDB 10.x/11.x and MySQL 5.7/8.x spell it. */
	static const struct {
		const char *type;
		enum mariadb_kind kind;
		int character; /* a character type: the binary charset makes it bytes */
	} kinds[] = {
		{ "tinyint", MARIADB_KIND_NUMBER, 0 },     { "smallint", MARIADB_KIND_NUMBER, 0 },
		{ "mediumint", MARIADB_KIND_NUMBER, 0 },   { "int", MARIADB_KIND_NUMBER, 0 },
		{ "integer", MARIADB_KIND_NUMBER, 0 },     { "bigint", MARIADB_KIND_NUMBER, 0 },
		{ "decimal", MARIADB_KIND_NUMBER, 0 },     { "numeric", MARIADB_KIND_NUMBER, 0 },
		{ "float", MARIADB_KIND_NUMBER, 0 },       { "double", MARIADB_KIND_NUMBER, 0 },
		{ "real", MARIADB_KIND_NUMBER, 0 },        { "year", MARIADB_KIND_NUMBER, 0 },
		{ "bit", MARIADB_KIND_BIT, 0 },
		{ "char", MARIADB_KIND_TEXT, 1 },          { "varchar", MARIADB_KIND_TEXT, 1 },
		{ "tinytext", MARIADB_KIND_TEXT, 1 },      { "text", MARIADB_KIND_TEXT, 1 },
		{ "mediumtext", MARIADB_KIND_TEXT, 1 },    { "longtext", MARIADB_KIND_TEXT, 1 },
		{ "enum", MARIADB_KIND_TEXT, 1 },          { "set", MARIADB_KIND_TEXT, 1 },
		{ "json", MARIADB_KIND_TEXT, 0 },          { "date", MARIADB_KIND_TEXT, 0 },
		{ "datetime", MARIADB_KIND_TEXT, 0 },      { "timestamp", MARIADB_KIND_TEXT, 0 },
		{ "time", MARIADB_KIND_TEXT, 0 },          { "uuid", MARIADB_KIND_TEXT, 0 },
		{ "inet4", MARIADB_KIND_TEXT, 0 },         { "inet6", MARIADB_KIND_TEXT, 0 },
		{ "binary", MARIADB_KIND_BINARY, 0 },      { "varbinary", MARIADB_KIND_BINARY, 0 },
		{ "tinyblob", MARIADB_KIND_BINARY, 0 },    { "blob", MARIADB_KIND_BINARY, 0 },
		{ "mediumblob", MARIADB_KIND_BINARY, 0 },  { "longblob", MARIADB_KIND_BINARY, 0 },
	};

	if (!data_type)
		return MARIADB_KIND_UNSUPPORTED;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (strcasecmp(kinds[i].type, data_type))
			continue;
		if (kinds[i].character && charset && !strcasecmp(charset, "binary"))
			return MARIADB_KIND_BINARY;
		return kinds[i].kind;
	}
	/* geometry, point, ..., vector, and whatever comes next: refusing is
	 * better than writing bytes nobody can read back. */
	return MARIADB_KIND_UNSUPPORTED;
}

int source_mariadb_quote_ident(struct buf *b, const char *name)
{
	int rc = buf_appendc(b, '`');
	for (const char *p = name; !rc && *p; p++)
		rc = *p == '`' ? buf_append(b, "``", 2) : buf_appendc(b, *p);
	return rc ? rc : buf_appendc(b, '`');
}

int source_mariadb_bit_value(const char *data, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	*out = 0;
	if (n > 8)
		return al_error_set(AL_ERR_INVALID, "BIT value of %zu bytes is longer than 64 bits", n);
	for (size_t i = 0; i < n; i++)
		v = v << 8 | (unsigned char)data[i];
	*out = v;
	return AL_OK;
}

int source_mariadb_is_number(const char *s, size_t n)
{
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'))
			return 0;
	}
	return 1;
}

int source_mariadb_redact(struct buf *out, const char *msg, const char *secret)
{
	size_t slen = secret ? strlen(secret) : 0;
	const char *p = msg, *hit;
	int rc = AL_OK;

	if (!msg)
		return AL_OK;
	if (!slen)
		return buf_appends(out, msg);
	while (!rc && (hit = strstr(p, secret))) {
		rc = buf_append(out, p, (size_t)(hit - p));
		rc = rc ? rc : buf_appends(out, "***");
		p = hit + slen;
	}
	return rc ? rc : buf_appends(out, p);
}

/* %XX-decodes s[0..n) into a new string; NULL with *bad set for a malformed
 * escape or a NUL byte (*bad clear: out of memory). */
static char *pct_decode(const char *s, size_t n, int *bad)
{
	char *out = NULL;
	int rc = util_percent_decode(s, n, 0, &out, NULL);
	*bad = rc == AL_ERR_INVALID;
	return out;
}

void source_mariadb_url_free(struct mariadb_url *u)
{
	if (!u)
		return;
	free(u->host);
	free(u->database);
	free(u->user);
	free(u->socket);
	free(u->ssl_ca);
	memset(u, 0, sizeof(*u));
}

static int url_invalid(const char *what)
{
	return al_error_set(AL_ERR_INVALID, "connection url %s; expected mariadb://host[:port]/database "
					    "(or mysql://...)", what);
}

static int host_char_ok(char c, int ipv6)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-')
		return 1;
	return ipv6 ? c == ':' : c == '_';
}

/* One query parameter (key=value, both still encoded). */
static int url_param(struct mariadb_url *u, const char *key, size_t klen, const char *val, size_t vlen, int *ssl_set)
{
	char *v;
	int bad;

#define KEY_IS(lit) (klen == sizeof(lit) - 1 && !strncasecmp(key, lit, klen))
	if (KEY_IS("password") || KEY_IS("passwd") || KEY_IS("pwd") || KEY_IS("pass"))
		return al_error_set(AL_ERR_INVALID, "connection url must not carry a password: put it in the job's "
						    "Secret and name its key in credentials.passwordKey");
	if (!KEY_IS("ssl") && !KEY_IS("sslca") && !KEY_IS("socket")) {
		int plain = klen > 0 && klen <= 32;
		for (size_t i = 0; plain && i < klen; i++)
			plain = (key[i] >= 'a' && key[i] <= 'z') || (key[i] >= 'A' && key[i] <= 'Z') || key[i] == '_';
		/* Only a harmless-looking key is echoed: the url is never quoted. */
		if (plain)
			return al_error_set(AL_ERR_INVALID, "connection url has an unknown parameter '%.*s' "
							    "(supported: ssl, sslca, socket)", (int)klen, key);
		return url_invalid("has an unknown parameter (supported: ssl, sslca, socket)");
	}
	v = pct_decode(val, vlen, &bad);
	if (!v)
		return bad ? url_invalid("has a malformed %-escape in a parameter") : al_error_set(AL_ERR_NOMEM, "out of memory");
	if (KEY_IS("ssl")) {
		*ssl_set = 1;
		if (!strcasecmp(v, "disabled") || !strcasecmp(v, "false") || !strcmp(v, "0"))
			u->ssl = MARIADB_SSL_DISABLED;
		else if (!strcasecmp(v, "required") || !strcasecmp(v, "true") || !strcmp(v, "1"))
			u->ssl = MARIADB_SSL_REQUIRED;
		else if (!strcasecmp(v, "verify_identity"))
			u->ssl = MARIADB_SSL_VERIFY_IDENTITY;
		else {
			free(v);
			return al_error_set(AL_ERR_INVALID, "connection url parameter ssl must be disabled, required "
							    "or verify_identity");
		}
		free(v);
	} else if (KEY_IS("sslca")) {
		free(u->ssl_ca);
		u->ssl_ca = v;
		if (!*v)
			return url_invalid("has an empty sslca");
	} else {
		free(u->socket);
		u->socket = v;
		if (*v != '/')
			return url_invalid("parameter socket must be an absolute path");
	}
#undef KEY_IS
	return AL_OK;
}

int source_mariadb_parse_url(const char *url, struct mariadb_url *u)
{
	const char *p, *auth_end, *at, *hp, *hend, *port_s = NULL, *path, *q;
	size_t scheme_len, host_len;
	int bad, ssl_set = 0, rc;

	memset(u, 0, sizeof(*u));
	u->port = 3306;
	if (!url || !*url)
		return al_error_set(AL_ERR_INVALID, "connection has no url; give mariadb://host:3306/database");
	p = strstr(url, "://");
	scheme_len = p ? (size_t)(p - url) : 0;
	/* mariadb, mysql, or either with SQLAlchemy's "+driver" */
	if (!p || !((scheme_len == 7 && !strncasecmp(url, "mariadb", 7)) ||
		    (scheme_len == 5 && !strncasecmp(url, "mysql", 5)) ||
		    (scheme_len > 8 && !strncasecmp(url, "mariadb+", 8)) ||
		    (scheme_len > 6 && !strncasecmp(url, "mysql+", 6))))
		return url_invalid("must start with mariadb:// or mysql://");
	p += 3;
	auth_end = p + strcspn(p, "/?#");
	/* The last '@' ends the user info: a user name may contain '@' only
	 * percent-encoded, but be lenient. */
	at = NULL;
	for (const char *c = p; c < auth_end; c++)
		if (*c == '@')
			at = c;
	if (at) {
		if (memchr(p, ':', (size_t)(at - p)))
			return al_error_set(AL_ERR_INVALID, "connection url must not carry a password: put it in the "
							    "job's Secret and name its key in credentials.passwordKey");
		if (at > p) {
			u->user = pct_decode(p, (size_t)(at - p), &bad);
			if (!u->user)
				return bad ? url_invalid("has a malformed %-escape in the user") : al_error_set(AL_ERR_NOMEM, "out of memory");
		}
		hp = at + 1;
	} else {
		hp = p;
	}
	if (hp < auth_end && *hp == '[') {
		const char *close = memchr(hp, ']', (size_t)(auth_end - hp));
		if (!close)
			return url_invalid("has an IPv6 address without its closing ']'");
		hp++;
		hend = close;
		if (close + 1 < auth_end) {
			if (close[1] != ':')
				return url_invalid("has something after the IPv6 address that is not :port");
			port_s = close + 2;
		}
		for (const char *c = hp; c < hend; c++)
			if (!host_char_ok(*c, 1))
				return url_invalid("has an invalid IPv6 address");
	} else {
		const char *colon = memchr(hp, ':', (size_t)(auth_end - hp));
		hend = colon ? colon : auth_end;
		if (colon)
			port_s = colon + 1;
		for (const char *c = hp; c < hend; c++)
			if (!host_char_ok(*c, 0))
				return url_invalid("has an invalid host name");
	}
	host_len = (size_t)(hend - hp);
	if (!host_len)
		return url_invalid("names no host");
	if (!(u->host = util_strndup(hp, host_len)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (port_s) {
		unsigned long v = 0;
		size_t n = (size_t)(auth_end - port_s);
		if (!n || n > 5)
			return url_invalid("has an invalid port (1-65535)");
		for (size_t i = 0; i < n; i++) {
			if (port_s[i] < '0' || port_s[i] > '9')
				return url_invalid("has an invalid port (1-65535)");
			v = v * 10 + (unsigned long)(port_s[i] - '0');
		}
		if (v < 1 || v > 65535)
			return url_invalid("has an invalid port (1-65535)");
		u->port = (unsigned int)v;
	}
	if (*auth_end != '/')
		return url_invalid("names no database");
	path = auth_end + 1;
	q = path + strcspn(path, "?#");
	if (memchr(path, '/', (size_t)(q - path)))
		return url_invalid("has more than one path segment (the database)");
	if (q == path)
		return url_invalid("names no database");
	if (!(u->database = pct_decode(path, (size_t)(q - path), &bad)))
		return bad ? url_invalid("has a malformed %-escape in the database") : al_error_set(AL_ERR_NOMEM, "out of memory");
	if (!*u->database)
		return url_invalid("names no database");
	if (*q == '?') {
		const char *end = q + 1 + strcspn(q + 1, "#");
		const char *k = q + 1;
		while (k < end) {
			const char *amp = memchr(k, '&', (size_t)(end - k));
			const char *pe = amp ? amp : end;
			const char *eq = memchr(k, '=', (size_t)(pe - k));
			if (pe > k) {
				if (!eq)
					return url_invalid("has a parameter without '=value'");
				if ((rc = url_param(u, k, (size_t)(eq - k), eq + 1, (size_t)(pe - eq - 1), &ssl_set)))
					return rc;
			}
			k = pe + (amp ? 1 : 0);
		}
	}
	if (u->ssl_ca) {
		if (!ssl_set)
			u->ssl = MARIADB_SSL_VERIFY_IDENTITY;
		else if (u->ssl == MARIADB_SSL_DISABLED)
			return url_invalid("has sslca but ssl=disabled");
	}
	if (u->socket && strcmp(u->host, "localhost"))
		return url_invalid("has socket= with a host other than localhost");
	return AL_OK;
}

/* ---- the connection ---------------------------------------------------- */

/* The server's message for the last error, with the password masked. */
static int server_message(struct source_mariadb *s, struct buf *out)
{
	const char *msg = s->db ? s->api->error(s->db) : "";
	return source_mariadb_redact(out, msg && *msg ? msg : "no message", s->password);
}

/* Errors after which the connection is gone (no COMMIT at close). */
static int lost_connection(unsigned int e)
{
	return e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST || e == ER_SERVER_SHUTDOWN || e == ER_CONNECTION_KILLED;
}

/* The last server error as an al_error: "<where>: <what>: <message> (error N)". */
static int db_fail(struct source_mariadb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int db_fail(struct source_mariadb *s, const char *fmt, ...)
{
	unsigned int e = s->api->errno_(s->db);
	struct buf what, msg;
	va_list ap;
	int code = AL_ERR_IO, rc;

	if (lost_connection(e)) {
		code = AL_ERR_UNAVAILABLE;
		s->broken = 1;
	} else if (e == ER_TABLEACCESS_DENIED_ERROR || e == ER_COLUMNACCESS_DENIED_ERROR ||
		   e == ER_DBACCESS_DENIED_ERROR || e == ER_ACCESS_DENIED_ERROR) {
		code = AL_ERR_FORBIDDEN;
	}
	buf_init(&what, 64 << 10);
	buf_init(&msg, 64 << 10);
	va_start(ap, fmt);
	rc = buf_vappendf(&what, fmt, ap);
	va_end(ap);
	rc = rc ? rc : server_message(s, &msg);
	if (rc)
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	else
		rc = al_error_set(code, "%s: %s: %s (error %u)%s", s->where, buf_cstr(&what), buf_cstr(&msg), e,
				  code == AL_ERR_UNAVAILABLE ? "; the connection to the server was lost, retry when "
							       "it is back" : "");
	buf_free(&what);
	buf_free(&msg);
	return rc;
}

/* Runs a statement whose result, if any, is discarded. */
static int exec(struct source_mariadb *s, const char *sql, const char *what)
{
	MYSQL_RES *r;

	if (s->api->real_query(s->db, sql, (unsigned long)strlen(sql)))
		return db_fail(s, "%s", what);
	r = s->api->store_result(s->db);
	if (r)
		s->api->free_result(r);
	else if (s->api->field_count(s->db))
		return db_fail(s, "%s", what);
	return AL_OK;
}

/* The message for a failed connect, by what the server or library said. */
static int connect_fail(struct source_mariadb *s)
{
	unsigned int e = s->api->errno_(s->db);
	struct buf msg;
	const char *m;
	int rc;

	buf_init(&msg, 64 << 10);
	if (server_message(s, &msg)) {
		buf_free(&msg);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	m = buf_cstr(&msg);
	switch (e) {
	case ER_ACCESS_DENIED_ERROR:
	case ER_ACCESS_DENIED_NO_PASSWORD_ERROR:
	case 1862: /* ER_MUST_CHANGE_PASSWORD_LOGIN */
		rc = al_error_set(AL_ERR_FORBIDDEN,
				  "%s: access denied for user '%s' (%s); check the user and password in the job's "
				  "Secret (credentials.userKey %s%s%s, credentials.passwordKey %s%s%s)",
				  s->where, s->user, m, s->user_key ? "'" : "", s->user_key ? s->user_key : "(none)",
				  s->user_key ? "'" : "", s->password_key ? "'" : "",
				  s->password_key ? s->password_key : "(none)", s->password_key ? "'" : "");
		break;
	case ER_HOST_NOT_PRIVILEGED:
		rc = al_error_set(AL_ERR_FORBIDDEN, "%s: the server does not accept connections from this host (%s); "
						    "ask its administrator to allow the user '%s' from the airlock",
				  s->where, m, s->user);
		break;
	case ER_BAD_DB_ERROR:
		rc = al_error_set(AL_ERR_NOT_FOUND, "%s: database '%s' does not exist (%s); check the database in "
						    "the connection url", s->where, s->url.database, m);
		break;
	case ER_DBACCESS_DENIED_ERROR:
		/* The server says this, not "unknown database", to a user who may
		 * not see the database: it may not exist or may not be granted. */
		rc = al_error_set(AL_ERR_NOT_FOUND, "%s: database '%s' not found, or user '%s' has no privileges "
						    "on it (%s); check the database in the connection url, or GRANT "
						    "SELECT ON `%s`.* to the user", s->where, s->url.database, s->user,
				  m, s->url.database);
		break;
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_UNKNOWN_HOST:
	case CR_IPSOCK_ERROR:
	case CR_SOCKET_CREATE_ERROR:
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case ER_CON_COUNT_ERROR:
	case ER_HOST_IS_BLOCKED:
	case ER_SERVER_SHUTDOWN:
		rc = al_error_set(AL_ERR_UNAVAILABLE, "%s: cannot reach the server (%s); check the host and port in "
						      "the connection url, that the server is running and that the "
						      "network lets the airlock reach it", s->where, m);
		break;
	case CR_SSL_CONNECTION_ERROR:
		rc = al_error_set(AL_ERR_IO, "%s: TLS connection failed (%s); check the url's ssl and sslca "
					     "parameters and the server's certificate", s->where, m);
		break;
	default:
		rc = al_error_set(AL_ERR_IO, "%s: cannot connect (%s, error %u)", s->where, m, e);
		break;
	}
	buf_free(&msg);
	return rc;
}

static void mdb_close(struct source *base);

static int set_options(struct source_mariadb *s, int timeout_s)
{
	unsigned int connect_timeout = (unsigned int)(timeout_s > 0 ? timeout_s : DEFAULT_TIMEOUT_S);
	unsigned int read_timeout = connect_timeout * READ_TIMEOUT_FACTOR;
	unsigned int protocol = s->url.socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
	unsigned int local_infile = 0;
	my_bool on = 1, off = 0;
	int bad = 0;

	bad |= s->api->options(s->db, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	bad |= s->api->options(s->db, MYSQL_OPT_READ_TIMEOUT, &read_timeout);
	bad |= s->api->options(s->db, MYSQL_OPT_WRITE_TIMEOUT, &read_timeout);
	bad |= s->api->options(s->db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* "localhost" would otherwise silently mean the default Unix socket. */
	bad |= s->api->options(s->db, MYSQL_OPT_PROTOCOL, &protocol);
	/* A server must never be able to ask for a file of ours (the
	 * credentials, say) with LOAD DATA LOCAL. */
	bad |= s->api->options(s->db, MYSQL_OPT_LOCAL_INFILE, &local_infile);
	bad |= s->api->options(s->db, MYSQL_OPT_RECONNECT, &off);
	if (s->url.ssl != MARIADB_SSL_DISABLED) {
		bad |= s->api->options(s->db, MYSQL_OPT_SSL_ENFORCE, &on);
		bad |= s->api->options(s->db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT,
				       s->url.ssl == MARIADB_SSL_VERIFY_IDENTITY ? &on : &off);
		if (s->url.ssl_ca)
			bad |= s->api->options(s->db, MYSQL_OPT_SSL_CA, s->url.ssl_ca);
	}
	return bad ? al_error_set(AL_ERR_IO, "%s: the client library refused an option", s->where) : AL_OK;
}

static int mdb_open(struct source **out, const struct source_conn *conn)
{
	struct source_mariadb *s;
	struct buf where;
	const char *product = conn->type && !strcasecmp(conn->type, "mysql") ? "MySQL" : "MariaDB";
	const char *version;
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	s->ops = &source_mariadb_ops;
	s->name = conn->name ? conn->name : "?";
	s->password = conn->password;
	s->user_key = conn->user_key;
	s->password_key = conn->password_key;
	if ((rc = source_mariadb_parse_url(conn->url, &s->url)))
		goto fail;
	buf_init(&where, 64 << 10);
	if (s->url.socket)
		rc = buf_appendf(&where, "%s server on socket %s, database '%s'", product, s->url.socket,
				 s->url.database);
	else
		rc = buf_appendf(&where, "%s server %s%s%s:%u, database '%s'", product, strchr(s->url.host, ':') ? "[" : "",
				 s->url.host, strchr(s->url.host, ':') ? "]" : "", s->url.port, s->url.database);
	if (rc) {
		buf_free(&where);
		goto fail;
	}
	s->where = buf_detach(&where);
	s->user = conn->user ? conn->user : s->url.user;
	if (!s->user || !*s->user) {
		if (conn->user_key)
			rc = al_error_set(AL_ERR_INVALID, "%s: needs a user: credentials.userKey '%s' is not among the "
							  "job's credentials", s->where, conn->user_key);
		else
			rc = al_error_set(AL_ERR_INVALID, "%s: needs a user: set credentials.userKey to the key of "
							  "the job's Secret that holds it", s->where);
		goto fail;
	}
	if (conn->password_key && !conn->password) {
		rc = al_error_set(AL_ERR_INVALID, "%s: needs a password: credentials.passwordKey '%s' is not among "
						  "the job's credentials", s->where, conn->password_key);
		goto fail;
	}
	if (!(s->api = mariadb_dl())) {
		rc = AL_ERR_UNAVAILABLE;
		goto fail;
	}
	if (!(s->db = s->api->init(NULL))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if ((rc = set_options(s, conn->timeout_s)))
		goto fail;
	if (!s->api->real_connect(s->db, s->url.socket ? NULL : s->url.host, s->user, conn->password ? conn->password : "",
				  s->url.database, s->url.socket ? 0 : s->url.port, s->url.socket, 0)) {
		/* (libmariadb frees its copy of the password on this path
		 * without wiping it; nothing here can reach it.) */
		rc = connect_fail(s);
		goto fail;
	}
	/* Reconnecting is off, so libmariadb no longer needs its copy of the
	 * password (MYSQL is public in <mysql.h>): wipe it now rather than
	 * leave it in the heap until close. */
	if (s->db->passwd)
		sodium_memzero(s->db->passwd, strlen(s->db->passwd));
	/* libmariadb 3.3 falls back to plain text when the server offers no TLS
	 * and the certificate is not verified: "required" is checked here. */
	if (s->url.ssl != MARIADB_SSL_DISABLED && !s->api->get_ssl_cipher(s->db)) {
		rc = al_error_set(AL_ERR_IO, "%s: the url asks for ssl=%s but the server does not offer TLS; enable "
					     "TLS on the server or change the url's ssl parameter", s->where,
				  s->url.ssl == MARIADB_SSL_REQUIRED ? "required" : "verify_identity");
		goto fail;
	}
	version = s->api->get_server_info(s->db);
	if (!(s->server_version = util_strdup(version ? version : ""))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	/* TIMESTAMPs are stored in UTC and shown in the session's zone: pin it
	 * so the CSV does not depend on where the server runs. */
	if ((rc = exec(s, "SET SESSION time_zone = '+00:00'", "cannot set the session time zone")) ||
	    (rc = exec(s, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
		       "cannot set the isolation level")) ||
	    (rc = exec(s, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
		       "cannot start a read-only snapshot transaction")))
		goto fail;
	s->in_txn = 1;
	*out = (struct source *)s;
	return AL_OK;
fail:
	mdb_close((struct source *)s);
	return rc;
}

static int mdb_describe(struct source *base, json_t **out)
{
	struct source_mariadb *s = (struct source_mariadb *)base;
	*out = json_pack("{s:s, s:I, s:s, s:s}", "host", s->url.host, "port", (json_int_t)s->url.port, "database",
			 s->url.database, "serverVersion", s->server_version ? s->server_version : "");
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

static void mdb_close(struct source *base)
{
	struct source_mariadb *s = (struct source_mariadb *)base;
	if (!s)
		return;
	if (s->db) {
		/* Only reads happened: COMMIT just ends the snapshot politely. */
		if (s->in_txn && !s->broken)
			s->api->real_query(s->db, "COMMIT", 6);
		if (s->db->passwd)
			sodium_memzero(s->db->passwd, strlen(s->db->passwd));
		s->api->close(s->db);
	}
	source_mariadb_url_free(&s->url);
	free(s->where);
	free(s->server_version);
	free(s);
}

/* ---- tables --------------------------------------------------------------- */

static void table_free(struct mdb_table *t)
{
	for (size_t i = 0; i < t->ncols; i++) {
		free(t->cols[i].name);
		free(t->cols[i].data_type);
		free(t->cols[i].column_type);
	}
	free(t->cols);
	free(t->schema);
	free(t->name);
	memset(t, 0, sizeof(*t));
}

/* Appends 'v' as an escaped string literal (the connection's charset and
 * NO_BACKSLASH_ESCAPES are honoured by mysql_real_escape_string). */
static int append_literal(struct source_mariadb *s, struct buf *b, const char *v)
{
	size_t n = strlen(v);
	char *tmp = malloc(2 * n + 1);
	unsigned long k;
	int rc;

	if (!tmp)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	k = s->api->real_escape_string(s->db, tmp, v, (unsigned long)n);
	if (k == (unsigned long)-1) {
		free(tmp);
		return al_error_set(AL_ERR_INVALID, "%s: a name cannot be escaped in the connection's charset", s->where);
	}
	rc = buf_appendc(b, '\'');
	rc = rc ? rc : buf_append(b, tmp, k);
	rc = rc ? rc : buf_appendc(b, '\'');
	free(tmp);
	return rc;
}

static int run_query(struct source_mariadb *s, const struct buf *sql, MYSQL_RES **res, const char *what)
{
	*res = NULL;
	if (s->api->real_query(s->db, sql->ptr, (unsigned long)sql->len))
		return db_fail(s, "%s", what);
	if (!(*res = s->api->use_result(s->db)))
		return db_fail(s, "%s", what);
	return AL_OK;
}

/* After the last row of a use_result: was it the end or an error? */
static int end_of_rows(struct source_mariadb *s, const char *what)
{
	return s->api->errno_(s->db) ? db_fail(s, "%s", what) : AL_OK;
}

/* Finds schema.name in information_schema.TABLES: 1 found (*actual gets the
 * name as stored), 0 not there. */
static int find_table(struct source_mariadb *s, const char *schema, const char *name, char **actual)
{
	struct buf sql;
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc, found = 0;

	*actual = NULL;
	buf_init(&sql, SQL_MAX);
	rc = buf_appends(&sql, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ");
	rc = rc ? rc : append_literal(s, &sql, schema);
	rc = rc ? rc : buf_appends(&sql, " AND TABLE_NAME = ");
	rc = rc ? rc : append_literal(s, &sql, name);
	rc = rc ? rc : run_query(s, &sql, &res, "cannot read information_schema.TABLES");
	/* information_schema compares case-insensitively; on a server with
	 * case-sensitive names prefer the exact one. */
	while (!rc && (row = s->api->fetch_row(res))) {
		if (!row[0])
			continue;
		if (!found || !strcmp(row[0], name)) {
			free(*actual);
			if (!(*actual = util_strdup(row[0])))
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			found = 1;
		}
	}
	if (!rc)
		rc = end_of_rows(s, "cannot read information_schema.TABLES");
	if (res)
		s->api->free_result(res);
	buf_free(&sql);
	if (rc) {
		free(*actual);
		*actual = NULL;
		return rc;
	}
	return found;
}

/* "a, b, c and 12 more" of the tables in schema. */
static int list_tables(struct source_mariadb *s, const char *schema, struct buf *out)
{
	struct buf sql;
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	struct source_list list;
	int rc;

	source_list_init(&list, out);
	buf_init(&sql, SQL_MAX);
	rc = buf_appends(&sql, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ");
	rc = rc ? rc : append_literal(s, &sql, schema);
	rc = rc ? rc : buf_appends(&sql, " ORDER BY TABLE_NAME");
	rc = rc ? rc : run_query(s, &sql, &res, "cannot list tables");
	while (!rc && (row = s->api->fetch_row(res)))
		rc = source_list_add(&list, row[0]);
	if (!rc)
		rc = end_of_rows(s, "cannot list tables");
	if (!rc)
		rc = source_list_end(&list, 0);
	if (res)
		s->api->free_result(res);
	buf_free(&sql);
	return rc;
}

static int table_missing(struct source_mariadb *s, const char *object, const char *schema, const char *name)
{
	struct buf sql, names;
	int rc, denied = 0;

	/* information_schema shows only tables the user has some privilege
	 * on; ask the server directly whether it is missing or hidden. */
	buf_init(&sql, SQL_MAX);
	buf_init(&names, 64 << 10);
	rc = buf_appends(&sql, "SELECT 1 FROM ");
	rc = rc ? rc : source_mariadb_quote_ident(&sql, schema);
	rc = rc ? rc : buf_appendc(&sql, '.');
	rc = rc ? rc : source_mariadb_quote_ident(&sql, name);
	rc = rc ? rc : buf_appends(&sql, " LIMIT 0");
	if (!rc) {
		if (s->api->real_query(s->db, sql.ptr, (unsigned long)sql.len)) {
			unsigned int e = s->api->errno_(s->db);
			if (lost_connection(e))
				rc = db_fail(s, "cannot look up table '%s'", object);
			denied = e == ER_TABLEACCESS_DENIED_ERROR || e == ER_DBACCESS_DENIED_ERROR;
		} else {
			MYSQL_RES *r = s->api->store_result(s->db);
			if (r)
				s->api->free_result(r);
		}
	}
	rc = rc ? rc : list_tables(s, schema, &names);
	if (!rc && strcmp(schema, s->url.database))
		rc = al_error_set(AL_ERR_NOT_FOUND, "%s: table '%s' not found in database '%s'%s%s%s; tables present "
						    "in '%s': %s", s->where, name, schema, denied ? " (or user '" : "",
				  denied ? s->user : "", denied ? "' has no privileges on it)" : "", schema,
				  buf_cstr(&names));
	else if (!rc)
		rc = al_error_set(AL_ERR_NOT_FOUND, "%s: table '%s' not found%s%s%s; tables present: %s", s->where,
				  name, denied ? " (or user '" : "", denied ? s->user : "",
				  denied ? "' has no privileges on it)" : "", buf_cstr(&names));
	buf_free(&sql);
	buf_free(&names);
	return rc;
}

/* The columns of schema.name that SELECT * returns, with their types. */
static int load_columns(struct source_mariadb *s, struct mdb_table *t)
{
	struct buf sql;
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	size_t cap = 0;
	int rc;

	buf_init(&sql, SQL_MAX);
	rc = buf_appends(&sql, "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, EXTRA "
			       "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ");
	rc = rc ? rc : append_literal(s, &sql, t->schema);
	rc = rc ? rc : buf_appends(&sql, " AND TABLE_NAME = ");
	rc = rc ? rc : append_literal(s, &sql, t->name);
	rc = rc ? rc : buf_appends(&sql, " ORDER BY ORDINAL_POSITION");
	rc = rc ? rc : run_query(s, &sql, &res, "cannot read information_schema.COLUMNS");
	while (!rc && (row = s->api->fetch_row(res))) {
		struct mdb_column *c;
		/* Case-insensitive matching may bring a same-named table's
		 * columns; hidden columns are not part of SELECT *. */
		if (!row[0] || strcmp(row[0], t->name) || !row[1] || !row[2] || !row[3])
			continue;
		if (row[5] && strcasestr(row[5], "INVISIBLE"))
			continue;
		if (t->ncols == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct mdb_column *n = realloc(t->cols, ncap * sizeof(*n));
			if (!n) {
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
				break;
			}
			t->cols = n;
			cap = ncap;
		}
		c = &t->cols[t->ncols];
		memset(c, 0, sizeof(*c));
		t->ncols++;
		c->name = util_strdup(row[1]);
		c->data_type = util_strdup(row[2]);
		c->column_type = util_strdup(row[3]);
		if (!c->name || !c->data_type || !c->column_type)
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		c->kind = source_mariadb_kind(row[2], row[4]);
	}
	if (!rc)
		rc = end_of_rows(s, "cannot read information_schema.COLUMNS");
	if (res)
		s->api->free_result(res);
	buf_free(&sql);
	return rc;
}

/* Proves the user may SELECT every column, and that SELECT * agrees with
 * information_schema, without reading a row. */
static int probe_select(struct source_mariadb *s, const char *object, const struct mdb_table *t)
{
	struct buf sql;
	MYSQL_RES *r = NULL;
	int rc;

	buf_init(&sql, SQL_MAX);
	rc = buf_appends(&sql, "SELECT * FROM ");
	rc = rc ? rc : source_mariadb_quote_ident(&sql, t->schema);
	rc = rc ? rc : buf_appendc(&sql, '.');
	rc = rc ? rc : source_mariadb_quote_ident(&sql, t->name);
	rc = rc ? rc : buf_appends(&sql, " LIMIT 0");
	if (!rc && s->api->real_query(s->db, sql.ptr, (unsigned long)sql.len)) {
		unsigned int e = s->api->errno_(s->db);
		if (e == ER_TABLEACCESS_DENIED_ERROR || e == ER_COLUMNACCESS_DENIED_ERROR) {
			struct buf msg;
			buf_init(&msg, 64 << 10);
			rc = server_message(s, &msg);
			rc = rc ? rc : al_error_set(AL_ERR_FORBIDDEN, "%s: user '%s' may not read table '%s' (%s); "
								      "GRANT SELECT ON `%s`.`%s` TO the user, or leave "
								      "the table out", s->where, s->user, object,
						    buf_cstr(&msg), t->schema, t->name);
			buf_free(&msg);
		} else {
			rc = db_fail(s, "cannot read table '%s'", object);
		}
	} else if (!rc) {
		r = s->api->store_result(s->db);
		if (!r) {
			rc = db_fail(s, "cannot read table '%s'", object);
		} else {
			MYSQL_FIELD *f = s->api->fetch_fields(r);
			unsigned int n = s->api->num_fields(r);
			int same = n == t->ncols && f;
			for (unsigned int i = 0; same && i < n; i++)
				same = f[i].name && !strcmp(f[i].name, t->cols[i].name);
			if (!same)
				rc = al_error_set(AL_ERR_FORBIDDEN, "%s: table '%s': SELECT * returns %u columns but "
								    "information_schema lists %zu that user '%s' can "
								    "see; GRANT SELECT on the whole table to the user",
						  s->where, object, n, t->ncols, s->user);
			s->api->free_result(r);
		}
	}
	buf_free(&sql);
	return rc;
}

/* Resolves an object to a table with readable, convertible columns. */
static int resolve(struct source_mariadb *s, const char *object, struct mdb_table *t)
{
	const char *dot = strchr(object, '.');
	char *actual = NULL;
	struct buf bad;
	size_t nbad = 0;
	int rc;

	memset(t, 0, sizeof(*t));
	rc = find_table(s, s->url.database, object, &actual);
	if (rc == 1) {
		t->schema = util_strdup(s->url.database);
	} else if (rc == 0 && dot && dot > object && dot[1]) {
		/* "db.table" */
		if (!(t->schema = util_strndup(object, (size_t)(dot - object))))
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		rc = find_table(s, t->schema, dot + 1, &actual);
		if (rc == 0)
			rc = table_missing(s, object, t->schema, dot + 1);
	} else if (rc == 0) {
		rc = table_missing(s, object, s->url.database, object);
	}
	if (rc < 0) {
		table_free(t);
		return rc;
	}
	t->name = actual;
	if (!t->schema || !t->name) {
		table_free(t);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	if ((rc = load_columns(s, t)) || (rc = probe_select(s, object, t))) {
		table_free(t);
		return rc;
	}
	/* Every unsupported column in one message, before any byte is written. */
	buf_init(&bad, 64 << 10);
	for (size_t i = 0; !rc && i < t->ncols; i++) {
		if (t->cols[i].kind != MARIADB_KIND_UNSUPPORTED)
			continue;
		if (nbad < LIST_COLUMNS_MAX)
			rc = buf_appendf(&bad, "%s'%s' (%s)", nbad ? ", " : "", t->cols[i].name, t->cols[i].column_type);
		nbad++;
	}
	if (!rc && nbad > LIST_COLUMNS_MAX)
		rc = buf_appendf(&bad, " and %zu more", nbad - LIST_COLUMNS_MAX);
	if (!rc && nbad)
		rc = al_error_set(AL_ERR_INVALID, "%s: table '%s': column%s %s ha%s a type the native runner cannot "
						  "write as CSV; collect a view that converts %s (e.g. ST_AsText(col) "
						  "for spatial types) or leaves %s out", s->where, object,
				  nbad > 1 ? "s" : "", buf_cstr(&bad), nbad > 1 ? "ve" : "s", nbad > 1 ? "them" : "it",
				  nbad > 1 ? "them" : "it");
	buf_free(&bad);
	if (rc)
		table_free(t);
	return rc;
}

static int mdb_check(struct source *base, const char *object)
{
	struct mdb_table t;
	int rc = resolve((struct source_mariadb *)base, object, &t);
	if (!rc)
		table_free(&t);
	return rc;
}

/* One field of a row. */
static int write_cell(struct csv_writer *w, enum mariadb_kind kind, const char *v, unsigned long n)
{
	switch (kind) {
	case MARIADB_KIND_NUMBER:
		if (source_mariadb_is_number(v, n))
			return csv_writer_plain(w, v, n);
		return csv_writer_text(w, v, n);
	case MARIADB_KIND_BINARY:
		/* An empty value must not read as NULL: "" like an empty string
		 * (csv_writer_base64 would write nothing at all). */
		return n ? csv_writer_base64(w, v, n) : csv_writer_text(w, "", 0);
	case MARIADB_KIND_BIT: {
		char tmp[24];
		uint64_t bits;
		int len, rc;
		if ((rc = source_mariadb_bit_value(v, n, &bits)))
			return rc;
		len = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)bits);
		return csv_writer_plain(w, tmp, (size_t)len);
	}
	case MARIADB_KIND_TEXT:
	default:
		return csv_writer_text(w, v, n);
	}
}

static int mdb_export(struct source *base, const char *object, struct csv_writer *w, source_progress_fn progress,
		      void *ctx, struct source_table_result *res)
{
	struct source_mariadb *s = (struct source_mariadb *)base;
	struct mdb_table t;
	struct buf sql;
	MYSQL_RES *r = NULL;
	MYSQL_ROW row;
	json_t *cols = NULL;
	uint64_t nrows = 0;
	struct source_progress prog;
	int rc;

	source_progress_init(&prog, progress, ctx, object);
	res->columns = NULL;
	res->rows = 0;
	buf_init(&sql, SQL_MAX);
	if ((rc = resolve(s, object, &t)))
		goto out; /* t is empty */
	if (!(cols = json_array())) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = buf_appends(&sql, "SELECT ");
	for (size_t i = 0; !rc && i < t.ncols; i++) {
		json_t *js;
		rc = i ? buf_appendc(&sql, ',') : AL_OK;
		rc = rc ? rc : source_mariadb_quote_ident(&sql, t.cols[i].name);
		if (rc)
			break;
		if ((rc = csv_writer_text(w, t.cols[i].name, strlen(t.cols[i].name)))) {
			al_error_wrap(rc, "table '%s' column %zu name", object, i + 1);
			goto out;
		}
		if (!(js = json_pack("{s:s, s:s}", "name", t.cols[i].name, "type", t.cols[i].column_type)) ||
		    json_array_append_new(cols, js)) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	rc = rc ? rc : buf_appends(&sql, " FROM ");
	rc = rc ? rc : source_mariadb_quote_ident(&sql, t.schema);
	rc = rc ? rc : buf_appendc(&sql, '.');
	rc = rc ? rc : source_mariadb_quote_ident(&sql, t.name);
	if (rc || (rc = csv_writer_end_record(w)))
		goto out;
	/* Unbuffered: rows come off the socket one at a time. */
	if ((rc = run_query(s, &sql, &r, "cannot query the table")))
		goto out;
	if (s->api->num_fields(r) != t.ncols) {
		rc = al_error_set(AL_ERR_IO, "%s: table '%s' returned %u columns, expected %zu (did it change?)",
				  s->where, object, s->api->num_fields(r), t.ncols);
		goto out;
	}
	while ((row = s->api->fetch_row(r))) {
		unsigned long *len = s->api->fetch_lengths(r);
		if (!len) {
			rc = al_error_set(AL_ERR_IO, "%s: table '%s': no field lengths for row %llu", s->where, object,
					  (unsigned long long)nrows + 1);
			goto out;
		}
		for (size_t i = 0; i < t.ncols; i++) {
			rc = row[i] ? write_cell(w, t.cols[i].kind, row[i], len[i]) : csv_writer_null(w);
			if (rc) {
				if (rc == AL_ERR_INVALID)
					al_error_wrap(rc, "table '%s' row %llu column '%s'", object,
						      (unsigned long long)nrows + 1, t.cols[i].name);
				goto out;
			}
		}
		if ((rc = csv_writer_end_record(w)))
			goto out;
		nrows++;
		source_progress_rows(&prog, nrows);
	}
	if (s->api->errno_(s->db)) {
		rc = db_fail(s, "table '%s': read failed after %llu rows", object, (unsigned long long)nrows);
		goto out;
	}
	res->columns = cols;
	cols = NULL;
	res->rows = nrows;
out:
	/* On an early exit this reads (and drops) the rest of the rows: the
	 * protocol offers no other way back to a usable connection. */
	if (r)
		s->api->free_result(r);
	json_decref(cols);
	table_free(&t);
	buf_free(&sql);
	/* The runner names the connection for open and check, not here. */
	return rc ? al_error_wrap(rc, "connection '%s'", s->name) : AL_OK;
}

const struct source_ops source_mariadb_ops = {
	.type = "mariadb",
	.open = mdb_open,
	.check = mdb_check,
	.export_table = mdb_export,
	.describe = mdb_describe,
	.close = mdb_close,
};
