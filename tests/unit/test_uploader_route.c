/* Tests for web/uploader_route: its settings (the proxy secret, the URL
 * template), the uploader's name, and the answers it gives before any
 * Kubernetes or uploader call (routing, paths, authentication). The proxy
 * itself runs against real processes in tests/kube/test_frontend_kube.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"
#include "web/uploader_route.h"

struct fixture {
	char dir[64];
	char *secret;
	struct api_ctx api;
	int kc_dummy;
	struct uploader_route_options o;
	int auth_calls;
};

static int refuse(void *ud, const struct http_request *req, json_t **out_user)
{
	struct fixture *f = ud;
	(void)req;
	*out_user = NULL;
	f->auth_calls++;
	return al_error_set(AL_ERR_UNAUTHORIZED, "log in first");
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/al-uproute-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->secret = util_path_join(f->dir, "secret");
	assert_int_equal(util_write_file_atomic(f->secret, "a-long-enough-secret-0123\n", 26, 0600), AL_OK);
	f->o.api = &f->api;
	f->o.kc = (struct kube_client *)&f->kc_dummy; /* never reached by these tests */
	f->o.namespace = "airlock";
	f->o.secret_file = f->secret;
	f->o.authenticate = refuse;
	f->o.authenticate_ud = f;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	util_remove_tree(f->dir);
	free(f->secret);
	free(f);
	return 0;
}

static void test_settings(void **state)
{
	struct fixture *f = *state;
	struct uploader_route *r = NULL;
	struct uploader_route_options o = f->o;
	char *short_path = util_path_join(f->dir, "short");

	assert_int_equal(uploader_route_open(&r, &o), AL_OK);
	uploader_route_close(r);
	r = NULL;

	o.secret_file = NULL;
	assert_int_equal(uploader_route_open(&r, &o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "AIRLOCK_UPLOADER_PROXY_SECRET_FILE"));
	assert_null(r);

	assert_int_equal(util_write_file_atomic(short_path, "short\n", 6, 0600), AL_OK);
	o.secret_file = short_path;
	assert_int_equal(uploader_route_open(&r, &o), AL_ERR_INVALID);
	/* The message names the file, never its content. */
	assert_null(strstr(al_error_message(), "short\n"));

	o.secret_file = "/nonexistent/secret";
	assert_true(uploader_route_open(&r, &o) < 0);

	o = f->o;
	o.url_template = "ftp://{name}";
	assert_int_equal(uploader_route_open(&r, &o), AL_ERR_INVALID);
	o.url_template = "https://{name}.{namespace}.svc.cluster.local:8443";
	assert_int_equal(uploader_route_open(&r, &o), AL_OK);
	uploader_route_close(r);
	uploader_route_close(NULL);
	free(short_path);
}

static void test_name(void **state)
{
	json_t *ds = json_pack("{s:{s:s, s:s}}", "metadata", "name", "ds-1", "uid", "0a1b-2c");
	json_t *bare = json_pack("{s:{s:s}}", "metadata", "name", "ds-1");
	char *n = uploader_route_name(ds);
	(void)state;
	assert_string_equal(n, "upload-0a1b-2c");
	assert_null(uploader_route_name(bare));
	free(n);
	json_decref(ds);
	json_decref(bare);
}

/* What on_headers answers for `path`; *ctx must stay NULL (nothing proxied). */
static int decide(struct uploader_route *r, const char *method, const char *path, const char *const *headers,
		  int *status)
{
	const struct http_stream_ops *ops = uploader_route_stream_ops();
	struct http_request req = { .method = method, .path = path, .body = "", .remote_addr = "127.0.0.1",
				    .test_headers = headers };
	struct http_response resp;
	void *ctx = NULL;
	int d;
	http_response_init(&resp);
	d = ops->on_headers(r, &req, &resp, &ctx);
	assert_null(ctx);
	*status = resp.status;
	http_response_free(&resp);
	return d;
}

static void test_routing_before_any_call(void **state)
{
	struct fixture *f = *state;
	struct uploader_route *r = NULL;
	static const char *const none[] = { NULL };
	static const char *const bad_length[] = { "Content-Length", "12x", NULL };
	int status = 0;

	assert_int_equal(uploader_route_open(&r, &f->o), AL_OK);
	/* Not ours: the pages and the API. */
	assert_int_equal(decide(r, "GET", "/api/v1/datasources", none, &status), HTTP_STREAM_PASS);
	assert_int_equal(decide(r, "GET", "/uploadsx", none, &status), HTTP_STREAM_PASS);
	/* Names that are no uploader's, and paths that are no tus route: 404,
	 * before anyone is asked who the caller is. */
	assert_int_equal(decide(r, "GET", "/uploads/", none, &status), HTTP_STREAM_ANSWER);
	assert_int_equal(status, 404);
	assert_int_equal(decide(r, "GET", "/uploads/airlock-operator", none, &status), HTTP_STREAM_ANSWER);
	assert_int_equal(status, 404);
	assert_int_equal(decide(r, "GET", "/uploads/upload-ABC", none, &status), HTTP_STREAM_ANSWER);
	assert_int_equal(status, 404);
	assert_int_equal(decide(r, "HEAD", "/uploads/upload-abc/../x", none, &status), HTTP_STREAM_ANSWER);
	assert_int_equal(status, 404);
	assert_int_equal(decide(r, "HEAD", "/uploads/upload-abc//x", none, &status), HTTP_STREAM_ANSWER);
	assert_int_equal(status, 404);
	assert_int_equal(decide(r, "HEAD", "/uploads/upload-abc/a b", none, &status), HTTP_STREAM_ANSWER);
	assert_int_equal(status, 404);
	assert_int_equal(f->auth_calls, 0);
	/* A bad Content-Length: 400. */
	assert_int_equal(decide(r, "PATCH", "/uploads/upload-abc/1f", bad_length, &status), HTTP_STREAM_ANSWER);
	assert_int_equal(status, 400);
	/* Nobody: 401, and nothing reaches Kubernetes or the uploader. */
	assert_int_equal(decide(r, "POST", "/uploads/upload-abc", none, &status), HTTP_STREAM_ANSWER);
	assert_int_equal(status, 401);
	assert_int_equal(decide(r, "HEAD", "/uploads/upload-abc/0123abcd", none, &status), HTTP_STREAM_ANSWER);
	assert_int_equal(status, 401);
	assert_int_equal(f->auth_calls, 2);
	uploader_route_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_routing_before_any_call, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
