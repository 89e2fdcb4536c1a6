/*
 * The work queue (workqueue.h): a hash of entries by key and a min-heap of
 * the waiting ones by due time, under one mutex. An entry lives while it is
 * waiting, being processed, or has failures counted.
 */
#include "operator/workqueue.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct wq_entry {
	char *key;
	struct wq_entry *next; /* hash chain */
	int64_t due_ms;        /* monotonic; valid while queued or dirty */
	int failures;
	int queued;            /* in the heap */
	int processing;        /* handed out, not done yet */
	int dirty;             /* added while processing: queue again on done */
	size_t heap_idx;
};

struct workqueue {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int shutdown;
	int base_ms, max_ms;
	struct wq_entry **buckets;
	size_t nbuckets, nentries;
	struct wq_entry **heap;
	size_t nheap, capheap;
};

static uint64_t hash_key(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static struct wq_entry *find(const struct workqueue *q, const char *key)
{
	struct wq_entry *e = q->buckets[hash_key(key) % q->nbuckets];
	while (e && strcmp(e->key, key))
		e = e->next;
	return e;
}

static int grow_buckets(struct workqueue *q)
{
	size_t nb = q->nbuckets * 2;
	struct wq_entry **b = calloc(nb, sizeof(*b));
	if (!b)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < q->nbuckets; i++) {
		struct wq_entry *e = q->buckets[i], *n;
		for (; e; e = n) {
			size_t k = hash_key(e->key) % nb;
			n = e->next;
			e->next = b[k];
			b[k] = e;
		}
	}
	free(q->buckets);
	q->buckets = b;
	q->nbuckets = nb;
	return AL_OK;
}

static struct wq_entry *find_or_make(struct workqueue *q, const char *key)
{
	struct wq_entry *e = find(q, key);
	size_t k;
	if (e)
		return e;
	if (q->nentries >= q->nbuckets && grow_buckets(q))
		return NULL;
	if (!(e = calloc(1, sizeof(*e))) || !(e->key = util_strdup(key))) {
		free(e);
		al_error_set(AL_ERR_NOMEM, "out of memory");
		return NULL;
	}
	k = hash_key(key) % q->nbuckets;
	e->next = q->buckets[k];
	q->buckets[k] = e;
	q->nentries++;
	return e;
}

/* Frees an entry that is neither waiting, processed nor failing. */
static void maybe_drop(struct workqueue *q, struct wq_entry *e)
{
	struct wq_entry **pp;
	if (e->queued || e->processing || e->dirty || e->failures)
		return;
	for (pp = &q->buckets[hash_key(e->key) % q->nbuckets]; *pp && *pp != e; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = e->next;
	q->nentries--;
	free(e->key);
	free(e);
}

/* ---- the heap ---- */

static void heap_swap(struct workqueue *q, size_t a, size_t b)
{
	struct wq_entry *t = q->heap[a];
	q->heap[a] = q->heap[b];
	q->heap[b] = t;
	q->heap[a]->heap_idx = a;
	q->heap[b]->heap_idx = b;
}

static void heap_up(struct workqueue *q, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (q->heap[p]->due_ms <= q->heap[i]->due_ms)
			break;
		heap_swap(q, p, i);
		i = p;
	}
}

static void heap_down(struct workqueue *q, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < q->nheap && q->heap[l]->due_ms < q->heap[m]->due_ms)
			m = l;
		if (r < q->nheap && q->heap[r]->due_ms < q->heap[m]->due_ms)
			m = r;
		if (m == i)
			return;
		heap_swap(q, i, m);
		i = m;
	}
}

static int heap_push(struct workqueue *q, struct wq_entry *e)
{
	if (q->nheap == q->capheap) {
		size_t ncap = q->capheap ? q->capheap * 2 : 64;
		struct wq_entry **h = realloc(q->heap, ncap * sizeof(*h));
		if (!h)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		q->heap = h;
		q->capheap = ncap;
	}
	e->heap_idx = q->nheap;
	q->heap[q->nheap++] = e;
	e->queued = 1;
	heap_up(q, e->heap_idx);
	return AL_OK;
}

static void heap_remove_top(struct workqueue *q)
{
	struct wq_entry *top = q->heap[0];
	top->queued = 0;
	q->nheap--;
	if (q->nheap > 0) {
		q->heap[0] = q->heap[q->nheap];
		q->heap[0]->heap_idx = 0;
		heap_down(q, 0);
	}
}

/* ---- the interface ---- */

int workqueue_new(struct workqueue **out, int base_ms, int max_ms)
{
	struct workqueue *q = calloc(1, sizeof(*q));
	pthread_condattr_t ca;

	*out = NULL;
	if (!q || !(q->buckets = calloc(64, sizeof(*q->buckets)))) {
		free(q);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	q->nbuckets = 64;
	q->base_ms = base_ms > 0 ? base_ms : WORKQUEUE_BASE_BACKOFF_MS;
	q->max_ms = max_ms > 0 ? max_ms : WORKQUEUE_MAX_BACKOFF_MS;
	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* as util_monotonic_ms */
	pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	*out = q;
	return AL_OK;
}

void workqueue_free(struct workqueue *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->nbuckets; i++) {
		struct wq_entry *e = q->buckets[i], *n;
		for (; e; e = n) {
			n = e->next;
			free(e->key);
			free(e);
		}
	}
	free(q->buckets);
	free(q->heap);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

/* Called with mu held. */
static int add_locked(struct workqueue *q, const char *key, int64_t due)
{
	struct wq_entry *e;
	int rc = AL_OK;

	if (q->shutdown)
		return al_error_set(AL_ERR_UNAVAILABLE, "work queue: shutting down");
	if (!(e = find_or_make(q, key)))
		return AL_ERR_NOMEM;
	if (e->processing) {
		/* Not handed to a second worker: queued again when done. */
		if (!e->dirty || due < e->due_ms)
			e->due_ms = due;
		e->dirty = 1;
	} else if (e->queued) {
		if (due < e->due_ms) {
			e->due_ms = due;
			heap_up(q, e->heap_idx);
		}
	} else {
		e->due_ms = due;
		rc = heap_push(q, e);
		if (rc)
			maybe_drop(q, e);
	}
	if (!rc)
		pthread_cond_broadcast(&q->cond);
	return rc;
}

int workqueue_add(struct workqueue *q, const char *key, int64_t delay_ms)
{
	int rc;
	if (!key)
		return al_error_set(AL_ERR_INVALID, "work queue: no key");
	pthread_mutex_lock(&q->mu);
	rc = add_locked(q, key, util_monotonic_ms() + (delay_ms > 0 ? delay_ms : 0));
	pthread_mutex_unlock(&q->mu);
	return rc;
}

int workqueue_add_rate_limited(struct workqueue *q, const char *key, int64_t *out_delay_ms)
{
	struct wq_entry *e;
	int64_t delay;
	int rc, shift;

	if (!key)
		return al_error_set(AL_ERR_INVALID, "work queue: no key");
	pthread_mutex_lock(&q->mu);
	if (q->shutdown) {
		pthread_mutex_unlock(&q->mu);
		return al_error_set(AL_ERR_UNAVAILABLE, "work queue: shutting down");
	}
	if (!(e = find_or_make(q, key))) {
		pthread_mutex_unlock(&q->mu);
		return AL_ERR_NOMEM;
	}
	if (e->failures < 1000)
		e->failures++;
	shift = e->failures < 20 ? e->failures : 20;
	delay = (int64_t)q->base_ms << shift;
	if (delay > q->max_ms)
		delay = q->max_ms;
	rc = add_locked(q, key, util_monotonic_ms() + delay);
	pthread_mutex_unlock(&q->mu);
	if (out_delay_ms)
		*out_delay_ms = delay;
	return rc;
}

void workqueue_forget(struct workqueue *q, const char *key)
{
	struct wq_entry *e;
	pthread_mutex_lock(&q->mu);
	if ((e = find(q, key))) {
		e->failures = 0;
		maybe_drop(q, e);
	}
	pthread_mutex_unlock(&q->mu);
}

int workqueue_failures(struct workqueue *q, const char *key)
{
	struct wq_entry *e;
	int n;
	pthread_mutex_lock(&q->mu);
	e = find(q, key);
	n = e ? e->failures : 0;
	pthread_mutex_unlock(&q->mu);
	return n;
}

static void abs_deadline(struct timespec *ts, int64_t ms_from_now)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms_from_now / 1000;
	ts->tv_nsec += (ms_from_now % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int workqueue_get(struct workqueue *q, int timeout_ms, char **out_key)
{
	int64_t deadline = timeout_ms >= 0 ? util_monotonic_ms() + timeout_ms : INT64_MAX;
	int rc;

	*out_key = NULL;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		int64_t now = util_monotonic_ms(), wait;
		struct timespec ts;
		if (q->shutdown) {
			rc = al_error_set(AL_ERR_UNAVAILABLE, "work queue: shutting down");
			break;
		}
		if (q->nheap > 0 && q->heap[0]->due_ms <= now) {
			struct wq_entry *e = q->heap[0];
			char *k = util_strdup(e->key);
			if (!k) {
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
				break;
			}
			heap_remove_top(q);
			e->processing = 1;
			*out_key = k;
			rc = AL_OK;
			break;
		}
		if (now >= deadline) {
			rc = AL_ERR_TIMEOUT;
			break;
		}
		wait = deadline - now;
		if (q->nheap > 0 && q->heap[0]->due_ms - now < wait)
			wait = q->heap[0]->due_ms - now;
		abs_deadline(&ts, wait);
		pthread_cond_timedwait(&q->cond, &q->mu, &ts);
	}
	pthread_mutex_unlock(&q->mu);
	return rc;
}

void workqueue_done(struct workqueue *q, const char *key)
{
	struct wq_entry *e;
	pthread_mutex_lock(&q->mu);
	if ((e = find(q, key)) && e->processing) {
		e->processing = 0;
		if (e->dirty) {
			e->dirty = 0;
			if (!q->shutdown && heap_push(q, e) == AL_OK)
				pthread_cond_broadcast(&q->cond);
		}
		maybe_drop(q, e);
	}
	pthread_mutex_unlock(&q->mu);
}

int64_t workqueue_next_due_ms(struct workqueue *q)
{
	int64_t r = -1;
	pthread_mutex_lock(&q->mu);
	if (q->nheap > 0) {
		int64_t now = util_monotonic_ms();
		r = q->heap[0]->due_ms <= now ? 0 : q->heap[0]->due_ms - now;
	}
	pthread_mutex_unlock(&q->mu);
	return r;
}

size_t workqueue_len(struct workqueue *q)
{
	size_t n;
	pthread_mutex_lock(&q->mu);
	n = q->nheap;
	pthread_mutex_unlock(&q->mu);
	return n;
}

void workqueue_shutdown(struct workqueue *q)
{
	pthread_mutex_lock(&q->mu);
	q->shutdown = 1;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->mu);
}

char *workqueue_key(const char *ns, const char *name)
{
	struct buf b;
	buf_init(&b, 1024);
	if (!ns || !name || buf_appendf(&b, "%s/%s", ns, name)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

int workqueue_key_split(const char *key, char **out_ns, char **out_name)
{
	const char *slash = key ? strchr(key, '/') : NULL;
	*out_ns = *out_name = NULL;
	if (!slash)
		return al_error_set(AL_ERR_INVALID, "work queue key '%s' is not namespace/name", key ? key : "");
	*out_ns = strndup(key, (size_t)(slash - key));
	*out_name = util_strdup(slash + 1);
	if (!*out_ns || !*out_name) {
		free(*out_ns);
		free(*out_name);
		*out_ns = *out_name = NULL;
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	return AL_OK;
}
