/*
 * libFuzzer target: arbitrary bytes through resource_parse_all,
 * resource_parse and resource_validate. Must never crash, hang or leak.
 */
#include "resource/resource.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *docs = NULL, *one = NULL, *obj;
	size_t i;

	if (resource_parse_all((const char *)data, size, &docs) == 0) {
		json_array_foreach(docs, i, obj) {
			(void)resource_validate(obj);
			if (json_is_object(obj)) {
				enum resource_kind kind;
				(void)resource_name(obj);
				(void)resource_string_at(obj, "spec.connections");
				if (resource_kind_of(obj, &kind) == 0)
					(void)resource_validate_status(kind, json_object_get(obj, "status"));
			}
		}
		json_decref(docs);
	}
	if (resource_parse((const char *)data, size, &one) == 0)
		json_decref(one);
	return 0;
}
