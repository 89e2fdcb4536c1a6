#include "auth/authdb.h"

#include "common/error.h"

#include <stddef.h>
#include <string.h>

int authdb_fail(sqlite3 *db, const char *doing)
{
	int ec = db ? sqlite3_errcode(db) : SQLITE_ERROR;
	int code = (ec == SQLITE_BUSY || ec == SQLITE_LOCKED) ? AL_ERR_UNAVAILABLE : AL_ERR_IO;
	return al_error_set(code, "%s: %s%s", doing, db ? sqlite3_errmsg(db) : "cannot open database",
			    code == AL_ERR_UNAVAILABLE ? " (the database is busy; try again)" : "");
}

int authdb_exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK)
		return AL_OK;
	rc = authdb_fail(db, "database");
	sqlite3_free(err);
	return rc;
}

int authdb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	*st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
		sqlite3_finalize(*st);
		*st = NULL;
		return authdb_fail(db, "database: preparing a query");
	}
	return AL_OK;
}

int authdb_begin(sqlite3 *db)
{
	return authdb_exec(db, "BEGIN IMMEDIATE");
}

int authdb_commit(sqlite3 *db)
{
	int rc = authdb_exec(db, "COMMIT");
	if (rc < 0)
		authdb_rollback(db);
	return rc;
}

void authdb_rollback(sqlite3 *db)
{
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

int authdb_open(sqlite3 **out, const char *db_path, const char *schema)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc;

	*out = NULL;
	if (!db_path || !*db_path)
		return al_error_set(AL_ERR_INVALID, "no database path given");
	if (sqlite3_open_v2(db_path, &db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		rc = al_error_set(AL_ERR_IO, "cannot open the database: %s",
				  db ? sqlite3_errmsg(db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(db, AUTHDB_BUSY_TIMEOUT_MS);
	/* journal_mode answers the mode in force; anything but wal means it did not take. */
	if ((rc = authdb_prepare(db, "PRAGMA journal_mode=WAL", &st)) < 0)
		goto fail;
	if (sqlite3_step(st) != SQLITE_ROW) {
		rc = authdb_fail(db, "cannot switch the database to WAL mode");
		goto fail;
	}
	if (strcmp((const char *)sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "",
		   "wal")) {
		rc = al_error_set(AL_ERR_IO, "the database cannot use WAL mode (is it on a network file system?)");
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	if ((rc = authdb_exec(db, "PRAGMA synchronous=FULL")) < 0)
		goto fail;
	if ((rc = authdb_begin(db)) < 0)
		goto fail;
	if ((rc = authdb_exec(db, schema)) < 0) {
		authdb_rollback(db);
		goto fail;
	}
	if ((rc = authdb_commit(db)) < 0)
		goto fail;
	*out = db;
	return AL_OK;
fail:
	al_error_wrap(rc, "%s", db_path);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}
