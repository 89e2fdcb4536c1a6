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
#include "runtime/runtime_kube.h"
#include "runtime/uploader_scale.h"

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
/* The uploader Deployments runtime_kube.c makes. */
#define UPLOADER_SELECTOR RUNTIME_KUBE_SELECTOR ",app.kubernetes.io/name=airlock-uploader"

struct kube_controller;

/* One list+watch loop (a thread): the datasources, and the Jobs the runtime
 * made (whose end wakes their datasource, so nobody polls running Jobs). */
struct informer {
	struct kube_controller *c;
	const char *what;       /* for logs: the resource's plural name */
	char *path;             /* the collection */
	const char *selector;   /* label selector or NULL */
	const char *ns;         /* for logs; NULL = every namespace */
	int resync;             /* 1: list again every resync_seconds (and mark synced) */
	void (*on_object)(struct kube_controller *c, const char *type, const json_t *obj);
	char rv[32];
	pthread_t thread;
	int started;
};

struct kube_controller {
	struct operator_ctx *ctx;
	struct kube_controller_options o;
	char *watch_ns;   /* NULL = every namespace */
	char *jobs_ns;    /* NULL = Jobs not watched */
	char *instance;
	struct workqueue *queue;
	struct informer datasources, jobs, uploaders;
	pthread_t *workers;
	int n_workers, n_started;
	atomic_int stop;
	atomic_int synced;
	atomic_ullong reconciles, errors, conflicts, watch_restarts, events, job_wakeups, own_echoes;
	atomic_ullong scale_downs_idle, scale_downs_sealed;
	/* Bindings known to be in place: "ns/name" -> "uid workspace". Saves a
	 * GET per reconcile; emptied at every full list so that a resync
	 * still repairs a binding someone deleted or edited. */
	pthread_mutex_t bound_lock;
	json_t *bound;
	/* The object of the last watch event for each key waiting in the queue
	 * ("ns/name" -> datasource): the worker takes it instead of reading
	 * the object again. Bounded by the queue; a stale copy only earns a
	 * 409 on write, and the retry reads afresh. */
	pthread_mutex_t latest_lock;
	json_t *latest;
	/* "ns/name" -> the resourceVersion of this controller's own last write
	 * (status, finalizer): the watch event that echoes it brings no news,
	 * since the reconcile that wrote it went on from there. Under
	 * latest_lock; emptied at every full list. */
	json_t *own;
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

/* Remembers that `written` (what the API server answered to our write) is
 * our own doing. */
static void own_write(struct kube_controller *c, const json_t *written)
{
	const char *rv = md_str(written, "resourceVersion");
	char *key = workqueue_key(md_str(written, "namespace"), md_str(written, "name"));
	if (key && rv) {
		pthread_mutex_lock(&c->latest_lock);
		json_object_set_new(c->own, key, json_string(rv));
		pthread_mutex_unlock(&c->latest_lock);
	}
	free(key);
}

static void own_forget(struct kube_controller *c, const char *key)
{
	pthread_mutex_lock(&c->latest_lock);
	json_object_del(c->own, key);
	pthread_mutex_unlock(&c->latest_lock);
}

/* 1 (and forgotten) when the event carries our own last write. */
static int own_echo(struct kube_controller *c, const json_t *obj)
{
	const char *rv = md_str(obj, "resourceVersion"), *mine;
	char *key = workqueue_key(md_str(obj, "namespace"), md_str(obj, "name"));
	int echo = 0;
	if (!key || !rv) {
		free(key);
		return 0;
	}
	pthread_mutex_lock(&c->latest_lock);
	mine = json_string_value(json_object_get(c->own, key));
	if (mine) {
		echo = !strcmp(mine, rv);
		json_object_del(c->own, key); /* a later event is news either way */
	}
	pthread_mutex_unlock(&c->latest_lock);
	free(key);
	return echo;
}

/* Writes one core/v1 Event about the datasource `ds`; a failure is logged
 * only (the status and the audit record are what count). */
static void post_event(struct kube_controller *c, const json_t *ds, const char *reason, const char *message,
		       int warning)
{
	const char *ns = md_str(ds, "namespace"), *name = md_str(ds, "name");
	char now[UTIL_TIME_LEN], *hex = NULL, *path = NULL;
	struct buf ev_name, note;
	json_t *body = NULL, *out = NULL;
	int rc;

	if (!ns || !name)
		return;
	buf_init(&ev_name, 512);
	buf_init(&note, 8192);
	util_now_rfc3339_seconds(now);
	hex = util_random_hex(8);
	rc = buf_appends(&note, message);
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
			 reason, "message", buf_cstr(&note), "type", warning ? "Warning" : "Normal", "firstTimestamp",
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

static void emit_event(void *ud, const json_t *ds, const char *event, int failure)
{
	struct kube_controller *c = ud;
	const char *msg = json_string_value(json_object_get(json_object_get(ds, "status"), "message"));
	char reason[64];
	struct buf note;

	if (!md_str(ds, "namespace") || !md_str(ds, "name"))
		return;
	own_write(c, ds);
	camel(event, reason, sizeof(reason));
	buf_init(&note, 8192);
	if ((msg && *msg) ? buf_appends(&note, msg) == AL_OK
			  : buf_appendf(&note, "%s: stage %s, dataState %s", event,
					*gates_stage(ds) ? gates_stage(ds) : "unset", gates_data_state(ds)) == AL_OK)
		post_event(c, ds, reason, buf_cstr(&note), failure);
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
	if (!rc && *out)
		own_write(c, *out);
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

static char *bound_value(const json_t *ds, const char *ws)
{
	struct buf b;
	buf_init(&b, 1024);
	if (buf_appendf(&b, "%s %s", md_str(ds, "uid") ? md_str(ds, "uid") : "", ws)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

/* 1 when this process has already seen the binding in place for this
 * datasource (same uid, same workspace). */
static int bound_known(struct kube_controller *c, const char *key, const char *value)
{
	const char *have;
	int known;

	pthread_mutex_lock(&c->bound_lock);
	have = json_string_value(json_object_get(c->bound, key));
	known = have && !strcmp(have, value);
	pthread_mutex_unlock(&c->bound_lock);
	return known;
}

static void bound_set(struct kube_controller *c, const char *key, const char *value)
{
	pthread_mutex_lock(&c->bound_lock);
	if (value)
		json_object_set_new(c->bound, key, json_string(value));
	else
		json_object_del(c->bound, key);
	pthread_mutex_unlock(&c->bound_lock);
}

static void bound_clear(struct kube_controller *c)
{
	pthread_mutex_lock(&c->bound_lock);
	json_object_clear(c->bound);
	pthread_mutex_unlock(&c->bound_lock);
}

/* The datasource's binding to the workspace its label names: created when
 * missing (owned by the datasource), spec.workspace kept in step. */
static int ensure_binding(struct kube_controller *c, const json_t *ds, int fresh)
{
	const char *ns = md_str(ds, "namespace"), *name = md_str(ds, "name");
	const char *ws = json_string_value(json_object_get(json_object_get(json_object_get(ds, "metadata"), "labels"),
							   WORKSPACE_LABEL));
	json_t *cur = NULL, *obj = NULL, *audit = NULL, *out = NULL;
	char *bname;
	int rc;

	char *key = NULL, *value = NULL;
	int in_place = 1;

	if (!ws || !*ws || !ns || !name)
		return AL_OK;
	key = workqueue_key(ns, name);
	value = bound_value(ds, ws);
	if (!key || !value) {
		free(key);
		free(value);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	if (bound_known(c, key, value)) {
		free(key);
		free(value);
		return AL_OK;
	}
	if (!(bname = binding_name(name))) {
		free(key);
		free(value);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	/* A new datasource (`fresh`: it had no finalizer yet) has no binding:
	 * make it first and read only if it is there already, one request not
	 * two. Otherwise read first (a resync finds them all in place). The
	 * store writes the audit record only for a change it made. */
	obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}, s:[{s:s, s:s, s:s, s:s?, s:b, s:b}]}, s:{s:s, s:s}}",
			"apiVersion", RESOURCE_API_VERSION, "kind", DSB_KIND, "metadata", "name", bname, "namespace", ns,
			"labels", WORKSPACE_LABEL, ws, "ownerReferences", "apiVersion", RESOURCE_API_VERSION, "kind",
			DS_KIND, "name", name, "uid", md_str(ds, "uid"), "controller", 1, "blockOwnerDeletion", 1, "spec",
			"workspace", ws, "datasource", name);
	audit = system_audit("bind");
	if (!obj || !audit) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = fresh ? store_create(c->ctx->store, obj, audit, &out) : AL_ERR_EXISTS;
	if (rc == AL_ERR_EXISTS && (rc = store_get(c->ctx->store, DSB_KIND, ns, bname, &cur)) == AL_ERR_NOT_FOUND)
		rc = store_create(c->ctx->store, obj, audit, &out);
	else if (rc == AL_OK && cur) {
		const char *bds = json_string_value(json_object_get(json_object_get(cur, "spec"), "datasource"));
		const char *bws = json_string_value(json_object_get(json_object_get(cur, "spec"), "workspace"));
		if (!bds || strcmp(bds, name)) {
			log_warn("datasource %s/%s: binding %s binds datasource %s, not this one; left alone", ns, name,
				 bname, bds ? bds : "(none)");
			in_place = 0; /* look again next time */
		} else if (!bws || strcmp(bws, ws)) {
			json_object_set_new(json_object_get(cur, "spec"), "workspace", json_string(ws));
			rc = store_update(c->ctx->store, cur, audit, &out);
		}
	}
	if (rc == AL_OK && out && !cur)
		log_info("datasource %s/%s: bound to workspace %s (%s)", ns, name, ws, bname);
	else if (rc == AL_ERR_EXISTS || rc == AL_ERR_NOT_FOUND) {
		rc = AL_OK; /* made or removed by someone else meanwhile: seen next time */
		in_place = 0;
	}
	if (rc == AL_OK && in_place)
		bound_set(c, key, value);
out:
	free(key);
	free(value);
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

static json_t *take_latest(struct kube_controller *c, const char *ns, const char *name);

static int finalize(struct kube_controller *c, const json_t *ds)
{
	json_t *out = NULL;
	int rc;

	if ((rc = operator_cleanup_datasource(c->ctx, ds)))
		return rc;
	if ((rc = delete_binding(c, ds)))
		return rc;
	{
		char *key = workqueue_key(md_str(ds, "namespace"), md_str(ds, "name"));
		if (!key)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		bound_set(c, key, NULL);
		free(key);
	}
	if (!acting(c))
		return NOT_LEADING;
	rc = set_finalizer(c, ds, 0, &out);
	json_decref(out);
	if (!rc)
		log_info("datasource %s/%s: cleaned up; finalizer removed", md_str(ds, "namespace"), md_str(ds, "name"));
	return rc;
}

/* ---- uploaders ---- */

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keeps the sooner of two requeues (0 = none). */
static void requeue_min(int *requeue_ms, int64_t ms)
{
	if (ms < 1)
		ms = 1;
	if (ms > INT32_MAX)
		ms = INT32_MAX;
	if (*requeue_ms <= 0 || ms < *requeue_ms)
		*requeue_ms = (int)ms;
}

/*
 * An Uploaded datasource's uploader: scaled to 0 when idle or sealed,
 * stamped when running without a time, and the datasource requeued for the
 * moment it will be idle. A 409 on our conditional patch means a wake or a
 * touch landed since the read: read and decide again.
 */
static int check_uploader(struct kube_controller *c, const json_t *ds, int *requeue_ms)
{
	const char *type = json_string_value(json_object_get(json_object_get(ds, "spec"), "type"));
	const char *stage = gates_stage(ds), *uid = md_str(ds, "uid");
	int idle = c->o.uploader_idle_seconds > 0 ? c->o.uploader_idle_seconds : UPLOADER_IDLE_DEFAULT_S;
	struct buf name;
	int rc = AL_OK, sealed;

	/* Only once start_upload made it; without the workload namespace
	 * (not watched) the controller leaves uploaders alone. */
	if (!c->jobs_ns || !type || strcmp(type, "Uploaded") || !uid || !strcmp(stage, STAGE_NONE) ||
	    !strcmp(stage, STAGE_AWAITING_REQUEST) || is_deleting(ds))
		return AL_OK;
	sealed = strcmp(stage, STAGE_UPLOADING) != 0;
	buf_init(&name, 256);
	if ((rc = buf_appendf(&name, "upload-%s", uid)))
		goto out;
	for (int attempt = 0; attempt < 3; attempt++) {
		json_t *dep = NULL;
		int64_t now_ms = wall_ms(), due = 0;
		enum uploader_verdict v;
		const char *rv;

		rc = uploader_get(c->o.kc, c->jobs_ns, buf_cstr(&name), &dep);
		if (rc == AL_ERR_NOT_FOUND) {
			rc = AL_OK; /* not made yet, or removed: the reconciler's business */
			break;
		}
		if (rc)
			break;
		v = uploader_decide(dep, sealed, idle, now_ms / 1000, &due);
		rv = md_str(dep, "resourceVersion");
		if (v == UPLOADER_AT_REST) {
			json_decref(dep);
			break;
		}
		if (!acting(c)) {
			json_decref(dep);
			rc = NOT_LEADING;
			break;
		}
		if (v == UPLOADER_IN_USE) {
			/* Woken again the moment it will be idle: no polling. */
			requeue_min(requeue_ms, due * 1000 - now_ms + 100);
			json_decref(dep);
			break;
		}
		if (v == UPLOADER_NEEDS_STAMP) {
			rc = uploader_stamp(c->o.kc, c->jobs_ns, buf_cstr(&name), rv, now_ms / 1000);
			if (rc == AL_OK) {
				log_info("uploader %s/%s runs without %s or %s: its idle time starts now", c->jobs_ns,
					 buf_cstr(&name), UPLOADER_ANNOTATION_SCALED_UP_AT, UPLOADER_ANNOTATION_LAST_ACTIVITY);
				requeue_min(requeue_ms, (int64_t)idle * 1000 + 100);
			}
		} else {
			long replicas = uploader_replicas(dep);
			rc = uploader_scale_down(c->o.kc, c->jobs_ns, buf_cstr(&name), rv);
			if (rc == AL_OK) {
				struct buf msg;
				buf_init(&msg, 1024);
				if (v == UPLOADER_SEALED) {
					atomic_fetch_add(&c->scale_downs_sealed, 1);
					rc = buf_appendf(&msg, "uploader %s scaled from %ld to 0 replicas: the datasource is "
							       "no longer Uploading (stage %s)",
							 buf_cstr(&name), replicas, stage);
				} else {
					atomic_fetch_add(&c->scale_downs_idle, 1);
					rc = buf_appendf(&msg, "uploader %s scaled from %ld to 0 replicas: not used for %d s",
							 buf_cstr(&name), replicas, idle);
				}
				if (rc == AL_OK) {
					log_info("datasource %s/%s: %s", md_str(ds, "namespace"), md_str(ds, "name"),
						 buf_cstr(&msg));
					post_event(c, ds, "UploaderScaledDown", buf_cstr(&msg), 0);
				}
				buf_free(&msg);
				rc = AL_OK;
			}
		}
		json_decref(dep);
		if (rc != AL_ERR_CONFLICT)
			break;
	}
out:
	buf_free(&name);
	return rc;
}

static int reconcile(struct kube_controller *c, const char *ns, const char *name, int *requeue_ms)
{
	json_t *ds = NULL, *out = NULL;
	int rc, brc, fresh;

	*requeue_ms = 0;
	ds = take_latest(c, ns, name);
	/* Checked here, not when the event arrives: the echo may overtake
	 * the answer to the write it echoes, but not the end of the reconcile
	 * that made it (one worker per key). */
	if (ds && own_echo(c, ds)) {
		atomic_fetch_add(&c->own_echoes, 1);
		/* This wake-up may have replaced the writer's delayed requeue:
		 * keep the safety net. */
		if (operator_has_work(ds) && c->ctx->job_poll_ms > 0)
			*requeue_ms = c->ctx->job_poll_ms;
		/* Our own write may be the one that sealed it. */
		rc = acting(c) ? check_uploader(c, ds, requeue_ms) : NOT_LEADING;
		json_decref(ds);
		return rc;
	}
	if (ds)
		store_seen(c->ctx->store, ds); /* a status write from it needs no GET */
	rc = ds ? AL_OK : store_get(c->ctx->store, DS_KIND, ns, name, &ds);
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
	fresh = !has_finalizer(ds);
	if (fresh) {
		rc = set_finalizer(c, ds, 1, &out);
		json_decref(ds);
		if (rc) {
			json_decref(out);
			return rc;
		}
		ds = out;
	}
	brc = ensure_binding(c, ds, fresh);
	if (brc) {
		char *m = util_strdup(al_error_message());
		log_warn("datasource %s/%s: cannot reconcile its binding: %s", ns, name, m ? m : "out of memory");
		free(m);
	}
	/* The object just read (or just written with the finalizer) is
	 * current enough: a stale one only earns a 409 and a requeue. */
	if (!acting(c)) {
		json_decref(ds);
		return NOT_LEADING;
	}
	rc = operator_reconcile_datasource_object(c->ctx, ds, requeue_ms);
	/* After the step: a transition it just recorded (the datasource left
	 * Uploading) counts at once. */
	if (!rc)
		rc = check_uploader(c, ds, requeue_ms);
	json_decref(ds);
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
	/* The echo of a write may be skipped only when this reconcile ended
	 * at rest (nothing, or only the safety-net poll, left to do): a retry
	 * or a quick requeue coalesced with the echo must still run. */
	if (rc || (requeue > 0 && (!c->ctx->job_poll_ms || requeue < c->ctx->job_poll_ms)))
		own_forget(c, key);
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

/* Queues the object's key; `keep` also leaves the object for the worker
 * (watch events: a list's objects are not kept, a resync stays cheap). */
static int queue_object(struct kube_controller *c, const json_t *obj, int keep)
{
	const char *ns = md_str(obj, "namespace"), *name = md_str(obj, "name");
	char *key;
	int rc;
	if (!ns || !name)
		return AL_OK;
	if (!(key = workqueue_key(ns, name)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	pthread_mutex_lock(&c->latest_lock);
	if (keep)
		json_object_set(c->latest, key, (json_t *)obj); /* on failure the worker reads it */
	else
		json_object_del(c->latest, key);
	pthread_mutex_unlock(&c->latest_lock);
	rc = workqueue_add(c->queue, key, 0);
	free(key);
	return rc;
}

/* The object the watch left for this key (a new reference), or NULL. */
static json_t *take_latest(struct kube_controller *c, const char *ns, const char *name)
{
	char *key = workqueue_key(ns, name);
	json_t *obj = NULL;
	if (!key)
		return NULL;
	pthread_mutex_lock(&c->latest_lock);
	if ((obj = json_object_get(c->latest, key))) {
		json_incref(obj);
		json_object_del(c->latest, key);
	}
	pthread_mutex_unlock(&c->latest_lock);
	free(key);
	return obj;
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

/* Lists a collection page by page (500 a page) and hands every object to
 * the informer; only one page is held at a time, so a resync of many
 * thousands costs little memory. An expired continue token (410) starts
 * the list again. */
static int list_all(struct informer *inf)
{
	struct kube_controller *c = inf->c;
	char *cont = NULL;
	int restarts = 0, rc = AL_OK;

	for (;;) {
		struct buf url;
		json_t *page = NULL, *it;
		const char *next, *list_rv;
		size_t i;

		buf_init(&url, 64 * 1024);
		rc = buf_appendf(&url, "%s?limit=500", inf->path);
		if (!rc && inf->selector && !(rc = buf_appends(&url, "&labelSelector=")))
			rc = append_escaped(&url, inf->selector);
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
			inf->on_object(c, "LISTED", it);
		list_rv = json_string_value(json_object_get(json_object_get(page, "metadata"), "resourceVersion"));
		next = json_string_value(json_object_get(json_object_get(page, "metadata"), "continue"));
		/* The resourceVersion of the whole list is on every page (one snapshot). */
		if (list_rv && strlen(list_rv) < sizeof(inf->rv))
			snprintf(inf->rv, sizeof(inf->rv), "%s", list_rv);
		free(cont);
		cont = next && *next ? util_strdup(next) : NULL;
		if (next && *next && !cont)
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		json_decref(page);
		if (rc || !cont)
			break;
	}
	free(cont);
	if (!rc && inf->resync)
		atomic_store(&c->synced, 1);
	return rc;
}

static int on_watch_event(void *ud, const char *type, const json_t *obj)
{
	struct informer *inf = ud;
	const char *rv = md_str(obj, "resourceVersion");
	if (rv && strlen(rv) < sizeof(inf->rv))
		snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
	if (strcmp(type, "BOOKMARK"))
		inf->on_object(inf->c, type, obj);
	return 0;
}

/* Datasources: queue what has something to do. */
static void on_datasource(struct kube_controller *c, const char *type, const json_t *ds)
{
	if (!strcmp(type, "DELETED"))
		return; /* the finalizer already saw it through */
	/* Skip what has nothing to do (waiting on people, our own status
	 * writes); a list (resync) visits everything. */
	if (!strcmp(type, "LISTED"))
		queue_object(c, ds, 0);
	else if (!strcmp(type, "ADDED") || operator_has_work(ds) || is_deleting(ds) || !has_finalizer(ds))
		queue_object(c, ds, 1);
}

static int job_finished(const json_t *job)
{
	size_t i;
	json_t *cond;
	json_array_foreach(json_object_get(json_object_get(job, "status"), "conditions"), i, cond) {
		const char *t = json_string_value(json_object_get(cond, "type"));
		const char *st = json_string_value(json_object_get(cond, "status"));
		if (t && st && !strcmp(st, "True") && (!strcmp(t, "Complete") || !strcmp(t, "Failed")))
			return 1;
	}
	return 0;
}

/* Jobs: one that ended (or went) wakes the datasource that owns it. A
 * running Job needs nothing, so nobody polls it. */
static void on_job(struct kube_controller *c, const char *type, const json_t *job)
{
	char *ns = NULL, *name = NULL, *key;

	if (strcmp(type, "DELETED") && !job_finished(job))
		return;
	if (runtime_kube_child_owner(job, DS_KIND, &ns, &name))
		return;
	if (!c->watch_ns || !strcmp(c->watch_ns, ns)) {
		if ((key = workqueue_key(ns, name)) && workqueue_add(c->queue, key, 0) == AL_OK)
			atomic_fetch_add(&c->job_wakeups, 1);
		free(key);
	}
	free(ns);
	free(name);
}

/* Uploader Deployments: one that runs (a wake, a touch, a hand scale, or a
 * list at start) queues its datasource, whose reconcile decides. One at 0
 * needs nothing. */
static void on_uploader(struct kube_controller *c, const char *type, const json_t *dep)
{
	char *ns = NULL, *name = NULL, *key;

	if (!strcmp(type, "DELETED") || uploader_replicas(dep) <= 0)
		return;
	if (runtime_kube_child_owner(dep, DS_KIND, &ns, &name))
		return;
	if (!c->watch_ns || !strcmp(c->watch_ns, ns)) {
		if ((key = workqueue_key(ns, name)))
			workqueue_add(c->queue, key, 0);
		free(key);
	}
	free(ns);
	free(name);
}

static int watch_timeout_s(const struct kube_controller *c)
{
	int lo = c->o.watch_timeout_min_s > 0 ? c->o.watch_timeout_min_s : 240;
	int hi = c->o.watch_timeout_max_s >= lo ? c->o.watch_timeout_max_s : (lo > 360 ? lo : 360);
	return lo + (int)randombytes_uniform((uint32_t)(hi - lo + 1));
}

static void *informer_main(void *arg)
{
	struct informer *inf = arg;
	struct kube_controller *c = inf->c;
	int need_list = 1, listed_once = 0, failures = 0;
	int64_t next_resync = INT64_MAX;

	while (!atomic_load(&c->stop)) {
		int rc, timeout;
		if (need_list || util_monotonic_ms() >= next_resync) {
			if (listed_once && need_list)
				atomic_fetch_add(&c->watch_restarts, 1);
			if (inf->resync) {
				bound_clear(c);
				pthread_mutex_lock(&c->latest_lock);
				json_object_clear(c->own);
				pthread_mutex_unlock(&c->latest_lock);
			}
			if ((rc = list_all(inf))) {
				int ms = kube_backoff_ms(failures < 30 ? failures : 30, 200, 30000);
				failures++;
				log_warn("list %s%s%s failed (retry in %d ms): %s", inf->what, inf->ns ? " in " : "",
					 inf->ns ? inf->ns : "", ms, al_error_message());
				nap(c, ms);
				continue;
			}
			if (!listed_once)
				log_info("listed %s%s%s; watching from resourceVersion %s", inf->what,
					 inf->ns ? " in " : "", inf->ns ? inf->ns : "", inf->rv);
			listed_once = 1;
			need_list = 0;
			failures = 0;
			if (inf->resync)
				next_resync = util_monotonic_ms() + (int64_t)c->o.resync_seconds * 1000;
		}
		/* End the watch in time for the next resync. */
		timeout = watch_timeout_s(c);
		if (inf->resync) {
			int64_t left = (next_resync - util_monotonic_ms()) / 1000;
			if (left < timeout)
				timeout = left > 1 ? (int)left : 1;
		}
		rc = kube_watch(c->o.kc, inf->path, inf->selector, inf->rv, timeout, on_watch_event, inf, &c->stop);
		if (atomic_load(&c->stop))
			break;
		if (rc == AL_OK) {
			failures = 0;
			continue;
		}
		if (rc == AL_ERR_GONE) {
			log_info("watch %s: %s", inf->what, al_error_message());
			need_list = 1;
			continue;
		}
		atomic_fetch_add(&c->watch_restarts, 1);
		{
			int ms = kube_backoff_ms(failures < 30 ? failures : 30, 200, 30000);
			failures++;
			log_warn("watch %s failed (retry in %d ms): %s", inf->what, ms, al_error_message());
			if (failures >= WATCH_FAILURES_RELIST)
				need_list = 1;
			nap(c, ms);
		}
	}
	return NULL;
}

static int informer_start(struct kube_controller *c, struct informer *inf)
{
	if (pthread_create(&inf->thread, NULL, informer_main, inf) != 0)
		return al_error_set(AL_ERR_INTERNAL, "cannot start the thread that watches %s", inf->what);
	inf->started = 1;
	(void)c;
	return AL_OK;
}

/* ---- lifecycle ---- */

static void controller_free(struct kube_controller *c)
{
	if (c->ctx->on_transition_ud == c) {
		c->ctx->on_transition = NULL;
		c->ctx->on_transition_ud = NULL;
	}
	workqueue_free(c->queue);
	json_decref(c->bound);
	json_decref(c->latest);
	json_decref(c->own);
	pthread_mutex_destroy(&c->bound_lock);
	pthread_mutex_destroy(&c->latest_lock);
	free(c->datasources.path);
	free(c->jobs.path);
	free(c->uploaders.path);
	free(c->workers);
	free(c->watch_ns);
	free(c->jobs_ns);
	free(c->instance);
	free(c);
}

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
	pthread_mutex_init(&c->bound_lock, NULL);
	pthread_mutex_init(&c->latest_lock, NULL);
	c->ctx = ctx;
	c->o = *o;
	if (!c->o.workers)
		c->o.workers = KUBE_CONTROLLER_DEFAULT_WORKERS;
	if (c->o.resync_seconds <= 0)
		c->o.resync_seconds = KUBE_CONTROLLER_DEFAULT_RESYNC_S;
	c->watch_ns = o->watch_namespace && *o->watch_namespace ? util_strdup(o->watch_namespace) : NULL;
	c->jobs_ns = o->jobs_namespace && *o->jobs_namespace ? util_strdup(o->jobs_namespace) : NULL;
	c->instance = util_strdup(o->instance && *o->instance ? o->instance : KUBE_CONTROLLER_COMPONENT);
	c->o.watch_namespace = c->watch_ns;
	c->o.jobs_namespace = c->jobs_ns;
	c->o.instance = c->instance;
	c->workers = calloc((size_t)c->o.workers, sizeof(*c->workers));
	c->bound = json_object();
	c->latest = json_object();
	c->own = json_object();
	c->datasources = (struct informer){ .c = c, .what = DS_PLURAL, .ns = c->watch_ns, .resync = 1,
					    .on_object = on_datasource,
					    .path = kube_path(RESOURCE_API_VERSION, c->watch_ns, DS_PLURAL, NULL, NULL) };
	c->jobs = (struct informer){ .c = c, .what = "jobs", .ns = c->jobs_ns, .selector = RUNTIME_KUBE_SELECTOR,
				     .on_object = on_job,
				     .path = c->jobs_ns ? kube_path("batch/v1", c->jobs_ns, "jobs", NULL, NULL) : NULL };
	c->uploaders = (struct informer){ .c = c, .what = "uploader deployments", .ns = c->jobs_ns,
					  .selector = UPLOADER_SELECTOR, .on_object = on_uploader,
					  .path = c->jobs_ns ? kube_path("apps/v1", c->jobs_ns, "deployments", NULL, NULL)
							     : NULL };
	if ((o->watch_namespace && *o->watch_namespace && !c->watch_ns) ||
	    (o->jobs_namespace && *o->jobs_namespace && (!c->jobs_ns || !c->jobs.path || !c->uploaders.path)) ||
	    !c->instance ||
	    !c->workers || !c->bound || !c->latest || !c->own || !c->datasources.path) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if ((rc = workqueue_new(&c->queue, 0, 0)))
		goto fail;
	atomic_init(&c->stop, 0);
	atomic_init(&c->synced, 0);
	ctx->on_transition = emit_event;
	ctx->on_transition_ud = c;
	/* Jobs watched: their end wakes the datasource, so a running Job is
	 * looked at again only as a safety net. */
	if (c->jobs_ns && !ctx->job_poll_ms)
		ctx->job_poll_ms = KUBE_CONTROLLER_JOB_POLL_MS;
	if ((rc = informer_start(c, &c->datasources)) || (c->jobs_ns && (rc = informer_start(c, &c->jobs))) ||
	    (c->jobs_ns && (rc = informer_start(c, &c->uploaders)))) {
		kube_controller_stop(c);
		return rc;
	}
	for (int i = 0; i < c->o.workers; i++) {
		if (pthread_create(&c->workers[i], NULL, worker_main, c) != 0) {
			rc = al_error_set(AL_ERR_INTERNAL, "cannot start worker thread %d", i + 1);
			kube_controller_stop(c);
			return rc;
		}
		c->n_started++;
	}
	log_info("controller: %d workers, resync every %d s, watching datasources in %s, jobs and uploaders in %s; "
		 "idle uploaders scaled to 0 after %d s",
		 c->o.workers, c->o.resync_seconds, c->watch_ns ? c->watch_ns : "every namespace",
		 c->jobs_ns ? c->jobs_ns : "(not watched: running jobs are polled, uploaders left alone)",
		 c->o.uploader_idle_seconds > 0 ? c->o.uploader_idle_seconds : UPLOADER_IDLE_DEFAULT_S);
	*out = c;
	return AL_OK;
fail:
	controller_free(c);
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
	if (c->datasources.started)
		pthread_join(c->datasources.thread, NULL);
	if (c->jobs.started)
		pthread_join(c->jobs.thread, NULL);
	if (c->uploaders.started)
		pthread_join(c->uploaders.thread, NULL);
	controller_free(c);
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
	out->job_wakeups = atomic_load(&c->job_wakeups);
	out->own_echoes = atomic_load(&c->own_echoes);
	out->uploader_scale_downs_idle = atomic_load(&c->scale_downs_idle);
	out->uploader_scale_downs_sealed = atomic_load(&c->scale_downs_sealed);
	out->queue_depth = workqueue_len(c->queue);
	out->synced = atomic_load(&c->synced);
}

int kube_controller_synced(struct kube_controller *c)
{
	return c && atomic_load(&c->synced);
}
