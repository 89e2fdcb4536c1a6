/*
 * authdb.h - the SQLite plumbing shared by accounts.c and credstore.c: each
 * opens its own connection to the airlock database file with the settings
 * every airlock connection uses (WAL, synchronous=FULL so an acknowledged
 * write survives a crash, busy_timeout 5000 ms), and writes inside
 * BEGIN IMMEDIATE ... COMMIT.
 *
 * Not thread-safe by itself: callers hold their own mutex around a connection.
 */
#ifndef AL_AUTH_AUTHDB_H
#define AL_AUTH_AUTHDB_H

#include <sqlite3.h>

#define AUTHDB_BUSY_TIMEOUT_MS 5000

/* Opens (creating) db_path and runs `schema` (CREATE ... IF NOT EXISTS
 * statements) in one write transaction. On error *out is NULL. */
int authdb_open(sqlite3 **out, const char *db_path, const char *schema);
/* Runs SQL without results; errors name what failed. */
int authdb_exec(sqlite3 *db, const char *sql);
/* Prepares one statement; *st is NULL on error. */
int authdb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st);
/* Sets the error for a failed SQLite call ("<doing>: <sqlite message>") and
 * returns AL_ERR_UNAVAILABLE when the database is busy/locked, else AL_ERR_IO. */
int authdb_fail(sqlite3 *db, const char *doing);
int authdb_begin(sqlite3 *db);     /* BEGIN IMMEDIATE */
int authdb_commit(sqlite3 *db);
void authdb_rollback(sqlite3 *db); /* best effort, for error paths */

#endif
