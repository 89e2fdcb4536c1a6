/*
 * The Kubernetes controller (kube_controller.h): a key-only list/watch
 * thread feeding the shared work queue, worker threads gated on leadership,
 * finalizers, bindings and Events around the shared reconciler.
 */
#include "operator/kube_controller.h"
#include "audit/audit.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "gates/gates.h"
#include "kube/kube.h"
#include "operator/workqueue.h"
#include "resource/resource.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DS_KIND "AnalyticsWorkspaceDataSource"
#define DSB_KIND "AnalyticsWorkspaceDataBinding"
#define DS_PLURAL "analyticsworkspacedatasources"
#define WORKSPACE_LABEL "xlscsde.nhs.uk/workspace"
#define EVENT_DEADLINE_MS 5000
#define EVENT_MESSAGE_MAX 1024
#define WATCH_FAILURES_RELIST 3
/* reconcile(): this replica stopped leading between two steps. */
#define NOT_LEADING 1

struct kube_controller {
	struct operator_ctx *ctx;
	struct kube_controller_options o;
	char *watch_ns;   /* NULL = every namespace */
	char *instance;
	struct workqueue *queue;
	pthread_t watcher;
	pthread_t *workers;
	int n_workers, n_started, watcher_started;
	atomic_int stop;
	atomic_int synced;
	atomic_ullong reconciles, errors, conflicts, watch_restarts, events;
};

static const char *md_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

static int acting(struct kube_controller *c)
{
	return !c->o.is_leader || c->o.is_leader(c->o.leader_ud);
}

static void nap(struct kube_controller *c, int ms)
{
	while (ms > 0 && !atomic_load(&c->stop)) {
		int step = ms < 100 ? ms : 100;
		struct timespec ts = { 0, (long)step * 1000000L };
		nanosleep(&ts, NULL);
		ms -= step;
	}
}

/* ---- Events ---- */

/* "collect-failed" -> "CollectFailed" (Kubernetes reasons are CamelCase). */
static void camel(const char *event, char *out, size_t n)
{
	size_t k = 0;
	int up = 1;
	for (const char *p = event; *p && k + 1 < n; p++) {
		if (*p == '-' || *p == '_') {
			up = 1;
			continue;
		}
		out[k++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
		up = 0;
	}
	out[k] = '\0';
}

/* Cuts `s` to at most `max` bytes on a UTF-8 character boundary. */
static void cut_utf8(struct buf *b, size_t max)
{
	size_t n = b->len;
	if (n <= max)
		return;
	n = max;
	while (n > 0 && ((unsigned char)b->ptr[n] & 0xC0) == 0x80)
		n--;
	b->ptr[n] = '\0';
	b->len = n;
}

static void emit_event(void *ud, const json_t *ds, const char *event, int failure)
{
	struct kube_controller *c = ud;
	const char *ns = md_str(ds, "namespace"), *name = md_str(ds, "name");
	const char *msg = json_string_value(json_object_get(json_object_get(ds, "status"), "message"));
	char reason[64], now[UTIL_TIME_LEN], *hex = NULL, *path = NULL;
	struct buf ev_name, note;
	json_t *body = NULL, *out = NULL;
	int rc;

	if (!ns || !name)
		return;
	buf_init(&ev_name, 512);
	buf_init(&note, 8192);
	camel(event, reason, sizeof(reason));
	util_now_rfc3339_seconds(now);
	hex = util_random_hex(8);
	if (msg && *msg)
		rc = buf_appends(&note, msg);
	else
		rc = buf_appendf(&note, "%s: stage %s, dataState %s", event, *gates_stage(ds) ? gates_stage(ds) : "unset",
				 gates_data_state(ds));
	cut_utf8(&note, EVENT_MESSAGE_MAX);
	/* Event names must be unique: <datasource>.<random>, within 253. */
	if (rc || !hex || buf_appendf(&ev_name, "%.200s.%s", name, hex) ||
	    !(path = kube_path("v1", ns, "events", NULL, NULL)))
		goto out;
	body = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s, s:s?, s:s?}, s:s, s:s, s:s, s:s, s:s, s:i, "
			 "s:{s:s}, s:s, s:s}",
			 "apiVersion", "v1", "kind", "Event", "metadata", "name", buf_cstr(&ev_name), "namespace", ns,
			 "involvedObject", "apiVersion", RESOURCE_API_VERSION, "kind", DS_KIND, "namespace", ns, "name",
			 name, "uid", md_str(ds, "uid"), "resourceVersion", md_str(ds, "resourceVersion"), "reason",
			 reason, "message", buf_cstr(&note), "type", failure ? "Warning" : "Normal", "firstTimestamp",
			 now, "lastTimestamp", now, "count", 1, "source", "component", KUBE_CONTROLLER_COMPONENT,
			 "reportingComponent", "xlscsde.nhs.uk/" KUBE_CONTROLLER_COMPONENT, "reportingInstance",
			 c->instance);
	if (!body)
		goto out;
	rc = kube_request_retry(c->o.kc, "POST", path, body, NULL, EVENT_DEADLINE_MS, NULL, &out);
	if (rc)
		log_warn("datasource %s/%s: cannot record the Event %s: %s", ns, name, reason, al_error_message());
	else
		atomic_fetch_add(&c->events, 1);
out:
	json_decref(body);
	json_decref(out);
	free(path);
	free(hex);
	buf_free(&ev_name);
	buf_free(&note);
}

/* ---- finalizer ---- */

static int has_finalizer(const json_t *ds)
{
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(json_object_get(ds, "metadata"), "finalizers"), i, f)
		if (json_is_string(f) && !strcmp(json_string_value(f), KUBE_CONTROLLER_FINALIZER))
			return 1;
	return 0;
}

static int is_deleting(const json_t *ds)
{
	return json_object_get(json_object_get(ds, "metadata"), "deletionTimestamp") != NULL;
}

/* Adds (add = 1) or removes our finalizer with the object's resourceVersion. */
static int set_finalizer(struct kube_controller *c, const json_t *ds, int add, json_t **out)
{
	json_t *copy = json_deep_copy(ds), *md, *list, *nl;
	size_t i;
	json_t *f;
	int rc;

	*out = NULL;
	if (!copy)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	md = json_object_get(copy, "metadata");
	list = json_object_get(md, "finalizers");
	if (!(nl = json_array())) {
		json_decref(copy);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	json_array_foreach(list, i, f)
		if (!json_is_string(f) || strcmp(json_string_value(f), KUBE_CONTROLLER_FINALIZER))
			json_array_append(nl, f);
	if (add)
		json_array_append_new(nl, json_string(KUBE_CONTROLLER_FINALIZER));
	json_object_set_new(md, "finalizers", nl);
	rc = store_update(c->ctx->store, copy, NULL, out);
	json_decref(copy);
	return rc;
}

/* ---- bindings ---- */

static char *binding_name(const char *ds)
{
	struct buf b;
	buf_init(&b, 512);
	if (buf_appendf(&b, "dsb-%.249s", strncmp(ds, "ds-", 3) ? ds : ds + 3)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

static json_t *system_audit(const char *action)
{
	/* The store fills in the object (with its uid). */
	json_t *a = audit_entry_new("system", OPERATOR_ACTOR, action, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	if (a)
		json_object_del(a, "object");
	return a;
}

/* The datasource's binding to the workspace its label names: created when
 * missing (owned by the datasource), spec.workspace kept in step. */
static int ensure_binding(struct kube_controller *c, const json_t *ds)
{
	const char *ns = md_str(ds, "namespace"), *name = md_str(ds, "name");
	const char *ws = json_string_value(json_object_get(json_object_get(json_object_get(ds, "metadata"), "labels"),
							   WORKSPACE_LABEL));
	json_t *cur = NULL, *obj = NULL, *audit = NULL, *out = NULL;
	char *bname;
	int rc;

	if (!ws || !*ws || !ns || !name)
		return AL_OK;
	if (!(bname = binding_name(name)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = store_get(c->ctx->store, DSB_KIND, ns, bname, &cur);
	if (rc == AL_ERR_NOT_FOUND) {
		obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}, s:[{s:s, s:s, s:s, s:s?, s:b, s:b}]}, s:{s:s, s:s}}",
				"apiVersion", RESOURCE_API_VERSION, "kind", DSB_KIND, "metadata", "name", bname,
				"namespace", ns, "labels", WORKSPACE_LABEL, ws, "ownerReferences", "apiVersion",
				RESOURCE_API_VERSION, "kind", DS_KIND, "name", name, "uid", md_str(ds, "uid"), "controller",
				1, "blockOwnerDeletion", 1, "spec", "workspace", ws, "datasource", name);
		audit = system_audit("bind");
		if (!obj || !audit) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		rc = store_create(c->ctx->store, obj, audit, &out);
		if (rc == AL_ERR_EXISTS)
			rc = AL_OK; /* someone else made it meanwhile: seen next time */
		else if (!rc)
			log_info("datasource %s/%s: bound to workspace %s (%s)", ns, name, ws, bname);
	} else if (rc == AL_OK) {
		const char *bds = json_string_value(json_object_get(json_object_get(cur, "spec"), "datasource"));
		const char *bws = json_string_value(json_object_get(json_object_get(cur, "spec"), "workspace"));
		if (!bds || strcmp(bds, name)) {
			log_warn("datasource %s/%s: binding %s binds datasource %s, not this one; left alone", ns, name,
				 bname, bds ? bds : "(none)");
		} else if (!bws || strcmp(bws, ws)) {
			json_object_set_new(json_object_get(cur, "spec"), "workspace", json_string(ws));
			if (!(audit = system_audit("bind"))) {
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
				goto out;
			}
			rc = store_update(c->ctx->store, cur, audit, &out);
		}
	}
out:
	json_decref(cur);
	json_decref(obj);
	json_decref(audit);
	json_decref(out);
	free(bname);
	return rc;
}

static int delete_binding(struct kube_controller *c, const json_t *ds)
{
	const char *ns = md_str(ds, "namespace"), *name = md_str(ds, "name");
	json_t *cur = NULL, *audit = NULL;
	char *bname = name ? binding_name(name) : NULL;
	int rc;

	if (!bname)
		return name ? al_error_set(AL_ERR_NOMEM, "out of memory") : AL_OK;
	rc = store_get(c->ctx->store, DSB_KIND, ns, bname, &cur);
	if (rc == AL_ERR_NOT_FOUND) {
		rc = AL_OK;
	} else if (rc == AL_OK) {
		const char *bds = json_string_value(json_object_get(json_object_get(cur, "spec"), "datasource"));
		if (bds && !strcmp(bds, name)) {
			if (!(audit = system_audit("unbind")))
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			else
				rc = store_delete(c->ctx->store, DSB_KIND, ns, bname, md_str(cur, "resourceVersion"), audit);
			if (rc == AL_ERR_NOT_FOUND)
				rc = AL_OK;
		}
	}
	json_decref(cur);
	json_decref(audit);
	free(bname);
	return rc;
}

/* ---- reconcile ---- */

static int finalize(struct kube_controller *c, const json_t *ds)
{
	json_t *out = NULL;
	int rc;

	if ((rc = operator_cleanup_datasource(c->ctx, ds)))
		return rc;
	if ((rc = delete_binding(c, ds)))
		return rc;
	if (!acting(c))
		return NOT_LEADING;
	rc = set_finalizer(c, ds, 0, &out);
	json_decref(out);
	if (!rc)
		log_info("datasource %s/%s: cleaned up; finalizer removed", md_str(ds, "namespace"), md_str(ds, "name"));
	return rc;
}

static int reconcile(struct kube_controller *c, const char *ns, const char *name, int *requeue_ms)
{
	json_t *ds = NULL, *out = NULL;
	int rc, brc;

	*requeue_ms = 0;
	rc = store_get(c->ctx->store, DS_KIND, ns, name, &ds);
	if (rc == AL_ERR_NOT_FOUND)
		return AL_OK; /* gone: its children went through the finalizer (or owner references) */
	if (rc)
		return rc;
	/* Leadership is checked again before each step that writes: a step
	 * whose calls were retried for a while may have outlived the lease. */
	if (!acting(c)) {
		json_decref(ds);
		return NOT_LEADING;
	}
	if (is_deleting(ds)) {
		rc = has_finalizer(ds) ? finalize(c, ds) : AL_OK;
		json_decref(ds);
		return rc;
	}
	if (!has_finalizer(ds)) {
		rc = set_finalizer(c, ds, 1, &out);
		json_decref(ds);
		if (rc) {
			json_decref(out);
			return rc;
		}
		ds = out;
	}
	brc = ensure_binding(c, ds);
	if (brc) {
		char *m = util_strdup(al_error_message());
		log_warn("datasource %s/%s: cannot reconcile its binding: %s", ns, name, m ? m : "out of memory");
		free(m);
	}
	json_decref(ds);
	if (!acting(c))
		return NOT_LEADING;
	rc = operator_reconcile_datasource(c->ctx, ns, name, requeue_ms);
	return rc ? rc : brc;
}

static void process(struct kube_controller *c, const char *key)
{
	char *ns = NULL, *name = NULL;
	int requeue = 0, rc;

	if (workqueue_key_split(key, &ns, &name)) {
		workqueue_forget(c->queue, key);
		return;
	}
	rc = reconcile(c, ns, name, &requeue);
	if (rc == NOT_LEADING) {
		/* Kept for whenever this replica leads again. */
		workqueue_add(c->queue, key, 0);
		free(ns);
		free(name);
		return;
	}
	atomic_fetch_add(&c->reconciles, 1);
	if (rc == AL_ERR_CONFLICT) {
		/* The object moved on: read it again and redo, now. */
		atomic_fetch_add(&c->conflicts, 1);
		workqueue_forget(c->queue, key);
		workqueue_add(c->queue, key, 0);
	} else if (rc) {
		int64_t backoff = 0;
		char *msg = util_strdup(al_error_message());
		atomic_fetch_add(&c->errors, 1);
		workqueue_add_rate_limited(c->queue, key, &backoff);
		log_warn("reconcile %s/%s failed (retry in %lld ms): %s", ns, name, (long long)backoff,
			 msg ? msg : "out of memory");
		free(msg);
	} else {
		workqueue_forget(c->queue, key);
		if (requeue > 0)
			workqueue_add(c->queue, key, requeue);
	}
	free(ns);
	free(name);
}

static void *worker_main(void *arg)
{
	struct kube_controller *c = arg;

	while (!atomic_load(&c->stop)) {
		char *key = NULL;
		int rc;
		if (!acting(c)) {
			nap(c, 200);
			continue;
		}
		rc = workqueue_get(c->queue, 500, &key);
		if (rc == AL_ERR_UNAVAILABLE)
			break;
		if (rc)
			continue;
		if (acting(c))
			process(c, key);
		else
			workqueue_add(c->queue, key, 0); /* lost the lease meanwhile: keep it for later */
		workqueue_done(c->queue, key);
		free(key);
	}
	return NULL;
}

/* ---- list and watch ---- */

static int queue_object(struct kube_controller *c, const json_t *obj)
{
	const char *ns = md_str(obj, "namespace"), *name = md_str(obj, "name");
	char *key;
	int rc;
	if (!ns || !name)
		return AL_OK;
	if (!(key = workqueue_key(ns, name)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = workqueue_add(c->queue, key, 0);
	free(key);
	return rc;
}

static int append_escaped(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = AL_OK;
	for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '.' || *p == '_' || *p == '~')
			rc = buf_appendc(b, (char)*p);
		else
			rc = buf_appendf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
	}
	return rc;
}

/* Lists the datasources page by page (500 a page) and queues their keys;
 * only one page of objects is held at a time, so a resync of many
 * thousands costs little memory. An expired continue token (410) starts
 * the list again. */
static int list_all(struct kube_controller *c, const char *path, char rv[32])
{
	char *cont = NULL;
	int restarts = 0, rc = AL_OK;

	for (;;) {
		struct buf url;
		json_t *page = NULL, *it;
		const char *next, *list_rv;
		size_t i;

		buf_init(&url, 64 * 1024);
		rc = buf_appendf(&url, "%s?limit=500", path);
		if (!rc && cont && *cont && !(rc = buf_appends(&url, "&continue=")))
			rc = append_escaped(&url, cont);
		if (rc) {
			buf_free(&url);
			break;
		}
		rc = kube_request_retry(c->o.kc, "GET", buf_cstr(&url), NULL, NULL, 30000, NULL, &page);
		buf_free(&url);
		if (rc == AL_ERR_GONE && cont && restarts < 3) {
			json_decref(page);
			free(cont);
			cont = NULL;
			restarts++;
			continue;
		}
		if (rc) {
			json_decref(page);
			break;
		}
		json_array_foreach(json_object_get(page, "items"), i, it)
			if ((rc = queue_object(c, it)))
				break;
		list_rv = json_string_value(json_object_get(json_object_get(page, "metadata"), "resourceVersion"));
		next = json_string_value(json_object_get(json_object_get(page, "metadata"), "continue"));
		/* The resourceVersion of the whole list is on every page (one snapshot). */
		if (!rc && list_rv && strlen(list_rv) < 32)
			snprintf(rv, 32, "%s", list_rv);
		free(cont);
		cont = next && *next ? util_strdup(next) : NULL;
		json_decref(page);
		if (rc || !cont)
			break;
	}
	free(cont);
	if (!rc)
		atomic_store(&c->synced, 1);
	return rc;
}

struct watch_state {
	struct kube_controller *c;
	char rv[32];
};

static int on_event(void *ud, const char *type, const json_t *obj)
{
	struct watch_state *w = ud;
	const char *rv = md_str(obj, "resourceVersion");
	if (rv && strlen(rv) < sizeof(w->rv))
		snprintf(w->rv, sizeof(w->rv), "%s", rv);
	if (!strcmp(type, "BOOKMARK") || !strcmp(type, "DELETED"))
		return 0;
	/* Skip what has nothing to do (waiting on people, our own status
	 * writes); the resync still visits everything. */
	if (!strcmp(type, "ADDED") || operator_has_work(obj) || is_deleting(obj) || !has_finalizer(obj))
		queue_object(w->c, obj);
	return 0;
}

static int watch_timeout_s(const struct kube_controller *c)
{
	int lo = c->o.watch_timeout_min_s > 0 ? c->o.watch_timeout_min_s : 240;
	int hi = c->o.watch_timeout_max_s >= lo ? c->o.watch_timeout_max_s : (lo > 360 ? lo : 360);
	return lo + (int)randombytes_uniform((uint32_t)(hi - lo + 1));
}

static void *watcher_main(void *arg)
{
	struct kube_controller *c = arg;
	struct watch_state w = { .c = c };
	char *path = kube_path(RESOURCE_API_VERSION, c->watch_ns, DS_PLURAL, NULL, NULL);
	int need_list = 1, listed_once = 0, failures = 0;
	int64_t next_resync = 0;

	if (!path) {
		log_error("watch %s: cannot build the collection path: %s", DS_PLURAL, al_error_message());
		return NULL;
	}
	while (!atomic_load(&c->stop)) {
		int rc, timeout;
		if (need_list || util_monotonic_ms() >= next_resync) {
			if (listed_once && need_list)
				atomic_fetch_add(&c->watch_restarts, 1);
			if ((rc = list_all(c, path, w.rv))) {
				int ms = kube_backoff_ms(failures < 30 ? failures : 30, 200, 30000);
				failures++;
				log_warn("list %s%s%s failed (retry in %d ms): %s", DS_PLURAL, c->watch_ns ? " in " : "",
					 c->watch_ns ? c->watch_ns : "", ms, al_error_message());
				nap(c, ms);
				continue;
			}
			if (!listed_once)
				log_info("listed %s%s%s; watching from resourceVersion %s", DS_PLURAL,
					 c->watch_ns ? " in " : "", c->watch_ns ? c->watch_ns : "", w.rv);
			listed_once = 1;
			need_list = 0;
			failures = 0;
			next_resync = util_monotonic_ms() + (int64_t)c->o.resync_seconds * 1000;
		}
		/* End the watch in time for the next resync. */
		timeout = watch_timeout_s(c);
		{
			int64_t left = (next_resync - util_monotonic_ms()) / 1000;
			if (left < timeout)
				timeout = left > 1 ? (int)left : 1;
		}
		rc = kube_watch(c->o.kc, path, NULL, w.rv, timeout, on_event, &w, &c->stop);
		if (atomic_load(&c->stop))
			break;
		if (rc == AL_OK) {
			failures = 0;
			continue;
		}
		if (rc == AL_ERR_GONE) {
			log_info("watch %s: %s", DS_PLURAL, al_error_message());
			need_list = 1;
			continue;
		}
		atomic_fetch_add(&c->watch_restarts, 1);
		{
			int ms = kube_backoff_ms(failures < 30 ? failures : 30, 200, 30000);
			failures++;
			log_warn("watch %s failed (retry in %d ms): %s", DS_PLURAL, ms, al_error_message());
			if (failures >= WATCH_FAILURES_RELIST)
				need_list = 1;
			nap(c, ms);
		}
	}
	free(path);
	return NULL;
}

/* ---- lifecycle ---- */

int kube_controller_start(struct kube_controller **out, struct operator_ctx *ctx,
			  const struct kube_controller_options *o)
{
	struct kube_controller *c;
	int rc;

	*out = NULL;
	if (!ctx || !o || !o->kc)
		return al_error_set(AL_ERR_INVALID, "kube controller: a context and a Kubernetes client are required");
	if (o->workers < 0 || o->workers > KUBE_CONTROLLER_MAX_WORKERS)
		return al_error_set(AL_ERR_INVALID, "--workers: must be from 1 to %d", KUBE_CONTROLLER_MAX_WORKERS);
	if (!(c = calloc(1, sizeof(*c))))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	c->ctx = ctx;
	c->o = *o;
	if (!c->o.workers)
		c->o.workers = KUBE_CONTROLLER_DEFAULT_WORKERS;
	if (c->o.resync_seconds <= 0)
		c->o.resync_seconds = KUBE_CONTROLLER_DEFAULT_RESYNC_S;
	c->watch_ns = o->watch_namespace && *o->watch_namespace ? util_strdup(o->watch_namespace) : NULL;
	c->instance = util_strdup(o->instance && *o->instance ? o->instance : KUBE_CONTROLLER_COMPONENT);
	c->o.watch_namespace = c->watch_ns;
	c->o.instance = c->instance;
	c->workers = calloc((size_t)c->o.workers, sizeof(*c->workers));
	if ((o->watch_namespace && *o->watch_namespace && !c->watch_ns) || !c->instance || !c->workers) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if ((rc = workqueue_new(&c->queue, 0, 0)))
		goto fail;
	atomic_init(&c->stop, 0);
	atomic_init(&c->synced, 0);
	ctx->on_transition = emit_event;
	ctx->on_transition_ud = c;
	if (pthread_create(&c->watcher, NULL, watcher_main, c) != 0) {
		rc = al_error_set(AL_ERR_INTERNAL, "cannot start the watch thread");
		goto fail;
	}
	c->watcher_started = 1;
	for (int i = 0; i < c->o.workers; i++) {
		if (pthread_create(&c->workers[i], NULL, worker_main, c) != 0) {
			rc = al_error_set(AL_ERR_INTERNAL, "cannot start worker thread %d", i + 1);
			kube_controller_stop(c);
			return rc;
		}
		c->n_started++;
	}
	log_info("controller: %d workers, resync every %d s, watching %s", c->o.workers, c->o.resync_seconds,
		 c->watch_ns ? c->watch_ns : "every namespace");
	*out = c;
	return AL_OK;
fail:
	if (ctx->on_transition_ud == c) {
		ctx->on_transition = NULL;
		ctx->on_transition_ud = NULL;
	}
	workqueue_free(c->queue);
	free(c->workers);
	free(c->watch_ns);
	free(c->instance);
	free(c);
	return rc;
}

void kube_controller_stop(struct kube_controller *c)
{
	if (!c)
		return;
	atomic_store(&c->stop, 1);
	workqueue_shutdown(c->queue);
	for (int i = 0; i < c->n_started; i++)
		pthread_join(c->workers[i], NULL);
	if (c->watcher_started)
		pthread_join(c->watcher, NULL);
	if (c->ctx->on_transition_ud == c) {
		c->ctx->on_transition = NULL;
		c->ctx->on_transition_ud = NULL;
	}
	workqueue_free(c->queue);
	free(c->workers);
	free(c->watch_ns);
	free(c->instance);
	free(c);
}

void kube_controller_stats(struct kube_controller *c, struct kube_controller_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	out->reconciles = atomic_load(&c->reconciles);
	out->errors = atomic_load(&c->errors);
	out->conflicts = atomic_load(&c->conflicts);
	out->watch_restarts = atomic_load(&c->watch_restarts);
	out->events = atomic_load(&c->events);
	out->queue_depth = workqueue_len(c->queue);
	out->synced = atomic_load(&c->synced);
}

int kube_controller_synced(struct kube_controller *c)
{
	return c && atomic_load(&c->synced);
}
