/*
 * oidc.h - an OpenID Connect relying party for one provider (Keycloak):
 * bearer tokens for /api/v1, and the pieces of the authorization code flow
 * with PKCE that the web frontend drives. docs/oidc.md tells the whole story.
 *
 * What it promises:
 *  - Discovery: {issuer}/.well-known/openid-configuration, whose "issuer"
 *    must equal the configured one exactly. Endpoints must be https://, or
 *    http:// on a loopback address (a test Keycloak). Fetched on first need
 *    and kept; a failed attempt is retried at most every OIDC_RETRY_MS.
 *  - Keys: the JWKS at jwks_uri, cached; fetched again when older than
 *    OIDC_JWKS_MAX_AGE_MS, and when a token names a kid we do not hold (key
 *    rotation) - but at most once per OIDC_JWKS_REFETCH_MS, so a stream of
 *    tokens with made-up kids cannot make us hammer the provider. One fetch
 *    runs at a time; if a refetch fails, the keys we had are kept.
 *  - Tokens: verified by src/auth/jwt (allow-listed asymmetric algorithms,
 *    our keys only), then iss, aud/azp (the client id), exp/nbf/iat with the
 *    configured leeway, and typ "Bearer" when the token says.
 *  - Identity: username from preferred_username (which must be a valid
 *    airlock username); roles from realm_access.roles and
 *    resource_access.<clientId>.roles, mapped through roleMapping (unmapped
 *    roles are ignored); workspaces from the groups claim: every entry
 *    <workspaceGroupPrefix><name> with no further '/' gives <name>.
 *    The user object is {"username", "roles": [...], "workspaces": [...],
 *    "subject", "source": "oidc"}; roles are in airlock's order (researcher,
 *    data-engineer, approver, admin).
 *  - Secrets (the client secret, tokens, code verifiers) never reach logs or
 *    error messages; the module wipes the copies it frees.
 *
 * Thread safety: after oidc_open, every function may be called from many
 * threads at once on one handle (a mutex guards discovery and the key cache;
 * network fetches run outside it). oidc_set_http must be called before the
 * handle is shared.
 * Ownership: inputs are borrowed; json_t ** outputs are new references and
 * char ** outputs new strings, owned by the caller; structs filled by this
 * module are released with their _free function, which wipes secrets.
 */
#ifndef AL_AUTH_OIDC_H
#define AL_AUTH_OIDC_H

#include <jansson.h>
#include <stdint.h>

#include "common/buf.h"
#include "config/config.h"

#define OIDC_RETRY_MS 5000              /* discovery / JWKS after a failure */
#define OIDC_JWKS_REFETCH_MS 10000      /* unknown kid: at most one refetch per this */
#define OIDC_JWKS_MAX_AGE_MS (3600 * 1000)
#define OIDC_HTTP_TIMEOUT_MS 10000
#define OIDC_MAX_RESPONSE (1 << 20)     /* bytes of one answer from the provider */

struct oidc;

/* Copies what it needs from cfg (cfg->issuer must be set) and reads the
 * client secret file if one is named. Does not contact the provider. */
int oidc_open(struct oidc **out, const struct config_oidc *cfg);
/* NULL-safe. No call may be running on the handle. */
void oidc_close(struct oidc *o);

/* One HTTP exchange with the provider: GET when form is NULL, else a POST of
 * application/x-www-form-urlencoded `form`. `authorization` (NULL: none) is
 * a whole Authorization header value. The answer body goes to `body` (a
 * bounded buf the caller initialised); *status is the HTTP status. Returns
 * AL_OK when an answer arrived, whatever its status. */
typedef int (*oidc_http_fn)(void *ud, const char *url, const char *authorization, const char *form,
			    long *status, struct buf *body);
/* Tests: replace libcurl with fn, and set how often an unknown kid may make
 * us refetch the keys (refetch_ms; 0 keeps OIDC_JWKS_REFETCH_MS). */
void oidc_set_http(struct oidc *o, oidc_http_fn fn, void *ud);
void oidc_set_refetch_ms(struct oidc *o, int64_t refetch_ms);

/* Fetches discovery and keys now (e.g. at start, to report a bad issuer
 * early). AL_ERR_UNAVAILABLE when the provider cannot be reached. */
int oidc_prefetch(struct oidc *o);

/* 1 if `token` has the shape of a JWT (and so is for oidc_authenticate,
 * not a local airlock token). */
int oidc_is_jwt(const char *token);

/* Verifies an access token presented as a bearer token and maps it to a
 * user (see above). AL_ERR_UNAUTHORIZED for any token that is not good;
 * AL_ERR_UNAVAILABLE when the provider's keys cannot be had. */
int oidc_authenticate(struct oidc *o, const char *token, json_t **out_user);

/* Claims already verified -> user object. Exposed for tests. */
int oidc_user_from_claims(struct oidc *o, const json_t *claims, json_t **out_user);

/* ---- authorization code flow with PKCE (for the frontend) ---------------- */

/* Start of a browser login. Keep state, nonce and code_verifier on the
 * server (in the pre-login session), send the browser to url. */
struct oidc_login {
	char *url;            /* the authorization endpoint with every parameter */
	char *state;          /* 256 random bits, base64url: compare on the callback */
	char *nonce;          /* 256 random bits: bound into the ID token */
	char *code_verifier;  /* PKCE secret (RFC 7636), never leaves the server */
};
/* redirect_uri: this airlock's callback URL as registered at the provider.
 * scope: NULL means "openid". */
int oidc_login_start(struct oidc *o, const char *redirect_uri, const char *scope, struct oidc_login *out);
void oidc_login_free(struct oidc_login *l);

/* 1 if the state returned on the callback equals the one kept (constant
 * time; NULL on either side is 0). */
int oidc_state_equal(const char *kept, const char *returned);

/* What a finished login yields. */
struct oidc_tokens {
	json_t *user;          /* as oidc_authenticate gives */
	char *access_token;    /* secrets: wiped by oidc_tokens_free */
	char *id_token;        /* keep for the logout URL's id_token_hint */
	char *refresh_token;   /* NULL when the provider sent none */
	int64_t expires_at;    /* Unix seconds: the access token's exp */
	int64_t refresh_expires_at; /* when the refresh token ends (Keycloak's
				     * refresh_expires_in); 0: not said */
};
/* Exchanges the authorization code at the token endpoint (client secret
 * from clientSecretFile, sent with HTTP Basic; the PKCE code_verifier), then
 * verifies the ID token (signature, iss, aud = client id, azp, exp, iat,
 * nonce) and the access token, and checks both name the same subject.
 * AL_ERR_UNAUTHORIZED when the provider refuses the code or a token is bad;
 * AL_ERR_INVALID when no client secret is configured. */
int oidc_login_finish(struct oidc *o, const char *code, const char *redirect_uri, const char *code_verifier,
		      const char *nonce, struct oidc_tokens *out);
void oidc_tokens_free(struct oidc_tokens *t);

/* The refresh grant (grant_type=refresh_token at the token endpoint, client
 * authentication as for the code). The answer is checked as a login's: the
 * access token always, the ID token when the provider sends one (without a
 * nonce: a refreshed ID token need not repeat it); both must name
 * `subject`, the person the session was made for, and the user is read
 * afresh from the new access token (roles and groups as they are now).
 * out->refresh_token is NULL when the provider sent no new one (keep the
 * old), out->id_token likewise.
 * AL_ERR_UNAUTHORIZED when the provider refuses (invalid_grant: its session
 * ended, the user was logged out or disabled, the token expired or was
 * used) or a token is bad: the web session must end. AL_ERR_UNAVAILABLE
 * when the provider cannot be reached or answers 5xx: nothing is known. */
int oidc_refresh(struct oidc *o, const char *refresh_token, const char *subject, struct oidc_tokens *out);

/* RP-initiated logout: the provider's end_session_endpoint with
 * id_token_hint (may be NULL), client_id and post_logout_redirect_uri (may
 * be NULL). AL_ERR_NOT_FOUND if the provider has no such endpoint. */
int oidc_logout_url(struct oidc *o, const char *id_token_hint, const char *post_logout_redirect_uri, char **out);

/* The issuer and client id this handle was opened with (live as long as it). */
const char *oidc_issuer(const struct oidc *o);
const char *oidc_client_id(const struct oidc *o);

/* Percent-encodes s for a query string or form body into b (RFC 3986
 * unreserved characters stay). */
int oidc_url_encode(struct buf *b, const char *s);

#endif
