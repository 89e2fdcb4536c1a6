#include "web/uploader_route.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "gates/gates.h"
#include "net/curl_dl.h"
#include "runtime/runtime_kube.h"
#include "runtime/uploader_scale.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define KIND_DS "AnalyticsWorkspaceDataSource"
#define NAME_PREFIX "upload-"
#define NAME_MAX_LEN 63   /* a Service name: a DNS label */
#define SECRET_MIN 16
#define SECRET_HEADER "X-Airlock-Proxy-Secret"
#define USER_HEADER "X-Airlock-User"
#define USER_MAX 256
#define CONNECT_TIMEOUT_MS 5000L
#define BODILESS_TIMEOUT_MS 300000L /* "all files uploaded" hashes files placed by other means */
#define UPLOAD_BUFFER (1L << 20)
#define OWNER_CACHE_MAX 4096

struct uploader_route {
	struct api_ctx *api;
	struct kube_client *kc;
	char *ns;
	char *tmpl;
	char *secret;
	upload_embed_auth_fn authenticate;
	void *authenticate_ud;
	pthread_mutex_t mu;
	json_t *touched; /* deployment -> monotonic ms of the last activity patch */
	json_t *owners;  /* deployment -> [namespace, datasource]: uid-named, never reused */
};

/* The request headers of tus (and nothing else) go to the uploader. Any
 * X-Airlock-* a client sends is dropped by not being on this list. */
static const char *const pass_request[] = {
	"Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat",
	"Upload-Checksum", "Content-Type", "X-HTTP-Method-Override", "Accept", NULL,
};

static int answer_header_passes(const char *name, size_t len)
{
	static const char *const exact[] = { "Location", "Cache-Control", "Retry-After", NULL };
	if ((len > 4 && !strncasecmp(name, "Tus-", 4)) || (len > 7 && !strncasecmp(name, "Upload-", 7)))
		return 1;
	for (size_t i = 0; exact[i]; i++)
		if (len == strlen(exact[i]) && !strncasecmp(name, exact[i], len))
			return 1;
	return 0;
}

static int oom(void)
{
	return al_error_set(AL_ERR_NOMEM, "out of memory");
}

/* ---- Kubernetes: wake, ready, touch (src/runtime/uploader_scale.h) ---------- */

char *uploader_route_name(const json_t *ds)
{
	const char *uid = json_string_value(json_object_get(json_object_get(ds, "metadata"), "uid"));
	struct buf b;
	if (!uid || !*uid)
		return NULL;
	buf_init(&b, 256);
	if (buf_appendf(&b, NAME_PREFIX "%s", uid)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

/* Wall-clock seconds: the annotations are compared with the operator's
 * clock (uploader_scale.h), so a monotonic clock would not do. */
static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* Whether this process should write last-activity on `name` now
 * (uploader_touch_due on the time it last did); if so, records now. */
static int touch_due(struct uploader_route *r, const char *name, int64_t now)
{
	int due;
	pthread_mutex_lock(&r->mu);
	due = uploader_touch_due((int64_t)json_integer_value(json_object_get(r->touched, name)), now);
	if (due) {
		if (json_object_size(r->touched) >= OWNER_CACHE_MAX)
			json_object_clear(r->touched); /* forgetting only costs one early patch each */
		json_object_set_new(r->touched, name, json_integer(now));
	}
	pthread_mutex_unlock(&r->mu);
	return due;
}

/* Best effort: a failed stamp is logged; the request goes on (the uploader
 * was woken with scaled-up-at, so it has a time either way). */
static void touch(struct uploader_route *r, const char *name)
{
	int64_t now = now_s();
	if (!touch_due(r, name, now))
		return;
	if (uploader_activity_touch(r->kc, r->ns, name, now))
		log_warn("uploader %s: cannot record activity: %s", name, al_error_message());
}

/*
 * Makes sure deployment `name` runs. At 0 replicas: uploader_wake (replicas
 * 1 and scaled-up-at, which starts the operator's idle clock). Running: a
 * person is there, so it counts as activity (last-activity, rate-limited).
 * *ready: uploader_is_ready of what was read (0 right after a wake).
 */
static int wake_by_name(struct uploader_route *r, const char *name, int *ready)
{
	json_t *dep = NULL;
	int rc;

	*ready = 0;
	rc = uploader_get(r->kc, r->ns, name, &dep);
	if (rc == AL_ERR_NOT_FOUND)
		return al_error_set(AL_ERR_NOT_FOUND, "the uploader %s is not there yet", name);
	if (rc)
		return rc;
	if (uploader_replicas(dep) < 1) {
		rc = uploader_wake(r->kc, r->ns, name, now_s());
		if (!rc)
			log_info("uploader %s: scaled to 1 replica", name);
	} else {
		*ready = uploader_is_ready(dep);
		touch(r, name);
	}
	json_decref(dep);
	return rc;
}

int uploader_route_wake(struct uploader_route *r, const json_t *ds, int *out_ready, char **out_endpoint)
{
	char *name = uploader_route_name(ds);
	int rc;

	*out_ready = 0;
	if (out_endpoint)
		*out_endpoint = NULL;
	if (!name)
		return al_error_set(AL_ERR_INVALID, "the datasource has no uid yet");
	rc = wake_by_name(r, name, out_ready);
	if (!rc && out_endpoint) {
		struct buf b;
		buf_init(&b, 512);
		if (buf_appendf(&b, "%s%s", UPLOADER_ROUTE_PREFIX, name))
			rc = oom();
		*out_endpoint = buf_detach(&b);
		if (!rc && !*out_endpoint)
			rc = oom();
		buf_free(&b);
	}
	free(name);
	return rc;
}

int uploader_route_page_hook(void *ud, const json_t *ds, char **out_endpoint)
{
	int ready = 0, rc = uploader_route_wake(ud, ds, &ready, out_endpoint);
	if (rc == AL_ERR_NOT_FOUND)
		return al_error_set(AL_ERR_UNAVAILABLE, "the uploader is being made");
	if (rc)
		return rc;
	if (!ready) {
		free(*out_endpoint);
		*out_endpoint = NULL;
		return al_error_set(AL_ERR_UNAVAILABLE, "the uploader is starting");
	}
	return AL_OK;
}

/* The datasource behind deployment `name` (from the owner annotation the
 * runtime puts on it), checked against its uid. */
static int datasource_of(struct uploader_route *r, const char *name, json_t **out)
{
	json_t *cached, *dep = NULL;
	char *ns = NULL, *ds_name = NULL, *expect = NULL;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&r->mu);
	cached = json_object_get(r->owners, name);
	if (cached) {
		ns = util_strdup(json_string_value(json_array_get(cached, 0)));
		ds_name = util_strdup(json_string_value(json_array_get(cached, 1)));
	}
	pthread_mutex_unlock(&r->mu);
	if (cached && (!ns || !ds_name)) {
		rc = oom();
		goto out;
	}
	if (!cached) {
		if ((rc = uploader_get(r->kc, r->ns, name, &dep)))
			goto out;
		if ((rc = runtime_kube_child_owner(dep, KIND_DS, &ns, &ds_name)))
			goto out;
		pthread_mutex_lock(&r->mu);
		if (json_object_size(r->owners) >= OWNER_CACHE_MAX)
			json_object_clear(r->owners);
		json_object_set_new(r->owners, name, json_pack("[s, s]", ns, ds_name));
		pthread_mutex_unlock(&r->mu);
	}
	/* The API serves one namespace: an uploader of a datasource elsewhere
	 * (a cluster-wide operator's) is not this frontend's to open. */
	if (strcmp(ns, api_namespace(r->api))) {
		rc = AL_ERR_NOT_FOUND;
		goto out;
	}
	if ((rc = store_get(r->api->store, KIND_DS, ns, ds_name, out)))
		goto out;
	/* A datasource made again under the same name has another uid, and
	 * another uploader. */
	if (!(expect = uploader_route_name(*out)) || strcmp(expect, name)) {
		json_decref(*out);
		*out = NULL;
		rc = AL_ERR_NOT_FOUND;
	}
out:
	if (rc == AL_ERR_NOT_FOUND)
		al_error_set(AL_ERR_NOT_FOUND, "no such uploader");
	json_decref(dep);
	free(ns);
	free(ds_name);
	free(expect);
	return rc;
}

/* ---- the proxied request ---------------------------------------------------- */

struct proxy {
	struct uploader_route *r;
	const struct curl_dl *c;
	CURL *h;
	struct curl_slist *hdrs;
	char *name;     /* the Deployment */
	char *ds_name;
	json_t *user;
	int complete;   /* POST <base>/complete */
	int uploading;  /* its datasource is at stage Uploading */
	int head;
	/* body handoff between the connection thread (on_data) and curl's */
	pthread_t thread;
	int thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	const char *chunk;
	size_t chunk_len;
	int eof, aborted, done;
	/* the uploader's answer */
	CURLcode res;
	long status;
	json_t *answer_headers; /* [[name, value], ...] of the passed ones */
	char *content_type;
	struct buf body;
	int too_large;
	char errbuf[CURL_ERROR_SIZE];
};

static void proxy_free(struct proxy *p)
{
	if (!p)
		return;
	if (p->hdrs) {
		/* One of them carries the secret. */
		for (struct curl_slist *s = p->hdrs; s; s = s->next)
			sodium_memzero(s->data, strlen(s->data));
		p->c->slist_free_all(p->hdrs);
	}
	if (p->h)
		p->c->easy_cleanup(p->h);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->name);
	free(p->ds_name);
	json_decref(p->user);
	json_decref(p->answer_headers);
	free(p->content_type);
	buf_free(&p->body);
	free(p);
}

static size_t on_answer_header(char *data, size_t size, size_t n, void *ud)
{
	struct proxy *p = ud;
	size_t len = size * n, nl, vl;
	const char *colon, *v;

	if (len >= 5 && !strncmp(data, "HTTP/", 5)) {
		/* A new status line (after a 100 Continue, say): what came before
		 * belonged to another answer. */
		json_array_clear(p->answer_headers);
		free(p->content_type);
		p->content_type = NULL;
		return len;
	}
	if (!(colon = memchr(data, ':', len)))
		return len;
	nl = (size_t)(colon - data);
	v = colon + 1;
	vl = len - nl - 1;
	while (vl && (*v == ' ' || *v == '\t'))
		v++, vl--;
	while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
		vl--;
	if (nl == 12 && !strncasecmp(data, "Content-Type", 12)) {
		free(p->content_type);
		if (!(p->content_type = util_strndup(v, vl)))
			return 0;
	} else if (answer_header_passes(data, nl)) {
		json_t *pair = json_array();
		if (!pair || json_array_append_new(pair, json_stringn(data, nl)) ||
		    json_array_append_new(pair, json_stringn(v, vl)) || json_array_append_new(p->answer_headers, pair))
			return 0;
	}
	return len;
}

static size_t on_answer_body(char *data, size_t size, size_t n, void *ud)
{
	struct proxy *p = ud;
	size_t len = size * n;
	if (buf_append(&p->body, data, len)) {
		p->too_large = 1;
		return 0;
	}
	return len;
}

/* curl's side of the body: waits for the next chunk on_data hands over. */
static size_t on_read_body(char *dst, size_t size, size_t n, void *ud)
{
	struct proxy *p = ud;
	size_t want = size * n, got = 0;

	pthread_mutex_lock(&p->mu);
	while (!p->chunk_len && !p->eof && !p->aborted)
		pthread_cond_wait(&p->cv, &p->mu);
	if (p->aborted) {
		pthread_mutex_unlock(&p->mu);
		return CURL_READFUNC_ABORT;
	}
	if (p->chunk_len) {
		got = p->chunk_len < want ? p->chunk_len : want;
		memcpy(dst, p->chunk, got);
		p->chunk += got;
		p->chunk_len -= got;
		if (!p->chunk_len)
			pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return got;
}

static void *transfer_thread(void *ud)
{
	struct proxy *p = ud;
	CURLcode res = p->c->easy_perform(p->h);
	pthread_mutex_lock(&p->mu);
	p->res = res;
	p->done = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int username_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > USER_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '_' || ch == '-' || ch == '@' || ch == '+'))
			return 0;
	}
	return 1;
}

/* What follows /uploads/<name>: "", or "/" and tus ids / "complete". */
static int rest_ok(const char *rest)
{
	if (!*rest)
		return 1;
	if (*rest != '/' || strstr(rest, "..") || strstr(rest, "//"))
		return 0;
	for (const char *s = rest; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
		      *s == '_' || *s == '.' || *s == '~' || *s == '/'))
			return 0;
	return 1;
}

static int name_ok(const char *s, size_t n)
{
	if (n <= strlen(NAME_PREFIX) || n > NAME_MAX_LEN || strncmp(s, NAME_PREFIX, strlen(NAME_PREFIX)))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

/* The template with {name} and {namespace} filled in, then the path. */
static int target_url(const struct uploader_route *r, const char *name, const char *path, struct buf *out)
{
	const char *t = r->tmpl;
	while (*t) {
		int rc;
		if (!strncmp(t, "{name}", 6)) {
			rc = buf_appends(out, name);
			t += 6;
		} else if (!strncmp(t, "{namespace}", 11)) {
			rc = buf_appends(out, r->ns);
			t += 11;
		} else {
			rc = buf_appendc(out, *t++);
		}
		if (rc)
			return rc;
	}
	while (out->len && out->ptr[out->len - 1] == '/')
		out->len--;
	return buf_appends(out, path);
}

static int add_header(struct proxy *p, const char *name, const char *value)
{
	struct buf b;
	struct curl_slist *l;
	int rc;
	buf_init(&b, 64 * 1024);
	if ((rc = buf_appendf(&b, "%s: %s", name, value)) == AL_OK) {
		l = p->c->slist_append(p->hdrs, buf_cstr(&b));
		if (!l)
			rc = oom();
		else
			p->hdrs = l;
	}
	sodium_memzero(b.ptr ? b.ptr : (char *)"", b.ptr ? b.len : 0);
	buf_free(&b);
	return rc;
}

/* Sets up the transfer; `body` tells whether the request streams one
 * (length -1 when chunked). */
static int prepare(struct proxy *p, const struct http_request *req, const char *method, int body, int64_t length)
{
	const struct curl_dl *c = p->c;
	struct buf url;
	const char *v;
	int rc = AL_OK;

	buf_init(&url, 16 * 1024);
	if ((rc = target_url(p->r, p->name, req->path, &url)))
		goto out;
	if (!(p->h = c->easy_init())) {
		rc = al_error_set(AL_ERR_UNAVAILABLE, "cannot start an HTTP client");
		goto out;
	}
	for (size_t i = 0; pass_request[i]; i++)
		if ((v = http_request_header(req, pass_request[i])) && (rc = add_header(p, pass_request[i], v)))
			goto out;
	/* curl would add its own: none for a bodiless POST (no form data), no
	 * 100-continue wait (the body is already flowing from the browser). */
	if (!http_request_header(req, "Content-Type") && (rc = add_header(p, "Content-Type", "")))
		goto out;
	if ((rc = add_header(p, "Expect", "")) || (rc = add_header(p, SECRET_HEADER, p->r->secret)) ||
	    (rc = add_header(p, USER_HEADER, json_string_value(json_object_get(p->user, "username")))))
		goto out;
	c->easy_setopt(p->h, CURLOPT_URL, buf_cstr(&url));
	c->easy_setopt(p->h, CURLOPT_PROTOCOLS_STR, "http,https");
	c->easy_setopt(p->h, CURLOPT_NOSIGNAL, 1L);
	c->easy_setopt(p->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	c->easy_setopt(p->h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	c->easy_setopt(p->h, CURLOPT_HTTPHEADER, p->hdrs);
	c->easy_setopt(p->h, CURLOPT_HEADERFUNCTION, on_answer_header);
	c->easy_setopt(p->h, CURLOPT_HEADERDATA, p);
	c->easy_setopt(p->h, CURLOPT_WRITEFUNCTION, on_answer_body);
	c->easy_setopt(p->h, CURLOPT_WRITEDATA, p);
	c->easy_setopt(p->h, CURLOPT_ERRORBUFFER, p->errbuf);
	if (!strcmp(method, "HEAD")) {
		p->head = 1;
		c->easy_setopt(p->h, CURLOPT_NOBODY, 1L);
	} else if (body) {
		c->easy_setopt(p->h, CURLOPT_UPLOAD, 1L);
		c->easy_setopt(p->h, CURLOPT_CUSTOMREQUEST, method);
		c->easy_setopt(p->h, CURLOPT_READFUNCTION, on_read_body);
		c->easy_setopt(p->h, CURLOPT_READDATA, p);
		c->easy_setopt(p->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)length);
		c->easy_setopt(p->h, CURLOPT_UPLOAD_BUFFERSIZE, UPLOAD_BUFFER);
	} else {
		if (!strcmp(method, "POST") || !strcmp(method, "PATCH")) {
			/* Content-Length: 0, as the browser sent it. */
			c->easy_setopt(p->h, CURLOPT_POSTFIELDS, "");
			c->easy_setopt(p->h, CURLOPT_POSTFIELDSIZE, 0L);
		}
		c->easy_setopt(p->h, CURLOPT_CUSTOMREQUEST, method);
		c->easy_setopt(p->h, CURLOPT_TIMEOUT_MS, BODILESS_TIMEOUT_MS);
	}
out:
	buf_free(&url);
	return rc;
}

/* Location as the frontend's path: the uploader's base path is
 * /uploads/<name> too, so only a scheme and host are taken off. */
static const char *frontend_location(const char *v)
{
	const char *hs = strstr(v, "://");
	if (hs && (!strncasecmp(v, "http://", 7) || !strncasecmp(v, "https://", 8))) {
		const char *slash = strchr(hs + 3, '/');
		return slash ? slash : "/";
	}
	return v;
}

static void answer_unreachable(struct proxy *p, struct http_response *resp)
{
	int ready = 0;
	char ra[16];
	/* Past Uploading the operator keeps the uploader at 0 (uploader_decide:
	 * sealed): waking it would only be undone, and a retry cannot help. */
	if (!p->uploading) {
		al_error_set(AL_ERR_CONFLICT, "datasource '%s' no longer takes uploads, and its uploader has stopped",
			     p->ds_name);
		http_response_error(resp, AL_ERR_CONFLICT, al_error_message());
		return;
	}
	/* Scaled down while idle, or its pod restarting: start it again, and
	 * let the client retry (tus clients retry a 503 by themselves). */
	if (wake_by_name(p->r, p->name, &ready))
		log_warn("uploader %s: cannot wake it: %s", p->name, al_error_message());
	log_warn("uploader %s: unreachable: %s", p->name, *p->errbuf ? p->errbuf : p->c->easy_strerror(p->res));
	http_response_error(resp, AL_ERR_UNAVAILABLE,
			    "the uploader of this datasource is not running at the moment; it is being started again. "
			    "Try again in a few seconds, or reload the upload page");
	snprintf(ra, sizeof(ra), "%d", UPLOADER_ROUTE_RETRY_AFTER_S);
	http_response_header(resp, "Retry-After", ra);
}

/* "All files uploaded" was said and the uploader sealed the volume: the
 * gates move on, as the embedded uploader's own completion does. */
static void answer_completed(struct proxy *p, struct http_response *resp)
{
	json_error_t jerr;
	json_t *sealed = json_loadb(p->body.ptr ? p->body.ptr : "", p->body.len, 0, &jerr), *ds = NULL;
	json_t *manifest = json_object_get(sealed, "manifest");
	int rc;

	if (!json_is_object(manifest)) {
		log_error("uploader %s: 'all files uploaded' answered without a manifest", p->name);
		http_response_error(resp, AL_ERR_INTERNAL, "the uploader's answer had no manifest");
		goto out;
	}
	if ((rc = upload_fire_complete(p->r->api, p->ds_name, p->user, &ds))) {
		http_response_error(resp, rc, NULL);
		goto out;
	}
	/* The manifest itself stays on the volume (.uploads/completed.json);
	 * the check job builds its own from the files. */
	log_info("datasource %s: all files uploaded by %s (%zu files, manifest %s)", p->ds_name,
		 json_string_value(json_object_get(p->user, "username")),
		 json_array_size(json_object_get(manifest, "files")),
		 json_string_value(json_object_get(manifest, "digest")) ? json_string_value(json_object_get(manifest, "digest"))
									  : "?");
	http_response_json(resp, 200, json_pack("{s:O, s:O}", "manifest", manifest, "datasource", ds));
out:
	json_decref(ds);
	json_decref(sealed);
}

/* Fills resp from the finished (or early-answered) transfer. */
static void answer(struct proxy *p, struct http_response *resp)
{
	size_t i;
	json_t *pair;

	p->c->easy_getinfo(p->h, CURLINFO_RESPONSE_CODE, &p->status);
	if (p->too_large) {
		http_response_error(resp, AL_ERR_INTERNAL, "the uploader's answer was too large");
		return;
	}
	if (p->status < 100 || (p->res != CURLE_OK && p->status == 0)) {
		answer_unreachable(p, resp);
		return;
	}
	if (p->complete && p->status == 200) {
		answer_completed(p, resp);
		return;
	}
	if (p->head || !p->body.len)
		http_response_bytes(resp, (int)p->status, NULL, "", 0);
	else
		http_response_bytes(resp, (int)p->status, p->content_type ? p->content_type : "application/octet-stream",
				    p->body.ptr, p->body.len);
	json_array_foreach(p->answer_headers, i, pair)
	{
		const char *n = json_string_value(json_array_get(pair, 0)), *v = json_string_value(json_array_get(pair, 1));
		if (!strcasecmp(n, "Location"))
			v = frontend_location(v);
		if (http_response_header(resp, n, v))
			log_warn("uploader %s: header %s not passed on: %s", p->name, n, al_error_message());
	}
}

static int is_write(const char *m)
{
	return strcmp(m, "GET") && strcmp(m, "HEAD") && strcmp(m, "OPTIONS");
}

static int authenticate(struct uploader_route *r, const struct http_request *req, json_t **user)
{
	int rc;
	*user = NULL;
	if (r->authenticate) {
		rc = r->authenticate(r->authenticate_ud, req, user);
		if (rc != AL_ERR_NOT_FOUND)
			return rc;
		json_decref(*user);
		*user = NULL;
	}
	return api_authenticate_request(r->api, req, user);
}

/* Authentication, the datasource, and the rules; AL_OK or an error (with
 * its message) to answer. */
static int admit(struct proxy *p, const struct http_request *req, const char *method, const char *rest)
{
	struct upload_access acc;
	json_t *ds = NULL;
	const char *type, *stage;
	int rc;

	if ((rc = authenticate(p->r, req, &p->user))) {
		/* The message stays (it says why); only the code is narrowed. */
		char *why = util_strdup(al_error_message());
		rc = al_error_set(rc == AL_ERR_FORBIDDEN ? AL_ERR_FORBIDDEN : AL_ERR_UNAUTHORIZED, "%s",
				  why ? why : "log in first");
		free(why);
		return rc;
	}
	if ((rc = datasource_of(p->r, p->name, &ds)))
		return rc;
	if (!(p->ds_name = util_strdup(json_string_value(json_object_get(json_object_get(ds, "metadata"), "name"))))) {
		rc = oom();
		goto out;
	}
	upload_access_of(p->r->api, p->user, ds, &acc);
	type = json_string_value(json_object_get(json_object_get(ds, "spec"), "type"));
	if (!acc.visible || !type || strcmp(type, "Uploaded")) {
		rc = al_error_set(AL_ERR_NOT_FOUND, "no such uploader");
		goto out;
	}
	if (!username_ok(json_string_value(json_object_get(p->user, "username")))) {
		rc = al_error_set(AL_ERR_FORBIDDEN,
				  "your user name cannot be given to the uploader (letters, digits and . _ @ + - only)");
		goto out;
	}
	p->complete = !strcmp(method, "POST") && !strcmp(rest, "/complete");
	stage = gates_stage(ds);
	p->uploading = !strcmp(stage, STAGE_UPLOADING);
	if (p->complete && !acc.may_complete) {
		rc = al_error_set(AL_ERR_FORBIDDEN, "'all files uploaded' is for the requester of '%s' (or an admin)",
				  p->ds_name);
	} else if (is_write(method) && !acc.may_upload && !p->complete) {
		rc = al_error_set(AL_ERR_FORBIDDEN,
				  "uploading to '%s' is for its requester and for members of workspace '%s' with the "
				  "researcher or data-engineer role",
				  p->ds_name, acc.workspace ? acc.workspace : "?");
	} else if (is_write(method) && strcmp(stage, STAGE_UPLOADING)) {
		/* The uploader knows nothing of the gates: the frontend keeps a
		 * datasource past Uploading closed. */
		rc = al_error_set(AL_ERR_CONFLICT, "datasource '%s' is at stage %s: it takes uploads only while Uploading",
				  p->ds_name, *stage ? stage : "<unset>");
	}
out:
	json_decref(ds);
	return rc;
}

static enum http_stream_decision on_headers(void *ud, const struct http_request *req, struct http_response *resp,
					    void **ctx)
{
	struct uploader_route *r = ud;
	const char *path = req->path, *name, *rest, *method = req->method;
	const char *override = http_request_header(req, "X-HTTP-Method-Override");
	const char *cl = http_request_header(req, "Content-Length"), *te = http_request_header(req, "Transfer-Encoding");
	struct proxy *p = NULL;
	int64_t length = 0;
	int body, rc;

	*ctx = NULL;
	if (strncmp(path, UPLOADER_ROUTE_PREFIX, strlen(UPLOADER_ROUTE_PREFIX)))
		return HTTP_STREAM_PASS;
	name = path + strlen(UPLOADER_ROUTE_PREFIX);
	rest = strchr(name, '/');
	if (!rest)
		rest = name + strlen(name);
	if (!name_ok(name, (size_t)(rest - name)) || !rest_ok(rest)) {
		http_response_error(resp, AL_ERR_NOT_FOUND, "no such uploader");
		return HTTP_STREAM_ANSWER;
	}
	if (override && !strcmp(method, "POST"))
		method = override;
	if (cl) {
		char *end = NULL;
		long long n;
		errno = 0;
		n = strtoll(cl, &end, 10);
		if (errno || end == cl || *end || n < 0) {
			http_response_error(resp, AL_ERR_INVALID, "Content-Length: not a length");
			return HTTP_STREAM_ANSWER;
		}
		length = n;
	}
	body = length > 0 || (te && strcasestr(te, "chunked"));
	if (!cl && body)
		length = -1;

	if (!(p = calloc(1, sizeof(*p)))) {
		http_response_error(resp, AL_ERR_NOMEM, "out of memory");
		return HTTP_STREAM_ANSWER;
	}
	p->r = r;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	buf_init(&p->body, UPLOADER_ROUTE_MAX_ANSWER);
	if (!(p->answer_headers = json_array()) || !(p->name = util_strndup(name, (size_t)(rest - name)))) {
		rc = oom();
		goto fail;
	}
	if (!(p->c = curl_dl())) {
		rc = AL_ERR_UNAVAILABLE;
		goto fail;
	}
	if ((rc = admit(p, req, method, rest)))
		goto fail;
	touch(r, p->name);
	if ((rc = prepare(p, req, method, body, length)))
		goto fail;
	if (!body) {
		p->res = p->c->easy_perform(p->h);
		answer(p, resp);
		proxy_free(p);
		return HTTP_STREAM_ANSWER;
	}
	if (pthread_create(&p->thread, NULL, transfer_thread, p)) {
		rc = al_error_set(AL_ERR_UNAVAILABLE, "cannot start the transfer: try again");
		goto fail;
	}
	p->thread_started = 1;
	*ctx = p;
	return HTTP_STREAM_BODY;
fail:
	http_response_error(resp, rc, NULL);
	proxy_free(p);
	return HTTP_STREAM_ANSWER;
}

static int on_data(void *ctx, const struct http_request *req, const char *data, size_t len, struct http_response *resp)
{
	struct proxy *p = ctx;
	int done;

	(void)req;
	pthread_mutex_lock(&p->mu);
	if (!p->done) {
		p->chunk = data;
		p->chunk_len = len;
		pthread_cond_broadcast(&p->cv);
		while (p->chunk_len && !p->done)
			pthread_cond_wait(&p->cv, &p->mu);
		p->chunk = NULL;
		p->chunk_len = 0;
	}
	done = p->done;
	pthread_mutex_unlock(&p->mu);
	if (done) {
		/* The uploader answered before the whole body (a 409, 413, 460 ...). */
		answer(p, resp);
		return 1;
	}
	/* A long PATCH is activity too. */
	touch(p->r, p->name);
	return 0;
}

static void on_end(void *ctx, const struct http_request *req, struct http_response *resp)
{
	struct proxy *p = ctx;
	(void)req;
	pthread_mutex_lock(&p->mu);
	p->eof = 1;
	pthread_cond_broadcast(&p->cv);
	while (!p->done)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
	answer(p, resp);
}

static void on_close(void *ctx)
{
	struct proxy *p = ctx;
	if (p->thread_started) {
		/* The browser went away in the middle: curl stops sending, and the
		 * uploader keeps what arrived. */
		pthread_mutex_lock(&p->mu);
		p->aborted = 1;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->thread, NULL);
	}
	proxy_free(p);
}

const struct http_stream_ops *uploader_route_stream_ops(void)
{
	static const struct http_stream_ops ops = { on_headers, on_data, on_end, on_close };
	return &ops;
}

/* ---- open / close ------------------------------------------------------------- */

int uploader_route_open(struct uploader_route **out, const struct uploader_route_options *o)
{
	struct uploader_route *r;
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (!o->api || !o->kc || !o->namespace)
		return al_error_set(AL_ERR_INVALID, "the uploader proxy needs the API, a Kubernetes client and a namespace");
	if (!o->secret_file || !*o->secret_file)
		return al_error_set(AL_ERR_INVALID,
				    "no proxy secret: set AIRLOCK_UPLOADER_PROXY_SECRET_FILE (the uploaders trust only a "
				    "frontend that sends it)");
	if (o->url_template && strncmp(o->url_template, "http://", 7) && strncmp(o->url_template, "https://", 8))
		return al_error_set(AL_ERR_INVALID, "AIRLOCK_UPLOADER_URL_TEMPLATE \"%.80s\": must start with http:// or https://",
				    o->url_template);
	if ((rc = util_read_file(o->secret_file, 4096, &text, &len)))
		return al_error_wrap(rc, "the proxy secret");
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = '\0';
	if (len < SECRET_MIN || strchr(text, '\n') || strchr(text, '\r')) {
		sodium_memzero(text, len);
		free(text);
		return al_error_set(AL_ERR_INVALID, "the proxy secret in %s must be one line of at least %d characters",
				    o->secret_file, SECRET_MIN);
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		sodium_memzero(text, len);
		free(text);
		return oom();
	}
	r->secret = text;
	r->api = o->api;
	r->kc = o->kc;
	r->authenticate = o->authenticate;
	r->authenticate_ud = o->authenticate_ud;
	pthread_mutex_init(&r->mu, NULL);
	if (!(r->ns = util_strdup(o->namespace)) ||
	    !(r->tmpl = util_strdup(o->url_template ? o->url_template : UPLOADER_ROUTE_DEFAULT_TEMPLATE)) ||
	    !(r->touched = json_object()) || !(r->owners = json_object())) {
		uploader_route_close(r);
		return oom();
	}
	*out = r;
	return AL_OK;
}

void uploader_route_close(struct uploader_route *r)
{
	if (!r)
		return;
	if (r->secret) {
		sodium_memzero(r->secret, strlen(r->secret));
		free(r->secret);
	}
	free(r->ns);
	free(r->tmpl);
	json_decref(r->touched);
	json_decref(r->owners);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
