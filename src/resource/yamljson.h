/*
 * yamljson.h - YAML (and therefore JSON) text to jansson values, safely.
 *
 * Mappings become objects, sequences arrays. Plain scalars resolve as in the
 * YAML 1.2 core schema (null, ~, true/false, integers, floats); quoted and
 * block scalars are always strings. Refused, with "line L, column C: ...":
 * aliases and anchors (no billion laughs), duplicate keys, keys that are not
 * strings, nesting deeper than YAMLJSON_MAX_DEPTH, NUL characters, numbers
 * JSON cannot hold (.inf, .nan, integers beyond int64), unknown tags, and
 * input over RESOURCE_MAX_DOCUMENT bytes (AL_ERR_TOO_LARGE).
 */
#ifndef AL_RESOURCE_YAMLJSON_H
#define AL_RESOURCE_YAMLJSON_H

#include <jansson.h>
#include <stddef.h>

#define YAMLJSON_MAX_DEPTH 64

/* Parses a stream into a new array with one element per document (an empty
 * document is JSON null). *out is set only on success. */
int yamljson_load(const char *data, size_t len, json_t **out);

#endif
