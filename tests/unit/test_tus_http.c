/* Unit tests of web/http_server's streaming routes (the interface the
 * uploader is built on), through real sockets with libcurl: the headers-only
 * decision, chunks in order, answers before, during and after the body,
 * on_close exactly once (also when the client goes away), keep-alive, and
 * the buffered routes unchanged beside them. */
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
#include <unistd.h>

#include "common/buf.h"
#include "common/error.h"
#include "web/http_server.h"

#define MAX_BODY 1024

static atomic_int buffered_calls, headers_calls, data_calls, end_calls, close_calls, open_ctx;
static atomic_llong data_bytes;

struct sctx {
	long long bytes;
	unsigned sum;
	int answer_after; /* answer 413 once this many bytes arrived; 0 never */
};

static void buffered(void *ud, const struct http_request *req, struct http_response *resp)
{
	char msg[64];
	(void)ud;
	atomic_fetch_add(&buffered_calls, 1);
	snprintf(msg, sizeof(msg), "buffered %zu", req->body_len);
	http_response_text(resp, 200, msg);
}

static enum http_stream_decision on_headers(void *ud, const struct http_request *req, struct http_response *resp,
					    void **ctx)
{
	struct sctx *c;
	(void)ud;
	atomic_fetch_add(&headers_calls, 1);
	assert_int_equal(req->body_len, 0);
	if (strncmp(req->path, "/s/", 3))
		return HTTP_STREAM_PASS;
	if (!strcmp(req->path, "/s/refuse")) {
		/* Decided on the headers alone, whatever the body. */
		http_response_error(resp, AL_ERR_CONFLICT, "refused before the body");
		http_response_header(resp, "X-Decided", "headers");
		return HTTP_STREAM_ANSWER;
	}
	c = calloc(1, sizeof(*c));
	assert_non_null(c);
	if (!strcmp(req->path, "/s/stop"))
		c->answer_after = 100000;
	atomic_fetch_add(&open_ctx, 1);
	*ctx = c;
	return HTTP_STREAM_BODY;
}

static int on_data(void *ctx, const struct http_request *req, const char *data, size_t len,
		   struct http_response *resp)
{
	struct sctx *c = ctx;
	atomic_fetch_add(&data_calls, 1);
	atomic_fetch_add(&data_bytes, (long long)len);
	/* Headers are there in every call, not only the first. */
	assert_non_null(http_request_header(req, "X-Test"));
	for (size_t i = 0; i < len; i++) {
		/* The bytes arrive in order: byte k is (k * 7) & 0xff. */
		if ((unsigned char)data[i] != (unsigned char)(((c->bytes + (long long)i) * 7) & 0xff))
			fail_msg("byte %lld out of order", c->bytes + (long long)i);
	}
	c->bytes += (long long)len;
	if (c->answer_after && c->bytes >= c->answer_after) {
		http_response_error(resp, AL_ERR_TOO_LARGE, "stopped in the middle");
		return 1;
	}
	return 0;
}

static void on_end(void *ctx, const struct http_request *req, struct http_response *resp)
{
	struct sctx *c = ctx;
	char msg[64];
	(void)req;
	atomic_fetch_add(&end_calls, 1);
	snprintf(msg, sizeof(msg), "streamed %lld", c->bytes);
	http_response_text(resp, 201, msg);
}

static void on_close(void *ctx)
{
	atomic_fetch_add(&close_calls, 1);
	atomic_fetch_sub(&open_ctx, 1);
	free(ctx);
}

static const struct http_stream_ops ops = { on_headers, on_data, on_end, on_close };

struct reply {
	long status;
	struct buf body;
	struct buf headers;
	long connects;
};

struct source {
	long long size, sent, abort_at;
};

static size_t read_cb(char *out, size_t size, size_t n, void *ud)
{
	struct source *s = ud;
	size_t want = size * n, i;
	if (s->abort_at && s->sent >= s->abort_at)
		return CURL_READFUNC_ABORT;
	if ((long long)want > s->size - s->sent)
		want = (size_t)(s->size - s->sent);
	for (i = 0; i < want; i++)
		out[i] = (char)(((s->sent + (long long)i) * 7) & 0xff);
	s->sent += (long long)want;
	return want;
}

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
	buf_append(ud, p, size * n);
	return size * n;
}

static CURLcode send_req(CURL *h, unsigned short port, const char *method, const char *path, long long size,
			 long long abort_at, int expect, int chunked, struct reply *r)
{
	char url[128];
	struct curl_slist *hdr = NULL;
	struct source src = { size, 0, abort_at };
	CURLcode rc;

	buf_init(&r->body, 1 << 20);
	buf_init(&r->headers, 1 << 20);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	else
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	hdr = curl_slist_append(hdr, "X-Test: yes");
	hdr = curl_slist_append(hdr, expect ? "Expect: 100-continue" : "Expect:");
	if (chunked)
		hdr = curl_slist_append(hdr, "Transfer-Encoding: chunked");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	if (size >= 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, &src);
		if (!chunked)
			curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
	}
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &r->headers);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
	rc = curl_easy_perform(h);
	r->status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r->connects);
	curl_slist_free_all(hdr);
	return rc;
}

static void reply_free(struct reply *r)
{
	buf_free(&r->body);
	buf_free(&r->headers);
}

static void wait_closed(void)
{
	for (int i = 0; i < 200 && atomic_load(&open_ctx); i++)
		usleep(10000);
	assert_int_equal(atomic_load(&open_ctx), 0);
}

static void test_streaming_routes(void **state)
{
	struct http_server *srv = NULL;
	struct reply r;
	unsigned short port;
	CURL *h = curl_easy_init();
	(void)state;

	assert_int_equal(http_server_start_stream(&srv, "127.0.0.1", 0, MAX_BODY, buffered, NULL, &ops, NULL), AL_OK);
	port = http_server_port(srv);

	/* A buffered route beside the streaming ones: unchanged, max_body too. */
	assert_int_equal(send_req(h, port, "POST", "/api/x", 100, 0, 0, 0, &r), CURLE_OK);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body.ptr, "buffered 100");
	reply_free(&r);
	send_req(h, port, "POST", "/api/x", MAX_BODY + 1, 0, 0, 0, &r);
	assert_int_equal(r.status, 413);
	reply_free(&r);
	assert_int_equal(atomic_load(&buffered_calls), 1);

	/* A streamed body far over max_body, in order and in chunks. */
	atomic_store(&data_calls, 0);
	assert_int_equal(send_req(h, port, "PATCH", "/s/big", 5 << 20, 0, 0, 0, &r), CURLE_OK);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body.ptr, "streamed 5242880");
	assert_true(atomic_load(&data_calls) > 1);
	reply_free(&r);
	/* Chunked transfer encoding, and a client that waits for 100 Continue. */
	assert_int_equal(send_req(h, port, "PATCH", "/s/chunked", 300000, 0, 0, 1, &r), CURLE_OK);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body.ptr, "streamed 300000");
	reply_free(&r);
	assert_int_equal(send_req(h, port, "PATCH", "/s/expect", 300000, 0, 1, 0, &r), CURLE_OK);
	assert_int_equal(r.status, 201);
	reply_free(&r);
	/* No body at all: on_end at once. */
	assert_int_equal(send_req(h, port, "POST", "/s/empty", -1, 0, 0, 0, &r), CURLE_OK);
	assert_string_equal(r.body.ptr, "streamed 0");
	reply_free(&r);
	wait_closed();
	assert_int_equal(atomic_load(&end_calls), 4);
	assert_int_equal(atomic_load(&close_calls), 4);

	/* Answered on the headers: the client gets the answer, with or without
	 * 100 Continue, and no byte reaches on_data. */
	atomic_store(&data_bytes, 0);
	send_req(h, port, "PATCH", "/s/refuse", 200000, 0, 0, 0, &r);
	assert_int_equal(r.status, 409);
	assert_non_null(strstr(r.headers.ptr, "X-Decided: headers"));
	assert_non_null(strstr(r.body.ptr, "refused before the body"));
	reply_free(&r);
	send_req(h, port, "PATCH", "/s/refuse", 200000, 0, 1, 0, &r);
	assert_int_equal(r.status, 409);
	reply_free(&r);
	assert_int_equal(atomic_load(&data_bytes), 0);

	/* A bodiless answer keeps the connection for the next request. */
	send_req(h, port, "HEAD", "/s/refuse", -1, 0, 0, 0, &r);
	assert_int_equal(r.status, 409);
	reply_free(&r);
	send_req(h, port, "HEAD", "/s/refuse", -1, 0, 0, 0, &r);
	assert_int_equal(r.status, 409);
	assert_int_equal(r.connects, 0); /* reused */
	reply_free(&r);

	/* Answered in the middle of the body: the client gets that answer. */
	atomic_store(&end_calls, 0);
	send_req(h, port, "PATCH", "/s/stop", 1 << 20, 0, 0, 0, &r);
	assert_int_equal(r.status, 413);
	assert_non_null(strstr(r.body.ptr, "stopped in the middle"));
	reply_free(&r);
	wait_closed();
	assert_int_equal(atomic_load(&end_calls), 0);

	/* The client goes away in the middle: on_close, never on_end. */
	atomic_store(&close_calls, 0);
	assert_int_not_equal(send_req(h, port, "PATCH", "/s/abort", 4 << 20, 1 << 20, 0, 0, &r), CURLE_OK);
	reply_free(&r);
	/* curl may abort before the server has even read the headers (loopback
	 * buffers hold the whole first MiB), so open_ctx can still be 0 here:
	 * wait for the close itself, not merely for no open context. */
	for (int i = 0; i < 2000 && atomic_load(&close_calls) == 0; i++)
		usleep(10000);
	wait_closed();
	assert_int_equal(atomic_load(&close_calls), 1);
	assert_int_equal(atomic_load(&end_calls), 0);

	http_server_stop(srv);
	curl_easy_cleanup(h);
}

static void test_stream_ops_must_be_complete(void **state)
{
	struct http_server *srv = NULL;
	struct http_stream_ops half = { on_headers, NULL, on_end, on_close };
	(void)state;
	assert_int_equal(http_server_start_stream(&srv, "127.0.0.1", 0, 0, buffered, NULL, &half, NULL), AL_ERR_INVALID);
	assert_null(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_streaming_routes),
		cmocka_unit_test(test_stream_ops_must_be_complete),
	};
	int rc;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
