/* Unit tests for src/runner/csv.c: RFC 4180 writer and record counter. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/error.h"
#include "runner/csv.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Reads back everything written to a memfd. */
static char *slurp(int fd, size_t *len)
{
	off_t end = lseek(fd, 0, SEEK_END);
	char *p = malloc((size_t)end + 1);
	assert_non_null(p);
	assert_int_equal(pread(fd, p, (size_t)end, 0), end);
	p[end] = '\0';
	*len = (size_t)end;
	return p;
}

static int new_fd(void)
{
	int fd = memfd_create("csv", 0);
	assert_true(fd >= 0);
	return fd;
}

static void test_quoting_and_nulls(void **state)
{
	struct csv_writer w;
	int fd = new_fd();
	size_t len;
	char *out;

	(void)state;
	assert_int_equal(csv_writer_init(&w, fd, 0), AL_OK);
	assert_int_equal(csv_writer_text(&w, "plain", 5), AL_OK);
	assert_int_equal(csv_writer_text(&w, "a,b", 3), AL_OK);
	assert_int_equal(csv_writer_text(&w, "say \"hi\"", 8), AL_OK);
	assert_int_equal(csv_writer_text(&w, "cr\rlf\n", 6), AL_OK);
	assert_int_equal(csv_writer_null(&w), AL_OK);
	assert_int_equal(csv_writer_text(&w, "", 0), AL_OK);
	assert_int_equal(csv_writer_end_record(&w), AL_OK);
	assert_int_equal(csv_writer_null(&w), AL_OK);
	assert_int_equal(csv_writer_null(&w), AL_OK);
	assert_int_equal(csv_writer_end_record(&w), AL_OK);
	assert_int_equal(csv_writer_int64(&w, INT64_MIN), AL_OK);
	assert_int_equal(csv_writer_int64(&w, 0), AL_OK);
	assert_int_equal(csv_writer_int64(&w, -5), AL_OK);
	assert_int_equal(csv_writer_int64(&w, INT64_MAX), AL_OK);
	assert_int_equal(csv_writer_end_record(&w), AL_OK);
	assert_int_equal(csv_writer_flush(&w), AL_OK);
	out = slurp(fd, &len);
	assert_string_equal(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"cr\rlf\n\",,\"\"\r\n"
				 ",\r\n"
				 "-9223372036854775808,0,-5,9223372036854775807\r\n");
	assert_int_equal(w.written, len);
	free(out);
	csv_writer_free(&w);
	close(fd);
}

static void test_doubles(void **state)
{
	char b[32];
	(void)state;
	csv_format_double(0.1, b);
	assert_string_equal(b, "0.1");
	csv_format_double(0.1 + 0.2, b);
	assert_string_equal(b, "0.30000000000000004");
	csv_format_double(1.0, b);
	assert_string_equal(b, "1.0");
	csv_format_double(1e20, b);
	assert_string_equal(b, "1.0e+20");
	csv_format_double(2.5e-10, b);
	assert_string_equal(b, "2.5e-10");
	csv_format_double(-0.0, b);
	assert_string_equal(b, "-0.0");
	csv_format_double(3.141592653589793, b);
	assert_string_equal(b, "3.1415926535897931"); /* 16-digit values print 17 */
	csv_format_double(98.6, b);
	assert_string_equal(b, "98.6");
	csv_format_double(-0.00012, b);
	assert_string_equal(b, "-0.00012");
	csv_format_double(123456789012345.0, b);
	assert_string_equal(b, "123456789012345.0");
	csv_format_double(0.0, b);
	assert_string_equal(b, "0.0");
	csv_format_double(INFINITY, b);
	assert_string_equal(b, "Inf");
	csv_format_double(-INFINITY, b);
	assert_string_equal(b, "-Inf");
	csv_format_double(1.7976931348623157e308, b);
	assert_true(strtod(b, NULL) == 1.7976931348623157e308);
	csv_format_double(5e-324, b);
	assert_true(strtod(b, NULL) == 5e-324);
}

/* Every double reads back exactly; short ones print as %.15g does. */
static void test_doubles_roundtrip(void **state)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	char b[32], ref[40];
	(void)state;
	for (int i = 0; i < 200000; i++) {
		double v;
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(&v, &x, sizeof(v));
		if (isnan(v) || isinf(v))
			continue;
		csv_format_double(v, b);
		if (strtod(b, NULL) != v || (signbit(v) != 0) != (b[0] == '-'))
			fail_msg("%a printed as %s", v, b);
		/* a short decimal */
		v = (double)(int64_t)(x % 2000000001) / (double)(1 + x % 4 * 333);
		v = strtod((snprintf(ref, sizeof(ref), "%.*g", (int)(1 + x % 15), v), ref), NULL);
		csv_format_double(v, b);
		snprintf(ref, sizeof(ref), "%.15g", v);
		if (!strchr(ref, '.') && !strchr(ref, 'e'))
			memcpy(ref + strlen(ref), ".0", 3);
		if (!strchr(ref, 'e') && strcmp(b, ref))
			fail_msg("%.17g printed as %s, %%.15g gives %s", v, b, ref);
	}
}

static void test_utf8(void **state)
{
	static const char *good[] = { "Zo\xc3\xab", "\xe2\x82\xac", "\xf0\x9d\x84\x9e", "\xef\xbf\xbf", "" };
	static const struct {
		const char *s;
		size_t bad_at;
	} bad[] = {
		{ "a\xc3\x28", 1 },         /* bad continuation */
		{ "\xc0\xaf", 0 },          /* overlong '/' */
		{ "ok\xe0\x80\xaf", 2 },    /* overlong 3-byte */
		{ "\xed\xa0\x80", 0 },      /* surrogate */
		{ "\xf4\x90\x80\x80", 0 },  /* above U+10FFFF */
		{ "ab\xe2\x82", 2 },        /* truncated */
		{ "\xff", 0 },
	};
	struct csv_writer w;
	int fd = new_fd();

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(csv_utf8_valid_prefix(good[i], strlen(good[i])), strlen(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(csv_utf8_valid_prefix(bad[i].s, strlen(bad[i].s)), bad[i].bad_at);
	assert_int_equal(csv_writer_init(&w, fd, 0), AL_OK);
	assert_int_equal(csv_writer_text(&w, "x\xc3\x28", 3), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "not valid UTF-8 (byte 2 of 3)"));
	assert_int_equal(w.len, 0); /* nothing written for the refused field */
	csv_writer_free(&w);
	close(fd);
}

/* Large fields through a tiny buffer come out identical to a big buffer's. */
static void test_small_buffer_streaming(void **state)
{
	struct csv_writer a, b;
	int fa = new_fd(), fb = new_fd();
	size_t la, lb, n = 10000;
	char *big = malloc(n), *oa, *ob;
	unsigned char *blob = malloc(n);

	(void)state;
	assert_non_null(big);
	assert_non_null(blob);
	for (size_t i = 0; i < n; i++) {
		big[i] = "ab\",\n c"[i % 7];
		blob[i] = (unsigned char)(i * 7);
	}
	assert_int_equal(csv_writer_init(&a, fa, 64), AL_OK);
	assert_int_equal(csv_writer_init(&b, fb, 1 << 20), AL_OK);
	for (int round = 0; round < 3; round++) {
		struct csv_writer *w[2] = { &a, &b };
		for (int k = 0; k < 2; k++) {
			assert_int_equal(csv_writer_text(w[k], big, n), AL_OK);
			assert_int_equal(csv_writer_text(w[k], big + 1, 1), AL_OK);
			assert_int_equal(csv_writer_base64(w[k], blob, n - (size_t)round), AL_OK);
			assert_int_equal(csv_writer_double(w[k], 0.25), AL_OK);
			assert_int_equal(csv_writer_end_record(w[k]), AL_OK);
		}
	}
	assert_int_equal(csv_writer_flush(&a), AL_OK);
	assert_int_equal(csv_writer_flush(&b), AL_OK);
	oa = slurp(fa, &la);
	ob = slurp(fb, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(oa, ob, la);
	free(oa);
	free(ob);
	free(big);
	free(blob);
	csv_writer_free(&a);
	csv_writer_free(&b);
	close(fa);
	close(fb);
}

static void test_base64(void **state)
{
	struct csv_writer w;
	int fd = new_fd();
	size_t len;
	char *out;

	(void)state;
	assert_int_equal(csv_writer_init(&w, fd, 0), AL_OK);
	assert_int_equal(csv_writer_base64(&w, "\x00\xff", 2), AL_OK);
	assert_int_equal(csv_writer_base64(&w, "abc", 3), AL_OK);
	assert_int_equal(csv_writer_base64(&w, "", 0), AL_OK);
	assert_int_equal(csv_writer_base64(&w, "\xfb\xff", 2), AL_OK);
	assert_int_equal(csv_writer_end_record(&w), AL_OK);
	assert_int_equal(csv_writer_flush(&w), AL_OK);
	out = slurp(fd, &len);
	assert_string_equal(out, "AP8=,YWJj,\"\",+/8=\r\n"); /* an empty BLOB is "", not NULL */
	free(out);
	csv_writer_free(&w);
	close(fd);
}

static uint64_t count(const char *s, size_t n, size_t step, json_t **header)
{
	struct csv_counter c;
	uint64_t records = 0;
	assert_int_equal(csv_counter_init(&c), AL_OK);
	for (size_t i = 0; i < n; i += step)
		assert_int_equal(csv_counter_feed(&c, s + i, n - i < step ? n - i : step), AL_OK);
	assert_int_equal(csv_counter_finish(&c, &records, header), AL_OK);
	csv_counter_free(&c);
	return records;
}

static void test_counter(void **state)
{
	static const struct {
		const char *csv;
		uint64_t records;
	} cases[] = {
		{ "", 0 },
		{ "a,b\r\n", 1 },
		{ "a,b\r\n1,2\r\n", 2 },
		{ "a,b\n1,2\n3,4", 3 },                       /* LF and no final line end */
		{ "a,b\r1,2\r", 2 },                           /* lone CR */
		{ "a,b\r\n\"x\r\ny\",2\r\n", 2 },              /* quoted CRLF stays in the field */
		{ "a\r\n\"he said \"\"hi\"\"\n\"\r\n", 2 },    /* doubled quotes then newline inside */
		{ "a\r\n\"\",\"\"\r\n,\r\n", 3 },
		{ "a\r\n\"open\nquote never closed", 2 },      /* lenient at EOF */
		{ "h\r\n\r\n", 2 },                            /* a blank line is a record */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i].csv);
		for (size_t step = 1; step <= (n ? n : 1); step = step * 2 + 1) {
			uint64_t got = count(cases[i].csv, n, step, NULL);
			if (got != cases[i].records)
				fail_msg("case %zu step %zu: %llu records, want %llu", i, step,
					 (unsigned long long)got, (unsigned long long)cases[i].records);
		}
	}
}

static void test_counter_header(void **state)
{
	const char *csv = "id,\"full, name\",\"q\"\"uote\",\"multi\r\nline\",Zo\xc3\xab\r\n1,2,3,4,5\r\n";
	json_t *h = NULL;
	(void)state;
	for (size_t step = 1; step < 80; step += 7) {
		assert_int_equal(count(csv, strlen(csv), step, &h), 2);
		assert_non_null(h);
		assert_int_equal(json_array_size(h), 5);
		assert_string_equal(json_string_value(json_array_get(h, 0)), "id");
		assert_string_equal(json_string_value(json_array_get(h, 1)), "full, name");
		assert_string_equal(json_string_value(json_array_get(h, 2)), "q\"uote");
		assert_string_equal(json_string_value(json_array_get(h, 3)), "multi\r\nline");
		assert_string_equal(json_string_value(json_array_get(h, 4)), "Zo\xc3\xab");
		json_decref(h);
	}
	/* A header that is not UTF-8 gives no columns, but still counts. */
	assert_int_equal(count("a\xff,b\r\n1,2\r\n", 11, 4, &h), 2);
	assert_null(h);
	assert_int_equal(count("", 0, 1, &h), 0);
	assert_null(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quoting_and_nulls),
		cmocka_unit_test(test_doubles),
		cmocka_unit_test(test_doubles_roundtrip),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_small_buffer_streaming),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_counter),
		cmocka_unit_test(test_counter_header),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
