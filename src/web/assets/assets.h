/*
 * assets.h - the static files of the web frontend, built into the binary so
 * `airlock serve` serves them itself (no CDN, no files to install).
 *
 * Served under /static/ (docs/frontend.md): airlock.css, upload.js and
 * favicon.svg (also answered at /favicon.ico), which live beside this
 * header (src/web/assets/), and tus.min.js (tus-js-client's
 * browser bundle, pinned, with its licence) with tus-licenses.txt, which
 * scripts/web-deps.sh prepares from npm at build time. They are embedded
 * verbatim by assets.c at compile time. The data is read-only and lives as
 * long as the program.
 */
#ifndef AL_WEB_ASSETS_H
#define AL_WEB_ASSETS_H

#include <stddef.h>

/* The asset served at URL path `path` (e.g. "/static/airlock.css"):
 * AL_OK with its bytes, length and Content-Type, or AL_ERR_NOT_FOUND. */
int assets_find(const char *path, const char **data, size_t *len, const char **content_type);

#endif
