/*
 * common/hostpat.c - host names and host patterns.
 *
 * Only ASCII is handled: internationalised names must be written in their
 * A-label (punycode) form, as they appear in Host headers and SNI.
 */
#include "hostpat.h"

#include <string.h>

#define HOST_MAX  253 /* RFC 1035 section 2.3.4, text form without the final dot */
#define LABEL_MAX 63

void host_normalize(char *host)
{
	for (; *host != '\0'; host++)
		if (*host >= 'A' && *host <= 'Z')
			*host = (char)(*host - 'A' + 'a');
}

static int host_label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

int host_valid(const char *host)
{
	size_t len = strlen(host), label = 0;

	if (len == 0 || len > HOST_MAX)
		return 0;
	for (size_t i = 0; i <= len; i++) {
		char c = host[i];

		if (c == '.' || c == '\0') {
			/* RFC 952/1123: a label neither starts nor ends with a hyphen */
			if (label == 0 || label > LABEL_MAX || host[i - label] == '-' ||
			    host[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!host_label_char(c))
			return 0;
		label++;
	}
	return 1;
}

int hostpat_valid(const char *pat)
{
	if (strlen(pat) > HOST_MAX)
		return 0;
	if (pat[0] == '*' && pat[1] == '.')
		return host_valid(pat + 2);
	return host_valid(pat);
}

int hostpat_match(const char *pat, const char *host)
{
	if (pat[0] == '*' && pat[1] == '.') {
		const char *suffix = pat + 1; /* ".example.com" */
		size_t slen = strlen(suffix), hlen = strlen(host);

		/* at least one label in front: "x.example.com", never "example.com" */
		return hlen > slen && host[0] != '.' && strcmp(host + hlen - slen, suffix) == 0;
	}
	return strcmp(pat, host) == 0;
}
