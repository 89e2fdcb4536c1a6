#include "auth/accounts.h"

#include "auth/authdb.h"
#include "common/error.h"
#include "common/util.h"

#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKEN_PREFIX "alk_"
#define TOKEN_RANDOM_BYTES 32
#define TOKEN_LEN (sizeof(TOKEN_PREFIX) - 1 + 2 * TOKEN_RANDOM_BYTES)
#define BAD_LOGIN "invalid username or password"
#define BAD_TOKEN "invalid or expired token; log in again (airlock login)"

/* expires_at is Unix seconds so expiry is a plain integer comparison. */
static const char schema[] =
	"CREATE TABLE IF NOT EXISTS users ("
	" username TEXT PRIMARY KEY,"
	" password_hash TEXT NOT NULL,"
	" roles TEXT NOT NULL,"
	" created_at TEXT NOT NULL,"
	" disabled INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS tokens ("
	" token_hash TEXT PRIMARY KEY,"
	" username TEXT NOT NULL,"
	" created_at TEXT NOT NULL,"
	" expires_at INTEGER NOT NULL,"
	" description TEXT);"
	"CREATE INDEX IF NOT EXISTS tokens_by_username ON tokens(username);";

static const char *const role_names[] = { "researcher", "data-engineer", "approver", "admin" };
#define N_ROLES (sizeof(role_names) / sizeof(role_names[0]))

struct accounts {
	sqlite3 *db;
	pthread_mutex_t lock; /* guards db and auth_st */
	sqlite3_stmt *auth_st; /* the per-request token lookup, prepared once */

	/* Bounds concurrent argon2id runs (each takes memlimit bytes). */
	pthread_mutex_t hash_lock;
	pthread_cond_t hash_cond;
	int hashing;

	unsigned long long opslimit;
	size_t memlimit;

	pthread_mutex_t dummy_lock;
	int have_dummy;
	char dummy_hash[crypto_pwhash_STRBYTES];
};

/* ---- validation -------------------------------------------------------- */

int accounts_check_username(const char *u)
{
	size_t n;
	if (!u || !*u)
		return al_error_set(AL_ERR_INVALID, "username: required");
	n = strlen(u);
	if (n > 63)
		return al_error_set(AL_ERR_INVALID, "username: at most 63 characters");
	for (size_t i = 0; i < n; i++) {
		char c = u[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			 (i > 0 && (c == '.' || c == '_' || c == '@' || c == '-'));
		if (!ok)
			return al_error_set(AL_ERR_INVALID,
					    "username '%.63s': use lower-case letters, digits and . _ @ -, starting with a letter or digit",
					    u);
	}
	return AL_OK;
}

/* Canonical JSON text of a role set (in role_names order). */
static int roles_canonical(const json_t *roles, char **out)
{
	unsigned mask = 0;
	size_t i;
	json_t *v, *arr;

	*out = NULL;
	if (!json_is_array(roles) || json_array_size(roles) == 0)
		return al_error_set(AL_ERR_INVALID,
				    "roles: give a list with at least one of researcher, data-engineer, approver, admin");
	json_array_foreach(roles, i, v) {
		const char *name = json_string_value(v);
		size_t r;
		for (r = 0; name && r < N_ROLES; r++)
			if (!strcmp(name, role_names[r]))
				break;
		if (!name || r == N_ROLES)
			return al_error_set(AL_ERR_INVALID,
					    "roles[%zu]: '%.64s' is not a role; use researcher, data-engineer, approver or admin",
					    i, name ? name : "(not a string)");
		mask |= 1u << r;
	}
	if (!(arr = json_array()))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	for (size_t r = 0; r < N_ROLES; r++)
		if ((mask & (1u << r)) && json_array_append_new(arr, json_string(role_names[r])) < 0) {
			json_decref(arr);
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		}
	*out = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

int accounts_check_roles(const json_t *roles)
{
	char *text = NULL;
	int rc = roles_canonical(roles, &text);
	free(text);
	return rc;
}

static int check_password(const char *pw)
{
	size_t bytes, chars = 0;
	if (!pw || !*pw)
		return al_error_set(AL_ERR_INVALID, "password: required");
	bytes = strlen(pw);
	if (bytes > ACCOUNTS_PASSWORD_MAX)
		return al_error_set(AL_ERR_INVALID, "password: at most %d bytes", ACCOUNTS_PASSWORD_MAX);
	for (size_t i = 0; i < bytes; i++)
		if (((unsigned char)pw[i] & 0xC0) != 0x80)
			chars++;
	if (chars < ACCOUNTS_PASSWORD_MIN)
		return al_error_set(AL_ERR_INVALID,
				    "password: too short; use at least %d characters (a few random words make a good one)",
				    ACCOUNTS_PASSWORD_MIN);
	return AL_OK;
}

/* ---- hashing ----------------------------------------------------------- */

static void hash_enter(struct accounts *a)
{
	pthread_mutex_lock(&a->hash_lock);
	while (a->hashing >= ACCOUNTS_MAX_HASHING)
		pthread_cond_wait(&a->hash_cond, &a->hash_lock);
	a->hashing++;
	pthread_mutex_unlock(&a->hash_lock);
}

static void hash_leave(struct accounts *a)
{
	pthread_mutex_lock(&a->hash_lock);
	a->hashing--;
	pthread_cond_signal(&a->hash_cond);
	pthread_mutex_unlock(&a->hash_lock);
}

static int hash_password(struct accounts *a, const char *pw, char out[crypto_pwhash_STRBYTES])
{
	int r;
	hash_enter(a);
	r = crypto_pwhash_str(out, pw, strlen(pw), a->opslimit, a->memlimit);
	hash_leave(a);
	if (r != 0)
		return al_error_set(AL_ERR_NOMEM, "cannot hash the password: not enough memory");
	return AL_OK;
}

static int verify_password(struct accounts *a, const char *hash, const char *pw)
{
	int r;
	hash_enter(a);
	r = crypto_pwhash_str_verify(hash, pw, strlen(pw));
	hash_leave(a);
	return r == 0;
}

/* A hash of a random password, so unknown users cost a verify too. */
static const char *dummy_hash(struct accounts *a)
{
	const char *out = NULL;
	pthread_mutex_lock(&a->dummy_lock);
	if (!a->have_dummy) {
		char *pw = util_random_hex(16);
		if (pw && hash_password(a, pw, a->dummy_hash) == AL_OK)
			a->have_dummy = 1;
		free(pw);
	}
	if (a->have_dummy)
		out = a->dummy_hash;
	pthread_mutex_unlock(&a->dummy_lock);
	return out;
}

/* ---- open / close ------------------------------------------------------ */

int accounts_open(struct accounts **out, const char *db_path)
{
	struct accounts *a;
	int rc;

	*out = NULL;
	if (sodium_init() < 0)
		return al_error_set(AL_ERR_INTERNAL, "libsodium cannot initialise");
	a = calloc(1, sizeof(*a));
	if (!a)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if ((rc = authdb_open(&a->db, db_path, schema)) < 0) {
		free(a);
		return al_error_wrap(rc, "accounts");
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->hash_lock, NULL);
	pthread_cond_init(&a->hash_cond, NULL);
	pthread_mutex_init(&a->dummy_lock, NULL);
	a->opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
	a->memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
	*out = a;
	return AL_OK;
}

void accounts_close(struct accounts *a)
{
	if (!a)
		return;
	sqlite3_finalize(a->auth_st);
	sqlite3_close(a->db);
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->hash_lock);
	pthread_cond_destroy(&a->hash_cond);
	pthread_mutex_destroy(&a->dummy_lock);
	sodium_memzero(a->dummy_hash, sizeof(a->dummy_hash));
	free(a);
}

void accounts_set_hash_cost(struct accounts *a, unsigned long long opslimit, size_t memlimit)
{
	pthread_mutex_lock(&a->dummy_lock);
	a->opslimit = opslimit;
	a->memlimit = memlimit;
	a->have_dummy = 0;
	pthread_mutex_unlock(&a->dummy_lock);
}

/* ---- users ------------------------------------------------------------- */

/* {username, roles, createdAt, disabled} from a row's columns. */
static int user_object(const char *username, const char *roles_text, const char *created,
		       int disabled, json_t **out)
{
	json_t *roles = json_loads(roles_text ? roles_text : "[]", 0, NULL);
	if (!json_is_array(roles)) {
		json_decref(roles);
		roles = json_array();
	}
	*out = json_pack("{s:s, s:o, s:s, s:b}", "username", username, "roles", roles, "createdAt",
			 created ? created : "", "disabled", disabled);
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? (const char *)t : "";
}

int accounts_user_create(struct accounts *a, const char *username, const char *password,
			 const json_t *roles)
{
	char hash[crypto_pwhash_STRBYTES];
	char now[UTIL_TIME_LEN];
	char *roles_text = NULL;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = accounts_check_username(username)) < 0 || (rc = check_password(password)) < 0 ||
	    (rc = roles_canonical(roles, &roles_text)) < 0)
		return rc;
	if ((rc = hash_password(a, password, hash)) < 0)
		goto out_nolock;
	util_now_rfc3339_seconds(now);

	pthread_mutex_lock(&a->lock);
	if ((rc = authdb_begin(a->db)) < 0)
		goto out;
	if ((rc = authdb_prepare(a->db,
				 "INSERT INTO users(username, password_hash, roles, created_at, disabled) "
				 "VALUES(?1, ?2, ?3, ?4, 0) ON CONFLICT(username) DO NOTHING", &st)) < 0)
		goto out;
	sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, roles_text, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = authdb_fail(a->db, "cannot create the user");
		goto out;
	}
	if (sqlite3_changes(a->db) == 0) {
		rc = al_error_set(AL_ERR_EXISTS, "user '%s' already exists", username);
		goto out;
	}
	rc = authdb_commit(a->db);
out:
	sqlite3_finalize(st);
	if (rc < 0)
		authdb_rollback(a->db);
	pthread_mutex_unlock(&a->lock);
out_nolock:
	sodium_memzero(hash, sizeof(hash));
	free(roles_text);
	return rc;
}

int accounts_user_get(struct accounts *a, const char *username, json_t **out)
{
	sqlite3_stmt *st = NULL;
	int rc, step;

	*out = NULL;
	if (!username)
		return al_error_set(AL_ERR_INVALID, "username: required");
	pthread_mutex_lock(&a->lock);
	if ((rc = authdb_prepare(a->db,
				 "SELECT username, roles, created_at, disabled FROM users WHERE username = ?1",
				 &st)) < 0)
		goto out;
	sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		rc = user_object(col_text(st, 0), col_text(st, 1), col_text(st, 2),
				 sqlite3_column_int(st, 3), out);
	else if (step == SQLITE_DONE)
		rc = al_error_set(AL_ERR_NOT_FOUND, "user '%.63s' not found", username);
	else
		rc = authdb_fail(a->db, "cannot read the user");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int accounts_user_list(struct accounts *a, json_t **out)
{
	sqlite3_stmt *st = NULL;
	json_t *arr;
	int rc, step;

	*out = NULL;
	if (!(arr = json_array()))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	pthread_mutex_lock(&a->lock);
	if ((rc = authdb_prepare(a->db,
				 "SELECT username, roles, created_at, disabled FROM users ORDER BY username",
				 &st)) < 0)
		goto out;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *u;
		if ((rc = user_object(col_text(st, 0), col_text(st, 1), col_text(st, 2),
				      sqlite3_column_int(st, 3), &u)) < 0)
			goto out;
		if (json_array_append_new(arr, u) < 0) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	rc = step == SQLITE_DONE ? AL_OK : authdb_fail(a->db, "cannot list users");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&a->lock);
	if (rc == AL_OK)
		*out = arr;
	else
		json_decref(arr);
	return rc;
}

/* Runs one UPDATE/DELETE on a user (?1 = username, ?2 = text arg) and, if
 * revoke, deletes the user's tokens, in one transaction. AL_ERR_NOT_FOUND
 * when no user row changed. */
static int user_write(struct accounts *a, const char *username, const char *sql, const char *arg,
		      int revoke, const char *doing)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (!username)
		return al_error_set(AL_ERR_INVALID, "username: required");
	pthread_mutex_lock(&a->lock);
	if ((rc = authdb_begin(a->db)) < 0)
		goto out;
	if ((rc = authdb_prepare(a->db, sql, &st)) < 0)
		goto out;
	sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
	if (arg)
		sqlite3_bind_text(st, 2, arg, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = authdb_fail(a->db, doing);
		goto out;
	}
	if (sqlite3_changes(a->db) == 0) {
		rc = al_error_set(AL_ERR_NOT_FOUND, "user '%.63s' not found", username);
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (revoke) {
		if ((rc = authdb_prepare(a->db, "DELETE FROM tokens WHERE username = ?1", &st)) < 0)
			goto out;
		sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			rc = authdb_fail(a->db, "cannot revoke the user's tokens");
			goto out;
		}
	}
	rc = authdb_commit(a->db);
out:
	sqlite3_finalize(st);
	if (rc < 0)
		authdb_rollback(a->db);
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int accounts_user_set_roles(struct accounts *a, const char *username, const json_t *roles)
{
	char *text = NULL;
	int rc;
	if ((rc = roles_canonical(roles, &text)) < 0)
		return rc;
	rc = user_write(a, username, "UPDATE users SET roles = ?2 WHERE username = ?1", text, 0,
			"cannot change the user's roles");
	free(text);
	return rc;
}

int accounts_user_set_password(struct accounts *a, const char *username, const char *password)
{
	char hash[crypto_pwhash_STRBYTES];
	int rc;
	if ((rc = check_password(password)) < 0)
		return rc;
	if ((rc = hash_password(a, password, hash)) < 0)
		return rc;
	rc = user_write(a, username, "UPDATE users SET password_hash = ?2 WHERE username = ?1", hash, 1,
			"cannot change the password");
	sodium_memzero(hash, sizeof(hash));
	return rc;
}

int accounts_user_set_disabled(struct accounts *a, const char *username, int disabled)
{
	return user_write(a, username,
			  disabled ? "UPDATE users SET disabled = 1 WHERE username = ?1"
				   : "UPDATE users SET disabled = 0 WHERE username = ?1",
			  NULL, disabled, "cannot change the user");
}

int accounts_user_delete(struct accounts *a, const char *username)
{
	return user_write(a, username, "DELETE FROM users WHERE username = ?1", NULL, 1,
			  "cannot delete the user");
}

int accounts_count(struct accounts *a, size_t *n)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*n = 0;
	pthread_mutex_lock(&a->lock);
	if ((rc = authdb_prepare(a->db, "SELECT count(*) FROM users", &st)) < 0)
		goto out;
	if (sqlite3_step(st) == SQLITE_ROW)
		*n = (size_t)sqlite3_column_int64(st, 0);
	else
		rc = authdb_fail(a->db, "cannot count users");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* ---- tokens ------------------------------------------------------------ */

static int token_well_formed(const char *t)
{
	size_t plen = sizeof(TOKEN_PREFIX) - 1;
	if (!t || strlen(t) != TOKEN_LEN || strncmp(t, TOKEN_PREFIX, plen))
		return 0;
	for (const char *p = t + plen; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

int accounts_login(struct accounts *a, const char *username, const char *password, int ttl_seconds,
		   const char *description, char **out_token)
{
	char stored[crypto_pwhash_STRBYTES];
	char token_hash[UTIL_SHA256_HEX_LEN + 1];
	char now[UTIL_TIME_LEN];
	sqlite3_stmt *st = NULL;
	char *token = NULL;
	int found = 0, disabled = 0, ok, rehash = 0, rc, step;
	int64_t t_now = (int64_t)time(NULL);

	*out_token = NULL;
	if (ttl_seconds < 0 || ttl_seconds > ACCOUNTS_TOKEN_TTL_MAX)
		return al_error_set(AL_ERR_INVALID, "token lifetime: between 1 s and %d days",
				    ACCOUNTS_TOKEN_TTL_MAX / 86400);
	if (!ttl_seconds)
		ttl_seconds = ACCOUNTS_TOKEN_TTL_DEFAULT;
	if (description && strlen(description) > 256)
		return al_error_set(AL_ERR_INVALID, "token description: at most 256 bytes");
	stored[0] = '\0';

	if (username && password && accounts_check_username(username) == AL_OK &&
	    strlen(password) <= ACCOUNTS_PASSWORD_MAX) {
		pthread_mutex_lock(&a->lock);
		rc = authdb_prepare(a->db, "SELECT password_hash, disabled FROM users WHERE username = ?1", &st);
		if (rc == AL_OK) {
			sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
			step = sqlite3_step(st);
			if (step == SQLITE_ROW) {
				const char *h = col_text(st, 0);
				if (strlen(h) < sizeof(stored)) {
					memcpy(stored, h, strlen(h) + 1);
					found = 1;
				}
				disabled = sqlite3_column_int(st, 1);
			} else if (step != SQLITE_DONE) {
				rc = authdb_fail(a->db, "cannot read the user");
			}
		}
		sqlite3_finalize(st);
		st = NULL;
		pthread_mutex_unlock(&a->lock);
		if (rc < 0)
			return rc;
	}
	al_error_clear();
	if (found) {
		ok = verify_password(a, stored, password);
		rehash = ok && crypto_pwhash_str_needs_rehash(stored, a->opslimit, a->memlimit) != 0;
	} else {
		const char *dummy = dummy_hash(a);
		if (dummy && password && strlen(password) <= ACCOUNTS_PASSWORD_MAX)
			verify_password(a, dummy, password);
		ok = 0;
	}
	sodium_memzero(stored, sizeof(stored));
	if (!ok || disabled)
		return al_error_set(AL_ERR_UNAUTHORIZED, BAD_LOGIN);

	if (rehash) { /* cost parameters went up since this hash was made */
		char fresh[crypto_pwhash_STRBYTES];
		if (hash_password(a, password, fresh) == AL_OK)
			user_write(a, username, "UPDATE users SET password_hash = ?2 WHERE username = ?1",
				   fresh, 0, "cannot update the password hash");
		sodium_memzero(fresh, sizeof(fresh));
	}

	{
		char *rnd = util_random_hex(TOKEN_RANDOM_BYTES);
		if (!rnd || !(token = malloc(TOKEN_LEN + 1))) {
			free(rnd);
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		}
		memcpy(token, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1);
		memcpy(token + sizeof(TOKEN_PREFIX) - 1, rnd, 2 * TOKEN_RANDOM_BYTES + 1);
		sodium_memzero(rnd, 2 * TOKEN_RANDOM_BYTES);
		free(rnd);
	}
	util_sha256_hex(token, TOKEN_LEN, token_hash);
	util_now_rfc3339_seconds(now);

	pthread_mutex_lock(&a->lock);
	if ((rc = authdb_begin(a->db)) < 0)
		goto out;
	if ((rc = authdb_prepare(a->db, "DELETE FROM tokens WHERE expires_at <= ?1", &st)) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, t_now);
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = authdb_fail(a->db, "cannot remove expired tokens");
		goto out;
	}
	sqlite3_finalize(st);
	if ((rc = authdb_prepare(a->db,
				 "INSERT INTO tokens(token_hash, username, created_at, expires_at, description) "
				 "SELECT ?1, username, ?3, ?4, ?5 FROM users WHERE username = ?2 AND disabled = 0",
				 &st)) < 0)
		goto out;
	sqlite3_bind_text(st, 1, token_hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, username, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, t_now + ttl_seconds);
	if (description)
		sqlite3_bind_text(st, 5, description, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = authdb_fail(a->db, "cannot store the token");
		goto out;
	}
	if (sqlite3_changes(a->db) == 0) { /* deleted or disabled meanwhile */
		rc = al_error_set(AL_ERR_UNAUTHORIZED, BAD_LOGIN);
		goto out;
	}
	rc = authdb_commit(a->db);
out:
	sqlite3_finalize(st);
	if (rc < 0)
		authdb_rollback(a->db);
	pthread_mutex_unlock(&a->lock);
	if (rc < 0) {
		sodium_memzero(token, TOKEN_LEN);
		free(token);
		return rc;
	}
	*out_token = token;
	return AL_OK;
}

int accounts_authenticate(struct accounts *a, const char *token, json_t **out_user)
{
	char token_hash[UTIL_SHA256_HEX_LEN + 1];
	sqlite3_stmt *st = NULL;
	int rc, step;
	int64_t t_now = (int64_t)time(NULL);

	*out_user = NULL;
	if (!token_well_formed(token))
		return al_error_set(AL_ERR_UNAUTHORIZED, BAD_TOKEN);
	util_sha256_hex(token, TOKEN_LEN, token_hash);
	pthread_mutex_lock(&a->lock);
	if (!a->auth_st &&
	    (rc = authdb_prepare(a->db,
				 "SELECT u.username, u.roles, u.created_at, u.disabled, t.expires_at "
				 "FROM tokens t JOIN users u ON u.username = t.username WHERE t.token_hash = ?1",
				 &a->auth_st)) < 0)
		goto out;
	st = a->auth_st;
	sqlite3_bind_text(st, 1, token_hash, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	if (step == SQLITE_DONE) {
		rc = al_error_set(AL_ERR_UNAUTHORIZED, BAD_TOKEN);
	} else if (step != SQLITE_ROW) {
		rc = authdb_fail(a->db, "cannot check the token");
	} else if (sqlite3_column_int64(st, 4) <= t_now) {
		rc = al_error_set(AL_ERR_UNAUTHORIZED, BAD_TOKEN);
	} else if (sqlite3_column_int(st, 3)) {
		rc = al_error_set(AL_ERR_UNAUTHORIZED, "account '%s' is disabled; ask an administrator",
				  col_text(st, 0));
	} else {
		rc = user_object(col_text(st, 0), col_text(st, 1), col_text(st, 2), 0, out_user);
	}
out:
	if (st) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
	pthread_mutex_unlock(&a->lock);
	sodium_memzero(token_hash, sizeof(token_hash));
	return rc;
}

int accounts_logout(struct accounts *a, const char *token)
{
	char token_hash[UTIL_SHA256_HEX_LEN + 1];
	sqlite3_stmt *st = NULL;
	int rc;

	if (!token_well_formed(token))
		return AL_OK;
	util_sha256_hex(token, TOKEN_LEN, token_hash);
	pthread_mutex_lock(&a->lock);
	if ((rc = authdb_prepare(a->db, "DELETE FROM tokens WHERE token_hash = ?1", &st)) < 0)
		goto out;
	sqlite3_bind_text(st, 1, token_hash, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = authdb_fail(a->db, "cannot revoke the token");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&a->lock);
	return rc;
}
