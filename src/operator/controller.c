/*
 * The embedded controller: one thread that lists datasources, then watches
 * the store from that resourceVersion, and feeds a work queue that coalesces
 * keys and backs off on errors (the shape of client-go's reflector and work
 * queue, small enough for one process).
 */
#include "operator/operator.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define DS_KIND "AnalyticsWorkspaceDataSource"
#define MAX_BACKOFF_MS 30000

struct work_item {
	char *ns;
	char *name;
	int64_t due_ms;
	int failures;
};

struct controller {
	struct operator_ctx *ctx;
	int resync_seconds;
	pthread_t thread;
	atomic_int stop;
	atomic_int synced;
	struct work_item *items;
	size_t n_items, cap_items;
};

static int queue_add(struct controller *c, const char *ns, const char *name, int64_t due_ms, int failures)
{
	for (size_t i = 0; i < c->n_items; i++)
		if (!strcmp(c->items[i].ns, ns) && !strcmp(c->items[i].name, name)) {
			/* Coalesce: one entry per key, at the earliest time asked. */
			if (due_ms < c->items[i].due_ms)
				c->items[i].due_ms = due_ms;
			if (failures > c->items[i].failures)
				c->items[i].failures = failures;
			return AL_OK;
		}
	if (c->n_items == c->cap_items) {
		size_t ncap = c->cap_items ? c->cap_items * 2 : 64;
		struct work_item *p = realloc(c->items, ncap * sizeof(*p));
		if (!p)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		c->items = p;
		c->cap_items = ncap;
	}
	c->items[c->n_items].ns = util_strdup(ns);
	c->items[c->n_items].name = util_strdup(name);
	if (!c->items[c->n_items].ns || !c->items[c->n_items].name) {
		free(c->items[c->n_items].ns);
		free(c->items[c->n_items].name);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	c->items[c->n_items].due_ms = due_ms;
	c->items[c->n_items].failures = failures;
	c->n_items++;
	return AL_OK;
}

static int queue_add_object(struct controller *c, const json_t *obj, int64_t due_ms)
{
	const json_t *md = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	if (!name)
		return AL_OK;
	return queue_add(c, ns ? ns : "default", name, due_ms, 0);
}

/* Index of the item due first, or -1. */
static long queue_next(struct controller *c, int64_t *due)
{
	long best = -1;
	for (size_t i = 0; i < c->n_items; i++)
		if (best < 0 || c->items[i].due_ms < c->items[best].due_ms)
			best = (long)i;
	if (best >= 0)
		*due = c->items[best].due_ms;
	return best;
}

static void queue_take(struct controller *c, long idx, struct work_item *out)
{
	*out = c->items[idx];
	c->items[idx] = c->items[c->n_items - 1];
	c->n_items--;
}

static int list_all(struct controller *c, uint64_t *rv)
{
	json_t *items = NULL;
	size_t i;
	json_t *it;
	int rc = store_list(c->ctx->store, DS_KIND, NULL, NULL, &items, rv);
	if (rc)
		return rc;
	json_array_foreach(items, i, it)
		if ((rc = queue_add_object(c, it, util_monotonic_ms())))
			break;
	json_decref(items);
	return rc;
}

static void process_one(struct controller *c, struct work_item *w)
{
	int requeue = 0;
	int rc = operator_reconcile_datasource(c->ctx, w->ns, w->name, &requeue);
	int64_t now = util_monotonic_ms();

	if (rc == AL_ERR_CONFLICT) {
		/* Someone else wrote first: read again and redo, now. */
		queue_add(c, w->ns, w->name, now, 0);
	} else if (rc) {
		int failures = w->failures + 1;
		int64_t backoff = 100LL << (failures < 9 ? failures : 9);
		if (backoff > MAX_BACKOFF_MS)
			backoff = MAX_BACKOFF_MS;
		log_warn("reconcile %s/%s failed (retry in %lld ms): %s", w->ns, w->name, (long long)backoff,
			 al_error_message());
		queue_add(c, w->ns, w->name, now + backoff, failures);
	} else if (requeue > 0) {
		queue_add(c, w->ns, w->name, now + requeue, 0);
	}
}

static void *controller_main(void *arg)
{
	struct controller *c = arg;
	uint64_t rv = 0;
	int64_t next_resync = 0;

	while (!atomic_load(&c->stop)) {
		int64_t now = util_monotonic_ms(), due = 0;
		long idx;
		json_t *events = NULL;
		uint64_t next_rv = rv;
		int timeout, rc;

		if (now >= next_resync) {
			if ((rc = list_all(c, &rv))) {
				log_warn("cannot list datasources: %s", al_error_message());
				next_resync = now + 1000;
			} else {
				next_resync = now + (int64_t)c->resync_seconds * 1000;
			}
		}
		/* Work everything that is due before waiting for news. */
		while (!atomic_load(&c->stop) && (idx = queue_next(c, &due)) >= 0 && due <= util_monotonic_ms()) {
			struct work_item w;
			queue_take(c, idx, &w);
			process_one(c, &w);
			free(w.ns);
			free(w.name);
		}
		/* The first full list has been worked through once. */
		atomic_store(&c->synced, 1);
		now = util_monotonic_ms();
		timeout = 1000;
		if ((idx = queue_next(c, &due)) >= 0)
			timeout = due <= now ? 0 : (int)(due - now < 1000 ? due - now : 1000);
		rc = store_watch(c->ctx->store, DS_KIND, rv, timeout, &events, &next_rv);
		if (rc == AL_ERR_CONFLICT) {
			next_resync = 0; /* history too old: relist */
			continue;
		}
		if (rc) {
			log_warn("watch failed: %s", al_error_message());
			continue;
		}
		{
			size_t i;
			json_t *ev;
			json_array_foreach(events, i, ev) {
				const char *type = json_string_value(json_object_get(ev, "type"));
				const json_t *obj = json_object_get(ev, "object");
				if (type && !strcmp(type, "DELETED"))
					operator_cleanup_datasource(c->ctx, obj);
				else if (operator_has_work(obj))
					queue_add_object(c, obj, util_monotonic_ms());
			}
		}
		json_decref(events);
		rv = next_rv;
	}
	return NULL;
}

int controller_start(struct controller **out, struct operator_ctx *ctx, int resync_seconds)
{
	struct controller *c = calloc(1, sizeof(*c));
	if (!c)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	c->ctx = ctx;
	c->resync_seconds = resync_seconds > 0 ? resync_seconds : 30;
	if (pthread_create(&c->thread, NULL, controller_main, c) != 0) {
		free(c);
		return al_error_set(AL_ERR_INTERNAL, "cannot start the controller thread");
	}
	*out = c;
	return AL_OK;
}

int controller_synced(struct controller *c)
{
	return c && atomic_load(&c->synced);
}

void controller_stop(struct controller *c)
{
	if (!c)
		return;
	atomic_store(&c->stop, 1);
	pthread_join(c->thread, NULL);
	for (size_t i = 0; i < c->n_items; i++) {
		free(c->items[i].ns);
		free(c->items[i].name);
	}
	free(c->items);
	free(c);
}
