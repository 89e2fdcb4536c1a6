/*
 * client.c - the Kubernetes client handle and one-shot requests.
 *
 * A client keeps a copy of its configuration, the current bearer token
 * (re-read from token_file at most every refresh_ms, under a mutex, so a
 * rotated service-account token is picked up without a restart) and a small
 * pool of idle libcurl handles: a handle keeps its connections across
 * curl_easy_reset, so requests from the operator's threads reuse TLS
 * connections instead of handshaking every time.
 *
 * The token lives in the client and in one header string per request, which
 * is wiped after the transfer; it never goes into a log line or a message.
 */
#include "kube/kube.h"
#include "kube/kube_internal.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KUBE_POOL_MAX 8
#define RETRY_BASE_MS 100
#define RETRY_CAP_MS 10000

struct kube_client {
	struct kube_config cfg;
	const struct curl_dl *cu;
	pthread_mutex_t lock; /* token, token_read_ms, refresh_ms, pool */
	char *token;
	int64_t token_read_ms;
	int refresh_ms;
	CURL *pool[KUBE_POOL_MAX];
	size_t n_pool;
	atomic_ullong requests[KUBE_VERB_N];
};

static void wipe_free(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

static int copy_config(struct kube_config *dst, const struct kube_config *src)
{
	memset(dst, 0, sizeof(*dst));
#define COPY(f)                                                  \
	do {                                                     \
		if (src->f && !(dst->f = util_strdup(src->f))) { \
			kube_config_free(dst);                   \
			return al_error_set(AL_ERR_NOMEM, "out of memory"); \
		}                                                \
	} while (0)
	COPY(server);
	COPY(ca_pem);
	COPY(client_cert_pem);
	COPY(client_key_pem);
	COPY(token);
	COPY(token_file);
	COPY(namespace);
#undef COPY
	dst->insecure_skip_tls_verify = src->insecure_skip_tls_verify;
	return AL_OK;
}

int kube_client_new(struct kube_client **out, const struct kube_config *cfg)
{
	struct kube_client *kc;
	const struct curl_dl *cu;
	int rc;

	if (!out)
		return al_error_set(AL_ERR_INVALID, "kube_client_new: no output");
	*out = NULL;
	if (!cfg || !cfg->server || (strncmp(cfg->server, "https://", 8) && strncmp(cfg->server, "http://", 7)))
		return al_error_set(AL_ERR_INVALID, "kube client: the configuration has no https:// or http:// server");
	if (!cfg->client_cert_pem != !cfg->client_key_pem)
		return al_error_set(AL_ERR_INVALID, "kube client: a client certificate needs its key and a key its certificate");
	if (!(cu = curl_dl()))
		return al_error_wrap(AL_ERR_UNAVAILABLE, "kube client");
	if (!(kc = calloc(1, sizeof(*kc))))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if ((rc = copy_config(&kc->cfg, cfg)) < 0) {
		free(kc);
		return rc;
	}
	if (!kc->cfg.namespace && !(kc->cfg.namespace = util_strdup("default"))) {
		kube_config_free(&kc->cfg);
		free(kc);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	{
		size_t n = strlen(kc->cfg.server);
		while (n > 0 && kc->cfg.server[n - 1] == '/')
			kc->cfg.server[--n] = '\0';
	}
	if (pthread_mutex_init(&kc->lock, NULL) != 0) {
		kube_config_free(&kc->cfg);
		free(kc);
		return al_error_set(AL_ERR_INTERNAL, "kube client: cannot create a mutex");
	}
	kc->cu = cu;
	kc->refresh_ms = KUBE_TOKEN_REFRESH_MS;
	/* The token read when the configuration was loaded counts as fresh. */
	if (kc->cfg.token && !(kc->token = util_strdup(kc->cfg.token))) {
		kube_client_free(kc);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	kc->token_read_ms = kc->token ? util_monotonic_ms() : INT64_MIN / 2;
	*out = kc;
	return AL_OK;
}

void kube_client_free(struct kube_client *kc)
{
	if (!kc)
		return;
	for (size_t i = 0; i < kc->n_pool; i++)
		kc->cu->easy_cleanup(kc->pool[i]);
	wipe_free(kc->token);
	kube_config_free(&kc->cfg);
	pthread_mutex_destroy(&kc->lock);
	free(kc);
}

const char *kube_client_namespace(const struct kube_client *kc)
{
	return kc ? kc->cfg.namespace : "default";
}

void kube_client_set_token_refresh_ms(struct kube_client *kc, int ms)
{
	if (!kc)
		return;
	pthread_mutex_lock(&kc->lock);
	kc->refresh_ms = ms < 0 ? 0 : ms;
	pthread_mutex_unlock(&kc->lock);
}

const struct curl_dl *kube_client_curl(const struct kube_client *kc)
{
	return kc->cu;
}

const char *kube_client_server(const struct kube_client *kc)
{
	return kc->cfg.server;
}

void kube_auth_free(struct buf *auth)
{
	if (auth->ptr)
		sodium_memzero(auth->ptr, auth->cap);
	buf_free(auth);
}

/* Appends "Authorization: Bearer <token>" to `auth` when there is a token,
 * re-reading token_file first when the last read is older than refresh_ms. */
static int auth_header(struct kube_client *kc, struct buf *auth)
{
	int rc = AL_OK;

	pthread_mutex_lock(&kc->lock);
	if (kc->cfg.token_file && util_monotonic_ms() - kc->token_read_ms >= kc->refresh_ms) {
		char *fresh = NULL;
		if (kube_read_token_file(kc->cfg.token_file, &fresh) == AL_OK) {
			wipe_free(kc->token);
			kc->token = fresh;
		} else if (kc->token) {
			/* Keep the last good token; the file may be mid-rotation. */
			log_warn("kube: cannot re-read the bearer token (%s); using the previous one",
				 al_error_message());
		}
		kc->token_read_ms = util_monotonic_ms();
	}
	if (kc->token)
		rc = buf_appendf(auth, "Authorization: Bearer %s", kc->token);
	pthread_mutex_unlock(&kc->lock);
	return rc;
}

static const char *const verb_names[KUBE_VERB_N] = { "GET", "WATCH", "POST", "PUT", "PATCH", "DELETE", "OTHER" };

const char *kube_verb_name(enum kube_verb v)
{
	return (unsigned)v < KUBE_VERB_N ? verb_names[v] : "OTHER";
}

void kube_client_count(struct kube_client *kc, const char *method)
{
	int v = KUBE_VERB_OTHER;
	for (int i = 0; i < KUBE_VERB_OTHER; i++)
		if (!strcmp(method, verb_names[i]))
			v = i;
	atomic_fetch_add(&kc->requests[v], 1);
}

void kube_client_request_counts(const struct kube_client *kc, unsigned long long out[KUBE_VERB_N])
{
	for (int i = 0; i < KUBE_VERB_N; i++)
		out[i] = kc ? atomic_load(&kc->requests[i]) : 0;
}

static CURL *handle_get(struct kube_client *kc)
{
	CURL *c = NULL;

	pthread_mutex_lock(&kc->lock);
	if (kc->n_pool > 0)
		c = kc->pool[--kc->n_pool];
	pthread_mutex_unlock(&kc->lock);
	if (c)
		kc->cu->easy_reset(c);
	else
		c = kc->cu->easy_init();
	return c;
}

static void handle_put(struct kube_client *kc, CURL *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&kc->lock);
	if (kc->n_pool < KUBE_POOL_MAX) {
		kc->pool[kc->n_pool++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&kc->lock);
	if (c)
		kc->cu->easy_cleanup(c);
}

int kube_client_setup(struct kube_client *kc, CURL *curl, char *errbuf, struct curl_slist **headers,
		      struct buf *auth)
{
	const struct curl_dl *cu = kc->cu;
	struct curl_slist *h;
	CURLcode cc = CURLE_OK;
	int rc;

	*headers = NULL;
	errbuf[0] = '\0';
#define SET(opt, val)                                                      \
	do {                                                               \
		if (cc == CURLE_OK)                                        \
			cc = cu->easy_setopt(curl, opt, val);              \
	} while (0)
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, KUBE_CONNECT_TIMEOUT_MS);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_USERAGENT, "airlock/" AIRLOCK_VERSION);
	if (kc->cfg.ca_pem) {
		struct curl_blob blob = { kc->cfg.ca_pem, strlen(kc->cfg.ca_pem), CURL_BLOB_COPY };
		SET(CURLOPT_CAINFO_BLOB, &blob);
		/* Only the cluster's CA: not also the system's directory of CAs. */
		SET(CURLOPT_CAPATH, (char *)NULL);
	}
	if (kc->cfg.client_cert_pem && kc->cfg.client_key_pem) {
		struct curl_blob cert = { kc->cfg.client_cert_pem, strlen(kc->cfg.client_cert_pem), CURL_BLOB_COPY };
		struct curl_blob key = { kc->cfg.client_key_pem, strlen(kc->cfg.client_key_pem), CURL_BLOB_COPY };
		SET(CURLOPT_SSLCERT_BLOB, &cert);
		SET(CURLOPT_SSLCERTTYPE, "PEM");
		SET(CURLOPT_SSLKEY_BLOB, &key);
		SET(CURLOPT_SSLKEYTYPE, "PEM");
	}
	if (kc->cfg.insecure_skip_tls_verify) {
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
	}
#undef SET
	if (cc != CURLE_OK)
		return al_error_set(AL_ERR_INTERNAL, "kube client: libcurl refused an option (%s): libcurl 7.85 or newer is needed",
				    cu->easy_strerror(cc));

#define ADD(text)                                                           \
	do {                                                                \
		if (!(h = cu->slist_append(*headers, (text)))) {            \
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");   \
			goto fail;                                          \
		}                                                           \
		*headers = h;                                               \
	} while (0)
	ADD("Accept: application/json");
	ADD("Expect:");
	if ((rc = auth_header(kc, auth)) < 0)
		goto fail;
	if (auth->len)
		ADD(auth->ptr);
#undef ADD
	return AL_OK;
fail:
	cu->slist_free_all(*headers);
	*headers = NULL;
	return rc;
}

int kube_status_error(long status, const json_t *answer, const char *method, const char *path)
{
	const char *msg = json_string_value(json_object_get(answer, "message"));
	const char *reason = json_string_value(json_object_get(answer, "reason"));
	int code;

	switch (status) {
	case 400: case 422: code = AL_ERR_INVALID; break;
	case 401: code = AL_ERR_UNAUTHORIZED; break;
	case 403: code = AL_ERR_FORBIDDEN; break;
	case 404: code = AL_ERR_NOT_FOUND; break;
	case 409: code = reason && !strcmp(reason, "AlreadyExists") ? AL_ERR_EXISTS : AL_ERR_CONFLICT; break;
	case 410: code = AL_ERR_GONE; break;
	case 413: code = AL_ERR_TOO_LARGE; break;
	case 429: code = AL_ERR_UNAVAILABLE; break;
	default:
		if (status >= 500)
			code = AL_ERR_UNAVAILABLE;
		else if (status >= 400)
			code = AL_ERR_INVALID;
		else
			code = AL_ERR_IO; /* 1xx/3xx: redirects are not followed */
	}
	if (msg && msg[0])
		return al_error_set(code, "%s %s: %s", method, path, msg);
	if (status >= 300 && status < 400)
		return al_error_set(code, "%s %s: HTTP %ld (a redirect, which is not followed: check the server URL)",
				    method, path, status);
	return al_error_set(code, "%s %s: HTTP %ld", method, path, status);
}

struct sink {
	struct buf b;
	int too_large;
};

static size_t on_write(char *data, size_t size, size_t n, void *userdata)
{
	struct sink *s = userdata;
	if (buf_append(&s->b, data, size * n) < 0) {
		s->too_large = 1;
		return 0;
	}
	return size * n;
}

static int valid_method(const char *m)
{
	size_t n = m ? strlen(m) : 0;
	if (n == 0 || n > 16)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (m[i] < 'A' || m[i] > 'Z')
			return 0;
	return 1;
}

int kube_valid_path(const char *p)
{
	if (!p || p[0] != '/')
		return 0;
	for (const unsigned char *c = (const unsigned char *)p; *c; c++)
		if (*c <= 0x20 || *c >= 0x7f || *c == '#')
			return 0;
	return 1;
}

/* One request with a total timeout of timeout_ms. *retry_after_s is the
 * server's Retry-After (header, or the Status' details.retryAfterSeconds)
 * for a retryable answer, else 0. */
static int do_request(struct kube_client *kc, const char *method, const char *path, const json_t *body,
		      const char *content_type, long timeout_ms, long *out_status, json_t **out_json,
		      long *retry_after_s)
{
	const struct curl_dl *cu = kc->cu;
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *headers = NULL, *h;
	struct sink sink;
	struct buf url, auth, ct;
	char *text = NULL;
	json_t *answer = NULL;
	long status = 0;
	curl_off_t retry_after = 0;
	CURL *curl = NULL;
	CURLcode cc;
	int rc;

	*retry_after_s = 0;
	buf_init(&sink.b, KUBE_RESPONSE_MAX);
	sink.too_large = 0;
	buf_init(&url, 0);
	buf_init(&auth, 4096 + 64 * 1024);
	buf_init(&ct, 1024);
	if (!valid_method(method)) {
		rc = al_error_set(AL_ERR_INVALID, "kube request: method '%.16s' is not an upper-case HTTP method",
				  method ? method : "");
		goto out;
	}
	if (!kube_valid_path(path)) {
		rc = al_error_set(AL_ERR_INVALID,
				  "kube request: path must start with '/' and hold no spaces, control characters or '#'");
		goto out;
	}
	if (body && !(text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY))) {
		rc = al_error_set(AL_ERR_INVALID, "%s %s: cannot encode the body as JSON", method, path);
		goto out;
	}
	if ((rc = buf_appendf(&url, "%s%s", kc->cfg.server, path)) < 0)
		goto out;
	if (!(curl = handle_get(kc))) {
		rc = al_error_set(AL_ERR_NOMEM, "kube request: cannot create a libcurl handle");
		goto out;
	}
	if ((rc = kube_client_setup(kc, curl, errbuf, &headers, &auth)) < 0)
		goto out;
	if (text) {
		if ((rc = buf_appendf(&ct, "Content-Type: %s", content_type ? content_type : "application/json")) < 0)
			goto out;
		if (strpbrk(ct.ptr, "\r\n")) {
			rc = al_error_set(AL_ERR_INVALID, "%s %s: the content type holds a line break", method, path);
			goto out;
		}
		if (!(h = cu->slist_append(headers, ct.ptr))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		headers = h;
	}
	cu->easy_setopt(curl, CURLOPT_URL, url.ptr);
	cu->easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	cu->easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	cu->easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
	cu->easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
	if (!strcmp(method, "GET") && !text) {
		cu->easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	} else if (!strcmp(method, "HEAD")) {
		cu->easy_setopt(curl, CURLOPT_NOBODY, 1L);
	} else {
		if (text || !strcmp(method, "POST")) {
			cu->easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(text ? strlen(text) : 0));
			cu->easy_setopt(curl, CURLOPT_POSTFIELDS, text ? text : "");
		}
		cu->easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	}

	kube_client_count(kc, method);
	cc = cu->easy_perform(curl);
	if (cc != CURLE_OK) {
		if (sink.too_large)
			rc = al_error_set(AL_ERR_TOO_LARGE, "%s %s: the answer is larger than %zu MiB; use a label selector or limit",
					  method, path, KUBE_RESPONSE_MAX >> 20);
		else
			rc = al_error_set(AL_ERR_UNAVAILABLE, "%s %s: cannot reach the Kubernetes API server at %s: %s",
					  method, path, kc->cfg.server, errbuf[0] ? errbuf : cu->easy_strerror(cc));
		goto out;
	}
	cu->easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	log_debug("kube %s %s: HTTP %ld", method, path, status);
	if (out_status)
		*out_status = status;
	if (sink.b.len) {
		json_error_t jerr;
		answer = json_loadb(sink.b.ptr, sink.b.len, JSON_DECODE_ANY, &jerr);
	}
	if (status >= 200 && status < 300) {
		if (sink.b.len && !answer) {
			rc = al_error_set(AL_ERR_IO, "%s %s: the API server answered HTTP %ld with something that is not JSON",
					  method, path, status);
			goto out;
		}
		rc = AL_OK;
	} else {
		rc = kube_status_error(status, answer, method, path);
		if (rc == AL_ERR_UNAVAILABLE) {
			if (cu->easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after > 0)
				*retry_after_s = retry_after > 3600 ? 3600 : (long)retry_after;
			else {
				json_int_t ras = json_integer_value(
					json_object_get(json_object_get(answer, "details"), "retryAfterSeconds"));
				if (ras > 0)
					*retry_after_s = ras > 3600 ? 3600 : (long)ras;
			}
		}
	}
	if (out_json) {
		*out_json = answer;
		answer = NULL;
	}
out:
	json_decref(answer);
	if (headers)
		cu->slist_free_all(headers);
	if (curl) {
		/* the handle points at our headers and error buffer: forget them */
		cu->easy_setopt(curl, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
		cu->easy_setopt(curl, CURLOPT_ERRORBUFFER, (char *)NULL);
		handle_put(kc, curl);
	}
	kube_auth_free(&auth);
	/* The body may carry a Secret's data (runtime_kube's secret_ensure),
	 * and the answer may echo it (or be a Secret read back, as kube_creds
	 * reads the source credentials): neither outlives the request. */
	wipe_free(text);
	if (sink.b.ptr)
		sodium_memzero(sink.b.ptr, sink.b.len);
	buf_free(&ct);
	buf_free(&url);
	buf_free(&sink.b);
	return rc;
}

int kube_request(struct kube_client *kc, const char *method, const char *path, const json_t *body,
		 const char *content_type, long *out_status, json_t **out_json)
{
	long retry_after;

	if (out_status)
		*out_status = 0;
	if (out_json)
		*out_json = NULL;
	if (!kc)
		return al_error_set(AL_ERR_INVALID, "kube request: no client");
	return do_request(kc, method, path, body, content_type, KUBE_REQUEST_TIMEOUT_MS, out_status, out_json,
			  &retry_after);
}

/* The answer of kube_request_text: at most `max` bytes, or (tail) the
 * last `max` bytes of a longer one, holding at most 2 * max while reading. */
struct text_sink {
	struct buf b;
	size_t max;
	int tail;
	int too_large;
};

static size_t on_text(char *data, size_t size, size_t n, void *userdata)
{
	struct text_sink *t = userdata;
	size_t len = size * n;

	if (!t->tail) {
		if (t->b.len + len > t->max || buf_append(&t->b, data, len) < 0) {
			t->too_large = 1;
			return 0;
		}
		return len;
	}
	if (len >= t->max) {
		buf_reset(&t->b);
		return buf_append(&t->b, data + (len - t->max), t->max) < 0 ? 0 : len;
	}
	if (t->b.len + len > 2 * t->max) {
		/* len < max here, so this drops less than b.len and leaves max bytes
		 * after the append */
		size_t drop = t->b.len + len - t->max;
		memmove(t->b.ptr, t->b.ptr + drop, t->b.len - drop);
		t->b.len -= drop;
		t->b.ptr[t->b.len] = '\0';
	}
	return buf_append(&t->b, data, len) < 0 ? 0 : len;
}

int kube_request_text(struct kube_client *kc, const char *path, size_t max, int flags, long timeout_ms, char **out,
		      size_t *out_len)
{
	const struct curl_dl *cu;
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *headers = NULL;
	struct text_sink sink;
	struct buf url, auth;
	CURL *curl = NULL;
	long status = 0;
	size_t n;
	CURLcode cc;
	int rc;

	if (out)
		*out = NULL;
	if (out_len)
		*out_len = 0;
	if (!kc || !out)
		return al_error_set(AL_ERR_INVALID, "kube request: no client or no output");
	if (max == 0 || max > KUBE_RESPONSE_MAX)
		return al_error_set(AL_ERR_INVALID, "kube request: the text limit must be from 1 byte to %zu MiB",
				    KUBE_RESPONSE_MAX >> 20);
	if (!kube_valid_path(path))
		return al_error_set(AL_ERR_INVALID,
				    "kube request: path must start with '/' and hold no spaces, control characters or '#'");
	cu = kc->cu;
	sink.max = max;
	sink.tail = (flags & KUBE_TEXT_TAIL) != 0;
	sink.too_large = 0;
	buf_init(&sink.b, sink.tail ? 2 * max : max);
	buf_init(&url, 0);
	buf_init(&auth, 4096 + 64 * 1024);
	if ((rc = buf_appendf(&url, "%s%s", kc->cfg.server, path)) < 0)
		goto out;
	if (!(curl = handle_get(kc))) {
		rc = al_error_set(AL_ERR_NOMEM, "kube request: cannot create a libcurl handle");
		goto out;
	}
	if ((rc = kube_client_setup(kc, curl, errbuf, &headers, &auth)) < 0)
		goto out;
	cu->easy_setopt(curl, CURLOPT_URL, url.ptr);
	cu->easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	cu->easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : KUBE_REQUEST_TIMEOUT_MS);
	cu->easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_text);
	cu->easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
	cu->easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	kube_client_count(kc, "GET");
	cc = cu->easy_perform(curl);
	if (cc != CURLE_OK) {
		if (sink.too_large)
			rc = al_error_set(AL_ERR_TOO_LARGE, "GET %s: the answer is larger than %zu bytes", path, max);
		else
			rc = al_error_set(AL_ERR_UNAVAILABLE, "GET %s: cannot reach the Kubernetes API server at %s: %s", path,
					  kc->cfg.server, errbuf[0] ? errbuf : cu->easy_strerror(cc));
		goto out;
	}
	cu->easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	log_debug("kube GET %s: HTTP %ld", path, status);
	if (status < 200 || status >= 300) {
		/* An error answer is a Status object (JSON), not text. */
		json_error_t jerr;
		json_t *answer = sink.b.len ? json_loadb(sink.b.ptr, sink.b.len, 0, &jerr) : NULL;
		rc = kube_status_error(status, answer, "GET", path);
		json_decref(answer);
		goto out;
	}
	if (sink.b.len > max) {
		size_t drop = sink.b.len - max;
		memmove(sink.b.ptr, sink.b.ptr + drop, max);
		sink.b.len = max;
		sink.b.ptr[max] = '\0';
	}
	n = sink.b.len;
	if (!(*out = buf_detach(&sink.b))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (out_len)
		*out_len = n;
	rc = AL_OK;
out:
	if (headers)
		cu->slist_free_all(headers);
	if (curl) {
		/* the handle points at our headers and error buffer: forget them */
		cu->easy_setopt(curl, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
		cu->easy_setopt(curl, CURLOPT_ERRORBUFFER, (char *)NULL);
		handle_put(kc, curl);
	}
	kube_auth_free(&auth);
	buf_free(&url);
	buf_free(&sink.b);
	return rc;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int kube_request_retry(struct kube_client *kc, const char *method, const char *path, const json_t *body,
		       const char *content_type, int deadline_ms, long *out_status, json_t **out_json)
{
	int64_t start = util_monotonic_ms(), deadline = start + (deadline_ms > 0 ? deadline_ms : 0);
	char last[AL_ERROR_MSG_MAX];
	int rc;

	if (out_status)
		*out_status = 0;
	if (out_json)
		*out_json = NULL;
	if (!kc)
		return al_error_set(AL_ERR_INVALID, "kube request: no client");
	for (int attempt = 0;; attempt++) {
		int64_t now = util_monotonic_ms(), left = deadline - now, delay;
		long retry_after = 0, timeout = KUBE_REQUEST_TIMEOUT_MS;

		/* no attempt runs past the deadline (none given: one attempt) */
		if (deadline_ms > 0 && left < timeout)
			timeout = left > 1 ? (long)left : 1;
		if (out_json) {
			json_decref(*out_json);
			*out_json = NULL;
		}
		if (out_status)
			*out_status = 0;
		rc = do_request(kc, method, path, body, content_type, timeout, out_status, out_json, &retry_after);
		if (rc != AL_ERR_UNAVAILABLE)
			return rc;
		delay = retry_after > 0 ? (int64_t)retry_after * 1000
					: kube_backoff_ms(attempt, RETRY_BASE_MS, RETRY_CAP_MS);
		now = util_monotonic_ms();
		if (now + delay >= deadline) {
			snprintf(last, sizeof(last), "%s", al_error_message());
			return al_error_set(rc, "%s (gave up after %d attempt%s in %lld ms)", last, attempt + 1,
					    attempt ? "s" : "", (long long)(now - start));
		}
		sleep_ms(delay);
	}
}
