/*
 * kube_creds.h - source credentials from a Kubernetes Secret, for the
 * operator (issue 4, item 3): a connection's credentials.userKey and
 * passwordKey name keys of one configured Secret (the chart's
 * sourceCredentials.secretName, AIRLOCK_SOURCE_CREDENTIALS_SECRET, in the
 * workload namespace). Plugs into struct operator_ctx as its cred_lookup.
 *
 * The Secret is read at most once every KUBE_CREDS_CACHE_MS (the several
 * keys of one datasource, and datasources arriving together, share one
 * read; a rotated or newly added key is seen within that time). Values are base64-decoded, handed out in memory
 * wiped on release (credstore_value_free), and never logged or put into an
 * error message: messages name only the key, the Secret and its namespace.
 */
#ifndef AL_OPERATOR_KUBE_CREDS_H
#define AL_OPERATOR_KUBE_CREDS_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

struct kube_client;

#define KUBE_CREDS_DEFAULT_SECRET "airlock-source-credentials"

#define KUBE_CREDS_CACHE_MS 1000

/* Set up with kube_creds_init; a zeroed struct may be freed. */
struct kube_creds {
	struct kube_client *kc; /* borrowed */
	const char *ns;         /* borrowed: the Secret's namespace */
	const char *secret;     /* borrowed: the Secret's name */
	/* private: the last answer (the Secret, or its absence) and when */
	pthread_mutex_t lock;
	int ready;
	json_t *cached;         /* the Secret's JSON, or NULL */
	int cached_rc;          /* AL_OK or AL_ERR_NOT_FOUND */
	int64_t cached_ms;      /* 0 = nothing cached */
};

void kube_creds_init(struct kube_creds *kcr, struct kube_client *kc, const char *ns, const char *secret);
/* Drops the cached Secret. */
void kube_creds_free(struct kube_creds *kcr);

/* operator_cred_lookup_fn over a struct kube_creds (userdata).
 * AL_ERR_NOT_FOUND (with a message saying what to create) when the Secret or
 * the key does not exist; AL_ERR_INVALID when the value is not base64 or
 * holds a NUL byte; other errors of the API (retried by the caller). */
int kube_creds_lookup(void *userdata, const char *key, char **out_value);

#endif
