#include "runner/source_postgresql.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "runner/pq_dl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* How many table names a "not found" message lists before "and N more". */
#define LIST_TABLES_MAX 30 /* = SOURCE_LIST_MAX, spelled out for STR() in the SQL */
_Static_assert(LIST_TABLES_MAX == SOURCE_LIST_MAX, "the SQL fetches as many names as a message lists");
#define STR_(x) #x
#define STR(x) STR_(x)
#define DEFAULT_TIMEOUT_S 30
#define SQL_MAX ((size_t)16 << 20)

struct source_pg {
	const struct source_ops *ops; /* first: a struct source */
	const struct pq_dl *pq;
	PGconn *conn;
	struct pg_url url;
	char *user;          /* the role, for messages (not a secret) */
	char *where;         /* "postgresql database gm on db.example.org:5432", for messages */
	char *conn_name;     /* spec.connections[].name, for export messages */
	char *version;       /* server_version, e.g. "15.18" */
	int in_txn;
	int broken;          /* an export stopped mid-COPY: the connection is unusable */
};

/* One table as the catalog describes it. */
struct pg_table {
	char *oid;           /* pg_class.oid, as text for query parameters */
	char *schema;
	char *name;
	size_t ncols;
	json_t *columns;     /* [{name, type}] */
	unsigned char *top_bytea;    /* per column: bytea (through domains): base64 */
	unsigned char *nested_bytea; /* per column: bytea inside a container: refused */
	unsigned char *selectable;   /* per column: SELECT privilege */
	int table_select;            /* SELECT on the whole table */
};

/* ---- url ---- */

void source_postgresql_url_free(struct pg_url *u)
{
	if (!u)
		return;
	free(u->host);
	free(u->port);
	free(u->dbname);
	free(u->sslmode);
	memset(u, 0, sizeof(*u));
}

/* Percent-decodes s[0..n) into a new string *out; AL_ERR_INVALID when an
 * escape is malformed or decodes to NUL. `what` names the url part. */
static int pct_decode(char **out, const char *s, size_t n, const char *what)
{
	int rc = util_percent_decode(s, n, 0, out, NULL);
	if (rc == AL_ERR_INVALID)
		return al_error_set(AL_ERR_INVALID, "postgresql connection url: the %s has a bad %%-escape (write %%XX "
						    "with two hex digits, not %%00)", what);
	return rc;
}

/* A parameter name safe to repeat in a message: short, letters and '_'. */
static int plain_word(const char *s, size_t n)
{
	if (!n || n > 32)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_'))
			return 0;
	return 1;
}

static int parse_query(struct pg_url *u, const char *q, const char *end)
{
	static const char *const modes[] = { "disable", "allow", "prefer", "require", "verify-ca", "verify-full" };

	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *pend = amp ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(pend - q));
		size_t klen = (size_t)((eq ? eq : pend) - q);
		char *val;
		size_t m;
		int rc;

		if (klen == 0 && pend == q) { /* "?a=b&&c=d": tolerate empty pairs */
			q = pend + (amp ? 1 : 0);
			continue;
		}
		if ((klen == 8 && !strncasecmp(q, "password", 8)) || (klen == 4 && !strncasecmp(q, "user", 4)))
			return al_error_set(AL_ERR_INVALID, "postgresql connection url must not carry a user or "
							    "password: give them through credentials.userKey and "
							    "credentials.passwordKey");
		if (!(klen == 7 && !strncmp(q, "sslmode", 7))) {
			if (plain_word(q, klen))
				return al_error_set(AL_ERR_INVALID, "postgresql connection url: parameter '%.*s' is "
								    "not supported (only sslmode is)", (int)klen, q);
			return al_error_set(AL_ERR_INVALID, "postgresql connection url: unsupported parameter "
							    "(only sslmode is)");
		}
		if (!eq)
			return al_error_set(AL_ERR_INVALID, "postgresql connection url: sslmode needs a value "
							    "(disable, allow, prefer, require, verify-ca, verify-full)");
		if ((rc = pct_decode(&val, eq + 1, (size_t)(pend - eq - 1), "sslmode")))
			return rc;
		for (m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
			if (!strcmp(val, modes[m]))
				break;
		if (m == sizeof(modes) / sizeof(modes[0])) {
			free(val);
			return al_error_set(AL_ERR_INVALID, "postgresql connection url: sslmode must be one of disable, "
							    "allow, prefer, require, verify-ca, verify-full");
		}
		free(u->sslmode);
		u->sslmode = val;
		q = pend + (amp ? 1 : 0);
	}
	return AL_OK;
}

int source_postgresql_parse_url(struct pg_url *u, const char *url)
{
	const char *p, *auth_end, *host_end, *path, *path_end, *query;
	int rc;

	memset(u, 0, sizeof(*u));
	if (!url || !*url)
		return al_error_set(AL_ERR_INVALID, "postgresql connection has no url; give one such as "
						    "postgresql://db.example.org:5432/gm");
	if (!strncasecmp(url, "postgresql://", 13))
		p = url + 13;
	else if (!strncasecmp(url, "postgres://", 11))
		p = url + 11;
	else
		return al_error_set(AL_ERR_INVALID, "postgresql connection url must start with postgresql:// "
						    "(postgresql://host[:port]/database[?sslmode=...])");
	auth_end = p + strcspn(p, "/?#");
	/* Anything before '@' is userinfo: never used, never echoed. */
	if (memchr(p, '@', (size_t)(auth_end - p)))
		return al_error_set(AL_ERR_INVALID, "postgresql connection url must not carry a user or password; "
						    "give them through credentials.userKey and credentials.passwordKey "
						    "(the url is not shown here in case it holds a secret)");
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(auth_end - p));
		if (!rb || rb == p + 1)
			return al_error_set(AL_ERR_INVALID, "postgresql connection url: an IPv6 host needs "
							    "brackets, e.g. postgresql://[::1]:5432/gm");
		if (!(u->host = util_strndup(p + 1, (size_t)(rb - p - 1))))
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		host_end = rb + 1;
		if (host_end != auth_end && *host_end != ':')
			return al_error_set(AL_ERR_INVALID, "postgresql connection url: unexpected text after the "
							    "IPv6 host's ']'");
	} else {
		host_end = memchr(p, ':', (size_t)(auth_end - p));
		if (!host_end)
			host_end = auth_end;
		if ((rc = pct_decode(&u->host, p, (size_t)(host_end - p), "host")))
			return rc;
	}
	if (!*u->host)
		return al_error_set(AL_ERR_INVALID, "postgresql connection url names no host "
						    "(postgresql://host[:port]/database)");
	if (strchr(u->host, ','))
		return al_error_set(AL_ERR_INVALID, "postgresql connection url: give one host, not a list");
	if (host_end < auth_end) { /* ":port" */
		const char *d = host_end + 1;
		unsigned long port = 0;
		size_t nd = (size_t)(auth_end - d);
		if (!nd || nd > 5)
			return al_error_set(AL_ERR_INVALID, "postgresql connection url: the port must be a number "
							    "from 1 to 65535");
		for (size_t i = 0; i < nd; i++) {
			if (d[i] < '0' || d[i] > '9')
				return al_error_set(AL_ERR_INVALID, "postgresql connection url: the port must be a "
								    "number from 1 to 65535");
			port = port * 10 + (unsigned long)(d[i] - '0');
		}
		if (port < 1 || port > 65535)
			return al_error_set(AL_ERR_INVALID, "postgresql connection url: the port must be a number "
							    "from 1 to 65535");
		if (!(u->port = malloc(8)))
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		snprintf(u->port, 8, "%lu", port); /* "05432" -> "5432" */
	} else if (!(u->port = util_strdup("5432"))) {
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	if (*auth_end != '/')
		return al_error_set(AL_ERR_INVALID, "postgresql connection url names no database "
						    "(postgresql://host[:port]/DATABASE)");
	path = auth_end + 1;
	path_end = path + strcspn(path, "?#");
	if (path_end == path)
		return al_error_set(AL_ERR_INVALID, "postgresql connection url names no database "
						    "(postgresql://host[:port]/DATABASE)");
	if (memchr(path, '/', (size_t)(path_end - path)))
		return al_error_set(AL_ERR_INVALID, "postgresql connection url: the database name contains '/' "
						    "(write it as %%2F)");
	if ((rc = pct_decode(&u->dbname, path, (size_t)(path_end - path), "database name")))
		return rc;
	if (*path_end == '#')
		return al_error_set(AL_ERR_INVALID, "postgresql connection url must not have a #fragment");
	if (*path_end == '?') {
		query = path_end + 1;
		if (strchr(query, '#'))
			return al_error_set(AL_ERR_INVALID, "postgresql connection url must not have a #fragment");
		if ((rc = parse_query(u, query, query + strlen(query))))
			return rc;
	}
	return AL_OK;
}

int source_postgresql_split_name(const char *object, char **schema, char **table)
{
	const char *dot = strchr(object, '.');

	*schema = *table = NULL;
	if (dot) {
		*schema = util_strndup(object, (size_t)(dot - object));
		*table = util_strdup(dot + 1);
	} else {
		*table = util_strdup(object);
	}
	if (!*table || (dot && !*schema)) {
		free(*schema);
		free(*table);
		*schema = *table = NULL;
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	return AL_OK;
}

/* ---- messages ---- */

int source_postgresql_error_line(struct buf *out, const char *msg)
{
	const char *p, *line, *start, *end;
	int rc, space = 0;
	size_t before = out->len;

	if (!msg || !*msg)
		return buf_appends(out, "no reason given");
	/* The last attempt: libpq reports each address it tried on its own line. */
	start = msg;
	for (line = msg; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (!strncmp(line, "connection to server ", 21)) {
			const char *f = strstr(line, " failed: ");
			const char *nl = strchr(line, '\n');
			if (f && (!nl || f < nl))
				start = f + 9;
		}
	}
	/* Its first line only: what follows are libpq's tab-indented hints. */
	end = strchr(start, '\n');
	if (!end)
		end = start + strlen(start);
	for (p = start; p < end && (*p == ' ' || *p == '\t'); p++)
		;
	for (const char *const *lv = (const char *const[]){ "FATAL:", "ERROR:", NULL }; *lv; lv++) {
		size_t l = strlen(*lv);
		if ((size_t)(end - p) >= l && !strncmp(p, *lv, l)) {
			p += l;
			break;
		}
	}
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	for (; p < end; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r') {
			space = 1;
			continue;
		}
		if (space && out->len > before && (rc = buf_appendc(out, ' ')))
			return rc;
		space = 0;
		if ((rc = buf_appendc(out, *p)))
			return rc;
	}
	if (out->len == before)
		return buf_appends(out, "no reason given");
	return AL_OK;
}

/* The reason a query failed, on one line: the server's primary message and
 * SQLSTATE. DETAIL is left out on purpose: it can quote row values. */
static int result_reason(struct source_pg *s, const PGresult *res, struct buf *out)
{
	const char *primary = res ? s->pq->result_error_field(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *state = res ? s->pq->result_error_field(res, PG_DIAG_SQLSTATE) : NULL;
	int rc;

	if (primary) {
		struct buf tmp;
		buf_init(&tmp, 64 << 10);
		rc = source_postgresql_error_line(&tmp, primary);
		rc = rc ? rc : buf_appends(out, buf_cstr(&tmp));
		buf_free(&tmp);
	} else {
		rc = source_postgresql_error_line(out, s->pq->error_message(s->conn));
	}
	if (!rc && state)
		rc = buf_appendf(out, " (SQLSTATE %s)", state);
	return rc;
}

/* Maps a failed query to an error code and a message "<context> in <where>:
 * <reason>". */
static int query_error(struct source_pg *s, const PGresult *res, const char *context)
{
	const char *state = res ? s->pq->result_error_field(res, PG_DIAG_SQLSTATE) : NULL;
	const char *encoding = s->pq->parameter_status(s->conn, "server_encoding");
	struct buf why;
	int code = AL_ERR_IO, rc;

	if (s->pq->status(s->conn) != CONNECTION_OK) {
		code = AL_ERR_UNAVAILABLE;
	} else if (state) {
		if (!strcmp(state, "42501"))
			code = AL_ERR_FORBIDDEN; /* insufficient_privilege, row-level security */
		else if (!strcmp(state, "42P01") || !strcmp(state, "3F000") || !strcmp(state, "42703"))
			code = AL_ERR_NOT_FOUND;
		else if (!strncmp(state, "22", 2))
			code = AL_ERR_INVALID; /* data exception, e.g. untranslatable_character */
		else if (!strncmp(state, "08", 2) || !strncmp(state, "57", 2) || !strcmp(state, "40001"))
			code = AL_ERR_UNAVAILABLE;
	}
	buf_init(&why, 64 << 10);
	rc = result_reason(s, res, &why);
	if (rc) {
		buf_free(&why);
		return rc;
	}
	if (code == AL_ERR_UNAVAILABLE && s->pq->status(s->conn) != CONNECTION_OK)
		rc = al_error_set(code, "%s in %s: lost the connection to the server: %s; run the job again", context,
				  s->where, buf_cstr(&why));
	else if (code == AL_ERR_FORBIDDEN && strstr(buf_cstr(&why), "row-level security"))
		rc = al_error_set(code, "%s in %s: %s: the export does not bypass row-level security silently; grant "
					"role \"%s\" BYPASSRLS, or collect a view it may read in full",
				  context, s->where, buf_cstr(&why), s->user);
	else if (code == AL_ERR_FORBIDDEN)
		rc = al_error_set(code, "%s in %s: %s: grant role \"%s\" the privilege it lacks", context, s->where,
				  buf_cstr(&why), s->user);
	else if (state && !strcmp(state, "22021") && encoding && !strcmp(encoding, "SQL_ASCII"))
		rc = al_error_set(code, "%s in %s: %s: the database's encoding is SQL_ASCII, which accepts any bytes "
					"as text, and this value is not UTF-8; correct it, or collect a view that "
					"rewrites or leaves out the column", context, s->where, buf_cstr(&why));
	else
		rc = al_error_set(code, "%s in %s: %s", context, s->where, buf_cstr(&why));
	buf_free(&why);
	return rc;
}

/* ---- connection ---- */

/* Notices (e.g. a server WARNING) would go to stderr through libpq's
 * default processor, bypassing the runner's one-line error contract. */
static void ignore_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static int contains(const char *hay, const char *needle)
{
	return hay && strcasestr(hay, needle) != NULL;
}

static int connect_error(struct source_pg *s, const struct source_conn *conn)
{
	const char *msg = s->conn ? s->pq->error_message(s->conn) : NULL;
	const char *key = conn->password_key;
	struct buf why;
	int rc;

	if (!s->conn)
		return al_error_set(AL_ERR_NOMEM, "%s: out of memory connecting", s->where);
	if (s->pq->connection_needs_password(s->conn)) {
		if (key)
			return al_error_set(AL_ERR_FORBIDDEN, "%s: the server asks for a password for user \"%s\" but "
							      "credentials.passwordKey '%s' is not among the job's "
							      "credentials", s->where, s->user, key);
		return al_error_set(AL_ERR_FORBIDDEN, "%s: the server asks for a password for user \"%s\": set the "
						      "connection's credentials.passwordKey to the Secret key that "
						      "holds it", s->where, s->user);
	}
	if (contains(msg, "password authentication failed") || contains(msg, "authentication failed for user")) {
		if (key)
			return al_error_set(AL_ERR_FORBIDDEN, "%s: password authentication failed for user \"%s\": "
							      "check the credentials in Secret key %s", s->where,
					    s->user, key);
		return al_error_set(AL_ERR_FORBIDDEN, "%s: password authentication failed for user \"%s\": check "
						      "the credentials (credentials.userKey / passwordKey)", s->where,
				    s->user);
	}
	buf_init(&why, 64 << 10);
	if ((rc = source_postgresql_error_line(&why, msg))) {
		buf_free(&why);
		return rc;
	}
	if (contains(msg, "no pg_hba.conf entry") || (contains(msg, "role \"") && contains(msg, "does not exist")) ||
	    contains(msg, "permission denied for database") || contains(msg, "not permitted to log in"))
		rc = al_error_set(AL_ERR_FORBIDDEN, "%s: the server refuses user \"%s\": %s (ask the database "
						    "administrator to let this role connect from here)",
				  s->where, s->user, buf_cstr(&why));
	else if (contains(msg, "database \"") && contains(msg, "does not exist"))
		rc = al_error_set(AL_ERR_NOT_FOUND, "%s: database \"%s\" does not exist on the server: check the "
						    "database name in the connection url", s->where, s->url.dbname);
	else if (contains(msg, "connection refused") || contains(msg, "could not translate host name") ||
		 contains(msg, "timeout expired") || contains(msg, "timed out") || contains(msg, "no route to host") ||
		 contains(msg, "network is unreachable") || contains(msg, "could not connect") ||
		 contains(msg, "server closed the connection unexpectedly") || contains(msg, "is starting up") ||
		 contains(msg, "is shutting down") || contains(msg, "in recovery mode") ||
		 contains(msg, "too many clients") || contains(msg, "no such file or directory") ||
		 contains(msg, "host is unreachable") || contains(msg, "cannot assign requested address") ||
		 contains(msg, "address family not supported"))
		rc = al_error_set(AL_ERR_UNAVAILABLE, "%s: cannot reach the server: %s (check the host and port "
						      "in the connection url, that the server is running and that "
						      "no firewall is in the way)", s->where, buf_cstr(&why));
	else if (contains(msg, "SSL") || contains(msg, "certificate"))
		rc = al_error_set(AL_ERR_IO, "%s: cannot connect: %s (check sslmode in the connection url and the "
					     "server's certificate)", s->where, buf_cstr(&why));
	else
		rc = al_error_set(AL_ERR_IO, "%s: cannot connect: %s", s->where, buf_cstr(&why));
	buf_free(&why);
	return rc;
}

/* Runs a statement that returns no rows. */
static int exec_command(struct source_pg *s, const char *sql, const char *context)
{
	PGresult *res = s->pq->exec(s->conn, sql);
	int rc = AL_OK;

	if (!res || s->pq->result_status(res) != PGRES_COMMAND_OK)
		rc = query_error(s, res, context);
	s->pq->clear(res);
	return rc;
}

static int exec_rows(struct source_pg *s, PGresult **res, const char *sql, int nparams, const char *const *params,
		     const char *context)
{
	*res = s->pq->exec_params(s->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (!*res || s->pq->result_status(*res) != PGRES_TUPLES_OK) {
		int rc = query_error(s, *res, context);
		s->pq->clear(*res);
		*res = NULL;
		return rc;
	}
	return AL_OK;
}

static void pg_close(struct source *base);

static int pg_open(struct source **out, const struct source_conn *conn)
{
	struct source_pg *s;
	struct buf where;
	char timeout[16];
	const char *keywords[12], *values[12];
	const char *ver;
	int n = 0, rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	s->ops = &source_postgresql_ops;
	if (!(s->pq = pq_dl())) {
		rc = AL_ERR_UNAVAILABLE;
		goto fail;
	}
	if ((rc = source_postgresql_parse_url(&s->url, conn->url)))
		goto fail;
	buf_init(&where, 64 << 10);
	/* An IPv6 address in brackets, as in the url; a socket directory as is. */
	rc = s->url.host[0] != '/' && strchr(s->url.host, ':') ? buf_appendf(&where, "postgresql database %s on [%s]:%s", s->url.dbname,
						     s->url.host, s->url.port)
				      : buf_appendf(&where, "postgresql database %s on %s:%s", s->url.dbname,
						     s->url.host, s->url.port);
	if (rc) {
		buf_free(&where);
		goto fail;
	}
	s->where = buf_detach(&where);
	s->conn_name = util_strdup(conn->name ? conn->name : "");
	if (!s->conn_name) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	/* libpq would fall back to the operating system's user name: never what
	 * a job means. */
	if (!conn->user) {
		if (conn->user_key)
			rc = al_error_set(AL_ERR_INVALID, "%s: needs a user: credentials.userKey '%s' is not among "
							  "the job's credentials", s->where, conn->user_key);
		else
			rc = al_error_set(AL_ERR_INVALID, "%s: needs a user: set the connection's "
							  "credentials.userKey to the Secret key holding the database "
							  "user", s->where);
		goto fail;
	}
	if (!(s->user = util_strdup(conn->user))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	snprintf(timeout, sizeof(timeout), "%d", conn->timeout_s > 0 ? conn->timeout_s : DEFAULT_TIMEOUT_S);
	keywords[n] = "host", values[n++] = s->url.host;
	keywords[n] = "port", values[n++] = s->url.port;
	keywords[n] = "dbname", values[n++] = s->url.dbname;
	keywords[n] = "user", values[n++] = conn->user;
	if (conn->password)
		keywords[n] = "password", values[n++] = conn->password; /* borrowed: the runner wipes it */
	if (s->url.sslmode)
		keywords[n] = "sslmode", values[n++] = s->url.sslmode;
	keywords[n] = "connect_timeout", values[n++] = timeout;
	keywords[n] = "application_name", values[n++] = "airlock-runner";
	keywords[n] = "client_encoding", values[n++] = "UTF8";
	keywords[n] = NULL, values[n] = NULL;
	/* expand_dbname 0: a database name is a name, never a connection string. */
	s->conn = s->pq->connectdb_params(keywords, values, 0);
	if (!s->conn || s->pq->status(s->conn) != CONNECTION_OK) {
		rc = connect_error(s, conn);
		goto fail;
	}
	s->pq->set_notice_processor(s->conn, ignore_notice, NULL);
	if ((rc = exec_command(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "cannot begin a transaction")))
		goto fail;
	s->in_txn = 1;
	/* Settings that shape the text of values, fixed so the output does not
	 * depend on the server's or the role's defaults: ISO dates, UTC times,
	 * floats that read back exactly; and a table under row-level security
	 * fails loudly rather than exporting a silently filtered subset (as
	 * pg_dump does). LOCAL: they end with the transaction. */
	if ((rc = exec_command(s,
			       "SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL IntervalStyle = 'postgres'; "
			       "SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 3; "
			       "SET LOCAL row_security = off",
			       "cannot set the session up")))
		goto fail;
	/* The snapshot is taken by the transaction's first query: take it now,
	 * so every table comes from the moment the connection opened. */
	{
		PGresult *res;
		if ((rc = exec_rows(s, &res, "SELECT 1", 0, NULL, "cannot read from the database")))
			goto fail;
		s->pq->clear(res);
	}
	ver = s->pq->parameter_status(s->conn, "server_version");
	s->version = util_strndup(ver ? ver : "", ver ? strcspn(ver, " ") : 0); /* "15.18 (Debian ...)" */
	if (!s->version) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	*out = (struct source *)s;
	return AL_OK;
fail:
	pg_close((struct source *)s);
	return rc;
}

static int pg_describe(struct source *base, json_t **out)
{
	struct source_pg *s = (struct source_pg *)base;
	*out = json_pack("{s:s, s:i, s:s, s:s}", "host", s->url.host, "port", atoi(s->url.port), "database",
			 s->url.dbname, "serverVersion", s->version);
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

static void pg_close(struct source *base)
{
	struct source_pg *s = (struct source_pg *)base;
	if (!s)
		return;
	if (s->conn) {
		/* Read-only: COMMIT and ROLLBACK are the same; COMMIT says "done". */
		if (s->in_txn && !s->broken && s->pq->status(s->conn) == CONNECTION_OK)
			s->pq->clear(s->pq->exec(s->conn, "COMMIT"));
		s->pq->finish(s->conn); /* libpq wipes its copy of the password */
	}
	source_postgresql_url_free(&s->url);
	free(s->user);
	free(s->where);
	free(s->conn_name);
	free(s->version);
	free(s);
}

/* ---- tables ---- */

static void pg_table_free(struct pg_table *t)
{
	free(t->oid);
	free(t->schema);
	free(t->name);
	json_decref(t->columns);
	free(t->top_bytea);
	free(t->nested_bytea);
	free(t->selectable);
	memset(t, 0, sizeof(*t));
}

/* Names compare as text, exactly: an object name is data, not SQL, so it is
 * neither case-folded nor truncated to NAMEDATALEN. Unqualified names follow
 * the role's search_path, as SQL would. */
static const char SQL_FIND_TABLE[] =
	"SELECT c.oid::pg_catalog.text, n.nspname::pg_catalog.text, c.relname::pg_catalog.text, "
	"       pg_catalog.has_table_privilege(c.oid, 'SELECT') "
	"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	"WHERE c.relname::pg_catalog.text = $2::pg_catalog.text AND c.relkind IN ('r', 'v', 'm', 'f', 'p') "
	"  AND CASE WHEN $1::pg_catalog.text IS NULL "
	"           THEN n.nspname = ANY (pg_catalog.current_schemas(true)) "
	"           ELSE n.nspname::pg_catalog.text = $1::pg_catalog.text END "
	"ORDER BY pg_catalog.array_position(pg_catalog.current_schemas(true), n.nspname) "
	"LIMIT 1";

/* Per column: name, type as SQL writes it, SELECT privilege, and whether
 * bytea sits at the top (through domains: written as base64) or inside an
 * array, composite or range (refused). The walk follows the type's parts. */
#define SQL_COLUMNS_HEAD                                                                                        \
	"SELECT a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod), "                  \
	"       pg_catalog.has_column_privilege(a.attrelid, a.attnum, 'SELECT'), k.top, k.nested "              \
	"FROM pg_catalog.pg_attribute a CROSS JOIN LATERAL ( "                                                  \
	"  WITH RECURSIVE w(oid, depth, nested) AS ( "                                                          \
	"      SELECT a.atttypid, 0, false "                                                                    \
	"    UNION ALL "                                                                                        \
	"      SELECT x.child, w.depth + 1, w.nested OR x.container FROM w CROSS JOIN LATERAL ( "              \
	"          SELECT t.typelem, true FROM pg_catalog.pg_type t "                                           \
	"          WHERE t.oid = w.oid AND t.typcategory = 'A' "                                                \
	"        UNION ALL "                                                                                    \
	"          SELECT t.typbasetype, false FROM pg_catalog.pg_type t "                                      \
	"          WHERE t.oid = w.oid AND t.typtype = 'd' "                                                    \
	"        UNION ALL "                                                                                    \
	"          SELECT ca.atttypid, true FROM pg_catalog.pg_type t "                                         \
	"          JOIN pg_catalog.pg_attribute ca ON ca.attrelid = t.typrelid "                                \
	"          WHERE t.oid = w.oid AND t.typtype = 'c' AND ca.attnum > 0 AND NOT ca.attisdropped "          \
	"        UNION ALL "                                                                                    \
	"          SELECT r.rngsubtype, true FROM pg_catalog.pg_range r WHERE r.rngtypid = w.oid "
#define SQL_COLUMNS_MULTIRANGE /* PostgreSQL 14+ */                                                          \
	"        UNION ALL "                                                                                    \
	"          SELECT r.rngtypid, true FROM pg_catalog.pg_range r WHERE r.rngmultitypid = w.oid "
#define SQL_COLUMNS_TAIL                                                                                        \
	"      ) x(child, container) WHERE w.depth < 16) "                                                      \
	"  SELECT COALESCE(pg_catalog.bool_or(w.oid = 'pg_catalog.bytea'::pg_catalog.regtype AND NOT w.nested), " \
	"                  false) AS top, "                                                                     \
	"         COALESCE(pg_catalog.bool_or(w.oid = 'pg_catalog.bytea'::pg_catalog.regtype AND w.nested), "  \
	"                  false) AS nested "                                                                   \
	"  FROM w) k "                                                                                          \
	"WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped "                       \
	"ORDER BY a.attnum"

static const char SQL_COLUMNS_14[] = SQL_COLUMNS_HEAD SQL_COLUMNS_MULTIRANGE SQL_COLUMNS_TAIL;
static const char SQL_COLUMNS_OLD[] = SQL_COLUMNS_HEAD SQL_COLUMNS_TAIL;

/* What a "not found" message lists: user tables, bare when the search_path
 * finds them, else schema-qualified. */
static const char SQL_LIST_TABLES[] =
	"SELECT CASE WHEN pg_catalog.pg_table_is_visible(c.oid) THEN c.relname::pg_catalog.text "
	"            ELSE n.nspname::pg_catalog.text || '.' || c.relname::pg_catalog.text END AS name, "
	"       pg_catalog.count(*) OVER () "
	"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	"WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND NOT c.relispartition "
	"  AND n.nspname <> 'pg_catalog' AND n.nspname <> 'information_schema' "
	"  AND n.nspname::pg_catalog.text !~ '^pg_(toast|temp_|toast_temp_)' "
	"ORDER BY 1 LIMIT " STR(LIST_TABLES_MAX);

static int is_true(const struct source_pg *s, const PGresult *res, int row, int col)
{
	const char *v = s->pq->getvalue(res, row, col);
	return v && v[0] == 't';
}

/* Finds schema.table (or table) exactly; *found 0 when there is none. */
static int find_table(struct source_pg *s, const char *schema, const char *table, struct pg_table *t, int *found)
{
	const char *params[2] = { schema, table };
	PGresult *res;
	int rc;

	*found = 0;
	if ((rc = exec_rows(s, &res, SQL_FIND_TABLE, 2, params, "cannot read the catalog")))
		return rc;
	if (s->pq->ntuples(res) == 1) {
		t->oid = util_strdup(s->pq->getvalue(res, 0, 0));
		t->schema = util_strdup(s->pq->getvalue(res, 0, 1));
		t->name = util_strdup(s->pq->getvalue(res, 0, 2));
		t->table_select = is_true(s, res, 0, 3);
		*found = 1;
		if (!t->oid || !t->schema || !t->name)
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	s->pq->clear(res);
	return rc;
}

static int load_columns(struct source_pg *s, struct pg_table *t)
{
	const char *params[1] = { t->oid };
	const char *sql = s->pq->server_version(s->conn) >= 140000 ? SQL_COLUMNS_14 : SQL_COLUMNS_OLD;
	PGresult *res;
	int rc, n;

	if ((rc = exec_rows(s, &res, sql, 1, params, "cannot read the table's columns")))
		return rc;
	n = s->pq->ntuples(res);
	t->ncols = (size_t)n;
	t->columns = json_array();
	t->top_bytea = calloc((size_t)n + 1, 1);
	t->nested_bytea = calloc((size_t)n + 1, 1);
	t->selectable = calloc((size_t)n + 1, 1);
	if (!t->columns || !t->top_bytea || !t->nested_bytea || !t->selectable) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		json_t *col = json_pack("{s:s, s:s}", "name", s->pq->getvalue(res, i, 0), "type",
					s->pq->getvalue(res, i, 1));
		if (!col || json_array_append_new(t->columns, col)) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		t->selectable[i] = (unsigned char)is_true(s, res, i, 2);
		t->top_bytea[i] = (unsigned char)is_true(s, res, i, 3);
		t->nested_bytea[i] = (unsigned char)is_true(s, res, i, 4);
	}
out:
	s->pq->clear(res);
	return rc;
}

static int list_tables(struct source_pg *s, struct buf *b)
{
	PGresult *res;
	struct source_list list;
	long total = 0;
	int rc, n;

	if ((rc = exec_rows(s, &res, SQL_LIST_TABLES, 0, NULL, "cannot list tables")))
		return rc;
	source_list_init(&list, b);
	n = s->pq->ntuples(res);
	if (n > 0)
		total = strtol(s->pq->getvalue(res, 0, 1), NULL, 10);
	for (int i = 0; !rc && i < n; i++)
		rc = source_list_add(&list, s->pq->getvalue(res, i, 0));
	if (!rc)
		rc = source_list_end(&list, total > 0 ? (size_t)total : 0);
	s->pq->clear(res);
	return rc;
}

/* Resolves an object name and reads its columns. "a.b" is schema a, table
 * b; when there is none such, a table named "a.b" in the search path. */
static int resolve(struct source_pg *s, const char *object, struct pg_table *t)
{
	char *schema = NULL, *table = NULL;
	struct buf names;
	int found = 0, rc;

	memset(t, 0, sizeof(*t));
	if ((rc = source_postgresql_split_name(object, &schema, &table)))
		return rc;
	rc = find_table(s, schema, table, t, &found);
	if (!rc && !found && schema)
		rc = find_table(s, NULL, object, t, &found);
	free(schema);
	free(table);
	if (!rc && !found) {
		buf_init(&names, 64 << 10);
		rc = list_tables(s, &names);
		if (!rc)
			rc = al_error_set(AL_ERR_NOT_FOUND, "table '%s' not found in %s; tables present: %s", object,
					  s->where, buf_cstr(&names));
		buf_free(&names);
	}
	if (!rc)
		rc = load_columns(s, t);
	if (rc)
		pg_table_free(t);
	return rc;
}

/* Appends PQescapeIdentifier(name). */
static int append_ident(struct source_pg *s, struct buf *b, const char *name)
{
	char *q = s->pq->escape_identifier(s->conn, name, strlen(name));
	int rc;

	if (!q) {
		struct buf why;
		buf_init(&why, 64 << 10);
		rc = source_postgresql_error_line(&why, s->pq->error_message(s->conn));
		if (!rc)
			rc = al_error_set(AL_ERR_INVALID, "%s: cannot quote the name '%s': %s", s->where, name,
					  buf_cstr(&why));
		buf_free(&why);
		return rc;
	}
	rc = buf_appends(b, q);
	s->pq->freemem(q);
	return rc;
}

/* SELECT <columns> FROM <schema>.<table>: every name through
 * PQescapeIdentifier; bytea as base64 on one line (encode() breaks lines
 * every 76 characters, translate() takes the breaks out again). */
static int build_select(struct source_pg *s, const struct pg_table *t, struct buf *sql)
{
	int rc = buf_appends(sql, "SELECT ");

	for (size_t i = 0; !rc && i < t->ncols; i++) {
		const char *name = json_string_value(json_object_get(json_array_get(t->columns, i), "name"));
		if (i)
			rc = buf_appends(sql, ", ");
		if (!rc && t->top_bytea[i])
			rc = buf_appends(sql, "pg_catalog.translate(pg_catalog.encode(");
		if (!rc)
			rc = append_ident(s, sql, name);
		if (!rc && t->top_bytea[i])
			rc = buf_appends(sql, "::pg_catalog.bytea, 'base64'), pg_catalog.chr(10), '')");
	}
	if (!rc)
		rc = buf_appends(sql, " FROM ");
	if (!rc)
		rc = append_ident(s, sql, t->schema);
	if (!rc)
		rc = buf_appendc(sql, '.');
	if (!rc)
		rc = append_ident(s, sql, t->name);
	return rc;
}

static int pg_usable(struct source_pg *s)
{
	if (s->broken)
		return al_error_set(AL_ERR_INTERNAL, "%s: the connection is unusable after an earlier failure "
						     "(a source is not reused after a failed export)", s->where);
	return AL_OK;
}

/* Everything that makes an export fail before its first row. */
static int check_table(struct source_pg *s, const char *object, const struct pg_table *t)
{
	struct buf b;
	int rc = AL_OK;

	if (t->ncols == 0)
		return al_error_set(AL_ERR_INVALID, "table '%s' in %s has no columns to export", object, s->where);
	for (size_t i = 0; i < t->ncols; i++) {
		json_t *c = json_array_get(t->columns, i);
		if (t->nested_bytea[i])
			return al_error_set(AL_ERR_INVALID, "table '%s' in %s: column '%s' has type %s, which holds "
							    "binary values inside another type; they cannot be written "
							    "as base64 CSV fields: collect a view that converts the "
							    "column (e.g. with encode(..., 'base64'))",
					    object, s->where, json_string_value(json_object_get(c, "name")),
					    json_string_value(json_object_get(c, "type")));
	}
	if (t->table_select)
		return AL_OK;
	buf_init(&b, 64 << 10);
	for (size_t i = 0; !rc && i < t->ncols; i++)
		if (!t->selectable[i])
			rc = buf_appendf(&b, "%s%s", b.len ? ", " : "",
					 json_string_value(json_object_get(json_array_get(t->columns, i), "name")));
	if (!rc && b.len) {
		struct buf q, role;
		buf_init(&q, 64 << 10);
		buf_init(&role, 64 << 10);
		if (!(rc = append_ident(s, &q, t->schema)) && !(rc = buf_appendc(&q, '.')) &&
		    !(rc = append_ident(s, &q, t->name)) && !(rc = append_ident(s, &role, s->user)))
			rc = al_error_set(AL_ERR_FORBIDDEN, "table '%s' in %s: permission denied: role %s has no "
							    "SELECT privilege on %s (columns: %s); ask the table's "
							    "owner to run GRANT SELECT ON %s TO %s",
					  object, s->where, role.ptr, q.ptr, buf_cstr(&b), q.ptr, role.ptr);
		buf_free(&q);
		buf_free(&role);
	}
	buf_free(&b);
	return rc;
}

static int pg_check(struct source *base, const char *object)
{
	struct source_pg *s = (struct source_pg *)base;
	struct pg_table t;
	struct buf sql, ctx;
	PGresult *res = NULL;
	int rc;

	if ((rc = pg_usable(s)) || (rc = resolve(s, object, &t)))
		return rc;
	if ((rc = check_table(s, object, &t))) {
		pg_table_free(&t);
		return rc;
	}
	/* Plan the very query the export runs, reading nothing: whatever the
	 * catalog cannot tell (row-level security, a broken view) fails here,
	 * before the first byte is written. Inside a savepoint, so a failure
	 * leaves the transaction (and its snapshot) usable for other checks. */
	buf_init(&sql, SQL_MAX);
	buf_init(&ctx, 64 << 10);
	if (!(rc = build_select(s, &t, &sql)) && !(rc = buf_appends(&sql, " LIMIT 0")) &&
	    !(rc = buf_appendf(&ctx, "table '%s'", object)) &&
	    !(rc = exec_command(s, "SAVEPOINT airlock_check", "cannot check the table"))) {
		rc = exec_rows(s, &res, sql.ptr, 0, NULL, ctx.ptr);
		if (rc) {
			char msg[AL_ERROR_MSG_MAX];
			snprintf(msg, sizeof(msg), "%s", al_error_message());
			if (exec_command(s, "ROLLBACK TO SAVEPOINT airlock_check", "cannot check the table"))
				s->broken = 1;
			al_error_set(rc, "%s", msg); /* the check's message, not the rollback's */
		} else {
			rc = exec_command(s, "RELEASE SAVEPOINT airlock_check", "cannot check the table");
		}
	}
	s->pq->clear(res);
	buf_free(&sql);
	buf_free(&ctx);
	pg_table_free(&t);
	return rc;
}

/* ---- COPY records -> csv.h ---- */

static inline uint64_t load64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* 0x80 in every byte of v that is zero, nothing elsewhere (exact, unlike
 * the classic (v - 0x01..) & ~v trick, which can flag a byte above a zero). */
static inline uint64_t zero_bytes(uint64_t v)
{
	const uint64_t m = 0x7f7f7f7f7f7f7f7fULL;
	return ~(((v & m) + m) | v | m);
}

#define BYTES(c) (0x0101010101010101ULL * (uint64_t)(unsigned char)(c))

/* A record without quotes, CR or LF in its body has only unquoted fields:
 * PostgreSQL quoted none, and csv.h would quote none. 1 when that holds, its
 * text is valid UTF-8 and it has ncols fields: then it is copied as is. */
static int plain_record(const char *rec, size_t len, size_t ncols)
{
	size_t i = 0, commas = 0;

	while (i < len) {
		if (len - i >= 8) {
			uint64_t v = load64(rec + i);
			uint64_t special = (v & BYTES(0x80)) | zero_bytes(v ^ BYTES('"')) | zero_bytes(v ^ BYTES('\r')) |
					   zero_bytes(v ^ BYTES('\n'));
			if (!special) {
				/* Each marked byte becomes 1; the multiply sums the eight
				 * bytes into the top one (no popcnt instruction assumed). */
				commas += (size_t)(((zero_bytes(v ^ BYTES(',')) >> 7) * BYTES(1)) >> 56);
				i += 8;
				continue;
			}
		}
		unsigned char c = (unsigned char)rec[i];
		if (c < 0x80) {
			if (c == '"' || c == '\r' || c == '\n')
				return 0;
			commas += c == ',';
			i++;
			continue;
		}
		/* One UTF-8 sequence (a window of 4 holds any whole one). */
		size_t ok = csv_utf8_valid_prefix(rec + i, len - i < 4 ? len - i : 4);
		if (!ok)
			return 0;
		i += ok;
	}
	return commas + 1 == ncols;
}

static int malformed(size_t *bad_col, size_t col, const char *why)
{
	*bad_col = col;
	return al_error_set(AL_ERR_IO, "the server sent a malformed CSV record (field %zu: %s)", col + 1, why);
}

int source_postgresql_copy_record(struct csv_writer *w, char *rec, size_t n, size_t ncols, size_t *bad_col)
{
	char *p, *end;
	size_t col = 0;
	int rc;

	*bad_col = (size_t)-1;
	if (!n || rec[n - 1] != '\n')
		return malformed(bad_col, 0, "no line end");
	if (plain_record(rec, n - 1, ncols)) {
		/* The whole record is already in csv.h's form: one write. */
		if ((rc = csv_writer_plain(w, rec, n - 1)))
			return rc;
		return csv_writer_end_record(w);
	}
	p = rec;
	end = rec + n - 1;
	for (;;) {
		if (col >= ncols)
			return malformed(bad_col, col, "more fields than the table has columns");
		if (p < end && *p == '"') {
			/* Quoted: "" stands for ", undone in place. */
			char *start = ++p, *o = p;
			for (;;) {
				char *q = p < end ? memchr(p, '"', (size_t)(end - p)) : NULL;
				if (!q)
					return malformed(bad_col, col, "unterminated quotes");
				if (o != p)
					memmove(o, p, (size_t)(q - p));
				o += q - p;
				if (q + 1 < end && q[1] == '"') {
					*o++ = '"';
					p = q + 2;
					continue;
				}
				p = q + 1;
				break;
			}
			rc = csv_writer_text(w, start, (size_t)(o - start));
		} else {
			/* Unquoted: empty is NULL (NULL ''), else text as is. */
			char *q = p < end ? memchr(p, ',', (size_t)(end - p)) : NULL;
			if (!q)
				q = end;
			rc = q == p ? csv_writer_null(w) : csv_writer_text(w, p, (size_t)(q - p));
			p = q;
		}
		if (rc) {
			if (rc == AL_ERR_INVALID) /* not UTF-8; other errors are the writer's */
				*bad_col = col;
			return rc;
		}
		col++;
		if (p == end)
			break;
		if (*p != ',')
			return malformed(bad_col, col - 1, "text after a closing quote");
		p++;
	}
	if (col != ncols)
		return malformed(bad_col, col, "fewer fields than the table has columns");
	return csv_writer_end_record(w);
}

/* ---- export ---- */

static int pg_export(struct source *base, const char *object, struct csv_writer *w, source_progress_fn progress,
		     void *ctx, struct source_table_result *res)
{
	struct source_pg *s = (struct source_pg *)base;
	struct pg_table t;
	struct buf sql, what;
	PGresult *r = NULL;
	uint64_t nrows = 0;
	struct source_progress prog;
	int rc, len, sent = 0;

	source_progress_init(&prog, progress, ctx, object);
	res->columns = NULL;
	res->rows = 0;
	if ((rc = pg_usable(s)) || (rc = resolve(s, object, &t)))
		return rc;
	buf_init(&sql, SQL_MAX);
	buf_init(&what, 64 << 10);
	if ((rc = buf_appendf(&what, "table '%s'", object)) || (rc = check_table(s, object, &t)))
		goto out;
	if ((rc = buf_appends(&sql, "COPY (")) || (rc = build_select(s, &t, &sql)) ||
	    (rc = buf_appends(&sql, ") TO STDOUT (FORMAT csv)")))
		goto out;
	sent = 1;
	r = s->pq->exec(s->conn, sql.ptr);
	if (!r || s->pq->result_status(r) != PGRES_COPY_OUT) {
		rc = al_error_wrap(query_error(s, r, what.ptr), "connection '%s'", s->conn_name);
		goto out;
	}
	s->pq->clear(r);
	r = NULL;
	for (size_t i = 0; i < t.ncols; i++) {
		const char *name = json_string_value(json_object_get(json_array_get(t.columns, i), "name"));
		if ((rc = csv_writer_text(w, name, strlen(name)))) {
			al_error_wrap(rc, "table '%s' column %zu name", object, i + 1);
			goto out;
		}
	}
	if ((rc = csv_writer_end_record(w)))
		goto out;
	for (;;) {
		char *rec = NULL;
		size_t bad;

		len = s->pq->get_copy_data(s->conn, &rec, 0);
		if (len < 0)
			break;
		rc = source_postgresql_copy_record(w, rec, (size_t)len, t.ncols, &bad);
		s->pq->freemem(rec);
		if (rc) {
			if (bad != (size_t)-1)
				al_error_wrap(rc, "connection '%s': %s in %s row %llu column '%s'", s->conn_name, what.ptr,
					      s->where, (unsigned long long)nrows + 1,
					      json_string_value(json_object_get(json_array_get(t.columns, bad), "name")));
			goto out;
		}
		nrows++;
		source_progress_rows(&prog, nrows);
	}
	/* -1: the COPY ended (its result says how); -2: the connection failed. */
	r = s->pq->get_result(s->conn);
	if (!r || s->pq->result_status(r) != PGRES_COMMAND_OK) {
		if (!(rc = buf_appendf(&what, " after %llu row%s", (unsigned long long)nrows, nrows == 1 ? "" : "s")))
			rc = al_error_wrap(query_error(s, r, what.ptr), "connection '%s'", s->conn_name);
		goto out;
	}
	{
		/* The server's own count ("COPY n") must match ours. */
		const char *count = s->pq->cmd_tuples(r);
		if (count && *count && strtoull(count, NULL, 10) != nrows) {
			rc = al_error_set(AL_ERR_IO, "connection '%s': %s in %s: the server sent %s rows but %llu "
						     "arrived", s->conn_name, what.ptr, s->where, count,
					  (unsigned long long)nrows);
			goto out;
		}
	}
	while ((s->pq->clear(r), r = s->pq->get_result(s->conn)))
		;
	res->columns = t.columns;
	t.columns = NULL;
	res->rows = nrows;
out:
	s->pq->clear(r);
	/* Mid-COPY the rest of the stream is still coming; after a failed COPY
	 * the transaction is aborted: either way, nothing more can be read. */
	if (rc && sent)
		s->broken = 1;
	buf_free(&sql);
	buf_free(&what);
	pg_table_free(&t);
	return rc;
}

const struct source_ops source_postgresql_ops = {
	.type = "postgresql",
	.open = pg_open,
	.check = pg_check,
	.export_table = pg_export,
	.describe = pg_describe,
	.close = pg_close,
};
