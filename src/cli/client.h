/*
 * client.h - the CLI's HTTP client for the airlock API (/api/v1), over libcurl.
 *
 * The saved login lives in $AIRLOCK_CONFIG, else ~/.config/airlock/config.json,
 * as {"server": "...", "token": "..."} with mode 0600 (directory 0700).
 * Precedence for the server: the --server override, then $AIRLOCK_SERVER, then
 * the saved server, then CLIENT_DEFAULT_SERVER. The token comes from
 * $AIRLOCK_TOKEN, else the saved token - but a saved token is only sent to the
 * server it was saved for, so `--server other` never leaks it elsewhere.
 *
 * Requests never follow redirects (a redirect could carry the bearer token to
 * another host) and speak only http/https.
 *
 * libcurl: curl_global_init() is called once, on first use, through
 * pthread_once; the libcurl shipped here (7.88) makes it thread-safe, but
 * main() may also call curl_global_init(CURL_GLOBAL_DEFAULT) itself before
 * starting threads. A struct client is for one thread at a time; separate
 * clients may be used from separate threads.
 */
#ifndef AL_CLI_CLIENT_H
#define AL_CLI_CLIENT_H

#include <jansson.h>
#include <stddef.h>

#define CLIENT_DEFAULT_SERVER "http://127.0.0.1:8080"
/* Largest answer body accepted. */
#define CLIENT_MAX_RESPONSE ((size_t)64 << 20)

struct client {
	char *server;     /* owned; base URL without a trailing '/' */
	char *token;      /* owned; NULL when not logged in */
	long timeout_ms;  /* whole-request limit; 0 = none (long-poll waits). Connect is 10 s. */
};

/* Fills `c` (which it zeroes first) from the saved login and the environment
 * (see top). server_override may be NULL. A missing config file is not an
 * error (no token). A config file readable by group or others is refused
 * (AL_ERR_FORBIDDEN) because it holds a token. Free with client_free. */
int client_load(struct client *c, const char *server_override);

/* Saves the login atomically with mode 0600, creating the directory with 0700.
 * token NULL saves the server only (a logout). */
int client_save(const char *server, const char *token);

/* The config file path in use ($AIRLOCK_CONFIG or the default); free it. */
char *client_config_path(void);

/* Sends `method` to server + `path` (path starts with '/', e.g.
 * "/api/v1/datasources?x=1"; the caller escapes it) with Accept and, when a
 * token is known, Authorization: Bearer. `body` (may be NULL) is sent as JSON.
 * out_status (may be NULL): the HTTP status, 0 if there was no answer.
 * out_json (may be NULL): the parsed answer (new reference; NULL when the answer
 * was empty), set for errors too, so callers can show details.
 * Returns AL_OK for 2xx. For other statuses, the error code named in the
 * answer's error.code (else one derived from the status) with the answer's
 * error.message as the message. A server that cannot be reached answers
 * AL_ERR_UNAVAILABLE; an answer over CLIENT_MAX_RESPONSE AL_ERR_TOO_LARGE; a
 * non-JSON answer AL_ERR_IO. */
int client_request(struct client *c, const char *method, const char *path, const json_t *body,
		   long *out_status, json_t **out_json);

/* As client_request, with a raw body of `len` bytes and the given content type
 * (e.g. "application/yaml"). body NULL sends no body. */
int client_request_raw(struct client *c, const char *method, const char *path,
		       const char *content_type, const void *body, size_t len, long *out_status,
		       json_t **out_json);

/* Frees server and token (the token is wiped first). NULL-safe. */
void client_free(struct client *c);

#endif
