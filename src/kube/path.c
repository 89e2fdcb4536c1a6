/*
 * path.c - REST paths of the Kubernetes API.
 *
 *   core:   /api/v1[/namespaces/NS]/RESOURCE[/NAME[/SUBRESOURCE]]
 *   groups: /apis/GROUP/VERSION[/namespaces/NS]/RESOURCE[/NAME[/SUBRESOURCE]]
 *
 * Every part is validated rather than trusted: a name with '/' or a "."/".."
 * segment could address another object, so it is refused; any other byte
 * outside the URL-safe set is percent-encoded.
 */
#include "kube/kube.h"

#include "common/buf.h"
#include "common/error.h"

#include <string.h>

static int is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* group/version or version: lower-case letters, digits, '.', '-', one '/' at most. */
static int valid_group_version(const char *gv)
{
	int slashes = 0;

	if (!gv[0] || gv[0] == '/' || strstr(gv, ".."))
		return 0;
	for (const char *p = gv; *p; p++) {
		if (*p == '/')
			slashes++;
		else if (!is_lower_alnum(*p) && *p != '.' && *p != '-')
			return 0;
	}
	return slashes <= 1 && gv[strlen(gv) - 1] != '/';
}

/* Resource and subresource names: lower-case letters, digits, '-', '.'. */
static int valid_resource(const char *r)
{
	if (!r[0] || !strcmp(r, ".") || !strcmp(r, ".."))
		return 0;
	for (const char *p = r; *p; p++)
		if (!is_lower_alnum(*p) && *p != '-' && *p != '.')
			return 0;
	return 1;
}

static int valid_namespace(const char *ns)
{
	size_t n = strlen(ns);

	if (n == 0 || n > 63 || !is_lower_alnum(ns[0]) || !is_lower_alnum(ns[n - 1]))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(ns[i]) && ns[i] != '-')
			return 0;
	return 1;
}

static int append_name(struct buf *b, const char *name)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = AL_OK;

	for (const unsigned char *p = (const unsigned char *)name; *p && rc == AL_OK; p++) {
		if (is_lower_alnum((char)*p) || (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '.' ||
		    *p == '_' || *p == '~' || *p == ':' || *p == '@')
			rc = buf_appendc(b, (char)*p);
		else
			rc = buf_appendf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
	}
	return rc;
}

char *kube_path(const char *api_group_version, const char *ns, const char *resource, const char *name,
		const char *subresource)
{
	struct buf b;
	int rc;

	if (!api_group_version || !valid_group_version(api_group_version)) {
		al_error_set(AL_ERR_INVALID, "kube path: API version '%.64s' is not like v1 or group/version",
			     api_group_version ? api_group_version : "");
		return NULL;
	}
	if (!resource || !valid_resource(resource)) {
		al_error_set(AL_ERR_INVALID, "kube path: resource '%.64s' is not a lower-case plural name",
			     resource ? resource : "");
		return NULL;
	}
	if (ns && !valid_namespace(ns)) {
		al_error_set(AL_ERR_INVALID, "kube path: namespace '%.64s' is not a DNS label", ns);
		return NULL;
	}
	if (name && (!name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") ||
		     strlen(name) > 253)) {
		al_error_set(AL_ERR_INVALID,
			     "kube path: name '%.64s' is not a valid object name (empty, '.', '..', '/' or over 253 bytes)",
			     name);
		return NULL;
	}
	if (subresource && (!name || !valid_resource(subresource))) {
		al_error_set(AL_ERR_INVALID, "kube path: subresource '%.64s' needs a name and a lower-case word",
			     subresource);
		return NULL;
	}
	buf_init(&b, 4096);
	rc = buf_appendf(&b, "%s/%s", strchr(api_group_version, '/') ? "/apis" : "/api", api_group_version);
	if (rc == AL_OK && ns)
		rc = buf_appendf(&b, "/namespaces/%s", ns);
	if (rc == AL_OK)
		rc = buf_appendf(&b, "/%s", resource);
	if (rc == AL_OK && name) {
		rc = buf_appendc(&b, '/');
		if (rc == AL_OK)
			rc = append_name(&b, name);
	}
	if (rc == AL_OK && subresource)
		rc = buf_appendf(&b, "/%s", subresource);
	if (rc < 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}
