/*
 * test_uploader_scale.c - the uploader lifecycle (uploader_scale.h): the
 * time logic with a fake clock (RFC 3339 annotations, due times, clamping,
 * sealed, unusable annotations), and the exact merge patches sent to a small
 * fake API server in-process (content type, body, the resourceVersion
 * precondition answered with 409).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "kube/kube.h"
#include "runtime/uploader_scale.h"
#include "web/http_server.h"

#define DEP_PATH "/apis/apps/v1/namespaces/ns/deployments/upload-1"
/* 2026-11-24T05:19:00Z */
#define T0 ((int64_t)1795497540)

static json_t *dep_with(long replicas, const char *scaled_up_at, const char *last_activity)
{
	json_t *ann = json_object(), *d;
	if (scaled_up_at)
		json_object_set_new(ann, UPLOADER_ANNOTATION_SCALED_UP_AT, json_string(scaled_up_at));
	if (last_activity)
		json_object_set_new(ann, UPLOADER_ANNOTATION_LAST_ACTIVITY, json_string(last_activity));
	d = json_pack("{s:{s:s, s:s, s:o}, s:{s:i}}", "metadata", "name", "upload-1", "resourceVersion", "7",
		      "annotations", ann, "spec", "replicas", (int)replicas);
	assert_non_null(d);
	return d;
}

/* ---- time logic (pure; the clock is a parameter) ---- */

static void test_time_format_and_parse_round_trip(void **state)
{
	char t[32];
	int64_t back = 0;
	(void)state;
	uploader_time_format(T0, t, sizeof(t));
	assert_string_equal(t, "2026-11-24T05:19:00Z");
	assert_int_equal(util_parse_rfc3339(t, &back), AL_OK);
	assert_true(back == T0);
	/* offsets and fractions, as other writers may send them */
	assert_int_equal(util_parse_rfc3339("2026-11-24T06:19:00.250+01:00", &back), AL_OK);
	assert_true(back == T0);
	assert_int_not_equal(util_parse_rfc3339("2026-11-24 05:19:00", &back), AL_OK);
	assert_int_not_equal(util_parse_rfc3339("2026-11-24T05:19:00", &back), AL_OK); /* no zone */
	assert_int_not_equal(util_parse_rfc3339("yesterday", &back), AL_OK);
}

static void test_last_wanted_is_the_later_usable_time(void **state)
{
	int64_t t = 0;
	json_t *d;
	(void)state;

	d = dep_with(1, "2026-11-24T05:19:00Z", "2026-11-24T05:20:30Z");
	assert_int_equal(uploader_last_wanted(d, T0 + 3600, &t), AL_OK);
	assert_true(t == T0 + 90);
	json_decref(d);

	d = dep_with(1, "2026-11-24T05:25:00Z", "2026-11-24T05:20:30Z");
	assert_int_equal(uploader_last_wanted(d, T0 + 3600, &t), AL_OK);
	assert_true(t == T0 + 360);
	json_decref(d);

	/* a malformed annotation counts as absent, the other still counts */
	d = dep_with(1, "soon", "2026-11-24T05:20:30Z");
	assert_int_equal(uploader_last_wanted(d, T0 + 3600, &t), AL_OK);
	assert_true(t == T0 + 90);
	json_decref(d);

	d = dep_with(1, "soon", NULL);
	assert_int_equal(uploader_last_wanted(d, T0, &t), AL_ERR_NOT_FOUND);
	json_decref(d);

	/* a time ahead of our clock counts as now */
	d = dep_with(1, NULL, "2030-01-01T00:00:00Z");
	assert_int_equal(uploader_last_wanted(d, T0, &t), AL_OK);
	assert_true(t == T0);
	json_decref(d);
}

static void test_decide_with_a_fake_clock(void **state)
{
	int64_t due = -1;
	json_t *d;
	(void)state;

	/* at rest: nothing, whatever the times say */
	d = dep_with(0, "2026-11-24T05:19:00Z", NULL);
	assert_int_equal(uploader_decide(d, 0, 900, T0 + 100000, &due), UPLOADER_AT_REST);
	assert_true(due == 0);
	assert_int_equal(uploader_decide(d, 1, 900, T0, &due), UPLOADER_AT_REST);
	json_decref(d);

	/* woken at T0 with idle 900: in use until T0+900, idle from then on, not a second before */
	d = dep_with(1, "2026-11-24T05:19:00Z", NULL);
	assert_int_equal(uploader_decide(d, 0, 900, T0, &due), UPLOADER_IN_USE);
	assert_true(due == T0 + 900);
	assert_int_equal(uploader_decide(d, 0, 900, T0 + 899, &due), UPLOADER_IN_USE);
	assert_true(due == T0 + 900);
	assert_int_equal(uploader_decide(d, 0, 900, T0 + 900, &due), UPLOADER_IDLE);
	assert_true(due == 0);
	/* sealed: at once, even when just woken */
	assert_int_equal(uploader_decide(d, 1, 900, T0, &due), UPLOADER_SEALED);
	json_decref(d);

	/* fresh activity postpones it */
	d = dep_with(1, "2026-11-24T05:19:00Z", "2026-11-24T05:29:00Z");
	assert_int_equal(uploader_decide(d, 0, 900, T0 + 900, &due), UPLOADER_IN_USE);
	assert_true(due == T0 + 600 + 900);
	assert_int_equal(uploader_decide(d, 0, 900, T0 + 1500, &due), UPLOADER_IDLE);
	json_decref(d);

	/* running with no usable time: stamp now, look again after a whole idle period */
	d = dep_with(3, NULL, NULL);
	assert_int_equal(uploader_decide(d, 0, 2, T0, &due), UPLOADER_NEEDS_STAMP);
	assert_true(due == T0 + 2);
	json_decref(d);

	/* idle_seconds <= 0 means the default */
	d = dep_with(1, "2026-11-24T05:19:00Z", NULL);
	assert_int_equal(uploader_decide(d, 0, 0, T0 + UPLOADER_IDLE_DEFAULT_S - 1, &due), UPLOADER_IN_USE);
	assert_int_equal(uploader_decide(d, 0, 0, T0 + UPLOADER_IDLE_DEFAULT_S, &due), UPLOADER_IDLE);
	json_decref(d);

	/* no replicas field at all: at rest */
	d = json_pack("{s:{s:s}}", "metadata", "name", "x");
	assert_int_equal(uploader_decide(d, 0, 900, T0, &due), UPLOADER_AT_REST);
	json_decref(d);
}

static void test_touch_at_most_once_a_minute(void **state)
{
	(void)state;
	assert_true(uploader_touch_due(0, T0));
	assert_false(uploader_touch_due(T0, T0));
	assert_false(uploader_touch_due(T0, T0 + UPLOADER_TOUCH_INTERVAL_S - 1));
	assert_true(uploader_touch_due(T0, T0 + UPLOADER_TOUCH_INTERVAL_S));
	assert_true(uploader_touch_due(T0, T0 - 5)); /* the clock went back: write */
}

/* ---- the patches, against a fake API server ---- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *dep;       /* the one Deployment, or NULL */
static json_t *patches;   /* [{content_type, body}] */
static int rv_counter;

static json_t *status_obj(int code, const char *reason)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "kind", "Status", "apiVersion", "v1", "status", "Failure",
			 "reason", reason, "message", reason, "code", code);
}

static void merge(json_t *target, const json_t *patch)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)patch, k, v) {
		json_t *cur = json_object_get(target, k);
		if (json_is_object(v) && json_is_object(cur))
			merge(cur, v);
		else if (json_is_null(v))
			json_object_del(target, k);
		else
			json_object_set(target, k, v);
	}
}

static void handler(void *userdata, const struct http_request *req, struct http_response *resp)
{
	json_error_t jerr;
	json_t *body = req->body_len ? json_loads(req->body, 0, &jerr) : NULL;
	const char *ct = http_request_header(req, "Content-Type");
	(void)userdata;

	pthread_mutex_lock(&lock);
	if (strcmp(req->path, DEP_PATH) || !dep) {
		http_response_json(resp, 404, status_obj(404, "NotFound"));
	} else if (!strcmp(req->method, "GET")) {
		http_response_json(resp, 200, json_incref(dep));
	} else if (!strcmp(req->method, "PATCH")) {
		const char *want = json_string_value(json_object_get(json_object_get(body, "metadata"), "resourceVersion"));
		const char *have = json_string_value(json_object_get(json_object_get(dep, "metadata"), "resourceVersion"));
		char rv[16];
		json_array_append_new(patches, json_pack("{s:s, s:O}", "content_type", ct ? ct : "", "body", body));
		if (want && strcmp(want, have)) {
			http_response_json(resp, 409, status_obj(409, "Conflict"));
		} else {
			merge(dep, body);
			snprintf(rv, sizeof(rv), "%d", ++rv_counter);
			json_object_set_new(json_object_get(dep, "metadata"), "resourceVersion", json_string(rv));
			http_response_json(resp, 200, json_incref(dep));
		}
	} else {
		http_response_json(resp, 405, status_obj(405, "MethodNotAllowed"));
	}
	pthread_mutex_unlock(&lock);
	json_decref(body);
}

struct fixture {
	struct http_server *srv;
	struct kube_client *kc;
	char server[64];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct kube_config cfg = { 0 };

	assert_non_null(f);
	dep = dep_with(0, NULL, NULL);
	patches = json_array();
	rv_counter = 7;
	assert_int_equal(http_server_start(&f->srv, "127.0.0.1", 0, 0, handler, NULL), AL_OK);
	snprintf(f->server, sizeof(f->server), "http://127.0.0.1:%u", (unsigned)http_server_port(f->srv));
	cfg.server = f->server;
	cfg.token = (char *)"token-for-tests";
	cfg.namespace = (char *)"ns";
	assert_int_equal(kube_client_new(&f->kc, &cfg), AL_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	kube_client_free(f->kc);
	http_server_stop(f->srv);
	json_decref(dep);
	json_decref(patches);
	free(f);
	return 0;
}

static json_t *last_patch(void)
{
	json_t *p;
	pthread_mutex_lock(&lock);
	p = json_incref(json_array_get(patches, json_array_size(patches) - 1));
	pthread_mutex_unlock(&lock);
	return p;
}

static const char *ann_of(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(json_object_get(obj, "metadata"), "annotations"), key));
}

static void test_wake_ready_touch_and_scale_down(void **state)
{
	struct fixture *f = *state;
	json_t *p, *cur = NULL;
	int ready = -1;
	int64_t due;

	assert_int_equal(uploader_ready(f->kc, "ns", "upload-1", &ready), AL_OK);
	assert_int_equal(ready, 0);

	/* wake: one merge patch, replicas 1 and scaled-up-at */
	assert_int_equal(uploader_wake(f->kc, "ns", "upload-1", T0), AL_OK);
	p = last_patch();
	assert_string_equal(json_string_value(json_object_get(p, "content_type")), "application/merge-patch+json");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(p, "body"), "spec"), "replicas")), 1);
	assert_string_equal(ann_of(json_object_get(p, "body"), UPLOADER_ANNOTATION_SCALED_UP_AT), "2026-11-24T05:19:00Z");
	assert_null(json_object_get(json_object_get(json_object_get(p, "body"), "metadata"), "resourceVersion"));
	json_decref(p);

	/* asked for, but no pod ready yet: not ready; then ready */
	assert_int_equal(uploader_ready(f->kc, "ns", "upload-1", &ready), AL_OK);
	assert_int_equal(ready, 0);
	pthread_mutex_lock(&lock);
	json_object_set_new(dep, "status", json_pack("{s:i, s:i}", "readyReplicas", 1, "availableReplicas", 1));
	pthread_mutex_unlock(&lock);
	assert_int_equal(uploader_ready(f->kc, "ns", "upload-1", &ready), AL_OK);
	assert_int_equal(ready, 1);

	/* touch: only the annotation, never the replicas */
	assert_int_equal(uploader_activity_touch(f->kc, "ns", "upload-1", T0 + 120), AL_OK);
	p = last_patch();
	assert_null(json_object_get(json_object_get(p, "body"), "spec"));
	assert_string_equal(ann_of(json_object_get(p, "body"), UPLOADER_ANNOTATION_LAST_ACTIVITY), "2026-11-24T05:21:00Z");
	json_decref(p);

	/* the operator's reading: in use until T0+120+900 */
	assert_int_equal(uploader_get(f->kc, "ns", "upload-1", &cur), AL_OK);
	assert_int_equal(uploader_decide(cur, 0, 900, T0 + 1019, &due), UPLOADER_IN_USE);
	assert_true(due == T0 + 1020);
	assert_int_equal(uploader_decide(cur, 0, 900, T0 + 1020, &due), UPLOADER_IDLE);

	/* a touch lands after the reading: the scale-down is refused (409) and nothing changes */
	assert_int_equal(uploader_activity_touch(f->kc, "ns", "upload-1", T0 + 1019), AL_OK);
	assert_int_equal(uploader_scale_down(f->kc, "ns", "upload-1",
					     json_string_value(json_object_get(json_object_get(cur, "metadata"), "resourceVersion"))),
			 AL_ERR_CONFLICT);
	pthread_mutex_lock(&lock);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(dep, "spec"), "replicas")), 1);
	pthread_mutex_unlock(&lock);
	json_decref(cur);

	/* on a fresh reading it goes through */
	assert_int_equal(uploader_get(f->kc, "ns", "upload-1", &cur), AL_OK);
	assert_int_equal(uploader_scale_down(f->kc, "ns", "upload-1",
					     json_string_value(json_object_get(json_object_get(cur, "metadata"), "resourceVersion"))),
			 AL_OK);
	p = last_patch();
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(p, "body"), "spec"), "replicas")), 0);
	json_decref(p);
	pthread_mutex_lock(&lock);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(dep, "spec"), "replicas")), 0);
	pthread_mutex_unlock(&lock);
	assert_int_equal(uploader_ready(f->kc, "ns", "upload-1", &ready), AL_OK);
	assert_int_equal(ready, 0); /* readyReplicas lags; spec.replicas 0 says no */
	json_decref(cur);

	/* the operator's own checks */
	assert_int_equal(uploader_scale_down(f->kc, "ns", "upload-1", NULL), AL_ERR_INVALID);
	assert_int_equal(uploader_stamp(f->kc, "ns", "upload-1", "", T0), AL_ERR_INVALID);
	assert_int_equal(uploader_wake(f->kc, "ns", NULL, T0), AL_ERR_INVALID);
}

static void test_stamp_and_not_found(void **state)
{
	struct fixture *f = *state;
	json_t *p;
	int ready = 1;

	assert_int_equal(uploader_stamp(f->kc, "ns", "upload-1", "7", T0), AL_OK);
	p = last_patch();
	assert_string_equal(ann_of(json_object_get(p, "body"), UPLOADER_ANNOTATION_SCALED_UP_AT), "2026-11-24T05:19:00Z");
	assert_null(json_object_get(json_object_get(p, "body"), "spec"));
	json_decref(p);
	assert_int_equal(uploader_stamp(f->kc, "ns", "upload-1", "7", T0), AL_ERR_CONFLICT); /* it moved on to 8 */

	assert_int_equal(uploader_wake(f->kc, "ns", "upload-2", T0), AL_ERR_NOT_FOUND);
	assert_int_equal(uploader_activity_touch(f->kc, "ns", "upload-2", T0), AL_ERR_NOT_FOUND);
	assert_int_equal(uploader_ready(f->kc, "ns", "upload-2", &ready), AL_ERR_NOT_FOUND);
	assert_int_equal(ready, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_format_and_parse_round_trip),
		cmocka_unit_test(test_last_wanted_is_the_later_usable_time),
		cmocka_unit_test(test_decide_with_a_fake_clock),
		cmocka_unit_test(test_touch_at_most_once_a_minute),
		cmocka_unit_test_setup_teardown(test_wake_ready_touch_and_scale_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stamp_and_not_found, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
