/* The controllers' work queue: coalescing, ordering, one worker per key,
 * rate-limited retries, shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/util.h"
#include "operator/workqueue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void take(struct workqueue *q, const char *want)
{
	char *k = NULL;
	assert_int_equal(workqueue_get(q, 0, &k), AL_OK);
	assert_string_equal(k, want);
	workqueue_done(q, k);
	free(k);
}

static void test_coalesces_and_orders(void **state)
{
	struct workqueue *q = NULL;
	char *k = NULL;

	assert_int_equal(workqueue_new(&q, 0, 0), AL_OK);
	assert_int_equal(workqueue_add(q, "ns/b", 0), AL_OK);
	assert_int_equal(workqueue_add(q, "ns/a", 0), AL_OK);
	assert_int_equal(workqueue_add(q, "ns/b", 0), AL_OK);
	assert_int_equal(workqueue_add(q, "ns/c", 60000), AL_OK);
	assert_int_equal(workqueue_len(q), 3);
	/* A later add of a waiting key moves it earlier, never later. */
	assert_int_equal(workqueue_add(q, "ns/c", 0), AL_OK);
	assert_int_equal(workqueue_add(q, "ns/a", 60000), AL_OK);
	assert_int_equal(workqueue_len(q), 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(workqueue_get(q, 0, &k), AL_OK);
		workqueue_done(q, k);
		free(k);
	}
	assert_int_equal(workqueue_get(q, 0, &k), AL_ERR_TIMEOUT);
	assert_null(k);
	assert_int_equal(workqueue_next_due_ms(q), -1);
	/* Due times order the keys. */
	assert_int_equal(workqueue_add(q, "ns/late", 80), AL_OK);
	assert_int_equal(workqueue_add(q, "ns/early", 20), AL_OK);
	assert_true(workqueue_next_due_ms(q) > 0);
	assert_int_equal(workqueue_get(q, 1000, &k), AL_OK);
	assert_string_equal(k, "ns/early");
	workqueue_done(q, k);
	free(k);
	assert_int_equal(workqueue_get(q, 1000, &k), AL_OK);
	assert_string_equal(k, "ns/late");
	workqueue_done(q, k);
	free(k);
	workqueue_free(q);
}

static void test_one_worker_per_key(void **state)
{
	struct workqueue *q = NULL;
	char *k = NULL, *k2 = NULL;

	assert_int_equal(workqueue_new(&q, 0, 0), AL_OK);
	assert_int_equal(workqueue_add(q, "ns/x", 0), AL_OK);
	assert_int_equal(workqueue_get(q, 0, &k), AL_OK);
	/* Added while processing: not handed out until done. */
	assert_int_equal(workqueue_add(q, "ns/x", 0), AL_OK);
	assert_int_equal(workqueue_len(q), 0);
	assert_int_equal(workqueue_get(q, 0, &k2), AL_ERR_TIMEOUT);
	workqueue_done(q, k);
	free(k);
	assert_int_equal(workqueue_len(q), 1);
	take(q, "ns/x");
	assert_int_equal(workqueue_len(q), 0);
	workqueue_free(q);
}

static void test_rate_limited_retries(void **state)
{
	struct workqueue *q = NULL;
	int64_t d = 0;
	char *k = NULL;

	assert_int_equal(workqueue_new(&q, 10, 50), AL_OK);
	assert_int_equal(workqueue_add_rate_limited(q, "ns/f", &d), AL_OK);
	assert_int_equal(d, 20);
	assert_int_equal(workqueue_failures(q, "ns/f"), 1);
	assert_int_equal(workqueue_get(q, 0, &k), AL_ERR_TIMEOUT);
	assert_int_equal(workqueue_get(q, 1000, &k), AL_OK);
	workqueue_done(q, k);
	free(k);
	k = NULL;
	assert_int_equal(workqueue_add_rate_limited(q, "ns/f", &d), AL_OK);
	assert_int_equal(d, 40);
	assert_int_equal(workqueue_add_rate_limited(q, "ns/f", &d), AL_OK);
	assert_int_equal(d, 50); /* capped */
	/* Failures survive processing and are forgotten on success. */
	assert_int_equal(workqueue_get(q, 1000, &k), AL_OK);
	workqueue_done(q, k);
	free(k);
	assert_int_equal(workqueue_failures(q, "ns/f"), 3);
	workqueue_forget(q, "ns/f");
	assert_int_equal(workqueue_failures(q, "ns/f"), 0);
	assert_int_equal(workqueue_len(q), 0);
	/* Defaults: the embedded controller's 100 ms doubling (200 after one). */
	workqueue_free(q);
	assert_int_equal(workqueue_new(&q, 0, 0), AL_OK);
	assert_int_equal(workqueue_add_rate_limited(q, "ns/g", &d), AL_OK);
	assert_int_equal(d, 200);
	for (int i = 0; i < 30; i++)
		assert_int_equal(workqueue_add_rate_limited(q, "ns/g", &d), AL_OK);
	assert_int_equal(d, WORKQUEUE_MAX_BACKOFF_MS);
	workqueue_free(q);
}

struct workers {
	struct workqueue *q;
	atomic_int busy[64];
	atomic_int overlap;
	atomic_int processed;
};

static void *worker(void *arg)
{
	struct workers *w = arg;
	char *k;
	while (workqueue_get(w->q, -1, &k) == AL_OK) {
		int i = atoi(k + 3);
		if (atomic_fetch_add(&w->busy[i], 1) != 0)
			atomic_store(&w->overlap, 1);
		{
			struct timespec ts = { 0, 200000 };
			nanosleep(&ts, NULL);
		}
		atomic_fetch_sub(&w->busy[i], 1);
		atomic_fetch_add(&w->processed, 1);
		workqueue_done(w->q, k);
		free(k);
	}
	return NULL;
}

static void test_workers_never_share_a_key(void **state)
{
	struct workers *w = calloc(1, sizeof(*w));
	pthread_t th[4];
	char key[16];

	assert_non_null(w);
	assert_int_equal(workqueue_new(&w->q, 0, 0), AL_OK);
	for (int t = 0; t < 4; t++)
		assert_int_equal(pthread_create(&th[t], NULL, worker, w), 0);
	for (int round = 0; round < 200; round++) {
		snprintf(key, sizeof(key), "ns/%d", round % 64);
		assert_int_equal(workqueue_add(w->q, key, 0), AL_OK);
	}
	{
		int64_t deadline = util_monotonic_ms() + 10000;
		while ((workqueue_len(w->q) > 0 || workqueue_next_due_ms(w->q) >= 0) && util_monotonic_ms() < deadline) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
		{
			struct timespec ts = { 0, 50000000 };
			nanosleep(&ts, NULL);
		}
	}
	workqueue_shutdown(w->q);
	for (int t = 0; t < 4; t++)
		pthread_join(th[t], NULL);
	assert_int_equal(atomic_load(&w->overlap), 0);
	/* Coalesced: at least the 64 distinct keys, at most one per add. */
	assert_true(atomic_load(&w->processed) >= 64);
	assert_true(atomic_load(&w->processed) <= 200);
	assert_int_equal(workqueue_add(w->q, "ns/1", 0), AL_ERR_UNAVAILABLE);
	workqueue_free(w->q);
	free(w);
}

static void test_keys(void **state)
{
	char *k = workqueue_key("ns", "name"), *ns = NULL, *name = NULL;
	assert_string_equal(k, "ns/name");
	assert_int_equal(workqueue_key_split(k, &ns, &name), AL_OK);
	assert_string_equal(ns, "ns");
	assert_string_equal(name, "name");
	free(k);
	free(ns);
	free(name);
	assert_int_equal(workqueue_key_split("nokey", &ns, &name), AL_ERR_INVALID);
	assert_null(ns);
	assert_null(workqueue_key(NULL, "x"));
	workqueue_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_coalesces_and_orders),
		cmocka_unit_test(test_one_worker_per_key),
		cmocka_unit_test(test_rate_limited_retries),
		cmocka_unit_test(test_workers_never_share_a_key),
		cmocka_unit_test(test_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
