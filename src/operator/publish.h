/*
 * publish.h - gate 5 in local terms: copy approved data from its staging
 * volume into the workspace's storage, read-only, and prove that what was
 * published is byte for byte what was approved.
 *
 * The copy goes to a hidden temporary directory beside the target, is
 * re-hashed, compared with the approved manifest digest, made read-only and
 * only then renamed into place, so a crash leaves either nothing or a
 * complete, verified copy; publishing again after a crash is safe.
 */
#ifndef AL_OPERATOR_PUBLISH_H
#define AL_OPERATOR_PUBLISH_H

#include <jansson.h>

/* Copies the files listed in `manifest` from `src_dir` into `dest_dir`
 * (created; must not exist unless it already holds the same digest).
 * AL_ERR_CONFLICT when the data no longer matches the manifest's digest. */
int publish_copy_verified(const char *src_dir, const json_t *manifest, const char *dest_dir);

#endif
