/*
 * schema.h - a validator for the subset of OpenAPI v3 that Kubernetes
 * structural schemas use, interpreting the CRDs' own openAPIV3Schema
 * (the YAML files in deploy/crds, embedded verbatim at build time) so that the airlock and the
 * API server apply the same rules.
 *
 * Understood keywords: type, properties, required, additionalProperties,
 * items, enum, minLength, maxLength (Unicode code points), pattern (POSIX
 * ERE; write patterns that mean the same in Go RE2 and Python), format (date,
 * date-time, int32, int64), minItems, maxItems, minProperties, maxProperties,
 * minimum, maximum, anyOf, x-kubernetes-preserve-unknown-fields,
 * x-kubernetes-int-or-string, plus description and default (ignored). Any
 * other keyword in a schema is a bug and makes schema_get() fail.
 *
 * Unlike the API server, which prunes fields a schema does not declare, this
 * validator refuses them (unless the node preserves unknown fields).
 */
#ifndef AL_RESOURCE_SCHEMA_H
#define AL_RESOURCE_SCHEMA_H

#include "resource/resource.h"

#include <jansson.h>

/* Each kind's CustomResourceDefinition, the YAML text of deploy/crds/, embedded
 * by scripts/embed-crds.sh at build time. */
extern const char *const schema_crd_yaml[RESOURCE_KIND_COUNT];

/* The kind's parsed openAPIV3Schema (borrowed; lives for the process). */
int schema_get(enum resource_kind kind, const json_t **out);

/* Validates `value` against schema node `schema`; `path` names the value in
 * messages ("" for the top, else e.g. "spec"). AL_ERR_INVALID with
 * "path.to.field: what is wrong" on failure. */
int schema_validate(const json_t *schema, const json_t *value, const char *path);

/* Format checks shared with metadata validation. */
int schema_is_date(const char *s);
int schema_is_date_time(const char *s);

#endif
