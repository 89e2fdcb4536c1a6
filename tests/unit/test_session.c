/* Tests for web/session: session ids, CSRF tokens, cookies and the SQLite
 * session store with its idle and absolute timeouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "web/session.h"

struct fixture {
	char dir[64];
	char *db;
	struct session_store *s;
	int64_t now;
};

static int64_t fake_now(void *ud)
{
	return ((struct fixture *)ud)->now;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/airlock-session-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->db = util_path_join(f->dir, "airlock.db");
	f->now = 1800000000;
	/* idle 100 s, absolute 1000 s */
	assert_int_equal(session_store_open(&f->s, f->db, 100, 1000), AL_OK);
	session_store_set_clock(f->s, fake_now, f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	session_store_close(f->s);
	util_remove_tree(f->dir);
	free(f->db);
	free(f);
	return 0;
}

/* The whole web_sessions table as text, read on a connection of its own. */
static char *dump_table(const char *db)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	size_t cap = 1 << 16, len = 0;
	char *out = calloc(1, cap);
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, "SELECT id_hash, data, hex(secret), secret FROM web_sessions", -1, &st, NULL),
			 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		for (int c = 0; c < 4; c++) {
			const void *v = sqlite3_column_blob(st, c);
			int n = sqlite3_column_bytes(st, c);
			if (v && len + (size_t)n + 2 < cap) {
				memcpy(out + len, v, (size_t)n);
				len += (size_t)n;
				/* Blobs may hold NULs: make them searchable as text. */
				for (size_t i = len - (size_t)n; i < len; i++)
					if (!out[i])
						out[i] = ' ';
				out[len++] = '|';
			}
		}
	sqlite3_finalize(st);
	sqlite3_close(h);
	return out;
}

static void test_ids(void **state)
{
	char a[SESSION_ID_LEN + 1], b[SESSION_ID_LEN + 1], bad[SESSION_ID_LEN + 1];
	(void)state;
	assert_int_equal(session_new_id(a), AL_OK);
	assert_int_equal(session_new_id(b), AL_OK);
	assert_int_equal(strlen(a), SESSION_ID_LEN);
	assert_string_not_equal(a, b);
	assert_true(session_id_valid(a));
	for (const char *p = a; *p; p++)
		assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));

	assert_false(session_id_valid(NULL));
	assert_false(session_id_valid(""));
	assert_false(session_id_valid("short"));
	memcpy(bad, a, sizeof(bad));
	bad[5] = '+'; /* not base64url */
	assert_false(session_id_valid(bad));
	memcpy(bad, a, sizeof(bad));
	bad[5] = '=';
	assert_false(session_id_valid(bad));
	/* The last character carries 2 spare bits: one spelling per id only. */
	memcpy(bad, a, sizeof(bad));
	bad[SESSION_ID_LEN - 1] = 'B'; /* 000001: a spare bit set */
	assert_false(session_id_valid(bad));
}

static void test_csrf_tokens(void **state)
{
	char a[SESSION_ID_LEN + 1], b[SESSION_ID_LEN + 1];
	char ta[SESSION_CSRF_LEN + 1], ta2[SESSION_CSRF_LEN + 1], tb[SESSION_CSRF_LEN + 1];
	(void)state;
	assert_int_equal(session_new_id(a), AL_OK);
	assert_int_equal(session_new_id(b), AL_OK);
	assert_int_equal(session_csrf_token(a, ta), AL_OK);
	assert_int_equal(session_csrf_token(a, ta2), AL_OK);
	assert_int_equal(session_csrf_token(b, tb), AL_OK);
	assert_string_equal(ta, ta2);       /* stable for the session */
	assert_string_not_equal(ta, tb);    /* per session */
	assert_string_not_equal(ta, a);     /* not the id itself */
	assert_int_equal(strlen(ta), SESSION_CSRF_LEN);

	assert_true(session_csrf_check(a, ta));
	assert_false(session_csrf_check(b, ta));
	assert_false(session_csrf_check(a, NULL));
	assert_false(session_csrf_check(a, ""));
	assert_false(session_csrf_check(a, a));
	assert_false(session_csrf_check("not-an-id", ta));
	ta2[0] = ta2[0] == 'A' ? 'B' : 'A';
	assert_false(session_csrf_check(a, ta2));
	assert_int_equal(session_csrf_token("nope", ta), AL_ERR_INVALID);
}

static void test_cookie_find(void **state)
{
	const char *v;
	size_t n;
	(void)state;
	assert_int_equal(session_cookie_find("a=1; airlock_session=xyz; b=2", "airlock_session", &v, &n), AL_OK);
	assert_int_equal(n, 3);
	assert_memory_equal(v, "xyz", 3);
	assert_int_equal(session_cookie_find("airlock_session=\"q\"", "airlock_session", &v, &n), AL_OK);
	assert_int_equal(n, 1);
	assert_memory_equal(v, "q", 1);
	assert_int_equal(session_cookie_find("x=1;y=2 ", "y", &v, &n), AL_OK);
	assert_int_equal(n, 1);
	/* A longer or shorter name is another cookie. */
	assert_int_equal(session_cookie_find("xairlock_session=1; airlock_session2=2", "airlock_session", &v, &n),
			 AL_ERR_NOT_FOUND);
	assert_int_equal(session_cookie_find("", "a", &v, &n), AL_ERR_NOT_FOUND);
	assert_int_equal(session_cookie_find(NULL, "a", &v, &n), AL_ERR_NOT_FOUND);
	assert_null(v);
	/* The first of two is taken. */
	assert_int_equal(session_cookie_find("a=1; a=2", "a", &v, &n), AL_OK);
	assert_memory_equal(v, "1", 1);
}

static void test_create_get_destroy(void **state)
{
	struct fixture *f = *state;
	struct session s, g;
	json_t *data = json_pack("{s:s, s:s}", "source", "local", "username", "alice");
	char *table;
	size_t n;

	assert_int_equal(session_create(f->s, data, "alk_secret-bearer-token-0123456789", &s), AL_OK);
	assert_true(session_id_valid(s.id));
	assert_true(session_csrf_check(s.id, s.csrf));
	assert_int_equal(s.expires_at, f->now + 1000);
	assert_string_equal(s.secret, "alk_secret-bearer-token-0123456789");

	/* The database holds neither the id nor the secret. */
	table = dump_table(f->db);
	assert_null(strstr(table, s.id));
	assert_null(strstr(table, "secret-bearer-token"));
	assert_non_null(strstr(table, "alice"));
	free(table);

	f->now += 10;
	assert_int_equal(session_get(f->s, s.id, &g), AL_OK);
	assert_string_equal(json_string_value(json_object_get(g.data, "username")), "alice");
	assert_string_equal(g.secret, "alk_secret-bearer-token-0123456789");
	assert_string_equal(g.csrf, s.csrf);
	session_free(&g);

	/* Another, made-up id opens nothing. */
	{
		char other[SESSION_ID_LEN + 1];
		assert_int_equal(session_new_id(other), AL_OK);
		assert_int_equal(session_get(f->s, other, &g), AL_ERR_UNAUTHORIZED);
		assert_int_equal(session_get(f->s, "garbage", &g), AL_ERR_UNAUTHORIZED);
		assert_null(g.data);
	}

	assert_int_equal(session_destroy(f->s, s.id), AL_OK);
	assert_int_equal(session_get(f->s, s.id, &g), AL_ERR_UNAUTHORIZED);
	assert_int_equal(session_destroy(f->s, s.id), AL_OK); /* idempotent */
	assert_int_equal(session_count(f->s, &n), AL_OK);
	assert_int_equal(n, 0);

	/* A session without a secret. */
	assert_int_equal(session_create(f->s, data, NULL, &g), AL_OK);
	session_free(&s);
	assert_int_equal(session_get(f->s, g.id, &s), AL_OK);
	assert_null(s.secret);
	session_free(&s);
	session_free(&g);

	json_decref(data);
	data = json_string("not an object");
	assert_int_equal(session_create(f->s, data, NULL, &g), AL_ERR_INVALID);
	json_decref(data);
}

static void test_update_keeps_the_id(void **state)
{
	struct fixture *f = *state;
	struct session s, g;
	json_t *data = json_pack("{s:s, s:s, s:i}", "source", "oidc", "username", "rita", "expires_at", 1);
	json_t *fresh = json_pack("{s:s, s:s, s:i}", "source", "oidc", "username", "rita", "expires_at", 2);
	char *table;

	assert_int_equal(session_create(f->s, data, "{\"refresh_token\":\"old-refresh\"}", &s), AL_OK);
	f->now += 90;
	assert_int_equal(session_get(f->s, s.id, &g), AL_OK); /* used: the idle clock moves */
	session_free(&g);
	f->now += 10;
	assert_int_equal(session_update(f->s, s.id, fresh, "{\"refresh_token\":\"new-refresh\"}"), AL_OK);
	/* Same id, same CSRF token, same absolute expiry; new data and secret. */
	assert_int_equal(session_get(f->s, s.id, &g), AL_OK);
	assert_string_equal(g.csrf, s.csrf);
	assert_int_equal(g.created_at, s.created_at);
	assert_int_equal(g.expires_at, s.expires_at);
	assert_int_equal(json_integer_value(json_object_get(g.data, "expires_at")), 2);
	assert_string_equal(g.secret, "{\"refresh_token\":\"new-refresh\"}");
	session_free(&g);
	table = dump_table(f->db);
	assert_null(strstr(table, "new-refresh"));
	assert_null(strstr(table, "old-refresh"));
	free(table);
	/* NULL takes the secret away. */
	assert_int_equal(session_update(f->s, s.id, fresh, NULL), AL_OK);
	assert_int_equal(session_get(f->s, s.id, &g), AL_OK);
	assert_null(g.secret);
	session_free(&g);
	assert_int_equal(session_update(f->s, s.id, json_object_get(fresh, "username"), NULL), AL_ERR_INVALID);

	/* The absolute timeout still applies: an update does not extend it,
	 * nor bring an ended session back. */
	f->now = s.expires_at;
	assert_int_equal(session_update(f->s, s.id, fresh, NULL), AL_ERR_UNAUTHORIZED);
	assert_int_equal(session_get(f->s, s.id, &g), AL_ERR_UNAUTHORIZED);
	assert_int_equal(session_update(f->s, s.id, fresh, NULL), AL_ERR_UNAUTHORIZED);
	assert_int_equal(session_update(f->s, "garbage", fresh, NULL), AL_ERR_UNAUTHORIZED);
	session_free(&s);
	json_decref(data);
	json_decref(fresh);
}

static void test_idle_timeout(void **state)
{
	struct fixture *f = *state;
	struct session s, g;
	json_t *data = json_pack("{s:s}", "source", "local");

	assert_int_equal(session_create(f->s, data, NULL, &s), AL_OK);
	/* Used every 60 s, it stays alive past the idle timeout of 100 s... */
	for (int i = 0; i < 5; i++) {
		f->now += 60;
		assert_int_equal(session_get(f->s, s.id, &g), AL_OK);
		session_free(&g);
	}
	/* ...but not after 100 s without use. */
	f->now += 100;
	assert_int_equal(session_get(f->s, s.id, &g), AL_ERR_UNAUTHORIZED);
	f->now -= 100;
	assert_int_equal(session_get(f->s, s.id, &g), AL_ERR_UNAUTHORIZED); /* deleted when seen expired */
	session_free(&s);
	json_decref(data);
}

static void test_absolute_timeout(void **state)
{
	struct fixture *f = *state;
	struct session s, g;
	json_t *data = json_pack("{s:s}", "source", "local");
	int64_t start = f->now;

	assert_int_equal(session_create(f->s, data, NULL, &s), AL_OK);
	while (f->now + 50 < start + 1000) {
		f->now += 50;
		assert_int_equal(session_get(f->s, s.id, &g), AL_OK);
		session_free(&g);
	}
	f->now = start + 1000;
	assert_int_equal(session_get(f->s, s.id, &g), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "log in again"));
	session_free(&s);
	json_decref(data);
}

static void test_purge_and_tamper(void **state)
{
	struct fixture *f = *state;
	struct session a, b, g;
	json_t *data = json_pack("{s:s}", "source", "local");
	size_t n;
	sqlite3 *h;

	assert_int_equal(session_create(f->s, data, "s1", &a), AL_OK);
	f->now += 200; /* a is idle-expired */
	assert_int_equal(session_create(f->s, data, "s2", &b), AL_OK); /* purges a on the way */
	assert_int_equal(session_count(f->s, &n), AL_OK);
	assert_int_equal(n, 1);
	assert_int_equal(session_purge_expired(f->s, &n), AL_OK);
	assert_int_equal(n, 0);

	/* A secret edited in the database is refused, not mis-decrypted. */
	assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, "UPDATE web_sessions SET secret = zeroblob(length(secret))", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(h);
	assert_int_equal(session_get(f->s, b.id, &g), AL_ERR_UNAUTHORIZED);
	assert_null(g.secret);

	/* A secret too large is refused. */
	{
		char *big = malloc(SESSION_SECRET_MAX + 2);
		memset(big, 'x', SESSION_SECRET_MAX + 1);
		big[SESSION_SECRET_MAX + 1] = '\0';
		assert_int_equal(session_create(f->s, data, big, &g), AL_ERR_TOO_LARGE);
		free(big);
	}
	session_free(&a);
	session_free(&b);
	json_decref(data);
}

static void test_timeouts_defaults(void **state)
{
	struct fixture *f = *state;
	struct session_store *s;
	(void)f;
	assert_int_equal(session_store_open(&s, f->db, 0, 0), AL_OK);
	assert_int_equal(session_store_idle_seconds(s), SESSION_IDLE_DEFAULT);
	assert_int_equal(session_store_max_seconds(s), SESSION_MAX_DEFAULT);
	session_store_close(s);
	/* Idle is never longer than the absolute timeout. */
	assert_int_equal(session_store_open(&s, f->db, 5000, 60), AL_OK);
	assert_int_equal(session_store_idle_seconds(s), 60);
	session_store_close(s);
	assert_int_equal(session_store_open(&s, f->db, -1, 60), AL_ERR_INVALID);
	assert_null(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_csrf_tokens),
		cmocka_unit_test(test_cookie_find),
		cmocka_unit_test_setup_teardown(test_create_get_destroy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_keeps_the_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_absolute_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_purge_and_tamper, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeouts_defaults, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
