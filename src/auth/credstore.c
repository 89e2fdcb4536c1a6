#include "auth/credstore.h"

#include "auth/authdb.h"
#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_HEX_LEN (2 * crypto_secretbox_KEYBYTES)
#define KEY_NAME_MAX 253
#define KEYCHECK_PLAIN "airlock-credstore-keycheck-v1"

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS credentials ("
	" key TEXT PRIMARY KEY,"
	" nonce BLOB NOT NULL,"
	" ciphertext BLOB NOT NULL,"
	" updated_at TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS credentials_meta ("
	" name TEXT PRIMARY KEY,"
	" nonce BLOB NOT NULL,"
	" ciphertext BLOB NOT NULL);";

struct credstore {
	sqlite3 *db;
	pthread_mutex_t lock;  /* guards db */
	unsigned char *key;    /* sodium_malloc'd, crypto_secretbox_KEYBYTES */
};

int credstore_check_key(const char *key)
{
	size_t n;
	if (!key || !*key)
		return al_error_set(AL_ERR_INVALID, "credential key: required");
	n = strlen(key);
	if (n > KEY_NAME_MAX)
		return al_error_set(AL_ERR_INVALID, "credential key: at most %d characters", KEY_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = key[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return al_error_set(AL_ERR_INVALID,
					    "credential key '%.64s': use letters, digits, '.', '_' and '-' only (like a Secret key)",
					    key);
	}
	return AL_OK;
}

/* ---- the key file ------------------------------------------------------ */

/* AL_ERR_NOT_FOUND when the file does not exist. */
static int load_key(const char *path, unsigned char *key)
{
	char text[KEY_HEX_LEN + 64];
	struct stat st;
	size_t len = 0, bin_len = 0;
	ssize_t n;
	int fd, rc = AL_OK;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return AL_ERR_NOT_FOUND;
		if (errno == ELOOP)
			return al_error_set(AL_ERR_FORBIDDEN,
					    "key file %s is a symbolic link; point the configuration at the real file",
					    path);
		return al_error_set(AL_ERR_IO, "cannot open key file %s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot stat key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = al_error_set(AL_ERR_FORBIDDEN, "key file %s is not a regular file", path);
		goto out;
	}
	if (st.st_uid != geteuid()) {
		rc = al_error_set(AL_ERR_FORBIDDEN,
				  "key file %s belongs to uid %ld, not to the user running airlock (uid %ld)",
				  path, (long)st.st_uid, (long)geteuid());
		goto out;
	}
	if (st.st_mode & 077) {
		rc = al_error_set(AL_ERR_FORBIDDEN,
				  "key file %s has mode %04o: group or others can reach it; run: chmod 600 %s",
				  path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	while (len < sizeof(text) && (n = read(fd, text + len, sizeof(text) - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = al_error_set(AL_ERR_IO, "cannot read key file %s: %s", path, strerror(errno));
			goto out;
		}
		len += (size_t)n;
	}
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		len--;
	if (len != KEY_HEX_LEN ||
	    sodium_hex2bin(key, crypto_secretbox_KEYBYTES, text, len, NULL, &bin_len, NULL) != 0 ||
	    bin_len != crypto_secretbox_KEYBYTES) {
		rc = al_error_set(AL_ERR_INVALID,
				  "key file %s does not hold a key (64 hex digits); restore it from backup, or move it away to start a new credential store",
				  path);
		goto out;
	}
out:
	sodium_memzero(text, sizeof(text));
	close(fd);
	return rc;
}

/* Creates a new key file without ever replacing one that appeared meanwhile:
 * written and synced under a temporary name, then link()ed into place. */
static int create_key(const char *path, unsigned char *key)
{
	char hex[KEY_HEX_LEN + 2];
	char *dir = NULL, *tmp = NULL, *slash;
	int rc;

	if (!(dir = util_strdup(path))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if ((rc = util_mkdir_p(dir, 0700)) < 0)
			goto out;
	} else {
		free(dir);
		dir = util_strdup(slash ? "/" : ".");
	}
	if (!dir || asprintf(&tmp, "%s.new.%ld", path, (long)getpid()) < 0) {
		tmp = NULL;
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	crypto_secretbox_keygen(key);
	sodium_bin2hex(hex, sizeof(hex), key, crypto_secretbox_KEYBYTES);
	hex[KEY_HEX_LEN] = '\n';
	hex[KEY_HEX_LEN + 1] = '\0';
	if ((rc = util_write_file_atomic(tmp, hex, KEY_HEX_LEN + 1, 0600)) < 0)
		goto out;
	if (link(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		if (e == EEXIST) { /* another process made one first: use theirs */
			rc = load_key(path, key);
			goto out;
		}
		rc = al_error_set(AL_ERR_IO, "cannot create key file %s: %s", path, strerror(e));
		goto out;
	}
	unlink(tmp);
	rc = util_fsync_dir(dir);
out:
	sodium_memzero(hex, sizeof(hex));
	free(dir);
	free(tmp);
	return rc;
}

/* ---- sealing ----------------------------------------------------------- */

/* Seals name '\0' value, so a ciphertext only opens under its own name. */
static int seal(const struct credstore *cs, const char *name, const char *value, size_t vlen,
		unsigned char nonce[crypto_secretbox_NONCEBYTES], unsigned char **out, size_t *out_len)
{
	size_t nlen = strlen(name), mlen = nlen + 1 + vlen;
	unsigned char *plain = malloc(mlen ? mlen : 1);
	unsigned char *ct = malloc(mlen + crypto_secretbox_MACBYTES);

	*out = NULL;
	if (!plain || !ct) {
		free(plain);
		free(ct);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	memcpy(plain, name, nlen + 1);
	memcpy(plain + nlen + 1, value, vlen);
	randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
	crypto_secretbox_easy(ct, plain, mlen, nonce, cs->key);
	sodium_memzero(plain, mlen);
	free(plain);
	*out = ct;
	*out_len = mlen + crypto_secretbox_MACBYTES;
	return AL_OK;
}

/* Opens a sealed row; *out is a new NUL-terminated value. */
static int unseal(const struct credstore *cs, const char *name, const void *nonce, size_t nonce_len,
		  const void *ct, size_t ct_len, char **out)
{
	size_t nlen = strlen(name), mlen;
	unsigned char *plain;
	char *value;
	int rc = AL_OK;

	*out = NULL;
	if (nonce_len != crypto_secretbox_NONCEBYTES || ct_len < crypto_secretbox_MACBYTES + nlen + 1 ||
	    ct_len > crypto_secretbox_MACBYTES + nlen + 1 + CREDSTORE_VALUE_MAX)
		return al_error_set(AL_ERR_IO,
				    "credential '%s' is damaged in the database (wrong sizes); set it again", name);
	mlen = ct_len - crypto_secretbox_MACBYTES;
	if (!(plain = malloc(mlen + 1)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (crypto_secretbox_open_easy(plain, ct, ct_len, nonce, cs->key) != 0) {
		rc = al_error_set(AL_ERR_IO,
				  "credential '%s' cannot be decrypted: it was altered in the database or written under another key file; set it again",
				  name);
		goto out;
	}
	if (memcmp(plain, name, nlen + 1) != 0) {
		rc = al_error_set(AL_ERR_IO,
				  "credential '%s' holds the value of another key (the database was altered); set it again",
				  name);
		goto out;
	}
	if (memchr(plain + nlen + 1, '\0', mlen - nlen - 1)) {
		rc = al_error_set(AL_ERR_IO, "credential '%s' is damaged (embedded NUL); set it again", name);
		goto out;
	}
	if (!(value = malloc(mlen - nlen))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(value, plain + nlen + 1, mlen - nlen - 1);
	value[mlen - nlen - 1] = '\0';
	*out = value;
out:
	sodium_memzero(plain, mlen + 1);
	free(plain);
	return rc;
}

void credstore_value_free(char *value)
{
	if (!value)
		return;
	sodium_memzero(value, strlen(value));
	free(value);
}

/* ---- open / close ------------------------------------------------------ */

/* Proves the key file is the one the database was written with; the first
 * open of a database records the proof. */
static int check_key(struct credstore *cs, const char *key_path, const char *db_path)
{
	sqlite3_stmt *st = NULL;
	unsigned char nonce[crypto_secretbox_NONCEBYTES];
	unsigned char *ct = NULL;
	size_t ct_len = 0;
	char *plain = NULL;
	int rc, step;

	for (int attempt = 0; attempt < 2; attempt++) {
		if ((rc = authdb_prepare(cs->db,
					 "SELECT nonce, ciphertext FROM credentials_meta WHERE name = 'keycheck'",
					 &st)) < 0)
			return rc;
		step = sqlite3_step(st);
		if (step == SQLITE_ROW) {
			rc = unseal(cs, "keycheck", sqlite3_column_blob(st, 0),
				    (size_t)sqlite3_column_bytes(st, 0), sqlite3_column_blob(st, 1),
				    (size_t)sqlite3_column_bytes(st, 1), &plain);
			sqlite3_finalize(st);
			if (rc == AL_ERR_NOMEM)
				return rc;
			if (rc < 0 || strcmp(plain, KEYCHECK_PLAIN)) {
				credstore_value_free(plain);
				return al_error_set(AL_ERR_INVALID,
						    "key file %s does not match the credentials in %s (they were stored under another key); restore the key file that belongs to this database",
						    key_path, db_path);
			}
			credstore_value_free(plain);
			return AL_OK;
		}
		sqlite3_finalize(st);
		st = NULL;
		if (step != SQLITE_DONE)
			return authdb_fail(cs->db, "cannot read the credential key check");
		/* First use: record the check (another process may race us; re-read). */
		if ((rc = seal(cs, "keycheck", KEYCHECK_PLAIN, strlen(KEYCHECK_PLAIN), nonce, &ct, &ct_len)) < 0)
			return rc;
		if ((rc = authdb_begin(cs->db)) == AL_OK &&
		    (rc = authdb_prepare(cs->db,
					 "INSERT OR IGNORE INTO credentials_meta(name, nonce, ciphertext) VALUES('keycheck', ?1, ?2)",
					 &st)) == AL_OK) {
			sqlite3_bind_blob(st, 1, nonce, sizeof(nonce), SQLITE_STATIC);
			sqlite3_bind_blob(st, 2, ct, (int)ct_len, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_DONE)
				rc = authdb_fail(cs->db, "cannot record the credential key check");
			sqlite3_finalize(st);
			st = NULL;
			if (rc == AL_OK)
				rc = authdb_commit(cs->db);
		}
		if (rc < 0)
			authdb_rollback(cs->db);
		free(ct);
		ct = NULL;
		if (rc < 0)
			return rc;
	}
	return al_error_set(AL_ERR_INTERNAL, "credential key check could not be recorded");
}

int credstore_open(struct credstore **out, const char *db_path, const char *key_path)
{
	struct credstore *cs;
	int rc;

	*out = NULL;
	if (!key_path || !*key_path)
		return al_error_set(AL_ERR_INVALID, "no credential key file path given");
	if (sodium_init() < 0)
		return al_error_set(AL_ERR_INTERNAL, "libsodium cannot initialise");
	if (!(cs = calloc(1, sizeof(*cs))))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&cs->lock, NULL);
	if (!(cs->key = sodium_malloc(crypto_secretbox_KEYBYTES))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	rc = load_key(key_path, cs->key);
	if (rc == AL_ERR_NOT_FOUND)
		rc = create_key(key_path, cs->key);
	if (rc < 0)
		goto fail;
	if ((rc = authdb_open(&cs->db, db_path, schema)) < 0) {
		al_error_wrap(rc, "credentials");
		goto fail;
	}
	if ((rc = check_key(cs, key_path, db_path)) < 0)
		goto fail;
	*out = cs;
	return AL_OK;
fail:
	credstore_close(cs);
	return rc;
}

void credstore_close(struct credstore *cs)
{
	if (!cs)
		return;
	sqlite3_close(cs->db);
	if (cs->key)
		sodium_free(cs->key); /* wipes it */
	pthread_mutex_destroy(&cs->lock);
	free(cs);
}

/* ---- operations -------------------------------------------------------- */

int credstore_set(struct credstore *cs, const char *key, const char *value)
{
	unsigned char nonce[crypto_secretbox_NONCEBYTES];
	char now[UTIL_TIME_LEN];
	unsigned char *ct = NULL;
	size_t ct_len = 0, vlen;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = credstore_check_key(key)) < 0)
		return rc;
	if (!value)
		return al_error_set(AL_ERR_INVALID, "credential '%s': no value given", key);
	vlen = strlen(value);
	if (vlen > CREDSTORE_VALUE_MAX)
		return al_error_set(AL_ERR_TOO_LARGE, "credential '%s': the value is over %zu bytes", key,
				    CREDSTORE_VALUE_MAX);
	if ((rc = seal(cs, key, value, vlen, nonce, &ct, &ct_len)) < 0)
		return rc;
	util_now_rfc3339(now);
	pthread_mutex_lock(&cs->lock);
	if ((rc = authdb_begin(cs->db)) < 0)
		goto out;
	if ((rc = authdb_prepare(cs->db,
				 "INSERT INTO credentials(key, nonce, ciphertext, updated_at) VALUES(?1, ?2, ?3, ?4) "
				 "ON CONFLICT(key) DO UPDATE SET nonce = excluded.nonce, "
				 "ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
				 &st)) < 0)
		goto out;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, nonce, sizeof(nonce), SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, ct, (int)ct_len, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = authdb_fail(cs->db, "cannot store the credential");
		goto out;
	}
	rc = authdb_commit(cs->db);
out:
	sqlite3_finalize(st);
	if (rc < 0)
		authdb_rollback(cs->db);
	pthread_mutex_unlock(&cs->lock);
	free(ct);
	return rc;
}

int credstore_get(struct credstore *cs, const char *key, char **out_value)
{
	sqlite3_stmt *st = NULL;
	int rc, step;

	*out_value = NULL;
	if ((rc = credstore_check_key(key)) < 0)
		return rc;
	pthread_mutex_lock(&cs->lock);
	if ((rc = authdb_prepare(cs->db, "SELECT nonce, ciphertext FROM credentials WHERE key = ?1", &st)) < 0)
		goto out;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		rc = unseal(cs, key, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
			    sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), out_value);
	else if (step == SQLITE_DONE)
		rc = al_error_set(AL_ERR_NOT_FOUND, "credential '%s' not found; store it first (airlock secret)",
				  key);
	else
		rc = authdb_fail(cs->db, "cannot read the credential");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&cs->lock);
	return rc;
}

int credstore_delete(struct credstore *cs, const char *key)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = credstore_check_key(key)) < 0)
		return rc;
	pthread_mutex_lock(&cs->lock);
	if ((rc = authdb_begin(cs->db)) < 0)
		goto out;
	if ((rc = authdb_prepare(cs->db, "DELETE FROM credentials WHERE key = ?1", &st)) < 0)
		goto out;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = authdb_fail(cs->db, "cannot delete the credential");
		goto out;
	}
	if (sqlite3_changes(cs->db) == 0) {
		rc = al_error_set(AL_ERR_NOT_FOUND, "credential '%s' not found", key);
		goto out;
	}
	rc = authdb_commit(cs->db);
out:
	sqlite3_finalize(st);
	if (rc < 0)
		authdb_rollback(cs->db);
	pthread_mutex_unlock(&cs->lock);
	return rc;
}

int credstore_list_keys(struct credstore *cs, json_t **out)
{
	sqlite3_stmt *st = NULL;
	json_t *arr;
	int rc, step;

	*out = NULL;
	if (!(arr = json_array()))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	pthread_mutex_lock(&cs->lock);
	if ((rc = authdb_prepare(cs->db, "SELECT key FROM credentials ORDER BY key", &st)) < 0)
		goto out;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if (json_array_append_new(arr, json_string((const char *)sqlite3_column_text(st, 0))) < 0) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	rc = step == SQLITE_DONE ? AL_OK : authdb_fail(cs->db, "cannot list credentials");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&cs->lock);
	if (rc == AL_OK)
		*out = arr;
	else
		json_decref(arr);
	return rc;
}
