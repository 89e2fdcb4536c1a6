/* Tests for web/http_server (through real sockets with libcurl) and for the
 * CLI's cli/client against it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/client.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "web/http_server.h"

#define MAX_BODY 1024

static atomic_int handler_calls;
static pthread_mutex_t block_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t block_cond = PTHREAD_COND_INITIALIZER;
static int block_entered, block_release;

static void handler(void *userdata, const struct http_request *req, struct http_response *resp)
{
	(void)userdata;
	atomic_fetch_add(&handler_calls, 1);
	if (!strncmp(req->path, "/echo", 5)) {
		const char *q = http_request_query(req, "name");
		const char *flag = http_request_query(req, "flag");
		const char *hdr = http_request_header(req, "x-TEST");
		const char *auth = http_request_header(req, "authorization");
		const char *ct = http_request_header(req, "Content-Type");
		json_t *o = json_pack("{s:s, s:s, s:I, s:s?, s:b, s:s?, s:s?, s:s?, s:s}", "method",
				      req->method, "path", req->path, "bodyLen",
				      (json_int_t)req->body_len, "name", q, "flag", flag != NULL,
				      "header", hdr, "auth", auth, "contentType", ct, "remote",
				      req->remote_addr);
		if (req->body_len == strlen(req->body))
			json_object_set_new(o, "body", json_string(req->body));
		http_response_json(resp, 200, o);
		http_response_header(resp, "X-Extra", "yes");
	} else if (!strcmp(req->path, "/block")) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 20;
		pthread_mutex_lock(&block_lock);
		block_entered = 1;
		pthread_cond_broadcast(&block_cond);
		while (!block_release)
			if (pthread_cond_timedwait(&block_cond, &block_lock, &until))
				break;
		pthread_mutex_unlock(&block_lock);
		http_response_text(resp, 200, "unblocked");
	} else if (!strcmp(req->path, "/fail")) {
		http_response_error(resp, AL_ERR_CONFLICT, "stale resourceVersion");
	} else if (!strcmp(req->path, "/html")) {
		http_response_header(resp, "Content-Security-Policy", "default-src 'self'");
		http_response_bytes(resp, 200, "text/html; charset=utf-8", "<p>hi</p>", 9);
	} else if (!strcmp(req->path, "/cookies")) {
		/* Two cookies need two headers; a replace after them touches the first. */
		http_response_text(resp, 200, "cookies");
		assert_int_equal(http_response_add_header(resp, "Set-Cookie", "a=1; Path=/"), AL_OK);
		assert_int_equal(http_response_add_header(resp, "Set-Cookie", "b=; Max-Age=0"), AL_OK);
		assert_int_equal(http_response_add_header(resp, "Set-Cookie", "c=3\r\nX-Evil: 1"), AL_ERR_INVALID);
		assert_int_equal(http_response_header(resp, "X-Once", "1"), AL_OK);
		assert_int_equal(http_response_header(resp, "X-Once", "2"), AL_OK);
	} else if (!strcmp(req->path, "/none")) {
		/* sets nothing: the server answers 500 */
	} else {
		http_response_error(resp, AL_ERR_NOT_FOUND, "no such route");
	}
}

struct reply {
	long status;
	struct buf body;
	struct buf headers;
};

static size_t collect(char *data, size_t size, size_t nmemb, void *userp)
{
	struct buf *b = userp;
	return buf_append(b, data, size * nmemb) == AL_OK ? size * nmemb : 0;
}

struct chunk_src {
	size_t left;
};

static size_t feed(char *out, size_t size, size_t nmemb, void *userp)
{
	struct chunk_src *s = userp;
	size_t n = size * nmemb;
	if (n > s->left)
		n = s->left;
	if (n > 100)
		n = 100;
	memset(out, 'x', n);
	s->left -= n;
	return n;
}

/* One request with libcurl; chunked > 0 streams that many bytes chunked. */
static CURLcode do_req(unsigned short port, const char *method, const char *path, const char *body,
		       size_t len, size_t chunked, const char *extra_header, struct reply *r)
{
	char url[512];
	struct curl_slist *hl = NULL;
	struct chunk_src src = { chunked };
	CURL *c = curl_easy_init();
	CURLcode cc;

	assert_non_null(c);
	buf_init(&r->body, 0);
	buf_init(&r->headers, 0);
	r->status = 0;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
	if (extra_header)
		hl = curl_slist_append(hl, extra_header);
	if (chunked) {
		hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, feed);
		curl_easy_setopt(c, CURLOPT_READDATA, &src);
	} else if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return cc;
}

static void reply_free(struct reply *r)
{
	buf_free(&r->body);
	buf_free(&r->headers);
}

static json_t *reply_json(const struct reply *r)
{
	json_t *j = json_loadb(r->body.ptr ? r->body.ptr : "", r->body.len, 0, NULL);
	assert_non_null(j);
	return j;
}

static int setup(void **state)
{
	struct http_server *srv = NULL;
	assert_int_equal(http_server_start(&srv, NULL, 0, MAX_BODY, handler, NULL), AL_OK);
	assert_true(http_server_port(srv) > 0);
	*state = srv;
	return 0;
}

static int teardown(void **state)
{
	http_server_stop(*state);
	return 0;
}

static void test_methods_query_headers(void **state)
{
	unsigned short port = http_server_port(*state);
	struct reply r;
	json_t *j;

	assert_int_equal(do_req(port, "GET", "/echo%20x?name=a%20b%26c&flag", NULL, 0, 0,
				"X-Test: v1", &r), CURLE_OK);
	assert_int_equal(r.status, 200);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
	assert_string_equal(json_string_value(json_object_get(j, "path")), "/echo x");
	assert_string_equal(json_string_value(json_object_get(j, "name")), "a b&c");
	assert_true(json_is_true(json_object_get(j, "flag")));
	assert_string_equal(json_string_value(json_object_get(j, "header")), "v1");
	assert_string_equal(json_string_value(json_object_get(j, "remote")), "127.0.0.1");
	assert_int_equal(json_integer_value(json_object_get(j, "bodyLen")), 0);
	json_decref(j);
	/* security and extra headers */
	assert_non_null(strcasestr(r.headers.ptr, "X-Content-Type-Options: nosniff"));
	assert_non_null(strcasestr(r.headers.ptr, "Cache-Control: no-store"));
	assert_non_null(strcasestr(r.headers.ptr, "Content-Security-Policy: default-src 'none'"));
	assert_non_null(strcasestr(r.headers.ptr, "Content-Type: application/json"));
	assert_non_null(strcasestr(r.headers.ptr, "X-Extra: yes"));
	reply_free(&r);

	/* several headers of one name (Set-Cookie) */
	assert_int_equal(do_req(port, "GET", "/cookies", NULL, 0, 0, NULL, &r), CURLE_OK);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.headers.ptr, "Set-Cookie: a=1; Path=/\r\n"));
	assert_non_null(strstr(r.headers.ptr, "Set-Cookie: b=; Max-Age=0\r\n"));
	assert_null(strcasestr(r.headers.ptr, "X-Evil"));
	assert_null(strstr(r.headers.ptr, "c=3"));
	assert_non_null(strstr(r.headers.ptr, "X-Once: 2\r\n"));
	assert_null(strstr(r.headers.ptr, "X-Once: 1"));
	reply_free(&r);

	/* POST with a body containing a NUL */
	assert_int_equal(do_req(port, "POST", "/echo", "hello\0world", 11, 0, NULL, &r), CURLE_OK);
	assert_int_equal(r.status, 200);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
	assert_int_equal(json_integer_value(json_object_get(j, "bodyLen")), 11);
	assert_null(json_object_get(j, "body")); /* handler saw the NUL */
	assert_false(json_is_true(json_object_get(j, "flag")));
	json_decref(j);
	reply_free(&r);

	assert_int_equal(do_req(port, "PUT", "/echo", "{\"a\":1}", 7, 0, NULL, &r), CURLE_OK);
	assert_int_equal(r.status, 200);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "method")), "PUT");
	assert_string_equal(json_string_value(json_object_get(j, "body")), "{\"a\":1}");
	json_decref(j);
	reply_free(&r);

	/* exactly max_body is accepted */
	{
		char *big = malloc(MAX_BODY);
		assert_non_null(big);
		memset(big, 'a', MAX_BODY);
		assert_int_equal(do_req(port, "POST", "/echo", big, MAX_BODY, 0, NULL, &r), CURLE_OK);
		assert_int_equal(r.status, 200);
		j = reply_json(&r);
		assert_int_equal(json_integer_value(json_object_get(j, "bodyLen")), MAX_BODY);
		json_decref(j);
		reply_free(&r);
		free(big);
	}

	assert_int_equal(do_req(port, "DELETE", "/echo/item", NULL, 0, 0, NULL, &r), CURLE_OK);
	assert_int_equal(r.status, 200);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "method")), "DELETE");
	assert_string_equal(json_string_value(json_object_get(j, "path")), "/echo/item");
	json_decref(j);
	reply_free(&r);
}

static void test_errors_and_defaults(void **state)
{
	unsigned short port = http_server_port(*state);
	struct reply r;
	json_t *j;

	assert_int_equal(do_req(port, "GET", "/fail", NULL, 0, 0, NULL, &r), CURLE_OK);
	assert_int_equal(r.status, 409);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
			    "conflict");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
			    "stale resourceVersion");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "error"), "status")), 409);
	json_decref(j);
	reply_free(&r);

	assert_int_equal(do_req(port, "GET", "/none", NULL, 0, 0, NULL, &r), CURLE_OK);
	assert_int_equal(r.status, 500);
	reply_free(&r);

	/* a handler's own CSP replaces the default */
	assert_int_equal(do_req(port, "GET", "/html", NULL, 0, 0, NULL, &r), CURLE_OK);
	assert_int_equal(r.status, 200);
	assert_non_null(strcasestr(r.headers.ptr, "Content-Security-Policy: default-src 'self'"));
	assert_null(strcasestr(r.headers.ptr, "default-src 'none'"));
	assert_non_null(strcasestr(r.headers.ptr, "X-Content-Type-Options: nosniff"));
	assert_string_equal(r.body.ptr, "<p>hi</p>");
	reply_free(&r);
}

static void test_oversize(void **state)
{
	unsigned short port = http_server_port(*state);
	struct reply r;
	char *big = malloc(5 * MAX_BODY);
	int before;
	json_t *j;

	assert_non_null(big);
	memset(big, 'b', 5 * MAX_BODY);
	before = atomic_load(&handler_calls);
	/* with Content-Length: refused before the body is read */
	do_req(port, "POST", "/echo", big, 5 * MAX_BODY, 0, NULL, &r);
	assert_int_equal(r.status, 413);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
			    "too_large");
	json_decref(j);
	reply_free(&r);

	/* chunked, no Content-Length: refused once it grows past the limit */
	do_req(port, "POST", "/echo", NULL, 0, 3 * MAX_BODY, NULL, &r);
	assert_int_equal(r.status, 413);
	reply_free(&r);
	/* a huge chunked body: MHD 0.9.75 cannot answer before the body is read,
	 * so the server drops up to 16 MiB more and then cuts the connection (the
	 * client sees no final status, or only the interim 100 Continue) */
	do_req(port, "PUT", "/echo", NULL, 0, 40 << 20, NULL, &r);
	assert_true(r.status == 413 || r.status == 0 || r.status == 100);
	reply_free(&r);
	assert_int_equal(atomic_load(&handler_calls), before);

	/* a small chunked body is fine */
	assert_int_equal(do_req(port, "POST", "/echo", NULL, 0, 500, NULL, &r), CURLE_OK);
	assert_int_equal(r.status, 200);
	j = reply_json(&r);
	assert_int_equal(json_integer_value(json_object_get(j, "bodyLen")), 500);
	json_decref(j);
	reply_free(&r);

	/* the server still serves after all that */
	assert_int_equal(do_req(port, "GET", "/echo", NULL, 0, 0, NULL, &r), CURLE_OK);
	assert_int_equal(r.status, 200);
	reply_free(&r);
	free(big);
}

struct worker {
	unsigned short port;
	int ok;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 25; i++) {
		struct reply r;
		char path[64];
		snprintf(path, sizeof(path), "/echo?name=%d", i);
		if (do_req(w->port, i % 2 ? "POST" : "GET", path, "x", 1, 0, NULL, &r) == CURLE_OK &&
		    r.status == 200) {
			json_t *j = json_loadb(r.body.ptr, r.body.len, 0, NULL);
			char want[16];
			snprintf(want, sizeof(want), "%d", i);
			if (j && !strcmp(json_string_value(json_object_get(j, "name")), want))
				w->ok++;
			json_decref(j);
		}
		reply_free(&r);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct worker w[4];
	pthread_t t[4];
	log_set_level(LOG_WARN);
	for (int i = 0; i < 4; i++) {
		w[i].port = http_server_port(*state);
		w[i].ok = 0;
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, 25);
	}
	log_set_level(LOG_INFO);
}

static void *block_main(void *arg)
{
	struct worker *w = arg;
	struct reply r;
	if (do_req(w->port, "GET", "/block", NULL, 0, 0, NULL, &r) == CURLE_OK && r.status == 200 &&
	    !strcmp(r.body.ptr, "unblocked"))
		w->ok = 1;
	reply_free(&r);
	return NULL;
}

static void test_blocking_handler(void **state)
{
	struct worker w = { http_server_port(*state), 0 };
	struct reply r;
	pthread_t t;
	int64_t start;

	block_entered = block_release = 0;
	assert_int_equal(pthread_create(&t, NULL, block_main, &w), 0);
	pthread_mutex_lock(&block_lock);
	while (!block_entered)
		pthread_cond_wait(&block_cond, &block_lock);
	pthread_mutex_unlock(&block_lock);

	start = util_monotonic_ms();
	assert_int_equal(do_req(w.port, "GET", "/echo", NULL, 0, 0, NULL, &r), CURLE_OK);
	assert_int_equal(r.status, 200);
	assert_true(util_monotonic_ms() - start < 5000);
	reply_free(&r);

	pthread_mutex_lock(&block_lock);
	block_release = 1;
	pthread_cond_broadcast(&block_cond);
	pthread_mutex_unlock(&block_lock);
	pthread_join(t, NULL);
	assert_int_equal(w.ok, 1);
}

static void test_start_errors(void **state)
{
	struct http_server *srv = NULL;
	assert_int_equal(http_server_start(&srv, "not-an-ip", 0, 0, handler, NULL), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "not-an-ip"));
	assert_null(srv);
	assert_int_equal(http_server_start(&srv, "127.0.0.1", http_server_port(*state), 0, handler, NULL),
			 AL_ERR_IO);
	assert_non_null(strstr(al_error_message(), "cannot listen"));
	assert_int_equal(http_server_start(&srv, "::1", 0, 0, handler, NULL), AL_OK);
	{
		char url[64];
		long status = 0;
		CURL *c = curl_easy_init();
		struct buf b;
		buf_init(&b, 0);
		snprintf(url, sizeof(url), "http://[::1]:%u/echo", (unsigned)http_server_port(srv));
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
		assert_int_equal(curl_easy_perform(c), CURLE_OK);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		assert_int_equal(status, 200);
		curl_easy_cleanup(c);
		buf_free(&b);
	}
	http_server_stop(srv);
	http_server_stop(NULL);
}

static void test_fake_request_and_response_helpers(void **state)
{
	static const char *const hdrs[] = { "Authorization", "Bearer t", "X-A", "1", NULL };
	static const char *const query[] = { "watch", "", "rv", "12", NULL };
	struct http_request req = { .method = "GET", .path = "/x", .body = "", .test_headers = hdrs,
				    .test_query = query };
	struct http_response resp;
	(void)state;

	assert_string_equal(http_request_header(&req, "authorization"), "Bearer t");
	assert_null(http_request_header(&req, "X-B"));
	assert_string_equal(http_request_query(&req, "rv"), "12");
	assert_string_equal(http_request_query(&req, "watch"), "");
	assert_null(http_request_query(&req, "RV"));

	http_response_init(&resp);
	assert_int_equal(http_response_header(&resp, "X-Bad", "a\r\nSet-Cookie: x"), AL_ERR_INVALID);
	assert_int_equal(http_response_header(&resp, "Bad:Name", "v"), AL_ERR_INVALID);
	assert_int_equal(http_response_header(&resp, "X-Ok", "1"), AL_OK);
	assert_int_equal(http_response_header(&resp, "x-ok", "2"), AL_OK);
	assert_int_equal(resp.n_headers, 1);
	assert_string_equal(resp.headers[0].value, "2");
	assert_int_equal(http_response_json(&resp, 200, NULL), AL_ERR_INTERNAL);
	assert_int_equal(resp.status, 500);
	assert_int_equal(http_response_error(&resp, AL_ERR_NOT_FOUND, "datasource ds-1 not found"), AL_OK);
	assert_int_equal(resp.status, 404);
	assert_string_equal(resp.body.ptr,
			    "{\"error\":{\"code\":\"not_found\",\"message\":\"datasource ds-1 not found\",\"status\":404}}");
	assert_string_equal(resp.content_type, "application/json");
	/* invalid UTF-8 in a message still gives a JSON error */
	assert_int_equal(http_response_error(&resp, AL_ERR_INVALID, "bad \xff byte"), AL_OK);
	assert_int_equal(resp.status, 400);
	http_response_free(&resp);
}

/* ---- client ------------------------------------------------------------ */

static void test_client_round_trip(void **state)
{
	struct client c = { 0 };
	char server[64];
	json_t *body, *out = NULL;
	long status = 0;
	struct http_server *dead = NULL;
	unsigned short dead_port;

	snprintf(server, sizeof(server), "http://127.0.0.1:%u/", (unsigned)http_server_port(*state));
	unsetenv("AIRLOCK_TOKEN");
	unsetenv("AIRLOCK_SERVER");
	setenv("AIRLOCK_CONFIG", "/nonexistent-dir/airlock-config.json", 1);
	assert_int_equal(client_load(&c, server), AL_OK);
	assert_null(c.token);
	assert_int_equal(strncmp(c.server, server, strlen(server) - 1), 0);
	assert_int_equal(c.server[strlen(c.server) - 1] == '/', 0);
	c.token = strdup("alk_test");

	body = json_pack("{s:s, s:i}", "name", "ds-1", "n", 3);
	assert_int_equal(client_request(&c, "POST", "/echo?name=z", body, &status, &out), AL_OK);
	assert_int_equal(status, 200);
	assert_string_equal(json_string_value(json_object_get(out, "auth")), "Bearer alk_test");
	assert_string_equal(json_string_value(json_object_get(out, "contentType")), "application/json");
	assert_string_equal(json_string_value(json_object_get(out, "name")), "z");
	{
		json_t *sent = json_loads(json_string_value(json_object_get(out, "body")), 0, NULL);
		assert_true(json_equal(sent, body));
		json_decref(sent);
	}
	json_decref(out);
	json_decref(body);

	assert_int_equal(client_request(&c, "GET", "/echo", NULL, &status, &out), AL_OK);
	assert_string_equal(json_string_value(json_object_get(out, "method")), "GET");
	json_decref(out);
	assert_int_equal(client_request(&c, "DELETE", "/echo/x", NULL, NULL, NULL), AL_OK);

	assert_int_equal(client_request_raw(&c, "PUT", "/echo", "application/yaml", "a: 1\n", 5,
					    &status, &out), AL_OK);
	assert_string_equal(json_string_value(json_object_get(out, "contentType")), "application/yaml");
	assert_string_equal(json_string_value(json_object_get(out, "body")), "a: 1\n");
	json_decref(out);

	/* an API error keeps its code, message and body */
	assert_int_equal(client_request(&c, "GET", "/fail", NULL, &status, &out), AL_ERR_CONFLICT);
	assert_int_equal(status, 409);
	assert_string_equal(al_error_message(), "stale resourceVersion");
	assert_non_null(json_object_get(out, "error"));
	json_decref(out);
	assert_int_equal(client_request(&c, "GET", "/nope", NULL, &status, &out), AL_ERR_NOT_FOUND);
	json_decref(out);
	/* 413 from the server maps to too_large */
	{
		json_t *big = json_pack("{s:s}", "x", "");
		char *s = malloc(4 * MAX_BODY + 1);
		memset(s, 'q', 4 * MAX_BODY);
		s[4 * MAX_BODY] = '\0';
		json_object_set_new(big, "x", json_string(s));
		assert_int_equal(client_request(&c, "POST", "/echo", big, &status, &out), AL_ERR_TOO_LARGE);
		assert_int_equal(status, 413);
		json_decref(out);
		json_decref(big);
		free(s);
	}
	client_free(&c);

	/* nobody listening */
	assert_int_equal(http_server_start(&dead, NULL, 0, 0, handler, NULL), AL_OK);
	dead_port = http_server_port(dead);
	http_server_stop(dead);
	snprintf(server, sizeof(server), "http://127.0.0.1:%u", (unsigned)dead_port);
	assert_int_equal(client_load(&c, server), AL_OK);
	assert_int_equal(client_request(&c, "GET", "/echo", NULL, &status, &out), AL_ERR_UNAVAILABLE);
	assert_int_equal(status, 0);
	assert_null(out);
	assert_non_null(strstr(al_error_message(), "cannot reach the airlock at http://127.0.0.1:"));
	assert_non_null(strstr(al_error_message(), "airlock serve"));
	client_free(&c);

	assert_int_equal(client_load(&c, "ftp://x"), AL_ERR_INVALID);
}

static void test_client_config(void **state)
{
	char dir[] = "/tmp/airlock-client-XXXXXX";
	char *cfg, *sub;
	struct client c;
	struct stat st;
	(void)state;

	assert_non_null(mkdtemp(dir));
	sub = util_path_join(dir, "conf");
	cfg = util_path_join(sub, "config.json");
	setenv("AIRLOCK_CONFIG", cfg, 1);
	unsetenv("AIRLOCK_TOKEN");
	unsetenv("AIRLOCK_SERVER");

	assert_int_equal(client_save("http://10.1.2.3:9000/", "alk_saved"), AL_OK);
	assert_int_equal(stat(cfg, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	assert_int_equal(client_load(&c, NULL), AL_OK);
	assert_string_equal(c.server, "http://10.1.2.3:9000");
	assert_string_equal(c.token, "alk_saved");
	client_free(&c);

	/* another server: the saved token is not sent there */
	assert_int_equal(client_load(&c, "http://evil.example:80"), AL_OK);
	assert_string_equal(c.server, "http://evil.example:80");
	assert_null(c.token);
	client_free(&c);
	setenv("AIRLOCK_SERVER", "http://10.1.2.3:9000", 1);
	assert_int_equal(client_load(&c, NULL), AL_OK);
	assert_string_equal(c.token, "alk_saved");
	client_free(&c);
	setenv("AIRLOCK_TOKEN", "alk_env", 1);
	assert_int_equal(client_load(&c, "http://other:1"), AL_OK);
	assert_string_equal(c.token, "alk_env");
	client_free(&c);
	unsetenv("AIRLOCK_TOKEN");
	unsetenv("AIRLOCK_SERVER");

	/* logout keeps the server */
	assert_int_equal(client_save("http://10.1.2.3:9000", NULL), AL_OK);
	assert_int_equal(client_load(&c, NULL), AL_OK);
	assert_string_equal(c.server, "http://10.1.2.3:9000");
	assert_null(c.token);
	client_free(&c);

	assert_int_equal(chmod(cfg, 0644), 0);
	assert_int_equal(client_load(&c, NULL), AL_ERR_FORBIDDEN);
	assert_non_null(strstr(al_error_message(), "chmod 600"));
	assert_null(c.server);

	assert_int_equal(util_remove_tree(dir), AL_OK);
	free(cfg);
	free(sub);
	unsetenv("AIRLOCK_CONFIG");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fake_request_and_response_helpers),
		cmocka_unit_test_setup_teardown(test_methods_query_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_and_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blocking_handler, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_round_trip, setup, teardown),
		cmocka_unit_test(test_client_config),
	};
	int rc;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
