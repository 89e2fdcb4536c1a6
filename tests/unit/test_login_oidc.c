/* Tests for web/login_oidc: the redirect URI's origin, the pending login's
 * checks (state, age, shape), the provider's error codes, and what an OIDC
 * session keeps where (user in data, tokens only in the secret) and when it
 * ends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "web/login_oidc.h"

#define NOW 1800000000
#define STATE "s7aTe-0123456789abcdefghijklmnopqrstuvwxyzA"
#define ID_TOKEN "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyaXRhIn0.c2lnbmF0dXJl"
#define REFRESH "eyJhbGciOiJIUzUxMiJ9.eyJ0eXAiOiJSZWZyZXNoIn0.cmVmcmVzaA"

static char *base(const char *ext, int tls, const char *host, int *rc)
{
	struct buf b;
	buf_init(&b, 4096);
	*rc = login_oidc_base_url(&b, ext, tls, host);
	if (*rc) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

static void test_base_url(void **state)
{
	int rc;
	char *s;
	(void)state;
	/* The configured external URL wins over whatever Host says. */
	s = base("https://airlock.example", 0, "evil.example", &rc);
	assert_int_equal(rc, AL_OK);
	assert_string_equal(s, "https://airlock.example");
	free(s);
	s = base(NULL, 0, "127.0.0.1:8080", &rc);
	assert_string_equal(s, "http://127.0.0.1:8080");
	free(s);
	s = base(NULL, 1, "[::1]:8443", &rc);
	assert_string_equal(s, "https://[::1]:8443");
	free(s);
	/* Nothing that could bend the redirect URI. */
	static const char *const bad[] = { "", "a/b", "evil.example@x", "a b", "host\r\nX: y", "h?x", "h#x", NULL };
	for (size_t i = 0; bad[i]; i++) {
		assert_null(base(NULL, 0, bad[i], &rc));
		assert_int_equal(rc, AL_ERR_INVALID);
	}
	assert_null(base(NULL, 0, NULL, &rc));
	assert_int_equal(rc, AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "web.externalUrl"));
}

static json_t *pending(void)
{
	struct oidc_login l = { .url = "https://kc/auth", .state = STATE, .nonce = "n0nce", .code_verifier = "v" };
	json_t *d = NULL;
	assert_int_equal(login_oidc_pending_data(&l, NOW, &d), AL_OK);
	return d;
}

static void test_pending(void **state)
{
	json_t *d = pending();
	char wrong[] = STATE;
	(void)state;
	assert_string_equal(json_string_value(json_object_get(d, "source")), "oidc-pending");
	/* The verifier is the session's secret, never its data. */
	assert_null(json_object_get(d, "code_verifier"));
	assert_int_equal(login_oidc_pending_check(d, STATE, NOW), AL_OK);
	assert_int_equal(login_oidc_pending_check(d, STATE, NOW + LOGIN_OIDC_PENDING_SECONDS), AL_OK);
	/* Too late, or from the future. */
	assert_int_equal(login_oidc_pending_check(d, STATE, NOW + LOGIN_OIDC_PENDING_SECONDS + 1), AL_ERR_INVALID);
	assert_int_equal(login_oidc_pending_check(d, STATE, NOW - 3600), AL_ERR_INVALID);
	/* Another state, a prefix, none. */
	wrong[5] = wrong[5] == 'x' ? 'y' : 'x';
	assert_int_equal(login_oidc_pending_check(d, wrong, NOW), AL_ERR_INVALID);
	assert_int_equal(login_oidc_pending_check(d, "s7aTe", NOW), AL_ERR_INVALID);
	assert_int_equal(login_oidc_pending_check(d, STATE "x", NOW), AL_ERR_INVALID);
	assert_int_equal(login_oidc_pending_check(d, NULL, NOW), AL_ERR_INVALID);
	assert_int_equal(login_oidc_pending_check(d, "", NOW), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "log in again"));
	/* No pending login at all, or a session of another kind. */
	assert_int_equal(login_oidc_pending_check(NULL, STATE, NOW), AL_ERR_INVALID);
	json_object_set_new(d, "source", json_string("oidc"));
	assert_int_equal(login_oidc_pending_check(d, STATE, NOW), AL_ERR_INVALID);
	json_object_set_new(d, "source", json_string("oidc-pending"));
	json_object_del(d, "nonce");
	assert_int_equal(login_oidc_pending_check(d, STATE, NOW), AL_ERR_INVALID);
	json_decref(d);
}

static void test_provider_errors(void **state)
{
	(void)state;
	assert_int_equal(login_oidc_provider_error("access_denied"), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "cancelled"));
	assert_int_equal(login_oidc_provider_error("temporarily_unavailable"), AL_ERR_UNAVAILABLE);
	assert_int_equal(login_oidc_provider_error("server_error"), AL_ERR_UNAVAILABLE);
	assert_int_equal(login_oidc_provider_error("login_required"), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "login_required"));
	assert_int_equal(login_oidc_provider_error("invalid_request"), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "administrator"));
	/* Unknown codes are not repeated to the person. */
	assert_int_equal(login_oidc_provider_error("<script>x</script>"), AL_ERR_UNAUTHORIZED);
	assert_null(strstr(al_error_message(), "script"));
	assert_int_equal(login_oidc_provider_error(NULL), AL_ERR_UNAUTHORIZED);
}

static void make_tokens(struct oidc_tokens *t, const char *refresh)
{
	memset(t, 0, sizeof(*t));
	t->user = json_pack("{s:s, s:[s], s:[s], s:s, s:s}", "username", "rita", "roles", "researcher", "workspaces",
			    "gm-research", "subject", "0b6d", "source", "oidc");
	t->access_token = strdup("eyJ.access.token");
	t->id_token = strdup(ID_TOKEN);
	t->refresh_token = refresh ? strdup(refresh) : NULL;
	t->expires_at = NOW + 300;
}

static void test_session(void **state)
{
	struct oidc_tokens t;
	json_t *data = NULL, *user = NULL;
	char *secret = NULL, *text, *tok = NULL;
	(void)state;

	make_tokens(&t, REFRESH);
	assert_int_equal(login_oidc_session_new(&t, &data, &secret), AL_OK);
	/* Tokens only in the (encrypted) secret; the data names the user. */
	text = json_dumps(data, JSON_COMPACT);
	assert_null(strstr(text, ID_TOKEN));
	assert_null(strstr(text, REFRESH));
	assert_null(strstr(text, "access.token"));
	free(text);
	assert_string_equal(json_string_value(json_object_get(data, "source")), "oidc");
	assert_string_equal(json_string_value(json_object_get(data, "username")), "rita");
	assert_int_equal(json_integer_value(json_object_get(data, "expires_at")), NOW + 300);
	assert_null(strstr(secret, "access.token"));
	assert_int_equal(login_oidc_secret_token(secret, "id_token", &tok), AL_OK);
	assert_string_equal(tok, ID_TOKEN);
	free(tok);
	assert_int_equal(login_oidc_secret_token(secret, "refresh_token", &tok), AL_OK);
	assert_string_equal(tok, REFRESH);
	free(tok);

	/* The user, with roles and workspaces, until the token expires. */
	assert_int_equal(login_oidc_session_user(data, NOW, &user), AL_OK);
	assert_true(json_equal(user, t.user));
	assert_true(user != t.user);
	json_decref(user);
	assert_int_equal(login_oidc_session_user(data, NOW + 299, &user), AL_OK);
	json_decref(user);
	assert_int_equal(login_oidc_session_user(data, NOW + 300, &user), AL_ERR_UNAUTHORIZED);
	assert_null(user);
	assert_non_null(strstr(al_error_message(), "ended"));

	/* Not an OIDC session, or one whose names disagree. */
	json_object_set_new(data, "source", json_string("oidc-pending"));
	assert_int_equal(login_oidc_session_user(data, NOW, &user), AL_ERR_UNAUTHORIZED);
	json_object_set_new(data, "source", json_string("oidc"));
	json_object_set_new(data, "username", json_string("eddie"));
	assert_int_equal(login_oidc_session_user(data, NOW, &user), AL_ERR_UNAUTHORIZED);
	json_object_set_new(data, "username", json_string("rita"));
	json_object_del(data, "expires_at");
	assert_int_equal(login_oidc_session_user(data, NOW, &user), AL_ERR_UNAUTHORIZED);
	assert_int_equal(login_oidc_session_user(NULL, NOW, &user), AL_ERR_UNAUTHORIZED);
	json_decref(data);
	free(secret);
	oidc_tokens_free(&t);

	/* No refresh token from the provider: the secret has none. */
	make_tokens(&t, NULL);
	assert_int_equal(login_oidc_session_new(&t, &data, &secret), AL_OK);
	assert_int_equal(login_oidc_secret_token(secret, "refresh_token", &tok), AL_OK);
	assert_null(tok);
	json_decref(data);
	free(secret);
	oidc_tokens_free(&t);

	/* A user without a name makes no session. */
	make_tokens(&t, NULL);
	json_object_del(t.user, "username");
	assert_int_equal(login_oidc_session_new(&t, &data, &secret), AL_ERR_INTERNAL);
	assert_null(data);
	assert_null(secret);
	oidc_tokens_free(&t);
}

static void test_refresh(void **state)
{
	struct oidc_tokens t, n;
	json_t *data = NULL, *fresh = NULL;
	char *secret = NULL, *fresh_secret = NULL, *v = NULL;

	(void)state;
	make_tokens(&t, "r-1");
	t.refresh_expires_at = NOW + 1800;
	assert_int_equal(login_oidc_session_new(&t, &data, &secret), AL_OK);
	assert_int_equal(json_integer_value(json_object_get(data, "refresh_expires_at")), NOW + 1800);

	/* When: not while more than the margin is left; in the margin and
	 * after expiry, if there is a refresh token still good. */
	assert_int_equal(login_oidc_refresh_state(data, 1, NOW), LOGIN_OIDC_FRESH);
	assert_int_equal(login_oidc_refresh_state(data, 1, NOW + 300 - LOGIN_OIDC_REFRESH_MARGIN_SECONDS - 1),
			 LOGIN_OIDC_FRESH);
	assert_int_equal(login_oidc_refresh_state(data, 1, NOW + 300 - LOGIN_OIDC_REFRESH_MARGIN_SECONDS),
			 LOGIN_OIDC_REFRESH);
	assert_int_equal(login_oidc_refresh_state(data, 1, NOW + 1000), LOGIN_OIDC_REFRESH);
	assert_int_equal(login_oidc_refresh_state(data, 0, NOW + 290), LOGIN_OIDC_CANNOT);
	assert_int_equal(login_oidc_refresh_state(data, 1, NOW + 1800), LOGIN_OIDC_CANNOT);
	/* Without refresh_expires_at the refresh token's end is not known: try. */
	json_object_del(data, "refresh_expires_at");
	assert_int_equal(login_oidc_refresh_state(data, 1, NOW + 100000), LOGIN_OIDC_REFRESH);

	/* The refreshed session: new user and expiry; tokens the answer left
	 * out are kept from the old secret. */
	make_tokens(&n, NULL);
	free(n.id_token);
	n.id_token = NULL;
	n.expires_at = NOW + 600;
	json_array_append_new(json_object_get(n.user, "workspaces"), json_string("nw-cancer"));
	assert_int_equal(login_oidc_session_refreshed(data, secret, &n, &fresh, &fresh_secret), AL_OK);
	assert_int_equal(json_integer_value(json_object_get(fresh, "expires_at")), NOW + 600);
	assert_int_equal(json_array_size(json_object_get(json_object_get(fresh, "user"), "workspaces")), 2);
	assert_null(json_object_get(fresh, "refresh_expires_at"));
	v = json_dumps(fresh, 0); /* the data holds no token */
	assert_non_null(v);
	assert_null(strstr(v, "r-1"));
	assert_null(strstr(v, ID_TOKEN));
	free(v);
	assert_int_equal(login_oidc_secret_token(fresh_secret, "refresh_token", &v), AL_OK);
	assert_string_equal(v, "r-1");
	free(v);
	assert_int_equal(login_oidc_secret_token(fresh_secret, "id_token", &v), AL_OK);
	assert_string_equal(v, ID_TOKEN);
	free(v);
	free(fresh_secret);
	json_decref(fresh);
	/* New tokens replace the old. */
	n.refresh_token = strdup("r-2");
	n.id_token = strdup("eyJ.new.id");
	assert_int_equal(login_oidc_session_refreshed(data, secret, &n, &fresh, &fresh_secret), AL_OK);
	assert_int_equal(login_oidc_secret_token(fresh_secret, "refresh_token", &v), AL_OK);
	assert_string_equal(v, "r-2");
	free(v);
	assert_int_equal(login_oidc_secret_token(fresh_secret, "id_token", &v), AL_OK);
	assert_string_equal(v, "eyJ.new.id");
	free(v);
	free(fresh_secret);
	json_decref(fresh);
	/* Another username: the session does not change hands. */
	json_object_set_new(n.user, "username", json_string("eddie"));
	assert_int_equal(login_oidc_session_refreshed(data, secret, &n, &fresh, &fresh_secret), AL_ERR_UNAUTHORIZED);
	assert_null(fresh);
	assert_null(fresh_secret);

	oidc_tokens_free(&n);
	oidc_tokens_free(&t);
	json_decref(data);
	free(secret);
}

static void test_secret_token(void **state)
{
	char *tok = (char *)1;
	(void)state;
	assert_int_equal(login_oidc_secret_token(NULL, "id_token", &tok), AL_OK);
	assert_null(tok);
	assert_int_equal(login_oidc_secret_token("alk_0123", "id_token", &tok), AL_ERR_UNAUTHORIZED);
	assert_null(tok);
	assert_int_equal(login_oidc_secret_token("[\"id_token\"]", "id_token", &tok), AL_ERR_UNAUTHORIZED);
	assert_int_equal(login_oidc_secret_token("{\"id_token\":\"a\",\"id_token\":\"b\"}", "id_token", &tok),
			 AL_ERR_UNAUTHORIZED);
	assert_int_equal(login_oidc_secret_token("{\"id_token\":5}", "id_token", &tok), AL_OK);
	assert_null(tok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_url),
		cmocka_unit_test(test_pending),
		cmocka_unit_test(test_provider_errors),
		cmocka_unit_test(test_session),
		cmocka_unit_test(test_refresh),
		cmocka_unit_test(test_secret_token),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
