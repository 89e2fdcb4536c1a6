#include "runner/source_https.h"
#include "common/error.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define META_MAX_BYTES ((size_t)64 << 10)
#define URL_MAX_BYTES ((size_t)64 << 10)
#define HEADER_VALUE_MAX ((size_t)8 << 10)

struct source_https {
	const struct source_ops *ops; /* first: a struct source */
	const struct curl_dl *cu;
	struct source_https_url base;
	char *display;                /* https://host[:port]/path/, for messages */
	const char *name;             /* borrowed from source_conn, as are the rest */
	const char *user, *password;
	const char *user_key, *password_key;
	int allow_http;
	int timeout_s;
};

/* ---- urls ------------------------------------------------------------- */

void source_https_url_free(struct source_https_url *u)
{
	if (!u)
		return;
	free(u->scheme);
	free(u->host);
	free(u->path);
	free(u->query);
	memset(u, 0, sizeof(*u));
}

int source_https_allow_http(void)
{
	const char *v = getenv("AIRLOCK_ALLOW_HTTP");
	return v && !strcmp(v, "1");
}

int source_https_url_parse(const char *url, int allow_http, struct source_https_url *out)
{
	const char *p, *auth, *auth_end, *path_end, *h_end;
	size_t i;
	int port = 0;

	memset(out, 0, sizeof(*out));
	if (!url || !*url)
		return al_error_set(AL_ERR_INVALID, "the connection has no url; give one such as "
						    "https://files.example.org/exports/");
	for (p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return al_error_set(AL_ERR_INVALID, "the connection url contains a space or control "
							    "character; percent-encode it");
	if (!strncasecmp(url, "https://", 8)) {
		auth = url + 8;
	} else if (!strncasecmp(url, "http://", 7)) {
		if (!allow_http)
			return al_error_set(AL_ERR_INVALID, "the connection url uses http://, which is not "
							    "encrypted; use https:// (only tests may set "
							    "AIRLOCK_ALLOW_HTTP=1)");
		auth = url + 7;
	} else {
		return al_error_set(AL_ERR_INVALID, "the connection url must start with https://");
	}
	auth_end = auth + strcspn(auth, "/?#");
	for (p = auth; p < auth_end; p++)
		if (*p == '@')
			return al_error_set(AL_ERR_INVALID, "the connection url must not contain a user name or "
							    "password: put them in the Secret named by "
							    "credentials.userKey / passwordKey");
	if (*auth == '[') {
		const char *close = memchr(auth, ']', (size_t)(auth_end - auth));
		if (!close || close == auth + 1)
			return al_error_set(AL_ERR_INVALID, "the connection url has a bad IPv6 host");
		h_end = close + 1;
	} else {
		h_end = memchr(auth, ':', (size_t)(auth_end - auth));
		if (!h_end)
			h_end = auth_end;
	}
	if (h_end == auth)
		return al_error_set(AL_ERR_INVALID, "the connection url has no host name");
	if (h_end < auth_end) {
		if (*h_end != ':' || h_end + 1 == auth_end)
			return al_error_set(AL_ERR_INVALID, "the connection url has a bad host or port");
		for (p = h_end + 1; p < auth_end; p++) {
			if (!isdigit((unsigned char)*p) || port > 65535)
				return al_error_set(AL_ERR_INVALID, "the connection url has a bad port");
			port = port * 10 + (*p - '0');
		}
		if (port < 1 || port > 65535)
			return al_error_set(AL_ERR_INVALID, "the connection url has a bad port");
	}
	path_end = auth_end + strcspn(auth_end, "?#");
	out->scheme = util_strndup(url, (size_t)(auth - url - 3));
	out->host = util_strndup(auth, (size_t)(h_end - auth));
	out->path = path_end > auth_end ? util_strndup(auth_end, (size_t)(path_end - auth_end)) : util_strdup("/");
	out->port = port;
	if (*path_end == '?' && path_end[1] && path_end[1] != '#')
		out->query = util_strndup(path_end + 1, strcspn(path_end + 1, "#"));
	if (!out->scheme || !out->host || !out->path || (*path_end == '?' && path_end[1] && path_end[1] != '#' &&
							 !out->query)) {
		source_https_url_free(out);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	for (i = 0; out->scheme[i]; i++)
		out->scheme[i] = (char)tolower((unsigned char)out->scheme[i]);
	return AL_OK;
}

static int append_origin(const struct source_https_url *u, struct buf *out)
{
	int rc = buf_appendf(out, "%s://%s", u->scheme, u->host);
	if (!rc && u->port)
		rc = buf_appendf(out, ":%d", u->port);
	return rc;
}

int source_https_url_display(const struct source_https_url *u, struct buf *out)
{
	int rc = append_origin(u, out);
	return rc ? rc : buf_appends(out, u->path);
}

static int unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

int source_https_url_object(const struct source_https_url *base, const char *object, struct buf *url,
			    struct buf *display)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *seg, *end;
	size_t dirlen;
	int rc;

	if (!object || !*object)
		return al_error_set(AL_ERR_INVALID, "the object name is empty");
	if (*object == '/')
		return al_error_set(AL_ERR_INVALID, "object '%s': must be a path relative to the connection url "
						    "(no leading '/')", object);
	for (seg = object;; seg = end + 1) {
		end = seg + strcspn(seg, "/");
		if (end == seg || (end - seg == 1 && seg[0] == '.') ||
		    (end - seg == 2 && seg[0] == '.' && seg[1] == '.'))
			return al_error_set(AL_ERR_INVALID, "object '%s': empty, '.' or '..' path segments are "
							    "not allowed", object);
		if (!*end)
			break;
	}
	/* The base path names a directory, with or without its final '/'. */
	dirlen = strlen(base->path);
	if ((rc = append_origin(base, url)) || (rc = buf_append(url, base->path, dirlen)))
		return rc;
	if (base->path[dirlen - 1] != '/' && (rc = buf_appendc(url, '/')))
		return rc;
	for (const unsigned char *p = (const unsigned char *)object; *p; p++) {
		if (unreserved(*p) || *p == '/')
			rc = buf_appendc(url, (char)*p);
		else
			rc = buf_appendf(url, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
		if (rc)
			return rc;
	}
	if (display && (rc = buf_append(display, url->ptr, url->len)))
		return rc;
	if (base->query && ((rc = buf_appendc(url, '?')) || (rc = buf_appends(url, base->query))))
		return rc;
	return AL_OK;
}

/* ---- digests and ranges ----------------------------------------------- */

int source_https_base64_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
	uint32_t acc = 0;
	size_t len = 0, bits = 0, pad = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int v;
		if (c == '=') {
			pad++;
			continue;
		}
		if (pad)
			return AL_ERR_INVALID; /* data after padding */
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+')
			v = 62;
		else if (c == '/')
			v = 63;
		else
			return AL_ERR_INVALID;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (len >= cap)
				return AL_ERR_INVALID;
			out[len++] = (unsigned char)(acc >> bits);
		}
	}
	/* Leftover bits must be zero and padding must make up a quantum. */
	if (pad > 2 || bits >= 6 || (acc & ((1u << bits) - 1)) != 0)
		return AL_ERR_INVALID;
	if (pad && (len % 3 == 0 || 3 - len % 3 != pad))
		return AL_ERR_INVALID;
	return len > (size_t)0x7fffffff ? AL_ERR_INVALID : (int)len;
}

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

int source_https_digest_parse(const char *name, const char *value, unsigned char out[32])
{
	int sf; /* RFC 9530 structured field, else RFC 3230 */
	const char *p = value, *end;

	if (!strcasecmp(name, "Repr-Digest") || !strcasecmp(name, "Content-Digest"))
		sf = 1;
	else if (!strcasecmp(name, "Digest"))
		sf = 0;
	else
		return 0;
	end = value + strlen(value);
	while (p < end) {
		const char *item_end = memchr(p, ',', (size_t)(end - p));
		const char *key, *eq, *v, *v_end;
		if (!item_end)
			item_end = end;
		key = skip_ws(p, item_end);
		eq = memchr(key, '=', (size_t)(item_end - key));
		p = item_end + 1;
		if (!eq || eq - key != 7 || strncasecmp(key, "sha-256", 7))
			continue;
		v = eq + 1;
		v_end = item_end;
		while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
			v_end--;
		if (sf) {
			const char *semi = memchr(v, ';', (size_t)(v_end - v)); /* parameters */
			if (semi)
				v_end = semi;
			if (v_end - v < 2 || v[0] != ':' || v_end[-1] != ':')
				return AL_ERR_INVALID;
			v++;
			v_end--;
		}
		return source_https_base64_decode(v, (size_t)(v_end - v), out, 32) == 32 ? 1 : AL_ERR_INVALID;
	}
	return 0;
}

static int parse_u64(const char **pp, const char *end, uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;
	if (p >= end || !isdigit((unsigned char)*p))
		return AL_ERR_INVALID;
	for (; p < end && isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return AL_ERR_INVALID;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*pp = p;
	*out = v;
	return AL_OK;
}

int source_https_content_range(const char *value, uint64_t *first, uint64_t *last, uint64_t *total)
{
	const char *end = value + strlen(value), *p;

	while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	p = skip_ws(value, end);
	if (end - p < 6 || strncasecmp(p, "bytes ", 6))
		return AL_ERR_INVALID;
	p = skip_ws(p + 6, end);
	if (parse_u64(&p, end, first) || p >= end || *p++ != '-' || parse_u64(&p, end, last) || p >= end ||
	    *p++ != '/' || *last < *first)
		return AL_ERR_INVALID;
	if (end - p == 1 && *p == '*') {
		*total = 0;
		return AL_OK;
	}
	if (parse_u64(&p, end, total) || p != end || *total <= *last)
		return AL_ERR_INVALID;
	return AL_OK;
}

enum source_https_body source_https_body_plan(long status, uint64_t offset, const char *content_range,
					      uint64_t *total)
{
	uint64_t first, last, t;

	if (status == 200)
		return SOURCE_HTTPS_BODY_FRESH;
	if (status == 416)
		return SOURCE_HTTPS_BODY_RESTART;
	if (status != 206)
		return SOURCE_HTTPS_BODY_REFUSE;
	/* We only ever ask for "bytes=N-": anything else cannot be appended. */
	if (!offset || !content_range || source_https_content_range(content_range, &first, &last, &t) ||
	    first != offset || (t && last + 1 != t))
		return SOURCE_HTTPS_BODY_RESTART;
	if (t)
		*total = t;
	return SOURCE_HTTPS_BODY_APPEND;
}

/* ---- the sidecar ------------------------------------------------------ */

void source_https_meta_free(struct source_https_meta *m)
{
	if (!m)
		return;
	free(m->etag);
	free(m->last_modified);
	memset(m, 0, sizeof(*m));
}

int source_https_meta_format(const struct source_https_meta *m, char **json)
{
	json_t *o = json_pack("{s:i, s:s, s:s?, s:s?, s:I, s:b}", "version", 1, "url", m->url_sha256, "etag",
			      m->etag, "lastModified", m->last_modified, "size", (json_int_t)m->size, "ranges",
			      m->ranges);
	*json = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
	json_decref(o);
	return *json ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

int source_https_meta_parse(const char *text, size_t len, struct source_https_meta *out)
{
	json_t *o = json_loadb(text, len, 0, NULL);
	const char *url = json_string_value(json_object_get(o, "url"));
	const char *etag = json_string_value(json_object_get(o, "etag"));
	const char *lm = json_string_value(json_object_get(o, "lastModified"));
	json_t *size = json_object_get(o, "size");
	int rc = AL_OK;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(o) || json_integer_value(json_object_get(o, "version")) != 1 || !url ||
	    strlen(url) != 64 || !json_is_integer(size) || json_integer_value(size) < 0) {
		rc = AL_ERR_INVALID; /* a stale or foreign sidecar: start again, no message needed */
		goto out;
	}
	memcpy(out->url_sha256, url, 65);
	out->size = (uint64_t)json_integer_value(size);
	out->ranges = json_is_true(json_object_get(o, "ranges"));
	if ((etag && !(out->etag = util_strdup(etag))) || (lm && !(out->last_modified = util_strdup(lm)))) {
		source_https_meta_free(out);
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	}
out:
	json_decref(o);
	return rc;
}

const char *source_https_resume_validator(const struct source_https_meta *m, const char *url_sha256,
					  uint64_t part_size)
{
	if (!m || !m->ranges || !part_size || strcmp(m->url_sha256, url_sha256))
		return NULL;
	if (m->size && part_size >= m->size)
		return NULL; /* complete or too long: never verified, so fetch it again */
	if (m->etag && strncmp(m->etag, "W/", 2) && m->etag[0] == '"')
		return m->etag;
	return m->last_modified;
}

/* ---- libcurl ------------------------------------------------------------ */

int source_https_curl_setup(const struct curl_dl *cu, CURL *curl, char *errbuf, int allow_http, int timeout_s,
			    int follow_redirects)
{
	const char *ca = getenv("AIRLOCK_CA_FILE");
	const char *protocols = allow_http ? "http,https" : "https";
	long t = timeout_s > 0 ? timeout_s : SOURCE_HTTPS_DEFAULT_TIMEOUT_S;
	CURLcode cc = CURLE_OK;

#define SET(opt, val)                                      \
	do {                                               \
		if (cc == CURLE_OK)                        \
			cc = cu->easy_setopt(curl, opt, val); \
	} while (0)
	errbuf[0] = '\0';
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_PROTOCOLS_STR, protocols);
	SET(CURLOPT_REDIR_PROTOCOLS_STR, protocols);
	SET(CURLOPT_FOLLOWLOCATION, follow_redirects ? 1L : 0L);
	SET(CURLOPT_MAXREDIRS, SOURCE_HTTPS_MAX_REDIRECTS);
	/* libcurl's default, spelled out: credentials stay with the first host. */
	SET(CURLOPT_UNRESTRICTED_AUTH, 0L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	/* An extra bundle: Debian's libcurl keeps its CA path (/etc/ssl/certs)
	 * when CAINFO is replaced, so public CAs stay trusted too. */
	if (ca && *ca)
		SET(CURLOPT_CAINFO, ca);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT, t);
	/* A stalled transfer (under 1 byte/s for timeout_s) fails rather than hangs. */
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, t);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_USERAGENT, "airlock-native-runner/" AIRLOCK_VERSION);
#undef SET
	if (cc != CURLE_OK)
		return al_error_set(AL_ERR_INTERNAL, "libcurl refused an option (%s): libcurl 7.85 or newer is "
						     "needed", cu->easy_strerror(cc));
	return AL_OK;
}

int source_https_curl_error(const struct curl_dl *cu, CURLcode cc, const char *errbuf, const char *what)
{
	const char *why = errbuf && *errbuf ? errbuf : cu->easy_strerror(cc);
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
		return al_error_set(AL_ERR_UNAVAILABLE, "%s: cannot reach the server: %s (check the host name "
							"in the url and that the server is up)", what, why);
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CONNECT_ERROR:
		return al_error_set(AL_ERR_UNAVAILABLE, "%s: TLS failed: %s (a private CA's certificate can be "
							"given in AIRLOCK_CA_FILE)", what, why);
	case CURLE_TOO_MANY_REDIRECTS:
		return al_error_set(AL_ERR_IO, "%s: more than %ld redirects", what, SOURCE_HTTPS_MAX_REDIRECTS);
	case CURLE_UNSUPPORTED_PROTOCOL:
		return al_error_set(AL_ERR_IO, "%s: the server redirected to a url that is not https: %s", what,
				    why);
	default:
		return al_error_set(AL_ERR_IO, "%s: %s", what, why);
	}
}

/* ---- one transfer ------------------------------------------------------- */

struct xfer {
	struct source_https *s;
	CURL *curl;
	const char *object;
	const char *display;      /* the object's url without the query */
	/* headers of the latest response (a redirect's are dropped) */
	char *etag, *last_modified, *content_range, *accept_ranges;
	uint64_t content_length;
	int have_length;
	unsigned char repr[32], digest[32], content[32];
	int have_repr, have_digest, have_content;
	/* body */
	int fd;
	const char *part_path;
	const char *meta_path;
	const char *url_sha256;
	uint64_t offset;          /* bytes kept and asked to be skipped */
	const char *kept_etag;    /* the ETag the kept bytes came with, or NULL */
	int decided;
	enum source_https_body mode;
	long status;
	uint64_t total;           /* announced whole size, 0 unknown */
	uint64_t size;            /* bytes now in the file */
	EVP_MD_CTX *sha;
	int rc;                   /* an error from a callback (message set) */
	int probe;                /* check(): bodies are read and dropped */
	struct source_progress prog;
};

static void xfer_reset_headers(struct xfer *x)
{
	free(x->etag);
	free(x->last_modified);
	free(x->content_range);
	free(x->accept_ranges);
	x->etag = x->last_modified = x->content_range = x->accept_ranges = NULL;
	x->content_length = 0;
	x->have_length = x->have_repr = x->have_digest = x->have_content = 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb, nlen;
	const char *colon, *v, *end = data + n;
	char name[32], *value;

	if (n >= 5 && !memcmp(data, "HTTP/", 5)) {
		xfer_reset_headers(x); /* a new response: a redirect's headers do not count */
		return n;
	}
	colon = memchr(data, ':', n);
	if (!colon || (size_t)(colon - data) >= sizeof(name))
		return n;
	nlen = (size_t)(colon - data);
	memcpy(name, data, nlen);
	name[nlen] = '\0';
	while (end > colon + 1 && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	v = skip_ws(colon + 1, end);
	if ((size_t)(end - v) > HEADER_VALUE_MAX)
		return n; /* no header we read is that long */
	if (!(value = util_strndup(v, (size_t)(end - v)))) {
		x->rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		return 0;
	}
	if (!strcasecmp(name, "ETag") && !x->etag) {
		x->etag = value;
	} else if (!strcasecmp(name, "Last-Modified") && !x->last_modified) {
		x->last_modified = value;
	} else if (!strcasecmp(name, "Content-Range") && !x->content_range) {
		x->content_range = value;
	} else if (!strcasecmp(name, "Accept-Ranges") && !x->accept_ranges) {
		x->accept_ranges = value;
	} else {
		if (!strcasecmp(name, "Content-Length")) {
			const char *p = value;
			x->have_length = !parse_u64(&p, value + strlen(value), &x->content_length) && !*p;
		} else if (!strcasecmp(name, "Repr-Digest") && !x->have_repr) {
			x->have_repr = source_https_digest_parse(name, value, x->repr) == 1;
		} else if (!strcasecmp(name, "Digest") && !x->have_digest) {
			x->have_digest = source_https_digest_parse(name, value, x->digest) == 1;
		} else if (!strcasecmp(name, "Content-Digest") && !x->have_content) {
			x->have_content = source_https_digest_parse(name, value, x->content) == 1;
		}
		free(value);
	}
	return n;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Remembers what a fresh download came from, so a later attempt can
 * continue it; without a validator there is nothing to continue. */
static void write_meta(struct xfer *x)
{
	struct source_https_meta m = { .etag = x->etag, .last_modified = x->last_modified };
	char *json = NULL;

	memcpy(m.url_sha256, x->url_sha256, 65);
	m.size = x->have_length ? x->content_length : 0;
	m.ranges = x->accept_ranges && strstr(x->accept_ranges, "bytes") != NULL;
	if (!m.ranges || (!x->etag && !x->last_modified) || source_https_meta_format(&m, &json) ||
	    util_write_file_atomic(x->meta_path, json, strlen(json), 0644))
		unlink(x->meta_path); /* best effort: the next attempt then starts again */
	free(json);
	al_error_clear();
}

/* Hashes the kept prefix so the digest covers the whole file. */
static int hash_prefix(struct xfer *x)
{
	char *chunk = malloc(1 << 16);
	uint64_t done = 0;

	if (!chunk)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	while (done < x->offset) {
		size_t want = x->offset - done < (1 << 16) ? (size_t)(x->offset - done) : (size_t)1 << 16;
		ssize_t r = pread(x->fd, chunk, want, (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(chunk);
			return al_error_set(AL_ERR_IO, "cannot read %s: %s", x->part_path,
					    r < 0 ? strerror(errno) : "file shorter than expected");
		}
		EVP_DigestUpdate(x->sha, chunk, (size_t)r);
		done += (uint64_t)r;
	}
	free(chunk);
	return AL_OK;
}

/* Called once the final response's headers are in: how to take its body. */
static int decide(struct xfer *x, long status)
{
	x->decided = 1;
	x->status = status;
	x->mode = source_https_body_plan(status, x->offset, x->content_range, &x->total);
	/* If-Range should have turned a changed file into a 200; a server that
	 * ignores it must not get two versions spliced together. */
	if (x->mode == SOURCE_HTTPS_BODY_APPEND && x->etag && x->kept_etag && strcmp(x->etag, x->kept_etag))
		x->mode = SOURCE_HTTPS_BODY_RESTART;
	if (x->mode == SOURCE_HTTPS_BODY_FRESH) {
		if (ftruncate(x->fd, 0) < 0 || lseek(x->fd, 0, SEEK_SET) < 0)
			return al_error_set(AL_ERR_IO, "cannot truncate %s: %s", x->part_path, strerror(errno));
		x->offset = 0;
		x->size = 0;
		x->total = x->have_length ? x->content_length : 0;
		if (!EVP_DigestInit_ex(x->sha, EVP_sha256(), NULL))
			return al_error_set(AL_ERR_INTERNAL, "SHA-256 unavailable");
		write_meta(x);
	} else if (x->mode == SOURCE_HTTPS_BODY_APPEND) {
		int rc;
		if (!EVP_DigestInit_ex(x->sha, EVP_sha256(), NULL))
			return al_error_set(AL_ERR_INTERNAL, "SHA-256 unavailable");
		if ((rc = hash_prefix(x)))
			return rc;
		if (ftruncate(x->fd, (off_t)x->offset) < 0 || lseek(x->fd, (off_t)x->offset, SEEK_SET) < 0)
			return al_error_set(AL_ERR_IO, "cannot seek in %s: %s", x->part_path, strerror(errno));
		x->size = x->offset;
	}
	return AL_OK;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;

	if (x->probe)
		return n;
	if (!x->decided) {
		long status = 0;
		x->s->cu->easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
		if ((x->rc = decide(x, status)))
			return 0;
	}
	if (x->mode != SOURCE_HTTPS_BODY_FRESH && x->mode != SOURCE_HTTPS_BODY_APPEND)
		return n; /* an error page or a response we will not use */
	if (write_all(x->fd, data, n) < 0) {
		x->rc = al_error_set(AL_ERR_IO, "cannot write %s: %s", x->part_path, strerror(errno));
		return 0;
	}
	EVP_DigestUpdate(x->sha, data, n);
	x->size += n;
	source_progress_tick(&x->prog, x->size);
	return n;
}

static int set_auth(struct source_https *s, CURL *curl)
{
	CURLcode cc = CURLE_OK;

	if (s->user && s->password) {
		cc = s->cu->easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		if (cc == CURLE_OK)
			cc = s->cu->easy_setopt(curl, CURLOPT_USERNAME, s->user);
		if (cc == CURLE_OK)
			cc = s->cu->easy_setopt(curl, CURLOPT_PASSWORD, s->password);
	} else if (s->password) {
		cc = s->cu->easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		if (cc == CURLE_OK)
			cc = s->cu->easy_setopt(curl, CURLOPT_XOAUTH2_BEARER, s->password);
	}
	return cc == CURLE_OK ? AL_OK : al_error_set(AL_ERR_INTERNAL, "libcurl refused the credentials options");
}

static int status_error(struct source_https *s, const char *object, const char *display, long status)
{
	if (status == 404 || status == 410)
		return al_error_set(AL_ERR_NOT_FOUND, "file '%s' not found at %s (HTTP %ld): check the object "
						      "name and the connection url", object, display, status);
	if (status == 401 || status == 403) {
		if (s->user && s->password)
			return al_error_set(AL_ERR_FORBIDDEN, "file '%s' at %s: access denied (HTTP %ld): check "
							      "the user name and password in the job's credentials "
							      "(credentials.userKey '%s', passwordKey '%s')",
					    object, display, status, s->user_key, s->password_key);
		if (s->password)
			return al_error_set(AL_ERR_FORBIDDEN, "file '%s' at %s: access denied (HTTP %ld): check "
							      "the bearer token in the job's credentials "
							      "(credentials.passwordKey '%s')",
					    object, display, status, s->password_key);
		return al_error_set(AL_ERR_FORBIDDEN, "file '%s' at %s: access denied (HTTP %ld): the server "
						      "wants credentials; name them with the connection's "
						      "credentials.userKey / passwordKey", object, display, status);
	}
	if (status == 429 || status == 502 || status == 503 || status == 504)
		return al_error_set(AL_ERR_UNAVAILABLE, "file '%s' at %s: the server answered HTTP %ld; try "
							"again later", object, display, status);
	return al_error_set(AL_ERR_IO, "file '%s' at %s: the server answered HTTP %ld", object, display, status);
}

enum xfer_kind {
	XFER_GET,   /* the file, into x->fd */
	XFER_HEAD,  /* check(): headers only */
	XFER_PROBE, /* check() when HEAD is refused: the first byte, dropped */
};

/* One request; x says how its body went. A header list's values are wiped
 * before they are freed (If-Range is not secret, but the habit is cheap). */
static int transfer(struct xfer *x, const char *url, const char *if_range, enum xfer_kind kind)
{
	struct source_https *s = x->s;
	const struct curl_dl *cu = s->cu;
	struct curl_slist *headers = NULL, *h;
	char errbuf[CURL_ERROR_SIZE];
	struct buf line;
	CURLcode cc;
	long status = 0;
	int rc;

	buf_init(&line, HEADER_VALUE_MAX + 64);
	x->decided = 0;
	x->probe = kind != XFER_GET;
	x->rc = AL_OK;
	x->mode = SOURCE_HTTPS_BODY_REFUSE;
	xfer_reset_headers(x);
	if (!(x->curl = cu->easy_init())) {
		rc = al_error_set(AL_ERR_NOMEM, "cannot create a libcurl handle");
		goto out;
	}
	if ((rc = source_https_curl_setup(cu, x->curl, errbuf, s->allow_http, s->timeout_s, 1)) ||
	    (rc = set_auth(s, x->curl)))
		goto out;
	if (if_range || kind == XFER_PROBE) {
		if ((rc = buf_appendf(&line, "Range: bytes=%llu-%s", (unsigned long long)x->offset,
				      kind == XFER_PROBE ? "0" : "")))
			goto out;
		if (!(h = cu->slist_append(headers, line.ptr))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		headers = h;
	}
	if (if_range) {
		buf_reset(&line);
		if ((rc = buf_appendf(&line, "If-Range: %s", if_range)))
			goto out;
		if (!(h = cu->slist_append(headers, line.ptr))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		headers = h;
	}
	cu->easy_setopt(x->curl, CURLOPT_URL, url);
	cu->easy_setopt(x->curl, CURLOPT_HTTPHEADER, headers);
	cu->easy_setopt(x->curl, CURLOPT_HEADERFUNCTION, on_header);
	cu->easy_setopt(x->curl, CURLOPT_HEADERDATA, x);
	cu->easy_setopt(x->curl, CURLOPT_WRITEFUNCTION, on_body);
	cu->easy_setopt(x->curl, CURLOPT_WRITEDATA, x);
	if (kind == XFER_HEAD)
		cu->easy_setopt(x->curl, CURLOPT_NOBODY, 1L);
	cc = cu->easy_perform(x->curl);
	if (x->rc) {
		rc = x->rc;
		goto out;
	}
	if (cc != CURLE_OK) {
		struct buf what;
		buf_init(&what, 4096);
		if (!x->probe && x->decided && (x->mode == SOURCE_HTTPS_BODY_FRESH || x->mode == SOURCE_HTTPS_BODY_APPEND)) {
			if (x->total)
				rc = al_error_set(AL_ERR_UNAVAILABLE, "file '%s' at %s: the download broke off after "
								      "%llu of %llu bytes (%s); the partial file is "
								      "kept: run the job again to continue it",
						  x->object, x->display, (unsigned long long)x->size,
						  (unsigned long long)x->total, *errbuf ? errbuf : cu->easy_strerror(cc));
			else
				rc = al_error_set(AL_ERR_UNAVAILABLE, "file '%s' at %s: the download broke off after "
								      "%llu bytes (%s); run the job again",
						  x->object, x->display, (unsigned long long)x->size,
						  *errbuf ? errbuf : cu->easy_strerror(cc));
		} else {
			rc = buf_appendf(&what, "file '%s' at %s", x->object, x->display);
			rc = source_https_curl_error(cu, cc, errbuf, rc ? x->object : what.ptr);
		}
		buf_free(&what);
		goto out;
	}
	cu->easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
	/* No body at all (an empty file, HEAD): decide now. */
	if (!x->decided && kind == XFER_GET && (rc = decide(x, status)))
		goto out;
	x->status = status;
	rc = AL_OK;
out:
	for (h = headers; h; h = h->next)
		sodium_memzero(h->data, strlen(h->data));
	if (headers)
		cu->slist_free_all(headers);
	if (x->curl) {
		cu->easy_cleanup(x->curl);
		x->curl = NULL;
	}
	buf_free(&line);
	return rc;
}

static int https_check(struct source *base, const char *object)
{
	struct source_https *s = (struct source_https *)base;
	struct xfer x = { .s = s, .object = object, .fd = -1 };
	struct buf url, display;
	int rc;

	buf_init(&url, URL_MAX_BYTES);
	buf_init(&display, URL_MAX_BYTES);
	if ((rc = source_https_url_object(&s->base, object, &url, &display))) {
		al_error_wrap(rc, "spec.objects");
		goto out;
	}
	x.display = display.ptr;
	if ((rc = transfer(&x, url.ptr, NULL, XFER_HEAD)))
		goto out;
	if (x.status == 405 || x.status == 501 || x.status == 403) {
		/* HEAD refused (or a pre-signed url signed for GET only): ask
		 * for the first byte instead. */
		if ((rc = transfer(&x, url.ptr, NULL, XFER_PROBE)))
			goto out;
	}
	if (x.status < 200 || x.status > 299)
		rc = status_error(s, object, x.display, x.status);
out:
	xfer_reset_headers(&x);
	buf_free(&url);
	buf_free(&display);
	return rc;
}


static void hex32(const unsigned char md[32], char out[65])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

static int https_fetch(struct source *base, const char *object, const char *part_path, source_progress_fn progress,
		       void *ctx, struct source_file_result *out)
{
	struct source_https *s = (struct source_https *)base;
	struct xfer x = { .s = s, .object = object, .fd = -1, .part_path = part_path };
	struct source_https_meta meta = { 0 };
	struct buf url, display, meta_path;
	const char *validator = NULL, *digest_from = NULL;
	const unsigned char *want = NULL;
	unsigned char md[32];
	unsigned int mdlen = 0;
	char url_sha[65], got[65], expected[65];
	struct stat st;
	int rc, bad = 0;

	source_progress_init(&x.prog, progress, ctx, object);
	memset(out, 0, sizeof(*out));
	buf_init(&url, URL_MAX_BYTES);
	buf_init(&display, URL_MAX_BYTES);
	buf_init(&meta_path, 8192);
	if ((rc = source_https_url_object(&s->base, object, &url, &display)) ||
	    (rc = buf_appendf(&meta_path, "%s.meta", part_path)))
		goto out;
	x.display = display.ptr;
	x.meta_path = meta_path.ptr;
	util_sha256_hex(url.ptr, url.len, url_sha);
	x.url_sha256 = url_sha;
	if (!(x.sha = EVP_MD_CTX_new())) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	x.fd = open(part_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (x.fd < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot open %s: %s", part_path, strerror(errno));
		goto out;
	}
	if (fstat(x.fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = al_error_set(AL_ERR_IO, "%s is not a regular file", part_path);
		goto out;
	}
	if (st.st_size > 0) {
		char *text = NULL;
		size_t len = 0;
		if (!util_read_file(meta_path.ptr, META_MAX_BYTES, &text, &len) &&
		    !source_https_meta_parse(text, len, &meta))
			validator = source_https_resume_validator(&meta, url_sha, (uint64_t)st.st_size);
		free(text);
		al_error_clear(); /* no sidecar, or a stale one: start again */
	}
	if (validator) {
		x.offset = (uint64_t)st.st_size;
		x.kept_etag = meta.etag;
	}
	if ((rc = transfer(&x, url.ptr, validator, XFER_GET)))
		goto out;
	if (x.mode == SOURCE_HTTPS_BODY_RESTART && validator) {
		/* 416, or a range that does not fit: once more, whole. */
		x.offset = 0;
		x.kept_etag = NULL;
		if ((rc = transfer(&x, url.ptr, NULL, XFER_GET)))
			goto out;
	}
	if (x.mode == SOURCE_HTTPS_BODY_REFUSE) {
		rc = status_error(s, object, x.display, x.status);
		goto out;
	}
	if (x.mode == SOURCE_HTTPS_BODY_RESTART) {
		rc = al_error_set(AL_ERR_IO, "file '%s' at %s: the server answered HTTP %ld to a request for the "
					     "whole file", object, x.display, x.status);
		goto out;
	}
	if (x.total && x.size != x.total) {
		bad = 1;
		rc = al_error_set(AL_ERR_IO, "file '%s' at %s: size mismatch: the server announced %llu bytes, "
					     "%llu arrived; the partial file was deleted, run the job again",
				  object, x.display, (unsigned long long)x.total, (unsigned long long)x.size);
		goto out;
	}
	EVP_DigestFinal_ex(x.sha, md, &mdlen);
	hex32(md, got);
	if (x.have_repr) {
		want = x.repr;
		digest_from = "Repr-Digest";
	} else if (x.have_digest) {
		want = x.digest;
		digest_from = "Digest";
	} else if (x.have_content && x.status == 200) {
		/* Content-Digest covers this message's bytes: the whole file only
		 * in a 200. */
		want = x.content;
		digest_from = "Content-Digest";
	}
	if (want && memcmp(want, md, 32)) {
		bad = 1;
		hex32(want, expected);
		rc = al_error_set(AL_ERR_IO, "file '%s' at %s: checksum mismatch: the server announced sha-256 %s "
					     "(%s), the downloaded file has %s; the partial file was deleted, run "
					     "the job again", object, x.display, expected, digest_from, got);
		goto out;
	}
	unlink(meta_path.ptr);
	out->size = x.size;
	memcpy(out->sha256, got, 65);
	out->verified_size = x.total != 0;
	out->verified_digest = want != NULL;
	out->resumed = x.mode == SOURCE_HTTPS_BODY_APPEND;
	if (progress)
		progress(ctx, object, x.size);
out:
	if (x.fd >= 0) {
		if (rc && !bad)
			fsync(x.fd); /* kept for the next attempt: make what arrived durable */
		close(x.fd);
	}
	if (bad) {
		unlink(part_path);
		unlink(meta_path.ptr);
	}
	xfer_reset_headers(&x);
	EVP_MD_CTX_free(x.sha);
	source_https_meta_free(&meta);
	buf_free(&url);
	buf_free(&display);
	buf_free(&meta_path);
	return rc;
}

static void https_close(struct source *base)
{
	struct source_https *s = (struct source_https *)base;
	if (!s)
		return;
	source_https_url_free(&s->base);
	free(s->display);
	free(s);
}

static int https_open(struct source **out, const struct source_conn *conn)
{
	struct source_https *s;
	struct buf display;
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	s->ops = &source_https_ops;
	s->name = conn->name;
	s->user = conn->user;
	s->password = conn->password;
	s->user_key = conn->user_key ? conn->user_key : "(none)";
	s->password_key = conn->password_key ? conn->password_key : "(none)";
	s->allow_http = source_https_allow_http();
	s->timeout_s = conn->timeout_s > 0 ? conn->timeout_s : SOURCE_HTTPS_DEFAULT_TIMEOUT_S;
	if ((rc = source_https_url_parse(conn->url, s->allow_http, &s->base)))
		goto fail;
	buf_init(&display, URL_MAX_BYTES);
	rc = source_https_url_display(&s->base, &display);
	s->display = rc ? NULL : buf_detach(&display);
	buf_free(&display);
	if (rc)
		goto fail;
	if (conn->user && !conn->password) {
		rc = al_error_set(AL_ERR_FORBIDDEN, "a user name is given (credentials.userKey '%s') but no "
						    "password: credentials.passwordKey %s%s%s is not among the job's "
						    "credentials", s->user_key, conn->password_key ? "'" : "",
				  conn->password_key ? conn->password_key : "is not set",
				  conn->password_key ? "'" : "");
		goto fail;
	}
	if (!(s->cu = curl_dl())) {
		rc = AL_ERR_UNAVAILABLE;
		goto fail;
	}
	*out = (struct source *)s;
	return AL_OK;
fail:
	https_close((struct source *)s);
	return rc;
}

static int https_describe(struct source *base, json_t **out)
{
	struct source_https *s = (struct source_https *)base;
	/* Host and base path only: the query may hold a pre-signed token. */
	*out = json_pack("{s:s, s:s}", "host", s->base.host, "path", s->base.path);
	if (*out && s->base.port && json_object_set_new(*out, "port", json_integer(s->base.port))) {
		json_decref(*out);
		*out = NULL;
	}
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

const struct source_ops source_https_ops = {
	.type = "https",
	.open = https_open,
	.check = https_check,
	.fetch_file = https_fetch,
	.describe = https_describe,
	.close = https_close,
};
