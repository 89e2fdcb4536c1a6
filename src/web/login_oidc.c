#include "web/login_oidc.h"

#include "common/error.h"
#include "common/util.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SOURCE_PENDING "oidc-pending"
#define SOURCE_OIDC "oidc"
#define ENDED "your session has ended: log in again"
#define START_AGAIN                                                                                       \
	"This login cannot be finished: it was already used, took longer than 10 minutes, or was started " \
	"in another browser. Nothing was changed; please log in again."

/* Characters of a host[:port], an IPv6 literal included. Anything else in
 * Host would end up in the redirect URI we send to the provider. */
static int host_ok(const char *h)
{
	if (!h || !*h || strlen(h) > 255)
		return 0;
	for (const char *c = h; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
		      *c == '-' || *c == ':' || *c == '[' || *c == ']'))
			return 0;
	return 1;
}

int login_oidc_base_url(struct buf *out, const char *external_url, int tls, const char *host)
{
	if (external_url && *external_url)
		return buf_appends(out, external_url);
	if (!host_ok(host))
		return al_error_set(AL_ERR_INVALID, "the request's Host header is not a host name: set web.externalUrl "
						    "to the address people use");
	return buf_appendf(out, "%s://%s", tls ? "https" : "http", host);
}

int login_oidc_pending_data(const struct oidc_login *l, int64_t now, json_t **out)
{
	*out = json_pack("{s:s, s:s, s:s, s:I}", "source", SOURCE_PENDING, "state", l->state, "nonce", l->nonce,
			 "started", (json_int_t)now);
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

int login_oidc_pending_check(const json_t *data, const char *state, int64_t now)
{
	const char *source = json_string_value(json_object_get(data, "source"));
	json_t *started = json_object_get(data, "started");

	if (!source || strcmp(source, SOURCE_PENDING) || !json_is_integer(started) ||
	    !json_string_value(json_object_get(data, "nonce")))
		return al_error_set(AL_ERR_INVALID, START_AGAIN);
	if (now - (int64_t)json_integer_value(started) > LOGIN_OIDC_PENDING_SECONDS ||
	    (int64_t)json_integer_value(started) > now + 60)
		return al_error_set(AL_ERR_INVALID, START_AGAIN);
	if (!oidc_state_equal(json_string_value(json_object_get(data, "state")), state))
		return al_error_set(AL_ERR_INVALID, START_AGAIN);
	return AL_OK;
}

int login_oidc_provider_error(const char *error)
{
	/* Only known codes are named: the rest of what the provider (or whoever
	 * made the link) put in the URL is not repeated to the person. */
	if (!error)
		error = "";
	if (!strcmp(error, "access_denied"))
		return al_error_set(AL_ERR_UNAUTHORIZED, "The login was cancelled or refused at Keycloak. Nothing was "
							 "changed; you can log in again.");
	if (!strcmp(error, "temporarily_unavailable") || !strcmp(error, "server_error"))
		return al_error_set(AL_ERR_UNAVAILABLE, "Keycloak could not complete the login just now. Please try "
							"again in a minute.");
	if (!strcmp(error, "login_required") || !strcmp(error, "interaction_required") ||
	    !strcmp(error, "consent_required"))
		return al_error_set(AL_ERR_UNAUTHORIZED, "Keycloak needs you to log in there first (%s). Please log "
							 "in again.",
				    error);
	if (!strcmp(error, "unauthorized_client") || !strcmp(error, "invalid_request") ||
	    !strcmp(error, "invalid_scope") || !strcmp(error, "unsupported_response_type"))
		return al_error_set(AL_ERR_UNAUTHORIZED, "Keycloak refused this airlock's login request (%s): the "
							 "airlock's OIDC client is not set up as it needs. Tell the "
							 "administrator.",
				    error);
	return al_error_set(AL_ERR_UNAUTHORIZED, "Keycloak did not complete the login. Nothing was changed; you can "
						 "log in again.");
}

/* {"id_token", "refresh_token"} as JSON text; either may be NULL. */
static int secret_json(const char *id_token, const char *refresh_token, char **out)
{
	json_t *o = json_object(), *v;
	const char *k;
	int rc = AL_OK;

	*out = NULL;
	if (!o)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if ((id_token && json_object_set_new(o, "id_token", json_string(id_token))) ||
	    (refresh_token && json_object_set_new(o, "refresh_token", json_string(refresh_token))) ||
	    !(*out = json_dumps(o, JSON_COMPACT)))
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	/* jansson copied the tokens: wipe its copies too. */
	json_object_foreach(o, k, v)
		sodium_memzero((char *)json_string_value(v), json_string_length(v));
	json_decref(o);
	return rc;
}

static int session_data(const struct oidc_tokens *t, json_t **data)
{
	const char *username = json_string_value(json_object_get(t->user, "username"));
	*data = NULL;
	if (!username || !json_is_object(t->user))
		return al_error_set(AL_ERR_INTERNAL, "oidc login without a user");
	*data = json_pack("{s:s, s:s, s:O, s:I}", "source", SOURCE_OIDC, "username", username, "user", t->user,
			  "expires_at", (json_int_t)t->expires_at);
	if (*data && t->refresh_expires_at &&
	    json_object_set_new(*data, "refresh_expires_at", json_integer((json_int_t)t->refresh_expires_at))) {
		json_decref(*data);
		*data = NULL;
	}
	return *data ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

int login_oidc_session_new(const struct oidc_tokens *t, json_t **data, char **secret)
{
	int rc;
	*secret = NULL;
	if ((rc = session_data(t, data)))
		return rc;
	if ((rc = secret_json(t->id_token, t->refresh_token, secret))) {
		json_decref(*data);
		*data = NULL;
	}
	return rc;
}

int login_oidc_session_user(const json_t *data, int64_t now, json_t **user)
{
	const char *source = json_string_value(json_object_get(data, "source"));
	const json_t *u = json_object_get(data, "user"), *exp = json_object_get(data, "expires_at");
	const char *name = json_string_value(json_object_get(u, "username"));
	const char *dname = json_string_value(json_object_get(data, "username"));

	*user = NULL;
	if (!source || strcmp(source, SOURCE_OIDC) || !json_is_integer(exp) || !name || !dname || strcmp(name, dname))
		return al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
	if ((int64_t)json_integer_value(exp) <= now)
		return al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
	if (!(*user = json_deep_copy(u)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

int login_oidc_secret_token(const char *secret, const char *name, char **out)
{
	json_t *o, *v;
	const char *k;
	int rc = AL_OK;

	*out = NULL;
	if (!secret)
		return AL_OK;
	if (!(o = json_loads(secret, JSON_REJECT_DUPLICATES, NULL)) || !json_is_object(o)) {
		json_decref(o);
		return al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
	}
	if (json_string_value(json_object_get(o, name)) && !(*out = util_strdup(json_string_value(json_object_get(o, name)))))
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	json_object_foreach(o, k, v)
		if (json_is_string(v))
			sodium_memzero((char *)json_string_value(v), json_string_length(v));
	json_decref(o);
	return rc;
}

enum login_oidc_refresh login_oidc_refresh_state(const json_t *data, int have_refresh_token, int64_t now)
{
	json_t *exp = json_object_get(data, "expires_at"), *rexp = json_object_get(data, "refresh_expires_at");

	if (!json_is_integer(exp) || now < (int64_t)json_integer_value(exp) - LOGIN_OIDC_REFRESH_MARGIN_SECONDS)
		return LOGIN_OIDC_FRESH;
	if (!have_refresh_token || (json_is_integer(rexp) && now >= (int64_t)json_integer_value(rexp)))
		return LOGIN_OIDC_CANNOT;
	return LOGIN_OIDC_REFRESH;
}

int login_oidc_session_refreshed(const json_t *old_data, const char *old_secret, const struct oidc_tokens *t,
				 json_t **data, char **secret)
{
	const char *was = json_string_value(json_object_get(old_data, "username"));
	const char *now_name = json_string_value(json_object_get(t->user, "username"));
	char *id_token = NULL, *refresh_token = NULL;
	int rc;

	*data = NULL;
	*secret = NULL;
	/* The airlock knows people by username: a session does not change
	 * hands, even if the provider renamed its user meanwhile. */
	if (!was || !now_name || strcmp(was, now_name))
		return al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
	if ((rc = session_data(t, data)))
		return rc;
	/* A refresh answer may leave out either token: the old one stays. */
	if ((!t->id_token && (rc = login_oidc_secret_token(old_secret, "id_token", &id_token))) ||
	    (!t->refresh_token && (rc = login_oidc_secret_token(old_secret, "refresh_token", &refresh_token))))
		goto out;
	rc = secret_json(t->id_token ? t->id_token : id_token, t->refresh_token ? t->refresh_token : refresh_token,
			 secret);
out:
	if (id_token) {
		sodium_memzero(id_token, strlen(id_token));
		free(id_token);
	}
	if (refresh_token) {
		sodium_memzero(refresh_token, strlen(refresh_token));
		free(refresh_token);
	}
	if (rc) {
		json_decref(*data);
		*data = NULL;
	}
	return rc;
}
