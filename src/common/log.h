/*
 * log.h - structured logging: one JSON object per line on stderr
 * ({"time":..., "level":..., "msg":..., plus fields}). Safe from any thread.
 *
 * Never pass a secret to a log call: messages are written verbatim.
 */
#ifndef AL_COMMON_LOG_H
#define AL_COMMON_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
/* Text format ("time level msg") instead of JSON, for a terminal. */
void log_set_text(int text);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
