/* Tests for auth/accounts: users, passwords and bearer tokens in SQLite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/accounts.h"
#include "common/error.h"
#include "common/util.h"

struct fixture {
	char dir[64];
	char *db;
	struct accounts *a;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/airlock-accounts-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->db = util_path_join(f->dir, "airlock.db");
	assert_int_equal(accounts_open(&f->a, f->db), AL_OK);
	accounts_set_hash_cost(f->a, crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	accounts_close(f->a);
	util_remove_tree(f->dir);
	free(f->db);
	free(f);
	return 0;
}

static json_t *roles(const char *a, const char *b)
{
	return b ? json_pack("[s,s]", a, b) : json_pack("[s]", a);
}

/* Runs one SQL statement on a separate connection (plays an attacker / clock). */
static long long sql_int(const char *db, const char *sql)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	long long v = -1;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 5000);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

static void test_users(void **state)
{
	struct fixture *f = *state;
	json_t *r, *u = NULL, *list = NULL;
	size_t n;

	assert_int_equal(accounts_count(f->a, &n), AL_OK);
	assert_int_equal(n, 0);
	r = json_pack("[s,s,s]", "approver", "researcher", "approver");
	assert_int_equal(accounts_user_create(f->a, "alice", "correct horse battery", r), AL_OK);
	json_decref(r);
	r = roles("admin", NULL);
	assert_int_equal(accounts_user_create(f->a, "bob.smith@nhs", "another long password", r), AL_OK);
	assert_int_equal(accounts_user_create(f->a, "alice", "correct horse battery", r), AL_ERR_EXISTS);
	assert_non_null(strstr(al_error_message(), "already exists"));
	json_decref(r);

	assert_int_equal(accounts_user_get(f->a, "alice", &u), AL_OK);
	assert_string_equal(json_string_value(json_object_get(u, "username")), "alice");
	r = roles("researcher", "approver");
	assert_true(json_equal(json_object_get(u, "roles"), r));
	json_decref(r);
	assert_true(json_is_false(json_object_get(u, "disabled")));
	assert_int_equal(strlen(json_string_value(json_object_get(u, "createdAt"))), 20);
	assert_int_equal(json_object_size(u), 4); /* never the hash */
	json_decref(u);
	assert_int_equal(accounts_user_get(f->a, "nobody", &u), AL_ERR_NOT_FOUND);
	assert_null(u);

	assert_int_equal(accounts_user_list(f->a, &list), AL_OK);
	assert_int_equal(json_array_size(list), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "username")), "alice");
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "username")),
			    "bob.smith@nhs");
	json_decref(list);
	assert_int_equal(accounts_count(f->a, &n), AL_OK);
	assert_int_equal(n, 2);

	r = roles("data-engineer", NULL);
	assert_int_equal(accounts_user_set_roles(f->a, "alice", r), AL_OK);
	assert_int_equal(accounts_user_set_roles(f->a, "nobody", r), AL_ERR_NOT_FOUND);
	json_decref(r);
	assert_int_equal(accounts_user_get(f->a, "alice", &u), AL_OK);
	assert_string_equal(json_string_value(json_array_get(json_object_get(u, "roles"), 0)), "data-engineer");
	assert_int_equal(json_array_size(json_object_get(u, "roles")), 1);
	json_decref(u);

	assert_int_equal(accounts_user_delete(f->a, "bob.smith@nhs"), AL_OK);
	assert_int_equal(accounts_user_delete(f->a, "bob.smith@nhs"), AL_ERR_NOT_FOUND);
	assert_int_equal(accounts_count(f->a, &n), AL_OK);
	assert_int_equal(n, 1);

	/* persists across handles */
	accounts_close(f->a);
	assert_int_equal(accounts_open(&f->a, f->db), AL_OK);
	accounts_set_hash_cost(f->a, crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN);
	assert_int_equal(accounts_user_get(f->a, "alice", &u), AL_OK);
	json_decref(u);
}

static void test_validation(void **state)
{
	struct fixture *f = *state;
	json_t *r = roles("researcher", NULL), *bad;
	char longname[70], longpw[1100];

	assert_int_equal(accounts_user_create(f->a, "Alice", "long enough pw", r), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "lower-case"));
	assert_int_equal(accounts_user_create(f->a, "-x", "long enough pw", r), AL_ERR_INVALID);
	assert_int_equal(accounts_user_create(f->a, "", "long enough pw", r), AL_ERR_INVALID);
	assert_int_equal(accounts_user_create(f->a, "a b", "long enough pw", r), AL_ERR_INVALID);
	memset(longname, 'a', 64);
	longname[64] = '\0';
	assert_int_equal(accounts_user_create(f->a, longname, "long enough pw", r), AL_ERR_INVALID);
	longname[63] = '\0';
	assert_int_equal(accounts_user_create(f->a, longname, "long enough pw", r), AL_OK);
	assert_int_equal(accounts_check_username("x"), AL_OK);
	assert_int_equal(accounts_check_username("0a._@-z"), AL_OK);

	assert_int_equal(accounts_user_create(f->a, "carol", "short", r), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "at least 10 characters"));
	/* 9 characters in 18 bytes is still too short: characters count, not bytes */
	assert_int_equal(accounts_user_create(f->a, "carol", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
					      "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", r), AL_ERR_INVALID);
	memset(longpw, 'p', 1025);
	longpw[1025] = '\0';
	assert_int_equal(accounts_user_create(f->a, "carol", longpw, r), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "1024"));
	longpw[1024] = '\0';
	assert_int_equal(accounts_user_create(f->a, "carol", longpw, r), AL_OK);

	bad = json_pack("[s]", "aprover");
	assert_int_equal(accounts_user_create(f->a, "dave", "long enough pw", bad), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "'aprover' is not a role"));
	json_decref(bad);
	bad = json_array();
	assert_int_equal(accounts_user_create(f->a, "dave", "long enough pw", bad), AL_ERR_INVALID);
	json_decref(bad);
	bad = json_pack("[i]", 3);
	assert_int_equal(accounts_check_roles(bad), AL_ERR_INVALID);
	json_decref(bad);
	assert_int_equal(accounts_user_create(f->a, "dave", "long enough pw", NULL), AL_ERR_INVALID);
	json_decref(r);
}

static void test_tokens(void **state)
{
	struct fixture *f = *state;
	json_t *r = roles("researcher", "admin"), *u = NULL;
	char *tok = NULL, *tok2 = NULL, *file = NULL, *wal, *walpath;
	size_t len = 0, wlen = 0;

	assert_int_equal(accounts_user_create(f->a, "alice", "correct horse battery", r), AL_OK);
	json_decref(r);

	assert_int_equal(accounts_login(f->a, "alice", "correct horse battery", 0, "test", &tok), AL_OK);
	assert_non_null(tok);
	assert_int_equal(strlen(tok), 68);
	assert_int_equal(strncmp(tok, "alk_", 4), 0);
	assert_int_equal(accounts_authenticate(f->a, tok, &u), AL_OK);
	assert_string_equal(json_string_value(json_object_get(u, "username")), "alice");
	assert_int_equal(json_array_size(json_object_get(u, "roles")), 2);
	json_decref(u);

	/* the DB holds only the hash of the token */
	assert_int_equal(util_read_file(f->db, 64 << 20, &file, &len), AL_OK);
	assert_null(memmem(file, len, tok + 4, 64));
	free(file);
	walpath = NULL;
	assert_true(asprintf(&walpath, "%s-wal", f->db) > 0);
	if (util_read_file(walpath, 64 << 20, &wal, &wlen) == AL_OK) {
		assert_null(memmem(wal, wlen, tok + 4, 64));
		free(wal);
	}
	free(walpath);

	/* wrong password and unknown user: the same answer */
	assert_int_equal(accounts_login(f->a, "alice", "wrong password!!", 0, NULL, &tok2), AL_ERR_UNAUTHORIZED);
	assert_string_equal(al_error_message(), "invalid username or password");
	assert_null(tok2);
	assert_int_equal(accounts_login(f->a, "mallory", "wrong password!!", 0, NULL, &tok2), AL_ERR_UNAUTHORIZED);
	assert_string_equal(al_error_message(), "invalid username or password");
	assert_int_equal(accounts_login(f->a, "BAD NAME", "x", 0, NULL, &tok2), AL_ERR_UNAUTHORIZED);
	assert_string_equal(al_error_message(), "invalid username or password");
	assert_int_equal(accounts_login(f->a, "alice", "correct horse battery", -1, NULL, &tok2), AL_ERR_INVALID);

	/* malformed / unknown tokens */
	assert_int_equal(accounts_authenticate(f->a, "nonsense", &u), AL_ERR_UNAUTHORIZED);
	assert_int_equal(accounts_authenticate(f->a, NULL, &u), AL_ERR_UNAUTHORIZED);
	{
		char forged[69];
		memcpy(forged, tok, 69);
		forged[10] = forged[10] == 'a' ? 'b' : 'a';
		assert_int_equal(accounts_authenticate(f->a, forged, &u), AL_ERR_UNAUTHORIZED);
		forged[10] = 'G';
		assert_int_equal(accounts_authenticate(f->a, forged, &u), AL_ERR_UNAUTHORIZED);
	}
	assert_null(u);

	/* expiry: move the clock of the stored token */
	assert_int_equal(accounts_login(f->a, "alice", "correct horse battery", 60, NULL, &tok2), AL_OK);
	assert_int_equal(sql_int(f->db, "SELECT count(*) FROM tokens"), 2);
	sql_int(f->db, "UPDATE tokens SET expires_at = 1 WHERE description IS NULL");
	assert_int_equal(accounts_authenticate(f->a, tok2, &u), AL_ERR_UNAUTHORIZED);
	assert_int_equal(accounts_authenticate(f->a, tok, &u), AL_OK);
	json_decref(u);
	free(tok2);
	tok2 = NULL;

	/* logout */
	assert_int_equal(accounts_login(f->a, "alice", "correct horse battery", 0, NULL, &tok2), AL_OK);
	/* expired ones were swept by that login */
	assert_int_equal(sql_int(f->db, "SELECT count(*) FROM tokens"), 2);
	assert_int_equal(accounts_logout(f->a, tok2), AL_OK);
	assert_int_equal(accounts_logout(f->a, tok2), AL_OK);
	assert_int_equal(accounts_logout(f->a, "junk"), AL_OK);
	assert_int_equal(accounts_authenticate(f->a, tok2, &u), AL_ERR_UNAUTHORIZED);
	assert_int_equal(accounts_authenticate(f->a, tok, &u), AL_OK);
	json_decref(u);
	free(tok2);
	tok2 = NULL;

	/* disabling revokes and blocks login */
	assert_int_equal(accounts_user_set_disabled(f->a, "alice", 1), AL_OK);
	assert_int_equal(accounts_authenticate(f->a, tok, &u), AL_ERR_UNAUTHORIZED);
	assert_int_equal(accounts_login(f->a, "alice", "correct horse battery", 0, NULL, &tok2),
			 AL_ERR_UNAUTHORIZED);
	assert_string_equal(al_error_message(), "invalid username or password");
	assert_int_equal(accounts_user_get(f->a, "alice", &u), AL_OK);
	assert_true(json_is_true(json_object_get(u, "disabled")));
	json_decref(u);
	assert_int_equal(accounts_user_set_disabled(f->a, "alice", 0), AL_OK);
	free(tok);
	tok = NULL;

	/* a new password revokes tokens; the old password stops working */
	assert_int_equal(accounts_login(f->a, "alice", "correct horse battery", 0, NULL, &tok), AL_OK);
	assert_int_equal(accounts_user_set_password(f->a, "alice", "short"), AL_ERR_INVALID);
	assert_int_equal(accounts_user_set_password(f->a, "alice", "a brand new passphrase"), AL_OK);
	assert_int_equal(accounts_user_set_password(f->a, "nobody", "a brand new passphrase"), AL_ERR_NOT_FOUND);
	assert_int_equal(accounts_authenticate(f->a, tok, &u), AL_ERR_UNAUTHORIZED);
	assert_int_equal(accounts_login(f->a, "alice", "correct horse battery", 0, NULL, &tok2),
			 AL_ERR_UNAUTHORIZED);
	free(tok);
	tok = NULL;
	assert_int_equal(accounts_login(f->a, "alice", "a brand new passphrase", 0, NULL, &tok), AL_OK);

	/* deleting the user deletes their tokens */
	assert_int_equal(accounts_user_delete(f->a, "alice"), AL_OK);
	assert_int_equal(accounts_authenticate(f->a, tok, &u), AL_ERR_UNAUTHORIZED);
	assert_int_equal(sql_int(f->db, "SELECT count(*) FROM tokens"), 0);
	free(tok);
}

struct worker {
	struct accounts *a;
	const char *token;
	int ok;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 40; i++) {
		json_t *u = NULL;
		char *t = NULL;
		if (accounts_authenticate(w->a, w->token, &u) == AL_OK)
			w->ok++;
		json_decref(u);
		if (i % 10 == 0 && accounts_login(w->a, "alice", "correct horse battery", 0, NULL, &t) == AL_OK)
			w->ok++;
		free(t);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct fixture *f = *state;
	json_t *r = roles("researcher", NULL);
	struct worker w[4];
	pthread_t t[4];
	char *tok = NULL;

	assert_int_equal(accounts_user_create(f->a, "alice", "correct horse battery", r), AL_OK);
	json_decref(r);
	assert_int_equal(accounts_login(f->a, "alice", "correct horse battery", 0, NULL, &tok), AL_OK);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ f->a, tok, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, 44);
	}
	free(tok);
}

/* With the real cost, an unknown user takes about as long as a wrong password. */
static void test_timing(void **state)
{
	struct fixture *f = *state;
	struct accounts *real = NULL;
	json_t *r = roles("researcher", NULL);
	char *tok = NULL;
	int64_t t0, known, unknown;

	assert_int_equal(accounts_open(&real, f->db), AL_OK);
	assert_int_equal(accounts_user_create(real, "erin", "correct horse battery", r), AL_OK);
	json_decref(r);
	/* first unknown-user login computes the dummy hash */
	assert_int_equal(accounts_login(real, "ghost", "whatever it is", 0, NULL, &tok), AL_ERR_UNAUTHORIZED);
	t0 = util_monotonic_ms();
	assert_int_equal(accounts_login(real, "erin", "not the password", 0, NULL, &tok), AL_ERR_UNAUTHORIZED);
	known = util_monotonic_ms() - t0;
	t0 = util_monotonic_ms();
	assert_int_equal(accounts_login(real, "ghost", "not the password", 0, NULL, &tok), AL_ERR_UNAUTHORIZED);
	unknown = util_monotonic_ms() - t0;
	print_message("wrong password %lld ms, unknown user %lld ms\n", (long long)known, (long long)unknown);
	assert_true(unknown * 3 >= known);
	assert_true(known * 3 >= unknown);
	accounts_close(real);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_users, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
