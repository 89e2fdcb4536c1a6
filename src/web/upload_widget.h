/*
 * upload_widget.h - the browser upload widget of the upload page
 * (docs/frontend.md, "The upload widget"): the markup that
 * frontend_ctx.upload_widget appends, and the policy sources it needs.
 *
 * What it promises:
 *  - The markup is one root element, id "upload-widget", whose data-
 *    attributes carry everything the script needs: data-endpoint (the tus
 *    collection URL), data-csrf (the session's CSRF token, sent back in the
 *    X-CSRF-Token header) and data-datasource (the name). Pointing the same
 *    widget at another uploader (the Kubernetes one under
 *    /uploads/upload-<uid>) changes only the endpoint template.
 *  - Every value is escaped (web/html.h). There is no inline script, no
 *    inline style and no style attribute: the scripts are /static/tus.min.js
 *    and /static/upload.js, served by the airlock (web/assets/assets.h), so
 *    the page needs only UPLOAD_WIDGET_CSP on top of the frontend's policy.
 *  - Without JavaScript the page says, in a <noscript>, that uploading needs
 *    it; the controls stay hidden until the script shows them.
 *  - Elements the browser tests drive have stable ids and data-testid
 *    attributes (listed in docs/frontend.md).
 *
 * Ownership: options are borrowed and must outlive the frontend using them.
 */
#ifndef AL_WEB_UPLOAD_WIDGET_H
#define AL_WEB_UPLOAD_WIDGET_H

#include <jansson.h>

#include "common/buf.h"

/* The extra Content-Security-Policy directives of the upload page. */
#define UPLOAD_WIDGET_CSP "script-src 'self'; connect-src 'self'"
/* The embedded airlock's tus routes (uploader/upload_embed.h). */
#define UPLOAD_WIDGET_ENDPOINT_EMBEDDED "/api/v1/datasources/{name}/uploads"

struct upload_widget_options {
	/* The tus collection URL: "{name}" and "{uid}" are replaced by the
	 * datasource's metadata.name and metadata.uid, percent-encoded. NULL:
	 * UPLOAD_WIDGET_ENDPOINT_EMBEDDED. */
	const char *endpoint_template;
};

/* A frontend_upload_widget_fn: ud is a struct upload_widget_options (or
 * NULL for the defaults), ds the datasource as the API returns it, csrf the
 * session's token. Appends the markup to html. AL_ERR_INVALID when ds has
 * no name (or the template needs a uid it lacks). */
int upload_widget_html(void *ud, const json_t *ds, const char *csrf, struct buf *html);

/* The endpoint for ds under template (NULL: the embedded one), appended to
 * out unescaped for HTML. */
int upload_widget_endpoint(const char *tmpl, const json_t *ds, struct buf *out);

#endif
