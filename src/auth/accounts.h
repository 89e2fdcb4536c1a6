/*
 * accounts.h - local accounts and bearer tokens for the embedded mode.
 *
 * What it promises:
 *  - Users live in SQLite (the same database file as the object store, through
 *    this module's own connection; tables `users` and `tokens`). Usernames match
 *    ^[a-z0-9][a-z0-9._@-]{0,62}$. Roles are a non-empty set drawn from
 *    researcher, data-engineer, approver, admin; they come back in that order.
 *  - Passwords are 10 to 1024 characters, stored only as argon2id hashes
 *    (libsodium crypto_pwhash_str, OPSLIMIT_INTERACTIVE / MEMLIMIT_INTERACTIVE:
 *    about 0.1 s and 64 MiB of RAM per hash). At most ACCOUNTS_MAX_HASHING
 *    hashes run at once per handle (others wait), so a burst of logins cannot
 *    take more than ACCOUNTS_MAX_HASHING x 64 MiB.
 *  - A login yields a token "alk_" + 64 hex digits (256 random bits). Only its
 *    SHA-256 is stored, so the database never holds a usable token, and a
 *    lookup by hash needs no constant-time compare.
 *  - A failed login says "invalid username or password" whether the user is
 *    unknown, disabled or the password is wrong, and takes about as long
 *    (unknown users are verified against a dummy hash).
 *  - Changing a password, disabling or deleting a user revokes their tokens.
 *  - Nothing here logs or returns a password, hash or token except the token
 *    handed to the caller by accounts_login.
 *
 * Thread safety: one handle may be used from many threads at once (a mutex
 * guards the connection; password hashing runs outside it).
 * Ownership: inputs are borrowed; json_t ** outputs are new references and
 * char ** outputs new strings, owned by the caller.
 */
#ifndef AL_AUTH_ACCOUNTS_H
#define AL_AUTH_ACCOUNTS_H

#include <jansson.h>
#include <stddef.h>

#define ACCOUNTS_PASSWORD_MIN 10   /* characters (UTF-8 code points) */
#define ACCOUNTS_PASSWORD_MAX 1024 /* bytes */
#define ACCOUNTS_TOKEN_TTL_DEFAULT (12 * 3600)     /* used for ttl_seconds == 0 */
#define ACCOUNTS_TOKEN_TTL_MAX (30 * 24 * 3600)
#define ACCOUNTS_MAX_HASHING 2

struct accounts;

/* Opens (creating tables if needed) the accounts in the SQLite file db_path. */
int accounts_open(struct accounts **out, const char *db_path);
/* NULL-safe. No call may be running on the handle. */
void accounts_close(struct accounts *a);

/* Tests only: lowers the argon2id cost of new hashes (e.g. to
 * crypto_pwhash_OPSLIMIT_MIN / crypto_pwhash_MEMLIMIT_MIN, so a test under
 * valgrind does not spend minutes hashing). Call before sharing the handle.
 * Stored hashes carry their own parameters, so verification is unaffected;
 * a login whose hash is weaker than the handle's setting is rehashed. */
void accounts_set_hash_cost(struct accounts *a, unsigned long long opslimit, size_t memlimit);

/* Checks a username / role list without touching the database, e.g. for an
 * API handler's validation. AL_OK or AL_ERR_INVALID with a message. */
int accounts_check_username(const char *username);
int accounts_check_roles(const json_t *roles);

/* roles: JSON array of role names. AL_ERR_EXISTS if the user exists. */
int accounts_user_create(struct accounts *a, const char *username, const char *password,
			 const json_t *roles);
/* *out = {"username", "roles": [...], "createdAt", "disabled": bool}; never the
 * hash. AL_ERR_NOT_FOUND if there is no such user. */
int accounts_user_get(struct accounts *a, const char *username, json_t **out);
/* *out = array of the objects above, ordered by username. */
int accounts_user_list(struct accounts *a, json_t **out);
int accounts_user_set_roles(struct accounts *a, const char *username, const json_t *roles);
/* Also revokes every token of the user. */
int accounts_user_set_password(struct accounts *a, const char *username, const char *password);
/* disabled != 0 disables the user (and revokes their tokens); 0 enables. */
int accounts_user_set_disabled(struct accounts *a, const char *username, int disabled);
/* Deletes the user and their tokens. AL_ERR_NOT_FOUND if absent. */
int accounts_user_delete(struct accounts *a, const char *username);
/* Number of users (e.g. to offer a first admin on an empty install). */
int accounts_count(struct accounts *a, size_t *n);

/* Checks the password and issues a token valid for ttl_seconds (0 means
 * ACCOUNTS_TOKEN_TTL_DEFAULT; at most ACCOUNTS_TOKEN_TTL_MAX). description
 * (may be NULL, e.g. "cli on host x") is kept with the token. *out_token is
 * a new string: show it to the user once, then wipe it (sodium_memzero)
 * and free it. Bad credentials: AL_ERR_UNAUTHORIZED
 * "invalid username or password". */
int accounts_login(struct accounts *a, const char *username, const char *password, int ttl_seconds,
		   const char *description, char **out_token);
/* Resolves a bearer token to its user (same object as accounts_user_get).
 * AL_ERR_UNAUTHORIZED when the token is malformed, unknown, expired or its
 * user is disabled. */
int accounts_authenticate(struct accounts *a, const char *token, json_t **out_user);
/* Revokes one token. Unknown tokens are not an error (logout is idempotent). */
int accounts_logout(struct accounts *a, const char *token);

#endif
