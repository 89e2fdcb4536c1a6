/*
 * credstore.h - the embedded mode's store of source-system credentials: what
 * a Kubernetes Secret is in the cluster. Key -> value, e.g.
 * "DatabricksPassword" -> "...", as named by a datasource's
 * connections[].credentials.{userKey,passwordKey}.
 *
 * What it promises:
 *  - Values are encrypted at rest (libsodium crypto_secretbox_easy,
 *    XSalsa20-Poly1305, a fresh random nonce per write) under a 32-byte key
 *    kept in a separate key file, so a copy of the database alone reveals no
 *    value. The ciphertext also binds the entry's key name: swapping rows in
 *    the database makes decryption fail rather than hand out another value.
 *  - The key file (64 hex digits) is created with mode 0600 when missing, and
 *    refused when it is not a regular file owned by this user, or is readable
 *    or writable by group or others. A key file that does not match the
 *    database (not the one the credentials were written with) is refused at
 *    open with a clear message; keep it with the database's backups.
 *  - Table `credentials(key, nonce, ciphertext, updated_at)` lives in the
 *    airlock SQLite database (own connection, WAL, busy_timeout, BEGIN
 *    IMMEDIATE), plus a one-row `credentials_meta` for the key check.
 *  - Keys match ^[A-Za-z0-9._-]{1,253}$ (as Secret keys). Values are text up
 *    to CREDSTORE_VALUE_MAX bytes.
 *  - Values are never logged, never listed, and never put in error messages.
 *
 * Thread safety: one handle may be used from many threads at once.
 * Ownership: inputs are borrowed; a value from credstore_get is the caller's,
 * released with credstore_value_free (which wipes it); json_t ** outputs are
 * new references.
 */
#ifndef AL_AUTH_CREDSTORE_H
#define AL_AUTH_CREDSTORE_H

#include <jansson.h>

#define CREDSTORE_VALUE_MAX ((size_t)1 << 20)

struct credstore;

/* Opens the credentials in the SQLite file db_path under the key in key_path
 * (created, 0600, when missing; its directory must exist or is created 0700).
 * Errors: AL_ERR_FORBIDDEN for an unsafe key file, AL_ERR_INVALID for a
 * malformed or mismatched key file, AL_ERR_IO for file or database errors. */
int credstore_open(struct credstore **out, const char *db_path, const char *key_path);
/* NULL-safe; wipes the key from memory. */
void credstore_close(struct credstore *cs);

/* Creates or replaces the value of `key`. */
int credstore_set(struct credstore *cs, const char *key, const char *value);
/* *out_value: new NUL-terminated string; free it with credstore_value_free.
 * AL_ERR_NOT_FOUND when absent; AL_ERR_IO when the stored value does not
 * decrypt (altered in the database). */
int credstore_get(struct credstore *cs, const char *key, char **out_value);
/* Wipes and frees a value from credstore_get. NULL-safe. */
void credstore_value_free(char *value);
/* AL_ERR_NOT_FOUND when absent. */
int credstore_delete(struct credstore *cs, const char *key);
/* *out: JSON array of key names, sorted; never values. */
int credstore_list_keys(struct credstore *cs, json_t **out);
/* AL_OK or AL_ERR_INVALID naming what is wrong with a key name. */
int credstore_check_key(const char *key);

#endif
