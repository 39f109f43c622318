// Builds the committed schema.graphql with graphql-js, as a client's tooling does, and
// compares its full introspection with the running server's.
//
//   node compare.mjs <schema.graphql> <http://host:port/graphql> <api key>
//
// The file is read with `extendSchema` over an empty schema, which refuses a redefinition of
// a built-in directive (@include, @skip, @deprecated, @specifiedBy) as graphql-js tooling
// does. The introspection asks for everything graphql-js can: descriptions, specifiedByURL,
// deprecations of fields, enum values, arguments and input fields, default values,
// repeatable directives. Prints the differences and exits 1 when there are any.
import { readFileSync } from "node:fs";
import {
  GraphQLSchema,
  extendSchema,
  getIntrospectionQuery,
  graphqlSync,
  parse,
} from "graphql";

const [file, url, key] = process.argv.slice(2);
if (!file || !url || !key) {
  console.error("usage: node compare.mjs <schema.graphql> <graphql url> <api key>");
  process.exit(2);
}

const options = {
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  inputValueDeprecation: true,
  oneOf: true,
};
const query = getIntrospectionQuery(options);

let fromFile;
try {
  const schema = extendSchema(new GraphQLSchema({}), parse(readFileSync(file, "utf8")));
  const result = graphqlSync({ schema, source: query });
  if (result.errors) throw new Error(result.errors.map((e) => e.message).join("; "));
  fromFile = result.data;
} catch (e) {
  console.log(`schema.graphql does not build with graphql-js: ${e.message}`);
  process.exit(1);
}

const response = await fetch(url, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
  body: JSON.stringify({ query }),
});
const live = await response.json();
if (!live.data || live.errors) {
  console.log(`the server's introspection failed: ${JSON.stringify(live.errors ?? live)}`);
  process.exit(1);
}

// Types and directives are compared by name (their order in a schema carries no meaning);
// fields, arguments, enum values and input fields in their order.
function byName(list) {
  return Object.fromEntries((list ?? []).map((item) => [item.name, item]));
}
const differences = [];
function compare(path, a, b) {
  if (JSON.stringify(a) === JSON.stringify(b)) return;
  if (Array.isArray(a) && Array.isArray(b) && a.every((x) => x?.name) && b.every((x) => x?.name)) {
    const names = (l) => l.map((x) => x.name).join(",");
    if (names(a) !== names(b)) {
      differences.push(`${path}: [${names(a)}] in the file, [${names(b)}] live`);
      return;
    }
    a.forEach((x, i) => compare(`${path}.${x.name}`, x, b[i]));
    return;
  }
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (k === "possibleTypes" || k === "interfaces") {
        // Sets, not lists: a union's or interface's members and an object's interfaces carry
        // no order. async-graphql answers `interfaces: null` for an interface where graphql-js
        // answers `[]` (interfaces implementing interfaces are not used here): both mean none.
        const set = (l) => [...(l ?? [])].sort((x, y) => x.name.localeCompare(y.name));
        compare(`${path}.${k}`, set(a[k]), set(b[k]));
        continue;
      }
      compare(`${path}.${k}`, a[k], b[k]);
    }
    return;
  }
  differences.push(`${path}: ${JSON.stringify(a)} in the file, ${JSON.stringify(b)} live`);
}

// What the spec builds in (introspection types, standard scalars, specified directives) is
// each implementation's own text (graphql-js and async-graphql word their descriptions
// differently); schema.graphql defines none of it, so it is left out of the comparison.
const builtIn = new Set([
  "String", "Int", "Float", "Boolean", "ID",
  "include", "skip", "deprecated", "specifiedBy", "oneOf",
]);
const own = (list) => (list ?? []).filter((x) => !x.name.startsWith("__") && !builtIn.has(x.name));

const mine = fromFile.__schema;
const theirs = live.data.__schema;
for (const root of ["queryType", "mutationType", "subscriptionType"]) {
  compare(root, mine[root], theirs[root]);
}
for (const [kind, a, b] of [
  ["type", byName(own(mine.types)), byName(own(theirs.types))],
  ["directive", byName(own(mine.directives)), byName(own(theirs.directives))],
]) {
  for (const name of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (!a[name]) differences.push(`${kind} ${name}: only live`);
    else if (!b[name]) differences.push(`${kind} ${name}: only in the file`);
    else compare(`${kind} ${name}`, a[name], b[name]);
  }
}

const types = own(theirs.types).length;
if (differences.length) {
  console.log(`${differences.length} difference(s) between schema.graphql and the server:`);
  for (const d of differences.slice(0, 50)) console.log(`  ${d}`);
  process.exit(1);
}
console.log(`schema.graphql equals the live schema (${types} types of its own, full introspection)`);
