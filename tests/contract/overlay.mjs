// Applies the documented overlay to an official Tyk OpenAPI file and writes
// the result as JSON, for Prism to validate against.
//
//   node tests/contract/overlay.mjs dashboard|admin <official.yml> <out.json>
//
// The overlay fixes only the spec artefacts listed in shared/tyk/CONTRACT.md;
// nothing is loosened:
//   dashboard: securitySchemes.bearerAuth (http/bearer) → apiKey in header
//              `authorization` (real clients send the raw key, no scheme);
//              PUT /api/users/{userId} body gains `group_id: string` (the UI
//              and every client assign groups by PUT; the spec omits it).
//   admin:     none (its apiKey `Admin-Auth` already matches real clients).
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "..", "tools", "package.json"));
const yaml = require("js-yaml");

const [kind, input, output] = process.argv.slice(2);
if (!kind || !input || !output) {
  console.error("usage: overlay.mjs dashboard|admin <official.yml> <out.json>");
  process.exit(2);
}
const spec = yaml.load(readFileSync(input, "utf8"));

function must(value, what) {
  if (value === undefined || value === null) {
    console.error(`overlay: ${what} not found in ${input}; the official file changed`);
    process.exit(1);
  }
  return value;
}

if (kind === "dashboard") {
  const schemes = must(spec.components?.securitySchemes, "components.securitySchemes");
  must(schemes.bearerAuth, "securitySchemes.bearerAuth");
  schemes.bearerAuth = {
    type: "apiKey",
    in: "header",
    name: "authorization",
    description: "Overlay: the raw Dashboard API key, as real clients send it",
  };
  const put = must(spec.paths?.["/api/users/{userId}"]?.put, "PUT /api/users/{userId}");
  const schema = must(put.requestBody?.content?.["application/json"]?.schema, "PUT user body schema");
  must(schema.properties, "PUT user body properties").group_id = { type: "string" };
} else if (kind !== "admin") {
  console.error(`overlay: unknown kind ${kind}`);
  process.exit(2);
}

writeFileSync(output, JSON.stringify(spec));
