/* Unit tests for src/common: the error convention, bounded buffers and util. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/dynlib.h"
#include "common/error.h"
#include "common/util.h"

static void test_error_set_and_wrap(void **state)
{
	(void)state;
	al_error_clear();
	assert_string_equal(al_error_message(), "");
	assert_int_equal(al_error_set(AL_ERR_INVALID, "spec.%s: bad", "type"), AL_ERR_INVALID);
	assert_string_equal(al_error_message(), "spec.type: bad");
	assert_int_equal(al_error_wrap(AL_ERR_INVALID, "file %d", 3), AL_ERR_INVALID);
	assert_string_equal(al_error_message(), "file 3: spec.type: bad");
	assert_string_equal(al_error_name(AL_ERR_NOT_FOUND), "not_found");
	assert_int_equal(al_error_http_status(AL_ERR_NOT_FOUND), 404);
	assert_int_equal(al_error_http_status(AL_ERR_CONFLICT), 409);
	assert_int_equal(al_error_http_status(AL_ERR_UNAUTHORIZED), 401);
	assert_int_equal(al_error_http_status(AL_ERR_TOO_LARGE), 413);
	assert_int_equal(al_error_http_status(-999), 500);
}

static void test_error_message_is_bounded(void **state)
{
	char *big = malloc(5000);
	(void)state;
	memset(big, 'x', 4999);
	big[4999] = '\0';
	al_error_set(AL_ERR_INVALID, "%s", big);
	assert_int_equal(strlen(al_error_message()), AL_ERROR_MSG_MAX - 1);
	al_error_wrap(AL_ERR_INVALID, "prefix");
	assert_true(strlen(al_error_message()) < AL_ERROR_MSG_MAX);
	assert_memory_equal(al_error_message(), "prefix: ", 8);
	free(big);
}

static void test_buf_growth_and_cap(void **state)
{
	struct buf b;
	char *s;
	(void)state;
	buf_init(&b, 16);
	assert_string_equal(buf_cstr(&b), "");
	assert_int_equal(buf_appends(&b, "hello"), AL_OK);
	assert_int_equal(buf_appendf(&b, " %d", 42), AL_OK);
	assert_string_equal(buf_cstr(&b), "hello 42");
	assert_int_equal(buf_appends(&b, "0123456789"), AL_ERR_TOO_LARGE);
	assert_string_equal(buf_cstr(&b), "hello 42"); /* unchanged by the refused append */
	assert_int_equal(buf_appendc(&b, '!'), AL_OK);
	assert_int_equal(b.len, 9);
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(buf_cstr(&b), "");
	buf_appends(&b, "x");
	s = buf_detach(&b);
	assert_string_equal(s, "x");
	assert_null(b.ptr);
	free(s);
	s = buf_detach(&b); /* an empty buffer detaches to "" */
	assert_string_equal(s, "");
	free(s);
	buf_free(&b);
}

static void test_time_round_trip(void **state)
{
	char now[UTIL_TIME_LEN], secs[UTIL_TIME_LEN];
	int64_t t = 0;
	(void)state;
	util_now_rfc3339(now);
	util_now_rfc3339_seconds(secs);
	assert_int_equal(strlen(now), 24);
	assert_int_equal(strlen(secs), 20);
	assert_int_equal(util_parse_rfc3339(now, &t), AL_OK);
	assert_int_equal(util_parse_rfc3339("2026-01-31T12:00:00Z", &t), AL_OK);
	assert_int_equal(t, 1769860800);
	assert_int_equal(util_parse_rfc3339("2026-01-31T13:00:00+01:00", &t), AL_OK);
	assert_int_equal(t, 1769860800);
	assert_int_equal(util_parse_rfc3339("2026-01-31T12:00:00", &t), AL_ERR_INVALID);
	assert_int_equal(util_parse_rfc3339("yesterday", &t), AL_ERR_INVALID);
	assert_int_equal(util_parse_rfc3339("2026-01-31T12:00:00Zjunk", &t), AL_ERR_INVALID);
}

static void test_hashing_and_random(void **state)
{
	char hex[UTIL_SHA256_HEX_LEN + 1], fhex[UTIL_SHA256_HEX_LEN + 1];
	char dir[] = "/tmp/airlock-common-XXXXXX";
	char *path, *r1, *r2, *uuid;
	uint64_t size = 0;
	FILE *f;
	(void)state;
	util_sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_non_null(mkdtemp(dir));
	path = util_path_join(dir, "f");
	f = fopen(path, "w");
	fputs("abc", f);
	fclose(f);
	assert_int_equal(util_sha256_file(path, fhex, &size), AL_OK);
	assert_string_equal(fhex, hex);
	assert_int_equal(size, 3);
	assert_int_equal(util_sha256_file("/nonexistent/x", fhex, &size), AL_ERR_IO);
	r1 = util_random_hex(16);
	r2 = util_random_hex(16);
	assert_int_equal(strlen(r1), 32);
	assert_string_not_equal(r1, r2);
	uuid = util_uuid4();
	assert_int_equal(strlen(uuid), 36);
	assert_int_equal(uuid[14], '4');
	free(r1);
	free(r2);
	free(uuid);
	free(path);
	assert_int_equal(util_remove_tree(dir), AL_OK);
}

static void test_files(void **state)
{
	char dir[] = "/tmp/airlock-common-XXXXXX";
	char *path, *nested, *data = NULL;
	size_t len = 0;
	struct stat st;
	(void)state;
	assert_non_null(mkdtemp(dir));
	nested = util_path_join(dir, "a/b/c");
	assert_int_equal(util_mkdir_p(nested, 0700), AL_OK);
	assert_int_equal(util_mkdir_p(nested, 0700), AL_OK);
	assert_true(util_path_exists(nested));
	path = util_path_join(dir, "a/secret.json");
	assert_int_equal(util_write_file_atomic(path, "{\"k\":1}", 7, 0600), AL_OK);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(util_write_file_atomic(path, "new", 3, 0600), AL_OK);
	assert_int_equal(util_read_file(path, 100, &data, &len), AL_OK);
	assert_string_equal(data, "new");
	assert_int_equal(len, 3);
	free(data);
	assert_int_equal(util_read_file(path, 2, &data, &len), AL_ERR_TOO_LARGE);
	assert_null(data);
	assert_int_equal(util_read_file("/nonexistent", 2, &data, &len), AL_ERR_NOT_FOUND);
	{
		char *joined = util_path_join("/x//", "/y");
		assert_string_equal(joined, "/x/y");
		free(joined);
	}
	assert_int_equal(util_remove_tree("/"), AL_ERR_INVALID);
	assert_int_equal(util_remove_tree(""), AL_ERR_INVALID);
	assert_int_equal(util_remove_tree(dir), AL_OK);
	assert_false(util_path_exists(dir));
	assert_int_equal(util_remove_tree(dir), AL_OK); /* already gone */
	free(nested);
	free(path);
}

static void test_percent_decode(void **state)
{
	char *out = NULL;
	size_t n = 0;
	(void)state;

	assert_int_equal(util_percent_decode("a%2Fb%20c+d", 11, 0, &out, &n), AL_OK);
	assert_string_equal(out, "a/b c+d");
	assert_int_equal(n, 7);
	free(out);
	assert_int_equal(util_percent_decode("a+b%2bc", 7, UTIL_PCT_PLUS, &out, NULL), AL_OK);
	assert_string_equal(out, "a b+c");
	free(out);
	/* Only the n bytes given; an empty input is an empty string. */
	assert_int_equal(util_percent_decode("ab%41", 2, 0, &out, &n), AL_OK);
	assert_string_equal(out, "ab");
	free(out);
	assert_int_equal(util_percent_decode("", 0, 0, &out, &n), AL_OK);
	assert_string_equal(out, "");
	assert_int_equal(n, 0);
	free(out);
	/* Refused, with nothing to free: short, non-hex and NUL escapes. */
	const char *bad[] = { "%", "%4", "a%4", "%g1", "%1g", "%00", "x%00y" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		out = (char *)1;
		assert_int_equal(util_percent_decode(bad[i], strlen(bad[i]), 0, &out, NULL), AL_ERR_INVALID);
		assert_null(out);
	}
}

struct libc_table {
	size_t (*strlen_fn)(const char *s);
	int (*abs_fn)(int j);
};

static void test_dynlib(void **state)
{
	static const struct dynlib_symbol good[] = {
		DYNLIB_SYMBOL(struct libc_table, strlen_fn, "strlen"),
		DYNLIB_SYMBOL(struct libc_table, abs_fn, "abs"),
	};
	static const struct dynlib_symbol bad[] = {
		DYNLIB_SYMBOL(struct libc_table, strlen_fn, "strlen"),
		DYNLIB_SYMBOL(struct libc_table, abs_fn, "no_such_function_here"),
	};
	struct libc_table t = { 0 };
	char why[256] = "";
	int (*atoi_fn)(const char *) = NULL;
	void *h;
	(void)state;

	h = dynlib_open("libc.so.6", "libc", good, 2, &t, why, sizeof(why));
	assert_non_null(h);
	assert_int_equal(t.strlen_fn("four"), 4);
	assert_int_equal(t.abs_fn(-3), 3);
	assert_int_equal(dynlib_function(h, "libc", "atoi", &atoi_fn, why, sizeof(why)), 0);
	assert_int_equal(atoi_fn("42"), 42);
	assert_int_equal(dynlib_function(h, "libc", "nope_nope", &atoi_fn, why, sizeof(why)), -1);
	assert_string_equal(why, "libc lacks nope_nope");

	assert_null(dynlib_open("libc.so.6", "libc", bad, 2, &t, why, sizeof(why)));
	assert_string_equal(why, "libc lacks no_such_function_here");

	/* The loader's own message, which names the file. */
	assert_null(dynlib_open("libairlock-missing.so.9", "libmissing", good, 2, &t, why, sizeof(why)));
	assert_non_null(strstr(why, "libairlock-missing.so.9"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_set_and_wrap),
		cmocka_unit_test(test_error_message_is_bounded),
		cmocka_unit_test(test_buf_growth_and_cap),
		cmocka_unit_test(test_time_round_trip),
		cmocka_unit_test(test_hashing_and_random),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_dynlib),
		cmocka_unit_test(test_percent_decode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
