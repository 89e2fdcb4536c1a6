/*
 * store_sqlite.c - the embedded store: one SQLite database in WAL mode.
 *
 * One connection guarded by one mutex: SQLite serialises writers anyway, and
 * a single connection lets every statement be prepared once. Each write is
 * one BEGIN IMMEDIATE transaction holding the object change, its watch
 * event and its audit record, and is durable before it is acknowledged, so
 * an acknowledged write survives a crash and a failed one leaves no trace.
 *
 * Durability is a group commit: SQLite runs with synchronous=NORMAL (which
 * keeps the database safe from corruption and syncs around checkpoints) and
 * the store itself fdatasyncs the WAL after a commit, outside the mutex, so
 * one sync covers every transaction committed while the previous one ran.
 * Every operation - read or write - waits, before it returns, until all that
 * was committed when it looked at the database is synced: nothing is
 * answered on the strength of a write that could still be lost, just as
 * with synchronous=FULL. If the WAL file cannot be opened the store falls
 * back to synchronous=FULL, where SQLite syncs inside each COMMIT.
 *
 * Labels are copied into their own table (kind, namespace, name, key, value)
 * so that a selector becomes EXISTS / NOT EXISTS sub-queries on an index
 * instead of parsing every body.
 *
 * Deletion follows Kubernetes: an object with finalizers is only marked
 * (metadata.deletionTimestamp) and disappears when an update empties its
 * finalizers; an update that changes nothing writes nothing (no new
 * resourceVersion, no event).
 */
#include "store/store.h"

#include "audit/audit.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 1
#define EVENTS_KEEP 10000     /* watch history retained */
#define EVENTS_PRUNE_EVERY 256 /* prune on every Nth resourceVersion */
#define WATCH_BATCH 1000      /* most events one watch call returns */
#define WATCH_POLL_MS 1000    /* re-read the DB at least this often (other processes) */
#define SELECTOR_MAX 4096
#define SELECTOR_REQS_MAX 64

enum stmt_id {
	ST_BEGIN_WRITE,
	ST_BEGIN_READ,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_BUMP_RV,
	ST_GET_RV,
	ST_GET_COMPACTED,
	ST_SET_COMPACTED,
	ST_GET_OBJ,
	ST_INS_OBJ,
	ST_UPD_OBJ,
	ST_DEL_OBJ,
	ST_INS_LABEL,
	ST_DEL_LABELS,
	ST_INS_EVENT,
	ST_PRUNE_EVENTS,
	ST_EVENTS_ALL,
	ST_EVENTS_KIND,
	ST_AUDIT_LAST,
	ST_AUDIT_INS,
	ST_AUDIT_LIST,
	ST_LIST_NS,
	ST_LIST_ALL,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
	[ST_BEGIN_READ] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_BUMP_RV] = "UPDATE meta SET value = value + 1 WHERE key = 'rv' RETURNING value",
	[ST_GET_RV] = "SELECT value FROM meta WHERE key = 'rv'",
	[ST_GET_COMPACTED] = "SELECT value FROM meta WHERE key = 'compacted'",
	[ST_SET_COMPACTED] = "UPDATE meta SET value = ?1 WHERE key = 'compacted'",
	[ST_GET_OBJ] = "SELECT body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
	[ST_INS_OBJ] = "INSERT INTO objects(kind, namespace, name, uid, rv, generation, body) "
		       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_UPD_OBJ] = "UPDATE objects SET rv = ?4, generation = ?5, body = ?6 "
		       "WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
	[ST_DEL_OBJ] = "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
	[ST_INS_LABEL] = "INSERT INTO labels(kind, namespace, name, key, value) "
			 "VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_DEL_LABELS] = "DELETE FROM labels WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
	[ST_INS_EVENT] = "INSERT INTO events(rv, kind, type, body) VALUES (?1, ?2, ?3, ?4)",
	[ST_PRUNE_EVENTS] = "DELETE FROM events WHERE rv <= ?1",
	[ST_EVENTS_ALL] = "SELECT rv, type, body FROM events WHERE rv > ?1 AND rv <= ?2 "
			  "ORDER BY rv LIMIT ?3",
	[ST_EVENTS_KIND] = "SELECT rv, type, body FROM events WHERE rv > ?1 AND rv <= ?2 "
			   "AND kind = ?4 ORDER BY rv LIMIT ?3",
	[ST_AUDIT_LAST] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
	[ST_AUDIT_INS] = "INSERT INTO audit(seq, hash, record) VALUES (?1, ?2, ?3)",
	[ST_AUDIT_LIST] = "SELECT record FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
	/* sq_list without a selector (the common case) skips preparing its query. */
	[ST_LIST_NS] = "SELECT o.body FROM objects o WHERE o.kind = ?1 AND o.namespace = ?2 "
		       "ORDER BY o.namespace, o.name",
	[ST_LIST_ALL] = "SELECT o.body FROM objects o WHERE o.kind = ?1 ORDER BY o.namespace, o.name",
};

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS objects ("
	" kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,"
	" uid TEXT NOT NULL, rv INTEGER NOT NULL, generation INTEGER NOT NULL,"
	" body TEXT NOT NULL, PRIMARY KEY (kind, namespace, name));"
	"CREATE TABLE IF NOT EXISTS labels ("
	" kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,"
	" key TEXT NOT NULL, value TEXT NOT NULL,"
	" PRIMARY KEY (kind, namespace, name, key)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS labels_by_key ON labels (kind, key, value);"
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO meta(key, value) VALUES ('rv', 0), ('compacted', 0);"
	"CREATE TABLE IF NOT EXISTS events ("
	" rv INTEGER PRIMARY KEY, kind TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS audit ("
	" seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, record TEXT NOT NULL);";

struct sqlite_store {
	struct store base;
	sqlite3 *db;
	pthread_mutex_t mu;
	pthread_cond_t changed; /* broadcast after every committed write */
	sqlite3_stmt *st[ST_COUNT];
	/* Group commit (see the top of the file); wal_fd -1 = SQLite syncs. */
	int wal_fd;
	atomic_uint_fast64_t committed; /* write transactions committed (bumped under mu) */
	atomic_uint_fast64_t synced;    /* all commits up to this one are on disk */
	pthread_mutex_t sync_mu;        /* guards syncing; never taken before mu */
	pthread_cond_t sync_done;
	int syncing;                    /* a thread is in fdatasync */
};

enum change { CH_ADDED, CH_MODIFIED, CH_DELETED };
static const char *const change_name[] = { "ADDED", "MODIFIED", "DELETED" };

static struct sqlite_store *from_base(struct store *s)
{
	return (struct sqlite_store *)s;
}

/* ---- SQLite helpers (all called with s->mu held) ---- */

static int db_error(struct sqlite_store *s, int src, const char *what)
{
	int prim = src & 0xff;
	int code = (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) ? AL_ERR_UNAVAILABLE : AL_ERR_IO;
	if (code == AL_ERR_UNAVAILABLE)
		return al_error_set(code, "store: %s: the database is busy; retry shortly", what);
	return al_error_set(code, "store: %s: %s", what, sqlite3_errmsg(s->db));
}

static sqlite3_stmt *stmt(struct sqlite_store *s, enum stmt_id id)
{
	sqlite3_stmt *st = s->st[id];
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Runs a statement that returns no rows. */
static int step_done(struct sqlite_store *s, sqlite3_stmt *st, const char *what)
{
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	if (src != SQLITE_DONE && src != SQLITE_ROW)
		return db_error(s, src, what);
	return AL_OK;
}

static int exec_simple(struct sqlite_store *s, enum stmt_id id, const char *what)
{
	return step_done(s, stmt(s, id), what);
}

static void rollback(struct sqlite_store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		(void)step_done(s, stmt(s, ST_ROLLBACK), "rollback");
}

static int commit(struct sqlite_store *s)
{
	int rc = exec_simple(s, ST_COMMIT, "commit");
	if (rc < 0)
		rollback(s);
	return rc;
}

static int read_int(struct sqlite_store *s, enum stmt_id id, int64_t *out, const char *what)
{
	sqlite3_stmt *st = stmt(s, id);
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
		return AL_OK;
	}
	sqlite3_reset(st);
	if (src == SQLITE_DONE)
		return al_error_set(AL_ERR_IO, "store: %s: row missing; the database is damaged", what);
	return db_error(s, src, what);
}

static int bind_text(sqlite3_stmt *st, int idx, const char *v)
{
	return sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC) == SQLITE_OK ? AL_OK
	       : al_error_set(AL_ERR_NOMEM, "store: out of memory binding a parameter");
}

/* ---- object helpers ---- */

struct key {
	const char *kind, *ns, *name;
};

static const char *ns_or_default(const char *ns)
{
	return (ns && *ns) ? ns : "default";
}

/* The store's own minimum: apiVersion, kind and metadata.name strings. */
static int check_object(const json_t *obj, struct key *k)
{
	const json_t *md, *ns;

	if (!json_is_object(obj))
		return al_error_set(AL_ERR_INVALID, "object must be a JSON object");
	if (!json_is_string(json_object_get(obj, "apiVersion")) ||
	    !*json_string_value(json_object_get(obj, "apiVersion")))
		return al_error_set(AL_ERR_INVALID, "apiVersion: required (a string such as "
						    "\"airlock.example/v1\")");
	if (!json_is_string(json_object_get(obj, "kind")) ||
	    !*json_string_value(json_object_get(obj, "kind")))
		return al_error_set(AL_ERR_INVALID, "kind: required (a string)");
	md = json_object_get(obj, "metadata");
	if (!json_is_object(md))
		return al_error_set(AL_ERR_INVALID, "metadata: required (an object with a name)");
	if (!json_is_string(json_object_get(md, "name")) ||
	    !*json_string_value(json_object_get(md, "name")))
		return al_error_set(AL_ERR_INVALID, "metadata.name: required (a non-empty string)");
	ns = json_object_get(md, "namespace");
	if (ns && !json_is_null(ns) && !json_is_string(ns))
		return al_error_set(AL_ERR_INVALID, "metadata.namespace: must be a string");
	k->kind = json_string_value(json_object_get(obj, "kind"));
	k->name = json_string_value(json_object_get(md, "name"));
	k->ns = ns_or_default(json_string_value(ns));
	return AL_OK;
}

/* metadata.resourceVersion of an input: NULL when absent/empty. */
static int input_rv(const json_t *obj, const char **out)
{
	const json_t *rv = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");
	*out = NULL;
	if (!rv || json_is_null(rv))
		return AL_OK;
	if (!json_is_string(rv))
		return al_error_set(AL_ERR_INVALID, "metadata.resourceVersion: must be a string");
	if (*json_string_value(rv))
		*out = json_string_value(rv);
	return AL_OK;
}

static int check_rv(const struct key *k, const json_t *stored, const char *want)
{
	const char *have;
	if (!want)
		return AL_OK;
	have = json_string_value(json_object_get(json_object_get(stored, "metadata"),
						 "resourceVersion"));
	if (!have || strcmp(have, want) != 0)
		return al_error_set(AL_ERR_CONFLICT,
				    "%s %s/%s has been modified (resourceVersion %s, you sent %s); get "
				    "the latest version and retry",
				    k->kind, k->ns, k->name, have ? have : "?", want);
	return AL_OK;
}

/* Reads the stored object; AL_ERR_NOT_FOUND when absent. */
static int load(struct sqlite_store *s, const struct key *k, json_t **out)
{
	sqlite3_stmt *st = stmt(s, ST_GET_OBJ);
	json_error_t jerr;
	int rc, src;

	*out = NULL;
	if ((rc = bind_text(st, 1, k->kind)) < 0 || (rc = bind_text(st, 2, k->ns)) < 0 ||
	    (rc = bind_text(st, 3, k->name)) < 0)
		return rc;
	src = sqlite3_step(st);
	if (src == SQLITE_DONE) {
		sqlite3_reset(st);
		return al_error_set(AL_ERR_NOT_FOUND, "%s %s/%s not found", k->kind, k->ns, k->name);
	}
	if (src != SQLITE_ROW) {
		sqlite3_reset(st);
		return db_error(s, src, "read object");
	}
	*out = json_loadb((const char *)sqlite3_column_text(st, 0),
			  (size_t)sqlite3_column_bytes(st, 0), 0, &jerr);
	sqlite3_reset(st);
	if (!*out)
		return al_error_set(AL_ERR_IO, "store: stored %s %s/%s is not valid JSON (%s)",
				    k->kind, k->ns, k->name, jerr.text);
	return AL_OK;
}

static int set_str(json_t *obj, const char *key, const char *v)
{
	if (json_object_set_new(obj, key, json_string(v)) < 0)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory");
	return AL_OK;
}

static json_t *metadata_of(json_t *obj)
{
	return json_object_get(obj, "metadata");
}

static int insert_labels(struct sqlite_store *s, const struct key *k, json_t *obj)
{
	json_t *labels = json_object_get(metadata_of(obj), "labels");
	const char *key;
	json_t *val;
	int rc;

	if (!json_is_object(labels))
		return AL_OK;
	json_object_foreach(labels, key, val) {
		sqlite3_stmt *st;
		/* Only string values can match a selector; others are the schema
		 * validator's business, not the index's. */
		if (!json_is_string(val))
			continue;
		st = stmt(s, ST_INS_LABEL);
		if ((rc = bind_text(st, 1, k->kind)) < 0 || (rc = bind_text(st, 2, k->ns)) < 0 ||
		    (rc = bind_text(st, 3, k->name)) < 0 || (rc = bind_text(st, 4, key)) < 0 ||
		    (rc = bind_text(st, 5, json_string_value(val))) < 0)
			return rc;
		if ((rc = step_done(s, st, "index labels")) < 0)
			return rc;
	}
	return AL_OK;
}

static int delete_labels(struct sqlite_store *s, const struct key *k)
{
	sqlite3_stmt *st = stmt(s, ST_DEL_LABELS);
	int rc;
	if ((rc = bind_text(st, 1, k->kind)) < 0 || (rc = bind_text(st, 2, k->ns)) < 0 ||
	    (rc = bind_text(st, 3, k->name)) < 0)
		return rc;
	return step_done(s, st, "remove labels");
}

/* Seals and appends an audit record inside the open transaction. `obj` (may
 * be NULL) fills the entry's "object" when the caller left it empty. */
static int audit_insert(struct sqlite_store *s, const json_t *audit, const json_t *obj)
{
	char prev[UTIL_SHA256_HEX_LEN + 1];
	sqlite3_stmt *st;
	int64_t last = 0;
	json_t *rec;
	char *text = NULL;
	int rc, src;

	if (!json_is_object(audit))
		return al_error_set(AL_ERR_INVALID, "audit entry must be a JSON object");
	rec = json_deep_copy(audit);
	if (!rec)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory copying an audit entry");
	if (obj && (!json_object_get(rec, "object") || json_is_null(json_object_get(rec, "object")))) {
		const json_t *md = json_object_get(obj, "metadata");
		json_t *ref = json_pack("{s:O?, s:O?, s:O?, s:O?}", "kind", json_object_get(obj, "kind"),
					"namespace", json_object_get(md, "namespace"), "name",
					json_object_get(md, "name"), "uid", json_object_get(md, "uid"));
		if (!ref || json_object_set_new(rec, "object", ref) < 0) {
			rc = al_error_set(AL_ERR_NOMEM, "store: out of memory building an audit entry");
			goto out;
		}
	}
	memcpy(prev, AUDIT_GENESIS_HASH, sizeof(prev));
	st = stmt(s, ST_AUDIT_LAST);
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		const char *h = (const char *)sqlite3_column_text(st, 1);
		last = sqlite3_column_int64(st, 0);
		if (!h || strlen(h) != UTIL_SHA256_HEX_LEN) {
			sqlite3_reset(st);
			rc = al_error_set(AL_ERR_IO, "store: audit record %" PRId64 " has a damaged hash",
					  last);
			goto out;
		}
		memcpy(prev, h, sizeof(prev));
	} else if (src != SQLITE_DONE) {
		sqlite3_reset(st);
		rc = db_error(s, src, "read the last audit record");
		goto out;
	}
	sqlite3_reset(st);
	if ((rc = audit_seal(rec, (uint64_t)last + 1, prev)) < 0)
		goto out;
	text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text) {
		rc = al_error_set(AL_ERR_NOMEM, "store: out of memory writing an audit record");
		goto out;
	}
	st = stmt(s, ST_AUDIT_INS);
	sqlite3_bind_int64(st, 1, last + 1);
	if ((rc = bind_text(st, 2, json_string_value(json_object_get(rec, "hash")))) < 0 ||
	    (rc = bind_text(st, 3, text)) < 0)
		goto out;
	rc = step_done(s, st, "append audit record");
out:
	/* The statement binds `text` statically: clear it before freeing. */
	sqlite3_clear_bindings(s->st[ST_AUDIT_INS]);
	free(text);
	json_decref(rec);
	return rc;
}

static void rv_string(uint64_t rv, char out[24])
{
	snprintf(out, 24, "%" PRIu64, rv);
}

/*
 * Inside the open write transaction: takes the next resourceVersion, writes
 * `obj` (stamped with it) or removes it, records the watch event and the
 * audit record. `labels_changed` says whether the label index needs
 * rewriting on a modification.
 */
static int apply_change(struct sqlite_store *s, const struct key *k, enum change ch, json_t *obj,
			int labels_changed, const json_t *audit)
{
	char rvs[24];
	sqlite3_stmt *st;
	int64_t rv = 0, gen;
	char *body = NULL;
	int rc;

	if ((rc = read_int(s, ST_BUMP_RV, &rv, "next resourceVersion")) < 0)
		return rc;
	rv_string((uint64_t)rv, rvs);
	if ((rc = set_str(metadata_of(obj), "resourceVersion", rvs)) < 0)
		return rc;
	body = json_dumps(obj, JSON_COMPACT);
	if (!body)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory serialising %s %s/%s", k->kind,
				    k->ns, k->name);
	gen = json_integer_value(json_object_get(metadata_of(obj), "generation"));

	switch (ch) {
	case CH_ADDED:
		st = stmt(s, ST_INS_OBJ);
		if ((rc = bind_text(st, 1, k->kind)) < 0 || (rc = bind_text(st, 2, k->ns)) < 0 ||
		    (rc = bind_text(st, 3, k->name)) < 0 ||
		    (rc = bind_text(st, 4, json_string_value(json_object_get(metadata_of(obj), "uid")))) < 0 ||
		    (rc = bind_text(st, 7, body)) < 0)
			goto out;
		sqlite3_bind_int64(st, 5, rv);
		sqlite3_bind_int64(st, 6, gen);
		if (sqlite3_step(st) != SQLITE_DONE) {
			int ext = sqlite3_extended_errcode(s->db);
			sqlite3_reset(st);
			if (ext == SQLITE_CONSTRAINT_PRIMARYKEY)
				rc = al_error_set(AL_ERR_EXISTS, "%s %s/%s already exists", k->kind, k->ns,
						  k->name);
			else
				rc = db_error(s, ext, "insert object");
			goto out;
		}
		sqlite3_reset(st);
		if ((rc = insert_labels(s, k, obj)) < 0)
			goto out;
		break;
	case CH_MODIFIED:
		st = stmt(s, ST_UPD_OBJ);
		if ((rc = bind_text(st, 1, k->kind)) < 0 || (rc = bind_text(st, 2, k->ns)) < 0 ||
		    (rc = bind_text(st, 3, k->name)) < 0 || (rc = bind_text(st, 6, body)) < 0)
			goto out;
		sqlite3_bind_int64(st, 4, rv);
		sqlite3_bind_int64(st, 5, gen);
		if ((rc = step_done(s, st, "update object")) < 0)
			goto out;
		if (labels_changed &&
		    ((rc = delete_labels(s, k)) < 0 || (rc = insert_labels(s, k, obj)) < 0))
			goto out;
		break;
	case CH_DELETED:
		st = stmt(s, ST_DEL_OBJ);
		if ((rc = bind_text(st, 1, k->kind)) < 0 || (rc = bind_text(st, 2, k->ns)) < 0 ||
		    (rc = bind_text(st, 3, k->name)) < 0)
			goto out;
		if ((rc = step_done(s, st, "delete object")) < 0 || (rc = delete_labels(s, k)) < 0)
			goto out;
		break;
	}

	st = stmt(s, ST_INS_EVENT);
	sqlite3_bind_int64(st, 1, rv);
	if ((rc = bind_text(st, 2, k->kind)) < 0 || (rc = bind_text(st, 3, change_name[ch])) < 0 ||
	    (rc = bind_text(st, 4, body)) < 0)
		goto out;
	if ((rc = step_done(s, st, "record watch event")) < 0)
		goto out;

	if (rv > EVENTS_KEEP && rv % EVENTS_PRUNE_EVERY == 0) {
		int64_t compacted = rv - EVENTS_KEEP;
		st = stmt(s, ST_PRUNE_EVENTS);
		sqlite3_bind_int64(st, 1, compacted);
		if ((rc = step_done(s, st, "prune watch events")) < 0)
			goto out;
		st = stmt(s, ST_SET_COMPACTED);
		sqlite3_bind_int64(st, 1, compacted);
		if ((rc = step_done(s, st, "prune watch events")) < 0)
			goto out;
	}

	if (audit)
		rc = audit_insert(s, audit, obj);
out:
	/* Statements bind `body` statically: drop those bindings before freeing. */
	sqlite3_clear_bindings(s->st[ST_INS_OBJ]);
	sqlite3_clear_bindings(s->st[ST_UPD_OBJ]);
	sqlite3_clear_bindings(s->st[ST_INS_EVENT]);
	free(body);
	return rc;
}

static int begin_write(struct sqlite_store *s)
{
	return exec_simple(s, ST_BEGIN_WRITE, "begin a write");
}

/* Ends a write transaction: commit on success, roll back otherwise; wakes
 * watchers when something was committed. */
static int end_write(struct sqlite_store *s, int rc, int changed)
{
	if (rc < 0) {
		rollback(s);
		return rc;
	}
	if ((rc = commit(s)) < 0)
		return rc;
	atomic_fetch_add(&s->committed, 1);
	if (changed)
		pthread_cond_broadcast(&s->changed);
	return AL_OK;
}

/* The commit count an operation must see synced before it answers: call
 * with mu held, after the operation's last statement. */
static uint64_t seen_commits(struct sqlite_store *s)
{
	return atomic_load(&s->committed);
}

/*
 * Called without mu: returns once every commit up to `seq` is on disk. One
 * waiting thread syncs the WAL for all; the others wait for its result, and
 * a commit made during that sync is covered by the next one. `rc` is the
 * operation's own result, returned unless it was fine and the sync failed.
 */
static int durable(struct sqlite_store *s, uint64_t seq, int rc)
{
	int err = 0;

	if (s->wal_fd < 0 || atomic_load(&s->synced) >= seq)
		return rc;
	pthread_mutex_lock(&s->sync_mu);
	while (atomic_load(&s->synced) < seq) {
		if (s->syncing) {
			pthread_cond_wait(&s->sync_done, &s->sync_mu);
			continue;
		}
		/* Everything counted in `upto` was written to the WAL before its
		 * COMMIT returned, so this sync covers it. */
		uint64_t upto = atomic_load(&s->committed);
		s->syncing = 1;
		pthread_mutex_unlock(&s->sync_mu);
		if (fdatasync(s->wal_fd) < 0)
			err = errno;
		pthread_mutex_lock(&s->sync_mu);
		s->syncing = 0;
		if (!err && upto > atomic_load(&s->synced))
			atomic_store(&s->synced, upto);
		pthread_cond_broadcast(&s->sync_done);
		if (err)
			break;
	}
	pthread_mutex_unlock(&s->sync_mu);
	if (err && rc >= 0)
		return al_error_set(AL_ERR_IO, "store: cannot sync the database's write-ahead log: %s; "
					       "the last change may not be on disk - check the disk and retry",
				    strerror(err));
	return rc;
}

static json_t *label_map(json_t *obj)
{
	return json_object_get(metadata_of(obj), "labels");
}

/* Copies input.metadata[field] (or removes it when absent) into dst. */
static int replace_meta_field(json_t *dst_md, const json_t *src_md, const char *field)
{
	json_t *v = json_object_get(src_md, field);
	if (!v || json_is_null(v)) {
		json_object_del(dst_md, field);
		return AL_OK;
	}
	if (json_object_set_new(dst_md, field, json_deep_copy(v)) < 0)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory");
	return AL_OK;
}

static int replace_top_field(json_t *dst, const json_t *src, const char *field)
{
	json_t *v = json_object_get(src, field);
	if (!v || json_is_null(v)) {
		json_object_del(dst, field);
		return AL_OK;
	}
	if (json_object_set_new(dst, field, json_deep_copy(v)) < 0)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory");
	return AL_OK;
}

static int has_finalizers(json_t *obj)
{
	json_t *f = json_object_get(metadata_of(obj), "finalizers");
	return json_is_array(f) && json_array_size(f) > 0;
}

/* ---- operations ---- */

/* Stamps the store's own fields on a copy of `in` (new reference in *out). */
static int prepare_new(const json_t *in, struct key *k, json_t **out)
{
	char ts[UTIL_TIME_LEN];
	json_t *obj, *md;
	char *uid;
	int rc;

	*out = NULL;
	if ((rc = check_object(in, k)) < 0)
		return rc;
	obj = json_deep_copy(in);
	uid = util_uuid4();
	if (!obj || !uid) {
		json_decref(obj);
		free(uid);
		return al_error_set(AL_ERR_NOMEM, "store: out of memory");
	}
	md = metadata_of(obj);
	util_now_rfc3339_seconds(ts);
	/* System fields are the store's, whatever the input said. */
	json_object_del(md, "deletionTimestamp");
	if ((rc = set_str(md, "namespace", k->ns)) < 0 || (rc = set_str(md, "uid", uid)) < 0 ||
	    (rc = set_str(md, "creationTimestamp", ts)) < 0 ||
	    (json_object_set_new(md, "generation", json_integer(1)) < 0 &&
	     (rc = al_error_set(AL_ERR_NOMEM, "store: out of memory")) < 0)) {
		json_decref(obj);
		free(uid);
		return rc;
	}
	free(uid);
	*out = obj;
	return AL_OK;
}

/* Creates n objects in one transaction: all of them, or none. */
static int sq_create_many(struct store *base, size_t n, const json_t *const *in, const json_t *const *audits,
			  json_t **out)
{
	struct sqlite_store *s = from_base(base);
	struct key keys[STORE_CREATE_MANY_MAX];
	json_t *objs[STORE_CREATE_MANY_MAX] = { NULL };
	uint64_t seq;
	size_t i;
	int rc = AL_OK;

	if (n == 0 || n > STORE_CREATE_MANY_MAX)
		return al_error_set(AL_ERR_INVALID, "store: create takes 1 to %d objects", STORE_CREATE_MANY_MAX);
	for (i = 0; i < n; i++) {
		if (out)
			out[i] = NULL;
		if ((rc = prepare_new(in[i], &keys[i], &objs[i])) < 0)
			goto out;
	}
	/* keys[] point into in[], which outlive this call. */
	pthread_mutex_lock(&s->mu);
	if ((rc = begin_write(s)) == AL_OK) {
		for (i = 0; i < n && rc == AL_OK; i++)
			rc = apply_change(s, &keys[i], CH_ADDED, objs[i], 1, audits ? audits[i] : NULL);
		rc = end_write(s, rc, 1);
	}
	seq = seen_commits(s);
	pthread_mutex_unlock(&s->mu);
	rc = durable(s, seq, rc);
	if (rc == AL_OK && out)
		for (i = 0; i < n; i++) {
			out[i] = objs[i];
			objs[i] = NULL;
		}
out:
	for (i = 0; i < n; i++)
		json_decref(objs[i]);
	return rc;
}

static int sq_create(struct store *base, const json_t *in, const json_t *audit, json_t **out)
{
	return sq_create_many(base, 1, &in, &audit, out);
}

static int sq_get(struct store *base, const char *kind, const char *ns, const char *name,
		  json_t **out)
{
	struct sqlite_store *s = from_base(base);
	struct key k = { kind, ns_or_default(ns), name };
	uint64_t seq;
	int rc;

	*out = NULL;
	if (!kind || !*kind || !name || !*name)
		return al_error_set(AL_ERR_INVALID, "get: kind and name are required");
	pthread_mutex_lock(&s->mu);
	rc = load(s, &k, out);
	seq = seen_commits(s);
	pthread_mutex_unlock(&s->mu);
	if ((rc = durable(s, seq, rc)) < 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* Removes the object, or only marks it while finalizers remain. */
static int delete_or_mark(struct sqlite_store *s, const struct key *k, json_t *obj,
			  const json_t *audit, int *changed)
{
	char ts[UTIL_TIME_LEN];
	int rc;

	if (!has_finalizers(obj)) {
		*changed = 1;
		return apply_change(s, k, CH_DELETED, obj, 0, audit);
	}
	if (json_object_get(metadata_of(obj), "deletionTimestamp")) {
		/* Already being deleted: nothing changes, but the request is audited. */
		return audit ? audit_insert(s, audit, obj) : AL_OK;
	}
	util_now_rfc3339_seconds(ts);
	if ((rc = set_str(metadata_of(obj), "deletionTimestamp", ts)) < 0)
		return rc;
	*changed = 1;
	return apply_change(s, k, CH_MODIFIED, obj, 0, audit);
}

enum update_mode { UPD_MAIN, UPD_STATUS };

static int do_update(struct store *base, const json_t *in, const json_t *audit, json_t **out,
		     enum update_mode mode)
{
	struct sqlite_store *s = from_base(base);
	json_t *old = NULL, *obj = NULL;
	const char *want_rv;
	int rc, changed = 0;
	struct key k;
	uint64_t seq;

	if (out)
		*out = NULL;
	if ((rc = check_object(in, &k)) < 0 || (rc = input_rv(in, &want_rv)) < 0)
		return rc;
	pthread_mutex_lock(&s->mu);
	if ((rc = begin_write(s)) < 0)
		goto unlock;
	if ((rc = load(s, &k, &old)) < 0 || (rc = check_rv(&k, old, want_rv)) < 0)
		goto end;
	obj = json_deep_copy(old);
	if (!obj) {
		rc = al_error_set(AL_ERR_NOMEM, "store: out of memory");
		goto end;
	}
	if (mode == UPD_STATUS) {
		if ((rc = replace_top_field(obj, in, "status")) < 0)
			goto end;
	} else {
		const json_t *in_md = json_object_get(in, "metadata");
		json_t *md = metadata_of(obj);
		if ((rc = replace_meta_field(md, in_md, "labels")) < 0 ||
		    (rc = replace_meta_field(md, in_md, "annotations")) < 0 ||
		    (rc = replace_meta_field(md, in_md, "finalizers")) < 0 ||
		    (rc = replace_meta_field(md, in_md, "ownerReferences")) < 0 ||
		    (rc = replace_top_field(obj, in, "spec")) < 0)
			goto end;
		if (!json_equal(json_object_get(old, "spec"), json_object_get(obj, "spec"))) {
			json_int_t gen = json_integer_value(json_object_get(md, "generation"));
			if (json_object_set_new(md, "generation", json_integer(gen + 1)) < 0) {
				rc = al_error_set(AL_ERR_NOMEM, "store: out of memory");
				goto end;
			}
		}
	}
	if (json_equal(old, obj)) {
		/* Nothing changed: like the API server, write nothing. */
		if (audit)
			rc = audit_insert(s, audit, obj);
	} else if (json_object_get(metadata_of(obj), "deletionTimestamp") && !has_finalizers(obj)) {
		/* The last finalizer is gone from an object being deleted. */
		changed = 1;
		rc = apply_change(s, &k, CH_DELETED, obj, 0, audit);
	} else {
		int labels_changed = !json_equal(label_map(old), label_map(obj));
		changed = 1;
		rc = apply_change(s, &k, CH_MODIFIED, obj, labels_changed, audit);
	}
end:
	rc = end_write(s, rc, changed);
unlock:
	seq = seen_commits(s);
	pthread_mutex_unlock(&s->mu);
	rc = durable(s, seq, rc);
	if (rc == AL_OK && out) {
		*out = obj;
		obj = NULL;
	}
	json_decref(old);
	json_decref(obj);
	return rc;
}

static int sq_update(struct store *base, const json_t *in, const json_t *audit, json_t **out)
{
	return do_update(base, in, audit, out, UPD_MAIN);
}

static int sq_update_status(struct store *base, const json_t *in, const json_t *audit, json_t **out)
{
	return do_update(base, in, audit, out, UPD_STATUS);
}

static int sq_remove(struct store *base, const char *kind, const char *ns, const char *name,
		     const char *rv, const json_t *audit)
{
	struct sqlite_store *s = from_base(base);
	struct key k = { kind, ns_or_default(ns), name };
	json_t *obj = NULL;
	int rc, changed = 0;
	uint64_t seq;

	if (!kind || !*kind || !name || !*name)
		return al_error_set(AL_ERR_INVALID, "delete: kind and name are required");
	pthread_mutex_lock(&s->mu);
	if ((rc = begin_write(s)) == AL_OK) {
		if ((rc = load(s, &k, &obj)) == AL_OK &&
		    (rc = check_rv(&k, obj, (rv && *rv) ? rv : NULL)) == AL_OK)
			rc = delete_or_mark(s, &k, obj, audit, &changed);
		rc = end_write(s, rc, changed);
	}
	seq = seen_commits(s);
	pthread_mutex_unlock(&s->mu);
	json_decref(obj);
	return durable(s, seq, rc);
}

/* ---- label selectors ---- */

/* Kubernetes label key: optional DNS-subdomain prefix and "/", then a name of
 * at most 63 characters [A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]. */
static int valid_label_name(const char *p, size_t n, int allow_empty)
{
	if (n == 0)
		return allow_empty;
	if (n > 63)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && ((i == 0 || i == n - 1) || (c != '-' && c != '_' && c != '.')))
			return 0;
	}
	return 1;
}

static int valid_label_key(const char *p, size_t n)
{
	const char *slash = memchr(p, '/', n);
	if (!slash)
		return valid_label_name(p, n, 0);
	size_t plen = (size_t)(slash - p);
	if (plen == 0 || plen > 253)
		return 0;
	for (size_t i = 0; i < plen; i++) {
		char c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return 0;
	}
	return valid_label_name(slash + 1, n - plen - 1, 0);
}

static void trim(const char **p, size_t *n)
{
	while (*n && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

static int add_param(json_t *params, const char *p, size_t n)
{
	if (json_array_append_new(params, json_stringn(p, n)) < 0)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory");
	return AL_OK;
}

#define LABEL_SUB "EXISTS (SELECT 1 FROM labels l WHERE l.kind = o.kind AND " \
		  "l.namespace = o.namespace AND l.name = o.name AND l.key = ?"

static int selector_error(const char *sel, const char *why)
{
	return al_error_set(AL_ERR_INVALID,
			    "label selector \"%s\": %s (use k=v, k!=v, k, !k, k in (a,b) or k notin (a,b), "
			    "comma-separated)",
			    sel, why);
}

/* Parses one requirement [p, p+n) into SQL text and parameters. */
static int parse_requirement(const char *sel, const char *p, size_t n, struct buf *sql,
			     json_t *params)
{
	const char *op;
	size_t klen;
	int rc;

	trim(&p, &n);
	if (n == 0)
		return selector_error(sel, "empty requirement");
	if (p[0] == '!') {
		p++;
		n--;
		trim(&p, &n);
		if (!valid_label_key(p, n))
			return selector_error(sel, "invalid label key after '!'");
		if ((rc = add_param(params, p, n)) < 0)
			return rc;
		return buf_appends(sql, " AND NOT " LABEL_SUB ")");
	}
	/* Equality: the first '=' or '!=' splits key and value. */
	op = NULL;
	for (size_t i = 0; i < n; i++)
		if (p[i] == '=' || p[i] == '!') {
			op = p + i;
			break;
		}
	if (op) {
		int negate = 0;
		const char *v;
		size_t vlen;
		klen = (size_t)(op - p);
		if (op[0] == '!') {
			if ((size_t)(op - p) + 1 >= n || op[1] != '=')
				return selector_error(sel, "'!' must be followed by '=' or start a requirement");
			negate = 1;
			v = op + 2;
		} else if ((size_t)(op - p) + 1 < n && op[1] == '=') {
			v = op + 2;
		} else {
			v = op + 1;
		}
		vlen = n - (size_t)(v - p);
		trim(&p, &klen);
		trim(&v, &vlen);
		if (!valid_label_key(p, klen))
			return selector_error(sel, "invalid label key");
		if (!valid_label_name(v, vlen, 1))
			return selector_error(sel, "invalid label value");
		if ((rc = add_param(params, p, klen)) < 0 || (rc = add_param(params, v, vlen)) < 0)
			return rc;
		/* Like Kubernetes, k!=v also matches objects without k. */
		return buf_appends(sql, negate ? " AND NOT " LABEL_SUB " AND l.value = ?)"
					       : " AND " LABEL_SUB " AND l.value = ?)");
	}
	/* Set-based: "k in (a,b)" / "k notin (a,b)", or a bare key. */
	klen = 0;
	while (klen < n && p[klen] != ' ' && p[klen] != '\t' && p[klen] != '(')
		klen++;
	if (klen == n) {
		if (!valid_label_key(p, n))
			return selector_error(sel, "invalid label key");
		if ((rc = add_param(params, p, n)) < 0)
			return rc;
		return buf_appends(sql, " AND " LABEL_SUB ")");
	} else {
		const char *rest = p + klen, *open, *close;
		size_t rlen = n - klen, inner_len;
		int notin;
		size_t count = 0;

		if (!valid_label_key(p, klen))
			return selector_error(sel, "invalid label key");
		trim(&rest, &rlen);
		if (rlen > 2 && strncmp(rest, "in", 2) == 0 && (rest[2] == ' ' || rest[2] == '(')) {
			notin = 0;
			rest += 2;
			rlen -= 2;
		} else if (rlen > 5 && strncmp(rest, "notin", 5) == 0 &&
			   (rest[5] == ' ' || rest[5] == '(')) {
			notin = 1;
			rest += 5;
			rlen -= 5;
		} else {
			return selector_error(sel, "expected '=', '!=', 'in' or 'notin' after a key");
		}
		trim(&rest, &rlen);
		if (rlen < 2 || rest[0] != '(' || rest[rlen - 1] != ')')
			return selector_error(sel, "a set must be written (a,b,...)");
		open = rest + 1;
		inner_len = rlen - 2;
		if ((rc = add_param(params, p, klen)) < 0)
			return rc;
		if ((rc = buf_appends(sql, notin ? " AND NOT " LABEL_SUB " AND l.value IN ("
						 : " AND " LABEL_SUB " AND l.value IN (")) < 0)
			return rc;
		while (1) {
			const char *item = open;
			size_t ilen;
			close = memchr(open, ',', inner_len - (size_t)(open - (rest + 1)));
			ilen = close ? (size_t)(close - open) : inner_len - (size_t)(open - (rest + 1));
			trim(&item, &ilen);
			if (memchr(item, '(', ilen) || memchr(item, ')', ilen) ||
			    !valid_label_name(item, ilen, 1))
				return selector_error(sel, "invalid value in a set");
			if ((rc = add_param(params, item, ilen)) < 0 ||
			    (rc = buf_appends(sql, count ? ", ?" : "?")) < 0)
				return rc;
			count++;
			if (!close)
				break;
			open = close + 1;
		}
		return buf_appends(sql, "))");
	}
}

/* Turns a selector into " AND ..." SQL with "?" parameters (in order). */
static int parse_selector(const char *sel, struct buf *sql, json_t *params)
{
	size_t len = strlen(sel), start = 0, reqs = 0;
	int depth = 0, rc;

	if (len > SELECTOR_MAX)
		return al_error_set(AL_ERR_INVALID, "label selector is longer than %d bytes",
				    SELECTOR_MAX);
	{
		const char *p = sel;
		size_t n = len;
		trim(&p, &n);
		if (n == 0)
			return AL_OK; /* an empty selector selects everything */
	}
	for (size_t i = 0; i <= len; i++) {
		char c = sel[i];
		if (c == '(') {
			depth++;
		} else if (c == ')') {
			if (--depth < 0)
				return selector_error(sel, "unbalanced ')'");
		} else if ((c == ',' && depth == 0) || c == '\0') {
			if (c == '\0' && depth != 0)
				return selector_error(sel, "unbalanced '('");
			if (++reqs > SELECTOR_REQS_MAX)
				return selector_error(sel, "too many requirements");
			if ((rc = parse_requirement(sel, sel + start, i - start, sql, params)) < 0)
				return rc;
			start = i + 1;
		}
	}
	return AL_OK;
}

static int sq_list(struct store *base, const char *kind, const char *ns, const char *selector,
		   json_t **out_items, uint64_t *out_rv)
{
	struct sqlite_store *s = from_base(base);
	sqlite3_stmt *st = NULL;
	json_t *params = NULL, *items = NULL;
	struct buf sql;
	int64_t rv = 0;
	uint64_t seq;
	int rc, src, idx = 1;

	*out_items = NULL;
	if (out_rv)
		*out_rv = 0;
	if (!kind || !*kind)
		return al_error_set(AL_ERR_INVALID, "list: kind is required");
	if (ns && !*ns)
		ns = NULL; /* "" means every namespace, as in Kubernetes */
	buf_init(&sql, 64 * 1024);
	params = json_array();
	items = json_array();
	if (!params || !items) {
		rc = al_error_set(AL_ERR_NOMEM, "store: out of memory");
		goto out;
	}
	if ((rc = buf_appends(&sql, "SELECT o.body FROM objects o WHERE o.kind = ?")) < 0 ||
	    (ns && (rc = buf_appends(&sql, " AND o.namespace = ?")) < 0))
		goto out;
	if (selector && (rc = parse_selector(selector, &sql, params)) < 0)
		goto out;
	if ((rc = buf_appends(&sql, " ORDER BY o.namespace, o.name")) < 0)
		goto out;

	pthread_mutex_lock(&s->mu);
	if (!selector) {
		st = stmt(s, ns ? ST_LIST_NS : ST_LIST_ALL);
	} else if (sqlite3_prepare_v2(s->db, buf_cstr(&sql), -1, &st, NULL) != SQLITE_OK) {
		rc = db_error(s, sqlite3_errcode(s->db), "prepare list");
		goto unlock;
	}
	if ((rc = bind_text(st, idx++, kind)) < 0 || (ns && (rc = bind_text(st, idx++, ns)) < 0))
		goto unlock;
	for (size_t i = 0; i < json_array_size(params); i++)
		if ((rc = bind_text(st, idx++, json_string_value(json_array_get(params, i)))) < 0)
			goto unlock;
	/* One read transaction: the items and the version are one snapshot. */
	if ((rc = exec_simple(s, ST_BEGIN_READ, "begin a read")) < 0)
		goto unlock;
	if ((rc = read_int(s, ST_GET_RV, &rv, "read resourceVersion")) < 0)
		goto end;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		json_error_t jerr;
		json_t *o = json_loadb((const char *)sqlite3_column_text(st, 0),
				       (size_t)sqlite3_column_bytes(st, 0), 0, &jerr);
		if (!o) {
			rc = al_error_set(AL_ERR_IO, "store: a stored %s is not valid JSON (%s)", kind,
					  jerr.text);
			goto end;
		}
		if (json_array_append_new(items, o) < 0) {
			rc = al_error_set(AL_ERR_NOMEM, "store: out of memory");
			goto end;
		}
	}
	if (src != SQLITE_DONE)
		rc = db_error(s, src, "list objects");
end:
	sqlite3_reset(st);
	if (rc < 0)
		rollback(s);
	else
		rc = commit(s);
unlock:
	if (!selector) {
		/* Persistent: drop the bindings to the caller's strings. */
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	} else {
		sqlite3_finalize(st);
	}
	seq = seen_commits(s);
	pthread_mutex_unlock(&s->mu);
	rc = durable(s, seq, rc);
out:
	if (rc == AL_OK) {
		*out_items = items;
		items = NULL;
		if (out_rv)
			*out_rv = (uint64_t)rv;
	}
	json_decref(items);
	json_decref(params);
	buf_free(&sql);
	return rc;
}

/* ---- watch ---- */

static int read_events(struct sqlite_store *s, const char *kind, uint64_t since, int64_t upto,
		       json_t *events, uint64_t *last_rv)
{
	sqlite3_stmt *st = stmt(s, kind ? ST_EVENTS_KIND : ST_EVENTS_ALL);
	int rc = AL_OK, src;

	sqlite3_bind_int64(st, 1, (int64_t)since);
	sqlite3_bind_int64(st, 2, upto);
	sqlite3_bind_int(st, 3, WATCH_BATCH);
	if (kind && (rc = bind_text(st, 4, kind)) < 0)
		return rc;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		json_error_t jerr;
		json_t *o = json_loadb((const char *)sqlite3_column_text(st, 2),
				       (size_t)sqlite3_column_bytes(st, 2), 0, &jerr);
		json_t *ev;
		if (!o) {
			rc = al_error_set(AL_ERR_IO, "store: a stored watch event is not valid JSON (%s)",
					  jerr.text);
			break;
		}
		ev = json_pack("{s:s, s:o}", "type", (const char *)sqlite3_column_text(st, 1),
			       "object", o);
		if (!ev || json_array_append_new(events, ev) < 0) {
			rc = al_error_set(AL_ERR_NOMEM, "store: out of memory");
			break;
		}
		*last_rv = (uint64_t)sqlite3_column_int64(st, 0);
	}
	if (rc == AL_OK && src != SQLITE_DONE)
		rc = db_error(s, src, "read watch events");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static int sq_watch(struct store *base, const char *kind, uint64_t since_rv, int timeout_ms,
		    json_t **out_events, uint64_t *out_rv)
{
	struct sqlite_store *s = from_base(base);
	int64_t deadline = util_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	json_t *events = json_array();
	uint64_t last = 0, seq;
	int rc;

	*out_events = NULL;
	if (out_rv)
		*out_rv = 0;
	if (kind && !*kind)
		kind = NULL;
	if (!events)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory");
	pthread_mutex_lock(&s->mu);
	for (;;) {
		int64_t cur = 0, compacted = 0, left;
		struct timespec ts;

		if ((rc = read_int(s, ST_GET_COMPACTED, &compacted, "read watch history")) < 0 ||
		    (rc = read_int(s, ST_GET_RV, &cur, "read resourceVersion")) < 0)
			break;
		if (since_rv < (uint64_t)compacted) {
			rc = al_error_set(AL_ERR_CONFLICT, "resourceVersion %" PRIu64 " is too old: relist",
					  since_rv);
			break;
		}
		if (since_rv > (uint64_t)cur) {
			rc = al_error_set(AL_ERR_CONFLICT,
					  "resourceVersion %" PRIu64 " is newer than the store's (%" PRId64
					  "): relist",
					  since_rv, cur);
			break;
		}
		/* Events up to `cur` only, so "no events" means "nothing of this
		 * kind up to cur" and cur is a safe place to resume from. */
		if ((rc = read_events(s, kind, since_rv, cur, events, &last)) < 0)
			break;
		if (json_array_size(events) > 0) {
			if (out_rv)
				*out_rv = last;
			break;
		}
		left = deadline - util_monotonic_ms();
		if (left <= 0) {
			if (out_rv)
				*out_rv = (uint64_t)cur;
			break;
		}
		/* In-process writers signal; other processes are seen by polling. */
		deadline_after(&ts, (int)(left < WATCH_POLL_MS ? left : WATCH_POLL_MS));
		pthread_cond_timedwait(&s->changed, &s->mu, &ts);
	}
	seq = seen_commits(s);
	pthread_mutex_unlock(&s->mu);
	rc = durable(s, seq, rc);
	if (rc < 0) {
		json_decref(events);
		return rc;
	}
	*out_events = events;
	return AL_OK;
}

/* ---- audit ---- */

static int sq_audit_append(struct store *base, const json_t *audit)
{
	struct sqlite_store *s = from_base(base);
	uint64_t seq;
	int rc;

	if (!json_is_object(audit))
		return al_error_set(AL_ERR_INVALID, "audit entry must be a JSON object");
	pthread_mutex_lock(&s->mu);
	if ((rc = begin_write(s)) == AL_OK) {
		rc = audit_insert(s, audit, NULL);
		rc = end_write(s, rc, 0);
	}
	seq = seen_commits(s);
	pthread_mutex_unlock(&s->mu);
	return durable(s, seq, rc);
}

static int sq_audit_list(struct store *base, uint64_t after_seq, size_t limit, json_t **out)
{
	struct sqlite_store *s = from_base(base);
	json_t *arr = json_array();
	sqlite3_stmt *st;
	uint64_t seq;
	int rc = AL_OK, src;

	*out = NULL;
	if (!arr)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory");
	if (after_seq > (uint64_t)INT64_MAX)
		after_seq = (uint64_t)INT64_MAX;
	pthread_mutex_lock(&s->mu);
	st = stmt(s, ST_AUDIT_LIST);
	sqlite3_bind_int64(st, 1, (int64_t)after_seq);
	sqlite3_bind_int64(st, 2, (limit == 0 || limit > (size_t)INT64_MAX) ? -1 : (int64_t)limit);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		json_error_t jerr;
		json_t *r = json_loadb((const char *)sqlite3_column_text(st, 0),
				       (size_t)sqlite3_column_bytes(st, 0), 0, &jerr);
		if (!r) {
			rc = al_error_set(AL_ERR_IO, "store: a stored audit record is not valid JSON (%s)",
					  jerr.text);
			break;
		}
		if (json_array_append_new(arr, r) < 0) {
			rc = al_error_set(AL_ERR_NOMEM, "store: out of memory");
			break;
		}
	}
	if (rc == AL_OK && src != SQLITE_DONE)
		rc = db_error(s, src, "list audit records");
	sqlite3_reset(st);
	seq = seen_commits(s);
	pthread_mutex_unlock(&s->mu);
	rc = durable(s, seq, rc);
	if (rc < 0) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return AL_OK;
}

/* ---- open / close ---- */

static void sq_close(struct store *base)
{
	struct sqlite_store *s = from_base(base);
	if (!s)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	if (s->db)
		sqlite3_close(s->db);
	if (s->wal_fd >= 0)
		close(s->wal_fd);
	pthread_cond_destroy(&s->sync_done);
	pthread_mutex_destroy(&s->sync_mu);
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static const struct store_ops sqlite_ops = {
	.create = sq_create,
	.create_many = sq_create_many,
	.get = sq_get,
	.list = sq_list,
	.update = sq_update,
	.update_status = sq_update_status,
	.remove = sq_remove,
	.watch = sq_watch,
	.audit_append = sq_audit_append,
	.audit_list = sq_audit_list,
	.close = sq_close,
};

static int exec_sql(sqlite3 *db, const char *sql, const char *path, const char *what)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		int rc = al_error_set(AL_ERR_IO, "store %s: %s: %s", path, what,
				      msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return rc;
	}
	return AL_OK;
}

static int user_version(sqlite3 *db, int *out)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return AL_ERR_IO;
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return AL_ERR_IO;
	}
	*out = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return AL_OK;
}

/* Creates or checks the schema in one write transaction, so two processes
 * opening a new database at once do not race. */
static int migrate(sqlite3 *db, const char *path)
{
	char sql[64];
	int rc, ver = 0;

	if ((rc = exec_sql(db, "BEGIN IMMEDIATE", path, "begin schema setup")) < 0)
		return rc;
	if (user_version(db, &ver) < 0) {
		rc = al_error_set(AL_ERR_IO, "store %s: cannot read the schema version: %s", path,
				  sqlite3_errmsg(db));
		goto fail;
	}
	if (ver > SCHEMA_VERSION) {
		rc = al_error_set(AL_ERR_IO,
				  "store %s: schema version %d was written by a newer airlock (this one "
				  "knows %d); upgrade airlock",
				  path, ver, SCHEMA_VERSION);
		goto fail;
	}
	if (ver < SCHEMA_VERSION) {
		if ((rc = exec_sql(db, schema_sql, path, "create schema")) < 0)
			goto fail;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
		if ((rc = exec_sql(db, sql, path, "set schema version")) < 0)
			goto fail;
	}
	return exec_sql(db, "COMMIT", path, "commit schema setup");
fail:
	(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Switches to the group commit when the database is in WAL mode and its WAL
 * file can be opened; otherwise leaves synchronous=FULL in force. */
static void enable_group_commit(struct sqlite_store *s, const char *path)
{
	sqlite3_stmt *st = NULL;
	struct buf p;
	char *slash;
	int wal = 0, fd;

	if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		wal = sqlite3_column_text(st, 0) && !strcmp((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	if (!wal)
		return;
	buf_init(&p, 8192);
	if (buf_appendf(&p, "%s-wal", path) < 0) {
		buf_free(&p);
		return;
	}
	fd = open(buf_cstr(&p), O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		buf_free(&p);
		return;
	}
	/* SQLite syncs the directory when it creates the WAL only on its own
	 * first sync of it, which synchronous=NORMAL may never make: do it here. */
	buf_reset(&p);
	slash = strrchr(path, '/');
	if (buf_appendf(&p, "%.*s", slash ? (int)(slash - path) + (slash == path) : 1, slash ? path : ".") < 0 ||
	    util_fsync_dir(buf_cstr(&p)) < 0 ||
	    sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
		al_error_clear();
		close(fd);
		buf_free(&p);
		return;
	}
	buf_free(&p);
	s->wal_fd = fd;
}

int store_sqlite_open(struct store **out, const char *path)
{
	struct sqlite_store *s;
	pthread_condattr_t ca;
	int rc, fd;

	*out = NULL;
	if (!path || !*path)
		return al_error_set(AL_ERR_INVALID, "store: a database path is required");
	/* The database holds the audit log: create it private before SQLite
	 * does (SQLite gives its -wal/-shm files the same mode). */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return al_error_set(AL_ERR_IO, "store: cannot open %s: %s", path, strerror(errno));
	close(fd);

	s = calloc(1, sizeof(*s));
	if (!s)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory");
	s->base.ops = &sqlite_ops;
	s->wal_fd = -1;
	atomic_init(&s->committed, 0);
	atomic_init(&s->synced, 0);
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		free(s);
		return al_error_set(AL_ERR_INTERNAL, "store: cannot create a mutex");
	}
	if (pthread_mutex_init(&s->sync_mu, NULL) != 0) {
		pthread_mutex_destroy(&s->mu);
		free(s);
		return al_error_set(AL_ERR_INTERNAL, "store: cannot create a mutex");
	}
	if (pthread_cond_init(&s->sync_done, NULL) != 0) {
		pthread_mutex_destroy(&s->sync_mu);
		pthread_mutex_destroy(&s->mu);
		free(s);
		return al_error_set(AL_ERR_INTERNAL, "store: cannot create a condition variable");
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&s->changed, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0) {
		pthread_cond_destroy(&s->sync_done);
		pthread_mutex_destroy(&s->sync_mu);
		pthread_mutex_destroy(&s->mu);
		free(s);
		return al_error_set(AL_ERR_INTERNAL, "store: cannot create a condition variable");
	}
	if (sqlite3_open_v2(path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		rc = al_error_set(AL_ERR_IO, "store: cannot open database %s: %s", path,
				  s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, 5000);
	if ((rc = exec_sql(s->db, "PRAGMA journal_mode=WAL", path, "enable WAL")) < 0 ||
	    (rc = exec_sql(s->db, "PRAGMA synchronous=FULL", path, "set synchronous")) < 0 ||
	    (rc = exec_sql(s->db, "PRAGMA foreign_keys=ON", path, "enable foreign keys")) < 0 ||
	    (rc = migrate(s->db, path)) < 0)
		goto fail;
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
				       NULL) != SQLITE_OK) {
			rc = al_error_set(AL_ERR_IO, "store %s: cannot prepare \"%s\": %s", path,
					  stmt_sql[i], sqlite3_errmsg(s->db));
			goto fail;
		}
	}
	enable_group_commit(s, path);
	*out = &s->base;
	return AL_OK;
fail:
	sq_close(&s->base);
	return rc;
}
