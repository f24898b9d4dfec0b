// Syntax-check Flux and LogQL with the vendors' own parsers (see package.json).
// stdin: {"flux": {"id": "query", ...}, "logql": {"id": "query", ...}}
// stdout: the same shape with a list of syntax errors in place of each query (empty = valid).
// Run by tests/dashboards/test_query_syntax.py as:
//   node --experimental-wasm-modules --no-warnings tools/check_query_syntax.mjs
import { parse as parseFlux } from "@influxdata/flux-lsp-browser/flux-lsp-browser_bg.js";
import { parser as logqlParser } from "@grafana/lezer-logql";

function fluxErrors(script) {
  // parse() always returns an AST; syntax errors sit in `errors` arrays on its nodes.
  const found = [];
  const walk = (node) => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node === null || typeof node !== "object") return;
    for (const [key, value] of Object.entries(node)) {
      if (key === "errors" && Array.isArray(value)) {
        for (const e of value) found.push(typeof e === "string" ? e : e.msg ?? JSON.stringify(e));
      } else {
        walk(value);
      }
    }
  };
  walk(parseFlux(script));
  return found;
}

function logqlErrors(query) {
  const found = [];
  logqlParser.parse(query).iterate({
    enter: (n) => {
      if (n.type.isError) found.push(`syntax error at ${n.from}: ${JSON.stringify(query.slice(n.from, n.from + 20))}`);
    },
  });
  return found;
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const out = { flux: {}, logql: {} };
for (const [id, q] of Object.entries(input.flux ?? {})) out.flux[id] = fluxErrors(q);
for (const [id, q] of Object.entries(input.logql ?? {})) out.logql[id] = logqlErrors(q);
process.stdout.write(JSON.stringify(out));
