/*
 * The upload's lock is released before the answer to a PATCH is sent
 * (issue 6): a client that sends its next PATCH the moment the 204 arrives
 * never finds the upload locked (423).
 *
 * The server calls on_close only after the client has the answer. Here the
 * tus engine's on_close is delayed on purpose (CLOSE_DELAY_MS), which makes
 * the race of the old code (locks released in on_close) certain instead of
 * rare: every PATCH on a fresh connection would then answer 423.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "uploader/tus.h"
#include "web/http_server.h"

#define CLOSE_DELAY_MS 150
#define PIECE 100
#define PIECES 12

static char dir[256];

static enum tus_route_result route(void *ud, const struct http_request *req, struct http_response *resp,
				   struct tus_route *out)
{
	(void)ud;
	memset(out, 0, sizeof(*out));
	if (strncmp(req->path, "/up", 3))
		return TUS_ROUTE_PASS;
	out->base = util_strdup("/up");
	out->dir = util_strdup(dir);
	out->user = util_strdup("rita");
	if (!out->base || !out->dir || !out->user) {
		http_response_error(resp, AL_ERR_NOMEM, "out of memory");
		return TUS_ROUTE_ANSWERED;
	}
	out->writable = 1;
	out->may_complete = 1;
	return TUS_ROUTE_OK;
}

static const struct tus_host host = { .route = route, .completed = NULL, .route_free = NULL };

/* The engine's ops, with on_close late. */
static void slow_close(void *ctx)
{
	usleep(CLOSE_DELAY_MS * 1000);
	tus_stream_ops()->on_close(ctx);
}

static struct http_stream_ops slow_ops;

static void not_found(void *ud, const struct http_request *req, struct http_response *resp)
{
	(void)ud;
	(void)req;
	http_response_error(resp, AL_ERR_NOT_FOUND, "no such route");
}

static size_t to_buf(char *p, size_t size, size_t n, void *ud)
{
	buf_append(ud, p, size * n);
	return size * n;
}

/* One tus request with the extra headers `extra` (NULL-terminated; may be
 * NULL); returns the status, the answer's headers in *hdrs. fresh: a new
 * connection, closed after the answer. */
static long tus_req(CURL *h, unsigned short port, const char *method, const char *path, const char *const *extra,
		    const char *body, size_t len, int fresh, struct buf *hdrs)
{
	char url[256];
	struct curl_slist *hl = NULL;
	struct buf sink;
	long status = 0;

	buf_init(&sink, 1 << 16);
	buf_reset(hdrs);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	hl = curl_slist_append(hl, "Tus-Resumable: 1.0.0");
	hl = curl_slist_append(hl, "Expect:");
	for (size_t i = 0; extra && extra[i]; i++)
		hl = curl_slist_append(hl, extra[i]);
	if (body) {
		hl = curl_slist_append(hl, "Content-Type: application/offset+octet-stream");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
	}
	assert_non_null(hl);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, fresh ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_FORBID_REUSE, fresh ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, to_buf);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, to_buf);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, hdrs);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hl);
	buf_free(&sink);
	return status;
}

/* The value of header `name` ("Location: ") in a header block, new string. */
static char *header(const struct buf *hdrs, const char *name)
{
	const char *p = strcasestr(buf_cstr(hdrs), name), *end;
	char *v;
	assert_non_null(p);
	p += strlen(name);
	end = strstr(p, "\r\n");
	v = strndup(p, end ? (size_t)(end - p) : strlen(p));
	assert_non_null(v);
	return v;
}

/* PIECES PATCHes of one upload, each sent the moment the previous 204
 * arrived; every one must be 204. */
static void back_to_back(unsigned short port, int fresh, const char *b64name, const char *file)
{
	CURL *h = curl_easy_init();
	struct buf hdrs;
	char body[PIECE * PIECES], len_h[64], meta_h[128], off_h[64], *loc, *path, *off, *got;
	const char *create[] = { len_h, meta_h, NULL };
	const char *patch[] = { off_h, NULL };
	size_t got_len = 0;

	assert_non_null(h);
	buf_init(&hdrs, 1 << 16);
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (char)('a' + i % 26);
	snprintf(len_h, sizeof(len_h), "Upload-Length: %zu", sizeof(body));
	snprintf(meta_h, sizeof(meta_h), "Upload-Metadata: filename %s", b64name);
	assert_int_equal(tus_req(h, port, "POST", "/up", create, NULL, 0, fresh, &hdrs), 201);
	loc = header(&hdrs, "Location: ");
	path = strstr(loc, "/up/");
	assert_non_null(path);
	for (int i = 0; i < PIECES; i++) {
		long st;
		snprintf(off_h, sizeof(off_h), "Upload-Offset: %d", i * PIECE);
		st = tus_req(h, port, "PATCH", path, patch, body + i * PIECE, PIECE, fresh, &hdrs);
		if (st != 204)
			fail_msg("PATCH %d of %d (%s) answered %ld, not 204", i + 1, PIECES,
				 fresh ? "fresh connections" : "one connection", st);
		off = header(&hdrs, "Upload-Offset: ");
		assert_int_equal(atoi(off), (i + 1) * PIECE);
		free(off);
	}
	{
		char full[512];
		snprintf(full, sizeof(full), "%s/%s", dir, file);
		assert_int_equal(util_read_file(full, 1 << 20, &got, &got_len), AL_OK);
		assert_int_equal(got_len, sizeof(body));
		assert_memory_equal(got, body, sizeof(body));
		free(got);
	}
	free(loc);
	buf_free(&hdrs);
	curl_easy_cleanup(h);
}

static void test_patch_after_204_is_never_locked(void **state)
{
	struct tus_limits lim = { .max_file_bytes = 1 << 20, .quota_bytes = 1 << 24, .max_files = 100,
				  .expire_seconds = 3600 };
	struct tus *t = NULL;
	struct http_server *srv = NULL;
	unsigned short port;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/airlock-tus-lock-XXXXXX");
	assert_non_null(mkdtemp(dir));
	slow_ops = *tus_stream_ops();
	slow_ops.on_close = slow_close;
	assert_int_equal(tus_new(&t, &lim, &host, NULL), AL_OK);
	assert_int_equal(http_server_start_stream(&srv, "127.0.0.1", 0, 0, not_found, NULL, &slow_ops, t), AL_OK);
	port = http_server_port(srv);

	back_to_back(port, 1, "b25lLmJpbg==", "one.bin"); /* one.bin */
	back_to_back(port, 0, "dHdvLmJpbg==", "two.bin"); /* two.bin */

	http_server_stop(srv);
	tus_free(t);
	assert_int_equal(util_remove_tree(dir), AL_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_patch_after_204_is_never_locked),
	};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
