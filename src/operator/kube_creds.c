/*
 * Source credentials from a Secret (kube_creds.h).
 */
#include "operator/kube_creds.h"
#include "common/error.h"
#include "common/util.h"
#include "kube/kube.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define DEADLINE_MS 10000

void kube_creds_init(struct kube_creds *kcr, struct kube_client *kc, const char *ns, const char *secret)
{
	memset(kcr, 0, sizeof(*kcr));
	kcr->kc = kc;
	kcr->ns = ns;
	kcr->secret = secret;
	pthread_mutex_init(&kcr->lock, NULL);
	kcr->ready = 1;
}

void kube_creds_free(struct kube_creds *kcr)
{
	if (!kcr || !kcr->ready)
		return;
	json_decref(kcr->cached);
	kcr->cached = NULL;
	pthread_mutex_destroy(&kcr->lock);
	kcr->ready = 0;
}

/* The Secret (a new reference) or AL_ERR_NOT_FOUND, from the cache when it
 * is fresh. Other errors are not cached. */
static int read_secret(struct kube_creds *kcr, json_t **out)
{
	char *path;
	json_t *secret = NULL;
	int64_t now = util_monotonic_ms();
	int rc;

	*out = NULL;
	pthread_mutex_lock(&kcr->lock);
	if (kcr->cached_ms && now - kcr->cached_ms < KUBE_CREDS_CACHE_MS) {
		rc = kcr->cached_rc;
		*out = json_incref(kcr->cached);
		pthread_mutex_unlock(&kcr->lock);
		return rc;
	}
	pthread_mutex_unlock(&kcr->lock);
	if (!(path = kube_path("v1", kcr->ns, "secrets", kcr->secret, NULL)))
		return AL_ERR_INVALID;
	rc = kube_request_retry(kcr->kc, "GET", path, NULL, NULL, DEADLINE_MS, NULL, &secret);
	free(path);
	if (rc && rc != AL_ERR_NOT_FOUND) {
		json_decref(secret);
		return rc;
	}
	if (rc) {
		json_decref(secret);
		secret = NULL;
	}
	pthread_mutex_lock(&kcr->lock);
	json_decref(kcr->cached);
	kcr->cached = json_incref(secret);
	kcr->cached_rc = rc;
	kcr->cached_ms = now > 0 ? now : 1;
	pthread_mutex_unlock(&kcr->lock);
	*out = secret;
	return rc;
}

int kube_creds_lookup(void *userdata, const char *key, char **out_value)
{
	struct kube_creds *kcr = userdata;
	json_t *secret = NULL;
	const char *b64;
	char *value = NULL;
	size_t b64_len, cap, len = 0;
	int rc;

	*out_value = NULL;
	if (!kcr || !kcr->ready || !kcr->secret || !*kcr->secret)
		return al_error_set(AL_ERR_NOT_FOUND, "no source-credentials Secret is configured (set AIRLOCK_SOURCE_CREDENTIALS_SECRET)");
	rc = read_secret(kcr, &secret);
	if (rc == AL_ERR_NOT_FOUND) {
		json_decref(secret);
		return al_error_set(AL_ERR_NOT_FOUND,
				    "the source-credentials Secret %s/%s does not exist: create it with a key '%s' (kubectl -n %s create secret generic %s --from-literal=%s=...)",
				    kcr->ns, kcr->secret, key, kcr->ns, kcr->secret, key);
	}
	if (rc) {
		json_decref(secret);
		return al_error_wrap(rc, "reading the source-credentials Secret %s/%s", kcr->ns, kcr->secret);
	}
	b64 = json_string_value(json_object_get(json_object_get(secret, "data"), key));
	if (!b64) {
		json_decref(secret);
		return al_error_set(AL_ERR_NOT_FOUND, "the Secret %s/%s has no key '%s': add it (kubectl -n %s edit secret %s)",
				    kcr->ns, kcr->secret, key, kcr->ns, kcr->secret);
	}
	b64_len = strlen(b64);
	cap = b64_len / 4 * 3 + 4;
	if (!(value = malloc(cap + 1))) {
		json_decref(secret);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	if (sodium_base642bin((unsigned char *)value, cap, b64, b64_len, NULL, &len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    memchr(value, '\0', len)) {
		sodium_memzero(value, cap);
		free(value);
		json_decref(secret);
		return al_error_set(AL_ERR_INVALID, "the Secret %s/%s: key '%s' does not hold a usable value (base64 of text)",
				    kcr->ns, kcr->secret, key);
	}
	value[len] = '\0';
	/* The decoded text is ours; the Secret's JSON (which holds every
	 * key's base64) goes now. jansson cannot wipe it, but it never leaves
	 * this process. */
	json_decref(secret);
	*out_value = value;
	return AL_OK;
}
