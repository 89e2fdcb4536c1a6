/* Unit tests for src/web/api.c: the handler called in-process on a real store
 * and real accounts, without a socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/accounts.h"
#include "auth/credstore.h"
#include "common/error.h"
#include "common/util.h"
#include "config/config.h"
#include "store/store.h"
#include "web/api.h"

struct fixture {
	char dir[64];
	struct airlock_config cfg;
	struct store *store;
	struct accounts *acc;
	struct credstore *creds;
	struct api_ctx api;
	int ready;
	char *admin_token;
	char *eng_token;
	char *appr_token;
	char *out_token;
};

static int ready_fn(void *ud)
{
	return *(int *)ud;
}

/* Sends one request; returns the status and the parsed JSON body (new). */
static int call(struct fixture *f, const char *method, const char *path, const char *query_ws,
		const char *token, const char *body, json_t **out)
{
	struct http_request req;
	struct http_response resp;
	char auth[256];
	const char *headers[3] = { NULL, NULL, NULL };
	const char *query[3] = { NULL, NULL, NULL };
	int status;

	memset(&req, 0, sizeof(req));
	req.method = method;
	req.path = path;
	req.body = body ? body : "";
	req.body_len = body ? strlen(body) : 0;
	req.remote_addr = "127.0.0.1";
	if (token) {
		snprintf(auth, sizeof(auth), "Bearer %s", token);
		headers[0] = "Authorization";
		headers[1] = auth;
	}
	if (query_ws) {
		query[0] = "workspace";
		query[1] = query_ws;
	}
	req.test_headers = headers;
	req.test_query = query;
	http_response_init(&resp);
	api_handle(&f->api, &req, &resp);
	status = resp.status;
	if (out)
		*out = json_loadb(buf_cstr(&resp.body), resp.body.len, 0, NULL);
	http_response_free(&resp);
	return status;
}

static char *login(struct fixture *f, const char *user, const char *password)
{
	json_t *ans = NULL, *body = json_pack("{s:s, s:s}", "username", user, "password", password);
	char *text = json_dumps(body, JSON_COMPACT), *token;
	assert_int_equal(call(f, "POST", "/api/v1/login", NULL, NULL, text, &ans), 200);
	token = util_strdup(json_string_value(json_object_get(ans, "token")));
	assert_non_null(token);
	json_decref(ans);
	json_decref(body);
	free(text);
	return token;
}

static void add_user(struct fixture *f, const char *name, const char *role)
{
	json_t *roles = json_pack("[s]", role);
	assert_int_equal(accounts_user_create(f->acc, name, "a-long-password", roles), AL_OK);
	json_decref(roles);
}

static const char *WS = "{\"apiVersion\":\"xlscsde.nhs.uk/v1\",\"kind\":\"AnalyticsWorkspace\","
			"\"metadata\":{\"name\":\"ws1\"},\"spec\":{\"displayName\":\"W\",\"description\":\"d\","
			"\"validity\":{\"availableFrom\":\"2026-01-01\",\"expires\":\"2099-01-01\"},"
			"\"jupyterWorkspace\":{\"image\":\"jupyter/base:latest\"}}}";
static const char *BINDING = "{\"apiVersion\":\"xlscsde.nhs.uk/v1\",\"kind\":\"AnalyticsWorkspaceBinding\","
			     "\"metadata\":{\"name\":\"ws1-eng\"},\"spec\":{\"workspace\":\"ws1\",\"username\":\"eng\"}}";
static const char *DS = "apiVersion: xlscsde.nhs.uk/v1\nkind: AnalyticsWorkspaceDataSource\n"
			"metadata:\n  name: ds-one\nspec:\n  type: Import\n  displayName: One\n"
			"  connections:\n  - {type: sqlite, name: src, url: 'sqlite:///nonexistent.db'}\n"
			"  objects:\n  - table: {name: t, connection: src}\n";

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char *db, *key;
	json_t *roles;

	snprintf(f->dir, sizeof(f->dir), "/tmp/airlock-api-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	db = util_path_join(f->dir, "airlock.db");
	key = util_path_join(f->dir, "credentials.key");
	assert_int_equal(config_load(&f->cfg, NULL), AL_OK);
	assert_int_equal(config_set_data_dir(&f->cfg, f->dir), AL_OK);
	/* A request gate keeps the operator (not running here) out of the picture. */
	gates_config_free(&f->cfg.gates);
	{
		json_t *g = json_pack("{s:[{s:s, s:s}]}", "request", "type", "information-governance", "role", "approver");
		assert_int_equal(gates_config_from_json(&f->cfg.gates, g), AL_OK);
		json_decref(g);
	}
	assert_int_equal(store_sqlite_open(&f->store, db), AL_OK);
	assert_int_equal(accounts_open(&f->acc, db), AL_OK);
	accounts_set_hash_cost(f->acc, crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN);
	assert_int_equal(credstore_open(&f->creds, db, key), AL_OK);
	f->api.store = f->store;
	f->api.accounts = f->acc;
	f->api.creds = f->creds;
	f->api.cfg = &f->cfg;
	f->api.ready = ready_fn;
	f->api.ready_ud = &f->ready;
	roles = json_pack("[s]", "admin");
	assert_int_equal(accounts_user_create(f->acc, "admin", "a-long-password", roles), AL_OK);
	json_decref(roles);
	add_user(f, "eng", "data-engineer");
	add_user(f, "appr", "approver");
	add_user(f, "outsider", "data-engineer");
	f->admin_token = login(f, "admin", "a-long-password");
	f->eng_token = login(f, "eng", "a-long-password");
	f->appr_token = login(f, "appr", "a-long-password");
	f->out_token = login(f, "outsider", "a-long-password");
	assert_int_equal(call(f, "POST", "/api/v1/workspaces", NULL, f->admin_token, WS, NULL), 201);
	assert_int_equal(call(f, "POST", "/api/v1/workspacebindings", NULL, f->admin_token, BINDING, NULL), 201);
	free(db);
	free(key);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	credstore_close(f->creds);
	accounts_close(f->acc);
	store_close(f->store);
	config_free(&f->cfg);
	util_remove_tree(f->dir);
	free(f->admin_token);
	free(f->eng_token);
	free(f->appr_token);
	free(f->out_token);
	free(f);
	return 0;
}

static void test_health_and_auth(void **state)
{
	struct fixture *f = *state;
	json_t *ans = NULL;
	assert_int_equal(call(f, "GET", "/healthz", NULL, NULL, NULL, NULL), 200);
	f->ready = 0;
	assert_int_equal(call(f, "GET", "/readyz", NULL, NULL, NULL, NULL), 503);
	f->ready = 1;
	assert_int_equal(call(f, "GET", "/readyz", NULL, NULL, NULL, NULL), 200);
	assert_int_equal(call(f, "GET", "/api/v1/datasources", NULL, NULL, NULL, &ans), 401);
	assert_string_equal(json_string_value(json_object_get(json_object_get(ans, "error"), "code")), "unauthorized");
	json_decref(ans);
	assert_int_equal(call(f, "GET", "/api/v1/datasources", NULL, "alk_bogus", NULL, NULL), 401);
	assert_int_equal(call(f, "GET", "/nowhere", NULL, NULL, NULL, NULL), 404);
	assert_int_equal(call(f, "POST", "/api/v1/login", NULL, NULL, "{\"username\":\"eng\",\"password\":\"wrong-one-1\"}", NULL), 401);
	assert_int_equal(call(f, "GET", "/api/v1/whoami", NULL, f->eng_token, NULL, &ans), 200);
	assert_string_equal(json_string_value(json_array_get(json_object_get(ans, "workspaces"), 0)), "ws1");
	json_decref(ans);
}

static void test_datasource_lifecycle(void **state)
{
	struct fixture *f = *state;
	json_t *ans = NULL, *audit_before = NULL, *audit_after = NULL;

	/* No workspace named: refused, nothing stored. */
	assert_int_equal(call(f, "POST", "/api/v1/datasources", NULL, f->eng_token, DS, &ans), 400);
	json_decref(ans);
	/* An outsider cannot even see that ws1 exists. */
	assert_int_equal(call(f, "POST", "/api/v1/datasources", "ws1", f->out_token, DS, NULL), 404);
	assert_int_equal(call(f, "POST", "/api/v1/datasources", "ws1", f->eng_token, DS, &ans), 201);
	assert_string_equal(json_string_value(json_object_get(json_object_get(ans, "status"), "stage")),
			    "AwaitingRequestApproval");
	assert_string_equal(json_string_value(json_object_get(json_object_get(ans, "status"), "requestedBy")), "eng");
	json_decref(ans);
	assert_int_equal(call(f, "POST", "/api/v1/datasources", "ws1", f->eng_token, DS, NULL), 409);
	assert_int_equal(call(f, "GET", "/api/v1/datasources/ds-one", NULL, f->out_token, NULL, NULL), 404);
	assert_int_equal(call(f, "GET", "/api/v1/datasources/ds-one", NULL, f->appr_token, NULL, NULL), 200);
	assert_int_equal(call(f, "GET", "/api/v1/databindings/dsb-one", NULL, f->eng_token, NULL, NULL), 200);

	/* Refused decisions change nothing, the audit log included. */
	assert_int_equal(store_audit_list(f->store, 0, 0, &audit_before), AL_OK);
	assert_int_equal(call(f, "POST", "/api/v1/datasources/ds-one/approvals", NULL, f->eng_token,
			      "{\"decision\":\"approve\"}", NULL), 403);
	assert_int_equal(call(f, "POST", "/api/v1/datasources/ds-one/approvals", NULL, f->appr_token,
			      "{\"decision\":\"approve\",\"colour\":\"red\"}", NULL), 400);
	assert_int_equal(call(f, "POST", "/api/v1/datasources/ds-one/retry", NULL, f->eng_token, NULL, NULL), 409);
	assert_int_equal(store_audit_list(f->store, 0, 0, &audit_after), AL_OK);
	assert_true(json_equal(audit_before, audit_after));

	assert_int_equal(call(f, "POST", "/api/v1/datasources/ds-one/approvals", NULL, f->appr_token,
			      "{\"decision\":\"approve\"}", &ans), 200);
	assert_string_equal(json_string_value(json_object_get(json_object_get(ans, "status"), "dataState")), "READY");
	json_decref(ans);
	assert_int_equal(call(f, "GET", "/api/v1/datasources", "ws1", f->eng_token, NULL, &ans), 200);
	assert_int_equal(json_array_size(json_object_get(ans, "items")), 1);
	json_decref(ans);
	assert_int_equal(call(f, "GET", "/api/v1/audit/verify", NULL, f->admin_token, NULL, &ans), 200);
	assert_true(json_is_true(json_object_get(ans, "ok")));
	json_decref(ans);
	assert_int_equal(call(f, "GET", "/api/v1/audit", NULL, f->eng_token, NULL, NULL), 403);
	assert_int_equal(call(f, "DELETE", "/api/v1/datasources/ds-one", NULL, f->out_token, NULL, NULL), 404);
	assert_int_equal(call(f, "DELETE", "/api/v1/datasources/ds-one", NULL, f->eng_token, NULL, NULL), 200);
	assert_int_equal(call(f, "GET", "/api/v1/databindings/dsb-one", NULL, f->eng_token, NULL, NULL), 404);
	json_decref(audit_before);
	json_decref(audit_after);
}

static void test_secrets_never_echo(void **state)
{
	struct fixture *f = *state;
	json_t *ans = NULL, *audit = NULL;
	char *dump;
	assert_int_equal(call(f, "PUT", "/api/v1/secrets/DbPassword", NULL, f->appr_token, "{\"value\":\"hunter2-xyz\"}", NULL), 403);
	assert_int_equal(call(f, "PUT", "/api/v1/secrets/DbPassword", NULL, f->eng_token, "{\"value\":\"hunter2-xyz\"}", &ans), 200);
	json_decref(ans);
	assert_int_equal(call(f, "GET", "/api/v1/secrets", NULL, f->eng_token, NULL, &ans), 200);
	dump = json_dumps(ans, 0);
	assert_non_null(strstr(dump, "DbPassword"));
	assert_null(strstr(dump, "hunter2"));
	free(dump);
	json_decref(ans);
	assert_int_equal(store_audit_list(f->store, 0, 0, &audit), AL_OK);
	dump = json_dumps(audit, 0);
	assert_non_null(strstr(dump, "set-secret"));
	assert_null(strstr(dump, "hunter2"));
	free(dump);
	json_decref(audit);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_health_and_auth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_datasource_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secrets_never_echo, setup, teardown),
	};
	if (sodium_init() < 0)
		return 1;
	json_object_seed(0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
