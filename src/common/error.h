/*
 * error.h - the one error convention of airlock.
 *
 * Every fallible function returns an int: AL_OK (0) on success or a negative
 * al_error code. The human-readable detail lives in a thread-local message set
 * with al_error_set(), which returns the code so callers can write
 *
 *     if (!ok) return al_error_set(AL_ERR_INVALID, "spec.type must be Import or Uploaded");
 *     if ((rc = store_get(...)) < 0) return rc;   // propagate, message kept
 *
 * Messages are for people: say what was wrong and what to do. They never
 * contain secrets. A message is bounded (truncated at AL_ERROR_MSG_MAX bytes).
 */
#ifndef AL_COMMON_ERROR_H
#define AL_COMMON_ERROR_H

#include <stddef.h>

typedef enum {
	AL_OK = 0,
	AL_ERR_INVALID = -1,      /* bad input: HTTP 400 / 422 */
	AL_ERR_NOT_FOUND = -2,    /* HTTP 404 */
	AL_ERR_CONFLICT = -3,     /* stale resourceVersion, illegal transition: 409 */
	AL_ERR_EXISTS = -4,       /* object already exists: 409 */
	AL_ERR_FORBIDDEN = -5,    /* authenticated but not allowed: 403 */
	AL_ERR_UNAUTHORIZED = -6, /* no or bad credentials: 401 */
	AL_ERR_TOO_LARGE = -7,    /* input over a configured cap: 413 */
	AL_ERR_IO = -8,           /* filesystem, database or network failure: 500 */
	AL_ERR_NOMEM = -9,        /* allocation failed: 500 */
	AL_ERR_UNAVAILABLE = -10, /* try again later: 503 */
	AL_ERR_TIMEOUT = -11,     /* deadline exceeded: 504 */
	AL_ERR_INTERNAL = -12,    /* a bug: 500 */
	AL_ERR_GONE = -13         /* a resourceVersion too old to watch from: relist (410) */
} al_error;

#define AL_ERROR_MSG_MAX 1024

/* Records a printf-style message for this thread and returns `code`. */
int al_error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with "prefix: " and returns `code`. */
int al_error_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last message set on this thread, or "" when none. Never NULL. */
const char *al_error_message(void);

void al_error_clear(void);

/* Stable lower-case name of a code, e.g. "invalid", "not_found". */
const char *al_error_name(int code);

/* HTTP status that the API answers for a code. */
int al_error_http_status(int code);

#endif
