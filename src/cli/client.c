#include "cli/client.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "net/curl_dl.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_MAX ((size_t)64 << 10)


static void wipe_free(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

void client_free(struct client *c)
{
	if (!c)
		return;
	free(c->server);
	wipe_free(c->token);
	c->server = NULL;
	c->token = NULL;
}

char *client_config_path(void)
{
	const char *env = getenv("AIRLOCK_CONFIG");
	const char *home;
	if (env && *env)
		return util_strdup(env);
	home = getenv("HOME");
	if (!home || !*home)
		return NULL;
	return util_path_join(home, ".config/airlock/config.json");
}

/* A copy of a server URL without trailing '/', checked to be http(s). */
static int normalize_server(const char *in, char **out)
{
	size_t n;
	*out = NULL;
	if (strncmp(in, "http://", 7) && strncmp(in, "https://", 8))
		return al_error_set(AL_ERR_INVALID,
				    "server '%s' must be a URL starting with http:// or https://, e.g. %s",
				    in, CLIENT_DEFAULT_SERVER);
	n = strlen(in);
	while (n > 8 && in[n - 1] == '/')
		n--;
	if (!(*out = strndup(in, n)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

/* Reads the saved {server, token}; a missing file leaves both NULL. */
static int read_config(const char *path, char **server, char **token)
{
	struct stat st;
	json_error_t jerr;
	json_t *root = NULL, *v;
	char *text = NULL;
	size_t len = 0;
	int rc;

	*server = *token = NULL;
	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			return AL_OK;
		return al_error_set(AL_ERR_IO, "cannot read %s: %s", path, strerror(errno));
	}
	if (st.st_mode & 077)
		return al_error_set(AL_ERR_FORBIDDEN,
				    "%s holds a login token but is readable by group or others; run: chmod 600 %s",
				    path, path);
	if ((rc = util_read_file(path, CONFIG_MAX, &text, &len)) < 0)
		return rc == AL_ERR_NOT_FOUND ? AL_OK : rc;
	root = json_loadb(text, len, 0, &jerr);
	if (!root || !json_is_object(root)) {
		rc = al_error_set(AL_ERR_INVALID,
				  "%s is not a JSON object like {\"server\": ..., \"token\": ...} (%s); log in again to rewrite it",
				  path, root ? "not an object" : jerr.text);
		goto out;
	}
	if ((v = json_object_get(root, "server")) && json_is_string(v) &&
	    (rc = normalize_server(json_string_value(v), server)) < 0) {
		al_error_wrap(rc, "%s", path);
		goto out;
	}
	if ((v = json_object_get(root, "token")) && json_is_string(v) && json_string_length(v) &&
	    !(*token = util_strdup(json_string_value(v)))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = AL_OK;
out:
	if (rc < 0) {
		free(*server);
		wipe_free(*token);
		*server = *token = NULL;
	}
	json_decref(root);
	if (text) {
		sodium_memzero(text, len);
		free(text);
	}
	return rc;
}

int client_load(struct client *c, const char *server_override)
{
	char *path = NULL, *saved_server = NULL, *saved_token = NULL;
	const char *env_server = getenv("AIRLOCK_SERVER");
	const char *env_token = getenv("AIRLOCK_TOKEN");
	const char *want;
	int rc;

	memset(c, 0, sizeof(*c));
	path = client_config_path();
	if (path && (rc = read_config(path, &saved_server, &saved_token)) < 0)
		goto out;

	if (server_override && *server_override)
		want = server_override;
	else if (env_server && *env_server)
		want = env_server;
	else if (saved_server)
		want = saved_server;
	else
		want = CLIENT_DEFAULT_SERVER;
	if ((rc = normalize_server(want, &c->server)) < 0)
		goto out;

	rc = AL_OK;
	if (env_token && *env_token) {
		if (!(c->token = util_strdup(env_token)))
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	} else if (saved_token && saved_server && !strcmp(saved_server, c->server)) {
		c->token = saved_token;
		saved_token = NULL;
	}
out:
	if (rc < 0)
		client_free(c);
	free(path);
	free(saved_server);
	wipe_free(saved_token);
	return rc;
}

int client_save(const char *server, const char *token)
{
	char *path = NULL, *dir = NULL, *norm = NULL, *text = NULL, *slash;
	json_t *root = NULL;
	int rc;

	if (!server)
		return al_error_set(AL_ERR_INVALID, "no server to save");
	if ((rc = normalize_server(server, &norm)) < 0)
		return rc;
	if (!(path = client_config_path())) {
		rc = al_error_set(AL_ERR_INVALID,
				  "cannot tell where to save the login: set HOME or AIRLOCK_CONFIG");
		goto out;
	}
	if (!(dir = util_strdup(path))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((slash = strrchr(dir, '/')) && slash != dir) {
		*slash = '\0';
		if ((rc = util_mkdir_p(dir, 0700)) < 0)
			goto out;
	}
	root = token ? json_pack("{s:s, s:s}", "server", norm, "token", token)
		     : json_pack("{s:s}", "server", norm);
	if (!root || !(text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER))) {
		rc = al_error_set(AL_ERR_INVALID, "cannot encode the login (is the token valid UTF-8?)");
		goto out;
	}
	rc = util_write_file_atomic(path, text, strlen(text), 0600);
out:
	json_decref(root);
	wipe_free(text);
	free(path);
	free(dir);
	free(norm);
	return rc;
}

struct sink {
	struct buf b;
	int too_large;
};

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct sink *s = userp;
	size_t n = size * nmemb;
	if (buf_append(&s->b, data, n) < 0) {
		s->too_large = 1;
		return 0; /* aborts the transfer */
	}
	return n;
}

/* Error code for a non-2xx answer: the body's error.code if we know it, else
 * one derived from the status. */
static int code_for(long status, const json_t *answer)
{
	const char *name = json_string_value(json_object_get(json_object_get(answer, "error"), "code"));
	if (name) {
		for (int code = AL_ERR_INVALID; code >= AL_ERR_INTERNAL; code--)
			if (!strcmp(al_error_name(code), name))
				return code;
	}
	switch (status) {
	case 400: case 422: return AL_ERR_INVALID;
	case 401: return AL_ERR_UNAUTHORIZED;
	case 403: return AL_ERR_FORBIDDEN;
	case 404: return AL_ERR_NOT_FOUND;
	case 409: case 410: return AL_ERR_CONFLICT;
	case 413: return AL_ERR_TOO_LARGE;
	case 503: return AL_ERR_UNAVAILABLE;
	case 504: return AL_ERR_TIMEOUT;
	default: return status >= 500 ? AL_ERR_INTERNAL : AL_ERR_INVALID;
	}
}

static int perform(struct client *c, const char *method, const char *path, const char *content_type,
		   const void *body, size_t len, long *out_status, json_t **out_json)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *headers = NULL, *h;
	struct sink sink;
	struct buf url, auth;
	json_t *answer = NULL;
	long status = 0;
	CURLcode cc;
	CURL *curl = NULL;
	const struct curl_dl *cu;
	int rc;

	if (out_status)
		*out_status = 0;
	if (out_json)
		*out_json = NULL;
	buf_init(&sink.b, CLIENT_MAX_RESPONSE);
	sink.too_large = 0;
	buf_init(&url, 0);
	buf_init(&auth, 0);
	if (!c || !c->server || !method || !path || path[0] != '/')
		return al_error_set(AL_ERR_INVALID, "client request: need a loaded client, a method and a path starting with '/'");
	if (!(cu = curl_dl()))
		return AL_ERR_UNAVAILABLE;
	if ((rc = buf_appendf(&url, "%s%s", c->server, path)) < 0)
		goto out;
	if (!(curl = cu->easy_init())) {
		rc = al_error_set(AL_ERR_NOMEM, "cannot create a libcurl handle");
		goto out;
	}

#define ADD_HEADER(text)                                                        \
	do {                                                                    \
		if (!(h = cu->slist_append(headers, (text)))) {                \
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");       \
			goto out;                                               \
		}                                                               \
		headers = h;                                                    \
	} while (0)

	ADD_HEADER("Accept: application/json");
	ADD_HEADER("Expect:");
	if (body && content_type) {
		struct buf ct;
		buf_init(&ct, 1024);
		rc = buf_appendf(&ct, "Content-Type: %s", content_type);
		if (rc == AL_OK && !(h = cu->slist_append(headers, ct.ptr)))
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		buf_free(&ct);
		if (rc < 0)
			goto out;
		headers = h;
	}
	if (c->token) {
		if ((rc = buf_appendf(&auth, "Authorization: Bearer %s", c->token)) < 0)
			goto out;
		ADD_HEADER(auth.ptr);
	}
#undef ADD_HEADER

	errbuf[0] = '\0';
	cu->easy_setopt(curl, CURLOPT_URL, url.ptr);
	cu->easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	cu->easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	cu->easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	cu->easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	if (c->timeout_ms > 0)
		cu->easy_setopt(curl, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	cu->easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	cu->easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	cu->easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
	cu->easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
	cu->easy_setopt(curl, CURLOPT_USERAGENT, "airlock-cli/" AIRLOCK_VERSION);
	if (!strcmp(method, "GET") && !body) {
		cu->easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	} else if (!strcmp(method, "HEAD")) {
		cu->easy_setopt(curl, CURLOPT_NOBODY, 1L);
	} else {
		if (body || !strcmp(method, "POST")) {
			cu->easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
			cu->easy_setopt(curl, CURLOPT_POSTFIELDS, body ? body : "");
		}
		cu->easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	}

	cc = cu->easy_perform(curl);
	if (cc != CURLE_OK) {
		curl_off_t connected = 0;
		if (sink.too_large) {
			rc = al_error_set(AL_ERR_TOO_LARGE,
					  "the answer from %s is larger than %zu bytes; narrow the request",
					  c->server, (size_t)CLIENT_MAX_RESPONSE);
		} else if (cc == CURLE_OPERATION_TIMEDOUT &&
			   cu->easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connected) == CURLE_OK &&
			   connected > 0) {
			rc = al_error_set(AL_ERR_TIMEOUT, "no answer from the airlock at %s within %ld ms",
					  c->server, c->timeout_ms);
		} else {
			rc = al_error_set(AL_ERR_UNAVAILABLE,
					  "cannot reach the airlock at %s: %s; is `airlock serve` running?",
					  c->server, errbuf[0] ? errbuf : cu->easy_strerror(cc));
		}
		goto out;
	}
	cu->easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (out_status)
		*out_status = status;
	if (sink.b.len) {
		json_error_t jerr;
		answer = json_loadb(sink.b.ptr, sink.b.len, JSON_DECODE_ANY, &jerr);
	}
	if (status >= 200 && status < 300) {
		if (sink.b.len && !answer) {
			rc = al_error_set(AL_ERR_IO,
					  "the airlock at %s answered %s %s with something that is not JSON",
					  c->server, method, path);
			goto out;
		}
		rc = AL_OK;
	} else {
		const char *msg = json_string_value(
			json_object_get(json_object_get(answer, "error"), "message"));
		if (msg)
			rc = al_error_set(code_for(status, answer), "%s", msg);
		else
			rc = al_error_set(code_for(status, answer), "the airlock at %s answered HTTP %ld to %s %s",
					  c->server, status, method, path);
	}
	if (out_json) {
		*out_json = answer;
		answer = NULL;
	}
out:
	json_decref(answer);
	cu->slist_free_all(headers);
	if (curl)
		cu->easy_cleanup(curl);
	if (auth.ptr)
		sodium_memzero(auth.ptr, auth.len);
	buf_free(&auth);
	buf_free(&url);
	buf_free(&sink.b);
	return rc;
}

int client_request(struct client *c, const char *method, const char *path, const json_t *body,
		   long *out_status, json_t **out_json)
{
	char *text = NULL;
	int rc;

	if (body && !(text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY))) {
		if (out_status)
			*out_status = 0;
		if (out_json)
			*out_json = NULL;
		return al_error_set(AL_ERR_INVALID, "cannot encode the request body as JSON");
	}
	rc = perform(c, method, path, text ? "application/json" : NULL, text, text ? strlen(text) : 0,
		     out_status, out_json);
	free(text);
	return rc;
}

int client_request_raw(struct client *c, const char *method, const char *path,
		       const char *content_type, const void *body, size_t len, long *out_status,
		       json_t **out_json)
{
	return perform(c, method, path, body ? (content_type ? content_type : "application/octet-stream") : NULL,
		       body, len, out_status, out_json);
}
