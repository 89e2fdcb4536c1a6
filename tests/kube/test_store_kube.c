/*
 * test_store_kube.c - the Kubernetes store (src/store/store_kube.c) against a
 * real kube-apiserver and etcd. Run by tests/kube/test_store_kube.py, which
 * builds it against libairlock.a, starts the control plane and answers the
 * control requests below.
 *
 * Environment:
 *   AIRLOCK_TEST_KUBECONFIG  an admin kubeconfig (required: without it every
 *                            test fails, saying so)
 *   AIRLOCK_TEST_NAMESPACE   where objects are created (default "store-test")
 *   AIRLOCK_TEST_AUDIT_NAMESPACE  the audit log's namespace (default "airlock")
 *   AIRLOCK_TEST_FORGE_NAMESPACE  a namespace whose audit log the forgery test
 *                            breaks for good (default "audit-forge")
 *   AIRLOCK_TEST_GROUP       "main" (default) or "compaction" (needs an API
 *                            server with --watch-cache=false, where compacting
 *                            etcd makes an old watch fail with 410)
 *   AIRLOCK_TEST_CONTROL     "RFD,WFD": file descriptors of a line protocol to
 *                            the test harness: the driver writes a JSON array
 *                            (["restart_apiserver"], ["compact_etcd"],
 *                            ["kubectl", args...]) and reads "ok" or
 *                            "error <why>".
 * Run from the repository root (it reads tests/fixtures/resources/valid/).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "common/error.h"
#include "common/util.h"
#include "kube/kube.h"
#include "resource/resource.h"
#include "store/store.h"
#include "store/store_kube.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DS "AnalyticsWorkspaceDataSource"
#define SEED "tests/fixtures/resources/valid/seed-import-datasource.yaml"

static struct kube_config cfg;
static struct kube_client *kc;
static const char *ns = "store-test";
static const char *audit_ns = "airlock";
static const char *forge_ns = "audit-forge";
static char suffix[16];
static FILE *ctl_in, *ctl_out;

/* ---- harness ---- */

static void need_cluster(void)
{
	if (!kc)
		fail_msg("AIRLOCK_TEST_KUBECONFIG must name the admin kubeconfig of a running API server "
			 "with deploy/crds applied (tests/kube/test_store_kube.py sets it up)");
}

/* Sends one control request (a JSON array); fails the test unless "ok". */
static void control(json_t *req)
{
	char *line = json_dumps(req, JSON_COMPACT);
	char answer[4096];

	json_decref(req);
	if (!ctl_in || !ctl_out)
		fail_msg("AIRLOCK_TEST_CONTROL is not set: this test needs the harness "
			 "(tests/kube/test_store_kube.py) to restart the API server or run kubectl");
	assert_non_null(line);
	fprintf(ctl_out, "%s\n", line);
	fflush(ctl_out);
	free(line);
	if (!fgets(answer, sizeof(answer), ctl_in))
		fail_msg("the test harness closed the control channel");
	answer[strcspn(answer, "\n")] = 0;
	if (strcmp(answer, "ok") != 0)
		fail_msg("control request failed: %s", answer);
}

static struct store *open_store(const char *log_ns)
{
	struct store *s = NULL;
	struct store_kube_options o = { .watch_timeout_min_s = 20, .watch_timeout_max_s = 40 };
	need_cluster();
	if (store_kube_open(&s, kc, log_ns, &o) < 0)
		fail_msg("store_kube_open: %s", al_error_message());
	return s;
}

static json_t *seed_ds(const char *name)
{
	char *text = NULL;
	size_t len = 0;
	json_t *obj = NULL, *md;

	if (util_read_file(SEED, 1 << 20, &text, &len) < 0)
		fail_msg("%s: %s (run from the repository root)", SEED, al_error_message());
	if (resource_parse(text, len, &obj) < 0)
		fail_msg("%s: %s", SEED, al_error_message());
	free(text);
	md = json_object_get(obj, "metadata");
	json_object_set_new(md, "name", json_string(name));
	json_object_set_new(md, "namespace", json_string(ns));
	return obj;
}

static char *uname(const char *base)
{
	char *out = NULL;
	assert_true(asprintf(&out, "%s-%s", base, suffix) > 0);
	return out;
}

/* "<base>-<run suffix>-<tag>": names sharing a prefix per test. */
static char *tagged(const char *base, const char *tag)
{
	char *out = NULL;
	assert_true(asprintf(&out, "%s-%s-%s", base, suffix, tag) > 0);
	return out;
}

static json_t *entry(const char *action)
{
	json_t *e = audit_entry_new("system", "store-kube-test", action, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	assert_non_null(e);
	return e;
}

#define OK(call)                                                                       \
	do {                                                                           \
		int rc_ = (call);                                                      \
		if (rc_ != AL_OK)                                                      \
			fail_msg("%s = %s: %s", #call, al_error_name(rc_), al_error_message()); \
	} while (0)

/* Lists (all namespaces), then makes the first watch call from the list's
 * version, relisting while the reflector's history starts after it. */
static uint64_t start_watch(struct store *s, const char *kind)
{
	for (int i = 0; i < 10; i++) {
		json_t *items = NULL, *ev = NULL;
		uint64_t rv = 0, next = 0;
		int rc;
		OK(store_list(s, kind, NULL, NULL, &items, &rv));
		json_decref(items);
		rc = store_watch(s, kind, rv, 3000, &ev, &next);
		json_decref(ev);
		if (rc == AL_OK && next >= rv)
			return next;
		if (rc != AL_ERR_CONFLICT)
			fail_msg("store_watch: %s", al_error_message());
	}
	fail_msg("the watch never caught up with a list");
	return 0;
}

struct seen {
	char type[16];
	char name[128];
	char rv[32];
};

/* Watches from *rv until `want` events about objects whose names start with
 * `prefix` arrived, or one of type `until_type` about `until_name` (when
 * given), or timeout_s passed; returns how many were seen. */
static size_t collect_until(struct store *s, const char *kind, uint64_t *rv, const char *prefix, struct seen *out,
			    size_t want, int timeout_s, const char *until_type, const char *until_name)
{
	int64_t deadline = util_monotonic_ms() + (int64_t)timeout_s * 1000;
	size_t n = 0;
	int done = 0;

	while (n < want && !done && util_monotonic_ms() < deadline) {
		json_t *events = NULL, *ev;
		uint64_t next = 0;
		size_t i;
		int rc = store_watch(s, kind, *rv, 1000, &events, &next);
		if (rc != AL_OK)
			fail_msg("store_watch from %" PRIu64 ": %s", *rv, al_error_message());
		assert_true(next >= *rv);
		json_array_foreach(events, i, ev) {
			const json_t *o = json_object_get(ev, "object");
			const char *name = resource_name(o);
			if (strncmp(name, prefix, strlen(prefix)) != 0 || n >= want)
				continue;
			snprintf(out[n].type, sizeof(out[n].type), "%s", json_string_value(json_object_get(ev, "type")));
			snprintf(out[n].name, sizeof(out[n].name), "%s", name);
			snprintf(out[n].rv, sizeof(out[n].rv), "%s",
				 json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion")));
			if (until_type && !strcmp(out[n].type, until_type) && !strcmp(out[n].name, until_name))
				done = 1;
			n++;
		}
		json_decref(events);
		*rv = next;
	}
	return n;
}

static size_t collect(struct store *s, const char *kind, uint64_t *rv, const char *prefix, struct seen *out,
		      size_t want, int timeout_s)
{
	return collect_until(s, kind, rv, prefix, out, want, timeout_s, NULL, NULL);
}

static void expect_event(const struct seen *ev, const char *type, const char *name)
{
	if (strcmp(ev->type, type) != 0 || strcmp(ev->name, name) != 0)
		fail_msg("expected %s %s, got %s %s", type, name, ev->type, ev->name);
}

/* ---- objects ---- */

static void test_crud_seed_datasource(void **state)
{
	struct store *s = open_store(audit_ns);
	char *name = uname("crud");
	json_t *obj = seed_ds(name), *created = NULL, *got = NULL, *upd = NULL, *items = NULL, *audit = NULL;
	json_t *a = entry("test-create");
	uint64_t rv = 0;
	const char *uid;
	size_t i;
	json_t *rec;
	int found = 0;

	OK(store_create(s, obj, a, &created));
	uid = json_string_value(json_object_get(json_object_get(created, "metadata"), "uid"));
	assert_non_null(uid);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(created, "metadata"), "generation")), 1);
	assert_null(json_object_get(json_object_get(created, "metadata"), "managedFields"));
	assert_int_equal(store_create(s, obj, NULL, NULL), AL_ERR_EXISTS);
	assert_non_null(strstr(al_error_message(), "already exists"));

	OK(store_get(s, DS, ns, name, &got));
	assert_string_equal(json_string_value(json_object_get(json_object_get(got, "spec"), "type")), "Import");
	assert_true(json_equal(json_object_get(got, "spec"), json_object_get(obj, "spec")));

	OK(store_list(s, DS, ns, NULL, &items, &rv));
	assert_true(rv > 0);
	json_array_foreach(items, i, rec)
		found += !strcmp(resource_name(rec), name);
	assert_int_equal(found, 1);
	json_decref(items);

	/* A spec change bumps the generation; the version moves on. */
	json_object_set_new(json_object_get(got, "spec"), "displayName", json_string("renamed"));
	OK(store_update(s, got, NULL, &upd));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(upd, "metadata"), "generation")), 2);
	assert_string_not_equal(json_string_value(json_object_get(json_object_get(upd, "metadata"), "resourceVersion")),
				json_string_value(json_object_get(json_object_get(got, "metadata"), "resourceVersion")));
	/* Without a resourceVersion: "whatever is current". */
	json_object_del(json_object_get(obj, "metadata"), "resourceVersion");
	json_object_set_new(json_object_get(obj, "spec"), "displayName", json_string("unconditional"));
	json_decref(upd);
	OK(store_update(s, obj, NULL, &upd));
	assert_string_equal(resource_string_at(upd, "spec.displayName"), "unconditional");

	json_decref(a);
	a = entry("test-delete");
	OK(store_delete(s, DS, ns, name, NULL, a));
	json_decref(got);
	assert_int_equal(store_get(s, DS, ns, name, &got), AL_ERR_NOT_FOUND);
	assert_int_equal(store_delete(s, DS, ns, name, NULL, NULL), AL_ERR_NOT_FOUND);

	/* The create's audit record names the object with its uid. */
	OK(store_audit_list(s, 0, 0, &audit));
	found = 0;
	json_array_foreach(audit, i, rec) {
		const json_t *o = json_object_get(rec, "object");
		if (!strcmp(json_string_value(json_object_get(rec, "action")), "test-create") &&
		    json_is_string(json_object_get(o, "uid")) &&
		    !strcmp(json_string_value(json_object_get(o, "uid")), uid)) {
			assert_string_equal(json_string_value(json_object_get(o, "kind")), DS);
			assert_string_equal(json_string_value(json_object_get(o, "name")), name);
			found++;
		}
	}
	assert_int_equal(found, 1);
	json_decref(audit);
	json_decref(a);
	json_decref(created);
	json_decref(upd);
	json_decref(obj);
	free(name);
	store_close(s);
}

static void test_create_with_status_and_many(void **state)
{
	struct store *s = open_store(audit_ns);
	char *n1 = uname("many-a"), *n2 = uname("many-b");
	json_t *a = seed_ds(n1), *b = seed_ds(n2), *outs[2] = { NULL, NULL }, *got = NULL;
	const json_t *objs[2];

	json_object_set_new(a, "status", json_pack("{s:s, s:s}", "dataState", "READY", "message", "made with a status"));
	objs[0] = a;
	objs[1] = b;
	OK(store_create_many(s, 2, objs, NULL, outs));
	assert_string_equal(resource_string_at(outs[0], "status.dataState"), "READY");
	OK(store_get(s, DS, ns, n1, &got));
	assert_string_equal(resource_string_at(got, "status.message"), "made with a status");
	json_decref(got);
	/* In order, stopping at the first failure: b exists now. */
	assert_int_equal(store_create_many(s, 2, objs + 1, NULL, NULL), AL_ERR_EXISTS);
	OK(store_delete(s, DS, ns, n1, NULL, NULL));
	OK(store_delete(s, DS, ns, n2, NULL, NULL));
	json_decref(outs[0]);
	json_decref(outs[1]);
	json_decref(a);
	json_decref(b);
	free(n1);
	free(n2);
	store_close(s);
}

static void test_stale_resource_version_refused(void **state)
{
	struct store *s = open_store(audit_ns);
	char *name = uname("stale");
	json_t *obj = seed_ds(name), *v1 = NULL, *v2 = NULL, *got = NULL;
	const char *rv1;

	OK(store_create(s, obj, NULL, &v1));
	rv1 = json_string_value(json_object_get(json_object_get(v1, "metadata"), "resourceVersion"));
	json_object_set_new(json_object_get(v1, "spec"), "displayName", json_string("first writer"));
	OK(store_update(s, v1, NULL, &v2));
	/* v1 is stale now: update, update_status and delete all refuse it. */
	json_object_set_new(json_object_get(v1, "spec"), "displayName", json_string("second writer"));
	assert_int_equal(store_update(s, v1, NULL, NULL), AL_ERR_CONFLICT);
	assert_non_null(strstr(al_error_message(), "modified"));
	assert_non_null(strstr(al_error_message(), "get the latest version and retry"));
	json_object_set_new(v1, "status", json_pack("{s:s}", "dataState", "READY"));
	assert_int_equal(store_update_status(s, v1, NULL, NULL), AL_ERR_CONFLICT);
	assert_non_null(strstr(al_error_message(), "get the latest version and retry"));
	assert_int_equal(store_delete(s, DS, ns, name, rv1, NULL), AL_ERR_CONFLICT);
	OK(store_get(s, DS, ns, name, &got));
	assert_string_equal(resource_string_at(got, "spec.displayName"), "first writer");
	assert_null(json_object_get(got, "status"));
	/* The current version deletes. */
	OK(store_delete(s, DS, ns, name,
			json_string_value(json_object_get(json_object_get(got, "metadata"), "resourceVersion")), NULL));
	json_decref(got);
	json_decref(v1);
	json_decref(v2);
	json_decref(obj);
	free(name);
	store_close(s);
}

static void test_status_merge_patch_removes_keys(void **state)
{
	struct store *s = open_store(audit_ns);
	char *name = uname("status");
	json_t *obj = seed_ds(name), *cur = NULL, *next = NULL, *got = NULL, *st;

	OK(store_create(s, obj, NULL, &cur));
	json_object_set_new(cur, "status",
			    json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:i}, s:[{s:s, s:s}]}", "dataState", "READY",
				      "stage", "Collecting", "message", "job running", "job", "name", "job-1",
				      "startedAt", "2025-03-01T09:01:00Z", "exitCode", 0, "checks", "name", "malware",
				      "result", "passed"));
	{
		json_t *e = entry("test-status");
		OK(store_update_status(s, cur, e, &next));
		json_decref(e);
	}
	assert_string_equal(resource_string_at(next, "status.message"), "job running");
	/* Drop message and checks, and job.exitCode inside job: a merge patch
	 * would keep them without explicit nulls. */
	st = json_object_get(next, "status");
	json_object_del(st, "message");
	json_object_del(st, "checks");
	json_object_del(json_object_get(st, "job"), "exitCode");
	json_object_set_new(st, "dataState", json_string("Completed"));
	json_decref(cur);
	cur = next;
	next = NULL;
	OK(store_update_status(s, cur, NULL, &next));
	OK(store_get(s, DS, ns, name, &got));
	st = json_object_get(got, "status");
	assert_string_equal(json_string_value(json_object_get(st, "dataState")), "Completed");
	assert_string_equal(json_string_value(json_object_get(st, "stage")), "Collecting");
	assert_null(json_object_get(st, "message"));
	assert_null(json_object_get(st, "checks"));
	assert_string_equal(resource_string_at(got, "status.job.name"), "job-1");
	assert_null(json_object_get(json_object_get(st, "job"), "exitCode"));
	/* The spec is untouched by status writes, the generation too. */
	assert_int_equal(json_integer_value(json_object_get(json_object_get(got, "metadata"), "generation")), 1);
	/* An unchanged status writes nothing: same version. */
	json_decref(next);
	OK(store_update_status(s, got, NULL, &next));
	assert_string_equal(json_string_value(json_object_get(json_object_get(next, "metadata"), "resourceVersion")),
			    json_string_value(json_object_get(json_object_get(got, "metadata"), "resourceVersion")));
	OK(store_delete(s, DS, ns, name, NULL, NULL));
	json_decref(cur);
	json_decref(next);
	json_decref(got);
	json_decref(obj);
	free(name);
	store_close(s);
}

static void test_label_selectors(void **state)
{
	struct store *s = open_store(audit_ns);
	const char *tiers[3] = { "gold", "silver", NULL };
	char *names[3];
	char sel[256];
	json_t *items = NULL;

	for (int i = 0; i < 3; i++) {
		char base[16];
		json_t *o, *labels;
		snprintf(base, sizeof(base), "sel%d", i);
		names[i] = uname(base);
		o = seed_ds(names[i]);
		labels = json_object_get(json_object_get(o, "metadata"), "labels");
		json_object_set_new(labels, "run", json_string(suffix));
		if (tiers[i])
			json_object_set_new(labels, "tier", json_string(tiers[i]));
		OK(store_create(s, o, NULL, NULL));
		json_decref(o);
	}
#define COUNT_SEL(expr, n)                                                           \
	do {                                                                         \
		snprintf(sel, sizeof(sel), "run=%s%s", suffix, expr);                \
		OK(store_list(s, DS, ns, sel, &items, NULL));                        \
		if (json_array_size(items) != (n))                                   \
			fail_msg("selector %s: %zu items, expected %d", sel, json_array_size(items), n); \
		json_decref(items);                                                  \
	} while (0)
	COUNT_SEL("", 3);
	COUNT_SEL(",tier=gold", 1);
	COUNT_SEL(",tier!=gold", 2);
	COUNT_SEL(",tier", 2);
	COUNT_SEL(",!tier", 1);
	COUNT_SEL(",tier in (gold,silver)", 2);
	COUNT_SEL(",tier notin (gold)", 2);
	/* All namespaces, ordered by namespace then name. */
	snprintf(sel, sizeof(sel), "run=%s", suffix);
	OK(store_list(s, DS, NULL, sel, &items, NULL));
	assert_int_equal(json_array_size(items), 3);
	for (int i = 0; i < 3; i++)
		assert_string_equal(resource_name(json_array_get(items, (size_t)i)), names[i]);
	json_decref(items);
	assert_int_equal(store_list(s, DS, ns, "tier=(", &items, NULL), AL_ERR_INVALID);
	for (int i = 0; i < 3; i++) {
		OK(store_delete(s, DS, ns, names[i], NULL, NULL));
		free(names[i]);
	}
	store_close(s);
}

/* ---- watches ---- */

static void test_watch_sees_changes_in_order(void **state)
{
	struct store *s = open_store(audit_ns);
	char *name = uname("watch");
	json_t *obj = seed_ds(name), *cur = NULL, *next = NULL;
	uint64_t rv = start_watch(s, DS);
	struct seen ev[4];
	struct store_kube_watch_stats st;

	OK(store_create(s, obj, NULL, &cur));
	json_object_set_new(json_object_get(cur, "spec"), "displayName", json_string("watched"));
	OK(store_update(s, cur, NULL, &next));
	json_object_set_new(next, "status", json_pack("{s:s}", "dataState", "READY"));
	json_decref(cur);
	cur = next;
	next = NULL;
	OK(store_update_status(s, cur, NULL, &next));
	OK(store_delete(s, DS, ns, name, NULL, NULL));
	assert_int_equal(collect(s, DS, &rv, name, ev, 4, 30), 4);
	expect_event(&ev[0], "ADDED", name);
	expect_event(&ev[1], "MODIFIED", name);
	expect_event(&ev[2], "MODIFIED", name);
	expect_event(&ev[3], "DELETED", name);
	assert_true(store_rv_parse(ev[0].rv) < store_rv_parse(ev[1].rv));
	assert_true(store_rv_parse(ev[1].rv) < store_rv_parse(ev[2].rv));
	/* Nothing more, and a quiet watch returns at its timeout. */
	{
		json_t *events = NULL;
		uint64_t next_rv = 0;
		int64_t t0 = util_monotonic_ms();
		OK(store_watch(s, DS, rv, 300, &events, &next_rv));
		assert_true(util_monotonic_ms() - t0 >= 250);
		assert_true(next_rv >= rv);
		json_decref(events);
	}
	OK(store_kube_watch_stats(s, &st));
	assert_true(st.watches >= 1);
	json_decref(cur);
	json_decref(next);
	json_decref(obj);
	free(name);
	store_close(s);
}

static void test_watch_too_old_answers_conflict(void **state)
{
	struct store *s = open_store(audit_ns);
	char *name = uname("tooold");
	json_t *obj = seed_ds(name), *items = NULL, *events = NULL;
	uint64_t rv = 0, next = 0;

	/* History starts at the reflector's first list: a version from before
	 * it is too old. */
	OK(store_list(s, DS, NULL, NULL, &items, &rv));
	json_decref(items);
	OK(store_create(s, obj, NULL, NULL));
	assert_int_equal(store_watch(s, DS, rv, 5000, &events, &next), AL_ERR_CONFLICT);
	assert_non_null(strstr(al_error_message(), "too old: relist"));
	assert_int_equal(store_watch(s, "NoSuchKind", 0, 0, &events, &next), AL_ERR_INVALID);
	OK(store_delete(s, DS, ns, name, NULL, NULL));
	json_decref(obj);
	free(name);
	store_close(s);
}

static void test_watch_survives_apiserver_restart(void **state)
{
	struct store *s = open_store(audit_ns);
	char *na = tagged("restart", "a"), *nb = tagged("restart", "b"), *prefix = uname("restart");
	json_t *a = seed_ds(na), *b = seed_ds(nb), *cur = NULL;
	uint64_t rv = start_watch(s, DS);
	struct seen ev[4];
	int64_t until;
	size_t got;
	int rc;

	OK(store_create(s, a, NULL, NULL));
	assert_int_equal(collect(s, DS, &rv, na, ev, 1, 30), 1);
	expect_event(&ev[0], "ADDED", na);

	control(json_pack("[s]", "restart_apiserver"));

	/* The server is ready; our own calls may still meet a cold cache. */
	until = util_monotonic_ms() + 30000;
	while ((rc = store_get(s, DS, ns, na, &cur)) != AL_OK && util_monotonic_ms() < until)
		usleep(200 * 1000);
	OK(rc);
	json_object_set_new(json_object_get(cur, "spec"), "displayName", json_string("after restart"));
	OK(store_update(s, cur, NULL, NULL));
	OK(store_create(s, b, NULL, NULL));
	OK(store_delete(s, DS, ns, na, NULL, NULL));
	/* Every change arrives - but if the reflector had to relist (the server
	 * was down for its third retry), a's modification and deletion coalesce
	 * into the deletion, which a relist reports last. */
	got = collect_until(s, DS, &rv, prefix, ev, 3, 90, "DELETED", na);
	if (got < 2)
		fail_msg("only %zu event(s) after the restart", got);
	expect_event(&ev[got - 1], "DELETED", na);
	for (size_t i = 0; i + 1 < got; i++)
		if (strcmp(ev[i].name, nb) != 0)
			expect_event(&ev[i], "MODIFIED", na);
	expect_event(&ev[got == 3 ? 1 : 0], "ADDED", nb);
	if (got == 3)
		expect_event(&ev[0], "MODIFIED", na);
	printf("# after the restart: %zu events, %" PRIu64 " watch restart(s)\n", got, store_kube_watch_restarts(s));
	assert_true(store_kube_watch_restarts(s) >= 1);
	OK(store_delete(s, DS, ns, nb, NULL, NULL));
	json_decref(cur);
	json_decref(a);
	json_decref(b);
	free(na);
	free(nb);
	free(prefix);
	store_close(s);
}

/* Needs --watch-cache=false: with the watch cache the server answers old
 * versions from its own history and compaction never shows. */
static void test_watch_relists_after_compaction(void **state)
{
	struct store *s = open_store(audit_ns);
	char *na = tagged("compact", "a"), *nb = tagged("compact", "b"), *nc = tagged("compact", "c");
	char *prefix = uname("compact");
	json_t *a = seed_ds(na), *b = seed_ds(nb), *c = seed_ds(nc), *cur = NULL;
	uint64_t rv = start_watch(s, DS);
	struct store_kube_watch_stats before, after;
	struct seen ev[3];
	const char *types[3] = { NULL, NULL, NULL };

	OK(store_create(s, a, NULL, NULL));
	OK(store_create(s, b, NULL, NULL));
	assert_int_equal(collect(s, DS, &rv, prefix, ev, 2, 30), 2);

	/* The reflector stops watching; things change; history is compacted. */
	store_kube_pause_watches(s, 1);
	OK(store_get(s, DS, ns, na, &cur));
	json_object_set_new(json_object_get(cur, "spec"), "displayName", json_string("changed unseen"));
	OK(store_update(s, cur, NULL, NULL));
	OK(store_delete(s, DS, ns, nb, NULL, NULL));
	OK(store_create(s, c, NULL, NULL));
	control(json_pack("[s]", "compact_etcd"));
	OK(store_kube_watch_stats(s, &before));
	store_kube_pause_watches(s, 0);

	/* 410 -> relist -> the difference as events: nothing lost. */
	assert_int_equal(collect(s, DS, &rv, prefix, ev, 3, 60), 3);
	for (int i = 0; i < 3; i++) {
		if (!strcmp(ev[i].name, na))
			types[0] = ev[i].type;
		else if (!strcmp(ev[i].name, nb))
			types[1] = ev[i].type;
		else if (!strcmp(ev[i].name, nc))
			types[2] = ev[i].type;
	}
	assert_non_null(types[0]);
	assert_non_null(types[1]);
	assert_non_null(types[2]);
	assert_string_equal(types[0], "MODIFIED");
	assert_string_equal(types[1], "DELETED");
	assert_string_equal(types[2], "ADDED");
	OK(store_kube_watch_stats(s, &after));
	assert_true(after.relists > before.relists);
	/* And the watch goes on after the relist. */
	OK(store_delete(s, DS, ns, nc, NULL, NULL));
	assert_int_equal(collect(s, DS, &rv, nc, ev, 1, 30), 1);
	expect_event(&ev[0], "DELETED", nc);
	OK(store_delete(s, DS, ns, na, NULL, NULL));
	json_decref(cur);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	free(na);
	free(nb);
	free(nc);
	free(prefix);
	store_close(s);
}

/* ---- audit ---- */

static void test_audit_chain_of_20_verifies(void **state)
{
	struct store *s = open_store(audit_ns);
	json_t *recs = NULL, *tail = NULL;
	uint64_t count = 0, before;

	OK(store_audit_list(s, 0, 0, &recs));
	before = json_array_size(recs);
	json_decref(recs);
	for (int i = 0; i < 20; i++) {
		char action[32];
		json_t *e;
		snprintf(action, sizeof(action), "test-append-%d", i);
		e = entry(action);
		if (i == 3)
			json_object_set_new(e, "approvalType", json_string("data-approver"));
		OK(store_audit_append(s, e));
		json_decref(e);
	}
	OK(store_audit_list(s, 0, 0, &recs));
	assert_int_equal(json_array_size(recs), before + 20);
	if (audit_verify_records(recs, &count) < 0)
		fail_msg("audit_verify_records: %s", al_error_message());
	assert_int_equal(count, before + 20);
	assert_string_equal(json_string_value(json_object_get(json_array_get(recs, before + 19), "action")),
			    "test-append-19");
	assert_string_equal(json_string_value(json_object_get(json_array_get(recs, before + 3), "approvalType")),
			    "data-approver");
	assert_true(json_is_null(json_object_get(json_array_get(recs, before), "stageBefore")));
	OK(store_audit_list(s, before + 15, 0, &tail));
	assert_int_equal(json_array_size(tail), 5);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(tail, 0), "seq")), before + 16);
	json_decref(tail);
	OK(store_audit_list(s, 0, 3, &tail));
	assert_int_equal(json_array_size(tail), 3);
	json_decref(tail);
	json_decref(recs);
	store_close(s);
}

struct writer {
	struct store *s;
	int n;
	int rc;
	char msg[256];
};

static void *write_many(void *arg)
{
	struct writer *w = arg;
	for (int i = 0; i < w->n && w->rc == AL_OK; i++) {
		json_t *e = audit_entry_new("system", "writer", "test-concurrent", NULL, NULL, NULL, NULL, NULL, NULL,
					    NULL);
		w->rc = store_audit_append(w->s, e);
		if (w->rc < 0)
			snprintf(w->msg, sizeof(w->msg), "%s", al_error_message());
		json_decref(e);
	}
	return NULL;
}

static void test_audit_two_writers_share_one_chain(void **state)
{
	struct kube_client *kc2 = NULL;
	struct store *s1 = open_store(audit_ns), *s2 = NULL;
	struct writer w1, w2;
	pthread_t t1, t2;
	json_t *recs = NULL;
	uint64_t before, count = 0;

	/* Two processes' worth of writers: separate clients and stores, each
	 * with its own cached head. */
	OK(kube_client_new(&kc2, &cfg));
	OK(store_kube_open(&s2, kc2, audit_ns, NULL));
	OK(store_audit_list(s1, 0, 0, &recs));
	before = json_array_size(recs);
	json_decref(recs);
	{
		json_t *e = entry("test-prime");
		OK(store_audit_append(s2, e)); /* s2 learns the head now: s1's cache goes stale */
		json_decref(e);
	}
	memset(&w1, 0, sizeof(w1));
	memset(&w2, 0, sizeof(w2));
	w1.s = s1;
	w2.s = s2;
	w1.n = w2.n = 15;
	pthread_create(&t1, NULL, write_many, &w1);
	pthread_create(&t2, NULL, write_many, &w2);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	if (w1.rc || w2.rc)
		fail_msg("concurrent appends failed: %s / %s", w1.msg, w2.msg);
	OK(store_audit_list(s1, 0, 0, &recs));
	assert_int_equal(json_array_size(recs), before + 31);
	if (audit_verify_records(recs, &count) < 0)
		fail_msg("audit_verify_records: %s", al_error_message());
	assert_int_equal(count, before + 31);
	json_decref(recs);
	store_close(s2);
	store_close(s1);
	kube_client_free(kc2);
}

static void test_audit_forged_record_detected(void **state)
{
	char ans[64], path[] = "/tmp/airlock-forged-XXXXXX";
	struct store *s;
	json_t *recs = NULL, *last, *forged, *spec;
	uint64_t count = 0;
	char name[64];
	int fd;
	size_t n;

	/* Its own namespace: the chain there is broken for good afterwards. */
	snprintf(ans, sizeof(ans), "%s", forge_ns);
	s = open_store(ans);
	for (int i = 0; i < 3; i++) {
		json_t *e = entry("test-before-forgery");
		OK(store_audit_append(s, e));
		json_decref(e);
	}
	OK(store_audit_list(s, 0, 0, &recs));
	n = json_array_size(recs);
	assert_true(n >= 3);
	OK(audit_verify_records(recs, &count));
	last = json_array_get(recs, n - 1);

	/* Someone with kubectl appends a record of their own: right seq and prev,
	 * but they cannot compute... or do not bother with the hash. */
	spec = json_pack("{s:I, s:s, s:s, s:{s:s, s:s}, s:s, s:n, s:n, s:n, s:n, s:n, s:n, s:s, s:O, s:s}", "seq",
			 (json_int_t)(n + 1), "time", "2025-01-01T00:00:00Z", "action", "approve", "actor", "type",
			 "user", "name", "mallory", "reason", "looks fine to me", "object", "stageBefore", "stageAfter",
			 "dataStateBefore", "dataStateAfter", "digest", "approvalType", "data-approver", "prev",
			 json_object_get(last, "hash"), "hash",
			 "1111111111111111111111111111111111111111111111111111111111111111");
	assert_non_null(spec);
	snprintf(name, sizeof(name), "audit-%020" PRIu64, (uint64_t)(n + 1));
	forged = json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", RESOURCE_API_VERSION, "kind",
			   "AirlockAuditRecord", "metadata", "name", name, "namespace", ans, "spec", spec);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(json_dump_file(forged, path, JSON_INDENT(2)), 0);
	control(json_pack("[s, s, s, s]", "kubectl", "create", "-f", path));
	unlink(path);
	json_decref(recs);

	OK(store_audit_list(s, 0, 0, &recs));
	assert_int_equal(json_array_size(recs), n + 1);
	assert_int_equal(audit_verify_records(recs, &count), AL_ERR_INVALID);
	assert_int_equal(count, n);
	if (!strstr(al_error_message(), "record"))
		fail_msg("unexpected verifier message: %s", al_error_message());
	printf("# verifier: %s\n", al_error_message());
	json_decref(recs);

	/* An edit of an older record (kubectl patch as an admin) is found too. */
	snprintf(name, sizeof(name), "audit-%020" PRIu64, (uint64_t)2);
	control(json_pack("[s, s, s, s, s, s, s, s, s]", "kubectl", "patch", "airlockauditrecord", name, "-n", ans,
			  "--type=merge", "-p", "{\"spec\":{\"reason\":\"edited\"}}"));
	OK(store_audit_list(s, 0, 0, &recs));
	assert_int_equal(audit_verify_records(recs, &count), AL_ERR_INVALID);
	assert_int_equal(count, 1);
	printf("# verifier: %s\n", al_error_message());
	json_decref(recs);
	json_decref(forged);
	store_close(s);
}

int main(void)
{
	const char *kcfg = getenv("AIRLOCK_TEST_KUBECONFIG");
	const char *group = getenv("AIRLOCK_TEST_GROUP");
	const char *ctl = getenv("AIRLOCK_TEST_CONTROL");
	int rc, cfg_loaded = 0;

	if (getenv("AIRLOCK_TEST_NAMESPACE"))
		ns = getenv("AIRLOCK_TEST_NAMESPACE");
	if (getenv("AIRLOCK_TEST_AUDIT_NAMESPACE"))
		audit_ns = getenv("AIRLOCK_TEST_AUDIT_NAMESPACE");
	if (getenv("AIRLOCK_TEST_FORGE_NAMESPACE"))
		forge_ns = getenv("AIRLOCK_TEST_FORGE_NAMESPACE");
	{
		char *hex = util_random_hex(3);
		snprintf(suffix, sizeof(suffix), "%s", hex ? hex : "000000");
		free(hex);
	}
	if (!kcfg || !*kcfg) {
		fprintf(stderr, "test_store_kube: AIRLOCK_TEST_KUBECONFIG is not set; it must name the admin "
				"kubeconfig of a running API server (run tests/kube/test_store_kube.py)\n");
	} else if (kube_config_load(&cfg, kcfg) < 0) {
		fprintf(stderr, "test_store_kube: %s\n", al_error_message());
	} else {
		cfg_loaded = 1;
		if (kube_client_new(&kc, &cfg) < 0) {
			fprintf(stderr, "test_store_kube: %s\n", al_error_message());
			kc = NULL;
		}
	}
	if (ctl) {
		int rfd = -1, wfd = -1;
		if (sscanf(ctl, "%d,%d", &rfd, &wfd) == 2) {
			ctl_in = fdopen(rfd, "r");
			ctl_out = fdopen(wfd, "w");
		}
	}
	if (group && !strcmp(group, "compaction")) {
		const struct CMUnitTest tests[] = {
			cmocka_unit_test(test_watch_relists_after_compaction),
		};
		rc = cmocka_run_group_tests_name("store_kube_compaction", tests, NULL, NULL);
	} else {
		const struct CMUnitTest tests[] = {
			cmocka_unit_test(test_crud_seed_datasource),
			cmocka_unit_test(test_create_with_status_and_many),
			cmocka_unit_test(test_stale_resource_version_refused),
			cmocka_unit_test(test_status_merge_patch_removes_keys),
			cmocka_unit_test(test_label_selectors),
			cmocka_unit_test(test_watch_sees_changes_in_order),
			cmocka_unit_test(test_watch_too_old_answers_conflict),
			cmocka_unit_test(test_audit_chain_of_20_verifies),
			cmocka_unit_test(test_audit_two_writers_share_one_chain),
			cmocka_unit_test(test_watch_survives_apiserver_restart),
			cmocka_unit_test(test_audit_forged_record_detected),
		};
		rc = cmocka_run_group_tests_name("store_kube", tests, NULL, NULL);
	}
	if (ctl_in)
		fclose(ctl_in);
	if (ctl_out)
		fclose(ctl_out);
	kube_client_free(kc);
	if (cfg_loaded)
		kube_config_free(&cfg);
	return rc;
}
