#include "runner/source_databricks.h"
#include "common/error.h"
#include "common/util.h"
#include "net/curl_dl.h"
#include "runner/source_https.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SERVER_MESSAGE_MAX 400
#define API_ATTEMPTS 5
#define POLL_FIRST_MS 250
#define POLL_MAX_MS 5000
/* Refresh an OAuth token this long before the server says it expires. */
#define TOKEN_MARGIN_S 60

/* ---- url, names, errors ------------------------------------------------ */

void source_databricks_url_free(struct source_databricks_url *u)
{
	if (!u)
		return;
	free(u->origin);
	free(u->host);
	free(u->warehouse);
	free(u->catalog);
	free(u->schema);
	memset(u, 0, sizeof(*u));
}

/* A warehouse id goes into a url path and messages: keep it plain. */
static int valid_id(const char *s)
{
	if (!s || !*s || strlen(s) > 128)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
			return 0;
	return 1;
}

int source_databricks_url_parse(const char *url, int allow_http, struct source_databricks_url *out)
{
	struct source_https_url u;
	struct buf origin;
	const char *p, *seg;
	char *from_path = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = source_https_url_parse(url, allow_http, &u)))
		return rc;
	buf_init(&origin, 4096);
	rc = buf_appendf(&origin, "%s://%s", u.scheme, u.host);
	if (!rc && u.port)
		rc = buf_appendf(&origin, ":%d", u.port);
	if (rc)
		goto out;
	out->origin = buf_detach(&origin);
	out->host = util_strdup(u.host);
	out->port = u.port;
	if (!out->host) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* The warehouse's "HTTP path". */
	if (!strncmp(u.path, "/sql/1.0/warehouses/", 20) || !strncmp(u.path, "/sql/1.0/endpoints/", 19)) {
		seg = u.path + (u.path[9] == 'w' ? 20 : 19);
		if (!(from_path = util_strndup(seg, strcspn(seg, "/")))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (p = u.query; p && *p;) {
		size_t len = strcspn(p, "&");
		const char *eq = memchr(p, '=', len);
		char **slot = NULL;
		if (eq) {
			size_t klen = (size_t)(eq - p);
			if (klen == 12 && !strncmp(p, "warehouse_id", 12))
				slot = &out->warehouse;
			else if (klen == 7 && !strncmp(p, "catalog", 7))
				slot = &out->catalog;
			else if (klen == 6 && !strncmp(p, "schema", 6))
				slot = &out->schema;
		}
		if (slot) {
			free(*slot);
			*slot = NULL;
			if ((rc = util_percent_decode(eq + 1, len - (size_t)(eq + 1 - p), UTIL_PCT_PLUS, slot, NULL))) {
				if (rc == AL_ERR_INVALID)
					rc = al_error_set(AL_ERR_INVALID, "databricks connection url: the %.*s parameter "
									  "has a bad %%-escape (write %%XX with two hex "
									  "digits, not %%00)", (int)(eq - p), p);
				goto out;
			}
		}
		p += len;
		if (*p == '&')
			p++;
	}
	if (from_path && out->warehouse && strcmp(from_path, out->warehouse)) {
		rc = al_error_set(AL_ERR_INVALID, "the connection url names two different SQL warehouses (in its "
						  "path and in ?warehouse_id=)");
		goto out;
	}
	if (from_path && !out->warehouse) {
		out->warehouse = from_path;
		from_path = NULL;
	}
	if (!out->warehouse || !*out->warehouse) {
		rc = al_error_set(AL_ERR_INVALID, "the connection url names no SQL warehouse: use the warehouse's "
						  "HTTP path (https://%s/sql/1.0/warehouses/<id>) or add "
						  "?warehouse_id=<id> to the url", u.host);
		goto out;
	}
	if (!valid_id(out->warehouse)) {
		rc = al_error_set(AL_ERR_INVALID, "the connection url's SQL warehouse id is not valid (letters, "
						  "digits, '-' and '_' only)");
		goto out;
	}
	if ((out->catalog && !*out->catalog) || (out->schema && !*out->schema)) {
		rc = al_error_set(AL_ERR_INVALID, "the connection url has an empty catalog= or schema=");
		goto out;
	}
out:
	if (rc)
		source_databricks_url_free(out);
	free(from_path);
	buf_free(&origin);
	source_https_url_free(&u);
	return rc;
}

int source_databricks_quote_table(const char *name, struct buf *out)
{
	const char *p = name;
	int parts = 0, rc = AL_OK;

	if (!name || !*name)
		return al_error_set(AL_ERR_INVALID, "the table name is empty");
	for (;;) {
		size_t len = strcspn(p, ".");
		if (!len || ++parts > 3)
			return al_error_set(AL_ERR_INVALID, "table '%s': give catalog.schema.table, schema.table or "
							    "table (no empty parts)", name);
		rc = (parts > 1 ? buf_appendc(out, '.') : 0);
		rc = rc ? rc : buf_appendc(out, '`');
		for (size_t i = 0; !rc && i < len; i++)
			rc = p[i] == '`' ? buf_append(out, "``", 2) : buf_appendc(out, p[i]);
		rc = rc ? rc : buf_appendc(out, '`');
		if (rc)
			return rc;
		p += len;
		if (!*p)
			return AL_OK;
		p++;
	}
}

int source_databricks_show_tables(const char *name, struct buf *out)
{
	const char *dot = strrchr(name, '.');
	int rc = buf_appends(out, "SHOW TABLES");

	if (rc || !dot)
		return rc;
	if ((rc = buf_appends(out, " IN ")))
		return rc;
	{
		char *schema = util_strndup(name, (size_t)(dot - name));
		if (!schema)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		rc = source_databricks_quote_table(schema, out);
		free(schema);
	}
	return rc;
}

int source_databricks_is_uuid(const char *s)
{
	static const int groups[] = { 8, 4, 4, 4, 12 };
	if (!s)
		return 0;
	for (int g = 0; g < 5; g++) {
		for (int i = 0; i < groups[g]; i++, s++)
			if (!isxdigit((unsigned char)*s))
				return 0;
		if (g < 4 && *s++ != '-')
			return 0;
	}
	return *s == '\0';
}

static int contains(const char *haystack, const char *needle)
{
	return haystack && strstr(haystack, needle) != NULL;
}

int source_databricks_error_code(const char *error_code, const char *message, const char *sql_state)
{
	static const char *const not_found[] = { "TABLE_OR_VIEW_NOT_FOUND", "SCHEMA_NOT_FOUND", "CATALOG_NOT_FOUND",
						 "NO_SUCH_CATALOG_EXCEPTION", "RESOURCE_DOES_NOT_EXIST" };
	static const char *const forbidden[] = { "PERMISSION_DENIED", "INSUFFICIENT_PERMISSIONS", "UNAUTHENTICATED" };
	static const char *const later[] = { "TEMPORARILY_UNAVAILABLE", "SERVICE_UNDER_MAINTENANCE",
					     "WORKSPACE_TEMPORARILY_UNAVAILABLE", "RESOURCE_EXHAUSTED",
					     "REQUEST_LIMIT_EXCEEDED" };
	size_t i;

	if (sql_state && (!strcmp(sql_state, "42P01") || !strcmp(sql_state, "3F000") || !strcmp(sql_state, "42704")))
		return AL_ERR_NOT_FOUND;
	if (sql_state && !strcmp(sql_state, "42501"))
		return AL_ERR_FORBIDDEN;
	for (i = 0; i < sizeof(not_found) / sizeof(not_found[0]); i++)
		if (contains(message, not_found[i]) || (error_code && !strcmp(error_code, not_found[i])))
			return AL_ERR_NOT_FOUND;
	if (error_code && !strcmp(error_code, "NOT_FOUND"))
		return AL_ERR_NOT_FOUND;
	for (i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++)
		if (contains(message, forbidden[i]) || (error_code && !strcmp(error_code, forbidden[i])))
			return AL_ERR_FORBIDDEN;
	for (i = 0; i < sizeof(later) / sizeof(later[0]); i++)
		if (error_code && !strcmp(error_code, later[i]))
			return AL_ERR_UNAVAILABLE;
	return AL_ERR_IO;
}

/* ---- the streaming JSON_ARRAY reader ------------------------------------ */

enum {
	R_START,       /* before the outer '[' */
	R_OUTER_FIRST, /* after it: a row or ']' */
	R_OUTER_ELEM,  /* after ',': a row */
	R_OUTER_NEXT,  /* after a row: ',' or ']' */
	R_ROW_FIRST,   /* after a row's '[': a value or ']' */
	R_ROW_ELEM,    /* after ',': a value */
	R_ROW_NEXT,    /* after a value: ',' or ']' */
	R_STRING,
	R_ESCAPE,
	R_UNICODE,
	R_LITERAL,
	R_END,
};

void source_databricks_rows_init(struct source_databricks_rows *r, struct csv_writer *w, size_t ncols,
				 size_t field_max)
{
	memset(r, 0, sizeof(*r));
	r->w = w;
	r->ncols = ncols;
	r->state = R_START;
	buf_init(&r->field, field_max ? field_max : SOURCE_DATABRICKS_FIELD_MAX);
}

void source_databricks_rows_free(struct source_databricks_rows *r)
{
	if (r->field.ptr)
		sodium_memzero(r->field.ptr, r->field.cap);
	buf_free(&r->field);
}

static int rows_fail(struct source_databricks_rows *r, const char *what)
{
	return al_error_set(AL_ERR_IO, "result row %llu: %s", (unsigned long long)r->rows + 1, what);
}

static int append_utf8(struct buf *b, uint32_t cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return buf_append(b, u, n);
}

/* buf's own message does not say where: replace it. */
static int field_error(struct source_databricks_rows *r, int rc)
{
	if (rc == AL_ERR_TOO_LARGE)
		return al_error_set(AL_ERR_TOO_LARGE, "result row %llu column %zu: a value larger than %zu MiB",
				    (unsigned long long)r->rows + 1, r->col + 1, r->field.max >> 20);
	return rc;
}

static int field_append(struct source_databricks_rows *r, const char *p, size_t n)
{
	return field_error(r, buf_append(&r->field, p, n));
}

static int json_number(const char *s, size_t n)
{
	size_t i = 0;
	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else if (i < n && s[i] >= '1' && s[i] <= '9')
		while (i < n && isdigit((unsigned char)s[i]))
			i++;
	else
		return 0;
	if (i < n && s[i] == '.') {
		size_t d = ++i;
		while (i < n && isdigit((unsigned char)s[i]))
			i++;
		if (i == d)
			return 0;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		size_t d;
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		d = i;
		while (i < n && isdigit((unsigned char)s[i]))
			i++;
		if (i == d)
			return 0;
	}
	return i == n;
}

/* One value is complete (a string in field, or a literal in field). */
static int emit_value(struct source_databricks_rows *r, int literal)
{
	const char *v = buf_cstr(&r->field);
	size_t n = r->field.len;
	int rc;

	if (r->col >= r->ncols)
		return rows_fail(r, "more values than the result has columns");
	if (!literal) {
		rc = csv_writer_text(r->w, v, n);
		if (rc == AL_ERR_INVALID)
			al_error_wrap(rc, "result row %llu column %zu", (unsigned long long)r->rows + 1, r->col + 1);
	} else if (n == 4 && !memcmp(v, "null", 4)) {
		rc = csv_writer_null(r->w);
	} else if ((n == 4 && !memcmp(v, "true", 4)) || (n == 5 && !memcmp(v, "false", 5)) || json_number(v, n)) {
		rc = csv_writer_plain(r->w, v, n);
	} else {
		return rows_fail(r, "malformed JSON value");
	}
	if (rc)
		return rc;
	r->col++;
	buf_reset(&r->field);
	return AL_OK;
}

static int end_row(struct source_databricks_rows *r)
{
	int rc;
	if (r->col != r->ncols)
		return rows_fail(r, "fewer values than the result has columns");
	if ((rc = csv_writer_end_record(r->w)))
		return rc;
	r->rows++;
	return AL_OK;
}

/* A \uXXXX unit is complete. */
static int unicode_unit(struct source_databricks_rows *r)
{
	uint32_t c = r->code;
	if (r->high) {
		if (c < 0xdc00 || c > 0xdfff)
			return rows_fail(r, "a UTF-16 high surrogate without its low half");
		c = 0x10000 + ((r->high - 0xd800) << 10) + (c - 0xdc00);
		r->high = 0;
	} else if (c >= 0xd800 && c <= 0xdbff) {
		r->high = c;
		return AL_OK;
	} else if (c >= 0xdc00 && c <= 0xdfff) {
		return rows_fail(r, "a lone UTF-16 low surrogate");
	}
	return field_error(r, append_utf8(&r->field, c));
}

int source_databricks_rows_feed(struct source_databricks_rows *r, const char *data, size_t n)
{
	size_t i = 0;
	int rc;

	while (i < n) {
		unsigned char c = (unsigned char)data[i];

		switch (r->state) {
		case R_STRING: {
			size_t j = i;
			while (j < n && data[j] != '"' && data[j] != '\\' && (unsigned char)data[j] >= 0x20)
				j++;
			if (j > i || c == '"') {
				if (r->high)
					return rows_fail(r, "a UTF-16 high surrogate without its low half");
				if (j > i) {
					if ((rc = field_append(r, data + i, j - i)))
						return rc;
					i = j;
					continue;
				}
				if ((rc = emit_value(r, 0)))
					return rc;
				r->state = R_ROW_NEXT;
			} else if (c == '\\') {
				r->state = R_ESCAPE;
			} else {
				return rows_fail(r, "a control character inside a JSON string");
			}
			i++;
			continue;
		}
		case R_ESCAPE: {
			char out;
			if (r->high && c != 'u')
				return rows_fail(r, "a UTF-16 high surrogate without its low half");
			switch (c) {
			case '"': out = '"'; break;
			case '\\': out = '\\'; break;
			case '/': out = '/'; break;
			case 'b': out = '\b'; break;
			case 'f': out = '\f'; break;
			case 'n': out = '\n'; break;
			case 'r': out = '\r'; break;
			case 't': out = '\t'; break;
			case 'u':
				r->code = 0;
				r->code_digits = 0;
				r->state = R_UNICODE;
				i++;
				continue;
			default:
				return rows_fail(r, "a bad escape in a JSON string");
			}
			if ((rc = field_append(r, &out, 1)))
				return rc;
			r->state = R_STRING;
			i++;
			continue;
		}
		case R_UNICODE: {
			int v = util_hex_value(c);
			if (v < 0)
				return rows_fail(r, "a bad \\u escape in a JSON string");
			r->code = r->code * 16 + (uint32_t)v;
			if (++r->code_digits == 4) {
				if ((rc = unicode_unit(r)))
					return rc;
				r->state = R_STRING;
			}
			i++;
			continue;
		}
		case R_LITERAL:
			if (isalnum(c) || c == '+' || c == '-' || c == '.') {
				if ((rc = field_append(r, data + i, 1)))
					return rc;
				i++;
				continue;
			}
			if ((rc = emit_value(r, 1)))
				return rc;
			r->state = R_ROW_NEXT;
			continue; /* c is the next token: read it again */
		default:
			break;
		}
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			i++;
			continue;
		}
		switch (r->state) {
		case R_START:
			if (c != '[')
				return rows_fail(r, "the result data is not a JSON array");
			r->state = R_OUTER_FIRST;
			break;
		case R_OUTER_FIRST:
		case R_OUTER_ELEM:
			if (c == ']' && r->state == R_OUTER_FIRST) {
				r->state = R_END;
			} else if (c == '[') {
				r->col = 0;
				r->state = R_ROW_FIRST;
			} else {
				return rows_fail(r, "expected a row (a JSON array)");
			}
			break;
		case R_OUTER_NEXT:
			if (c == ',')
				r->state = R_OUTER_ELEM;
			else if (c == ']')
				r->state = R_END;
			else
				return rows_fail(r, "expected ',' or ']' after a row");
			break;
		case R_ROW_FIRST:
		case R_ROW_ELEM:
			if (c == ']' && r->state == R_ROW_FIRST) {
				if ((rc = end_row(r)))
					return rc;
				r->state = R_OUTER_NEXT;
			} else if (c == '"') {
				buf_reset(&r->field);
				r->state = R_STRING;
			} else if (c == '-' || isalnum(c)) {
				buf_reset(&r->field);
				r->state = R_LITERAL;
				continue; /* the literal's first character */
			} else {
				return rows_fail(r, "expected a value (nested arrays and objects are not expected)");
			}
			break;
		case R_ROW_NEXT:
			if (c == ',') {
				r->state = R_ROW_ELEM;
			} else if (c == ']') {
				if ((rc = end_row(r)))
					return rc;
				r->state = R_OUTER_NEXT;
			} else {
				return rows_fail(r, "expected ',' or ']' after a value");
			}
			break;
		case R_END:
			return rows_fail(r, "data after the end of the result array");
		default:
			return al_error_set(AL_ERR_INTERNAL, "result reader: bad state %d", r->state);
		}
		i++;
	}
	return AL_OK;
}

int source_databricks_rows_finish(struct source_databricks_rows *r)
{
	if (r->state != R_END)
		return rows_fail(r, "the result data ended early (truncated chunk)");
	r->state = R_START; /* ready for the next chunk's array */
	return AL_OK;
}

/* ---- HTTP ------------------------------------------------------------------ */

struct source_databricks {
	const struct source_ops *ops; /* first: a struct source */
	const struct curl_dl *cu;
	CURL *curl;                   /* reused: keeps the connection to the workspace */
	struct source_databricks_url url;
	const char *name;             /* borrowed from source_conn, as are the next four */
	const char *user, *password;
	const char *user_key, *password_key;
	int oauth;                    /* user is a service principal: client credentials */
	char *token;                  /* the OAuth access token (wiped), or NULL */
	int64_t token_refresh_ms;     /* monotonic time to fetch a new one */
	int allow_http;
	int timeout_s;
};

/* Wipes every string of a response before it is freed: statement results
 * hold pre-signed links, token responses tokens. Only for values nobody
 * else holds. */
static void json_wipe(json_t *j)
{
	const char *key;
	json_t *v;
	size_t i;

	if (json_is_string(j)) {
		sodium_memzero((char *)json_string_value(j), json_string_length(j));
	} else if (json_is_object(j)) {
		json_object_foreach(j, key, v)
			json_wipe(v);
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			json_wipe(v);
	}
}

static void json_wipe_decref(json_t *j)
{
	if (j && j->refcount == 1)
		json_wipe(j);
	json_decref(j);
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* A server's message made fit for ours: one line, bounded, and with any
 * credential it might echo blanked out. */
static void clean_message(const struct source_databricks *s, const char *msg, struct buf *out)
{
	const char *secrets[2] = { s->password, s->token };

	if (!msg || !*msg) {
		buf_appends(out, "(no message)");
		return;
	}
	for (const char *p = msg; *p && out->len < SERVER_MESSAGE_MAX;) {
		int hit = 0;
		for (int k = 0; k < 2 && !hit; k++) {
			size_t n = secrets[k] ? strlen(secrets[k]) : 0;
			if (n >= 4 && !strncmp(p, secrets[k], n)) {
				buf_appends(out, "***");
				p += n;
				hit = 1;
			}
		}
		if (hit)
			continue;
		buf_appendc(out, (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p);
		p++;
	}
	if (out->len >= SERVER_MESSAGE_MAX) {
		/* Do not end inside a UTF-8 sequence. */
		while (out->len && ((unsigned char)out->ptr[out->len - 1] & 0xc0) == 0x80)
			out->len--;
		if (out->len && (unsigned char)out->ptr[out->len - 1] >= 0xc0)
			out->len--;
		out->ptr[out->len] = '\0';
		buf_appends(out, " ...");
	}
}

struct sink {
	struct buf *b;
	int rc;
};

static size_t on_sink(char *data, size_t size, size_t nmemb, void *ud)
{
	struct sink *k = ud;
	size_t n = size * nmemb;
	if ((k->rc = buf_append(k->b, data, n)))
		return 0;
	return n;
}

enum auth { AUTH_NONE, AUTH_BEARER, AUTH_CLIENT };

static void wipe_slist(const struct curl_dl *cu, struct curl_slist *l)
{
	for (struct curl_slist *h = l; h; h = h->next)
		sodium_memzero(h->data, strlen(h->data));
	if (l)
		cu->slist_free_all(l);
}

/* One API request into raw (cleared first). */
static int request(struct source_databricks *s, const char *method, const char *url, const char *body,
		   const char *content_type, enum auth auth, const char *what, long *status, struct buf *raw,
		   long *retry_after)
{
	const struct curl_dl *cu = s->cu;
	struct curl_slist *headers = NULL, *h;
	struct sink sink = { .b = raw };
	char errbuf[CURL_ERROR_SIZE];
	struct buf ct;
	curl_off_t ra = 0;
	CURLcode cc = CURLE_OK;
	int rc;

	*status = 0;
	*retry_after = 0;
	buf_init(&ct, 4096);
	if (raw->ptr)
		sodium_memzero(raw->ptr, raw->cap);
	buf_reset(raw);
	cu->easy_reset(s->curl);
	if ((rc = source_https_curl_setup(cu, s->curl, errbuf, s->allow_http, s->timeout_s, 0)))
		goto out;
	if (content_type && (rc = buf_appendf(&ct, "Content-Type: %s", content_type)))
		goto out;
	if (!(h = cu->slist_append(headers, "Accept: application/json")) || !(headers = h) ||
	    (content_type && (!(h = cu->slist_append(headers, ct.ptr)) || !(headers = h)))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
#define SET(opt, val)                                              \
	do {                                                       \
		if (cc == CURLE_OK)                                \
			cc = cu->easy_setopt(s->curl, opt, val);   \
	} while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_HTTPHEADER, headers);
	/* The server may wait up to wait_timeout (10 s) before it answers. */
	SET(CURLOPT_TIMEOUT, (long)(s->timeout_s + 30));
	SET(CURLOPT_WRITEFUNCTION, on_sink);
	SET(CURLOPT_WRITEDATA, &sink);
	if (auth == AUTH_BEARER) {
		SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		SET(CURLOPT_XOAUTH2_BEARER, s->oauth ? s->token : s->password);
	} else if (auth == AUTH_CLIENT) {
		SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		SET(CURLOPT_USERNAME, s->user);
		SET(CURLOPT_PASSWORD, s->password);
	}
	if (!strcmp(method, "POST")) {
		SET(CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
		SET(CURLOPT_POSTFIELDS, body ? body : "");
	} else {
		SET(CURLOPT_HTTPGET, 1L);
	}
#undef SET
	if (cc != CURLE_OK) {
		rc = al_error_set(AL_ERR_INTERNAL, "libcurl refused an option (%s)", cu->easy_strerror(cc));
		goto out;
	}
	cc = cu->easy_perform(s->curl);
	if (sink.rc) {
		rc = al_error_wrap(sink.rc, "%s: the server's answer", what);
		goto out;
	}
	if (cc != CURLE_OK) {
		rc = source_https_curl_error(cu, cc, errbuf, what);
		goto out;
	}
	cu->easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, status);
	if (cu->easy_getinfo(s->curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
		*retry_after = ra > 60 ? 60 : (long)ra;
out:
	/* The handle keeps pointers to these options until the next reset. */
	cu->easy_setopt(s->curl, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
	cu->easy_setopt(s->curl, CURLOPT_ERRORBUFFER, (char *)NULL);
	wipe_slist(cu, headers);
	buf_free(&ct);
	return rc;
}

static void drop_token(struct source_databricks *s)
{
	if (s->token) {
		sodium_memzero(s->token, strlen(s->token));
		free(s->token);
		s->token = NULL;
	}
}

static const char *key_name(const char *key)
{
	return key ? key : "(not set)";
}

/* OAuth M2M: a token from the workspace's own authorization server. */
static int ensure_token(struct source_databricks *s)
{
	struct buf url, raw, msg;
	json_t *j = NULL;
	const char *tok;
	long status, retry_after;
	json_int_t expires;
	int rc;

	if (!s->oauth || (s->token && util_monotonic_ms() < s->token_refresh_ms))
		return AL_OK;
	drop_token(s);
	buf_init(&url, 8192);
	buf_init(&raw, 1 << 20);
	buf_init(&msg, 4096);
	if ((rc = buf_appendf(&url, "%s/oidc/v1/token", s->url.origin)))
		goto out;
	if ((rc = request(s, "POST", url.ptr, "grant_type=client_credentials&scope=all-apis",
			  "application/x-www-form-urlencoded", AUTH_CLIENT, "the OAuth token request", &status, &raw,
			  &retry_after)))
		goto out;
	j = raw.len ? json_loadb(raw.ptr, raw.len, 0, NULL) : NULL;
	if (status == 400 || status == 401 || status == 403) {
		const char *err = json_string_value(json_object_get(j, "error"));
		clean_message(s, err, &msg);
		rc = al_error_set(AL_ERR_FORBIDDEN, "Databricks %s refused the service principal's OAuth credentials "
						    "(HTTP %ld, %s): check the application id in credentials.userKey "
						    "'%s' and the OAuth secret in credentials.passwordKey '%s'",
				  s->url.host, status, buf_cstr(&msg), key_name(s->user_key), key_name(s->password_key));
		goto out;
	}
	tok = json_string_value(json_object_get(j, "access_token"));
	if (status != 200 || !tok || !*tok) {
		rc = al_error_set(status >= 500 ? AL_ERR_UNAVAILABLE : AL_ERR_IO,
				  "Databricks %s: the OAuth token endpoint answered HTTP %ld without a token", s->url.host,
				  status);
		goto out;
	}
	expires = json_integer_value(json_object_get(j, "expires_in"));
	if (expires <= 0)
		expires = 3600;
	if (!(s->token = util_strdup(tok))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	s->token_refresh_ms = util_monotonic_ms() +
			      (int64_t)(expires > 2 * TOKEN_MARGIN_S ? expires - TOKEN_MARGIN_S : expires / 2) * 1000;
out:
	json_wipe_decref(j);
	if (raw.ptr)
		sodium_memzero(raw.ptr, raw.cap);
	buf_free(&raw);
	buf_free(&url);
	buf_free(&msg);
	return rc;
}

static int api_error(struct source_databricks *s, long status, json_t *j, const char *what)
{
	const char *code = json_string_value(json_object_get(j, "error_code"));
	struct buf msg;
	int rc;

	buf_init(&msg, 4096);
	clean_message(s, json_string_value(json_object_get(j, "message")), &msg);
	if (status == 401)
		rc = s->oauth ? al_error_set(AL_ERR_FORBIDDEN, "%s: Databricks refused the OAuth token of the service "
							       "principal in credentials.userKey '%s' (HTTP 401): %s",
					     what, key_name(s->user_key), buf_cstr(&msg))
			      : al_error_set(AL_ERR_FORBIDDEN, "%s: Databricks refused the personal access token "
							       "(HTTP 401): check credentials.passwordKey '%s' in the "
							       "job's credentials: %s",
					     what, key_name(s->password_key), buf_cstr(&msg));
	else if (status == 403)
		/* Databricks answers 403 both for a token it does not know and
		 * for one without the right: its message tells which. */
		rc = s->oauth ? al_error_set(AL_ERR_FORBIDDEN, "%s: access denied (HTTP 403): %s: check that the "
							       "service principal in credentials.userKey '%s' has CAN "
							       "USE on SQL warehouse %s and SELECT on the table",
					     what, buf_cstr(&msg), key_name(s->user_key), s->url.warehouse)
			      : al_error_set(AL_ERR_FORBIDDEN, "%s: access denied (HTTP 403): %s: check the "
							       "personal access token in credentials.passwordKey '%s' "
							       "and that its owner has CAN USE on SQL warehouse %s and "
							       "SELECT on the table",
					     what, buf_cstr(&msg), key_name(s->password_key), s->url.warehouse);
	else if (status == 404)
		rc = al_error_set(AL_ERR_NOT_FOUND, "%s: not found (HTTP 404): %s: check the SQL warehouse id "
						    "in the connection url", what, buf_cstr(&msg));
	else if (status == 429 || status >= 500)
		rc = al_error_set(AL_ERR_UNAVAILABLE, "%s: Databricks answered HTTP %ld (%s); try again later", what,
				  status, buf_cstr(&msg));
	else if (status == 400 && source_databricks_error_code(code, buf_cstr(&msg), NULL) != AL_ERR_IO)
		rc = al_error_set(source_databricks_error_code(code, buf_cstr(&msg), NULL), "%s: %s", what,
				  buf_cstr(&msg));
	else
		rc = al_error_set(status == 400 ? AL_ERR_INVALID : AL_ERR_IO, "%s: Databricks answered HTTP %ld: %s%s%s",
				  what, status, code ? code : "", code ? ": " : "", buf_cstr(&msg));
	buf_free(&msg);
	return rc;
}

/* A REST call on the workspace: retries 429/503 (Retry-After) and, once,
 * a 401 with a fresh OAuth token. *out is the 200 answer (may be NULL when
 * out is NULL). */
static int api(struct source_databricks *s, const char *method, const char *path, const json_t *body,
	       const char *what, json_t **out)
{
	struct buf url, raw;
	char *text = NULL;
	json_t *j = NULL;
	long status = 0, retry_after = 0;
	int64_t delay = 1000;
	int rc, refreshed = 0;

	if (out)
		*out = NULL;
	buf_init(&url, 8192);
	buf_init(&raw, SOURCE_DATABRICKS_RESPONSE_MAX);
	if ((rc = buf_appendf(&url, "%s%s", s->url.origin, path)))
		goto out;
	if (body && !(text = json_dumps(body, JSON_COMPACT))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int attempt = 0;; attempt++) {
		if ((rc = ensure_token(s)))
			goto out;
		if ((rc = request(s, method, url.ptr, text, text ? "application/json" : NULL, AUTH_BEARER, what,
				  &status, &raw, &retry_after)))
			goto out;
		if (status == 401 && s->oauth && !refreshed) {
			refreshed = 1;
			drop_token(s);
			continue;
		}
		if ((status == 429 || status == 503) && attempt + 1 < API_ATTEMPTS) {
			sleep_ms(retry_after ? retry_after * 1000 : delay);
			delay *= 2;
			continue;
		}
		break;
	}
	j = raw.len ? json_loadb(raw.ptr, raw.len, 0, NULL) : NULL;
	if (status != 200) {
		rc = api_error(s, status, j, what);
		goto out;
	}
	if (out) {
		if (!json_is_object(j)) {
			rc = al_error_set(AL_ERR_IO, "%s: Databricks answered something that is not a JSON object", what);
			goto out;
		}
		*out = j;
		j = NULL;
	}
out:
	json_wipe_decref(j);
	if (raw.ptr)
		sodium_memzero(raw.ptr, raw.cap);
	buf_free(&raw);
	buf_free(&url);
	free(text);
	return rc;
}

/* ---- statements ------------------------------------------------------------ */

static int statement_path(struct buf *b, const char *id, const char *suffix)
{
	buf_reset(b);
	return buf_appendf(b, "/api/2.0/sql/statements/%s%s", id, suffix ? suffix : "");
}

/* Best effort: a statement we give up on should not keep the warehouse
 * busy. Keeps the current error message. */
static void cancel_statement(struct source_databricks *s, const char *id)
{
	char saved[AL_ERROR_MSG_MAX];
	struct buf path;

	if (!id)
		return;
	snprintf(saved, sizeof(saved), "%s", al_error_message());
	buf_init(&path, 4096);
	if (!statement_path(&path, id, "/cancel"))
		api(s, "POST", path.ptr, NULL, "cancel", NULL);
	buf_free(&path);
	al_error_set(AL_ERR_IO, "%s", saved); /* only the text is kept: the code is the caller's */
}

/* Runs sql until it SUCCEEDED; *out is that answer (manifest, first
 * result), *id the statement's id (free it). On failure there is neither
 * (a statement still running was canceled). */
static int run_statement(struct source_databricks *s, const char *sql, int external, const char *what, char **id,
			 json_t **out)
{
	json_t *body, *resp = NULL;
	struct buf path;
	int64_t deadline = util_monotonic_ms() + (int64_t)SOURCE_DATABRICKS_MAX_WAIT_S * 1000, delay = POLL_FIRST_MS;
	int rc;

	*id = NULL;
	*out = NULL;
	buf_init(&path, 4096);
	body = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "warehouse_id", s->url.warehouse, "statement", sql,
			 "wait_timeout", "10s", "on_wait_timeout", "CONTINUE", "disposition",
			 external ? "EXTERNAL_LINKS" : "INLINE", "format", "JSON_ARRAY");
	if (!body || (s->url.catalog && json_object_set_new(body, "catalog", json_string(s->url.catalog))) ||
	    (s->url.schema && json_object_set_new(body, "schema", json_string(s->url.schema)))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = api(s, "POST", "/api/2.0/sql/statements", body, what, &resp)))
		goto out;
	{
		const char *sid = json_string_value(json_object_get(resp, "statement_id"));
		if (!valid_id(sid)) {
			rc = al_error_set(AL_ERR_IO, "%s: Databricks answered without a usable statement_id", what);
			goto out;
		}
		if (!(*id = util_strdup(sid))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (;;) {
		json_t *st = json_object_get(resp, "status");
		const char *state = json_string_value(json_object_get(st, "state"));
		if (state && !strcmp(state, "SUCCEEDED")) {
			*out = resp;
			resp = NULL;
			break;
		}
		if (state && (!strcmp(state, "FAILED") || !strcmp(state, "CANCELED") || !strcmp(state, "CLOSED"))) {
			json_t *err = json_object_get(st, "error");
			const char *code = json_string_value(json_object_get(err, "error_code"));
			const char *sqlstate = json_string_value(json_object_get(st, "sql_state"));
			struct buf msg;
			buf_init(&msg, 4096);
			if (!sqlstate)
				sqlstate = json_string_value(json_object_get(err, "sql_state"));
			clean_message(s, json_string_value(json_object_get(err, "message")), &msg);
			if (!strcmp(state, "FAILED"))
				rc = al_error_set(source_databricks_error_code(code, buf_cstr(&msg), sqlstate),
						  "%s: the statement failed on Databricks: %s", what, buf_cstr(&msg));
			else
				rc = al_error_set(AL_ERR_IO, "%s: the statement was %s on Databricks%s%s", what,
						  !strcmp(state, "CANCELED") ? "canceled" : "closed",
						  err ? ": " : "", err ? buf_cstr(&msg) : "");
			buf_free(&msg);
			free(*id);
			*id = NULL; /* over: nothing to cancel */
			goto out;
		}
		if (util_monotonic_ms() + delay > deadline) {
			rc = al_error_set(AL_ERR_TIMEOUT, "%s: the statement did not finish within %d minutes (state %s); "
							  "is the SQL warehouse running?",
					  what, SOURCE_DATABRICKS_MAX_WAIT_S / 60, state ? state : "unknown");
			goto out;
		}
		sleep_ms(delay);
		delay = delay * 2 > POLL_MAX_MS ? POLL_MAX_MS : delay * 2;
		json_wipe_decref(resp);
		resp = NULL;
		if ((rc = statement_path(&path, *id, NULL)) || (rc = api(s, "GET", path.ptr, NULL, what, &resp)))
			goto out;
	}
out:
	if (rc && *id) {
		cancel_statement(s, *id);
		free(*id);
		*id = NULL;
	}
	json_decref(body);
	json_wipe_decref(resp);
	buf_free(&path);
	return rc;
}

/* ---- result chunks ---------------------------------------------------------- */

struct link_ctx {
	struct source_databricks *s;
	struct source_databricks_rows *rows;
	CURL *curl;
	long status;
	int checked;     /* status looked at */
	uint64_t fed;    /* bytes given to the reader */
	int rc;
	struct source_progress prog;
};

static size_t on_link(char *data, size_t size, size_t nmemb, void *ud)
{
	struct link_ctx *l = ud;
	size_t n = size * nmemb;

	if (!l->checked) {
		l->checked = 1;
		l->s->cu->easy_getinfo(l->curl, CURLINFO_RESPONSE_CODE, &l->status);
	}
	if (l->status != 200)
		return n; /* an error document (it may quote the signed url): dropped */
	if ((l->rc = source_databricks_rows_feed(l->rows, data, n)))
		return 0;
	l->fed += n;
	source_progress_tick(&l->prog, l->rows->rows);
	return n;
}

/* Streams one pre-signed link into the reader. No Authorization header:
 * the link carries its own credential and storage services refuse two.
 * The link's http_headers (a decryption key, say) are sent as given.
 * *status is the HTTP status when the transfer itself worked. */
static int fetch_link(struct source_databricks *s, const json_t *link, const char *what, struct link_ctx *l,
		      long *status)
{
	const struct curl_dl *cu = s->cu;
	const char *url = json_string_value(json_object_get(link, "external_link"));
	json_t *hdrs = json_object_get(link, "http_headers"), *v;
	struct curl_slist *headers = NULL, *h;
	char errbuf[CURL_ERROR_SIZE];
	const char *key;
	struct buf line;
	CURLcode cc;
	int rc;

	*status = 0;
	buf_init(&line, 64 << 10);
	if (!url || (strncmp(url, "https://", 8) && !(s->allow_http && !strncmp(url, "http://", 7)))) {
		rc = al_error_set(AL_ERR_IO, "%s: Databricks gave a result link that is not https", what);
		goto out;
	}
	json_object_foreach(hdrs, key, v) {
		if (!json_is_string(v) || strpbrk(key, ":\r\n") || strpbrk(json_string_value(v), "\r\n"))
			continue;
		buf_reset(&line);
		if ((rc = buf_appendf(&line, "%s: %s", key, json_string_value(v))))
			goto out;
		if (!(h = cu->slist_append(headers, line.ptr))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		headers = h;
	}
	cu->easy_reset(s->curl);
	if ((rc = source_https_curl_setup(cu, s->curl, errbuf, s->allow_http, s->timeout_s, 1)))
		goto out;
	l->curl = s->curl;
	l->checked = 0;
	l->status = 0;
	l->rc = AL_OK;
	cu->easy_setopt(s->curl, CURLOPT_URL, url);
	cu->easy_setopt(s->curl, CURLOPT_HTTPHEADER, headers);
	cu->easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, on_link);
	cu->easy_setopt(s->curl, CURLOPT_WRITEDATA, l);
	cu->easy_setopt(s->curl, CURLOPT_HTTPGET, 1L);
	cc = cu->easy_perform(s->curl);
	if (l->rc) {
		rc = al_error_wrap(l->rc, "%s", what);
		goto out;
	}
	if (cc != CURLE_OK) {
		/* curl's text names the storage host, never the signed query. */
		rc = source_https_curl_error(cu, cc, errbuf, what);
		goto out;
	}
	cu->easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, status);
	rc = AL_OK;
out:
	cu->easy_setopt(s->curl, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
	cu->easy_setopt(s->curl, CURLOPT_ERRORBUFFER, (char *)NULL);
	wipe_slist(cu, headers);
	if (line.ptr)
		sodium_memzero(line.ptr, line.cap);
	buf_free(&line);
	return rc;
}

/* The link of chunk `index` in a result object, or NULL. */
static json_t *find_link(json_t *result, json_int_t index)
{
	json_t *link;
	size_t i;
	json_array_foreach(json_object_get(result, "external_links"), i, link)
		if (json_integer_value(json_object_get(link, "chunk_index")) == index)
			return link;
	return NULL;
}

/* One chunk, in full. A link refused before any byte arrived (expired:
 * links live about 15 minutes) is asked for again, once. */
static int fetch_chunk(struct source_databricks *s, const char *id, const char *table, json_t *link,
		       struct link_ctx *l)
{
	json_int_t index = json_integer_value(json_object_get(link, "chunk_index"));
	json_t *fresh = NULL;
	struct buf what, path;
	long status = 0;
	int rc;

	buf_init(&what, 4096);
	buf_init(&path, 4096);
	if ((rc = buf_appendf(&what, "table '%s': result chunk %lld", table, (long long)index)))
		goto out;
	for (int attempt = 0;; attempt++) {
		l->fed = 0;
		if ((rc = fetch_link(s, link, what.ptr, l, &status)))
			goto out;
		if (status == 200)
			break;
		if (attempt == 0 && l->fed == 0 && (status == 400 || status == 401 || status == 403 || status == 404 ||
						    status == 410 || status >= 500)) {
			json_wipe_decref(fresh);
			fresh = NULL;
			if ((rc = statement_path(&path, id, NULL)) ||
			    (rc = buf_appendf(&path, "/result/chunks/%lld", (long long)index)) ||
			    (rc = api(s, "GET", path.ptr, NULL, what.ptr, &fresh)))
				goto out;
			if (!(link = find_link(fresh, index))) {
				rc = al_error_set(AL_ERR_IO, "%s: Databricks gave no new link for it", what.ptr);
				goto out;
			}
			continue;
		}
		rc = al_error_set(status >= 500 ? AL_ERR_UNAVAILABLE : AL_ERR_IO,
				  "%s: the result link answered HTTP %ld", what.ptr, status);
		goto out;
	}
	if ((rc = source_databricks_rows_finish(l->rows)))
		al_error_wrap(rc, "%s", what.ptr);
out:
	json_wipe_decref(fresh);
	buf_free(&what);
	buf_free(&path);
	return rc;
}

/* Column names and types from manifest.schema.columns; writes the header. */
static int columns_from_manifest(const json_t *manifest, const char *table, struct csv_writer *w, json_t **out)
{
	json_t *cols = json_object_get(json_object_get(manifest, "schema"), "columns"), *c, *res;
	size_t i;
	int rc;

	*out = NULL;
	if (!json_is_array(cols) || !json_array_size(cols))
		return al_error_set(AL_ERR_IO, "table '%s': Databricks gave no columns for the result", table);
	if (!(res = json_array()))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	json_array_foreach(cols, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *type = json_string_value(json_object_get(c, "type_text"));
		json_t *js;
		if (!type)
			type = json_string_value(json_object_get(c, "type_name"));
		if (!name) {
			json_decref(res);
			return al_error_set(AL_ERR_IO, "table '%s': column %zu has no name in the result", table, i + 1);
		}
		if ((rc = csv_writer_text(w, name, strlen(name)))) {
			json_decref(res);
			return al_error_wrap(rc, "table '%s' column %zu name", table, i + 1);
		}
		if (!(js = json_pack("{s:s, s:s}", "name", name, "type", type ? type : "")) ||
		    json_array_append_new(res, js)) {
			json_decref(res);
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		}
	}
	if ((rc = csv_writer_end_record(w))) {
		json_decref(res);
		return rc;
	}
	*out = res;
	return AL_OK;
}

static int dbx_export(struct source *base, const char *table, struct csv_writer *w, source_progress_fn progress,
		      void *ctx, struct source_table_result *res)
{
	struct source_databricks *s = (struct source_databricks *)base;
	struct source_databricks_rows rows;
	struct link_ctx l = { .s = s, .rows = &rows };
	json_t *resp = NULL, *next_resp = NULL, *cols = NULL, *manifest, *result, *total;
	struct buf sql, what, path;
	const char *format;
	char *id = NULL;
	json_int_t expect = 0;
	int rc;

	source_progress_init(&l.prog, progress, ctx, table);
	res->columns = NULL;
	res->rows = 0;
	buf_init(&sql, 64 << 10);
	buf_init(&what, 4096);
	buf_init(&path, 4096);
	source_databricks_rows_init(&rows, w, 0, 0);
	if ((rc = buf_appends(&sql, "SELECT * FROM ")) || (rc = source_databricks_quote_table(table, &sql)) ||
	    (rc = buf_appendf(&what, "table '%s'", table)))
		goto out;
	if ((rc = run_statement(s, sql.ptr, 1, what.ptr, &id, &resp)))
		goto out;
	manifest = json_object_get(resp, "manifest");
	format = json_string_value(json_object_get(manifest, "format"));
	if (format && strcmp(format, "JSON_ARRAY")) {
		rc = al_error_set(AL_ERR_IO, "table '%s': Databricks sent the result as %s, not JSON_ARRAY", table,
				  format);
		goto out;
	}
	if (json_is_true(json_object_get(manifest, "truncated"))) {
		rc = al_error_set(AL_ERR_IO, "table '%s': Databricks truncated the result (the result size limit "
					     "was reached); export a smaller selection", table);
		goto out;
	}
	if ((rc = columns_from_manifest(manifest, table, w, &cols)))
		goto out;
	rows.ncols = json_array_size(cols);
	result = json_object_get(resp, "result");
	while (result) {
		json_t *links = json_object_get(result, "external_links"), *link, *nx = NULL;
		size_t i;
		json_array_foreach(links, i, link) {
			uint64_t before = rows.rows;
			json_t *rc_count = json_object_get(link, "row_count");
			if (json_integer_value(json_object_get(link, "chunk_index")) != expect) {
				rc = al_error_set(AL_ERR_IO, "table '%s': Databricks sent result chunks out of order "
							     "(expected chunk %lld)", table, (long long)expect);
				goto out;
			}
			if ((rc = fetch_chunk(s, id, table, link, &l)))
				goto out;
			if (json_is_integer(rc_count) && (json_int_t)(rows.rows - before) != json_integer_value(rc_count)) {
				rc = al_error_set(AL_ERR_IO, "table '%s': result chunk %lld had %llu rows, Databricks "
							     "announced %lld", table, (long long)expect,
						  (unsigned long long)(rows.rows - before),
						  (long long)json_integer_value(rc_count));
				goto out;
			}
			expect++;
			nx = json_object_get(link, "next_chunk_index");
		}
		if (!nx)
			nx = json_object_get(result, "next_chunk_index");
		if (!json_is_integer(nx))
			break;
		if (json_integer_value(nx) != expect) {
			rc = al_error_set(AL_ERR_IO, "table '%s': Databricks skipped result chunks (next %lld, expected "
						     "%lld)", table, (long long)json_integer_value(nx), (long long)expect);
			goto out;
		}
		json_wipe_decref(next_resp);
		next_resp = NULL;
		if ((rc = statement_path(&path, id, NULL)) ||
		    (rc = buf_appendf(&path, "/result/chunks/%lld", (long long)expect)) ||
		    (rc = api(s, "GET", path.ptr, NULL, what.ptr, &next_resp)))
			goto out;
		result = next_resp;
	}
	total = json_object_get(manifest, "total_row_count");
	if (json_is_integer(total) && (json_int_t)rows.rows != json_integer_value(total)) {
		rc = al_error_set(AL_ERR_IO, "table '%s': %llu rows arrived, Databricks announced %lld", table,
				  (unsigned long long)rows.rows, (long long)json_integer_value(total));
		goto out;
	}
	res->columns = cols;
	cols = NULL;
	res->rows = rows.rows;
out:
	if (rc && id)
		cancel_statement(s, id);
	free(id);
	json_decref(cols);
	json_wipe_decref(resp);
	json_wipe_decref(next_resp);
	source_databricks_rows_free(&rows);
	buf_free(&sql);
	buf_free(&what);
	buf_free(&path);
	return rc;
}

/* ---- check, open ------------------------------------------------------------ */

/* "a, b, c" from SHOW TABLES for a missing table's message; best effort. */
static int list_tables(struct source_databricks *s, const char *table, struct buf *out)
{
	json_t *resp = NULL, *cols, *c, *row, *data;
	struct buf sql;
	char *id = NULL;
	size_t i, col = 1;
	struct source_list list;
	int rc;

	source_list_init(&list, out);
	buf_init(&sql, 64 << 10);
	if ((rc = source_databricks_show_tables(table, &sql)) ||
	    (rc = run_statement(s, sql.ptr, 0, "listing tables", &id, &resp)))
		goto out;
	cols = json_object_get(json_object_get(json_object_get(resp, "manifest"), "schema"), "columns");
	json_array_foreach(cols, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		if (name && !strcmp(name, "tableName"))
			col = i;
	}
	data = json_object_get(json_object_get(resp, "result"), "data_array");
	json_array_foreach(data, i, row) {
		const char *name = json_string_value(json_array_get(row, col));
		if (!name)
			continue;
		if ((rc = source_list_add(&list, name)))
			goto out;
	}
	rc = source_list_end(&list, 0);
out:
	free(id);
	json_wipe_decref(resp);
	buf_free(&sql);
	return rc;
}

static int dbx_check(struct source *base, const char *table)
{
	struct source_databricks *s = (struct source_databricks *)base;
	json_t *resp = NULL;
	struct buf sql, what, names;
	char *id = NULL;
	int rc;

	buf_init(&sql, 64 << 10);
	buf_init(&what, 4096);
	buf_init(&names, 64 << 10);
	if ((rc = buf_appends(&sql, "SELECT * FROM ")) || (rc = source_databricks_quote_table(table, &sql)) ||
	    (rc = buf_appends(&sql, " LIMIT 0")) || (rc = buf_appendf(&what, "table '%s'", table)))
		goto out;
	/* Every Databricks type arrives as a string (or null) in JSON_ARRAY:
	 * there is no column type this source cannot convert. */
	rc = run_statement(s, sql.ptr, 0, what.ptr, &id, &resp);
	if (rc == AL_ERR_NOT_FOUND) {
		const char *dot = strrchr(table, '.');
		char first[AL_ERROR_MSG_MAX];
		snprintf(first, sizeof(first), "%s", al_error_message());
		if (!list_tables(s, table, &names))
			al_error_set(rc, "%s; tables present in %.*s%s: %s", first, dot ? (int)(dot - table) : 0, table,
				     dot ? "" : "the default schema", buf_cstr(&names));
		else
			al_error_set(rc, "%s", first);
	}
out:
	free(id);
	json_wipe_decref(resp);
	buf_free(&sql);
	buf_free(&what);
	buf_free(&names);
	return rc;
}

static void dbx_close(struct source *base)
{
	struct source_databricks *s = (struct source_databricks *)base;
	if (!s)
		return;
	drop_token(s);
	if (s->curl)
		s->cu->easy_cleanup(s->curl);
	source_databricks_url_free(&s->url);
	free(s);
}

static int dbx_open(struct source **out, const struct source_conn *conn)
{
	struct source_databricks *s;
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	s->ops = &source_databricks_ops;
	s->name = conn->name;
	s->user = conn->user;
	s->password = conn->password;
	s->user_key = conn->user_key;
	s->password_key = conn->password_key;
	s->allow_http = source_https_allow_http();
	s->timeout_s = conn->timeout_s > 0 ? conn->timeout_s : SOURCE_HTTPS_DEFAULT_TIMEOUT_S;
	if ((rc = source_databricks_url_parse(conn->url, s->allow_http, &s->url)))
		goto fail;
	if (!conn->password || !*conn->password) {
		rc = conn->password_key
			     ? al_error_set(AL_ERR_FORBIDDEN, "Databricks needs a personal access token or a service "
							      "principal's OAuth secret: credentials.passwordKey '%s' "
							      "is not among the job's credentials", conn->password_key)
			     : al_error_set(AL_ERR_FORBIDDEN, "Databricks needs a personal access token or a service "
							      "principal's OAuth secret: set the connection's "
							      "credentials.passwordKey (and userKey for a service "
							      "principal's application id)");
		goto fail;
	}
	s->oauth = source_databricks_is_uuid(conn->user);
	if (!(s->cu = curl_dl())) {
		rc = AL_ERR_UNAVAILABLE;
		goto fail;
	}
	if (!(s->curl = s->cu->easy_init())) {
		rc = al_error_set(AL_ERR_NOMEM, "cannot create a libcurl handle");
		goto fail;
	}
	/* OAuth credentials can be proven now; a token only by its first use. */
	if ((rc = ensure_token(s)))
		goto fail;
	*out = (struct source *)s;
	return AL_OK;
fail:
	dbx_close((struct source *)s);
	return rc;
}

static int dbx_describe(struct source *base, json_t **out)
{
	struct source_databricks *s = (struct source_databricks *)base;
	*out = json_pack("{s:s, s:s}", "host", s->url.host, "warehouse", s->url.warehouse);
	if (*out && s->url.port && json_object_set_new(*out, "port", json_integer(s->url.port))) {
		json_decref(*out);
		*out = NULL;
	}
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

const struct source_ops source_databricks_ops = {
	.type = "databricks",
	.open = dbx_open,
	.check = dbx_check,
	.export_table = dbx_export,
	.describe = dbx_describe,
	.close = dbx_close,
};
