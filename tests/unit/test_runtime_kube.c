/*
 * test_runtime_kube.c - the Kubernetes runtime against a small fake API
 * server in-process (web/http_server): objects are kept by path, POST to a
 * collection creates (409 AlreadyExists when taken), PUT replaces, DELETE
 * removes, pods are listed by label selector and a pod's log is plain text.
 * What only a kubelet can give - a pod's real log - is tested here; the
 * objects themselves are checked against a real API server in
 * tests/kube/test_runtime_kube.py.
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

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "kube/kube.h"
#include "runtime/runtime.h"
#include "runtime/runtime_kube.h"
#include "web/http_server.h"

#define NS "/api/v1/namespaces/ns"
#define JOBS "/apis/batch/v1/namespaces/ns/jobs"

/* ---- the fake API server ---- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *objects;   /* path -> object */
static json_t *requests;  /* [{method, path, query, body}] */
static json_t *logs;      /* pod log path -> text */
static int log_status;    /* answer pod logs with this status when set */

static json_t *status_obj(int code, const char *reason, const char *msg)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "kind", "Status", "apiVersion", "v1", "status", "Failure",
			 "reason", reason, "message", msg, "code", code);
}

/* Every label of the selector "k=v,k2=v2" is on obj. */
static int selected(const json_t *obj, const char *sel)
{
	const json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
	char copy[1024], *kv = copy;
	snprintf(copy, sizeof(copy), "%s", sel ? sel : "");
	while (kv && *kv) {
		char *comma = strchr(kv, ','), *eq;
		const char *v;
		if (comma)
			*comma = '\0';
		if (!(eq = strchr(kv, '=')))
			return 0;
		*eq = '\0';
		v = json_string_value(json_object_get(labels, kv));
		if (!v || strcmp(v, eq + 1))
			return 0;
		kv = comma ? comma + 1 : NULL;
	}
	return 1;
}

static void handler(void *userdata, const struct http_request *req, struct http_response *resp)
{
	const char *p = req->path, *sel = http_request_query(req, "labelSelector");
	json_error_t jerr;
	json_t *body = req->body_len ? json_loads(req->body, 0, &jerr) : NULL;
	size_t plen = strlen(p);
	(void)userdata;

	pthread_mutex_lock(&lock);
	json_array_append_new(requests, json_pack("{s:s, s:s, s:s, s:O?}", "method", req->method, "path", p, "query",
						  sel ? sel : (http_request_query(req, "container") ? http_request_query(req, "container") : ""),
						  "body", body));
	if (plen > 4 && !strcmp(p + plen - 4, "/log")) {
		const char *text = json_string_value(json_object_get(logs, p));
		if (log_status)
			http_response_json(resp, log_status, status_obj(log_status, "BadRequest", "container is waiting"));
		else if (text)
			http_response_text(resp, 200, text);
		else
			http_response_bytes(resp, 204, "text/plain", "", 0);
	} else if (!strcmp(req->method, "GET") && !strcmp(p, NS "/pods")) {
		json_t *items = json_array();
		const char *k;
		json_t *o;
		json_object_foreach(objects, k, o) {
			if (!strncmp(k, NS "/pods/", strlen(NS "/pods/")) && selected(o, sel))
				json_array_append(items, o);
		}
		http_response_json(resp, 200, json_pack("{s:s, s:o}", "kind", "PodList", "items", items));
	} else if (!strcmp(req->method, "GET")) {
		json_t *o = json_object_get(objects, p);
		if (o)
			http_response_json(resp, 200, json_incref(o));
		else
			http_response_json(resp, 404, status_obj(404, "NotFound", "not found"));
	} else if (!strcmp(req->method, "POST")) {
		const char *name = json_string_value(json_object_get(json_object_get(body, "metadata"), "name"));
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", p, name ? name : "");
		if (json_object_get(objects, path)) {
			http_response_json(resp, 409, status_obj(409, "AlreadyExists", "already exists"));
		} else {
			json_t *md = json_object_get(body, "metadata");
			json_object_set_new(md, "uid", json_string("uid-1"));
			json_object_set_new(md, "resourceVersion", json_string("1"));
			json_object_set(objects, path, body);
			http_response_json(resp, 201, json_incref(body));
		}
	} else if (!strcmp(req->method, "PUT")) {
		json_t *cur = json_object_get(objects, p);
		const char *rv = json_string_value(json_object_get(json_object_get(body, "metadata"), "resourceVersion"));
		const char *crv = json_string_value(json_object_get(json_object_get(cur, "metadata"), "resourceVersion"));
		if (!cur)
			http_response_json(resp, 404, status_obj(404, "NotFound", "not found"));
		else if (rv && crv && strcmp(rv, crv))
			http_response_json(resp, 409, status_obj(409, "Conflict", "the object has been modified"));
		else {
			json_object_set_new(json_object_get(body, "metadata"), "resourceVersion", json_string("2"));
			json_object_set(objects, p, body);
			http_response_json(resp, 200, json_incref(body));
		}
	} else if (!strcmp(req->method, "DELETE")) {
		if (json_object_get(objects, p)) {
			json_object_del(objects, p);
			http_response_json(resp, 200, status_obj(200, "", "deleted"));
		} else {
			http_response_json(resp, 404, status_obj(404, "NotFound", "not found"));
		}
	} else {
		http_response_json(resp, 405, status_obj(405, "MethodNotAllowed", "no"));
	}
	pthread_mutex_unlock(&lock);
	json_decref(body);
}

static void put_object(const char *path, json_t *obj)
{
	pthread_mutex_lock(&lock);
	json_object_set_new(objects, path, obj);
	pthread_mutex_unlock(&lock);
}

static json_t *object_at(const char *path)
{
	json_t *o;
	pthread_mutex_lock(&lock);
	o = json_incref(json_object_get(objects, path));
	pthread_mutex_unlock(&lock);
	return o;
}

/* Number of requests with this method (and path, when given). */
static size_t count_requests(const char *method, const char *path)
{
	size_t i, n = 0;
	json_t *r;
	pthread_mutex_lock(&lock);
	json_array_foreach(requests, i, r) {
		if (!strcmp(json_string_value(json_object_get(r, "method")), method) &&
		    (!path || !strcmp(json_string_value(json_object_get(r, "path")), path)))
			n++;
	}
	pthread_mutex_unlock(&lock);
	return n;
}

static json_t *last_request(const char *method)
{
	json_t *r, *found = NULL;
	size_t i;
	pthread_mutex_lock(&lock);
	json_array_foreach(requests, i, r) {
		if (!strcmp(json_string_value(json_object_get(r, "method")), method)) {
			json_decref(found);
			found = json_incref(r);
		}
	}
	pthread_mutex_unlock(&lock);
	return found;
}

struct fixture {
	struct http_server *srv;
	struct kube_client *kc;
	struct runtime *rt;
	char server[64];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct kube_config cfg = { 0 };
	struct runtime_kube_options o;

	assert_non_null(f);
	objects = json_object();
	requests = json_array();
	logs = json_object();
	log_status = 0;
	assert_int_equal(http_server_start(&f->srv, "127.0.0.1", 0, 0, handler, NULL), AL_OK);
	snprintf(f->server, sizeof(f->server), "http://127.0.0.1:%u", (unsigned)http_server_port(f->srv));
	cfg.server = f->server;
	cfg.token = (char *)"token-for-tests";
	cfg.namespace = (char *)"ns";
	assert_int_equal(kube_client_new(&f->kc, &cfg), AL_OK);
	assert_int_equal(runtime_kube_options_init(&o), AL_OK);
	free(o.namespace);
	o.namespace = strdup("ns");
	free(o.runner_image);
	o.runner_image = strdup("registry.example.org/airlock:1.2.3");
	assert_int_equal(runtime_kube_open(&f->rt, f->kc, &o), AL_OK);
	runtime_kube_options_free(&o);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	runtime_close(f->rt);
	kube_client_free(f->kc);
	http_server_stop(f->srv);
	json_decref(objects);
	json_decref(requests);
	json_decref(logs);
	free(f);
	return 0;
}

static const struct runtime_owner OWNER = { "xlscsde.nhs.uk/v1", "AnalyticsWorkspaceDataSource", "ns", "ds1",
					    "0b6a3c1e-1111-2222-3333-444455556666" };

/* ---- options ---- */

static void test_options_defaults_and_env(void **state)
{
	struct runtime_kube_options o;
	(void)state;

	assert_int_equal(runtime_kube_options_init(&o), AL_OK);
	assert_string_equal(o.namespace, "jupyterhub");
	assert_string_equal(o.staging_storage_class, "jupyter-default");
	assert_string_equal(o.staging_size, "10Gi");
	assert_string_equal(o.access_mode, "ReadWriteOnce");
	assert_int_equal(o.backoff_limit, 0);
	assert_int_equal(o.ttl_seconds_after_finished, 3600);
	assert_int_equal(o.run_as_user, 65532);
	assert_null(o.ingress_class);
	assert_string_equal(o.uploader_proxy_secret, "airlock-uploader-proxy");
	assert_string_equal(o.uploader_proxy_secret_key, "secret");
	assert_string_equal(o.frontend_service, "airlock-frontend");
	assert_int_equal(o.frontend_service_port, 80);

	setenv("AIRLOCK_UPLOADER_PROXY_SECRET", "rel-uploader-proxy", 1);
	setenv("AIRLOCK_FRONTEND_SERVICE", "rel-frontend", 1);
	setenv("AIRLOCK_FRONTEND_SERVICE_PORT", "8081", 1);
	setenv("AIRLOCK_LEASE_NAMESPACE", "work", 1);
	setenv("AIRLOCK_STORAGE_CLASS", "fast", 1);
	setenv("AIRLOCK_STAGING_STORAGE_CLASS", "airlock-staging", 1);
	setenv("AIRLOCK_IMPORT_VOLUME_SIZE", "5Gi", 1);
	setenv("AIRLOCK_RUNNER_IMAGE", "r:1", 1);
	setenv("AIRLOCK_RUNNER_RESOURCES", "{\"limits\":{\"cpu\":\"1\"}}", 1);
	setenv("AIRLOCK_INGRESS_CLASS", "nginx", 1);
	setenv("AIRLOCK_INGRESS_HOST", "", 1);
	setenv("AIRLOCK_INGRESS_ANNOTATIONS", "{\"a\":\"b\"}", 1);
	setenv("AIRLOCK_JOB_BACKOFF_LIMIT", "2", 1);
	setenv("AIRLOCK_JOB_TTL_SECONDS_AFTER_FINISHED", "86400", 1);
	assert_int_equal(runtime_kube_options_from_env(&o), AL_OK);
	assert_string_equal(o.namespace, "work");
	assert_string_equal(o.staging_storage_class, "fast");
	assert_string_equal(o.upload_storage_class, "airlock-staging");
	assert_string_equal(o.staging_size, "5Gi");
	assert_string_equal(o.runner_image, "r:1");
	assert_string_equal(json_string_value(json_object_get(json_object_get(o.runner_resources, "limits"), "cpu")), "1");
	assert_string_equal(o.ingress_class, "nginx");
	assert_null(o.ingress_host);
	assert_int_equal(o.backoff_limit, 2);
	assert_int_equal(o.ttl_seconds_after_finished, 86400);
	assert_string_equal(o.uploader_proxy_secret, "rel-uploader-proxy");
	assert_string_equal(o.frontend_service, "rel-frontend");
	assert_int_equal(o.frontend_service_port, 8081);
	setenv("AIRLOCK_FRONTEND_SERVICE_PORT", "0", 1);
	assert_int_equal(runtime_kube_options_from_env(&o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "AIRLOCK_FRONTEND_SERVICE_PORT"));
	setenv("AIRLOCK_FRONTEND_SERVICE_PORT", "8081", 1);

	setenv("AIRLOCK_NAMESPACE", "override", 1);
	assert_int_equal(runtime_kube_options_from_env(&o), AL_OK);
	assert_string_equal(o.namespace, "override");

	setenv("AIRLOCK_JOB_BACKOFF_LIMIT", "two", 1);
	assert_int_equal(runtime_kube_options_from_env(&o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "AIRLOCK_JOB_BACKOFF_LIMIT"));
	setenv("AIRLOCK_JOB_BACKOFF_LIMIT", "0", 1);
	setenv("AIRLOCK_INGRESS_ANNOTATIONS", "{\"a\":1}", 1);
	assert_int_equal(runtime_kube_options_from_env(&o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "AIRLOCK_INGRESS_ANNOTATIONS"));
	setenv("AIRLOCK_INGRESS_ANNOTATIONS", "[1]", 1);
	assert_int_equal(runtime_kube_options_from_env(&o), AL_ERR_INVALID);
	runtime_kube_options_free(&o);

	const char *vars[] = { "AIRLOCK_LEASE_NAMESPACE", "AIRLOCK_NAMESPACE", "AIRLOCK_STORAGE_CLASS",
			       "AIRLOCK_STAGING_STORAGE_CLASS", "AIRLOCK_IMPORT_VOLUME_SIZE", "AIRLOCK_RUNNER_IMAGE",
			       "AIRLOCK_RUNNER_RESOURCES", "AIRLOCK_INGRESS_CLASS", "AIRLOCK_INGRESS_HOST",
			       "AIRLOCK_INGRESS_ANNOTATIONS", "AIRLOCK_JOB_BACKOFF_LIMIT",
			       "AIRLOCK_JOB_TTL_SECONDS_AFTER_FINISHED", "AIRLOCK_UPLOADER_PROXY_SECRET",
			       "AIRLOCK_FRONTEND_SERVICE", "AIRLOCK_FRONTEND_SERVICE_PORT" };
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static void test_open_refuses_bad_options(void **state)
{
	struct fixture *f = *state;
	struct runtime_kube_options o;
	struct runtime *rt = NULL;

	assert_int_equal(runtime_kube_options_init(&o), AL_OK);
	free(o.namespace);
	o.namespace = strdup("Not_A_Namespace");
	assert_int_equal(runtime_kube_open(&rt, f->kc, &o), AL_ERR_INVALID);
	assert_null(rt);
	free(o.namespace);
	o.namespace = strdup("ok");
	free(o.runner_pull_policy);
	o.runner_pull_policy = strdup("Sometimes");
	assert_int_equal(runtime_kube_open(&rt, f->kc, &o), AL_ERR_INVALID);
	free(o.runner_pull_policy);
	o.runner_pull_policy = strdup("Always");
	o.run_as_user = 0;
	assert_int_equal(runtime_kube_open(&rt, f->kc, &o), AL_ERR_INVALID);
	o.run_as_user = 1000;
	free(o.frontend_service);
	o.frontend_service = strdup("9-not-a-service");
	assert_int_equal(runtime_kube_open(&rt, f->kc, &o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "frontend Service"));
	free(o.frontend_service);
	o.frontend_service = strdup("airlock-frontend");
	free(o.uploader_proxy_secret_key);
	o.uploader_proxy_secret_key = strdup("a/b");
	assert_int_equal(runtime_kube_open(&rt, f->kc, &o), AL_ERR_INVALID);
	free(o.uploader_proxy_secret_key);
	o.uploader_proxy_secret_key = strdup("secret");
	assert_int_equal(runtime_kube_open(&rt, NULL, &o), AL_ERR_INVALID);
	assert_int_equal(runtime_kube_open(&rt, f->kc, &o), AL_OK);
	runtime_close(rt);
	assert_int_equal(runtime_kube_open(&rt, f->kc, NULL), AL_OK);
	runtime_close(rt);
	runtime_kube_options_free(&o);
}

/* ---- volumes and secrets ---- */

static void test_volume_ensure_creates_once(void **state)
{
	struct fixture *f = *state;
	char *path = (char *)"x";
	json_t *pvc;

	assert_int_equal(runtime_volume_ensure_owned(f->rt, VOLUME_STAGING, "ds-1", &OWNER, &path), AL_OK);
	assert_null(path); /* the operator cannot reach a claim */
	pvc = object_at(NS "/persistentvolumeclaims/ds-1");
	assert_non_null(pvc);
	assert_string_equal(json_string_value(json_object_get(json_object_get(pvc, "spec"), "storageClassName")),
			    "jupyter-default");
	assert_int_equal(json_array_size(json_object_get(json_object_get(pvc, "metadata"), "ownerReferences")), 1);
	assert_int_equal(count_requests("POST", NULL), 1);
	assert_int_equal(count_requests("GET", NULL), 0); /* created first: one request */
	/* again: remembered, no request */
	assert_int_equal(runtime_volume_ensure_owned(f->rt, VOLUME_STAGING, "ds-1", &OWNER, NULL), AL_OK);
	assert_int_equal(count_requests("POST", NULL), 1);
	/* another runtime (a restarted operator): the create answers 409 and
	 * the claim is left exactly as it was */
	{
		struct runtime *rt2 = NULL;
		struct runtime_kube_options o;
		assert_int_equal(runtime_kube_options_init(&o), AL_OK);
		free(o.namespace);
		o.namespace = strdup("ns");
		assert_int_equal(runtime_kube_open(&rt2, f->kc, &o), AL_OK);
		runtime_kube_options_free(&o);
		assert_int_equal(runtime_volume_ensure_owned(rt2, VOLUME_STAGING, "ds-1", &OWNER, NULL), AL_OK);
		runtime_close(rt2);
	}
	assert_int_equal(count_requests("POST", NS "/persistentvolumeclaims"), 2);
	assert_int_equal(count_requests("PUT", NULL), 0);
	assert_int_equal(count_requests("PATCH", NULL), 0);
	{
		json_t *again = object_at(NS "/persistentvolumeclaims/ds-1");
		assert_true(json_equal(again, pvc));
		json_decref(again);
	}
	json_decref(pvc);

	/* a workspace claim never gets an owner */
	assert_int_equal(runtime_volume_ensure_owned(f->rt, VOLUME_WORKSPACE, "ws-1", &OWNER, NULL), AL_OK);
	pvc = object_at(NS "/persistentvolumeclaims/ws-1");
	assert_null(json_object_get(json_object_get(pvc, "metadata"), "ownerReferences"));
	json_decref(pvc);
	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, "Bad_Name", NULL), AL_ERR_INVALID);
	assert_int_equal(runtime_volume_ensure(f->rt, (enum volume_class)9, "ok", NULL), AL_ERR_INVALID);
}

static void test_owner_in_another_namespace_gets_no_reference(void **state)
{
	struct fixture *f = *state;
	struct runtime_owner other = OWNER;
	json_t *pvc, *md;

	other.namespace = "elsewhere";
	assert_int_equal(runtime_volume_ensure_owned(f->rt, VOLUME_STAGING, "ds-2", &other, NULL), AL_OK);
	pvc = object_at(NS "/persistentvolumeclaims/ds-2");
	md = json_object_get(pvc, "metadata");
	/* Kubernetes would garbage-collect a child whose owner is in another
	 * namespace: labels and an annotation name the owner instead. */
	assert_null(json_object_get(md, "ownerReferences"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(md, "labels"), "xlscsde.nhs.uk/datasource-uid")),
			    OWNER.uid);
	assert_string_equal(json_string_value(json_object_get(json_object_get(md, "annotations"), "xlscsde.nhs.uk/owner")),
			    "AnalyticsWorkspaceDataSource/elsewhere/ds1");
	json_decref(pvc);
}

static void test_delete_only_what_the_airlock_made(void **state)
{
	struct fixture *f = *state;
	json_t *del;

	put_object(NS "/persistentvolumeclaims/theirs",
		   json_pack("{s:{s:s, s:s}}", "metadata", "name", "theirs", "uid", "u-theirs"));
	assert_int_equal(runtime_volume_delete(f->rt, VOLUME_WORKSPACE, "theirs"), AL_ERR_FORBIDDEN);
	assert_non_null(strstr(al_error_message(), "never deletes"));
	assert_int_equal(count_requests("DELETE", NULL), 0);

	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_WORKSPACE, "ours", NULL), AL_OK);
	assert_int_equal(runtime_volume_delete(f->rt, VOLUME_STAGING, "ours"), AL_ERR_FORBIDDEN); /* wrong class */
	assert_int_equal(runtime_volume_delete(f->rt, VOLUME_WORKSPACE, "ours"), AL_OK);
	del = last_request("DELETE");
	assert_non_null(del);
	assert_string_equal(json_string_value(json_object_get(json_object_get(del, "body"), "propagationPolicy")), "Background");
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(del, "body"), "preconditions"), "uid")),
			    "uid-1");
	json_decref(del);
	assert_int_equal(runtime_volume_delete(f->rt, VOLUME_WORKSPACE, "ours"), AL_OK); /* gone: fine */
	assert_int_equal(runtime_secret_delete(f->rt, "never-was"), AL_OK);
	assert_int_equal(runtime_job_delete(f->rt, "never-was"), AL_OK);
	assert_int_equal(runtime_uploader_delete(f->rt, "never-was"), AL_OK);
}

static void test_secret_one_key_replaced_in_place(void **state)
{
	struct fixture *f = *state;
	json_t *data = json_pack("{s:s, s:s}", "user", "u", "password", "p1"), *sec;
	const char *text;

	assert_int_equal(runtime_secret_ensure_owned(f->rt, "creds", data, &OWNER), AL_OK);
	sec = object_at(NS "/secrets/creds");
	assert_string_equal(json_string_value(json_object_get(sec, "type")), "Opaque");
	assert_int_equal(json_object_size(json_object_get(sec, "stringData")), 1);
	text = json_string_value(json_object_get(json_object_get(sec, "stringData"), "secret.json"));
	assert_non_null(text);
	assert_non_null(strstr(text, "\"password\":\"p1\""));
	json_decref(sec);

	json_object_set_new(data, "password", json_string("p2"));
	assert_int_equal(runtime_secret_ensure_owned(f->rt, "creds", data, &OWNER), AL_OK);
	assert_int_equal(count_requests("PUT", NS "/secrets/creds"), 1);
	sec = object_at(NS "/secrets/creds");
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(sec, "stringData"), "secret.json")), "p2"));
	json_decref(sec);

	/* someone else's Secret of that name is left alone */
	put_object(NS "/secrets/theirs", json_pack("{s:{s:s}}", "metadata", "name", "theirs"));
	assert_int_equal(runtime_secret_ensure(f->rt, "theirs", data), AL_ERR_FORBIDDEN);
	assert_null(strstr(al_error_message(), "p2"));
	assert_int_equal(count_requests("PUT", NS "/secrets/theirs"), 0);
	assert_int_equal(runtime_secret_ensure(f->rt, "x", NULL), AL_ERR_INVALID);
	json_decref(data);
}

/* ---- jobs ---- */

static const char *env_value(const json_t *env, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach(env, i, e) {
		if (!strcmp(json_string_value(json_object_get(e, "name")), name))
			return json_string_value(json_object_get(e, "value"));
	}
	return NULL;
}

static void test_job_start_body(void **state)
{
	struct fixture *f = *state;
	static const char *const args[] = { "check-job", "--max-files", "10", NULL };
	struct job_spec spec = {
		.name = "check-1",
		.args = args,
		.mounts = { { .kind = JOB_MOUNT_VOLUME, .cls = VOLUME_STAGING, .name = "ds-1", .env = "AIRLOCK_DATA_DIR",
			      .read_only = 1 },
			    { .kind = JOB_MOUNT_SECRET, .name = "s1", .env = "AIRLOCK_MANIFEST_FILE" } },
		.timeout_seconds = 120,
		.owner = &OWNER,
	};
	json_t *job, *pod, *c, *data = json_pack("{s:s}", "a", "b");

	assert_int_equal(runtime_job_start(f->rt, &spec), AL_ERR_NOT_FOUND); /* no volume yet */
	assert_non_null(strstr(al_error_message(), "ds-1"));
	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, "ds-1", NULL), AL_OK);
	assert_int_equal(runtime_job_start(f->rt, &spec), AL_ERR_NOT_FOUND); /* no secret yet */
	assert_int_equal(runtime_secret_ensure(f->rt, "s1", data), AL_OK);
	assert_int_equal(runtime_job_start(f->rt, &spec), AL_OK);
	assert_int_equal(runtime_job_start(f->rt, &spec), AL_ERR_EXISTS); /* the create answered 409 */
	assert_int_equal(count_requests("POST", JOBS), 2);
	assert_int_equal(count_requests("PUT", JOBS), 0);

	job = object_at(JOBS "/check-1");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(job, "spec"), "activeDeadlineSeconds")), 120);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(job, "spec"), "backoffLimit")), 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(job, "spec"), "ttlSecondsAfterFinished")), 3600);
	pod = json_object_get(json_object_get(json_object_get(job, "spec"), "template"), "spec");
	c = json_array_get(json_object_get(pod, "containers"), 0);
	assert_string_equal(json_string_value(json_object_get(c, "image")), "registry.example.org/airlock:1.2.3");
	assert_string_equal(json_string_value(json_array_get(json_object_get(c, "args"), 0)), "check-job");
	assert_int_equal(json_array_size(json_object_get(c, "args")), 3);
	assert_string_equal(env_value(json_object_get(c, "env"), "AIRLOCK_JOB_NAME"), "check-1");
	assert_string_equal(env_value(json_object_get(c, "env"), "AIRLOCK_DATA_DIR"), "/mnt/airlock_data_dir");
	assert_string_equal(env_value(json_object_get(c, "env"), "AIRLOCK_MANIFEST_FILE"),
			    "/var/run/airlock/airlock_manifest_file/secret.json");
	assert_true(json_is_true(json_object_get(json_object_get(json_array_get(json_object_get(pod, "volumes"), 1),
								 "persistentVolumeClaim"), "readOnly")));
	assert_string_equal(json_string_value(json_object_get(pod, "restartPolicy")), "Never");
	json_decref(job);
	json_decref(data);

	/* a name that cannot be a pod label */
	spec.name = "a.b";
	assert_int_equal(runtime_job_start(f->rt, &spec), AL_ERR_INVALID);
	spec.name = "check-1";
	spec.args = NULL;
	assert_int_equal(runtime_job_start(f->rt, &spec), AL_ERR_INVALID);
}

static void put_job(const char *name, json_t *status)
{
	char path[256];
	snprintf(path, sizeof(path), JOBS "/%s", name);
	put_object(path, json_pack("{s:{s:s, s:s, s:{s:s}}, s:{s:i, s:{s:{s:s}}}, s:o}", "metadata", "name", name, "uid",
				   "job-uid", "labels", "app.kubernetes.io/managed-by", "airlock", "spec",
				   "activeDeadlineSeconds", 60, "selector", "matchLabels",
				   "batch.kubernetes.io/controller-uid", "job-uid", "status", status));
}

static void put_pod(const char *name, const char *created, const char *controller_uid, json_t *terminated)
{
	char path[256];
	json_t *pod = json_pack("{s:{s:s, s:s, s:{s:s}}, s:{}}", "metadata", "name", name, "creationTimestamp", created,
				"labels", "batch.kubernetes.io/controller-uid", controller_uid, "status");
	if (terminated)
		json_object_set_new(json_object_get(pod, "status"), "containerStatuses",
				    json_pack("[{s:s, s:{s:o}}]", "name", "airlock", "state", "terminated", terminated));
	snprintf(path, sizeof(path), NS "/pods/%s", name);
	put_object(path, pod);
}

static void test_job_get_phases_and_reasons(void **state)
{
	struct fixture *f = *state;
	struct job_status st;

	assert_int_equal(runtime_job_get(f->rt, "nope", &st), AL_OK);
	assert_int_equal(st.phase, JOB_NOT_FOUND);

	put_job("run", json_pack("{s:s}", "startTime", "2026-01-01T00:00:00Z"));
	assert_int_equal(runtime_job_get(f->rt, "run", &st), AL_OK);
	assert_int_equal(st.phase, JOB_RUNNING);
	assert_string_equal(st.started_at, "2026-01-01T00:00:00Z");
	job_status_free(&st);

	put_job("ok", json_pack("{s:s, s:s, s:[{s:s, s:s}, {s:s, s:s}]}", "startTime", "2026-01-01T00:00:00Z",
				"completionTime", "2026-01-01T00:01:00Z", "conditions", "type", "SuccessCriteriaMet",
				"status", "True", "type", "Complete", "status", "True"));
	assert_int_equal(runtime_job_get(f->rt, "ok", &st), AL_OK);
	assert_int_equal(st.phase, JOB_SUCCEEDED);
	assert_int_equal(st.exit_code, 0);
	assert_string_equal(st.finished_at, "2026-01-01T00:01:00Z");
	job_status_free(&st);

	/* Failed: the pod's termination message says best why */
	put_job("bad", json_pack("{s:[{s:s, s:s, s:s, s:s, s:s}]}", "conditions", "type", "Failed", "status", "True",
				 "reason", "BackoffLimitExceeded", "message", "Job has reached the specified backoff limit",
				 "lastTransitionTime", "2026-01-01T00:02:00Z"));
	assert_int_equal(runtime_job_get(f->rt, "bad", &st), AL_OK);
	assert_int_equal(st.phase, JOB_FAILED);
	assert_string_equal(st.reason, "BackoffLimitExceeded: Job has reached the specified backoff limit");
	assert_string_equal(st.finished_at, "2026-01-01T00:02:00Z");
	job_status_free(&st);
	put_pod("bad-old", "2026-01-01T00:00:00Z", "job-uid",
		json_pack("{s:i, s:s, s:s}", "exitCode", 1, "reason", "Error", "message", "old failure\n"));
	put_pod("bad-new", "2026-01-01T00:00:30Z", "job-uid",
		json_pack("{s:i, s:s, s:s}", "exitCode", 3, "reason", "Error", "message", "starting\nsource refused: bad password\n\n"));
	put_pod("other-job", "2026-01-01T00:05:00Z", "another-uid",
		json_pack("{s:i, s:s}", "exitCode", 9, "message", "not ours"));
	assert_int_equal(runtime_job_get(f->rt, "bad", &st), AL_OK);
	assert_string_equal(st.reason, "exit status 3: source refused: bad password");
	assert_int_equal(st.exit_code, 3);
	job_status_free(&st);

	put_job("slow", json_pack("{s:[{s:s, s:s, s:s, s:s}]}", "conditions", "type", "Failed", "status", "True", "reason",
				  "DeadlineExceeded", "message", "Job was active longer than specified deadline"));
	assert_int_equal(runtime_job_get(f->rt, "slow", &st), AL_OK);
	assert_string_equal(st.reason, "deadline exceeded after 60 s");
	job_status_free(&st);
}

static void test_job_logs_newest_pod_tail(void **state)
{
	struct fixture *f = *state;
	char *out = NULL;
	json_t *req;

	assert_int_equal(runtime_job_logs(f->rt, "nope", &out), AL_ERR_NOT_FOUND);
	put_job("j", json_object());
	assert_int_equal(runtime_job_logs(f->rt, "j", &out), AL_OK); /* no pod yet */
	assert_string_equal(out, "");
	free(out);

	put_pod("j-old", "2026-01-01T00:00:00Z", "job-uid", NULL);
	put_pod("j-new", "2026-01-01T00:00:09Z", "job-uid", NULL);
	json_object_set_new(logs, NS "/pods/j-old/log", json_string("old pod\n"));
	json_object_set_new(logs, NS "/pods/j-new/log", json_string("line 1\nAIRLOCK-RESULT {\"ok\":true}\n"));
	assert_int_equal(runtime_job_logs(f->rt, "j", &out), AL_OK);
	assert_string_equal(out, "line 1\nAIRLOCK-RESULT {\"ok\":true}\n");
	free(out);
	req = last_request("GET");
	assert_string_equal(json_string_value(json_object_get(req, "path")), NS "/pods/j-new/log");
	assert_string_equal(json_string_value(json_object_get(req, "query")), "airlock"); /* container=airlock */
	json_decref(req);

	/* a log the kubelet cannot serve: a clear, retryable error */
	log_status = 400;
	assert_int_equal(runtime_job_logs(f->rt, "j", &out), AL_ERR_UNAVAILABLE);
	assert_null(out);
	assert_non_null(strstr(al_error_message(), "the log of its pod j-new is not available"));
	assert_non_null(strstr(al_error_message(), "container is waiting"));
	log_status = 0;
}

/* A log longer than RUNTIME_JOB_LOGS_MAX: its last bytes are kept, since the
 * result is the last line (the API's limitBytes would keep the first). */
static void test_job_logs_keeps_the_tail(void **state)
{
	struct fixture *f = *state;
	size_t filler = RUNTIME_JOB_LOGS_MAX + (1 << 20), n;
	const char *result = "AIRLOCK-RESULT {\"digest\":\"abc\"}\n";
	char *text = malloc(filler + strlen(result) + 1), *out = NULL;

	assert_non_null(text);
	text[0] = 'H'; /* the head that must go */
	for (size_t i = 1; i < filler; i++)
		text[i] = (i % 100 == 99) ? '\n' : 'x';
	memcpy(text + filler, result, strlen(result) + 1);
	put_job("big", json_object());
	put_pod("big-1", "2026-01-01T00:00:00Z", "job-uid", NULL);
	json_object_set_new(logs, NS "/pods/big-1/log", json_string(text));
	free(text);
	assert_int_equal(runtime_job_logs(f->rt, "big", &out), AL_OK);
	n = strlen(out);
	assert_int_equal(n, RUNTIME_JOB_LOGS_MAX);
	assert_string_equal(out + n - strlen(result), result);
	assert_int_equal(out[0], 'x');
	free(out);
}

/* ---- uploader ---- */

static void test_uploader_objects(void **state)
{
	struct fixture *f = *state;
	json_t *dep, *svc, *ing, *pvc;

	assert_int_equal(runtime_uploader_ensure(f->rt, "9bad", "ds-u", &OWNER), AL_ERR_INVALID); /* not a DNS-1035 label */
	assert_int_equal(runtime_uploader_ensure(f->rt, "upload-1", "ds-u", &OWNER), AL_OK);
	pvc = object_at(NS "/persistentvolumeclaims/ds-u");
	dep = object_at("/apis/apps/v1/namespaces/ns/deployments/upload-1");
	svc = object_at(NS "/services/upload-1");
	ing = object_at("/apis/networking.k8s.io/v1/namespaces/ns/ingresses/upload-1");
	assert_non_null(pvc);
	assert_non_null(dep);
	assert_non_null(svc);
	assert_non_null(ing);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(dep, "spec"), "replicas")), 0);
	{
		json_t *rule = json_array_get(json_object_get(json_object_get(ing, "spec"), "rules"), 0);
		json_t *path = json_array_get(json_object_get(json_object_get(rule, "http"), "paths"), 0);
		assert_string_equal(json_string_value(json_object_get(path, "path")), "/uploads/upload-1");
		assert_string_equal(json_string_value(json_object_get(path, "pathType")), "Prefix");
		/* browsers reach the frontend, never the uploader's own Service */
		assert_string_equal(json_string_value(json_object_get(
					    json_object_get(json_object_get(path, "backend"), "service"), "name")),
				    "airlock-frontend");
		assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(
					 json_object_get(path, "backend"), "service"), "port"), "number")),
				 80);
	}
	{
		/* the proxy Secret: named and mounted read-only, its file in the env */
		json_t *pod = json_object_get(json_object_get(json_object_get(dep, "spec"), "template"), "spec");
		json_t *c = json_array_get(json_object_get(pod, "containers"), 0), *v, *m;
		const char *file = NULL;
		size_t i;
		int mounted = 0, volume = 0;
		json_array_foreach(json_object_get(c, "env"), i, v)
			if (!strcmp(json_string_value(json_object_get(v, "name")), "AIRLOCK_UPLOADER_PROXY_SECRET_FILE"))
				file = json_string_value(json_object_get(v, "value"));
		assert_non_null(file);
		assert_string_equal(file, "/var/run/airlock/proxy-secret/secret");
		json_array_foreach(json_object_get(c, "volumeMounts"), i, m)
			if (!strcmp(json_string_value(json_object_get(m, "name")), "proxy-secret")) {
				mounted = 1;
				assert_true(json_is_true(json_object_get(m, "readOnly")));
				assert_string_equal(json_string_value(json_object_get(m, "mountPath")),
						    "/var/run/airlock/proxy-secret");
			}
		json_array_foreach(json_object_get(pod, "volumes"), i, v)
			if (!strcmp(json_string_value(json_object_get(v, "name")), "proxy-secret")) {
				json_t *sec = json_object_get(v, "secret");
				json_t *item = json_array_get(json_object_get(sec, "items"), 0);
				volume = 1;
				assert_string_equal(json_string_value(json_object_get(sec, "secretName")), "airlock-uploader-proxy");
				assert_string_equal(json_string_value(json_object_get(item, "key")), "secret");
				assert_string_equal(json_string_value(json_object_get(item, "path")), "secret");
				assert_int_equal(json_integer_value(json_object_get(sec, "defaultMode")), 0440);
			}
		assert_true(mounted && volume);
	}
	json_decref(pvc);
	json_decref(dep);
	json_decref(svc);
	json_decref(ing);
	/* again: every create answers 409, nothing is replaced or changed */
	{
		size_t puts = count_requests("PUT", NULL), patches = count_requests("PATCH", NULL);
		json_t *before = object_at("/apis/apps/v1/namespaces/ns/deployments/upload-1"), *after;
		assert_int_equal(runtime_uploader_ensure(f->rt, "upload-1", "ds-u", &OWNER), AL_OK);
		assert_int_equal(count_requests("PUT", NULL), puts);
		assert_int_equal(count_requests("PATCH", NULL), patches);
		after = object_at("/apis/apps/v1/namespaces/ns/deployments/upload-1");
		assert_true(json_equal(before, after));
		json_decref(before);
		json_decref(after);
	}
	assert_int_equal(runtime_uploader_delete(f->rt, "upload-1"), AL_OK);
	assert_null(object_at(NS "/services/upload-1"));
	assert_null(object_at("/apis/apps/v1/namespaces/ns/deployments/upload-1"));
	assert_null(object_at("/apis/networking.k8s.io/v1/namespaces/ns/ingresses/upload-1"));
	pvc = object_at(NS "/persistentvolumeclaims/ds-u");
	assert_non_null(pvc); /* the volume stays */
	json_decref(pvc);
}

/* A mount the runtime ensured and then deleted is read again before a job
 * that mounts it starts. */
static void test_job_start_rereads_deleted_mount(void **state)
{
	struct fixture *f = *state;
	static const char *const args[] = { "check-job", NULL };
	struct job_spec spec = {
		.name = "check-2",
		.args = args,
		.mounts = { { .kind = JOB_MOUNT_SECRET, .name = "s2", .env = "AIRLOCK_MANIFEST_FILE" } },
		.timeout_seconds = 60,
	};
	json_t *data = json_pack("{s:s}", "a", "b");

	assert_int_equal(runtime_secret_ensure(f->rt, "s2", data), AL_OK);
	assert_int_equal(runtime_secret_delete(f->rt, "s2"), AL_OK);
	assert_int_equal(runtime_job_start(f->rt, &spec), AL_ERR_NOT_FOUND);
	assert_non_null(strstr(al_error_message(), "s2"));
	assert_int_equal(count_requests("POST", JOBS), 0);
	json_decref(data);
}

/* Jobs carry their owner's name in an annotation: a Job watch maps it back. */
static void test_child_owner_annotation(void **state)
{
	struct fixture *f = *state;
	char *ns = NULL, *name = NULL;
	json_t *pvc, *bad;

	assert_int_equal(runtime_volume_ensure_owned(f->rt, VOLUME_STAGING, "ds-9", &OWNER, NULL), AL_OK);
	pvc = object_at(NS "/persistentvolumeclaims/ds-9");
	assert_int_equal(runtime_kube_child_owner(pvc, "AnalyticsWorkspaceDataSource", &ns, &name), AL_OK);
	assert_string_equal(ns, "ns");
	assert_string_equal(name, "ds1");
	free(ns);
	free(name);
	assert_int_equal(runtime_kube_child_owner(pvc, "Other", &ns, &name), AL_ERR_NOT_FOUND);
	assert_null(ns);
	json_decref(pvc);
	bad = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", "xlscsde.nhs.uk/owner",
			"AnalyticsWorkspaceDataSource/ns/a/b");
	assert_int_equal(runtime_kube_child_owner(bad, "AnalyticsWorkspaceDataSource", &ns, &name), AL_ERR_NOT_FOUND);
	json_decref(bad);
	bad = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", "xlscsde.nhs.uk/owner", "AnalyticsWorkspaceDataSource//x");
	assert_int_equal(runtime_kube_child_owner(bad, "AnalyticsWorkspaceDataSource", &ns, &name), AL_ERR_NOT_FOUND);
	json_decref(bad);
	assert_int_equal(runtime_kube_child_owner(NULL, "AnalyticsWorkspaceDataSource", &ns, &name), AL_ERR_NOT_FOUND);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options_defaults_and_env),
		cmocka_unit_test_setup_teardown(test_open_refuses_bad_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_volume_ensure_creates_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_owner_in_another_namespace_gets_no_reference, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_only_what_the_airlock_made, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_one_key_replaced_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_start_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_get_phases_and_reasons, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_logs_newest_pod_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_logs_keeps_the_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uploader_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_start_rereads_deleted_mount, setup, teardown),
		cmocka_unit_test_setup_teardown(test_child_owner_annotation, setup, teardown),
	};
	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
