/* http.h: the HTTP/1.1 half of userstack-httpd, free of any transport (RFC 9110, RFC 9112).
 *
 * Requests are parsed in place: struct http_req points into the caller's buffer. Responses are
 * built into caller buffers. Nothing here allocates, blocks or reads a clock.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum http_method { HTTP_GET = 1, HTTP_HEAD, HTTP_OTHER };

struct http_req {
	int method;                 /* enum http_method */
	const char *target;         /* request-target as sent (not decoded) */
	uint32_t target_len;
	uint32_t head_len;          /* bytes of request line, header lines and the empty line */
	int64_t content_length;     /* -1: no Content-Length */
	uint8_t minor;              /* HTTP/1.minor (0 or 1) */
	uint8_t keep_alive;         /* the connection may stay open after this request */
	uint8_t chunked;            /* Transfer-Encoding present (we do not decode request bodies) */
	uint8_t pad;
};

/* One request head at buf[0..len). Returns head_len (> 0) when complete, 0 when more bytes are
 * needed, or -status: -400 malformed, -414 request line longer than max_head, -431 head longer
 * than max_head, -505 an HTTP major version other than 1. Empty lines before the request line
 * are skipped (RFC 9112 2.2) and counted in head_len. */
int http_parse(const char *buf, size_t len, size_t max_head, struct http_req *r);

const char *http_reason(int status);

/* IMF-fixdate of unix time t into out (30 bytes: 29 characters and a NUL). */
void http_date(char out[30], int64_t t);

enum http_conn_hdr { HTTP_CONN_NONE = 0, HTTP_CONN_CLOSE, HTTP_CONN_KEEP_ALIVE };

/* A response head: status line, Server, Date, Content-Type (NULL: none), Content-Length, the
 * Connection header, extra (complete header lines or NULL), the empty line. Returns its length,
 * or 0 when it does not fit in cap. */
size_t http_head(char *out, size_t cap, int status, const char *date, const char *ctype,
		 uint64_t content_length, int conn_hdr, const char *extra);

/* The local path of a request-target for a file server: the query and fragment dropped,
 * percent-decoded, dot segments resolved (RFC 3986 5.2.4), without its leading '/'; a path that
 * ends in '/' gets "index.html". Returns the length written to out (NUL-terminated), or -400 for
 * a target that is not origin- or absolute-form, bad %-escapes, a NUL, or ".." above the root,
 * -414 when it does not fit in cap. */
int http_local_path(const char *target, size_t len, char *out, size_t cap);

/* Content-Type for a file name, by extension (application/octet-stream when unknown). */
const char *http_content_type(const char *path);
