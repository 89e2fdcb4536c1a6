/*
 * kube_creds.h - source credentials from a Kubernetes Secret, for the
 * operator (issue 4, item 3): a connection's credentials.userKey and
 * passwordKey name keys of one configured Secret (the chart's
 * sourceCredentials.secretName, AIRLOCK_SOURCE_CREDENTIALS_SECRET, in the
 * workload namespace). Plugs into struct operator_ctx as its cred_lookup.
 *
 * The Secret is read on every lookup (a GET; no cache, so a rotated or newly
 * added key is seen at once). Values are base64-decoded, handed out in memory
 * wiped on release (credstore_value_free), and never logged or put into an
 * error message: messages name only the key, the Secret and its namespace.
 */
#ifndef AL_OPERATOR_KUBE_CREDS_H
#define AL_OPERATOR_KUBE_CREDS_H

struct kube_client;

#define KUBE_CREDS_DEFAULT_SECRET "airlock-source-credentials"

struct kube_creds {
	struct kube_client *kc; /* borrowed */
	const char *ns;         /* borrowed: the Secret's namespace */
	const char *secret;     /* borrowed: the Secret's name */
};

/* operator_cred_lookup_fn over a struct kube_creds (userdata).
 * AL_ERR_NOT_FOUND (with a message saying what to create) when the Secret or
 * the key does not exist; AL_ERR_INVALID when the value is not base64 or
 * holds a NUL byte; other errors of the API (retried by the caller). */
int kube_creds_lookup(void *userdata, const char *key, char **out_value);

#endif
