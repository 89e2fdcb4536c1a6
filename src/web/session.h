/*
 * session.h - server-side sessions of the web frontend, and their CSRF
 * tokens.
 *
 * What it promises:
 *  - A session id is 256 random bits from libsodium, base64url without
 *    padding (SESSION_ID_LEN characters). It lives only in the browser's
 *    cookie. The database (table web_sessions in the airlock SQLite file,
 *    through this module's own connection) keeps its SHA-256, so a copy of
 *    the database opens no session, and a lookup by hash needs no
 *    constant-time compare.
 *  - Sessions are in the database, not in memory, so restarting
 *    `airlock serve` does not log everybody out, and they survive a crash
 *    like every other acknowledged write.
 *  - Each session has an idle timeout (no request for idle_seconds) and an
 *    absolute one (max_seconds after creation, whatever the activity). An
 *    expired session is deleted when seen; session_purge_expired (also run
 *    on every session_create) deletes the rest.
 *  - A session holds `data` (a JSON object: who, how they logged in; never a
 *    secret) and optionally one `secret` (e.g. the bearer token behind a
 *    local login, or an OIDC refresh token). The secret is encrypted
 *    (XSalsa20-Poly1305) with a key derived from the session id, which the
 *    server does not store: the database alone cannot reveal it.
 *  - The CSRF token of a session is derived from its id with a keyed hash
 *    (BLAKE2b, key = the id's 32 random bytes): per session, stable for the
 *    session's life, and useless without the cookie. It is compared in
 *    constant time. The same derivation protects the login form through a
 *    short-lived pre-login cookie (see docs/frontend.md).
 *
 * Thread safety: one store may be used from many threads (a mutex guards
 * its connection). The pure functions (ids, tokens, cookies) are
 * thread-safe.
 * Ownership: inputs are borrowed; a struct session filled here owns its data
 * and secret: release it with session_free (which wipes the secret).
 */
#ifndef AL_WEB_SESSION_H
#define AL_WEB_SESSION_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define SESSION_ID_BYTES 32
#define SESSION_ID_LEN 43   /* base64url of 32 bytes, no padding */
#define SESSION_CSRF_LEN 43
#define SESSION_IDLE_DEFAULT (30 * 60)
#define SESSION_MAX_DEFAULT (12 * 3600)
#define SESSION_SECRET_MAX 16384 /* bytes of one session secret */

/* A fresh random session id (NUL-terminated). */
int session_new_id(char out[SESSION_ID_LEN + 1]);
/* 1 if id has the shape of a session id (length, alphabet, decodes to 32
 * bytes), else 0. Say nothing else about a cookie that fails this. */
int session_id_valid(const char *id);
/* The CSRF token of session `id` (which must be valid: else AL_ERR_INVALID). */
int session_csrf_token(const char *id, char out[SESSION_CSRF_LEN + 1]);
/* 1 if `token` is the CSRF token of session `id` (constant time); 0 for
 * anything else, including NULL or a malformed id. */
int session_csrf_check(const char *id, const char *token);

/* Finds cookie `name` in a Cookie request header ("a=1; b=2"). On success
 * *value points into header and *len is its length; AL_ERR_NOT_FOUND when
 * absent (or the header is NULL). */
int session_cookie_find(const char *header, const char *name, const char **value, size_t *len);

struct session_store;

struct session {
	char id[SESSION_ID_LEN + 1];
	char csrf[SESSION_CSRF_LEN + 1];
	json_t *data;        /* as given to session_create */
	char *secret;        /* NULL when none; wiped by session_free */
	int64_t created_at;  /* Unix seconds */
	int64_t last_seen;
	int64_t expires_at;  /* absolute expiry */
};

/* Opens (creating the table) the sessions in the SQLite file db_path.
 * idle_seconds / max_seconds: 0 means the defaults above; idle is at most max. */
int session_store_open(struct session_store **out, const char *db_path, int idle_seconds, int max_seconds);
/* NULL-safe. No call may be running on the store. */
void session_store_close(struct session_store *s);
/* Tests: a clock in Unix seconds instead of time(). Call before sharing. */
void session_store_set_clock(struct session_store *s, int64_t (*now)(void *ud), void *ud);
int session_store_idle_seconds(const struct session_store *s);
int session_store_max_seconds(const struct session_store *s);

/* Creates a session with a new id. data: a JSON object (copied). secret:
 * NULL or a string of at most SESSION_SECRET_MAX bytes. *out is filled (free
 * with session_free). */
int session_create(struct session_store *s, const json_t *data, const char *secret, struct session *out);
/* Looks session `id` up, checks its timeouts and records this use (the
 * idle clock is written at most once per min(60 s, idle/4) to spare the
 * disk). AL_ERR_UNAUTHORIZED "your session has ended" when the id is
 * malformed, unknown or expired. */
int session_get(struct session_store *s, const char *id, struct session *out);
/* Replaces the data and the secret (NULL: none) of session `id`, keeping
 * its id (so its cookie and CSRF token), its creation time and its absolute
 * expiry: e.g. an OIDC session whose tokens were refreshed. Last write wins
 * between concurrent updates. AL_ERR_UNAUTHORIZED when the session is
 * unknown or has ended (an ended session is not brought back); the
 * caller's copies (struct session) are not touched. */
int session_update(struct session_store *s, const char *id, const json_t *data, const char *secret);
/* Deletes the session (logout). Unknown ids are not an error. */
int session_destroy(struct session_store *s, const char *id);
/* Deletes every expired session; *n (may be NULL) is how many. */
int session_purge_expired(struct session_store *s, size_t *n);
/* Number of stored sessions, expired or not (tests, metrics). */
int session_count(struct session_store *s, size_t *n);

/* NULL-safe; leaves *ss zeroed. */
void session_free(struct session *ss);

#endif
