#include "web/assets/assets.h"

#include "common/error.h"

#include <string.h>

/* The stylesheet, embedded byte for byte by the assembler (C17 has no
 * #embed). The path is relative to the repository root, where make runs the
 * compiler; the Makefile makes this object depend on the .css file. */
__asm__(".section .rodata\n"
	".balign 16\n"
	".globl al_asset_airlock_css\n"
	".hidden al_asset_airlock_css\n"
	"al_asset_airlock_css:\n"
	".incbin \"src/web/assets/airlock.css\"\n"
	".globl al_asset_airlock_css_end\n"
	".hidden al_asset_airlock_css_end\n"
	"al_asset_airlock_css_end:\n"
	".byte 0\n"
	".previous\n");

extern const char al_asset_airlock_css[];
extern const char al_asset_airlock_css_end[];

int assets_find(const char *path, const char **data, size_t *len, const char **content_type)
{
	if (path && !strcmp(path, "/static/airlock.css")) {
		*data = al_asset_airlock_css;
		*len = (size_t)(al_asset_airlock_css_end - al_asset_airlock_css);
		*content_type = "text/css; charset=utf-8";
		return AL_OK;
	}
	*data = NULL;
	*len = 0;
	*content_type = NULL;
	return AL_ERR_NOT_FOUND;
}
