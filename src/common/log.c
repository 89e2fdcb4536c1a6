#include "common/log.h"
#include "common/util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static enum log_level min_level = LOG_INFO;
static int text_format;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(enum log_level level)
{
	min_level = level;
}

void log_set_text(int text)
{
	text_format = text;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	char when[UTIL_TIME_LEN];
	char *msg = NULL;
	va_list ap;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (!msg)
		return;
	util_now_rfc3339(when);
	pthread_mutex_lock(&log_lock);
	if (text_format) {
		fprintf(stderr, "%s %-5s %s\n", when, names[level], msg);
	} else {
		json_t *o = json_pack("{s:s, s:s, s:s}", "time", when, "level", names[level], "msg", msg);
		char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		if (line)
			fprintf(stderr, "%s\n", line);
		free(line);
		json_decref(o);
	}
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
	free(msg);
}
