/*
 * kube_internal.h - what the files of src/kube share and nobody else uses.
 */
#ifndef AL_KUBE_KUBE_INTERNAL_H
#define AL_KUBE_KUBE_INTERNAL_H

#include <curl/curl.h>
#include <jansson.h>

#include "common/buf.h"
#include "kube/kube.h"
#include "net/curl_dl.h"

#define KUBE_RESPONSE_MAX ((size_t)64 << 20)
#define KUBE_CONNECT_TIMEOUT_MS 10000L
#define KUBE_REQUEST_TIMEOUT_MS 60000L

/* Reads a bearer token file (trimmed, printable ASCII) into a new string. */
int kube_read_token_file(const char *path, char **out);

const struct curl_dl *kube_client_curl(const struct kube_client *kc);
const char *kube_client_server(const struct kube_client *kc);

/* Sets the options every request shares on a fresh or reset handle: TLS
 * (CA, client certificate, verification), protocols, no redirects, no
 * signals, the connect timeout, errbuf (CURL_ERROR_SIZE bytes), and headers
 * Accept: application/json plus Authorization when there is a token.
 * *headers must be freed with slist_free_all, and `auth` (which holds the
 * token) wiped and freed with kube_auth_free, after the transfer. */
int kube_client_setup(struct kube_client *kc, CURL *curl, char *errbuf, struct curl_slist **headers,
		      struct buf *auth);
/* Counts one request of `method` ("GET", ..., or "WATCH"). */
void kube_client_count(struct kube_client *kc, const char *method);
void kube_auth_free(struct buf *auth);

/* 1 if `p` starts with '/' and holds no space, control character or '#'. */
int kube_valid_path(const char *p);

/* Maps an HTTP status and Status body onto an error code with the message
 * "<METHOD> <path>: <Status.message>". */
int kube_status_error(long status, const json_t *answer, const char *method, const char *path);

#endif
