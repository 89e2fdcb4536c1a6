#include "web/upload_widget.h"

#include "common/error.h"
#include "web/html.h"

#include <string.h>

static const char *meta_str(const json_t *ds, const char *key)
{
	return json_string_value(json_object_get(json_object_get(ds, "metadata"), key));
}

int upload_widget_endpoint(const char *tmpl, const json_t *ds, struct buf *out)
{
	const char *p = tmpl ? tmpl : UPLOAD_WIDGET_ENDPOINT_EMBEDDED;
	int rc;

	while (*p) {
		const char *brace = strchr(p, '{'), *value = NULL;
		size_t skip = 0;
		if (!brace)
			return buf_appends(out, p);
		if ((rc = buf_append(out, p, (size_t)(brace - p))))
			return rc;
		if (!strncmp(brace, "{name}", 6)) {
			value = meta_str(ds, "name");
			skip = 6;
		} else if (!strncmp(brace, "{uid}", 5)) {
			value = meta_str(ds, "uid");
			skip = 5;
		} else {
			return al_error_set(AL_ERR_INVALID, "upload widget endpoint: unknown placeholder in '%s'", tmpl);
		}
		if (!value || !*value)
			return al_error_set(AL_ERR_INVALID, "upload widget: the datasource has no metadata.%.*s",
					    (int)(skip - 2), brace + 1);
		/* A name is [a-z0-9-] by the schema; encoding anyway keeps any value
		 * inside its one path segment. */
		if ((rc = html_url_segment(out, value)))
			return rc;
		p = brace + skip;
	}
	return AL_OK;
}

int upload_widget_html(void *ud, const json_t *ds, const char *csrf, struct buf *html)
{
	const struct upload_widget_options *o = ud;
	const char *name = meta_str(ds, "name");
	struct buf endpoint;
	int rc;

	if (!name || !*name)
		return al_error_set(AL_ERR_INVALID, "upload widget: the datasource has no name");
	if (!csrf || !*csrf)
		return al_error_set(AL_ERR_INVALID, "upload widget: no CSRF token");
	buf_init(&endpoint, 4096);
	if ((rc = upload_widget_endpoint(o ? o->endpoint_template : NULL, ds, &endpoint)))
		goto out;
	rc = html_fmt(html,
		"<section class=\"card upload-widget\" id=\"upload-widget\" data-testid=\"upload-widget\" "
		"aria-labelledby=\"upload-heading\" data-endpoint=\"%s\" data-csrf=\"%s\" data-datasource=\"%s\">\n"
		"<h2 id=\"upload-heading\">Files</h2>\n"
		"<noscript><p class=\"notice\" data-testid=\"upload-noscript\">Uploading files from this page needs "
		"JavaScript, which is turned off or blocked in this browser. Turn it on for this site and reload "
		"the page, or upload with any tus 1.0.0 client (see the airlock's documentation).</p></noscript>\n"
		"<div id=\"upload-ui\" hidden>\n"
		"<div class=\"upload-drop\" id=\"upload-drop\" data-testid=\"upload-drop\">\n"
		"<p>Drag files or whole folders here, or choose them.</p>\n"
		"<div class=\"upload-pick\">\n"
		"<label for=\"upload-files\">Files</label>\n"
		"<input type=\"file\" id=\"upload-files\" data-testid=\"upload-files\" multiple>\n"
		"<label for=\"upload-folder\">A folder</label>\n"
		"<input type=\"file\" id=\"upload-folder\" data-testid=\"upload-folder\" multiple webkitdirectory>\n"
		"</div>\n"
		"<p class=\"hint\">Hidden files (names starting with a dot, such as .DS_Store) are left out.</p>\n"
		"</div>\n"
		"<p id=\"upload-status\" data-testid=\"upload-status\" role=\"status\" aria-live=\"polite\"></p>\n"
		"<p id=\"upload-skipped\" data-testid=\"upload-skipped\" class=\"hint\" hidden></p>\n"
		"<div class=\"upload-total\">\n"
		"<label for=\"upload-total\">All files</label>\n"
		"<progress id=\"upload-total\" data-testid=\"upload-total\" max=\"1\" value=\"0\"></progress>\n"
		"<span id=\"upload-total-text\" data-testid=\"upload-total-text\"></span>\n"
		"</div>\n"
		"<div class=\"upload-controls\">\n"
		"<button type=\"button\" class=\"secondary\" id=\"upload-pause-all\" data-testid=\"upload-pause-all\" "
		"disabled>Pause all</button>\n"
		"<button type=\"button\" class=\"secondary\" id=\"upload-resume-all\" data-testid=\"upload-resume-all\" "
		"disabled>Resume all</button>\n"
		"</div>\n"
		"<ul class=\"plain upload-list\" id=\"upload-list\" data-testid=\"upload-list\" "
		"aria-label=\"Files being uploaded\"></ul>\n"
		"<h3>Uploaded so far</h3>\n"
		"<p id=\"upload-existing-empty\" class=\"muted\">Nothing yet.</p>\n"
		"<ul class=\"plain upload-existing\" id=\"upload-existing\" data-testid=\"upload-existing\" "
		"aria-label=\"Files uploaded so far\"></ul>\n"
		"</div>\n"
		"<script src=\"/static/tus.min.js\" defer></script>\n"
		"<script src=\"/static/upload.js\" defer></script>\n"
		"</section>\n",
		buf_cstr(&endpoint), csrf, name);
out:
	buf_free(&endpoint);
	return rc;
}
