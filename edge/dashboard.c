/*
 * edge/dashboard.c - the dashboard's files (see dashboard.h).
 *
 * Names in /status are shown with textContent, never as HTML, and the
 * page allows no script or style but its own files (Content-Security-Policy).
 */
#include "dashboard.h"

#include <string.h>

static const char page[] =
    "<!doctype html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>relais-edge</title>\n"
    "<link rel=\"stylesheet\" href=\"/dashboard.css\">\n"
    "</head>\n"
    "<body>\n"
    "<h1>relais-edge</h1>\n"
    "<p id=\"summary\">Reading /status&hellip;</p>\n"
    "<p id=\"error\"></p>\n"
    "<h2>Agent connections</h2>\n"
    "<table id=\"agents\"><thead><tr><th>Agent</th><th>Connected from</th>"
    "<th class=\"num\">Streams</th><th class=\"num\">Routes</th></tr></thead>"
    "<tbody></tbody></table>\n"
    "<h2>Routes</h2>\n"
    "<table id=\"routes\"><thead><tr><th>Kind</th><th>Host or port</th><th>Agent</th>"
    "</tr></thead><tbody></tbody></table>\n"
    "<p class=\"note\">Read-only, refreshed every 2 seconds. Hosts, ports, access lists "
    "and redirects are set in edge.yaml and agent.yaml.</p>\n"
    "<script src=\"/dashboard.js\"></script>\n"
    "</body>\n"
    "</html>\n";

static const char style[] =
    "body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }\n"
    "table { border-collapse: collapse; margin: 0.5em 0 1.5em; min-width: 30em; }\n"
    "th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; }\n"
    "th { background: #f3f3f3; }\n"
    ".num { text-align: right; }\n"
    "#error { color: #b00020; }\n"
    ".note { color: #666; }\n";

static const char script[] =
    "\"use strict\";\n"
    "function row(cells) {\n"
    "  const tr = document.createElement(\"tr\");\n"
    "  for (const [text, cls] of cells) {\n"
    "    const td = document.createElement(\"td\");\n"
    "    td.textContent = String(text);\n"
    "    if (cls) td.className = cls;\n"
    "    tr.appendChild(td);\n"
    "  }\n"
    "  return tr;\n"
    "}\n"
    "function where(r) {\n"
    "  if (r.host) return r.host;\n"
    "  return r.port_lo === r.port_hi ? String(r.port_lo) : r.port_lo + \"-\" + r.port_hi;\n"
    "}\n"
    "async function refresh() {\n"
    "  const error = document.getElementById(\"error\");\n"
    "  try {\n"
    "    const res = await fetch(\"/status\", {cache: \"no-store\"});\n"
    "    if (!res.ok) throw new Error(\"HTTP \" + res.status);\n"
    "    const s = await res.json();\n"
    "    const agents = [], routes = [];\n"
    "    for (const x of s.sessions) {\n"
    "      agents.push(row([[x.agent], [x.peer], [x.streams, \"num\"], "
    "[x.routes.length, \"num\"]]));\n"
    "      for (const r of x.routes) routes.push(row([[r.kind], [where(r)], [x.agent]]));\n"
    "    }\n"
    "    document.querySelector(\"#agents tbody\").replaceChildren(...agents);\n"
    "    document.querySelector(\"#routes tbody\").replaceChildren(...routes);\n"
    "    document.getElementById(\"summary\").textContent =\n"
    "      s.sessions.length + \" agent connection(s), \" + s.streams + \" open stream(s), \" +\n"
    "      s.udp_dropped + \" UDP datagram(s) dropped\" + (s.truncated ? \" (lists cut)\" : "
    "\"\");\n"
    "    error.textContent = \"\";\n"
    "  } catch (e) {\n"
    "    error.textContent = \"Cannot read /status: \" + e.message;\n"
    "  }\n"
    "}\n"
    "refresh();\n"
    "setInterval(refresh, 2000);\n";

static const struct dashboard_file files[] = {
    {"/", "text/html; charset=utf-8", page},
    {"/dashboard.css", "text/css; charset=utf-8", style},
    {"/dashboard.js", "text/javascript; charset=utf-8", script},
};

const char dashboard_headers[] =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
    "Referrer-Policy: no-referrer\r\n";

const struct dashboard_file *dashboard_find(const char *path, size_t len)
{
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (strlen(files[i].path) == len && memcmp(files[i].path, path, len) == 0)
			return &files[i];
	return NULL;
}
