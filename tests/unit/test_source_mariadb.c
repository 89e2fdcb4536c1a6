/* Unit tests for the pure parts of src/runner/source_mariadb.c: url parsing,
 * identifier quoting, type mapping, BIT values, number detection, message
 * redaction; and that libmariadb loads at run time. (Talking to a server is
 * tests/e2e/test_source_mariadb.py.) */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/error.h"
#include "runner/mariadb_dl.h"
#include "runner/source.h"
#include "runner/source_mariadb.h"

#include <stdint.h>
#include <string.h>

static void test_url_basic(void **state)
{
	struct mariadb_url u;

	(void)state;
	assert_int_equal(source_mariadb_parse_url("mariadb://db.example.org:3307/gm", &u), AL_OK);
	assert_string_equal(u.host, "db.example.org");
	assert_int_equal(u.port, 3307);
	assert_string_equal(u.database, "gm");
	assert_null(u.user);
	assert_null(u.socket);
	assert_int_equal(u.ssl, MARIADB_SSL_DISABLED);
	source_mariadb_url_free(&u);

	assert_int_equal(source_mariadb_parse_url("mysql://10.0.0.5/warehouse", &u), AL_OK);
	assert_string_equal(u.host, "10.0.0.5");
	assert_int_equal(u.port, 3306);
	assert_string_equal(u.database, "warehouse");
	source_mariadb_url_free(&u);

	/* SQLAlchemy's driver suffix, a user, an IPv6 literal, encoded names */
	assert_int_equal(source_mariadb_parse_url("mysql+pymysql://read%40er@[::1]:13306/my%20db", &u), AL_OK);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 13306);
	assert_string_equal(u.user, "read@er");
	assert_string_equal(u.database, "my db");
	source_mariadb_url_free(&u);

	assert_int_equal(source_mariadb_parse_url("MariaDB://h/d", &u), AL_OK);
	source_mariadb_url_free(&u);
}

static void test_url_params(void **state)
{
	struct mariadb_url u;

	(void)state;
	assert_int_equal(source_mariadb_parse_url("mariadb://h/d?ssl=required", &u), AL_OK);
	assert_int_equal(u.ssl, MARIADB_SSL_REQUIRED);
	source_mariadb_url_free(&u);
	assert_int_equal(source_mariadb_parse_url("mariadb://h/d?ssl=verify_identity&sslca=%2Fetc%2Fca.pem", &u), AL_OK);
	assert_int_equal(u.ssl, MARIADB_SSL_VERIFY_IDENTITY);
	assert_string_equal(u.ssl_ca, "/etc/ca.pem");
	source_mariadb_url_free(&u);
	/* sslca alone means verify */
	assert_int_equal(source_mariadb_parse_url("mariadb://h/d?sslca=/ca.pem", &u), AL_OK);
	assert_int_equal(u.ssl, MARIADB_SSL_VERIFY_IDENTITY);
	source_mariadb_url_free(&u);
	assert_int_equal(source_mariadb_parse_url("mariadb://localhost/d?socket=/run/mysqld/mysqld.sock", &u), AL_OK);
	assert_string_equal(u.socket, "/run/mysqld/mysqld.sock");
	source_mariadb_url_free(&u);
	assert_int_equal(source_mariadb_parse_url("mariadb://h/d?ssl=disabled&sslca=/x", &u), AL_ERR_INVALID);
	source_mariadb_url_free(&u);
	assert_int_equal(source_mariadb_parse_url("mariadb://h/d?ssl=maybe", &u), AL_ERR_INVALID);
	source_mariadb_url_free(&u);
	assert_int_equal(source_mariadb_parse_url("mariadb://h/d?socket=/s", &u), AL_ERR_INVALID); /* not localhost */
	source_mariadb_url_free(&u);
	assert_int_equal(source_mariadb_parse_url("mariadb://localhost/d?socket=rel", &u), AL_ERR_INVALID);
	source_mariadb_url_free(&u);
	assert_int_equal(source_mariadb_parse_url("mariadb://h/d?colour=blue", &u), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "unknown parameter 'colour'"));
	source_mariadb_url_free(&u);
	assert_int_equal(source_mariadb_parse_url("mariadb://h/d?noequals", &u), AL_ERR_INVALID);
	source_mariadb_url_free(&u);
}

static void test_url_refuses_password(void **state)
{
	static const char *const bad[] = {
		"mariadb://bob:s3cr3t-PW@h/d",
		"mariadb://bob:@h/d",
		"mysql://h/d?password=s3cr3t-PW",
		"mysql://h/d?ssl=required&PWD=s3cr3t-PW",
	};
	struct mariadb_url u;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(source_mariadb_parse_url(bad[i], &u), AL_ERR_INVALID);
		assert_non_null(strstr(al_error_message(), "must not carry a password"));
		assert_null(strstr(al_error_message(), "s3cr3t"));
		source_mariadb_url_free(&u);
	}
}

static void test_url_invalid(void **state)
{
	static const char *const bad[] = {
		"",
		"postgresql://h/d",
		"mariadb:/h/d",
		"mariadb://h",
		"mariadb://h/",
		"mariadb:///d",
		"mariadb://h:0/d",
		"mariadb://h:65536/d",
		"mariadb://h:12a/d",
		"mariadb://h:/d",
		"mariadb://h/a/b",
		"mariadb://[::1/d",
		"mariadb://[::1]x/d",
		"mariadb://h o/d",
		"mariadb://h/%zz",
		"mariadb://h/a%00b",
		"mariadb://h/a%2",
		"mariadb://h/%",
		"mariadb://h/d?secret%3D",
	};
	struct mariadb_url u;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(source_mariadb_parse_url(bad[i], &u), AL_ERR_INVALID);
		/* messages never quote the url (the shortest ones are prefixes
		 * of the message's own example) */
		if (strlen(bad[i]) > 11)
			assert_null(strstr(al_error_message(), bad[i]));
		source_mariadb_url_free(&u);
	}
	assert_int_equal(source_mariadb_parse_url(NULL, &u), AL_ERR_INVALID);
	source_mariadb_url_free(&u);
}

static void test_quote_ident(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 1024);
	assert_int_equal(source_mariadb_quote_ident(&b, "plain"), AL_OK);
	assert_string_equal(buf_cstr(&b), "`plain`");
	buf_reset(&b);
	assert_int_equal(source_mariadb_quote_ident(&b, "odd `name` x"), AL_OK);
	assert_string_equal(buf_cstr(&b), "`odd ``name`` x`");
	buf_reset(&b);
	assert_int_equal(source_mariadb_quote_ident(&b, "`; DROP TABLE t; --"), AL_OK);
	assert_string_equal(buf_cstr(&b), "```; DROP TABLE t; --`");
	buf_reset(&b);
	assert_int_equal(source_mariadb_quote_ident(&b, ""), AL_OK);
	assert_string_equal(buf_cstr(&b), "``");
	buf_free(&b);
	/* the bounded buffer's cap is honoured */
	buf_init(&b, 4);
	assert_int_equal(source_mariadb_quote_ident(&b, "toolong"), AL_ERR_TOO_LARGE);
	buf_free(&b);
}

static void test_kind(void **state)
{
	(void)state;
	assert_int_equal(source_mariadb_kind("int", NULL), MARIADB_KIND_NUMBER);
	assert_int_equal(source_mariadb_kind("BIGINT", NULL), MARIADB_KIND_NUMBER);
	assert_int_equal(source_mariadb_kind("decimal", NULL), MARIADB_KIND_NUMBER);
	assert_int_equal(source_mariadb_kind("double", NULL), MARIADB_KIND_NUMBER);
	assert_int_equal(source_mariadb_kind("year", NULL), MARIADB_KIND_NUMBER);
	assert_int_equal(source_mariadb_kind("varchar", "utf8mb4"), MARIADB_KIND_TEXT);
	assert_int_equal(source_mariadb_kind("text", "latin1"), MARIADB_KIND_TEXT);
	assert_int_equal(source_mariadb_kind("enum", "utf8mb4"), MARIADB_KIND_TEXT);
	assert_int_equal(source_mariadb_kind("set", "utf8mb4"), MARIADB_KIND_TEXT);
	assert_int_equal(source_mariadb_kind("json", NULL), MARIADB_KIND_TEXT);
	assert_int_equal(source_mariadb_kind("json", "binary"), MARIADB_KIND_TEXT); /* MySQL's JSON */
	assert_int_equal(source_mariadb_kind("datetime", NULL), MARIADB_KIND_TEXT);
	assert_int_equal(source_mariadb_kind("timestamp", NULL), MARIADB_KIND_TEXT);
	assert_int_equal(source_mariadb_kind("time", NULL), MARIADB_KIND_TEXT);
	assert_int_equal(source_mariadb_kind("uuid", NULL), MARIADB_KIND_TEXT);
	assert_int_equal(source_mariadb_kind("inet6", NULL), MARIADB_KIND_TEXT);
	assert_int_equal(source_mariadb_kind("blob", NULL), MARIADB_KIND_BINARY);
	assert_int_equal(source_mariadb_kind("varbinary", NULL), MARIADB_KIND_BINARY);
	assert_int_equal(source_mariadb_kind("binary", NULL), MARIADB_KIND_BINARY);
	assert_int_equal(source_mariadb_kind("char", "binary"), MARIADB_KIND_BINARY);
	assert_int_equal(source_mariadb_kind("longtext", "binary"), MARIADB_KIND_BINARY);
	assert_int_equal(source_mariadb_kind("bit", NULL), MARIADB_KIND_BIT);
	assert_int_equal(source_mariadb_kind("geometry", NULL), MARIADB_KIND_UNSUPPORTED);
	assert_int_equal(source_mariadb_kind("point", NULL), MARIADB_KIND_UNSUPPORTED);
	assert_int_equal(source_mariadb_kind("multipolygon", NULL), MARIADB_KIND_UNSUPPORTED);
	assert_int_equal(source_mariadb_kind("vector", NULL), MARIADB_KIND_UNSUPPORTED);
	assert_int_equal(source_mariadb_kind("something_new", NULL), MARIADB_KIND_UNSUPPORTED);
	assert_int_equal(source_mariadb_kind(NULL, NULL), MARIADB_KIND_UNSUPPORTED);
}

static void test_bit_value(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(source_mariadb_bit_value("", 0, &v), AL_OK);
	assert_true(v == 0);
	assert_int_equal(source_mariadb_bit_value("\x02\xaa", 2, &v), AL_OK);
	assert_true(v == 682);
	assert_int_equal(source_mariadb_bit_value("\xff\xff\xff\xff\xff\xff\xff\xff", 8, &v), AL_OK);
	assert_true(v == UINT64_MAX);
	assert_int_equal(source_mariadb_bit_value("\x80\x00\x00\x00\x00\x00\x00\x01", 8, &v), AL_OK);
	assert_true(v == 0x8000000000000001ull);
	assert_int_equal(source_mariadb_bit_value("123456789", 9, &v), AL_ERR_INVALID);
}

static void test_is_number(void **state)
{
	(void)state;
	assert_true(source_mariadb_is_number("0", 1));
	assert_true(source_mariadb_is_number("-18446744073709551615", 21));
	assert_true(source_mariadb_is_number("1e20", 4));
	assert_true(source_mariadb_is_number("-1.5E-7", 7));
	assert_true(source_mariadb_is_number("0.30000000000000004", 19));
	assert_false(source_mariadb_is_number("", 0));
	assert_false(source_mariadb_is_number("1,5", 3));
	assert_false(source_mariadb_is_number("inf", 3));
	assert_false(source_mariadb_is_number("1 ", 2));
	assert_false(source_mariadb_is_number("\"1\"", 3));
}

static void test_redact(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 1024);
	assert_int_equal(source_mariadb_redact(&b, "bad pw hunter2 and hunter2!", "hunter2"), AL_OK);
	assert_string_equal(buf_cstr(&b), "bad pw *** and ***!");
	buf_reset(&b);
	assert_int_equal(source_mariadb_redact(&b, "hunter2", "hunter2"), AL_OK);
	assert_string_equal(buf_cstr(&b), "***");
	buf_reset(&b);
	assert_int_equal(source_mariadb_redact(&b, "nothing here", "hunter2"), AL_OK);
	assert_string_equal(buf_cstr(&b), "nothing here");
	buf_reset(&b);
	assert_int_equal(source_mariadb_redact(&b, "no secret given", NULL), AL_OK);
	assert_string_equal(buf_cstr(&b), "no secret given");
	buf_reset(&b);
	assert_int_equal(source_mariadb_redact(&b, "empty secret", ""), AL_OK);
	assert_string_equal(buf_cstr(&b), "empty secret");
	buf_free(&b);
}

static void test_registered(void **state)
{
	(void)state;
	assert_ptr_equal(source_find("mariadb"), &source_mariadb_ops);
	assert_ptr_equal(source_find("mysql"), &source_mariadb_ops);
	assert_non_null(strstr(source_types(), "mariadb"));
	assert_non_null(strstr(source_types(), "mysql"));
	assert_non_null(source_mariadb_ops.check);
	assert_non_null(source_mariadb_ops.export_table);
	assert_null(source_mariadb_ops.fetch_file);
}

static void test_open_refusals(void **state)
{
	struct source *s = NULL;
	struct source_conn c = { .name = "db", .type = "mariadb", .url = "mariadb://127.0.0.1:1/gm",
				  .user_key = "DbUser", .password_key = "DbPassword" };

	(void)state;
	/* no user among the credentials: named by its key, nothing attempted */
	assert_int_equal(source_mariadb_ops.open(&s, &c), AL_ERR_INVALID);
	assert_null(s);
	assert_non_null(strstr(al_error_message(), "credentials.userKey 'DbUser'"));
	/* a password key that the credentials lack */
	c.user = "reader";
	assert_int_equal(source_mariadb_ops.open(&s, &c), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "credentials.passwordKey 'DbPassword'"));
	/* a password in the url is refused before anything else */
	c.url = "mariadb://reader:hunter2@127.0.0.1/gm";
	c.password = "x";
	assert_int_equal(source_mariadb_ops.open(&s, &c), AL_ERR_INVALID);
	assert_null(strstr(al_error_message(), "hunter2"));
	source_mariadb_ops.close(NULL);
}

static void test_library_loads(void **state)
{
	const struct mariadb_dl *api;

	(void)state;
	api = mariadb_dl();
	assert_non_null(api);
	assert_ptr_equal(api, mariadb_dl()); /* loaded once */
	assert_non_null(api->init);
	assert_non_null(api->use_result);
	assert_non_null(api->fetch_lengths);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_basic),
		cmocka_unit_test(test_url_params),
		cmocka_unit_test(test_url_refuses_password),
		cmocka_unit_test(test_url_invalid),
		cmocka_unit_test(test_quote_ident),
		cmocka_unit_test(test_kind),
		cmocka_unit_test(test_bit_value),
		cmocka_unit_test(test_is_number),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_registered),
		cmocka_unit_test(test_open_refusals),
		cmocka_unit_test(test_library_loads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
