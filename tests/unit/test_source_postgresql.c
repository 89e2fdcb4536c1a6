/* Unit tests for src/runner/source_postgresql.c: url parsing, names, libpq
 * messages and COPY-record conversion (the server-backed behaviour is
 * tested end to end in tests/e2e/test_source_postgresql.py). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/error.h"
#include "runner/csv.h"
#include "runner/pq_dl.h"
#include "runner/source.h"
#include "runner/source_postgresql.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SECRET "S3cr3t-pw-value"

/* ---- url ---- */

static void expect_url(const char *url, const char *host, const char *port, const char *db, const char *sslmode)
{
	struct pg_url u;
	int rc = source_postgresql_parse_url(&u, url);
	if (rc)
		fail_msg("%s: %s", url, al_error_message());
	assert_string_equal(u.host, host);
	assert_string_equal(u.port, port);
	assert_string_equal(u.dbname, db);
	if (sslmode)
		assert_string_equal(u.sslmode, sslmode);
	else
		assert_null(u.sslmode);
	source_postgresql_url_free(&u);
}

static void expect_bad_url(const char *url, const char *needle)
{
	struct pg_url u;
	int rc = source_postgresql_parse_url(&u, url);
	source_postgresql_url_free(&u);
	if (rc != AL_ERR_INVALID)
		fail_msg("%s: expected AL_ERR_INVALID, got %d", url ? url : "(null)", rc);
	if (needle && !strstr(al_error_message(), needle))
		fail_msg("%s: message '%s' lacks '%s'", url ? url : "(null)", al_error_message(), needle);
	assert_null(strstr(al_error_message(), SECRET));
}

static void test_url_ok(void **state)
{
	(void)state;
	expect_url("postgresql://db.example.org:5433/gm", "db.example.org", "5433", "gm", NULL);
	expect_url("postgres://db/gm?sslmode=require", "db", "5432", "gm", "require");
	expect_url("POSTGRESQL://db/gm", "db", "5432", "gm", NULL);
	expect_url("postgresql://[::1]:6543/x", "::1", "6543", "x", NULL);
	expect_url("postgresql://[fe80::1]/x?sslmode=verify-full", "fe80::1", "5432", "x", "verify-full");
	expect_url("postgresql://%2Fvar%2Frun%2Fpostgresql/my%20db", "/var/run/postgresql", "5432", "my db", NULL);
	expect_url("postgresql://h:05432/d", "h", "5432", "d", NULL);
	expect_url("postgresql://h:65535/d?sslmode=disable&&sslmode=prefer", "h", "65535", "d", "prefer");
	expect_url("postgresql://h/caf%C3%A9", "h", "5432", "caf\xc3\xa9", NULL);
}

static void test_url_refused(void **state)
{
	(void)state;
	expect_bad_url(NULL, "has no url");
	expect_bad_url("", "has no url");
	expect_bad_url("mysql://h/db", "must start with postgresql://");
	expect_bad_url("postgresql://bob:" SECRET "@db/gm", "must not carry a user or password");
	expect_bad_url("postgresql://bob@db/gm", "must not carry a user or password");
	expect_bad_url("postgresql://:" SECRET "@db/gm", "credentials.passwordKey");
	expect_bad_url("postgresql://db/gm?password=" SECRET, "must not carry a user or password");
	expect_bad_url("postgresql://db/gm?user=bob", "must not carry a user or password");
	expect_bad_url("postgresql://db/gm?sslmode=require&password=" SECRET, "must not carry");
	expect_bad_url("postgresql://db/gm?application_name=x", "parameter 'application_name' is not supported");
	expect_bad_url("postgresql://db/gm?" SECRET, "unsupported parameter");
	expect_bad_url("postgresql://db/gm?sslmode=bogus", "sslmode must be one of");
	expect_bad_url("postgresql://db/gm?sslmode", "sslmode needs a value");
	expect_bad_url("postgresql://db:0/gm", "port");
	expect_bad_url("postgresql://db:65536/gm", "port");
	expect_bad_url("postgresql://db:123456/gm", "port");
	expect_bad_url("postgresql://db:54a/gm", "port");
	expect_bad_url("postgresql://db:/gm", "port");
	expect_bad_url("postgresql://db", "names no database");
	expect_bad_url("postgresql://db:5432", "names no database");
	expect_bad_url("postgresql://db/", "names no database");
	expect_bad_url("postgresql://db/?sslmode=require", "names no database");
	expect_bad_url("postgresql:///gm", "names no host");
	expect_bad_url("postgresql://:5432/gm", "names no host");
	expect_bad_url("postgresql://a,b/gm", "one host");
	expect_bad_url("postgresql://[::1/gm", "IPv6");
	expect_bad_url("postgresql://[]/gm", "IPv6");
	expect_bad_url("postgresql://[::1]x/gm", "after the IPv6");
	expect_bad_url("postgresql://db/a/b", "%2F");
	expect_bad_url("postgresql://db/gm%", "%-escape");
	expect_bad_url("postgresql://db/gm%zz", "%-escape");
	expect_bad_url("postgresql://db/gm%2", "%-escape");
	expect_bad_url("postgresql://db/%00", "%-escape");
	expect_bad_url("postgresql://db/gm#frag", "fragment");
	expect_bad_url("postgresql://db/gm?sslmode=require#x", "fragment");
}

/* ---- names ---- */

static void expect_split(const char *object, const char *schema, const char *table)
{
	char *s = NULL, *t = NULL;
	assert_int_equal(source_postgresql_split_name(object, &s, &t), AL_OK);
	if (schema)
		assert_string_equal(s, schema);
	else
		assert_null(s);
	assert_string_equal(t, table);
	free(s);
	free(t);
}

static void test_split_name(void **state)
{
	(void)state;
	expect_split("patients", NULL, "patients");
	expect_split("gm.patients", "gm", "patients");
	expect_split("gm.a.b", "gm", "a.b");
	expect_split("weird name \"x\"", NULL, "weird name \"x\"");
	expect_split(".t", "", "t");
}

/* ---- libpq messages ---- */

static void expect_line(const char *msg, const char *want)
{
	struct buf b;
	buf_init(&b, 4096);
	assert_int_equal(source_postgresql_error_line(&b, msg), AL_OK);
	assert_string_equal(buf_cstr(&b), want);
	buf_free(&b);
}

static void test_error_line(void **state)
{
	(void)state;
	expect_line("connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication "
		    "failed for user \"bob\"\n",
		    "password authentication failed for user \"bob\"");
	expect_line("connection to server at \"localhost\" (::1), port 1 failed: Connection refused\n"
		    "\tIs the server running on that host and accepting TCP/IP connections?\n"
		    "connection to server at \"localhost\" (127.0.0.1), port 1 failed: Cannot assign address\n"
		    "\tIs the server running on that host and accepting TCP/IP connections?\n",
		    "Cannot assign address");
	expect_line("could not translate host name \"nowhere.invalid\" to address: Name or service not known\n",
		    "could not translate host name \"nowhere.invalid\" to address: Name or service not known");
	expect_line("ERROR:  relation \"x\"   does\tnot exist\n", "relation \"x\" does not exist");
	expect_line("  FATAL:  too many clients  ", "too many clients");
	expect_line(NULL, "no reason given");
	expect_line("", "no reason given");
	expect_line("\n\t\n", "no reason given");
}

/* ---- COPY records ---- */

static int new_fd(void)
{
	int fd = memfd_create("pgcsv", 0);
	assert_true(fd >= 0);
	return fd;
}

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

/* Converts one record (copied: the converter may change it) with a writer
 * of buffer `cap`; returns the rc and, on success, the output. */
static int convert(const char *rec, size_t n, size_t ncols, size_t cap, char **out, size_t *outlen, size_t *bad)
{
	struct csv_writer w;
	char *copy = malloc(n + 1);
	int fd = new_fd(), rc;

	assert_non_null(copy);
	memcpy(copy, rec, n);
	assert_int_equal(csv_writer_init(&w, fd, cap), AL_OK);
	rc = source_postgresql_copy_record(&w, copy, n, ncols, bad);
	if (!rc)
		rc = csv_writer_flush(&w);
	*out = NULL;
	*outlen = 0;
	if (!rc)
		*out = slurp(fd, outlen);
	csv_writer_free(&w);
	close(fd);
	free(copy);
	return rc;
}

static void expect_record(const char *rec, size_t ncols, const char *want)
{
	size_t caps[] = { 0, 64 };
	for (size_t c = 0; c < 2; c++) {
		char *out;
		size_t len, bad;
		int rc = convert(rec, strlen(rec), ncols, caps[c], &out, &len, &bad);
		if (rc)
			fail_msg("record '%s': %s", rec, al_error_message());
		assert_int_equal(len, strlen(want));
		assert_memory_equal(out, want, len);
		free(out);
	}
}

static void expect_record_error(const char *rec, size_t n, size_t ncols, int code, size_t bad_col,
				const char *needle)
{
	char *out;
	size_t len, bad;
	int rc = convert(rec, n, ncols, 0, &out, &len, &bad);
	if (rc != code)
		fail_msg("record '%.*s': rc %d, message %s", (int)n, rec, rc, al_error_message());
	assert_int_equal(bad, bad_col);
	if (needle && !strstr(al_error_message(), needle))
		fail_msg("message '%s' lacks '%s'", al_error_message(), needle);
	free(out);
}

static void test_copy_record_plain(void **state)
{
	(void)state;
	expect_record("1,abc,2.5\n", 3, "1,abc,2.5\r\n");
	expect_record("\n", 1, "\r\n");                     /* one NULL */
	expect_record(",\n", 2, ",\r\n");                   /* two NULLs */
	expect_record("Zo\xc3\xab,\xe2\x82\xac,\xf0\x9f\x98\x80 ok\n", 3, "Zo\xc3\xab,\xe2\x82\xac,\xf0\x9f\x98\x80 ok\r\n");
	expect_record("2024-01-02 03:04:05+00,\"{1,2,3}\",NaN,-Infinity,dGVzdA==\n", 5,
		      "2024-01-02 03:04:05+00,\"{1,2,3}\",NaN,-Infinity,dGVzdA==\r\n");
	/* Long enough for the 8-byte scan, commas on word boundaries. */
	expect_record("aaaaaaa,bbbbbbb,ccccccc,ddddddd,eeeeeee,fffffff,ggggggg\n", 7,
		      "aaaaaaa,bbbbbbb,ccccccc,ddddddd,eeeeeee,fffffff,ggggggg\r\n");
	expect_record(",,,,,,,,,,,,,,,,,,,,,,,,\n", 25, ",,,,,,,,,,,,,,,,,,,,,,,,\r\n");
	expect_record("caf\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9,x\n", 2,
		      "caf\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9,x\r\n");
}

static void test_copy_record_quoted(void **state)
{
	(void)state;
	/* NULL stays an empty unquoted field, the empty string stays "". */
	expect_record("1,,\"\"\n", 3, "1,,\"\"\r\n");
	expect_record("\"\"\n", 1, "\"\"\r\n");
	expect_record("\"a \"\"b\"\"\",\"c,d\",\"e\nf\",\"g\rh\",\"\r\n\"\n", 5,
		      "\"a \"\"b\"\"\",\"c,d\",\"e\nf\",\"g\rh\",\"\r\n\"\r\n");
	/* PostgreSQL quotes a lone \. in a one-column table; csv.h does not. */
	expect_record("\"\\.\"\n", 1, "\\.\r\n");
	/* Quotes csv.h would not use are dropped (another server's style). */
	expect_record("\"abc\",\"1\"\n", 2, "abc,1\r\n");
	/* Quote, CR, LF anywhere in a long record (the word scan must see them). */
	expect_record("0123456789,\"abcdefgh\"\"ijkl\",zzzzzzzzzzzzzzzz\n", 3,
		      "0123456789,\"abcdefgh\"\"ijkl\",zzzzzzzzzzzzzzzz\r\n");
	expect_record("0123456789012345,\"abcdefghijk\nlmnop\"\n", 2, "0123456789012345,\"abcdefghijk\nlmnop\"\r\n");
	expect_record("\"\"\"\"\n", 1, "\"\"\"\"\r\n"); /* a lone quote */
	expect_record("\"x\n\",\n", 2, "\"x\n\",\r\n");   /* quoted LF then a NULL */
}

/* A literal and its length (records may hold NUL-free binary). */
#define REC(lit) lit, sizeof(lit) - 1

static void test_copy_record_errors(void **state)
{
	(void)state;
	expect_record_error(REC("ok,ab\xff,x\n"), 3, AL_ERR_INVALID, 1, "not valid UTF-8");
	expect_record_error(REC("ok,\"a,\xc3\",x\n"), 3, AL_ERR_INVALID, 1, "not valid UTF-8");
	expect_record_error(REC("a,\xc3\n"), 2, AL_ERR_INVALID, 1, "not valid UTF-8");
	expect_record_error(REC("\xed\xa0\x80\n"), 1, AL_ERR_INVALID, 0, "not valid UTF-8"); /* surrogate */
	expect_record_error(REC("a,b"), 2, AL_ERR_IO, 0, "no line end");
	expect_record_error(REC(""), 1, AL_ERR_IO, 0, "no line end");
	expect_record_error(REC("a,b,c\n"), 2, AL_ERR_IO, 2, "more fields");
	expect_record_error(REC("a,b\n"), 3, AL_ERR_IO, 2, "fewer fields");
	expect_record_error(REC("a,\"b\n"), 2, AL_ERR_IO, 1, "unterminated");
	expect_record_error(REC("\"a\"b,c\n"), 2, AL_ERR_IO, 0, "after a closing quote");
	expect_record_error(REC("a,\"b\""), 2, AL_ERR_IO, 0, "no line end");
}

/* A record bigger than the writer's buffer streams through it, by either
 * path. */
static void test_copy_record_large(void **state)
{
	struct buf rec, want;
	size_t len, bad;
	char *out;
	(void)state;

	buf_init(&rec, 1 << 20);
	buf_init(&want, 1 << 20);
	for (size_t i = 0; i < 100000; i++)
		assert_int_equal(buf_appendc(&rec, i == 5000 ? ',' : (char)('a' + i % 26)), AL_OK);
	assert_int_equal(buf_append(&want, rec.ptr, rec.len), AL_OK);
	assert_int_equal(buf_appendc(&rec, '\n'), AL_OK);
	assert_int_equal(buf_appends(&want, "\r\n"), AL_OK);
	assert_int_equal(convert(rec.ptr, rec.len, 2, 64, &out, &len, &bad), AL_OK);
	assert_int_equal(len, want.len);
	assert_memory_equal(out, want.ptr, len);
	free(out);
	/* Quoted, with a doubled quote far into the field. */
	buf_reset(&rec);
	assert_int_equal(buf_appends(&rec, "id,\""), AL_OK);
	for (size_t i = 0; i < 100000; i++)
		assert_int_equal(buf_appends(&rec, i == 70000 ? "\"\"" : "x"), AL_OK);
	assert_int_equal(buf_appends(&rec, "\""), AL_OK);
	buf_reset(&want);
	assert_int_equal(buf_append(&want, rec.ptr, rec.len), AL_OK);
	assert_int_equal(buf_appendc(&rec, '\n'), AL_OK);
	assert_int_equal(buf_appends(&want, "\r\n"), AL_OK);
	assert_int_equal(convert(rec.ptr, rec.len, 2, 64, &out, &len, &bad), AL_OK);
	assert_int_equal(len, want.len);
	assert_memory_equal(out, want.ptr, len);
	free(out);
	buf_free(&rec);
	buf_free(&want);
}

/* Random records in PostgreSQL's CSV (quoted when the text needs it or is
 * empty, NULL unquoted empty) convert to exactly what csv.h writes for the
 * same values. */
static void test_copy_record_random(void **state)
{
	static const char *const atoms[] = { "a", "Z", "0", ",", "\"", "\r", "\n", " ", "\xc3\xa9", "\xe2\x82\xac",
					     "\xf0\x9f\x98\x80", "\\", ".", "xyzxyzxyz" };
	uint64_t seed = 0x2545F4914F6CDD1DULL;
	(void)state;

	for (int iter = 0; iter < 3000; iter++) {
		struct buf rec;
		struct csv_writer w;
		int fd = new_fd();
		size_t ncols = 1 + (size_t)(iter % 7), len, explen, bad;
		char *out, *exp;

		buf_init(&rec, 1 << 20);
		assert_int_equal(csv_writer_init(&w, fd, 0), AL_OK);
		for (size_t c = 0; c < ncols; c++) {
			struct buf v;
			int isnull;
			size_t natoms;

			seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
			isnull = seed % 5 == 0;
			natoms = (size_t)(seed >> 8) % 6;
			buf_init(&v, 1 << 16);
			for (size_t k = 0; k < natoms; k++) {
				seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
				assert_int_equal(buf_appends(&v, atoms[seed % (sizeof(atoms) / sizeof(atoms[0]))]), AL_OK);
			}
			if (c)
				assert_int_equal(buf_appendc(&rec, ','), AL_OK);
			if (isnull) {
				assert_int_equal(csv_writer_null(&w), AL_OK);
			} else {
				int q = v.len == 0 || strpbrk(buf_cstr(&v), ",\"\r\n") ||
					(ncols == 1 && !strcmp(buf_cstr(&v), "\\."));
				assert_int_equal(csv_writer_text(&w, buf_cstr(&v), v.len), AL_OK);
				if (q)
					assert_int_equal(buf_appendc(&rec, '"'), AL_OK);
				for (size_t k = 0; k < v.len; k++) {
					if (v.ptr[k] == '"')
						assert_int_equal(buf_appendc(&rec, '"'), AL_OK);
					assert_int_equal(buf_appendc(&rec, v.ptr[k]), AL_OK);
				}
				if (q)
					assert_int_equal(buf_appendc(&rec, '"'), AL_OK);
			}
			buf_free(&v);
		}
		assert_int_equal(csv_writer_end_record(&w), AL_OK);
		assert_int_equal(csv_writer_flush(&w), AL_OK);
		assert_int_equal(buf_appendc(&rec, '\n'), AL_OK);
		exp = slurp(fd, &explen);
		csv_writer_free(&w);
		close(fd);
		if (convert(rec.ptr, rec.len, ncols, (size_t)(iter % 3 ? 0 : 64), &out, &len, &bad))
			fail_msg("iteration %d: %s", iter, al_error_message());
		assert_int_equal(len, explen);
		assert_memory_equal(out, exp, len);
		free(out);
		free(exp);
		buf_free(&rec);
	}
}

/* ---- registry, library, open() without a server ---- */

static void test_registry_and_library(void **state)
{
	const struct pq_dl *pq;
	(void)state;
	assert_ptr_equal(source_find("postgresql"), &source_postgresql_ops);
	assert_ptr_equal(source_find("postgres"), &source_postgresql_ops);
	assert_non_null(strstr(source_types(), "postgresql"));
	assert_string_equal(source_postgresql_ops.type, "postgresql");
	assert_null(source_postgresql_ops.fetch_file);
	pq = pq_dl();
	if (!pq)
		fail_msg("%s", al_error_message());
	assert_true(pq->lib_version() >= 100000);
	assert_ptr_equal(pq_dl(), pq); /* loaded once */
}

static int open_conn(const char *url, const char *user, const char *password, const char *user_key,
		     const char *password_key)
{
	struct source_conn c = {
		.name = "db", .type = "postgresql", .url = url, .user = user, .password = password,
		.user_key = user_key, .password_key = password_key, .timeout_s = 5,
	};
	struct source *s = NULL;
	int rc = source_postgresql_ops.open(&s, &c);
	assert_null(s);
	assert_null(strstr(al_error_message(), SECRET));
	return rc;
}

static void test_open_failures(void **state)
{
	(void)state;
	assert_int_equal(open_conn("postgresql://bob:" SECRET "@127.0.0.1/gm", "bob", SECRET, "U", "P"), AL_ERR_INVALID);
	assert_int_equal(open_conn("postgresql://127.0.0.1:5432/gm", NULL, SECRET, "PgUser", "P"), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "credentials.userKey 'PgUser' is not among"));
	assert_int_equal(open_conn("postgresql://127.0.0.1:5432/gm", NULL, NULL, NULL, NULL), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "set the connection's credentials.userKey"));
	/* Port 1 on loopback: nothing listens (connection refused at once). */
	assert_int_equal(open_conn("postgresql://127.0.0.1:1/gm", "bob", SECRET, "U", "P"), AL_ERR_UNAVAILABLE);
	assert_non_null(strstr(al_error_message(), "postgresql database gm on 127.0.0.1:1: cannot reach the server"));
	assert_int_equal(open_conn("postgresql://[::1]:1/gm", "bob", SECRET, "U", "P"), AL_ERR_UNAVAILABLE);
	assert_non_null(strstr(al_error_message(), "on [::1]:1"));
	source_postgresql_ops.close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_ok),
		cmocka_unit_test(test_url_refused),
		cmocka_unit_test(test_split_name),
		cmocka_unit_test(test_error_line),
		cmocka_unit_test(test_copy_record_plain),
		cmocka_unit_test(test_copy_record_quoted),
		cmocka_unit_test(test_copy_record_errors),
		cmocka_unit_test(test_copy_record_large),
		cmocka_unit_test(test_copy_record_random),
		cmocka_unit_test(test_registry_and_library),
		cmocka_unit_test(test_open_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
