#include "web/session.h"

#include "auth/authdb.h"
#include "common/error.h"
#include "common/util.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ENDED "your session has ended: log in again"
#define CSRF_CONTEXT "airlock-csrf-v1"
#define SECRET_CONTEXT "airlock-session-secret-v1"

/* Times are Unix seconds so the timeouts are plain integer comparisons.
 * `secret` is nonce || secretbox(secret) under a key derived from the id. */
static const char schema[] =
	"CREATE TABLE IF NOT EXISTS web_sessions ("
	" id_hash TEXT PRIMARY KEY,"
	" data TEXT NOT NULL,"
	" secret BLOB,"
	" created_at INTEGER NOT NULL,"
	" last_seen INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS web_sessions_by_expiry ON web_sessions(expires_at);";

struct session_store {
	sqlite3 *db;
	pthread_mutex_t lock; /* guards db */
	int idle;
	int max;
	int64_t (*now)(void *ud);
	void *now_ud;
};

/* ---- ids and tokens ------------------------------------------------------ */

static int id_decode(const char *id, unsigned char raw[SESSION_ID_BYTES])
{
	size_t n = 0;
	const char *end = NULL;
	if (!id || strlen(id) != SESSION_ID_LEN)
		return 0;
	/* libsodium refuses characters outside the alphabet and non-zero
	 * trailing bits, so each id has exactly one spelling. */
	if (sodium_base642bin(raw, SESSION_ID_BYTES, id, SESSION_ID_LEN, NULL, &n, &end,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    n != SESSION_ID_BYTES || end != id + SESSION_ID_LEN) {
		sodium_memzero(raw, SESSION_ID_BYTES);
		return 0;
	}
	return 1;
}

int session_id_valid(const char *id)
{
	unsigned char raw[SESSION_ID_BYTES];
	int ok = id_decode(id, raw);
	sodium_memzero(raw, sizeof(raw));
	return ok;
}

int session_new_id(char out[SESSION_ID_LEN + 1])
{
	unsigned char raw[SESSION_ID_BYTES];
	if (sodium_init() < 0)
		return al_error_set(AL_ERR_INTERNAL, "libsodium cannot start");
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(out, SESSION_ID_LEN + 1, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
	return AL_OK;
}

/* A 32-byte value bound to the id and a purpose. */
static int derive(const char *id, const char *context, unsigned char out[32])
{
	unsigned char raw[SESSION_ID_BYTES];
	int rc = AL_OK;
	if (!id_decode(id, raw))
		return al_error_set(AL_ERR_INVALID, "not a session id");
	if (crypto_generichash(out, 32, (const unsigned char *)context, strlen(context), raw, sizeof(raw)) != 0)
		rc = al_error_set(AL_ERR_INTERNAL, "cannot derive a session key");
	sodium_memzero(raw, sizeof(raw));
	return rc;
}

int session_csrf_token(const char *id, char out[SESSION_CSRF_LEN + 1])
{
	unsigned char mac[32];
	int rc = derive(id, CSRF_CONTEXT, mac);
	if (rc)
		return rc;
	sodium_bin2base64(out, SESSION_CSRF_LEN + 1, mac, sizeof(mac), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(mac, sizeof(mac));
	return AL_OK;
}

int session_csrf_check(const char *id, const char *token)
{
	char want[SESSION_CSRF_LEN + 1];
	int ok;
	if (!token || strlen(token) != SESSION_CSRF_LEN || session_csrf_token(id, want))
		return 0;
	ok = sodium_memcmp(want, token, SESSION_CSRF_LEN) == 0;
	sodium_memzero(want, sizeof(want));
	return ok;
}

int session_cookie_find(const char *header, const char *name, const char **value, size_t *len)
{
	size_t nlen = name ? strlen(name) : 0;
	const char *p = header;

	*value = NULL;
	*len = 0;
	while (p && *p && nlen) {
		const char *end, *eq;
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		end = strchr(p, ';');
		if (!end)
			end = p + strlen(p);
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq && (size_t)(eq - p) == nlen && !memcmp(p, name, nlen)) {
			const char *v = eq + 1, *ve = end;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			/* RFC 6265 allows a value in double quotes. */
			if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
				v++;
				ve--;
			}
			*value = v;
			*len = (size_t)(ve - v);
			return AL_OK;
		}
		p = end;
	}
	return AL_ERR_NOT_FOUND;
}

/* ---- the store ------------------------------------------------------------ */

static int64_t now_default(void *ud)
{
	(void)ud;
	return (int64_t)time(NULL);
}

int session_store_open(struct session_store **out, const char *db_path, int idle_seconds, int max_seconds)
{
	struct session_store *s;
	int rc;

	*out = NULL;
	if (sodium_init() < 0)
		return al_error_set(AL_ERR_INTERNAL, "libsodium cannot start");
	if (idle_seconds < 0 || max_seconds < 0)
		return al_error_set(AL_ERR_INVALID, "session timeouts must be positive");
	s = calloc(1, sizeof(*s));
	if (!s)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	s->max = max_seconds ? max_seconds : SESSION_MAX_DEFAULT;
	s->idle = idle_seconds ? idle_seconds : SESSION_IDLE_DEFAULT;
	if (s->idle > s->max)
		s->idle = s->max;
	s->now = now_default;
	if ((rc = authdb_open(&s->db, db_path, schema))) {
		free(s);
		return al_error_wrap(rc, "web sessions");
	}
	if (pthread_mutex_init(&s->lock, NULL)) {
		sqlite3_close(s->db);
		free(s);
		return al_error_set(AL_ERR_INTERNAL, "cannot create a mutex");
	}
	*out = s;
	return AL_OK;
}

void session_store_close(struct session_store *s)
{
	if (!s)
		return;
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void session_store_set_clock(struct session_store *s, int64_t (*now)(void *ud), void *ud)
{
	s->now = now ? now : now_default;
	s->now_ud = ud;
}

int session_store_idle_seconds(const struct session_store *s)
{
	return s->idle;
}

int session_store_max_seconds(const struct session_store *s)
{
	return s->max;
}

void session_free(struct session *ss)
{
	if (!ss)
		return;
	json_decref(ss->data);
	if (ss->secret) {
		sodium_memzero(ss->secret, strlen(ss->secret));
		free(ss->secret);
	}
	sodium_memzero(ss, sizeof(*ss));
}

static void id_hash(const char *id, char out[UTIL_SHA256_HEX_LEN + 1])
{
	util_sha256_hex(id, strlen(id), out);
}

/* nonce || secretbox(secret) into a new block. */
static int seal_secret(const char *id, const char *secret, unsigned char **out, size_t *out_len)
{
	unsigned char key[32], *blob;
	size_t len = strlen(secret);
	int rc;

	*out = NULL;
	*out_len = 0;
	if (len > SESSION_SECRET_MAX)
		return al_error_set(AL_ERR_TOO_LARGE, "a session secret is at most %d bytes", SESSION_SECRET_MAX);
	if ((rc = derive(id, SECRET_CONTEXT, key)))
		return rc;
	blob = malloc(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + len);
	if (!blob) {
		sodium_memzero(key, sizeof(key));
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	randombytes_buf(blob, crypto_secretbox_NONCEBYTES);
	crypto_secretbox_easy(blob + crypto_secretbox_NONCEBYTES, (const unsigned char *)secret, len, blob, key);
	sodium_memzero(key, sizeof(key));
	*out = blob;
	*out_len = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + len;
	return AL_OK;
}

static int open_secret(const char *id, const unsigned char *blob, size_t blob_len, char **out)
{
	unsigned char key[32];
	size_t len;
	char *plain;
	int rc;

	*out = NULL;
	if (blob_len < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
		return al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
	len = blob_len - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
	if ((rc = derive(id, SECRET_CONTEXT, key)))
		return rc;
	plain = malloc(len + 1);
	if (!plain) {
		sodium_memzero(key, sizeof(key));
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	rc = crypto_secretbox_open_easy((unsigned char *)plain, blob + crypto_secretbox_NONCEBYTES,
					blob_len - crypto_secretbox_NONCEBYTES, blob, key);
	sodium_memzero(key, sizeof(key));
	if (rc != 0 || memchr(plain, '\0', len)) {
		sodium_memzero(plain, len + 1);
		free(plain);
		return al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
	}
	plain[len] = '\0';
	*out = plain;
	return AL_OK;
}

/* ?1 the id's hash, ?2 the data, ?3 the sealed secret (or NULL): the
 * columns INSERT and UPDATE of a session share. Bound without copies: the
 * buffers must outlive the step. */
static void bind_session_row(sqlite3_stmt *st, const char *hash, const char *text, const unsigned char *blob,
			     size_t blob_len)
{
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
	if (blob)
		sqlite3_bind_blob(st, 3, blob, (int)blob_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 3);
}

int session_create(struct session_store *s, const json_t *data, const char *secret, struct session *out)
{
	char hash[UTIL_SHA256_HEX_LEN + 1];
	unsigned char *blob = NULL;
	size_t blob_len = 0;
	char *text = NULL;
	sqlite3_stmt *st = NULL;
	int64_t now = s->now(s->now_ud);
	int rc;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(data))
		return al_error_set(AL_ERR_INVALID, "session data must be a JSON object");
	/* Expired sessions go on every login: the table never outgrows the
	 * sessions alive in one max_seconds. */
	if ((rc = session_purge_expired(s, NULL)))
		return rc;
	if ((rc = session_new_id(out->id)) || (rc = session_csrf_token(out->id, out->csrf)))
		goto fail;
	if (secret && (rc = seal_secret(out->id, secret, &blob, &blob_len)))
		goto fail;
	text = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
	out->data = json_deep_copy(data);
	out->secret = secret ? util_strdup(secret) : NULL;
	if (!text || !out->data || (secret && !out->secret)) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	out->created_at = out->last_seen = now;
	out->expires_at = now + s->max;
	id_hash(out->id, hash);

	pthread_mutex_lock(&s->lock);
	rc = authdb_prepare(s->db,
			    "INSERT INTO web_sessions(id_hash, data, secret, created_at, last_seen, expires_at) "
			    "VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
			    &st);
	if (!rc) {
		bind_session_row(st, hash, text, blob, blob_len);
		sqlite3_bind_int64(st, 4, now);
		sqlite3_bind_int64(st, 5, out->expires_at);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = authdb_fail(s->db, "cannot store the session");
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	if (rc)
		goto fail;
	free(text);
	free(blob);
	return AL_OK;
fail:
	free(text);
	free(blob);
	session_free(out);
	return rc;
}

static int delete_hash(struct session_store *s, const char *hash)
{
	sqlite3_stmt *st = NULL;
	int rc = authdb_prepare(s->db, "DELETE FROM web_sessions WHERE id_hash = ?1", &st);
	if (!rc) {
		sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = authdb_fail(s->db, "cannot delete the session");
	}
	sqlite3_finalize(st);
	return rc;
}

int session_get(struct session_store *s, const char *id, struct session *out)
{
	char hash[UTIL_SHA256_HEX_LEN + 1];
	sqlite3_stmt *st = NULL;
	int64_t now = s->now(s->now_ud), touch_every;
	json_t *data = NULL;
	char *secret = NULL;
	int rc, step, expired = 0;

	memset(out, 0, sizeof(*out));
	if (!session_id_valid(id))
		return al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
	id_hash(id, hash);
	pthread_mutex_lock(&s->lock);
	if ((rc = authdb_prepare(s->db,
				 "SELECT data, secret, created_at, last_seen, expires_at FROM web_sessions WHERE id_hash = ?1",
				 &st)))
		goto unlock;
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	if (step == SQLITE_DONE) {
		rc = al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
		goto unlock;
	}
	if (step != SQLITE_ROW) {
		rc = authdb_fail(s->db, "cannot read the session");
		goto unlock;
	}
	out->created_at = sqlite3_column_int64(st, 2);
	out->last_seen = sqlite3_column_int64(st, 3);
	out->expires_at = sqlite3_column_int64(st, 4);
	if (now >= out->expires_at || now - out->last_seen >= s->idle) {
		expired = 1;
	} else {
		const char *text = (const char *)sqlite3_column_text(st, 0);
		const void *blob = sqlite3_column_blob(st, 1);
		int blob_len = sqlite3_column_bytes(st, 1);
		data = text ? json_loads(text, 0, NULL) : NULL;
		if (!json_is_object(data)) {
			rc = al_error_set(AL_ERR_IO, "a stored web session is damaged");
			goto unlock;
		}
		if (blob && (rc = open_secret(id, blob, (size_t)blob_len, &secret)))
			goto unlock;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (expired) {
		delete_hash(s, hash);
		rc = al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
		goto unlock;
	}
	/* Recording every request would cost an fsync each; the idle clock only
	 * needs to be right to within a fraction of the idle timeout. */
	touch_every = s->idle / 4 < 60 ? s->idle / 4 : 60;
	if (now - out->last_seen >= touch_every) {
		if (!(rc = authdb_prepare(s->db, "UPDATE web_sessions SET last_seen = ?2 WHERE id_hash = ?1", &st))) {
			sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 2, now);
			if (sqlite3_step(st) != SQLITE_DONE)
				rc = authdb_fail(s->db, "cannot record the session's use");
		}
		if (rc)
			goto unlock;
		out->last_seen = now;
	}
unlock:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	if (rc) {
		json_decref(data);
		if (secret) {
			sodium_memzero(secret, strlen(secret));
			free(secret);
		}
		memset(out, 0, sizeof(*out));
		return rc;
	}
	memcpy(out->id, id, SESSION_ID_LEN + 1);
	session_csrf_token(id, out->csrf);
	out->data = data;
	out->secret = secret;
	return AL_OK;
}

int session_update(struct session_store *s, const char *id, const json_t *data, const char *secret)
{
	char hash[UTIL_SHA256_HEX_LEN + 1];
	unsigned char *blob = NULL;
	size_t blob_len = 0;
	char *text = NULL;
	sqlite3_stmt *st = NULL;
	int64_t now = s->now(s->now_ud);
	int rc;

	if (!session_id_valid(id))
		return al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
	if (!json_is_object(data))
		return al_error_set(AL_ERR_INVALID, "session data must be a JSON object");
	/* A new nonce with every seal: never one nonce for two secrets. */
	if (secret && (rc = seal_secret(id, secret, &blob, &blob_len)))
		return rc;
	if (!(text = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS))) {
		free(blob);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	id_hash(id, hash);
	pthread_mutex_lock(&s->lock);
	/* Only a session still alive: one that ended meanwhile (logout,
	 * timeouts) is not brought back. created_at and expires_at stay. */
	rc = authdb_prepare(s->db,
			    "UPDATE web_sessions SET data = ?2, secret = ?3 "
			    "WHERE id_hash = ?1 AND expires_at > ?4 AND last_seen > ?5",
			    &st);
	if (!rc) {
		bind_session_row(st, hash, text, blob, blob_len);
		sqlite3_bind_int64(st, 4, now);
		sqlite3_bind_int64(st, 5, now - s->idle);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = authdb_fail(s->db, "cannot update the session");
		else if (sqlite3_changes(s->db) == 0)
			rc = al_error_set(AL_ERR_UNAUTHORIZED, ENDED);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	if (blob) {
		sodium_memzero(blob, blob_len);
		free(blob);
	}
	free(text);
	return rc;
}

int session_destroy(struct session_store *s, const char *id)
{
	char hash[UTIL_SHA256_HEX_LEN + 1];
	int rc;
	if (!session_id_valid(id))
		return AL_OK;
	id_hash(id, hash);
	pthread_mutex_lock(&s->lock);
	rc = delete_hash(s, hash);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int session_purge_expired(struct session_store *s, size_t *n)
{
	sqlite3_stmt *st = NULL;
	int64_t now = s->now(s->now_ud);
	int rc;

	if (n)
		*n = 0;
	pthread_mutex_lock(&s->lock);
	rc = authdb_prepare(s->db, "DELETE FROM web_sessions WHERE expires_at <= ?1 OR last_seen <= ?2", &st);
	if (!rc) {
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_int64(st, 2, now - s->idle);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = authdb_fail(s->db, "cannot remove expired sessions");
		else if (n)
			*n = (size_t)sqlite3_changes(s->db);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int session_count(struct session_store *s, size_t *n)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*n = 0;
	pthread_mutex_lock(&s->lock);
	rc = authdb_prepare(s->db, "SELECT COUNT(*) FROM web_sessions", &st);
	if (!rc) {
		if (sqlite3_step(st) == SQLITE_ROW)
			*n = (size_t)sqlite3_column_int64(st, 0);
		else
			rc = authdb_fail(s->db, "cannot count sessions");
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return rc;
}
