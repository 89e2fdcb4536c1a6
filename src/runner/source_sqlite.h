/*
 * source_sqlite.h - reads tables out of a SQLite database for the job runner.
 *
 * The database is opened read-only (SQLITE_OPEN_READONLY, untrusted schema
 * features off) and one read transaction is held from open to close, so every
 * table exported through one handle comes from the same snapshot.
 *
 * Table names are always quoted as identifiers (double quotes doubled) and
 * checked against sqlite_schema first, so a missing table gives a message
 * listing the tables that do exist.
 */
#ifndef AL_RUNNER_SOURCE_SQLITE_H
#define AL_RUNNER_SOURCE_SQLITE_H

#include "runner/source.h"

#include <jansson.h>
#include <stdint.h>

/* The source itself is source_sqlite_ops (source.h); url as below. */

/* Accepts "sqlite:///abs/path.db", "sqlite:relative/path.db",
 * "sqlite://relative" (as SQLAlchemy writes it) or a plain path. *path is a new
 * string (free it). */
int source_sqlite_path_from_url(const char *url, char **path);

#endif
