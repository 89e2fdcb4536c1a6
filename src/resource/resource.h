/*
 * resource.h - the airlock's Kubernetes-style resources (group xlscsde.nhs.uk,
 * version v1) as jansson objects, and their validation.
 *
 * A resource is a json_t object {apiVersion, kind, metadata, spec, status}
 * exactly as Kubernetes would serve it. resource_validate() accepts exactly
 * what the CustomResourceDefinitions in deploy/crds/ accept (same rules,
 * tested with the same fixtures in tests/fixtures/resources/).
 *
 * Ownership: functions returning json_t ** give the caller a new reference
 * (json_decref it). Inputs are borrowed.
 */
#ifndef AL_RESOURCE_RESOURCE_H
#define AL_RESOURCE_RESOURCE_H

#include <jansson.h>
#include <stddef.h>

#define RESOURCE_GROUP "xlscsde.nhs.uk"
#define RESOURCE_VERSION "v1"
#define RESOURCE_API_VERSION "xlscsde.nhs.uk/v1"

/* Largest accepted document (YAML or JSON), bytes. */
#define RESOURCE_MAX_DOCUMENT (1u << 20)

enum resource_kind {
	RESOURCE_WORKSPACE = 0,         /* AnalyticsWorkspace */
	RESOURCE_WORKSPACE_BINDING,     /* AnalyticsWorkspaceBinding */
	RESOURCE_DATASOURCE,            /* AnalyticsWorkspaceDataSource */
	RESOURCE_DATABINDING,           /* AnalyticsWorkspaceDataBinding */
	RESOURCE_KIND_COUNT
};

/* "AnalyticsWorkspaceDataSource" */
const char *resource_kind_name(enum resource_kind kind);
/* "analyticsworkspacedatasources" */
const char *resource_kind_plural(enum resource_kind kind);
/* Accepts the Kind, the plural, or the singular lower-case name. */
int resource_kind_parse(const char *name, enum resource_kind *out);

/* Parses one YAML or JSON document (YAML is a superset) into a JSON value.
 * Rejects documents over RESOURCE_MAX_DOCUMENT, aliases, and non-string keys. */
int resource_parse(const char *data, size_t len, json_t **out);
/* Parses a stream of YAML documents (separated by ---) into a JSON array. */
int resource_parse_all(const char *data, size_t len, json_t **out);

/* Validates a whole object as the API server would on create/update:
 * apiVersion, kind, metadata (name as a DNS subdomain, labels, annotations),
 * spec against the kind's schema (unknown fields refused), status against
 * the status schema if present. On failure returns AL_ERR_INVALID with a
 * message naming the field path, e.g. "spec.connections[0].type: Required value". */
int resource_validate(const json_t *obj);
/* Validates only a status object of the given kind. */
int resource_validate_status(enum resource_kind kind, const json_t *status);

/* Kind of a parsed object (from its "kind" field). */
int resource_kind_of(const json_t *obj, enum resource_kind *out);

/* Convenience accessors; return NULL/"" when absent (borrowed strings).
 * resource_name/resource_namespace return "" when absent; resource_string_at
 * (e.g. "spec.project.id") returns NULL when absent or not a string. */
const char *resource_name(const json_t *obj);
const char *resource_namespace(const json_t *obj);
const char *resource_string_at(const json_t *obj, const char *dotted_path);

/* Kubernetes name rules, as the API server applies them (1 = valid). */
int resource_is_dns_label(const char *s);      /* RFC 1123 label, <= 63: namespaces */
int resource_is_dns_subdomain(const char *s);  /* RFC 1123 subdomain, <= 253: names */
int resource_is_qualified_name(const char *s); /* [prefix/]name: label and annotation keys */
int resource_is_label_value(const char *s);    /* empty, or <= 63 [A-Za-z0-9_.-] */

#endif
