/*
 * watch.c - watch streams: GET <collection>?watch=1 answered with one JSON
 * event per line ({"type": ..., "object": {...}}) for as long as the server
 * keeps the connection open.
 *
 * The body is fed through the bounded line splitter as libcurl delivers it;
 * each line becomes one callback. Stopping is cooperative: the progress
 * callback (called about once a second even when no data flows) and the
 * write callback check *stop. A connection that goes silent (no byte, not
 * even a bookmark, for 2 x timeoutSeconds + 30 s) is presumed dead.
 */
#include "kube/kube.h"
#include "kube/kube_internal.h"

#include "common/buf.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

#define ERROR_BODY_MAX ((size_t)1 << 20)

static const char *const event_types[] = { "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR" };

int kube_watch_event_parse(const char *line, size_t len, char **out_type, json_t **out_object)
{
	json_error_t jerr;
	json_t *ev, *obj;
	const char *type;
	size_t i;

	if (out_type)
		*out_type = NULL;
	if (out_object)
		*out_object = NULL;
	if (!line || !out_type || !out_object)
		return al_error_set(AL_ERR_INVALID, "watch event: no line or outputs");
	if (!(ev = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr)))
		return al_error_set(AL_ERR_INVALID, "watch event is not JSON (column %d: %s)", jerr.column, jerr.text);
	if (!json_is_object(ev)) {
		json_decref(ev);
		return al_error_set(AL_ERR_INVALID, "watch event is not a JSON object");
	}
	type = json_string_value(json_object_get(ev, "type"));
	obj = json_object_get(ev, "object");
	for (i = 0; type && i < sizeof(event_types) / sizeof(event_types[0]); i++)
		if (!strcmp(type, event_types[i]))
			break;
	if (!type || i == sizeof(event_types) / sizeof(event_types[0])) {
		json_decref(ev);
		return al_error_set(AL_ERR_INVALID,
				    "watch event type must be ADDED, MODIFIED, DELETED, BOOKMARK or ERROR");
	}
	if (!json_is_object(obj)) {
		json_decref(ev);
		return al_error_set(AL_ERR_INVALID, "watch event %s has no object", event_types[i]);
	}
	if (!(*out_type = strdup(event_types[i]))) {
		json_decref(ev);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	*out_object = json_incref(obj);
	json_decref(ev);
	return AL_OK;
}

struct watch_ctx {
	const struct curl_dl *cu;
	CURL *curl;
	const char *path;
	struct kube_line_splitter *split;
	kube_watch_fn fn;
	void *userdata;
	const atomic_int *stop;
	long status;       /* 0 until the first byte of the body */
	struct buf errbody; /* a non-200 answer's body (its Status) */
	int stopped;       /* by *stop or by the callback */
	int rc;            /* the error that ended the stream */
};

/* 1 = stop (callback), negative = error, 0 = go on */
static int on_line(void *userdata, const char *line, size_t len)
{
	struct watch_ctx *w = userdata;
	char *type = NULL;
	json_t *obj = NULL;
	int rc;
	size_t i = 0;

	while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
		i++;
	if (i == len)
		return 0; /* a blank line carries nothing */
	if ((rc = kube_watch_event_parse(line, len, &type, &obj)) < 0)
		return al_error_wrap(AL_ERR_UNAVAILABLE, "GET %s: the watch stream broke", w->path);
	if (!strcmp(type, "ERROR")) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		const char *msg = json_string_value(json_object_get(obj, "message"));
		if (code == 410)
			rc = al_error_set(AL_ERR_GONE, "GET %s: %s (relist)", w->path,
					  msg ? msg : "the resourceVersion is too old");
		else
			rc = al_error_set(AL_ERR_UNAVAILABLE, "GET %s: watch error %lld: %s", w->path, (long long)code,
					  msg ? msg : "no message");
	} else {
		rc = w->fn(w->userdata, type, obj) ? 1 : 0;
	}
	free(type);
	json_decref(obj);
	return rc;
}

static size_t on_write(char *data, size_t size, size_t n, void *userdata)
{
	struct watch_ctx *w = userdata;
	size_t len = size * n;
	int rc;

	if (!w->status && w->cu->easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &w->status) != CURLE_OK)
		w->status = -1;
	if (w->stop && atomic_load(w->stop)) {
		w->stopped = 1;
		return 0;
	}
	if (w->status != 200) {
		/* keep what fits of the Status; the rest is of no use */
		size_t room = w->errbody.max - w->errbody.len;
		if (room && buf_append(&w->errbody, data, len < room ? len : room) < 0)
			return 0;
		return len;
	}
	rc = kube_line_splitter_feed(w->split, data, len);
	if (rc > 0) {
		w->stopped = 1;
		return 0;
	}
	if (rc < 0) {
		w->rc = rc;
		return 0;
	}
	return len;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct watch_ctx *w = userdata;

	if (w->stop && atomic_load(w->stop)) {
		w->stopped = 1;
		return 1;
	}
	return 0;
}

static int build_url(struct buf *url, const struct curl_dl *cu, CURL *curl, const char *server, const char *path,
		     const char *label_selector, const char *resource_version, int timeout_seconds)
{
	int rc;

	if ((rc = buf_appendf(url, "%s%s%swatch=1&allowWatchBookmarks=true", server, path,
			      strchr(path, '?') ? "&" : "?")) < 0)
		return rc;
	if (resource_version && resource_version[0]) {
		char *e = cu->easy_escape(curl, resource_version, 0);
		if (!e)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		rc = buf_appendf(url, "&resourceVersion=%s", e);
		cu->free(e);
		if (rc < 0)
			return rc;
	}
	if (timeout_seconds > 0 && (rc = buf_appendf(url, "&timeoutSeconds=%d", timeout_seconds)) < 0)
		return rc;
	if (label_selector && label_selector[0]) {
		char *e = cu->easy_escape(curl, label_selector, 0);
		if (!e)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		rc = buf_appendf(url, "&labelSelector=%s", e);
		cu->free(e);
		if (rc < 0)
			return rc;
	}
	return AL_OK;
}

int kube_watch(struct kube_client *kc, const char *collection_path, const char *label_selector,
	       const char *resource_version, int timeout_seconds, kube_watch_fn fn, void *userdata,
	       const atomic_int *stop)
{
	const struct curl_dl *cu;
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *headers = NULL;
	struct watch_ctx w;
	struct buf url, auth;
	long silent_s;
	CURLcode cc;
	int rc;

	memset(&w, 0, sizeof(w));
	buf_init(&w.errbody, ERROR_BODY_MAX);
	buf_init(&url, 0);
	buf_init(&auth, 4096 + 64 * 1024);
	if (!kc || !fn || !kube_valid_path(collection_path))
		return al_error_set(AL_ERR_INVALID,
				    "kube watch: need a client, a callback and a collection path starting with '/'");
	if (timeout_seconds < 0 || timeout_seconds > 24 * 3600)
		return al_error_set(AL_ERR_INVALID, "kube watch: timeoutSeconds %d is outside 0..86400", timeout_seconds);
	cu = kube_client_curl(kc);
	w.cu = cu;
	w.path = collection_path;
	w.fn = fn;
	w.userdata = userdata;
	w.stop = stop;
	if (stop && atomic_load(stop))
		return AL_OK;
	if ((rc = kube_line_splitter_new(&w.split, KUBE_WATCH_LINE_MAX, on_line, &w)) < 0)
		return rc;
	if (!(w.curl = cu->easy_init())) {
		rc = al_error_set(AL_ERR_NOMEM, "kube watch: cannot create a libcurl handle");
		goto out;
	}
	if ((rc = build_url(&url, cu, w.curl, kube_client_server(kc), collection_path, label_selector,
			    resource_version, timeout_seconds)) < 0)
		goto out;
	if ((rc = kube_client_setup(kc, w.curl, errbuf, &headers, &auth)) < 0)
		goto out;
	/* no total timeout: a dead connection is found by its silence */
	silent_s = timeout_seconds > 0 ? 2L * timeout_seconds + 30 : 3600L + 30;
	cu->easy_setopt(w.curl, CURLOPT_URL, url.ptr);
	cu->easy_setopt(w.curl, CURLOPT_HTTPHEADER, headers);
	cu->easy_setopt(w.curl, CURLOPT_HTTPGET, 1L);
	cu->easy_setopt(w.curl, CURLOPT_WRITEFUNCTION, on_write);
	cu->easy_setopt(w.curl, CURLOPT_WRITEDATA, &w);
	cu->easy_setopt(w.curl, CURLOPT_NOPROGRESS, 0L);
	cu->easy_setopt(w.curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	cu->easy_setopt(w.curl, CURLOPT_XFERINFODATA, &w);
	cu->easy_setopt(w.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	cu->easy_setopt(w.curl, CURLOPT_LOW_SPEED_TIME, silent_s);

	kube_client_count(kc, "WATCH");
	cc = cu->easy_perform(w.curl);
	if (w.stopped) {
		rc = AL_OK;
		goto out;
	}
	if (w.rc < 0) {
		rc = w.rc; /* message set where it happened */
		goto out;
	}
	if (cc != CURLE_OK) {
		if (cc == CURLE_OPERATION_TIMEDOUT)
			rc = al_error_set(AL_ERR_UNAVAILABLE,
					  "GET %s: the watch connection was silent for %ld s and is presumed dead",
					  collection_path, silent_s);
		else
			rc = al_error_set(AL_ERR_UNAVAILABLE, "GET %s: watch: cannot reach the Kubernetes API server at %s: %s",
					  collection_path, kube_client_server(kc), errbuf[0] ? errbuf : cu->easy_strerror(cc));
		goto out;
	}
	if (!w.status)
		cu->easy_getinfo(w.curl, CURLINFO_RESPONSE_CODE, &w.status);
	if (w.status != 200) {
		json_error_t jerr;
		json_t *answer = w.errbody.len ? json_loadb(w.errbody.ptr, w.errbody.len, 0, &jerr) : NULL;
		rc = kube_status_error(w.status, answer, "GET", collection_path);
		json_decref(answer);
		goto out;
	}
	/* the server ended the stream: a last line without a newline still counts */
	rc = kube_line_splitter_flush(w.split);
	if (rc > 0)
		rc = AL_OK;
out:
	if (headers)
		cu->slist_free_all(headers);
	if (w.curl)
		cu->easy_cleanup(w.curl);
	kube_line_splitter_free(w.split);
	kube_auth_free(&auth);
	buf_free(&url);
	buf_free(&w.errbody);
	return rc;
}
