#include "web/assets/assets.h"

#include "common/error.h"

#include <string.h>

/* The files, embedded byte for byte by the assembler (C17 has no #embed),
 * each followed by a NUL so it can also be read as a string. The paths are
 * relative to the repository root, where make runs the compiler; the
 * Makefile makes this object depend on every file named here. build/web/
 * is written by scripts/web-deps.sh from the npm package in the cache. */
#define EMBED(sym, file)                                                                                       \
	__asm__(".section .rodata\n"                                                                           \
		".balign 16\n"                                                                                 \
		".globl " #sym "\n"                                                                            \
		".hidden " #sym "\n" #sym ":\n"                                                                \
		".incbin \"" file "\"\n"                                                                       \
		".globl " #sym "_end\n"                                                                        \
		".hidden " #sym "_end\n" #sym "_end:\n"                                                        \
		".byte 0\n"                                                                                    \
		".previous\n");                                                                                \
	extern const char sym[];                                                                               \
	extern const char sym##_end[]

EMBED(al_asset_airlock_css, "src/web/assets/airlock.css");
EMBED(al_asset_upload_js, "src/web/assets/upload.js");
EMBED(al_asset_favicon_svg, "src/web/assets/favicon.svg");
EMBED(al_asset_tus_js, "build/web/tus.min.js");
EMBED(al_asset_tus_licenses, "build/web/tus-licenses.txt");

struct asset {
	const char *path;
	const char *start;
	const char *end;
	const char *content_type;
};

static const struct asset assets[] = {
	{ "/static/airlock.css", al_asset_airlock_css, al_asset_airlock_css_end, "text/css; charset=utf-8" },
	{ "/static/upload.js", al_asset_upload_js, al_asset_upload_js_end, "text/javascript; charset=utf-8" },
	{ "/static/favicon.svg", al_asset_favicon_svg, al_asset_favicon_svg_end, "image/svg+xml" },
	/* Browsers ask for /favicon.ico by themselves (for a page without a
	 * <link rel="icon">, or a JSON answer): the same SVG, which they take by
	 * its Content-Type, so the console shows no 404. */
	{ "/favicon.ico", al_asset_favicon_svg, al_asset_favicon_svg_end, "image/svg+xml" },
	{ "/static/tus.min.js", al_asset_tus_js, al_asset_tus_js_end, "text/javascript; charset=utf-8" },
	{ "/static/tus-licenses.txt", al_asset_tus_licenses, al_asset_tus_licenses_end, "text/plain; charset=utf-8" },
};

int assets_find(const char *path, const char **data, size_t *len, const char **content_type)
{
	for (size_t i = 0; path && i < sizeof(assets) / sizeof(assets[0]); i++) {
		if (!strcmp(path, assets[i].path)) {
			*data = assets[i].start;
			*len = (size_t)(assets[i].end - assets[i].start);
			*content_type = assets[i].content_type;
			return AL_OK;
		}
	}
	*data = NULL;
	*len = 0;
	*content_type = NULL;
	return AL_ERR_NOT_FOUND;
}
