/* Unit tests for the embedded SQLite store (src/store). */
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "common/error.h"
#include "common/util.h"
#include "store/store.h"

#define KIND "AnalyticsWorkspaceDataSource"

struct fixture {
	char dir[64];
	char *path;
	struct store *s;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->path = util_path_join(f->dir, "airlock.db");
	assert_non_null(f->path);
	assert_int_equal(store_sqlite_open(&f->s, f->path), AL_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_close(f->s);
	util_remove_tree(f->dir);
	free(f->path);
	free(f);
	return 0;
}

static const char *md_str(const json_t *obj, const char *field)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), field));
}

static json_int_t md_int(const json_t *obj, const char *field)
{
	return json_integer_value(json_object_get(json_object_get(obj, "metadata"), field));
}

/* labels: "k=v,k2=v2" or NULL. ns NULL leaves namespace out. */
static json_t *make_obj(const char *ns, const char *name, const char *labels, const char *spec_type)
{
	json_t *o = json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "apiVersion", "airlock.example/v1",
			      "kind", KIND, "metadata", "name", name, "spec", "type", spec_type);
	json_t *md = json_object_get(o, "metadata");
	assert_non_null(o);
	if (ns)
		json_object_set_new(md, "namespace", json_string(ns));
	if (labels) {
		json_t *l = json_object();
		char *copy = strdup(labels), *tok = copy;
		assert_non_null(copy);
		while (tok) {
			char *next = strchr(tok, ','), *eq;
			if (next)
				*next++ = '\0';
			eq = strchr(tok, '=');
			*eq = '\0';
			json_object_set_new(l, tok, json_string(eq + 1));
			tok = next;
		}
		free(copy);
		json_object_set_new(md, "labels", l);
	}
	return o;
}

static void create_ok(struct store *s, const char *ns, const char *name, const char *labels)
{
	json_t *o = make_obj(ns, name, labels, "Import");
	assert_int_equal(store_create(s, o, NULL, NULL), AL_OK);
	json_decref(o);
}

static void expect_msg(const char *part)
{
	if (!strstr(al_error_message(), part))
		fail_msg("message \"%s\" lacks \"%s\"", al_error_message(), part);
}

static void test_create_get(void **state)
{
	struct fixture *f = *state;
	json_t *o = make_obj(NULL, "x", "team=a", "Import"), *out = NULL, *got = NULL;

	json_object_set_new(json_object_get(o, "metadata"), "uid", json_string("forged"));
	assert_int_equal(store_create(f->s, o, NULL, &out), AL_OK);
	assert_string_equal(md_str(out, "namespace"), "default");
	assert_string_equal(md_str(out, "resourceVersion"), "1");
	assert_int_equal(md_int(out, "generation"), 1);
	assert_int_equal(strlen(md_str(out, "uid")), 36);
	assert_string_not_equal(md_str(out, "uid"), "forged");
	assert_int_equal(strlen(md_str(out, "creationTimestamp")), 20);
	assert_int_equal(store_get(f->s, KIND, NULL, "x", &got), AL_OK);
	assert_true(json_equal(out, got));
	json_decref(got);
	assert_int_equal(store_get(f->s, KIND, "default", "x", &got), AL_OK);
	json_decref(got);

	/* Same name again: refused, with a message naming it. */
	assert_int_equal(store_create(f->s, o, NULL, NULL), AL_ERR_EXISTS);
	expect_msg(KIND " default/x already exists");
	/* Same name in another namespace is another object. */
	json_object_set_new(json_object_get(o, "metadata"), "namespace", json_string("ws1"));
	assert_int_equal(store_create(f->s, o, NULL, NULL), AL_OK);

	assert_int_equal(store_get(f->s, KIND, NULL, "nope", &got), AL_ERR_NOT_FOUND);
	expect_msg("default/nope not found");
	assert_null(got);
	assert_int_equal(store_get(f->s, "Other", NULL, "x", &got), AL_ERR_NOT_FOUND);

	/* The store's minimum shape. */
	json_object_del(o, "apiVersion");
	assert_int_equal(store_create(f->s, o, NULL, NULL), AL_ERR_INVALID);
	expect_msg("apiVersion");
	json_decref(o);
	o = json_pack("{s:s, s:s, s:{}}", "apiVersion", "v1", "kind", KIND, "metadata");
	assert_int_equal(store_create(f->s, o, NULL, NULL), AL_ERR_INVALID);
	expect_msg("metadata.name");
	json_decref(o);
	o = json_pack("{s:s, s:{s:s}}", "apiVersion", "v1", "metadata", "name", "y");
	assert_int_equal(store_create(f->s, o, NULL, NULL), AL_ERR_INVALID);
	expect_msg("kind");
	json_decref(o);
	json_decref(out);
}

static void expect_names(struct store *s, const char *ns, const char *sel, const char *want)
{
	json_t *items = NULL, *it;
	char got[512] = "";
	size_t i, off = 0;
	uint64_t rv = 0;

	if (store_list(s, KIND, ns, sel, &items, &rv) != AL_OK)
		fail_msg("list %s: %s", sel ? sel : "(none)", al_error_message());
	json_array_foreach(items, i, it) {
		int n = snprintf(got + off, sizeof(got) - off, "%s%s/%s", i ? " " : "",
				 md_str(it, "namespace"), md_str(it, "name"));
		off += (size_t)n;
	}
	if (strcmp(got, want) != 0)
		fail_msg("selector \"%s\": got \"%s\", want \"%s\"", sel ? sel : "", got, want);
	assert_true(rv > 0);
	json_decref(items);
}

static void test_list_selectors(void **state)
{
	struct fixture *f = *state;
	json_t *items = (json_t *)1;

	create_ok(f->s, "ws2", "b", "team=a,env=prod");
	create_ok(f->s, "ws1", "c", "team=b,env=prod");
	create_ok(f->s, "ws1", "a", "team=a,env=dev");
	create_ok(f->s, "ws2", "a", "env=prod");
	create_ok(f->s, "ws1", "d", NULL);
	create_ok(f->s, "ws1", "e", "example.org/owner=x-y.z,team=");
	{
		json_t *other = make_obj("ws1", "zz", "team=a", "Import");
		json_object_set_new(other, "kind", json_string("AnalyticsWorkspaceDataBinding"));
		assert_int_equal(store_create(f->s, other, NULL, NULL), AL_OK);
		json_decref(other);
	}

	expect_names(f->s, NULL, NULL, "ws1/a ws1/c ws1/d ws1/e ws2/a ws2/b");
	expect_names(f->s, "", NULL, "ws1/a ws1/c ws1/d ws1/e ws2/a ws2/b");
	expect_names(f->s, "ws2", NULL, "ws2/a ws2/b");
	expect_names(f->s, "nope", NULL, "");
	expect_names(f->s, NULL, "", "ws1/a ws1/c ws1/d ws1/e ws2/a ws2/b");
	expect_names(f->s, NULL, "team=a", "ws1/a ws2/b");
	expect_names(f->s, NULL, "team==a", "ws1/a ws2/b");
	expect_names(f->s, NULL, " team = a ", "ws1/a ws2/b");
	expect_names(f->s, NULL, "team!=a", "ws1/c ws1/d ws1/e ws2/a");
	expect_names(f->s, NULL, "team", "ws1/a ws1/c ws1/e ws2/b");
	expect_names(f->s, NULL, "!team", "ws1/d ws2/a");
	expect_names(f->s, NULL, "team=", "ws1/e");
	expect_names(f->s, NULL, "team=a,env=prod", "ws2/b");
	expect_names(f->s, NULL, "env=prod,!team", "ws2/a");
	expect_names(f->s, "ws1", "env", "ws1/a ws1/c");
	expect_names(f->s, NULL, "example.org/owner=x-y.z", "ws1/e");
	expect_names(f->s, NULL, "team in (a, b)", "ws1/a ws1/c ws2/b");
	expect_names(f->s, NULL, "team notin (a),env", "ws1/c ws2/a");
	expect_names(f->s, NULL, "env in (prod),team in (a,b)", "ws1/c ws2/b");

	static const char *const bad[] = {
		"=a", "team=a,", ",", "!", "team!a", "a in b", "a in (b", "a in b)", "te am=a",
		"team=a b", "team=a=b", "-bad=1", "a/=b", "/a=b", "a in (b,c d)", "a notin",
		"x in ((a))", "Upper.Prefix/k=v",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = store_list(f->s, KIND, NULL, bad[i], &items, NULL);
		if (rc != AL_ERR_INVALID)
			fail_msg("selector \"%s\" answered %d, want invalid", bad[i], rc);
		assert_null(items);
		expect_msg("label selector");
	}
	assert_int_equal(store_list(f->s, NULL, NULL, NULL, &items, NULL), AL_ERR_INVALID);
}

static void test_update(void **state)
{
	struct fixture *f = *state;
	json_t *o = make_obj("ws", "u", "team=a", "Import"), *v1 = NULL, *v2 = NULL, *got = NULL;
	json_t *in;

	assert_int_equal(store_create(f->s, o, NULL, &v1), AL_OK);
	json_decref(o);
	/* Status lands via update_status; spec + labels via update. */
	in = json_deep_copy(v1);
	json_object_set_new(in, "status", json_pack("{s:s}", "dataState", "Pending"));
	assert_int_equal(store_update_status(f->s, in, NULL, &v2), AL_OK);
	json_decref(in);
	assert_string_equal(md_str(v2, "resourceVersion"), "2");

	/* Stale resourceVersion: refused and nothing changes. */
	in = json_deep_copy(v1);
	json_object_set_new(json_object_get(in, "spec"), "type", json_string("Uploaded"));
	assert_int_equal(store_update(f->s, in, NULL, NULL), AL_ERR_CONFLICT);
	expect_msg(KIND " ws/u has been modified");
	expect_msg("get the latest version and retry");
	assert_int_equal(store_get(f->s, KIND, "ws", "u", &got), AL_OK);
	assert_true(json_equal(got, v2));
	json_decref(got);
	json_decref(v1);

	/* Fresh rv, spec change: generation 2, status kept although the
	 * input carries another one, system fields from the store. */
	json_object_set_new(json_object_get(in, "metadata"), "resourceVersion",
			    json_string(md_str(v2, "resourceVersion")));
	json_object_set_new(in, "status", json_pack("{s:s}", "dataState", "Hacked"));
	json_object_set_new(json_object_get(in, "metadata"), "uid", json_string("other"));
	json_object_set_new(json_object_get(in, "metadata"), "creationTimestamp",
			    json_string("2000-01-01T00:00:00Z"));
	json_object_set_new(json_object_get(in, "metadata"), "generation", json_integer(77));
	assert_int_equal(store_update(f->s, in, NULL, &v1), AL_OK);
	assert_int_equal(md_int(v1, "generation"), 2);
	assert_string_equal(md_str(v1, "resourceVersion"), "3");
	assert_string_equal(md_str(v1, "uid"), md_str(v2, "uid"));
	assert_string_equal(md_str(v1, "creationTimestamp"), md_str(v2, "creationTimestamp"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(v1, "status"), "dataState")),
			    "Pending");
	assert_string_equal(json_string_value(json_object_get(json_object_get(v1, "spec"), "type")),
			    "Uploaded");
	json_decref(in);
	json_decref(v2);

	/* Labels only: no generation bump, rv moves, selector follows. */
	in = json_deep_copy(v1);
	json_object_set_new(json_object_get(in, "metadata"), "labels", json_pack("{s:s}", "team", "b"));
	json_object_set_new(json_object_get(in, "metadata"), "annotations", json_pack("{s:s}", "n", "1"));
	assert_int_equal(store_update(f->s, in, NULL, &v2), AL_OK);
	assert_int_equal(md_int(v2, "generation"), 2);
	assert_string_equal(md_str(v2, "resourceVersion"), "4");
	expect_names(f->s, NULL, "team=b", "ws/u");
	expect_names(f->s, NULL, "team=a", "");
	json_decref(in);

	/* Same content again (no rv given): nothing is written. */
	in = json_deep_copy(v2);
	json_object_del(json_object_get(in, "metadata"), "resourceVersion");
	json_decref(v1);
	assert_int_equal(store_update(f->s, in, NULL, &v1), AL_OK);
	assert_string_equal(md_str(v1, "resourceVersion"), "4");
	/* Labels removed when absent from the input. */
	json_object_del(json_object_get(in, "metadata"), "labels");
	json_decref(v1);
	assert_int_equal(store_update(f->s, in, NULL, &v1), AL_OK);
	assert_null(json_object_get(json_object_get(v1, "metadata"), "labels"));
	expect_names(f->s, NULL, "team", "");
	json_decref(in);

	/* Missing object. */
	in = make_obj("ws", "missing", NULL, "Import");
	assert_int_equal(store_update(f->s, in, NULL, NULL), AL_ERR_NOT_FOUND);
	assert_int_equal(store_update_status(f->s, in, NULL, NULL), AL_ERR_NOT_FOUND);
	json_object_set_new(json_object_get(in, "metadata"), "resourceVersion", json_integer(4));
	assert_int_equal(store_update(f->s, in, NULL, NULL), AL_ERR_INVALID);
	json_decref(in);
	json_decref(v1);
	json_decref(v2);
}

static void test_update_status(void **state)
{
	struct fixture *f = *state;
	json_t *o = make_obj(NULL, "s", NULL, "Import"), *v1 = NULL, *v2 = NULL, *in;

	assert_int_equal(store_create(f->s, o, NULL, &v1), AL_OK);
	json_decref(o);
	in = json_deep_copy(v1);
	json_object_set_new(json_object_get(in, "spec"), "type", json_string("Uploaded"));
	json_object_set_new(json_object_get(in, "metadata"), "labels", json_pack("{s:s}", "x", "y"));
	json_object_set_new(in, "status", json_pack("{s:s, s:i}", "dataState", "Completed", "n", 3));
	assert_int_equal(store_update_status(f->s, in, NULL, &v2), AL_OK);
	assert_int_equal(md_int(v2, "generation"), 1);
	assert_string_equal(json_string_value(json_object_get(json_object_get(v2, "spec"), "type")),
			    "Import");
	assert_null(json_object_get(json_object_get(v2, "metadata"), "labels"));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(v2, "status"), "n")), 3);
	/* in still carries v1's rv: stale now. */
	assert_int_equal(store_update_status(f->s, in, NULL, NULL), AL_ERR_CONFLICT);
	json_decref(in);
	json_decref(v1);
	json_decref(v2);
}

static void test_delete(void **state)
{
	struct fixture *f = *state;
	json_t *o = make_obj(NULL, "d", NULL, "Import"), *v1 = NULL, *got = NULL, *ev = NULL, *in;
	uint64_t rv = 0, next = 0;

	assert_int_equal(store_create(f->s, o, NULL, &v1), AL_OK);
	assert_int_equal(store_delete(f->s, KIND, NULL, "d", "999", NULL), AL_ERR_CONFLICT);
	assert_int_equal(store_get(f->s, KIND, NULL, "d", &got), AL_OK);
	json_decref(got);
	assert_int_equal(store_delete(f->s, KIND, NULL, "d", md_str(v1, "resourceVersion"), NULL), AL_OK);
	assert_int_equal(store_get(f->s, KIND, NULL, "d", &got), AL_ERR_NOT_FOUND);
	assert_int_equal(store_delete(f->s, KIND, NULL, "d", NULL, NULL), AL_ERR_NOT_FOUND);
	assert_int_equal(store_watch(f->s, KIND, 1, 0, &ev, &rv), AL_OK);
	assert_int_equal(json_array_size(ev), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "type")), "DELETED");
	assert_string_equal(md_str(json_object_get(json_array_get(ev, 0), "object"), "resourceVersion"), "2");
	assert_int_equal(rv, 2);
	json_decref(ev);
	json_decref(v1);

	/* With a finalizer: delete only marks; removing the finalizer deletes. */
	json_object_set_new(json_object_get(o, "metadata"), "finalizers",
			    json_pack("[s]", "airlock.example/cleanup"));
	assert_int_equal(store_create(f->s, o, NULL, NULL), AL_OK);
	assert_int_equal(store_delete(f->s, KIND, NULL, "d", NULL, NULL), AL_OK);
	assert_int_equal(store_get(f->s, KIND, NULL, "d", &got), AL_OK);
	assert_non_null(md_str(got, "deletionTimestamp"));
	/* Deleting again changes nothing. */
	assert_int_equal(store_delete(f->s, KIND, NULL, "d", NULL, NULL), AL_OK);
	in = json_deep_copy(got);
	json_decref(got);
	assert_int_equal(store_get(f->s, KIND, NULL, "d", &got), AL_OK);
	assert_string_equal(md_str(got, "resourceVersion"), md_str(in, "resourceVersion"));
	json_decref(got);
	json_object_set_new(json_object_get(in, "metadata"), "finalizers", json_array());
	assert_int_equal(store_update(f->s, in, NULL, NULL), AL_OK);
	assert_int_equal(store_get(f->s, KIND, NULL, "d", &got), AL_ERR_NOT_FOUND);
	assert_int_equal(store_watch(f->s, KIND, rv, 0, &ev, &next), AL_OK);
	assert_int_equal(json_array_size(ev), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "type")), "ADDED");
	assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 1), "type")), "MODIFIED");
	assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 2), "type")), "DELETED");
	assert_int_equal(next, rv + 3);
	json_decref(ev);
	json_decref(in);
	json_decref(o);
}

struct writer_arg {
	struct store *s;
	int delay_ms;
	const char *name;
};

static void *delayed_create(void *p)
{
	struct writer_arg *a = p;
	usleep((useconds_t)a->delay_ms * 1000);
	create_ok(a->s, NULL, a->name, NULL);
	return NULL;
}

static void test_watch(void **state)
{
	struct fixture *f = *state;
	json_t *ev = NULL;
	uint64_t rv = 0, cur = 0;
	int64_t t0;
	pthread_t th;
	struct writer_arg arg = { f->s, 150, "late" };

	create_ok(f->s, NULL, "w1", NULL);
	create_ok(f->s, NULL, "w2", NULL);
	{
		json_t *other = make_obj(NULL, "b1", NULL, "Import");
		json_object_set_new(other, "kind", json_string("AnalyticsWorkspaceDataBinding"));
		assert_int_equal(store_create(f->s, other, NULL, NULL), AL_OK);
		json_decref(other);
	}
	/* Everything since 0, then one kind. */
	assert_int_equal(store_watch(f->s, NULL, 0, 0, &ev, &rv), AL_OK);
	assert_int_equal(json_array_size(ev), 3);
	assert_int_equal(rv, 3);
	json_decref(ev);
	assert_int_equal(store_watch(f->s, KIND, 1, 0, &ev, &rv), AL_OK);
	assert_int_equal(json_array_size(ev), 1);
	assert_string_equal(md_str(json_object_get(json_array_get(ev, 0), "object"), "name"), "w2");
	assert_int_equal(rv, 2);
	json_decref(ev);
	/* Nothing of this kind after 2 (rv 3 is a binding): answers the current rv. */
	assert_int_equal(store_watch(f->s, KIND, 2, 0, &ev, &cur), AL_OK);
	assert_int_equal(json_array_size(ev), 0);
	assert_int_equal(cur, 3);
	json_decref(ev);

	/* Blocks for the timeout when nothing happens. */
	t0 = util_monotonic_ms();
	assert_int_equal(store_watch(f->s, KIND, 3, 250, &ev, &cur), AL_OK);
	assert_true(util_monotonic_ms() - t0 >= 240);
	assert_int_equal(json_array_size(ev), 0);
	assert_int_equal(cur, 3);
	json_decref(ev);

	/* Wakes up when another thread writes. */
	assert_int_equal(pthread_create(&th, NULL, delayed_create, &arg), 0);
	t0 = util_monotonic_ms();
	assert_int_equal(store_watch(f->s, KIND, 3, 5000, &ev, &cur), AL_OK);
	int64_t waited = util_monotonic_ms() - t0;
	pthread_join(th, NULL);
	assert_int_equal(json_array_size(ev), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "type")), "ADDED");
	assert_int_equal(cur, 4);
	assert_true(waited >= 100 && waited < 2000);
	json_decref(ev);

	/* A version the store never reached. */
	assert_int_equal(store_watch(f->s, KIND, 100, 0, &ev, &cur), AL_ERR_CONFLICT);
	assert_null(ev);
	expect_msg("relist");
}

/* A second handle on the same file stands in for another process: its
 * writes do not signal our condition variable, so the watcher must poll. */
static void test_watch_other_connection(void **state)
{
	struct fixture *f = *state;
	struct store *other = NULL;
	struct writer_arg arg = { NULL, 200, "from-other" };
	json_t *ev = NULL;
	uint64_t rv = 0;
	pthread_t th;
	int64_t t0, waited;

	assert_int_equal(store_sqlite_open(&other, f->path), AL_OK);
	arg.s = other;
	assert_int_equal(pthread_create(&th, NULL, delayed_create, &arg), 0);
	t0 = util_monotonic_ms();
	assert_int_equal(store_watch(f->s, KIND, 0, 5000, &ev, &rv), AL_OK);
	waited = util_monotonic_ms() - t0;
	pthread_join(th, NULL);
	assert_int_equal(json_array_size(ev), 1);
	assert_int_equal(rv, 1);
	assert_true(waited < 2500);
	json_decref(ev);
	store_close(other);
}

static json_t *audit_entry(const char *action)
{
	return audit_entry_new("user", "alice", action, NULL, NULL, NULL, NULL, NULL, NULL,
			       "unit test");
}

static void test_audit_in_transaction(void **state)
{
	struct fixture *f = *state;
	json_t *o = make_obj("ws", "a", NULL, "Import"), *a = audit_entry("create"), *v1 = NULL;
	json_t *recs = NULL, *in;
	uint64_t n = 0;

	assert_int_equal(store_create(f->s, o, a, &v1), AL_OK);
	/* A failed create (exists) appends nothing. */
	assert_int_equal(store_create(f->s, o, a, NULL), AL_ERR_EXISTS);
	assert_int_equal(store_audit_list(f->s, 0, 0, &recs), AL_OK);
	assert_int_equal(json_array_size(recs), 1);
	{
		json_t *r = json_array_get(recs, 0), *ob = json_object_get(r, "object");
		assert_int_equal(json_integer_value(json_object_get(r, "seq")), 1);
		assert_string_equal(json_string_value(json_object_get(r, "prev")), AUDIT_GENESIS_HASH);
		assert_string_equal(json_string_value(json_object_get(ob, "kind")), KIND);
		assert_string_equal(json_string_value(json_object_get(ob, "namespace")), "ws");
		assert_string_equal(json_string_value(json_object_get(ob, "name")), "a");
		assert_string_equal(json_string_value(json_object_get(ob, "uid")), md_str(v1, "uid"));
	}
	json_decref(recs);

	/* A stale update appends no audit record and changes nothing. */
	in = json_deep_copy(v1);
	json_object_set_new(json_object_get(in, "metadata"), "resourceVersion", json_string("12345"));
	json_object_set_new(json_object_get(in, "spec"), "type", json_string("Uploaded"));
	assert_int_equal(store_update(f->s, in, a, NULL), AL_ERR_CONFLICT);
	assert_int_equal(store_delete(f->s, KIND, "ws", "a", "12345", a), AL_ERR_CONFLICT);
	assert_int_equal(store_delete(f->s, KIND, "ws", "nope", NULL, a), AL_ERR_NOT_FOUND);
	assert_int_equal(store_audit_list(f->s, 0, 0, &recs), AL_OK);
	assert_int_equal(json_array_size(recs), 1);
	json_decref(recs);

	/* Successful writes each add one; a caller-given object is kept. */
	json_object_del(json_object_get(in, "metadata"), "resourceVersion");
	assert_int_equal(store_update(f->s, in, a, NULL), AL_OK);
	json_t *b = audit_entry("login");
	json_object_set_new(b, "object", json_pack("{s:s}", "kind", "User"));
	assert_int_equal(store_audit_append(f->s, b), AL_OK);
	assert_int_equal(store_delete(f->s, KIND, "ws", "a", NULL, a), AL_OK);
	assert_int_equal(store_audit_append(f->s, NULL), AL_ERR_INVALID);
	assert_int_equal(store_audit_list(f->s, 0, 0, &recs), AL_OK);
	assert_int_equal(json_array_size(recs), 4);
	assert_int_equal(audit_verify_records(recs, &n), AL_OK);
	assert_int_equal(n, 4);
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(recs, 2),
									       "object"), "kind")), "User");
	json_decref(recs);
	/* after_seq and limit. */
	assert_int_equal(store_audit_list(f->s, 1, 2, &recs), AL_OK);
	assert_int_equal(json_array_size(recs), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(recs, 0), "seq")), 2);
	json_decref(recs);
	assert_int_equal(store_audit_list(f->s, 4, 0, &recs), AL_OK);
	assert_int_equal(json_array_size(recs), 0);
	json_decref(recs);
	/* An audit entry that is not an object fails the write as a whole. */
	{
		json_t *bad = json_string("x");
		assert_int_equal(store_create(f->s, o, bad, NULL), AL_ERR_INVALID);
		assert_int_equal(store_get(f->s, KIND, "ws", "a", &recs), AL_ERR_NOT_FOUND);
		json_decref(bad);
	}
	json_decref(b);
	json_decref(in);
	json_decref(a);
	json_decref(o);
	json_decref(v1);
}

static void test_reopen(void **state)
{
	struct fixture *f = *state;
	json_t *a = audit_entry("create"), *got = NULL, *recs = NULL, *ev = NULL;
	json_t *o = make_obj(NULL, "p", "team=a", "Import");
	uint64_t rv = 0, n = 0;

	assert_int_equal(store_create(f->s, o, a, NULL), AL_OK);
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(store_sqlite_open(&f->s, f->path), AL_OK);
	assert_int_equal(store_get(f->s, KIND, NULL, "p", &got), AL_OK);
	assert_string_equal(md_str(got, "resourceVersion"), "1");
	json_decref(got);
	json_object_set_new(json_object_get(o, "metadata"), "name", json_string("q"));
	assert_int_equal(store_create(f->s, o, a, &got), AL_OK);
	assert_string_equal(md_str(got, "resourceVersion"), "2");
	json_decref(got);
	expect_names(f->s, NULL, "team=a", "default/p default/q");
	assert_int_equal(store_audit_list(f->s, 0, 0, &recs), AL_OK);
	assert_int_equal(audit_verify_records(recs, &n), AL_OK);
	assert_int_equal(n, 2);
	json_decref(recs);
	assert_int_equal(store_watch(f->s, NULL, 0, 0, &ev, &rv), AL_OK);
	assert_int_equal(json_array_size(ev), 2);
	json_decref(ev);
	json_decref(o);
	json_decref(a);
}

/* A writer killed with SIGKILL mid-stream: every create it acknowledged is
 * there after reopening, and the audit chain still verifies. */
static void test_kill_writer(void **state)
{
	struct fixture *f = *state;
	int fds[2], acked = -1, v, status;
	json_t *recs = NULL;
	uint64_t n = 0;
	pid_t pid;

	store_close(f->s);
	f->s = NULL;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *s = NULL;
		json_t *a = audit_entry("create");
		close(fds[0]);
		if (store_sqlite_open(&s, f->path) != AL_OK)
			_exit(2);
		for (int i = 0;; i++) {
			char name[32];
			json_t *o;
			snprintf(name, sizeof(name), "k-%d", i);
			o = make_obj(NULL, name, NULL, "Import");
			if (store_create(s, o, a, NULL) != AL_OK)
				_exit(3);
			json_decref(o);
			if (write(fds[1], &i, sizeof(i)) != (ssize_t)sizeof(i))
				_exit(4);
		}
	}
	close(fds[1]);
	usleep(300 * 1000);
	kill(pid, SIGKILL);
	while (read(fds[0], &v, sizeof(v)) == (ssize_t)sizeof(v))
		acked = v;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_true(acked > 0);
	printf("kill test: %d creates acknowledged before SIGKILL\n", acked + 1);
	assert_int_equal(store_sqlite_open(&f->s, f->path), AL_OK);
	for (int i = 0; i <= acked; i++) {
		char name[32];
		json_t *got = NULL;
		snprintf(name, sizeof(name), "k-%d", i);
		if (store_get(f->s, KIND, NULL, name, &got) != AL_OK)
			fail_msg("acknowledged %s lost: %s", name, al_error_message());
		json_decref(got);
	}
	assert_int_equal(store_audit_list(f->s, 0, 0, &recs), AL_OK);
	assert_int_equal(audit_verify_records(recs, &n), AL_OK);
	assert_true(n >= (uint64_t)acked + 1);
	json_decref(recs);
}

static void test_open_errors(void **state)
{
	struct store *s = NULL;
	assert_int_equal(store_sqlite_open(&s, "/nonexistent-dir/x.db"), AL_ERR_IO);
	assert_null(s);
	expect_msg("/nonexistent-dir/x.db");
	assert_int_equal(store_rv_parse("42"), 42);
	assert_int_equal(store_rv_parse(""), 0);
	assert_int_equal(store_rv_parse(NULL), 0);
	assert_int_equal(store_rv_parse("4x"), 0);
	assert_int_equal(store_rv_parse("-1"), 0);
	assert_int_equal(store_rv_parse("18446744073709551615"), UINT64_MAX);
	assert_int_equal(store_rv_parse("18446744073709551616"), 0);
	assert_int_equal(store_get(NULL, KIND, NULL, "x", NULL), AL_ERR_INTERNAL);
	store_close(NULL);
}

struct conc_arg {
	struct store *s;
	int id;
};

static void *conc_writer(void *p)
{
	struct conc_arg *a = p;
	json_t *au = audit_entry("create");
	for (int i = 0; i < 100; i++) {
		char name[32];
		json_t *o, *got = NULL;
		snprintf(name, sizeof(name), "t%d-%d", a->id, i);
		o = make_obj("conc", name, "team=c", "Import");
		if (store_create(a->s, o, au, NULL) != AL_OK || store_get(a->s, KIND, "conc", name, &got) != AL_OK)
			fprintf(stderr, "concurrent write failed: %s\n", al_error_message());
		json_decref(got);
		json_decref(o);
	}
	json_decref(au);
	return NULL;
}

static void test_concurrent_writers(void **state)
{
	struct fixture *f = *state;
	pthread_t th[4];
	struct conc_arg args[4];
	json_t *items = NULL, *recs = NULL;
	uint64_t rv = 0, n = 0;

	for (int i = 0; i < 4; i++) {
		args[i].s = f->s;
		args[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, conc_writer, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(store_list(f->s, KIND, "conc", "team=c", &items, &rv), AL_OK);
	assert_int_equal(json_array_size(items), 400);
	assert_int_equal(rv, 400);
	json_decref(items);
	assert_int_equal(store_audit_list(f->s, 0, 0, &recs), AL_OK);
	assert_int_equal(audit_verify_records(recs, &n), AL_OK);
	assert_int_equal(n, 400);
	json_decref(recs);
}

static int cmp_i64(const void *x, const void *y)
{
	int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
	return (a > b) - (a < b);
}

/* Not a timed assertion: prints the figures (benchmarks live in bench/). */
static void test_timing_10k(void **state)
{
	struct fixture *f = *state;
	const int N = 10000;
	json_t *a = audit_entry("create"), *items = NULL, *ev = NULL;
	int64_t *lat = malloc(sizeof(int64_t) * (size_t)N);
	struct timespec t0, t1;
	uint64_t rv = 0;
	double secs;

	assert_non_null(lat);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < N; i++) {
		char name[32];
		struct timespec a0, a1;
		json_t *o, *got = NULL;
		snprintf(name, sizeof(name), "ds-%05d", i);
		o = make_obj(i % 2 ? "ws1" : "ws2", name, i % 10 ? "team=a" : "team=b", "Import");
		clock_gettime(CLOCK_MONOTONIC, &a0);
		assert_int_equal(store_create(f->s, o, a, NULL), AL_OK);
		clock_gettime(CLOCK_MONOTONIC, &a1);
		lat[i] = (a1.tv_sec - a0.tv_sec) * 1000000000LL + (a1.tv_nsec - a0.tv_nsec);
		assert_int_equal(store_get(f->s, KIND, i % 2 ? "ws1" : "ws2", name, &got), AL_OK);
		json_decref(got);
		json_decref(o);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	{
		int64_t p50, p99, max = 0;
		for (int i = 0; i < N; i++)
			if (lat[i] > max)
				max = lat[i];
		qsort(lat, (size_t)N, sizeof(int64_t), cmp_i64);
		p50 = lat[N / 2];
		p99 = lat[N * 99 / 100];
		printf("store timing: %d creates+gets with audit in %.2f s = %.0f /s; create p50 %.2f ms, "
		       "p99 %.2f ms, max %.2f ms\n",
		       N, secs, N / secs, p50 / 1e6, p99 / 1e6, max / 1e6);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(store_list(f->s, KIND, NULL, "team=b", &items, &rv), AL_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(json_array_size(items), N / 10);
	printf("store timing: list team=b of %d -> %zu items in %.1f ms\n", N, json_array_size(items),
	       ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e6);
	json_decref(items);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(store_list(f->s, KIND, NULL, NULL, &items, &rv), AL_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(json_array_size(items), N);
	printf("store timing: list all %d in %.1f ms\n", N,
	       ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e6);
	json_decref(items);

	/* Write past the retained history (10,000 events, pruned every 256
	 * versions): an old rv must relist, a recent one still works. */
	for (int i = 0; i < 300; i++) {
		char name[32];
		snprintf(name, sizeof(name), "extra-%d", i);
		create_ok(f->s, NULL, name, NULL);
	}
	assert_int_equal(store_watch(f->s, NULL, 1, 0, &ev, &rv), AL_ERR_CONFLICT);
	expect_msg("resourceVersion 1 is too old: relist");
	assert_null(ev);
	assert_int_equal(store_watch(f->s, NULL, 300, 0, &ev, &rv), AL_OK);
	assert_int_equal(json_array_size(ev), 1000); /* one batch */
	assert_int_equal(rv, 1300);
	json_decref(ev);
	assert_int_equal(store_watch(f->s, NULL, (uint64_t)N + 295, 0, &ev, &rv), AL_OK);
	assert_int_equal(json_array_size(ev), 5);
	assert_int_equal(rv, (uint64_t)N + 300);
	json_decref(ev);
	json_decref(a);
	free(lat);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_selectors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_other_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_in_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_writer, setup, teardown),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timing_10k, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
