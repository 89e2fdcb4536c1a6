#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A fixed, thread-local buffer: messages are our own output, bounded by
 * vsnprintf, and a static buffer needs no freeing when a thread exits. */
static _Thread_local char errmsg[AL_ERROR_MSG_MAX];

int al_error_set(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
	return code;
}

int al_error_wrap(int code, const char *fmt, ...)
{
	char msg[AL_ERROR_MSG_MAX];
	size_t n, m;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* msg + ": " + old message, truncated to fit. */
	n = strlen(msg);
	if (errmsg[0] && n + 2 < sizeof(msg)) {
		memcpy(msg + n, ": ", 2);
		n += 2;
		m = strlen(errmsg);
		if (m > sizeof(msg) - 1 - n)
			m = sizeof(msg) - 1 - n;
		memcpy(msg + n, errmsg, m);
		n += m;
		msg[n] = '\0';
	}
	memcpy(errmsg, msg, n + 1);
	return code;
}

const char *al_error_message(void)
{
	return errmsg;
}

void al_error_clear(void)
{
	errmsg[0] = '\0';
}

const char *al_error_name(int code)
{
	switch (code) {
	case AL_OK: return "ok";
	case AL_ERR_INVALID: return "invalid";
	case AL_ERR_NOT_FOUND: return "not_found";
	case AL_ERR_CONFLICT: return "conflict";
	case AL_ERR_EXISTS: return "already_exists";
	case AL_ERR_FORBIDDEN: return "forbidden";
	case AL_ERR_UNAUTHORIZED: return "unauthorized";
	case AL_ERR_TOO_LARGE: return "too_large";
	case AL_ERR_IO: return "io";
	case AL_ERR_NOMEM: return "out_of_memory";
	case AL_ERR_UNAVAILABLE: return "unavailable";
	case AL_ERR_TIMEOUT: return "timeout";
	case AL_ERR_GONE: return "gone";
	default: return "internal";
	}
}

int al_error_http_status(int code)
{
	switch (code) {
	case AL_OK: return 200;
	case AL_ERR_INVALID: return 400;
	case AL_ERR_NOT_FOUND: return 404;
	case AL_ERR_CONFLICT: return 409;
	case AL_ERR_EXISTS: return 409;
	case AL_ERR_FORBIDDEN: return 403;
	case AL_ERR_UNAUTHORIZED: return 401;
	case AL_ERR_TOO_LARGE: return 413;
	case AL_ERR_UNAVAILABLE: return 503;
	case AL_ERR_TIMEOUT: return 504;
	case AL_ERR_GONE: return 410;
	default: return 500;
	}
}
