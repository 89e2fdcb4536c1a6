/*
 * http_server.h - a small HTTP/1.1 server over libmicrohttpd for the API.
 *
 * What it promises:
 *  - One handler function sees every request, once, after the whole body has
 *    arrived. Bodies are held in memory and bounded by `max_body`: a request
 *    whose Content-Length is over the limit is answered 413 before any of the
 *    body is read, and a chunked body that grows past it is answered 413
 *    without calling the handler.
 *  - Thread per connection: the handler runs on the connection's own thread,
 *    so it may block (a long-poll watch, a slow database) without stalling
 *    other requests. Several handlers run at the same time: the handler and
 *    its userdata must be thread-safe. At most HTTP_SERVER_MAX_CONNECTIONS
 *    connections are served at once; an idle connection is closed after 60 s.
 *  - Every response carries X-Content-Type-Options: nosniff,
 *    Cache-Control: no-store, Referrer-Policy: no-referrer and
 *    Content-Security-Policy: default-src 'none'; frame-ancestors 'none'
 *    unless the handler set that header itself (an HTML page sets its own CSP).
 *  - One access-log line per request via log_info: method, path (without the
 *    query string), status, duration in ms. Never headers (Authorization) or
 *    bodies. Paths are logged, so never put a secret into a URL path.
 *
 * Ownership: a struct http_request and everything it points to belong to the
 * server and are valid only during the handler call. The handler fills the
 * struct http_response it is given; the server frees it afterwards.
 */
#ifndef AL_WEB_HTTP_SERVER_H
#define AL_WEB_HTTP_SERVER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define HTTP_SERVER_MAX_CONNECTIONS 256
#define HTTP_SERVER_CONNECTION_TIMEOUT_S 60
/* max_body used when http_server_start() is given 0. */
#define HTTP_SERVER_DEFAULT_MAX_BODY ((size_t)1 << 20)

struct MHD_Connection;

struct http_request {
	const char *method;      /* "GET", "POST", ... as sent */
	const char *path;        /* percent-decoded URL path, no query string */
	const char *body;        /* NUL-terminated copy of the body ("" when none);
				  * may itself contain NULs: use body_len */
	size_t body_len;
	const char *remote_addr; /* client IP address as text, "" if unknown */
	/* Opaque: used by http_request_header/_query. */
	struct MHD_Connection *connection;
	/* For unit tests of handlers without a socket: when `connection` is
	 * NULL, headers and query are looked up in these NULL-terminated
	 * {name, value, name, value, ..., NULL} lists (either may be NULL). */
	const char *const *test_headers;
	const char *const *test_query;
};

/* The value of request header `name` (case-insensitive), or NULL if absent.
 * Valid during the handler call only. */
const char *http_request_header(const struct http_request *req, const char *name);

/* The percent-decoded value of query parameter `key` (case-sensitive), NULL if
 * absent, "" for a key given without '=' ("?watch"). When a key is repeated,
 * the first value. Valid during the handler call only. */
const char *http_request_query(const struct http_request *req, const char *key);

struct http_header {
	char *name;
	char *value;
};

struct http_response {
	int status;              /* 0 until the handler sets one; 0 answers 500 */
	char *content_type;      /* owned; NULL sends no Content-Type */
	struct buf body;         /* owned; bounded by BUF_DEFAULT_MAX (64 MiB) */
	struct http_header *headers; /* owned extra headers */
	size_t n_headers;
	int fd;                  /* owned file body (http_response_file), -1 when none */
	uint64_t fd_size;
};

/* Handlers receive an initialised response. Tests of handlers may use these
 * two directly. */
void http_response_init(struct http_response *resp);
void http_response_free(struct http_response *resp);

/* Each setter replaces the status, content type and body set before; extra
 * headers are kept. They return AL_OK or AL_ERR_NOMEM / AL_ERR_TOO_LARGE, and
 * on failure leave a 500 error in the response, so a handler may ignore the
 * return value and simply return. */

/* JSON body (application/json). `body` is stolen (decref'd), even on error;
 * NULL answers 500. */
int http_response_json(struct http_response *resp, int status, json_t *body);
/* text/plain; charset=utf-8. */
int http_response_text(struct http_response *resp, int status, const char *text);
/* Any bytes with the given content type (e.g. "text/html; charset=utf-8"). */
int http_response_bytes(struct http_response *resp, int status, const char *content_type,
			const void *data, size_t len);
/* {"error": {"code": al_error_name(code), "message": message, "status": N}}
 * with N = al_error_http_status(code). `message` is sent to the client as is:
 * never put a secret in it. NULL message uses al_error_message(). */
int http_response_error(struct http_response *resp, int al_error_code, const char *message);
/* Streams `size` bytes of the open file `fd` from its offset 0 (downloads).
 * Takes ownership of fd (closed by the server, also on error). */
int http_response_file(struct http_response *resp, int status, const char *content_type,
		       int fd, uint64_t size);
/* Adds (or replaces, case-insensitively) an extra header. Names and values
 * with CR or LF are refused (AL_ERR_INVALID): no header injection. */
int http_response_header(struct http_response *resp, const char *name, const char *value);

typedef void (*http_handler_fn)(void *userdata, const struct http_request *req,
				struct http_response *resp);

struct http_server;

/* Starts listening and serving on background threads.
 * bind_address: a numeric IPv4 or IPv6 address ("127.0.0.1", "::1", "0.0.0.0",
 *   "::" which also accepts IPv4), or "localhost"; NULL means 127.0.0.1.
 * port: 0 picks a free port (see http_server_port).
 * max_body: largest request body accepted in bytes; 0 means
 *   HTTP_SERVER_DEFAULT_MAX_BODY.
 * handler/userdata: called concurrently from connection threads (see top).
 * On success *out owns the server; stop it with http_server_stop. */
int http_server_start(struct http_server **out, const char *bind_address, unsigned short port,
		      size_t max_body, http_handler_fn handler, void *userdata);

/* The port actually bound (useful after port 0). */
unsigned short http_server_port(const struct http_server *srv);

/* Stops accepting, waits for every running handler to return (so make
 * blocking handlers time out or wake them first), and frees the server.
 * NULL is a no-op. Do not call it from a handler. */
void http_server_stop(struct http_server *srv);

#endif
