/* Unit tests for src/runner/source_https.c: url handling, digest headers,
 * ranges and the resume decisions (no network). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/error.h"
#include "runner/source_https.h"

#include <stdlib.h>
#include <string.h>

static void test_url_parse(void **state)
{
	struct source_https_url u;

	(void)state;
	assert_int_equal(source_https_url_parse("HTTPS://Files.example.org:8443/a/b/?sig=x&y=1#frag", 0, &u), AL_OK);
	assert_string_equal(u.scheme, "https");
	assert_string_equal(u.host, "Files.example.org");
	assert_int_equal(u.port, 8443);
	assert_string_equal(u.path, "/a/b/");
	assert_string_equal(u.query, "sig=x&y=1");
	source_https_url_free(&u);

	assert_int_equal(source_https_url_parse("https://h", 0, &u), AL_OK);
	assert_string_equal(u.path, "/");
	assert_null(u.query);
	assert_int_equal(u.port, 0);
	source_https_url_free(&u);

	assert_int_equal(source_https_url_parse("https://[::1]:99/x?", 0, &u), AL_OK);
	assert_string_equal(u.host, "[::1]");
	assert_int_equal(u.port, 99);
	assert_null(u.query);
	source_https_url_free(&u);

	assert_int_equal(source_https_url_parse("http://h/x", 0, &u), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "use https://"));
	assert_int_equal(source_https_url_parse("http://h/x", 1, &u), AL_OK);
	assert_string_equal(u.scheme, "http");
	source_https_url_free(&u);

	/* Credentials in the url are refused, and the url is never echoed. */
	assert_int_equal(source_https_url_parse("https://bob:hunter2@h/x", 0, &u), AL_ERR_INVALID);
	assert_null(strstr(al_error_message(), "hunter2"));
	assert_int_equal(source_https_url_parse("ftp://h/x", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_https_url_parse("https://h:0/", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_https_url_parse("https://h:70000/", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_https_url_parse("https://h:/", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_https_url_parse("https://h:8a/", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_https_url_parse("https:///x", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_https_url_parse("https://h/a b", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_https_url_parse("https://[::1/", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_https_url_parse("", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_https_url_parse(NULL, 0, &u), AL_ERR_INVALID);
}

static void object_url(const char *base, const char *object, const char *want_url, const char *want_display)
{
	struct source_https_url u;
	struct buf url, display;

	buf_init(&url, 0);
	buf_init(&display, 0);
	assert_int_equal(source_https_url_parse(base, 0, &u), AL_OK);
	assert_int_equal(source_https_url_object(&u, object, &url, &display), AL_OK);
	assert_string_equal(url.ptr, want_url);
	assert_string_equal(display.ptr, want_display);
	buf_free(&url);
	buf_free(&display);
	source_https_url_free(&u);
}

static void test_url_object(void **state)
{
	struct source_https_url u;
	struct buf url, display;

	(void)state;
	object_url("https://h/data/", "a.csv", "https://h/data/a.csv", "https://h/data/a.csv");
	/* The base path is a directory with or without its '/'. */
	object_url("https://h:8443/data", "sub/a b.csv", "https://h:8443/data/sub/a%20b.csv",
		   "https://h:8443/data/sub/a%20b.csv");
	/* A name is literal: '%', '?', '#' and UTF-8 are encoded. */
	object_url("https://h/", "100%?#é~", "https://h/100%25%3F%23%C3%A9~", "https://h/100%25%3F%23%C3%A9~");
	/* The base query (a pre-signed token) goes on every url, not in the display. */
	object_url("https://h/d/?sv=1&sig=abc", "f.bin", "https://h/d/f.bin?sv=1&sig=abc", "https://h/d/f.bin");

	assert_int_equal(source_https_url_parse("https://h/d/", 0, &u), AL_OK);
	buf_init(&url, 0);
	assert_int_equal(source_https_url_object(&u, "", &url, NULL), AL_ERR_INVALID);
	assert_int_equal(source_https_url_object(&u, "/etc/passwd", &url, NULL), AL_ERR_INVALID);
	assert_int_equal(source_https_url_object(&u, "a/../../b", &url, NULL), AL_ERR_INVALID);
	assert_int_equal(source_https_url_object(&u, "..", &url, NULL), AL_ERR_INVALID);
	assert_int_equal(source_https_url_object(&u, "a//b", &url, NULL), AL_ERR_INVALID);
	assert_int_equal(source_https_url_object(&u, "a/./b", &url, NULL), AL_ERR_INVALID);
	assert_int_equal(source_https_url_object(&u, "a/", &url, NULL), AL_ERR_INVALID);
	assert_int_equal(source_https_url_object(&u, "..x", &url, NULL), AL_OK); /* only whole segments */
	buf_free(&url);
	source_https_url_free(&u);

	buf_init(&display, 0);
	assert_int_equal(source_https_url_parse("https://u:1/p/x?q=secret", 0, &u), AL_OK);
	assert_int_equal(source_https_url_display(&u, &display), AL_OK);
	assert_string_equal(display.ptr, "https://u:1/p/x");
	buf_free(&display);
	source_https_url_free(&u);
}

/* sha256("hello") */
static const unsigned char HELLO[32] = { 0x2c, 0xf2, 0x4d, 0xba, 0x5f, 0xb0, 0xa3, 0x0e, 0x26, 0xe8, 0x3b,
					 0x2a, 0xc5, 0xb9, 0xe2, 0x9e, 0x1b, 0x16, 0x1e, 0x5c, 0x1f, 0xa7,
					 0x42, 0x5e, 0x73, 0x04, 0x33, 0x62, 0x93, 0x8b, 0x98, 0x24 };
#define HELLO_B64 "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="

static void test_digest_parse(void **state)
{
	unsigned char md[32];

	(void)state;
	memset(md, 0, sizeof(md));
	assert_int_equal(source_https_digest_parse("Repr-Digest", "sha-256=:" HELLO_B64 ":", md), 1);
	assert_memory_equal(md, HELLO, 32);
	memset(md, 0, sizeof(md));
	assert_int_equal(source_https_digest_parse("content-digest",
						   "sha-512=:AAAA:, sha-256=:" HELLO_B64 ":;p=1 , unixsum=:1:", md),
			 1);
	assert_memory_equal(md, HELLO, 32);
	memset(md, 0, sizeof(md));
	assert_int_equal(source_https_digest_parse("Digest", "MD5=Sp/ce3b0wkoe9L5YyEUZjQ==,SHA-256=" HELLO_B64, md), 1);
	assert_memory_equal(md, HELLO, 32);
	/* No sha-256: nothing to check. */
	assert_int_equal(source_https_digest_parse("Digest", "MD5=Sp/ce3b0wkoe9L5YyEUZjQ==", md), 0);
	assert_int_equal(source_https_digest_parse("Repr-Digest", "sha-512=:AAAA:", md), 0);
	assert_int_equal(source_https_digest_parse("ETag", "sha-256=:" HELLO_B64 ":", md), 0);
	assert_int_equal(source_https_digest_parse("Repr-Digest", "", md), 0);
	/* Malformed sha-256 values. */
	assert_int_equal(source_https_digest_parse("Repr-Digest", "sha-256=" HELLO_B64, md), AL_ERR_INVALID);
	assert_int_equal(source_https_digest_parse("Repr-Digest", "sha-256=:AAAA:", md), AL_ERR_INVALID);
	assert_int_equal(source_https_digest_parse("Digest", "SHA-256=:" HELLO_B64 ":", md), AL_ERR_INVALID);
	assert_int_equal(source_https_digest_parse("Repr-Digest", "sha-256=:", md), AL_ERR_INVALID);
	assert_int_equal(source_https_digest_parse("Digest", "SHA-256=!!!!", md), AL_ERR_INVALID);
}

static void test_base64(void **state)
{
	unsigned char out[8];

	(void)state;
	assert_int_equal(source_https_base64_decode("", 0, out, sizeof(out)), 0);
	assert_int_equal(source_https_base64_decode("YQ==", 4, out, sizeof(out)), 1);
	assert_int_equal(out[0], 'a');
	assert_int_equal(source_https_base64_decode("YQ", 2, out, sizeof(out)), 1);
	assert_int_equal(source_https_base64_decode("YWI=", 4, out, sizeof(out)), 2);
	assert_int_equal(source_https_base64_decode("YWJj", 4, out, sizeof(out)), 3);
	assert_memory_equal(out, "abc", 3);
	assert_int_equal(source_https_base64_decode("+/8=", 4, out, sizeof(out)), 2);
	assert_int_equal(out[0], 0xfb);
	assert_int_equal(out[1], 0xff);
	assert_int_equal(source_https_base64_decode("YR==", 4, out, sizeof(out)), AL_ERR_INVALID); /* stray bits */
	assert_int_equal(source_https_base64_decode("Y===", 4, out, sizeof(out)), AL_ERR_INVALID);
	assert_int_equal(source_https_base64_decode("YQ=a", 4, out, sizeof(out)), AL_ERR_INVALID);
	assert_int_equal(source_https_base64_decode("YWJj=", 5, out, sizeof(out)), AL_ERR_INVALID);
	assert_int_equal(source_https_base64_decode("YW-j", 4, out, sizeof(out)), AL_ERR_INVALID);
	assert_int_equal(source_https_base64_decode("YWJjZGVmZ2hp", 12, out, sizeof(out)), AL_ERR_INVALID); /* 9 > 8 */
}

static void test_content_range(void **state)
{
	uint64_t a, b, t;

	(void)state;
	assert_int_equal(source_https_content_range("bytes 100-199/200", &a, &b, &t), AL_OK);
	assert_true(a == 100 && b == 199 && t == 200);
	assert_int_equal(source_https_content_range(" Bytes  0-0/*  ", &a, &b, &t), AL_OK);
	assert_true(a == 0 && b == 0 && t == 0);
	assert_int_equal(source_https_content_range("bytes */200", &a, &b, &t), AL_ERR_INVALID);
	assert_int_equal(source_https_content_range("bytes 5-4/200", &a, &b, &t), AL_ERR_INVALID);
	assert_int_equal(source_https_content_range("bytes 0-199/199", &a, &b, &t), AL_ERR_INVALID);
	assert_int_equal(source_https_content_range("items 0-1/2", &a, &b, &t), AL_ERR_INVALID);
	assert_int_equal(source_https_content_range("bytes 0-1/2x", &a, &b, &t), AL_ERR_INVALID);
	assert_int_equal(source_https_content_range("bytes 99999999999999999999-1/2", &a, &b, &t), AL_ERR_INVALID);
}

static void test_body_plan(void **state)
{
	uint64_t total = 7;

	(void)state;
	assert_int_equal(source_https_body_plan(200, 0, NULL, &total), SOURCE_HTTPS_BODY_FRESH);
	/* A 200 to a range request: the file changed or ranges are not served. */
	assert_int_equal(source_https_body_plan(200, 500, NULL, &total), SOURCE_HTTPS_BODY_FRESH);
	assert_int_equal(source_https_body_plan(206, 500, "bytes 500-999/1000", &total), SOURCE_HTTPS_BODY_APPEND);
	assert_true(total == 1000);
	total = 7;
	assert_int_equal(source_https_body_plan(206, 500, "bytes 500-999/*", &total), SOURCE_HTTPS_BODY_APPEND);
	assert_true(total == 7);
	assert_int_equal(source_https_body_plan(206, 500, "bytes 400-999/1000", &total), SOURCE_HTTPS_BODY_RESTART);
	assert_int_equal(source_https_body_plan(206, 500, "bytes 500-599/1000", &total), SOURCE_HTTPS_BODY_RESTART);
	assert_int_equal(source_https_body_plan(206, 500, NULL, &total), SOURCE_HTTPS_BODY_RESTART);
	assert_int_equal(source_https_body_plan(206, 0, "bytes 0-9/10", &total), SOURCE_HTTPS_BODY_RESTART);
	assert_int_equal(source_https_body_plan(416, 500, NULL, &total), SOURCE_HTTPS_BODY_RESTART);
	assert_int_equal(source_https_body_plan(404, 0, NULL, &total), SOURCE_HTTPS_BODY_REFUSE);
	assert_int_equal(source_https_body_plan(401, 500, NULL, &total), SOURCE_HTTPS_BODY_REFUSE);
}

static void test_meta_and_resume(void **state)
{
	struct source_https_meta m = { .etag = "\"abc\"", .last_modified = "Tue, 14 Nov 2023 22:13:20 GMT",
				       .size = 1000, .ranges = 1 };
	struct source_https_meta back;
	char url[65], other[65];
	char *json = NULL;

	(void)state;
	memset(url, 'a', 64);
	url[64] = '\0';
	memset(other, 'b', 64);
	other[64] = '\0';
	memcpy(m.url_sha256, url, 65);
	assert_int_equal(source_https_meta_format(&m, &json), AL_OK);
	assert_int_equal(source_https_meta_parse(json, strlen(json), &back), AL_OK);
	free(json);
	assert_string_equal(back.url_sha256, url);
	assert_string_equal(back.etag, "\"abc\"");
	assert_string_equal(back.last_modified, m.last_modified);
	assert_true(back.size == 1000 && back.ranges == 1);

	assert_string_equal(source_https_resume_validator(&back, url, 400), "\"abc\"");
	assert_null(source_https_resume_validator(&back, other, 400));  /* another url */
	assert_null(source_https_resume_validator(&back, url, 0));      /* nothing kept */
	assert_null(source_https_resume_validator(&back, url, 1000));   /* all there but never verified */
	assert_null(source_https_resume_validator(&back, url, 1001));
	assert_null(source_https_resume_validator(NULL, url, 10));
	back.size = 0; /* size unknown: any prefix */
	assert_string_equal(source_https_resume_validator(&back, url, 5000), "\"abc\"");
	/* A weak ETag cannot go in If-Range: fall back on Last-Modified ... */
	free(back.etag);
	back.etag = strdup("W/\"abc\"");
	assert_string_equal(source_https_resume_validator(&back, url, 10), m.last_modified);
	/* ... and without one, start again. */
	free(back.last_modified);
	back.last_modified = NULL;
	assert_null(source_https_resume_validator(&back, url, 10));
	back.ranges = 0;
	free(back.etag);
	back.etag = strdup("\"x\"");
	assert_null(source_https_resume_validator(&back, url, 10)); /* server serves no ranges */
	source_https_meta_free(&back);

	assert_int_equal(source_https_meta_parse("{", 1, &back), AL_ERR_INVALID);
	assert_int_equal(source_https_meta_parse("{\"version\":2}", 13, &back), AL_ERR_INVALID);
	json = "{\"version\":1,\"url\":\"short\",\"size\":1}";
	assert_int_equal(source_https_meta_parse(json, strlen(json), &back), AL_ERR_INVALID);
	json = NULL;
	/* No validators at all: parses, but cannot resume. */
	m.etag = m.last_modified = NULL;
	assert_int_equal(source_https_meta_format(&m, &json), AL_OK);
	assert_int_equal(source_https_meta_parse(json, strlen(json), &back), AL_OK);
	free(json);
	assert_null(back.etag);
	assert_null(source_https_resume_validator(&back, url, 10));
	source_https_meta_free(&back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_parse),     cmocka_unit_test(test_url_object),
		cmocka_unit_test(test_digest_parse),  cmocka_unit_test(test_base64),
		cmocka_unit_test(test_content_range), cmocka_unit_test(test_body_plan),
		cmocka_unit_test(test_meta_and_resume),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
