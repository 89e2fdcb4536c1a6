/*
 * The embedded controller: one thread that lists datasources, then watches
 * the store from that resourceVersion, and feeds a work queue that coalesces
 * keys and backs off on errors (the shape of client-go's reflector and work
 * queue, small enough for one process). The queue is workqueue.c, shared with
 * the Kubernetes controller.
 */
#include "operator/operator.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "operator/workqueue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define DS_KIND "AnalyticsWorkspaceDataSource"

struct controller {
	struct operator_ctx *ctx;
	int resync_seconds;
	pthread_t thread;
	atomic_int stop;
	atomic_int synced;
	struct workqueue *queue;
};

static int queue_add_object(struct controller *c, const json_t *obj, int64_t delay_ms)
{
	const json_t *md = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	char *key;
	int rc;
	if (!name)
		return AL_OK;
	if (!(key = workqueue_key(ns ? ns : "default", name)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = workqueue_add(c->queue, key, delay_ms);
	free(key);
	return rc;
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
		if ((rc = queue_add_object(c, it, 0)))
			break;
	json_decref(items);
	return rc;
}

static void process_one(struct controller *c, const char *key)
{
	char *ns = NULL, *name = NULL;
	int requeue = 0, rc;

	if (workqueue_key_split(key, &ns, &name)) {
		workqueue_forget(c->queue, key);
		return;
	}
	rc = operator_reconcile_datasource(c->ctx, ns, name, &requeue);
	if (rc == AL_ERR_CONFLICT) {
		/* Someone else wrote first: read again and redo, now. */
		workqueue_forget(c->queue, key);
		workqueue_add(c->queue, key, 0);
	} else if (rc) {
		int64_t backoff = 0;
		char *msg = util_strdup(al_error_message());
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

static void *controller_main(void *arg)
{
	struct controller *c = arg;
	uint64_t rv = 0;
	int64_t next_resync = 0;

	while (!atomic_load(&c->stop)) {
		int64_t now = util_monotonic_ms(), due;
		char *key = NULL;
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
		while (!atomic_load(&c->stop) && workqueue_get(c->queue, 0, &key) == AL_OK) {
			process_one(c, key);
			workqueue_done(c->queue, key);
			free(key);
			key = NULL;
		}
		/* The first full list has been worked through once. */
		atomic_store(&c->synced, 1);
		timeout = 1000;
		if ((due = workqueue_next_due_ms(c->queue)) >= 0)
			timeout = due < 1000 ? (int)due : 1000;
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
					queue_add_object(c, obj, 0);
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
	if (workqueue_new(&c->queue, 0, 0)) {
		free(c);
		return AL_ERR_NOMEM;
	}
	c->ctx = ctx;
	c->resync_seconds = resync_seconds > 0 ? resync_seconds : 30;
	if (pthread_create(&c->thread, NULL, controller_main, c) != 0) {
		workqueue_free(c->queue);
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
	workqueue_free(c->queue);
	free(c);
}
