/*
 * login_oidc.h - the pure parts of the web frontend's OIDC login (the
 * routes themselves are in web/frontend.c, the protocol in auth/oidc.h):
 * what the pending and the logged-in sessions hold, the checks on the
 * callback, and the messages a person sees. No I/O, no clock of its own
 * (callers pass `now`), so every rule here is unit-tested.
 *
 * What it promises:
 *  - A pending login (between GET /login/oidc and the callback) is a
 *    session whose data is {"source": "oidc-pending", "state", "nonce",
 *    "started"} and whose secret is the PKCE code verifier. It is good for
 *    LOGIN_OIDC_PENDING_SECONDS after it started, for one callback whose
 *    state equals the kept one (constant time).
 *  - A logged-in OIDC session's data is {"source": "oidc", "username",
 *    "user", "expires_at", "refresh_expires_at"}: user is the verified user
 *    of auth/oidc (username, roles, workspaces from the groups claim),
 *    expires_at the access token's expiry and refresh_expires_at (absent
 *    when the provider did not say) the refresh token's. Its secret is the
 *    JSON {"id_token", "refresh_token"} (either may be absent). The data
 *    never holds a token.
 *  - Such a session gives its user only while now < expires_at (the
 *    access token's expiry). From LOGIN_OIDC_REFRESH_MARGIN_SECONDS before
 *    that, the frontend refreshes the tokens (login_oidc_refresh_state says
 *    when), and the refreshed session (login_oidc_session_refreshed) has the
 *    user as the provider describes them now and a new expires_at; a
 *    session with no (or an expired) refresh token ends at expires_at.
 *  - Messages name what went wrong and what to do; none contains a token,
 *    a code or anything the provider sent but a known error code.
 *
 * Ownership: inputs are borrowed; json_t ** outputs are new references and
 * char ** outputs new strings owned by the caller (secrets: wipe before
 * free, e.g. with sodium_memzero).
 */
#ifndef AL_WEB_LOGIN_OIDC_H
#define AL_WEB_LOGIN_OIDC_H

#include <jansson.h>
#include <stdint.h>

#include "auth/oidc.h"
#include "common/buf.h"

/* A login must come back from the provider within this many seconds. */
#define LOGIN_OIDC_PENDING_SECONDS 600

/* Appends this airlock's origin ("scheme://host[:port]", no slash at the
 * end) to out: external_url when set; otherwise http(s) (tls) and the
 * request's Host, which must look like a host (AL_ERR_INVALID otherwise:
 * set web.externalUrl). */
int login_oidc_base_url(struct buf *out, const char *external_url, int tls, const char *host);

/* The data of a pending login (see above). */
int login_oidc_pending_data(const struct oidc_login *l, int64_t now, json_t **out);

/* AL_OK if `data` is a pending login still in time and `state` (from the
 * callback's query; may be NULL) is its state. Otherwise AL_ERR_INVALID
 * with a message for a person (start again). */
int login_oidc_pending_check(const json_t *data, const char *state, int64_t now);

/* The provider sent ?error=<code> to the callback (RFC 6749 4.1.2.1). Sets a
 * message for a person and returns AL_ERR_UNAVAILABLE for
 * temporarily_unavailable / server_error, AL_ERR_UNAUTHORIZED otherwise. */
int login_oidc_provider_error(const char *error);

/* The data and the secret of the session a finished login makes. */
int login_oidc_session_new(const struct oidc_tokens *t, json_t **data, char **secret);

/* The user of a logged-in OIDC session (a new copy of data.user), if the
 * session is one and its tokens have not expired at `now`.
 * AL_ERR_UNAUTHORIZED ("your session has ended") otherwise. */
int login_oidc_session_user(const json_t *data, int64_t now, json_t **user);

/* How long before the access token's expiry a session's tokens are
 * refreshed: a request in that window refreshes, so an active person never
 * meets the expiry, and a page is never served on a token about to end. */
#define LOGIN_OIDC_REFRESH_MARGIN_SECONDS 30

enum login_oidc_refresh {
	LOGIN_OIDC_FRESH = 0, /* the tokens are good for longer than the margin */
	LOGIN_OIDC_REFRESH,   /* refresh now */
	LOGIN_OIDC_CANNOT,    /* due, but no refresh token or it has expired: the
			       * session ends at expires_at */
};
/* What to do with the tokens of OIDC session `data` at `now`;
 * have_refresh_token: the session's secret holds one. */
enum login_oidc_refresh login_oidc_refresh_state(const json_t *data, int have_refresh_token, int64_t now);

/* The data and secret of a session after a refresh: the user, expires_at
 * and refresh_expires_at from t; the secret's tokens from t, each kept from
 * old_secret when t has none. AL_ERR_UNAUTHORIZED when t names another
 * username than old_data (the session ends). */
int login_oidc_session_refreshed(const json_t *old_data, const char *old_secret, const struct oidc_tokens *t,
				 json_t **data, char **secret);

/* One token ("id_token" or "refresh_token") from a session's secret.
 * *out is NULL (and AL_OK) when the secret has none. */
int login_oidc_secret_token(const char *secret, const char *name, char **out);

#endif
