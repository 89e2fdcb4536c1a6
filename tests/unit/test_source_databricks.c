/* Unit tests for src/runner/source_databricks.c: url forms, table-name
 * quoting, error mapping and the streaming JSON_ARRAY -> CSV reader (no
 * network). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/error.h"
#include "runner/csv.h"
#include "runner/source_databricks.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void test_url_forms(void **state)
{
	struct source_databricks_url u;

	(void)state;
	assert_int_equal(source_databricks_url_parse("https://adb-1.2.azuredatabricks.net/sql/1.0/warehouses/abc123", 0,
						     &u), AL_OK);
	assert_string_equal(u.origin, "https://adb-1.2.azuredatabricks.net");
	assert_string_equal(u.host, "adb-1.2.azuredatabricks.net");
	assert_string_equal(u.warehouse, "abc123");
	assert_null(u.catalog);
	assert_null(u.schema);
	source_databricks_url_free(&u);

	assert_int_equal(source_databricks_url_parse("https://h:8443/sql/1.0/endpoints/e-1_x/", 0, &u), AL_OK);
	assert_string_equal(u.origin, "https://h:8443");
	assert_int_equal(u.port, 8443);
	assert_string_equal(u.warehouse, "e-1_x");
	source_databricks_url_free(&u);

	/* The seed's form, with the warehouse as a query parameter. */
	assert_int_equal(source_databricks_url_parse("https://h/path/to/datasource.location?x=1&warehouse_id=w1"
						     "&catalog=my%20cat&schema=a+b",
						     0, &u),
			 AL_OK);
	assert_string_equal(u.warehouse, "w1");
	assert_string_equal(u.catalog, "my cat");
	assert_string_equal(u.schema, "a b");
	source_databricks_url_free(&u);

	assert_int_equal(source_databricks_url_parse("https://h/sql/1.0/warehouses/w1?warehouse_id=w1", 0, &u), AL_OK);
	source_databricks_url_free(&u);
	assert_int_equal(source_databricks_url_parse("https://h/sql/1.0/warehouses/w1?warehouse_id=w2", 0, &u),
			 AL_ERR_INVALID);
	assert_int_equal(source_databricks_url_parse("https://h/path/to/datasource.location", 0, &u), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "names no SQL warehouse"));
	assert_non_null(strstr(al_error_message(), "https://h/sql/1.0/warehouses/<id>"));
	assert_int_equal(source_databricks_url_parse("https://h/?warehouse_id=a/../b", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_databricks_url_parse("https://h/?warehouse_id=", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_databricks_url_parse("https://h/?warehouse_id=w&schema=", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_databricks_url_parse("http://h/?warehouse_id=w", 0, &u), AL_ERR_INVALID);
	assert_int_equal(source_databricks_url_parse("https://tok:secret@h/?warehouse_id=w", 0, &u), AL_ERR_INVALID);
	assert_null(strstr(al_error_message(), "secret"));
}

static void quoted(const char *name, const char *want)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(source_databricks_quote_table(name, &b), AL_OK);
	assert_string_equal(b.ptr, want);
	buf_free(&b);
}

static void test_quote_and_show(void **state)
{
	struct buf b;

	(void)state;
	quoted("patients", "`patients`");
	quoted("gold.gm.patients", "`gold`.`gm`.`patients`");
	quoted("gm.pa`ti``ents", "`gm`.`pa``ti````ents`");
	quoted("x; DROP TABLE y", "`x; DROP TABLE y`");
	buf_init(&b, 0);
	assert_int_equal(source_databricks_quote_table("a..b", &b), AL_ERR_INVALID);
	assert_int_equal(source_databricks_quote_table("a.b.c.d", &b), AL_ERR_INVALID);
	assert_int_equal(source_databricks_quote_table(".a", &b), AL_ERR_INVALID);
	assert_int_equal(source_databricks_quote_table("a.", &b), AL_ERR_INVALID);
	assert_int_equal(source_databricks_quote_table("", &b), AL_ERR_INVALID);
	buf_reset(&b);
	assert_int_equal(source_databricks_show_tables("t", &b), AL_OK);
	assert_string_equal(b.ptr, "SHOW TABLES");
	buf_reset(&b);
	assert_int_equal(source_databricks_show_tables("s.t", &b), AL_OK);
	assert_string_equal(b.ptr, "SHOW TABLES IN `s`");
	buf_reset(&b);
	assert_int_equal(source_databricks_show_tables("c.s`x.t", &b), AL_OK);
	assert_string_equal(b.ptr, "SHOW TABLES IN `c`.`s``x`");
	buf_free(&b);
}

static void test_uuid_and_errors(void **state)
{
	(void)state;
	assert_true(source_databricks_is_uuid("6f1d6a3e-9a8b-4c2d-8e7f-0a1b2c3d4e5f"));
	assert_true(source_databricks_is_uuid("6F1D6A3E-9A8B-4C2D-8E7F-0A1B2C3D4E5F"));
	assert_false(source_databricks_is_uuid("6f1d6a3e-9a8b-4c2d-8e7f-0a1b2c3d4e5"));
	assert_false(source_databricks_is_uuid("6f1d6a3e-9a8b-4c2d-8e7f-0a1b2c3d4e5f0"));
	assert_false(source_databricks_is_uuid("6f1d6a3e9a8b-4c2d-8e7f-0a1b2c3d4e5f"));
	assert_false(source_databricks_is_uuid("engineer@example.org"));
	assert_false(source_databricks_is_uuid(""));
	assert_false(source_databricks_is_uuid(NULL));

	assert_int_equal(source_databricks_error_code("BAD_REQUEST", "[TABLE_OR_VIEW_NOT_FOUND] The table", "42P01"),
			 AL_ERR_NOT_FOUND);
	assert_int_equal(source_databricks_error_code(NULL, NULL, "42P01"), AL_ERR_NOT_FOUND);
	assert_int_equal(source_databricks_error_code("BAD_REQUEST", "[SCHEMA_NOT_FOUND] x", NULL), AL_ERR_NOT_FOUND);
	assert_int_equal(source_databricks_error_code("RESOURCE_DOES_NOT_EXIST", "Warehouse x", NULL),
			 AL_ERR_NOT_FOUND);
	assert_int_equal(source_databricks_error_code("PERMISSION_DENIED", "nope", NULL), AL_ERR_FORBIDDEN);
	assert_int_equal(source_databricks_error_code("BAD_REQUEST", "[INSUFFICIENT_PERMISSIONS] x", NULL),
			 AL_ERR_FORBIDDEN);
	assert_int_equal(source_databricks_error_code(NULL, NULL, "42501"), AL_ERR_FORBIDDEN);
	assert_int_equal(source_databricks_error_code("TEMPORARILY_UNAVAILABLE", "x", NULL), AL_ERR_UNAVAILABLE);
	assert_int_equal(source_databricks_error_code("BAD_REQUEST", "[DIVIDE_BY_ZERO] x", "22012"), AL_ERR_IO);
	assert_int_equal(source_databricks_error_code(NULL, NULL, NULL), AL_ERR_IO);
}

/* ---- the reader ---------------------------------------------------------- */

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

/* Feeds json (as one document) `step` bytes at a time (0 = all at once);
 * returns the first error, and the CSV written in *csv. */
static int convert(const char *json, size_t ncols, size_t step, size_t field_max, char **csv, uint64_t *rows)
{
	struct csv_writer w;
	struct source_databricks_rows r;
	size_t n = strlen(json), len;
	int fd = memfd_create("rows", 0), rc = AL_OK;

	assert_true(fd >= 0);
	assert_int_equal(csv_writer_init(&w, fd, 64), AL_OK); /* tiny buffer: exercises flushing */
	source_databricks_rows_init(&r, &w, ncols, field_max);
	for (size_t i = 0; !rc && i < n; i += step ? step : n)
		rc = source_databricks_rows_feed(&r, json + i, step && n - i > step ? step : n - i);
	if (!rc)
		rc = source_databricks_rows_finish(&r);
	assert_int_equal(csv_writer_flush(&w), AL_OK);
	*csv = slurp(fd, &len);
	if (rows)
		*rows = r.rows;
	source_databricks_rows_free(&r);
	csv_writer_free(&w);
	close(fd);
	return rc;
}

static void converts(const char *json, size_t ncols, const char *want, uint64_t want_rows)
{
	/* The result must not depend on how the bytes are split. */
	static const size_t steps[] = { 0, 1, 2, 3, 7 };
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		char *csv;
		uint64_t rows;
		assert_int_equal(convert(json, ncols, steps[k], 0, &csv, &rows), AL_OK);
		assert_string_equal(csv, want);
		assert_true(rows == want_rows);
		free(csv);
	}
}

static int fails(const char *json, size_t ncols, size_t field_max, const char *needle)
{
	char *csv;
	int rc = convert(json, ncols, 1, field_max, &csv, NULL);
	free(csv);
	assert_true(rc < 0);
	if (needle && !strstr(al_error_message(), needle))
		fail_msg("message '%s' lacks '%s'", al_error_message(), needle);
	return rc;
}

static void test_rows_values(void **state)
{
	(void)state;
	converts("[]", 2, "", 0);
	converts(" [ ] ", 2, "", 0);
	converts("[[\"1\",\"a\"],[\"2\",null]]", 2, "1,a\r\n2,\r\n", 2);
	/* Empty string vs NULL, quoting, escapes. */
	converts("[[\"\", null, \"a,b\", \"say \\\"hi\\\"\", \"l1\\r\\nl2\\nl3\", \"t\\tb\\\\s\\/\"]]", 6,
		 "\"\",,\"a,b\",\"say \"\"hi\"\"\",\"l1\r\nl2\nl3\",t\tb\\s/\r\n", 1);
	/* \u escapes: BMP, a surrogate pair (U+1F600), and raw UTF-8. */
	converts("[[\"Zo\\u00eb \\u20ac \\ud83d\\ude00\", \"caf\xc3\xa9 \xe4\xb8\xad\"]]", 2,
		 "Zo\xc3\xab \xe2\x82\xac \xf0\x9f\x98\x80,caf\xc3\xa9 \xe4\xb8\xad\r\n", 1);
	converts("[[\"\\u0041\\u00C9\"]]", 1, "A\xc3\x89\r\n", 1);
	/* Bare literals (JSON allows them; Databricks sends strings). */
	converts("[[1, -2.5e+3, true, false, null, 0]]", 6, "1,-2.5e+3,true,false,,0\r\n", 1);
	converts("\n[\n [ \"x\" ] ,\r\n [\"y\"]\n]\n", 1, "x\r\ny\r\n", 2);
}

static void test_rows_errors(void **state)
{
	(void)state;
	assert_int_equal(fails("[[\"1\",\"2\",\"3\"]]", 2, 0, "more values"), AL_ERR_IO);
	assert_int_equal(fails("[[\"1\"]]", 2, 0, "fewer values"), AL_ERR_IO);
	assert_int_equal(fails("[[\"1\",\"2\"],[\"3\"]]", 2, 0, "result row 2"), AL_ERR_IO);
	assert_int_equal(fails("[[\"1\"", 1, 0, "ended early"), AL_ERR_IO);
	assert_int_equal(fails("", 1, 0, "ended early"), AL_ERR_IO);
	assert_int_equal(fails("[[\"1\"]] x", 1, 0, "after the end"), AL_ERR_IO);
	assert_int_equal(fails("{\"a\":1}", 1, 0, "not a JSON array"), AL_ERR_IO);
	assert_int_equal(fails("[[{\"a\":1}]]", 1, 0, "nested"), AL_ERR_IO);
	assert_int_equal(fails("[[[\"a\"]]]", 1, 0, "nested"), AL_ERR_IO);
	assert_int_equal(fails("[\"a\"]", 1, 0, "expected a row"), AL_ERR_IO);
	assert_int_equal(fails("[[\"a\" \"b\"]]", 2, 0, "expected ','"), AL_ERR_IO);
	assert_int_equal(fails("[[\"a\"],]", 1, 0, "expected a row"), AL_ERR_IO);
	assert_int_equal(fails("[[\"a\",]]", 1, 0, "expected a value"), AL_ERR_IO);
	assert_int_equal(fails("[[\"a\nb\"]]", 1, 0, "control character"), AL_ERR_IO);
	assert_int_equal(fails("[[\"\\x\"]]", 1, 0, "bad escape"), AL_ERR_IO);
	assert_int_equal(fails("[[\"\\u12g4\"]]", 1, 0, "bad \\u"), AL_ERR_IO);
	assert_int_equal(fails("[[\"\\ud83d\"]]", 1, 0, "surrogate"), AL_ERR_IO);
	assert_int_equal(fails("[[\"\\ud83dx\"]]", 1, 0, "surrogate"), AL_ERR_IO);
	assert_int_equal(fails("[[\"\\ud83d\\n\"]]", 1, 0, "surrogate"), AL_ERR_IO);
	assert_int_equal(fails("[[\"\\ud83d\\u0041\"]]", 1, 0, "surrogate"), AL_ERR_IO);
	assert_int_equal(fails("[[\"\\ude00\"]]", 1, 0, "lone"), AL_ERR_IO);
	assert_int_equal(fails("[[nul]]", 1, 0, "malformed"), AL_ERR_IO);
	assert_int_equal(fails("[[01]]", 1, 0, "malformed"), AL_ERR_IO);
	assert_int_equal(fails("[[1.]]", 1, 0, "malformed"), AL_ERR_IO);
	/* Invalid UTF-8 is refused by the writer, with the place. */
	assert_int_equal(fails("[[\"ok\"],[\"\xff\"]]", 1, 0, "result row 2 column 1"), AL_ERR_INVALID);
	/* One value is bounded. */
	assert_int_equal(fails("[[\"0123456789abcdefX\"]]", 1, 16, "larger than"), AL_ERR_TOO_LARGE);
	assert_int_equal(fails("[[\"0123456789abcde\\u00e9\"]]", 1, 16, "larger than"), AL_ERR_TOO_LARGE);
}

static void test_rows_documents(void **state)
{
	/* Chunks are separate JSON documents; rows count on across them. */
	struct csv_writer w;
	struct source_databricks_rows r;
	size_t len;
	char *csv;
	int fd = memfd_create("rows", 0);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(csv_writer_init(&w, fd, 0), AL_OK);
	source_databricks_rows_init(&r, &w, 1, 0);
	assert_int_equal(source_databricks_rows_feed(&r, "[[\"a\"],[\"b\"]]", 13), AL_OK);
	assert_int_equal(source_databricks_rows_finish(&r), AL_OK);
	assert_int_equal(source_databricks_rows_feed(&r, "[[\"c\"]]", 7), AL_OK);
	assert_int_equal(source_databricks_rows_finish(&r), AL_OK);
	assert_int_equal(source_databricks_rows_feed(&r, "[]", 2), AL_OK);
	assert_int_equal(source_databricks_rows_finish(&r), AL_OK);
	assert_true(r.rows == 3);
	assert_int_equal(source_databricks_rows_feed(&r, "[[\"d\"", 5), AL_OK);
	assert_int_equal(source_databricks_rows_finish(&r), AL_ERR_IO);
	assert_non_null(strstr(al_error_message(), "result row 4"));
	assert_int_equal(csv_writer_flush(&w), AL_OK);
	csv = slurp(fd, &len);
	/* A failed chunk may leave a partial record: the runner deletes the
	 * .part of a failed table. */
	assert_string_equal(csv, "a\r\nb\r\nc\r\nd");
	free(csv);
	source_databricks_rows_free(&r);
	csv_writer_free(&w);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_forms),   cmocka_unit_test(test_quote_and_show),
		cmocka_unit_test(test_uuid_and_errors), cmocka_unit_test(test_rows_values),
		cmocka_unit_test(test_rows_errors), cmocka_unit_test(test_rows_documents),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
