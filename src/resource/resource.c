#include "resource/resource.h"

#include "common/error.h"
#include "resource/schema.h"
#include "resource/yamljson.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ANNOTATIONS_MAX_BYTES (256 * 1024) /* as the API server: keys + values */
#define SHOW_MAX 64

static const struct {
	const char *kind, *plural, *singular, *short_name;
} kinds[RESOURCE_KIND_COUNT] = {
	[RESOURCE_WORKSPACE] = { "AnalyticsWorkspace", "analyticsworkspaces", "analyticsworkspace", "aws" },
	[RESOURCE_WORKSPACE_BINDING] = { "AnalyticsWorkspaceBinding", "analyticsworkspacebindings",
					 "analyticsworkspacebinding", "awb" },
	[RESOURCE_DATASOURCE] = { "AnalyticsWorkspaceDataSource", "analyticsworkspacedatasources",
				  "analyticsworkspacedatasource", "awds" },
	[RESOURCE_DATABINDING] = { "AnalyticsWorkspaceDataBinding", "analyticsworkspacedatabindings",
				   "analyticsworkspacedatabinding", "awdb" },
};

const char *resource_kind_name(enum resource_kind kind)
{
	return (int)kind >= 0 && kind < RESOURCE_KIND_COUNT ? kinds[kind].kind : "";
}

const char *resource_kind_plural(enum resource_kind kind)
{
	return (int)kind >= 0 && kind < RESOURCE_KIND_COUNT ? kinds[kind].plural : "";
}

int resource_kind_parse(const char *name, enum resource_kind *out)
{
	if (!name)
		return al_error_set(AL_ERR_INVALID, "no resource kind given");
	for (int k = 0; k < RESOURCE_KIND_COUNT; k++) {
		if (!strcasecmp(name, kinds[k].kind) || !strcmp(name, kinds[k].plural) ||
		    !strcmp(name, kinds[k].singular) || !strcmp(name, kinds[k].short_name)) {
			*out = (enum resource_kind)k;
			return AL_OK;
		}
	}
	return al_error_set(AL_ERR_INVALID,
			    "unknown resource kind '%.64s': use AnalyticsWorkspace, AnalyticsWorkspaceBinding, "
			    "AnalyticsWorkspaceDataSource or AnalyticsWorkspaceDataBinding", name);
}

/* ---- parsing ---- */

/* Drops the empty documents a stream may hold (a trailing "---"). */
static int parse_docs(const char *data, size_t len, json_t **out)
{
	json_t *docs = NULL, *objs;
	size_t i;
	json_t *d;
	int rc;

	if ((rc = yamljson_load(data, len, &docs)) < 0)
		return rc;
	if (!(objs = json_array())) {
		json_decref(docs);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	json_array_foreach(docs, i, d) {
		if (json_is_null(d))
			continue;
		if (json_array_append(objs, d) < 0) {
			json_decref(docs);
			json_decref(objs);
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		}
	}
	json_decref(docs);
	*out = objs;
	return AL_OK;
}

int resource_parse(const char *data, size_t len, json_t **out)
{
	json_t *docs = NULL;
	int rc;

	if ((rc = parse_docs(data, len, &docs)) < 0)
		return rc;
	if (json_array_size(docs) != 1) {
		size_t n = json_array_size(docs);
		json_decref(docs);
		if (n == 0)
			return al_error_set(AL_ERR_INVALID, "the input is empty: expected one YAML or JSON object");
		return al_error_set(AL_ERR_INVALID,
				    "the input holds %zu documents: expected exactly one (separate files, or send them one at a time)",
				    n);
	}
	*out = json_incref(json_array_get(docs, 0));
	json_decref(docs);
	return AL_OK;
}

int resource_parse_all(const char *data, size_t len, json_t **out)
{
	return parse_docs(data, len, out);
}

/* ---- names ---- */

static int is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* [a-z0-9]([-a-z0-9]*[a-z0-9])? over s[0..n) */
static int dns_label_n(const char *s, size_t n)
{
	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return 0;
	for (size_t i = 1; i + 1 < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return 0;
	return 1;
}

int resource_is_dns_label(const char *s)
{
	size_t n = strlen(s);
	return n <= 63 && dns_label_n(s, n);
}

static int dns_subdomain_n(const char *s, size_t n)
{
	size_t start = 0;
	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (!dns_label_n(s + start, i - start))
				return 0;
			start = i + 1;
		}
	}
	return 1;
}

int resource_is_dns_subdomain(const char *s)
{
	return dns_subdomain_n(s, strlen(s));
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], at most 63 */
static int qualified_part(const char *s, size_t n)
{
	if (n == 0 || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return 0;
	for (size_t i = 1; i + 1 < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return 0;
	return 1;
}

int resource_is_qualified_name(const char *s)
{
	const char *slash = strchr(s, '/');
	if (!slash)
		return qualified_part(s, strlen(s));
	if (strchr(slash + 1, '/'))
		return 0;
	return dns_subdomain_n(s, (size_t)(slash - s)) && qualified_part(slash + 1, strlen(slash + 1));
}

int resource_is_label_value(const char *s)
{
	size_t n = strlen(s);
	return n == 0 || qualified_part(s, n);
}

/* ---- validation ---- */

static void show(char out[SHOW_MAX + 4], const char *s)
{
	size_t i;
	for (i = 0; s[i] && i < SHOW_MAX; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i]) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
}

static int plain_string(const json_t *v)
{
	return json_is_string(v) && !memchr(json_string_value(v), '\0', json_string_length(v));
}

static int string_map(const json_t *m, const char *field, int labels)
{
	const char *key;
	const json_t *v;
	size_t total = 0;
	char shown[SHOW_MAX + 4];

	if (!json_is_object(m))
		return al_error_set(AL_ERR_INVALID, "metadata.%s: must be a mapping of strings to strings", field);
	json_object_foreach((json_t *)m, key, v) {
		show(shown, key);
		if (!resource_is_qualified_name(key))
			return al_error_set(AL_ERR_INVALID,
					    "metadata.%s: Invalid key \"%s\": must be a name of at most 63 letters, digits, "
					    "'-', '_' or '.' (starting and ending with a letter or digit), optionally "
					    "prefixed by a DNS subdomain and '/' (e.g. xlscsde.nhs.uk/type)",
					    field, shown);
		if (!plain_string(v))
			return al_error_set(AL_ERR_INVALID, "metadata.%s.%s: must be a string (quote it)", field, shown);
		if (labels && !resource_is_label_value(json_string_value(v))) {
			char sv[SHOW_MAX + 4];
			show(sv, json_string_value(v));
			return al_error_set(AL_ERR_INVALID,
					    "metadata.labels.%s: Invalid value \"%s\": a label value must be empty or at "
					    "most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
					    shown, sv);
		}
		total += strlen(key) + json_string_length(v);
	}
	if (!labels && total > ANNOTATIONS_MAX_BYTES)
		return al_error_set(AL_ERR_INVALID, "metadata.annotations: Too long: must have at most %d bytes in total (has %zu)",
				    ANNOTATIONS_MAX_BYTES, total);
	return AL_OK;
}

static int owner_references(const json_t *refs)
{
	size_t i;
	const json_t *r;
	static const char *const strings[] = { "apiVersion", "kind", "name", "uid" };

	if (!json_is_array(refs))
		return al_error_set(AL_ERR_INVALID, "metadata.ownerReferences: must be a list");
	json_array_foreach(refs, i, r) {
		const char *key;
		const json_t *v;
		if (!json_is_object(r))
			return al_error_set(AL_ERR_INVALID, "metadata.ownerReferences[%zu]: must be a mapping", i);
		for (size_t j = 0; j < 4; j++)
			if (!plain_string(json_object_get(r, strings[j])))
				return al_error_set(AL_ERR_INVALID, "metadata.ownerReferences[%zu].%s: Required value (a string)",
						    i, strings[j]);
		json_object_foreach((json_t *)r, key, v) {
			int is_string = 0;
			for (size_t j = 0; j < 4; j++)
				is_string |= !strcmp(key, strings[j]);
			if (is_string)
				continue;
			if (strcmp(key, "controller") && strcmp(key, "blockOwnerDeletion")) {
				char shown[SHOW_MAX + 4];
				show(shown, key);
				return al_error_set(AL_ERR_INVALID, "metadata.ownerReferences[%zu].%s: unknown field", i, shown);
			}
			if (!json_is_boolean(v))
				return al_error_set(AL_ERR_INVALID, "metadata.ownerReferences[%zu].%s: must be a boolean", i, key);
		}
	}
	return AL_OK;
}

/* What the API server checks of ObjectMeta, refusing fields it does not know. */
static int validate_metadata(const json_t *md)
{
	const char *key;
	const json_t *v;
	char shown[SHOW_MAX + 4];
	int rc;

	if (!md)
		return al_error_set(AL_ERR_INVALID, "metadata: Required value (with at least a name)");
	if (!json_is_object(md))
		return al_error_set(AL_ERR_INVALID, "metadata: must be a mapping");
	if (!json_object_get(md, "name"))
		return al_error_set(AL_ERR_INVALID, "metadata.name: Required value");
	json_object_foreach((json_t *)md, key, v) {
		show(shown, key);
		if (!strcmp(key, "name")) {
			if (!plain_string(v))
				return al_error_set(AL_ERR_INVALID, "metadata.name: must be a string");
			show(shown, json_string_value(v));
			if (!resource_is_dns_subdomain(json_string_value(v)))
				return al_error_set(AL_ERR_INVALID,
						    "metadata.name: Invalid value \"%s\": must be a lowercase RFC 1123 subdomain: "
						    "at most 253 lowercase letters, digits, '-' and '.', starting and ending "
						    "with a letter or digit (e.g. my-data-1)", shown);
		} else if (!strcmp(key, "namespace")) {
			if (!plain_string(v))
				return al_error_set(AL_ERR_INVALID, "metadata.namespace: must be a string");
			show(shown, json_string_value(v));
			if (!resource_is_dns_label(json_string_value(v)))
				return al_error_set(AL_ERR_INVALID,
						    "metadata.namespace: Invalid value \"%s\": must be a lowercase RFC 1123 label: "
						    "at most 63 lowercase letters, digits and '-', starting and ending with a "
						    "letter or digit", shown);
		} else if (!strcmp(key, "labels")) {
			if ((rc = string_map(v, "labels", 1)) < 0)
				return rc;
		} else if (!strcmp(key, "annotations")) {
			if ((rc = string_map(v, "annotations", 0)) < 0)
				return rc;
		} else if (!strcmp(key, "generateName") || !strcmp(key, "uid") ||
			   !strcmp(key, "resourceVersion") || !strcmp(key, "selfLink")) {
			if (!plain_string(v) || json_string_length(v) > 253)
				return al_error_set(AL_ERR_INVALID, "metadata.%s: must be a string of at most 253 characters", key);
		} else if (!strcmp(key, "generation") || !strcmp(key, "deletionGracePeriodSeconds")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0)
				return al_error_set(AL_ERR_INVALID, "metadata.%s: must be a non-negative integer", key);
		} else if (!strcmp(key, "creationTimestamp") || !strcmp(key, "deletionTimestamp")) {
			/* kubectl writes creationTimestamp: null in generated manifests */
			if (!json_is_null(v) && !(plain_string(v) && schema_is_date_time(json_string_value(v))))
				return al_error_set(AL_ERR_INVALID, "metadata.%s: must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z", key);
		} else if (!strcmp(key, "finalizers")) {
			size_t i;
			const json_t *f;
			if (!json_is_array(v))
				return al_error_set(AL_ERR_INVALID, "metadata.finalizers: must be a list of strings");
			json_array_foreach(v, i, f) {
				if (!plain_string(f) || !resource_is_qualified_name(json_string_value(f)))
					return al_error_set(AL_ERR_INVALID,
							    "metadata.finalizers[%zu]: must be a qualified name such as xlscsde.nhs.uk/airlock", i);
			}
		} else if (!strcmp(key, "ownerReferences")) {
			if ((rc = owner_references(v)) < 0)
				return rc;
		} else if (!strcmp(key, "managedFields")) {
			if (!json_is_array(v))
				return al_error_set(AL_ERR_INVALID, "metadata.managedFields: must be a list");
		} else {
			return al_error_set(AL_ERR_INVALID, "metadata.%s: unknown field", shown);
		}
	}
	return AL_OK;
}

int resource_kind_of(const json_t *obj, enum resource_kind *out)
{
	const json_t *k = json_object_get(obj, "kind");
	char shown[SHOW_MAX + 4];

	if (!k)
		return al_error_set(AL_ERR_INVALID, "kind: Required value");
	if (!plain_string(k))
		return al_error_set(AL_ERR_INVALID, "kind: must be a string");
	for (int i = 0; i < RESOURCE_KIND_COUNT; i++) {
		if (!strcmp(json_string_value(k), kinds[i].kind)) {
			*out = (enum resource_kind)i;
			return AL_OK;
		}
	}
	show(shown, json_string_value(k));
	return al_error_set(AL_ERR_INVALID,
			    "kind: Unsupported value \"%s\": supported values: \"AnalyticsWorkspace\", "
			    "\"AnalyticsWorkspaceBinding\", \"AnalyticsWorkspaceDataSource\", "
			    "\"AnalyticsWorkspaceDataBinding\"", shown);
}

int resource_validate(const json_t *obj)
{
	const json_t *av, *schema;
	enum resource_kind kind;
	char shown[SHOW_MAX + 4];
	int rc;

	if (!json_is_object(obj))
		return al_error_set(AL_ERR_INVALID, "the document must be a mapping with apiVersion, kind, metadata and spec");
	av = json_object_get(obj, "apiVersion");
	if (!av)
		return al_error_set(AL_ERR_INVALID, "apiVersion: Required value (use %s)", RESOURCE_API_VERSION);
	if (!plain_string(av))
		return al_error_set(AL_ERR_INVALID, "apiVersion: must be a string (use %s)", RESOURCE_API_VERSION);
	if (strcmp(json_string_value(av), RESOURCE_API_VERSION)) {
		show(shown, json_string_value(av));
		return al_error_set(AL_ERR_INVALID, "apiVersion: Unsupported value \"%s\": use %s", shown,
				    RESOURCE_API_VERSION);
	}
	if ((rc = resource_kind_of(obj, &kind)) < 0)
		return rc;
	if ((rc = validate_metadata(json_object_get(obj, "metadata"))) < 0)
		return rc;
	if ((rc = schema_get(kind, &schema)) < 0)
		return rc;
	/* The top-level schema refuses unknown top-level fields, requires spec
	 * and checks spec and status; metadata was checked above. */
	return schema_validate(schema, obj, "");
}

int resource_validate_status(enum resource_kind kind, const json_t *status)
{
	const json_t *schema, *s;
	int rc;

	if ((rc = schema_get(kind, &schema)) < 0)
		return rc;
	s = json_object_get(json_object_get(schema, "properties"), "status");
	if (!s)
		return al_error_set(AL_ERR_INTERNAL, "%s has no status schema", resource_kind_name(kind));
	return schema_validate(s, status, "status");
}

/* ---- accessors ---- */

const char *resource_name(const json_t *obj)
{
	const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
	return s ? s : "";
}

const char *resource_namespace(const json_t *obj)
{
	const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"), "namespace"));
	return s ? s : "";
}

const char *resource_string_at(const json_t *obj, const char *dotted_path)
{
	const json_t *cur = obj;
	const char *p = dotted_path;

	if (!obj || !dotted_path)
		return NULL;
	while (cur && *p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		cur = json_is_object(cur) ? json_object_getn(cur, p, n) : NULL;
		p += n;
		if (*p == '.')
			p++;
	}
	return json_string_value(cur);
}
