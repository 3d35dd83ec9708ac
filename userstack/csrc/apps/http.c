/* http.c: HTTP/1.1 request parsing and response heads (see http.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "http.h"

/* tchar (RFC 9110 5.6.2) */
static const uint8_t tchar[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
	['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
	['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

static int lower_eq(const char *p, size_t n, const char *lit, size_t litn)
{
	return n == litn && strncasecmp(p, lit, n) == 0;
}

/* Connection: a comma-separated list of tokens; "close" wins over "keep-alive". */
static void parse_connection(const char *v, size_t n, int *close, int *keep)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
			i++;
		if (lower_eq(v + s, i - s, "close", 5))
			*close = 1;
		else if (lower_eq(v + s, i - s, "keep-alive", 10))
			*keep = 1;
	}
}

int http_parse(const char *buf, size_t len, size_t max_head, struct http_req *r)
{
	const char *end = buf + (len < max_head ? len : max_head);
	const char *p = buf;
	while (p < end && (*p == '\r' || *p == '\n'))
		p++;
	const char *nl = memchr(p, '\n', end - p);
	if (!nl)
		return len >= max_head ? -414 : 0;
	const char *le = nl > p && nl[-1] == '\r' ? nl - 1 : nl;

	/* request-line = method SP request-target SP HTTP-version */
	const char *m = p;
	while (p < le && tchar[(uint8_t)*p])
		p++;
	if (p == m || p >= le || *p != ' ')
		return -400;
	size_t mlen = p - m;
	if (mlen == 3 && !memcmp(m, "GET", 3))
		r->method = HTTP_GET;
	else if (mlen == 4 && !memcmp(m, "HEAD", 4))
		r->method = HTTP_HEAD;
	else
		r->method = HTTP_OTHER;
	const char *t = ++p;
	while (p < le && (uint8_t)*p > 0x20 && *p != 0x7f)
		p++;
	if (p == t || p >= le || *p != ' ')
		return -400;
	r->target = t;
	r->target_len = (uint32_t)(p - t);
	p++;
	if (le - p != 8 || memcmp(p, "HTTP/", 5) || p[6] != '.' ||
	    (unsigned)(p[5] - '0') > 9 || (unsigned)(p[7] - '0') > 9)
		return -400;
	if (p[5] != '1')
		return -505;
	r->minor = p[7] == '0' ? 0 : 1;

	int close = 0, keep = 0, hosts = 0, te = 0;
	r->content_length = -1;
	r->chunked = 0;
	for (p = nl + 1;; p = nl + 1) {
		nl = memchr(p, '\n', end - p);
		if (!nl)
			return len >= max_head ? -431 : 0;
		le = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
		if (le == p)
			break;                          /* the empty line: end of the head */
		const char *n = p;
		while (p < le && tchar[(uint8_t)*p])
			p++;
		/* no name, obs-fold (a line starting with white space), or space before the colon */
		if (p == n || p >= le || *p != ':')
			return -400;
		size_t nlen = p - n;
		p++;
		while (p < le && (*p == ' ' || *p == '\t'))
			p++;
		const char *v = p, *ve = le;
		for (const char *q = v; q < ve; q++)
			if (((uint8_t)*q < 0x20 && *q != '\t') || *q == 0x7f)
				return -400;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		size_t vlen = ve - v;
		switch (nlen) {
		case 4:
			if (lower_eq(n, 4, "host", 4))
				hosts++;
			break;
		case 10:
			if (lower_eq(n, 10, "connection", 10))
				parse_connection(v, vlen, &close, &keep);
			break;
		case 14:
			if (lower_eq(n, 14, "content-length", 14)) {
				if (!vlen || vlen > 15)
					return -400;
				int64_t cl = 0;
				for (size_t i = 0; i < vlen; i++) {
					if ((unsigned)(v[i] - '0') > 9)
						return -400;
					cl = cl * 10 + (v[i] - '0');
				}
				if (r->content_length >= 0 && r->content_length != cl)
					return -400;
				r->content_length = cl;
			}
			break;
		case 17:
			if (lower_eq(n, 17, "transfer-encoding", 17))
				te = 1;
			break;
		}
	}
	/* RFC 9112 3.2: exactly one Host in HTTP/1.1; 6.1: Transfer-Encoding with Content-Length, or
	 * in HTTP/1.0, makes the framing unreliable. */
	if (hosts > 1 || (r->minor == 1 && hosts == 0))
		return -400;
	if (te && (r->content_length >= 0 || r->minor == 0))
		return -400;
	r->chunked = (uint8_t)te;
	r->keep_alive = !close && (r->minor == 1 || keep);
	r->head_len = (uint32_t)(nl + 1 - buf);
	return (int)r->head_len;
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 301: return "Moved Permanently";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

void http_date(char out[30], int64_t t)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
		 tm.tm_mday % 100, months[tm.tm_mon % 12], (tm.tm_year + 1900) % 10000, tm.tm_hour % 100,
		 tm.tm_min % 100, tm.tm_sec % 100);
	memcpy(out, tmp, 29);
	out[29] = '\0';
}

size_t http_head(char *out, size_t cap, int status, const char *date, const char *ctype,
		 uint64_t content_length, int conn_hdr, const char *extra)
{
	static const char *conn[] = { "", "Connection: close\r\n", "Connection: keep-alive\r\n" };
	int n = snprintf(out, cap,
			 "HTTP/1.1 %d %s\r\nServer: userstack-httpd\r\nDate: %s\r\n%s%s%s"
			 "Content-Length: %llu\r\n%s%s\r\n",
			 status, http_reason(status), date, ctype ? "Content-Type: " : "",
			 ctype ? ctype : "", ctype ? "\r\n" : "", (unsigned long long)content_length,
			 conn[conn_hdr], extra ? extra : "");
	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int http_local_path(const char *target, size_t len, char *out, size_t cap)
{
	const char *p = target, *e = target + len;
	/* absolute-form: drop the scheme and the authority */
	if (len >= 7 && (!strncasecmp(p, "http://", 7) || (len >= 8 && !strncasecmp(p, "https://", 8)))) {
		p += p[4] == ':' ? 7 : 8;
		while (p < e && *p != '/' && *p != '?' && *p != '#')
			p++;
		if (p == e || *p != '/')
			return -400;
	}
	if (p == e || *p != '/')
		return -400;
	for (const char *q = p; q < e; q++)
		if (*q == '?' || *q == '#') {
			e = q;
			break;
		}
	/* Decode, then remove dot segments one segment at a time: segs[] holds where each output
	 * segment starts, so ".." pops to the previous one. */
	size_t o = 0, depth = 0;
	size_t segs[256];
	p++;                                        /* the leading '/' */
	int dir = 1;                                /* the path ends with '/' (or is "/") */
	while (p <= e) {
		char seg[256];
		size_t sl = 0;
		while (p < e && *p != '/') {
			char c = *p++;
			if (c == '%') {
				int h, l;
				if (e - p < 2 || (h = hexval(p[0])) < 0 || (l = hexval(p[1])) < 0)
					return -400;
				c = (char)(h << 4 | l);
				p += 2;
				if (c == '\0')
					return -400;
			}
			if (sl + 1 >= sizeof(seg))
				return -414;
			seg[sl++] = c;
		}
		int last = p >= e;
		p++;                                /* past '/' (or past the end: leaves the loop) */
		if (sl == 1 && seg[0] == '.') {
			dir = 1;
		} else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
			if (depth == 0)
				return -400;                /* above the root */
			o = segs[--depth];
			dir = 1;
		} else if (sl == 0) {
			dir = 1;                            /* "//" or the trailing '/' */
		} else {
			/* a decoded '/' inside a segment would be a separator the client did not send */
			if (memchr(seg, '/', sl) || depth >= sizeof(segs) / sizeof(segs[0]))
				return -400;
			if (o + sl + 2 > cap)
				return -414;
			segs[depth++] = o;
			if (o)
				out[o++] = '/';
			memcpy(out + o, seg, sl);
			o += sl;
			dir = 0;
		}
		if (last)
			break;
	}
	if (dir) {
		static const char idx[] = "index.html";
		if (o + sizeof(idx) + 1 > cap)
			return -414;
		if (o)
			out[o++] = '/';
		memcpy(out + o, idx, sizeof(idx) - 1);
		o += sizeof(idx) - 1;
	}
	out[o] = '\0';
	return (int)o;
}

const char *http_content_type(const char *path)
{
	static const char *const types[][2] = {
		{ "html", "text/html; charset=utf-8" }, { "htm", "text/html; charset=utf-8" },
		{ "txt", "text/plain; charset=utf-8" }, { "css", "text/css" },
		{ "js", "text/javascript" }, { "json", "application/json" },
		{ "xml", "application/xml" }, { "svg", "image/svg+xml" }, { "png", "image/png" },
		{ "jpg", "image/jpeg" }, { "jpeg", "image/jpeg" }, { "gif", "image/gif" },
		{ "ico", "image/x-icon" }, { "webp", "image/webp" }, { "wasm", "application/wasm" },
		{ "pdf", "application/pdf" },
	};
	const char *slash = strrchr(path, '/');
	const char *dot = strrchr(slash ? slash : path, '.');
	if (dot)
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (!strcasecmp(dot + 1, types[i][0]))
				return types[i][1];
	return "application/octet-stream";
}
